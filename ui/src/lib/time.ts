// Time as staff see it: every time is shown in the clinic's time zone (a
// server setting), in the system locale's formats, whatever the zone of the
// desk's own machine. Instants stay UTC strings (`2026-11-23T09:30:00Z`);
// local dates are `YYYY-MM-DD`. Turning a typed local time into an instant
// is the engine's job (`api.localInstant`, jiff, DST-aware); this file only
// formats and parses what people see and type. Unit-tested (Vitest).

/** The clinic's zone and the desk's locale: everything formatting needs. */
export interface Clinic {
  zone: string;
  locale: string;
}

/** The system locale, as the WebView reports it. */
export function systemLocale(): string {
  try {
    return new Intl.DateTimeFormat().resolvedOptions().locale || "en-US";
  } catch {
    return "en-US";
  }
}

const formats = new Map<string, Intl.DateTimeFormat>();
function format(locale: string, options: Intl.DateTimeFormatOptions): Intl.DateTimeFormat {
  const key = `${locale}|${JSON.stringify(options)}`;
  let f = formats.get(key);
  if (!f) {
    f = new Intl.DateTimeFormat(locale, options);
    formats.set(key, f);
  }
  return f;
}

function toMillis(instant: string | number | Date): number {
  if (typeof instant === "number") return instant;
  if (instant instanceof Date) return instant.getTime();
  return Date.parse(instant);
}

export interface LocalParts {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

/** The local calendar fields of an instant in `zone`. */
export function zonedParts(instant: string | number | Date, zone: string): LocalParts {
  const parts = format("en-US", {
    timeZone: zone,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  }).formatToParts(new Date(toMillis(instant)));
  const get = (type: Intl.DateTimeFormatPartTypes) => Number(parts.find((p) => p.type === type)?.value ?? 0);
  return { year: get("year"), month: get("month"), day: get("day"), hour: get("hour") % 24, minute: get("minute"), second: get("second") };
}

const pad = (n: number, width = 2) => String(n).padStart(width, "0");

/** `YYYY-MM-DD` of an instant in `zone`. */
export function localDateOf(instant: string | number | Date, zone: string): string {
  const p = zonedParts(instant, zone);
  return `${pad(p.year, 4)}-${pad(p.month)}-${pad(p.day)}`;
}

/** Today in the clinic's zone (not the desk machine's, not UTC). */
export function todayIn(zone: string, now: number = Date.now()): string {
  return localDateOf(now, zone);
}

/** The local time of day of an instant, as `HH:MM` (24 h), for form fields. */
export function localTimeOf(instant: string | number | Date, zone: string): string {
  const p = zonedParts(instant, zone);
  return `${pad(p.hour)}:${pad(p.minute)}`;
}

/** A time of day in the locale's style ("15:30", "3:30 PM"). */
export function formatTime(instant: string | number | Date, c: Clinic): string {
  return format(c.locale, { timeZone: c.zone, hour: "2-digit", minute: "2-digit" }).format(new Date(toMillis(instant)));
}

/** "15:30–16:00" in the clinic's zone. */
export function formatTimeRange(start: string, end: string, c: Clinic): string {
  return `${formatTime(start, c)}–${formatTime(end, c)}`;
}

function dateFromLocal(date: string): Date {
  const [y, m, d] = date.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d, 12));
}

/** A local date (`YYYY-MM-DD`) in the locale's numeric style ("03.02.2031", "2/3/2031"). */
export function formatDate(date: string, c: Pick<Clinic, "locale">): string {
  return format(c.locale, { timeZone: "UTC", year: "numeric", month: "2-digit", day: "2-digit" }).format(dateFromLocal(date));
}

/** A local date with its weekday in words ("Mon 3 Feb 2031"). */
export function formatDay(date: string, c: Pick<Clinic, "locale">): string {
  return format(c.locale, { timeZone: "UTC", weekday: "short", year: "numeric", month: "short", day: "numeric" }).format(dateFromLocal(date));
}

/** The local date of an instant in words ("Mon 3 Feb 2031"). */
export function formatDayOf(instant: string, c: Clinic): string {
  return formatDay(localDateOf(instant, c.zone), c);
}

/** Date and time of an instant in the clinic's zone ("3 Feb 2031, 15:30"). */
export function formatInstant(instant: string, c: Clinic): string {
  return format(c.locale, { timeZone: c.zone, year: "numeric", month: "short", day: "numeric", hour: "numeric", minute: "2-digit" }).format(
    new Date(toMillis(instant)),
  );
}

/** The order of day, month and year in the locale's numeric dates. */
function dateOrder(locale: string): ("day" | "month" | "year")[] {
  return format(locale, { timeZone: "UTC", year: "numeric", month: "2-digit", day: "2-digit" })
    .formatToParts(new Date(Date.UTC(2031, 1, 3, 12)))
    .filter((p) => p.type === "day" || p.type === "month" || p.type === "year")
    .map((p) => p.type as "day" | "month" | "year");
}

/** The locale's numeric date pattern as a hint ("DD.MM.YYYY", "MM/DD/YYYY"). */
export function datePattern(locale: string): string {
  const parts = format(locale, { timeZone: "UTC", year: "numeric", month: "2-digit", day: "2-digit" }).formatToParts(new Date(Date.UTC(2031, 1, 3, 12)));
  return parts.map((p) => (p.type === "day" ? "DD" : p.type === "month" ? "MM" : p.type === "year" ? "YYYY" : p.value)).join("");
}

function isRealDate(y: number, m: number, d: number): boolean {
  if (!Number.isInteger(y) || !Number.isInteger(m) || !Number.isInteger(d)) return false;
  if (y < 1 || y > 9999 || m < 1 || m > 12 || d < 1) return false;
  const days = new Date(Date.UTC(y, m, 0)).getUTCDate();
  return d <= days;
}

/**
 * A date as people type it: ISO (`2031-02-03`) or the locale's numeric order
 * with `.`, `/`, `-` or spaces (`03.02.2031`, `2/3/2031`); two-digit years
 * count as the nearest century that is not more than 10 years ahead. Only
 * real calendar dates (no 30 February). `null` when it is not a date.
 */
export function parseDate(text: string, locale: string, now: number = Date.now()): string | null {
  const t = text.trim();
  let y: number, m: number, d: number;
  const iso = /^(\d{4})-(\d{1,2})-(\d{1,2})$/.exec(t);
  if (iso) {
    [y, m, d] = [Number(iso[1]), Number(iso[2]), Number(iso[3])];
  } else {
    const pieces = t.split(/[./\-\s]+/).filter(Boolean);
    if (pieces.length !== 3 || pieces.some((p) => !/^\d{1,4}$/.test(p))) return null;
    const order = dateOrder(locale);
    const value: Record<string, number> = {};
    order.forEach((k, i) => (value[k] = Number(pieces[i])));
    [y, m, d] = [value.year, value.month, value.day];
    const yearText = pieces[order.indexOf("year")];
    if (yearText.length <= 2) {
      const current = new Date(now).getUTCFullYear();
      const century = Math.floor(current / 100) * 100;
      y = century + y > current + 10 ? century - 100 + y : century + y;
    } else if (yearText.length !== 4) {
      return null;
    }
  }
  if (!isRealDate(y, m, d)) return null;
  return `${pad(y, 4)}-${pad(m)}-${pad(d)}`;
}

export interface TimeOfDay {
  hour: number;
  minute: number;
}

/**
 * A time of day as people type it: `1530`, `15:30`, `15.30`, `15h30`, `930`,
 * `9`, `3:30pm`, `3 pm`, `12am`, `noon`. `null` when it is not a time.
 */
export function parseTime(text: string): TimeOfDay | null {
  let t = text.trim().toLowerCase().replace(/\s+/g, "");
  // "930" reads as 9:30 and "1530" as 15:30: the last two digits are minutes.
  const run = /^(\d{3,4})(am|pm|a|p)?$/.exec(t);
  if (run) t = `${run[1].slice(0, -2)}:${run[1].slice(-2)}${run[2] ?? ""}`;
  if (t === "noon") return { hour: 12, minute: 0 };
  if (t === "midnight") return { hour: 0, minute: 0 };
  const m = /^(\d{1,2})(?:[:.h]?(\d{2}))?(am|pm|a|p)?$/.exec(t);
  if (!m) return null;
  let hour = Number(m[1]);
  const minute = m[2] === undefined ? 0 : Number(m[2]);
  const suffix = m[3];
  if (minute > 59) return null;
  if (suffix) {
    if (hour < 1 || hour > 12) return null;
    const pm = suffix.startsWith("p");
    hour = (hour % 12) + (pm ? 12 : 0);
  } else if (hour > 23) {
    return null;
  }
  return { hour, minute };
}

/** `HH:MM:SS` for the engine. */
export function timeValue(t: TimeOfDay): string {
  return `${pad(t.hour)}:${pad(t.minute)}:00`;
}

/** `HH:MM` for a form field. */
export function timeText(t: TimeOfDay): string {
  return `${pad(t.hour)}:${pad(t.minute)}`;
}

/** The local date `n` days after `date`. */
export function addDays(date: string, n: number): string {
  const d = dateFromLocal(date);
  d.setUTCDate(d.getUTCDate() + n);
  return `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
}

/** An instant `minutes` after another (absolute time: 30 minutes are 30 minutes across a DST change). */
export function addMinutes(instant: string, minutes: number): string {
  return new Date(Date.parse(instant) + minutes * 60000).toISOString().slice(0, 19) + "Z";
}

/** Whole minutes from `start` to `end`. */
export function minutesBetween(start: string, end: string): number {
  return Math.round((Date.parse(end) - Date.parse(start)) / 60000);
}

/** Now as the engine writes instants. */
export function nowInstant(now: number = Date.now()): string {
  return new Date(now).toISOString().slice(0, 19) + "Z";
}

/** "10 s", "2 min", "3 h", "2 d". */
export function durationLabel(secs: number): string {
  if (secs < 60) return `${Math.max(0, Math.floor(secs))} s`;
  if (secs < 3600) return `${Math.floor(secs / 60)} min`;
  if (secs < 86400) return `${Math.floor(secs / 3600)} h`;
  return `${Math.floor(secs / 86400)} d`;
}
