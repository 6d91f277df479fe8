// Pure formatting helpers (unit-tested with Vitest).
import type { Connection } from "../bindings/Connection";
import type { SyncStatus } from "../bindings/SyncStatus";

/** The status indicator's words: live / polling / offline / reconnecting in N s. */
export function connectionLabel(c: Connection): string {
  switch (c.state) {
    case "live":
      return "Live";
    case "polling":
      return "Polling";
    case "connecting":
      return "Connecting…";
    case "offline": {
      const secs = Math.max(1, Math.round(c.retry_in_ms / 1000));
      return `Offline — reconnecting in ${secs} s`;
    }
    case "signed_out":
      return "Signed out — changes held";
    case "stopped":
      return "Stopped";
  }
}

/** "3 pending (oldest 2 min)" or "" when nothing is pending. */
export function pendingLabel(s: Pick<SyncStatus, "pending" | "oldest_pending_secs">): string {
  if (s.pending === 0) return "";
  const age = s.oldest_pending_secs;
  const ageText = age == null ? "" : ` (oldest ${durationLabel(age)})`;
  return `${s.pending} pending${ageText}`;
}

export function durationLabel(secs: number): string {
  if (secs < 60) return `${Math.floor(secs)} s`;
  if (secs < 3600) return `${Math.floor(secs / 60)} min`;
  if (secs < 86400) return `${Math.floor(secs / 3600)} h`;
  return `${Math.floor(secs / 86400)} d`;
}

/** Time of day of an RFC 3339 UTC timestamp, as HH:MM (UTC). */
export function timeOfDay(ts: string): string {
  return ts.slice(11, 16);
}

/** Cents as money. */
export function money(cents: number): string {
  return (cents / 100).toFixed(2);
}

/** Initial sync progress as a fraction in [0, 1]. */
export function syncProgress(p: { cursor: number; head: number }, start = 0): number {
  if (p.head <= start) return 1;
  return Math.min(1, Math.max(0, (p.cursor - start) / (p.head - start)));
}
