import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useRef, useState, type FormEvent, type KeyboardEvent } from "react";
import { AlertBanner } from "../components/AlertBanner";
import { PrintButton } from "../components/PrintButton";
import { api, errorMessage, newId } from "../api";
import type { Appointment } from "../bindings/Appointment";
import type { AppointmentStatus } from "../bindings/AppointmentStatus";
import type { Entity } from "../bindings/Entity";
import type { FreeSlot } from "../bindings/FreeSlot";
import type { Mutation } from "../bindings/Mutation";
import type { Rejection } from "../bindings/Rejection";
import type { Staff } from "../bindings/Staff";
import { PERMISSIONS } from "../bindings/permissions";
import { Field } from "../components/Field";
import { PatientLink } from "../components/PatientLink";
import { useDesk } from "../desk";
import { useLive } from "../events";
import { useOpenInvoice } from "../navigate";
import { fieldSentences, rejectionSentence, statusWords } from "../lib/errors";
import { can, canBook, canRead, canSetStatus } from "../lib/roles";
import { take, type Command } from "../lib/shortcuts";
import { release, send, type Sent } from "../lib/submit";
import {
  addDays,
  addMinutes,
  datePattern,
  formatDate,
  formatDay,
  formatDayOf,
  formatTime,
  formatTimeRange,
  localDateOf,
  localTimeOf,
  minutesBetween,
  nowInstant,
  parseDate,
  parseTime,
  timeText,
  timeValue,
  todayIn,
  type Clinic,
} from "../lib/time";

/** Forward steps of the status flow, as offered on each appointment (the undo steps are offered separately). */
export function nextSteps(status: AppointmentStatus, role: Staff["role"]): AppointmentStatus[] {
  const steps: Record<AppointmentStatus, AppointmentStatus[]> = {
    scheduled: ["checked_in", "no_show", "cancelled"],
    checked_in: ["in_progress", "cancelled"],
    in_progress: ["completed"],
    completed: [],
    cancelled: [],
    no_show: [],
  };
  return steps[status].filter((s) => canSetStatus(role, s));
}

const stepLabel: Record<AppointmentStatus, string> = {
  scheduled: "Scheduled",
  checked_in: "Check in",
  in_progress: "Start",
  completed: "Complete",
  cancelled: "Cancel",
  no_show: "No-show",
};

/** Steps that take effect at once and are offered an undo for a few seconds. */
const undoable: AppointmentStatus[] = ["checked_in", "cancelled", "no_show"];

export function Schedule({ user, command }: { user: Staff; command: Command | null }) {
  const { clinic } = useDesk();
  const [date, setDate] = useState(() => todayIn(clinic.zone));
  const [dateText, setDateText] = useState(() => formatDate(todayIn(clinic.zone), clinic));
  const [doctor, setDoctor] = useState<string>(user.role === "doctor" ? user.id : "");
  const [booking, setBooking] = useState(false);
  const [active, setActive] = useState(0);
  const table = useRef<HTMLTableSectionElement>(null);
  const staff = useQuery({ queryKey: ["rows", "staff"], queryFn: api.staff });
  const doctors = (staff.data ?? []).map((r) => r.data).filter((s) => s.role === "doctor" && s.active);
  const schedule = useQuery({ queryKey: ["schedule", date, doctor, clinic.zone], queryFn: () => api.daySchedule(date, doctor || null) });
  const rows = schedule.data ?? [];
  const go = (d: string) => {
    setDate(d);
    setDateText(formatDate(d, clinic));
    setActive(0);
  };
  useEffect(() => {
    if (canBook(user.role) && take(command, "book")) setBooking(true);
    if (take(command, "check-in")) {
      const row = rows[active];
      if (row) document.querySelector<HTMLButtonElement>(`[data-id="${row.id}"] [data-testid="step-checked_in"]`)?.click();
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [command]);
  function onRowsKeyDown(e: KeyboardEvent) {
    if (e.key !== "ArrowDown" && e.key !== "ArrowUp" && e.key !== "Home" && e.key !== "End") return;
    if ((e.target as HTMLElement).tagName !== "TR") return;
    e.preventDefault();
    const last = rows.length - 1;
    const next = e.key === "ArrowDown" ? Math.min(last, active + 1) : e.key === "ArrowUp" ? Math.max(0, active - 1) : e.key === "Home" ? 0 : last;
    setActive(next);
    table.current?.querySelectorAll<HTMLTableRowElement>("tr[data-testid=appointment]")[next]?.focus();
  }
  return (
    <div className="schedule">
      <div className="toolbar" role="toolbar" aria-label="Day">
        <button onClick={() => go(addDays(date, -1))} aria-label="Previous day" data-testid="day-previous">
          ‹
        </button>
        <input
          data-testid="schedule-date"
          aria-label={`Day (${datePattern(clinic.locale)})`}
          title={`Day, like ${datePattern(clinic.locale)}`}
          className="date-input"
          value={dateText}
          onChange={(e) => {
            setDateText(e.target.value);
            const d = parseDate(e.target.value, clinic.locale);
            if (d) {
              setDate(d);
              setActive(0);
            }
          }}
          onBlur={() => setDateText(formatDate(date, clinic))}
        />
        <button onClick={() => go(addDays(date, 1))} aria-label="Next day" data-testid="day-next">
          ›
        </button>
        <button onClick={() => go(todayIn(clinic.zone))} data-testid="day-today">
          Today
        </button>
        <select data-testid="schedule-doctor" aria-label="Doctor" value={doctor} onChange={(e) => setDoctor(e.target.value)}>
          <option value="">All doctors</option>
          {doctors.map((d) => (
            <option key={d.id} value={d.id}>
              {d.display_name}
            </option>
          ))}
        </select>
        <PrintButton
          label={doctor ? "Print day sheet" : "Print schedule"}
          what={`the ${doctor ? "day sheet" : "schedule"} for ${formatDay(date, clinic)}`}
          testid="print-day"
          print={() => api.printDaySheet(date, doctor || null)}
        />
        {canBook(user.role) && (
          <button data-testid="book-open" title="Book an appointment (Alt+B)" aria-keyshortcuts="Alt+B" onClick={() => setBooking(!booking)} aria-expanded={booking}>
            Book appointment
          </button>
        )}
      </div>
      <h2 className="day-title" data-testid="day-title">
        {formatDay(date, clinic)} <span className="muted small">· times in {clinic.zone.replace(/_/g, " ")}</span>
      </h2>
      {booking && <BookingForm date={date} doctors={doctors} defaultDoctor={doctor} onDone={() => setBooking(false)} />}
      <table className="day" data-testid="schedule" aria-label={`Appointments on ${formatDay(date, clinic)}`}>
        <thead>
          <tr>
            <th scope="col">Time</th>
            <th scope="col">Doctor</th>
            <th scope="col">Patient</th>
            <th scope="col">Reason</th>
            <th scope="col">Status</th>
            <th scope="col">
              <span className="sr-only">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody ref={table} onKeyDown={onRowsKeyDown}>
          {rows.map((row, i) => (
            <AppointmentRow key={row.id} row={row} user={user} active={i === active} onFocus={() => setActive(i)} />
          ))}
        </tbody>
      </table>
      {schedule.data?.length === 0 && <p className="muted">No appointments on {formatDay(date, clinic)}.</p>}
    </div>
  );
}

function AppointmentRow({ row, user, active, onFocus }: { row: Entity<Appointment>; user: Staff; active: boolean; onFocus: () => void }) {
  const a = row.data;
  const { recent } = useLive();
  const { clinic, names, toast } = useDesk();
  const [error, setError] = useState<string | null>(null);
  const [moving, setMoving] = useState(false);
  const patientName = names.patient(a.patient_id);
  const patients = useQuery({ queryKey: ["rows", "patients"], queryFn: api.patients });
  const patient = (patients.data ?? []).find((p) => p.id === a.patient_id);
  // A patient this desk does not hold was deleted (or is not visible): no visit can start for them.
  const gone = patients.data !== undefined && !patient;
  const archived = !!patient?.data.archived_at;
  const bill = useBilling(row, user, gone);
  async function step(status: AppointmentStatus) {
    setError(null);
    try {
      // A check-in records the arrival time by this desk's clock, so one
      // made while offline keeps when the patient really came.
      await api.mutate({ type: "set_appointment_status", args: { id: row.id, status, ...(status === "checked_in" ? { at: nowInstant() } : {}) } });
      if (undoable.includes(status)) {
        const who = patientName ?? "The patient";
        const words = status === "checked_in" ? `${who} checked in` : status === "cancelled" ? `${who}'s appointment cancelled` : `${who} marked as no-show`;
        toast({ text: `${words}.`, undo: () => api.mutate({ type: "set_appointment_status", args: { id: row.id, status: "scheduled" } }).then(() => undefined) });
      }
    } catch (err) {
      setError(errorMessage(err));
    }
  }
  const steps = nextSteps(a.status, user.role).filter((s) => !gone || s === "cancelled");
  const canUndoCheckIn = a.status === "checked_in" && canSetStatus(user.role, "scheduled");
  return (
    <>
      <tr
        className={[recent.has(row.id) ? "flash" : "", row.pending ? "pending" : "", active ? "active" : ""].join(" ")}
        data-testid="appointment"
        data-id={row.id}
        tabIndex={active ? 0 : -1}
        onFocus={onFocus}
        aria-label={`${formatTimeRange(a.start, a.end, clinic)}, ${patientName ?? "deleted patient"}, ${statusWords(a.status)}`}
      >
        <td data-testid="appointment-time">{formatTimeRange(a.start, a.end, clinic)}</td>
        <td>{names.staff(a.doctor_id) ?? "A doctor"}</td>
        <td data-testid="appointment-patient">
          {gone ? <span className="muted">Deleted patient</span> : patientName ? <PatientLink id={a.patient_id} name={patientName} /> : "…"}
          {archived && <span className="badge">archived</span>}
        </td>
        <td>{a.reason ?? ""}</td>
        <td data-testid="appointment-status">
          {statusWords(a.status)}
          {row.pending && <span className="badge">saving</span>}
        </td>
        <td className="actions">
          {steps.map((s) => (
            <button
              key={s}
              onClick={() => step(s)}
              data-testid={`step-${s}`}
              title={s === "checked_in" ? "Check in (Alt+I)" : undefined}
              aria-keyshortcuts={s === "checked_in" ? "Alt+I" : undefined}
              className={s === "cancelled" || s === "no_show" ? "danger" : ""}
            >
              {stepLabel[s]}
            </button>
          ))}
          {canUndoCheckIn && (
            <button onClick={() => step("scheduled")} data-testid="undo-check-in">
              Undo check-in
            </button>
          )}
          {bill.offered && (
            <button onClick={() => void bill.open().catch((err) => setError(errorMessage(err)))} data-testid={bill.invoice ? "visit-invoice" : "bill-visit"} disabled={bill.busy}>
              {bill.invoice ? (bill.invoice.data.status === "draft" ? "Open draft invoice" : "Open invoice") : bill.busy ? "Starting…" : "Bill visit"}
            </button>
          )}
          {a.status === "scheduled" && canBook(user.role) && !gone && (
            <button onClick={() => setMoving(!moving)} data-testid="appointment-move" aria-expanded={moving}>
              Move
            </button>
          )}
        </td>
      </tr>
      {moving && (
        <tr>
          <td colSpan={6}>
            <MoveForm row={row} onDone={() => setMoving(false)} />
          </td>
        </tr>
      )}
      {error && (
        <tr>
          <td colSpan={6} className="error" role="alert">
            {error}
          </td>
        </tr>
      )}
    </>
  );
}

/** Visits that can be billed: the patient came (or is coming in now). */
const BILLABLE: AppointmentStatus[] = ["checked_in", "in_progress", "completed"];

/**
 * Billing a visit from its row: "Bill visit" starts a draft from the price
 * list and opens it on Billing; a visit billed already opens its invoice
 * instead (a visit is billed once; a void invoice does not count).
 */
function useBilling(row: Entity<Appointment>, user: Staff, gone: boolean) {
  const openInvoice = useOpenInvoice();
  const allowed = can(user.role, "create_invoice") && canRead(user.role, "invoices");
  const invoices = useQuery({ queryKey: ["rows", "invoices"], queryFn: api.invoices, enabled: allowed });
  const [busy, setBusy] = useState(false);
  const invoice = (invoices.data ?? []).find((i) => i.data.appointment_id === row.id && i.data.status !== "void") ?? null;
  const offered = allowed && !!openInvoice && !gone && invoices.data !== undefined && (invoice !== null || BILLABLE.includes(row.data.status));
  async function open() {
    if (!openInvoice) return;
    if (invoice) return openInvoice(invoice.id);
    setBusy(true);
    try {
      openInvoice(await api.draftInvoiceForVisit(row.id));
    } finally {
      setBusy(false);
    }
  }
  return { offered, invoice, busy, open };
}

/** The time fields of a booking or a move, as typed, turned into an instant by the engine (clinic zone, DST-aware). */
interface WhenFields {
  dateText: string;
  timeText: string;
  minutes: string;
}

interface When {
  start: string;
  end: string;
  minutes: number;
}

/** Parses the typed date, time and length; the errors are by field ("date", "time", "minutes"). */
async function resolveWhen(f: WhenFields, clinic: Clinic): Promise<{ when: When | null; errors: Record<string, string>; note: string | null }> {
  const errors: Record<string, string> = {};
  const date = parseDate(f.dateText, clinic.locale);
  const time = parseTime(f.timeText);
  const minutes = Number(f.minutes);
  if (!date) errors.date = `Date is not a date; type it like ${datePattern(clinic.locale)}.`;
  if (!time) errors.time = "Time is not a time; type it like 15:30, 1530 or 3:30pm.";
  if (!Number.isInteger(minutes) || minutes < 5 || minutes > 12 * 60) errors.minutes = "Length must be between 5 and 720 minutes.";
  if (!date || !time || errors.minutes) return { when: null, errors, note: null };
  const local = await api.localInstant(date, timeValue(time));
  let note: string | null = null;
  if (local.kind === "skipped") {
    errors.time = `${timeText(time)} does not exist on ${formatDay(date, clinic)}: the clocks go forward that night. Choose another time.`;
    return { when: null, errors, note };
  }
  if (local.kind === "repeated") note = `${timeText(time)} happens twice on ${formatDay(date, clinic)} (the clocks go back); this is the first.`;
  return { when: { start: local.instant, end: addMinutes(local.instant, minutes), minutes }, errors, note };
}

/** Field errors of a refusal placed on the booking form's fields. */
function placeErrors(r: Rejection, clinic: Clinic): Record<string, string> {
  const byField = fieldSentences(r.fields, clinic.locale);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(byField)) out[k === "start" || k === "end" ? "time" : k] = v;
  return out;
}

function Suggestions({ slots, onPick, clinic, label = "Free nearby:" }: { slots: FreeSlot[]; onPick: (s: FreeSlot) => void; clinic: Clinic; label?: string }) {
  if (slots.length === 0) return null;
  return (
    <div className="suggestions" data-testid="suggestions">
      <span>{label}</span>
      {slots.map((s) => (
        <button type="button" key={s.start} data-testid="suggestion" onClick={() => onPick(s)}>
          {localDateOf(s.start, clinic.zone) === localDateOf(slots[0].start, clinic.zone) ? formatTime(s.start, clinic) : `${formatDayOf(s.start, clinic)} ${formatTime(s.start, clinic)}`}
        </button>
      ))}
    </div>
  );
}

function BookingForm({ date, doctors, defaultDoctor, onDone }: { date: string; doctors: Staff[]; defaultDoctor: string; onDone: () => void }) {
  const { clinic, names, claim, toast, user } = useDesk();
  const client = useQueryClient();
  const [query, setQuery] = useState("");
  const [patient, setPatient] = useState<string>("");
  const [doctor, setDoctor] = useState(defaultDoctor || doctors[0]?.id || "");
  const [when, setWhen] = useState<WhenFields>({ dateText: formatDate(date, clinic), timeText: "09:00", minutes: "30" });
  const [reason, setReason] = useState("");
  const [correction, setCorrection] = useState(false);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [refusal, setRefusal] = useState<Rejection | null>(null);
  const [note, setNote] = useState<string | null>(null);
  const [slots, setSlots] = useState<FreeSlot[]>([]);
  // "Free nearby" after a clash, "Next free" when asked; none found: said.
  const [slotsLabel, setSlotsLabel] = useState("Free nearby:");
  const [noneFree, setNoneFree] = useState(false);
  const [busy, setBusy] = useState(false);
  const [sent, setSent] = useState<Sent | null>(null);
  const first = useRef<HTMLInputElement>(null);
  useEffect(() => first.current?.focus(), []);
  useEffect(() => {
    if (!doctor && doctors[0]) setDoctor(doctors[0].id);
  }, [doctors, doctor]);

  /** The first free slots with this doctor from the typed date and time on (today: from now). */
  async function nextFree() {
    if (!patient || !doctor) return;
    const { when: w } = await resolveWhen(when, clinic);
    const minutes = Number(when.minutes) > 0 ? Number(when.minutes) : 30;
    const start = w && w.start > nowInstant() ? w.start : nowInstant();
    const found = await api.freeSlots({ doctor_id: doctor, patient_id: patient, start, minutes, count: 3, from_start: true });
    setSlotsLabel("Next free:");
    setSlots(found);
    setNoneFree(found.length === 0);
  }
  const matches = useQuery({ queryKey: ["search", query], queryFn: () => api.searchPatients(query, 20), enabled: query.trim().length > 0 });
  const bookable = (matches.data ?? []).filter((r) => !r.data.archived_at);
  // The chosen patient's allergies and alerts, before the visit is booked.
  const chosen = bookable.find((r) => r.id === patient);
  useEffect(() => {
    if (bookable.length === 1 && !patient) setPatient(bookable[0].id);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [matches.data]);

  async function build(): Promise<{ m: Mutation | null; own: Record<string, string>; w: When | null }> {
    const { when: w, errors: own, note } = await resolveWhen(when, clinic);
    setNote(note);
    if (!patient) own.patient_id = "Patient is needed: search and choose one.";
    if (!doctor) own.doctor_id = "Doctor is needed.";
    if (!w || !patient || !doctor) return { m: null, own, w };
    return { m: { type: "book_appointment", args: { id: newId(), patient_id: patient, doctor_id: doctor, start: w.start, end: w.end, reason: reason.trim() || null, correction } }, own, w };
  }

  /** Every problem at once: the form's and the rules' (engine check, nothing queued); a taken slot comes with free ones nearby. */
  async function check(): Promise<Mutation | null> {
    const { m, own, w } = await build();
    let all = own;
    let other: Rejection | null = null;
    if (m) {
      const r = await api.checkMutation(m);
      if (r) {
        all = { ...placeErrors(r, clinic), ...own };
        if (!r.fields?.length) other = r;
      }
    }
    setErrors(all);
    setRefusal(other);
    if (other?.code === "double_booked" && w && m?.type === "book_appointment") {
      setSlotsLabel("Free nearby:");
      setSlots(await api.freeSlots({ doctor_id: m.args.doctor_id, patient_id: m.args.patient_id, start: w.start, minutes: w.minutes, count: 3 }));
    } else if (slotsLabel !== "Next free:") {
      setSlots([]);
    }
    return Object.keys(all).length === 0 && !other ? m : null;
  }

  // The form checks as the user types (once a patient is chosen): problems appear and clear with the input.
  useEffect(() => {
    if (!patient) return;
    const timer = setTimeout(() => void check().catch(() => undefined), 150);
    return () => clearTimeout(timer);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [patient, doctor, when, correction]);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    try {
      await release(sent, claim, client);
      setSent(null);
      const m = await check();
      if (!m || m.type !== "book_appointment") return;
      const result = await send(m, claim);
      setSent(result);
      const what = `${names.patient(m.args.patient_id) ?? "The patient"} with ${names.staff(m.args.doctor_id) ?? "the doctor"} on ${formatDayOf(m.args.start, clinic)} at ${formatTime(m.args.start, clinic)}`;
      if (result.state === "refused") {
        // The server's answer while the form is open: kept here, with the input.
        setErrors(placeErrors(result.rejection, clinic));
        setRefusal(result.rejection.fields?.length ? null : result.rejection);
        if (result.rejection.code === "double_booked") {
          setSlots(await api.freeSlots({ doctor_id: m.args.doctor_id, patient_id: m.args.patient_id, start: m.args.start, minutes: minutesBetween(m.args.start, m.args.end), count: 3 }));
        }
        return;
      }
      toast({
        text: result.state === "confirmed" ? `Booked: ${what}.` : `Booked on this desk: ${what}. It is sent when the server answers; you will be told if it is refused.`,
      });
      onDone();
    } catch (err) {
      setRefusal(null);
      setErrors({ form: errorMessage(err) });
    } finally {
      setBusy(false);
    }
  }
  const cancel = () => {
    void release(sent, claim, client);
    onDone();
  };
  const inPast = refusal === null && errors.time?.includes("in the past");
  return (
    <form
      className="card inline booking"
      onSubmit={submit}
      data-testid="booking-form"
      aria-label="Book an appointment"
      onKeyDown={(e) => {
        if (e.key === "Escape") {
          e.preventDefault();
          cancel();
        }
      }}
    >
      <label htmlFor="book-patient-search">
        <span>Patient</span>
        <input ref={first} id="book-patient-search" data-testid="book-patient-search" placeholder="Search…" value={query} onChange={(e) => setQuery(e.target.value)} autoComplete="off" />
        <select
          data-testid="book-patient"
          aria-label="Choose the patient"
          value={patient}
          onChange={(e) => setPatient(e.target.value)}
          aria-invalid={errors.patient_id ? true : undefined}
        >
          <option value="">Choose…</option>
          {bookable.map((r) => {
            const p = r.data;
            return (
              <option key={r.id} value={r.id}>
                {p.last_name}, {p.first_name} ({formatDate(p.date_of_birth, clinic)})
              </option>
            );
          })}
        </select>
        {errors.patient_id && <span className="field-error">{errors.patient_id}</span>}
      </label>
      {chosen && <AlertBanner patient={chosen.data} testid="book-patient-alerts" />}
      <label>
        <span>Doctor</span>
        <select data-testid="book-doctor" value={doctor} onChange={(e) => setDoctor(e.target.value)}>
          {doctors.map((d) => (
            <option key={d.id} value={d.id}>
              {d.display_name}
            </option>
          ))}
        </select>
      </label>
      <Field label="Date" name="date" testid="book-date" className="date-input" value={when.dateText} placeholder={datePattern(clinic.locale)} onChange={(e) => setWhen({ ...when, dateText: e.target.value })} error={errors.date} />
      <Field label="Time" name="time" testid="book-time" className="time-input" value={when.timeText} placeholder="15:30" onChange={(e) => setWhen({ ...when, timeText: e.target.value })} error={errors.time} hint={note ?? undefined} />
      <Field label="Minutes" name="minutes" testid="book-minutes" className="narrow" inputMode="numeric" value={when.minutes} onChange={(e) => setWhen({ ...when, minutes: e.target.value })} error={errors.minutes} />
      <Field label="Reason" name="reason" testid="book-reason" value={reason} onChange={(e) => setReason(e.target.value)} error={errors.reason} />
      {inPast && PERMISSIONS[user.role].correctThePast && (
        <label className="check">
          <input type="checkbox" data-testid="book-correction" checked={correction} onChange={(e) => setCorrection(e.target.checked)} /> Record a past visit (administrator's correction, noted in the history)
        </label>
      )}
      {(refusal || errors.form) && (
        <p className="error" data-testid="book-error" role="alert">
          {refusal ? rejectionSentence(refusal, names) : errors.form}
        </p>
      )}
      <Suggestions
        slots={slots}
        clinic={clinic}
        label={slotsLabel}
        onPick={(s) => {
          setSlotsLabel("Free nearby:");
          setSlots([]);
          setWhen({ ...when, dateText: formatDate(localDateOf(s.start, clinic.zone), clinic), timeText: localTimeOf(s.start, clinic.zone) });
        }}
      />
      {noneFree && (
        <p className="muted" data-testid="book-none-free">
          {names.staff(doctor) ?? "The doctor"} has no free {Number(when.minutes) > 0 ? Number(when.minutes) : 30} minutes that suit this patient in the next two weeks.
        </p>
      )}
      <div className="actions">
        <button type="button" data-testid="book-next-free" disabled={!patient || !doctor} onClick={() => void nextFree().catch((e) => setErrors({ form: errorMessage(e) }))} title="The first free slots with this doctor from the date and time above">
          Next free
        </button>
        <button data-testid="book-submit" disabled={busy || !patient || !doctor}>
          {busy ? "Booking…" : "Book"}
        </button>
        <button type="button" data-testid="book-cancel" onClick={cancel} title="Cancel (Esc)" aria-keyshortcuts="Escape">
          Cancel
        </button>
      </div>
    </form>
  );
}

function MoveForm({ row, onDone }: { row: Entity<Appointment>; onDone: () => void }) {
  const a = row.data;
  const { clinic, names, claim, toast } = useDesk();
  const client = useQueryClient();
  const [when, setWhen] = useState<WhenFields>({
    dateText: formatDate(localDateOf(a.start, clinic.zone), clinic),
    timeText: localTimeOf(a.start, clinic.zone),
    minutes: String(minutesBetween(a.start, a.end)),
  });
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [refusal, setRefusal] = useState<Rejection | null>(null);
  const [slots, setSlots] = useState<FreeSlot[]>([]);
  const [sent, setSent] = useState<Sent | null>(null);
  const first = useRef<HTMLInputElement>(null);
  useEffect(() => first.current?.focus(), []);
  async function submit(e: FormEvent) {
    e.preventDefault();
    try {
      await release(sent, claim, client);
      const { when: w, errors: own } = await resolveWhen(when, clinic);
      setErrors(own);
      setRefusal(null);
      setSlots([]);
      if (!w) return;
      const m: Mutation = { type: "reschedule_appointment", args: { id: row.id, base_version: row.version, start: w.start, end: w.end } };
      const result = await send(m, claim);
      setSent(result);
      if (result.state === "refused") {
        setErrors(placeErrors(result.rejection, clinic));
        setRefusal(result.rejection.fields?.length ? null : result.rejection);
        if (result.rejection.code === "double_booked")
          setSlots(await api.freeSlots({ doctor_id: a.doctor_id, patient_id: a.patient_id, start: w.start, minutes: w.minutes, count: 3, moving: row.id }));
        return;
      }
      toast({ text: `Moved to ${formatDayOf(w.start, clinic)} at ${formatTime(w.start, clinic)}.` });
      onDone();
    } catch (err) {
      setErrors({ form: errorMessage(err) });
    }
  }
  return (
    <form
      className="inline"
      onSubmit={submit}
      data-testid="move-form"
      aria-label="Move the appointment"
      onKeyDown={(e) => {
        if (e.key === "Escape") {
          e.preventDefault();
          void release(sent, claim, client);
          onDone();
        }
      }}
    >
      <Field ref={first} label="Date" name="date" testid="move-date" className="date-input" value={when.dateText} onChange={(e) => setWhen({ ...when, dateText: e.target.value })} error={errors.date} />
      <Field label="Time" name="time" testid="move-time" className="time-input" value={when.timeText} onChange={(e) => setWhen({ ...when, timeText: e.target.value })} error={errors.time} />
      <button data-testid="move-submit">Move</button>
      <button type="button" onClick={onDone}>
        Cancel
      </button>
      {(refusal || errors.form) && (
        <span className="error" role="alert" data-testid="move-error">
          {refusal ? rejectionSentence(refusal, names) : errors.form}
        </span>
      )}
      <Suggestions slots={slots} clinic={clinic} onPick={(s) => setWhen({ ...when, dateText: formatDate(localDateOf(s.start, clinic.zone), clinic), timeText: localTimeOf(s.start, clinic.zone) })} />
    </form>
  );
}
