// How sync stands, in plain words for the status bar and the Sync panel:
// no cursors, client ids, URLs or error dumps. Unit-tested (Vitest).
import type { Connection } from "../bindings/Connection";
import type { MirrorRebuilt } from "../bindings/MirrorRebuilt";
import type { ServerRestored } from "../bindings/ServerRestored";
import type { SyncStatus } from "../bindings/SyncStatus";
import { durationLabel, formatInstant, formatTime, type Clinic } from "./time";

export { durationLabel } from "./time";

/** The connection indicator's words. */
export function connectionLabel(c: Connection): string {
  switch (c.state) {
    case "live":
      return "Live";
    case "polling":
      return "Connected";
    case "connecting":
      return "Connecting…";
    case "offline": {
      const secs = Math.max(1, Math.round(c.retry_in_ms / 1000));
      return `Offline — trying again in ${secs} s`;
    }
    case "signed_out":
      return "Signed out — changes kept until you sign in";
    case "stopped":
      return "Not syncing";
  }
}

/** A sentence on the connection, for the Sync panel. */
export function syncSentence(c: Connection): string {
  switch (c.state) {
    case "live":
      return "Connected: changes from other desks arrive as they happen.";
    case "polling":
      return "Connected through a slower channel: changes still arrive within seconds.";
    case "connecting":
      return "Connecting to the server…";
    case "offline":
      return "The server cannot be reached. Work goes on; changes are kept on this desk and sent when it answers.";
    case "signed_out":
      return "Your sign-in ended. Changes are kept on this desk until you sign in again.";
    case "stopped":
      return "Sync is not running; restart the app.";
  }
}

/** "All changes saved", or "3 changes waiting — last tried 10 s ago". */
export function saveLabel(s: Pick<SyncStatus, "pending" | "last_attempt_at">, now: number = Date.now()): string {
  if (s.pending === 0) return "All changes saved";
  const what = s.pending === 1 ? "1 change waiting" : `${s.pending} changes waiting`;
  if (!s.last_attempt_at) return `${what} — not sent yet`;
  const ago = Math.max(0, (now - Date.parse(s.last_attempt_at)) / 1000);
  return `${what} — last tried ${ago < 1 ? "just now" : `${durationLabel(ago)} ago`}`;
}

/** "1 change not saved — review" (empty when there is none). */
export function refusedLabel(rejected: number): string {
  if (rejected === 0) return "";
  return rejected === 1 ? "1 change not saved — review" : `${rejected} changes not saved — review`;
}

/** The notice after the clinic's server was restored from a backup: what happened, what the desk did, what to check. */
export function restoredSentence(r: ServerRestored, c: Clinic): string {
  const resent =
    r.resent === 0 ? "" : r.resent === 1 ? " and sent its 1 unconfirmed change again" : ` and sent its ${r.resent} unconfirmed changes again`;
  return (
    `The clinic's server was restored from a backup (noticed ${formatInstant(r.noticed_at, c)}). ` +
    `This desk has reloaded the clinic's data${resent}. ` +
    "Work saved after that backup may be missing: please check today's bookings, records and payments."
  );
}

/**
 * The notice after this desk's copy of the data was found damaged and rebuilt: what was kept, what was lost
 * (named, to be entered again), where the damaged file is. The same sentences as `MirrorRebuilt::sentence` in Rust
 * (the CLI's).
 */
export function rebuiltSentence(r: MirrorRebuilt, c: Clinic): string {
  let s =
    "This desk's copy of the clinic's data was damaged and has been rebuilt from the server " +
    `(found ${formatInstant(r.noticed_at, c)}).`;
  if (r.kept === 1) s += " 1 unsent change was kept and will be sent.";
  else if (r.kept > 1) s += ` ${r.kept} unsent changes were kept and will be sent.`;
  if (r.lost.length === 1) {
    s += ` 1 unsent change could not be read and is lost: ${r.lost[0]}. Please enter it again.`;
  } else if (r.lost.length > 1) {
    s += ` ${r.lost.length} unsent changes could not be read and are lost: ${r.lost.join("; ")}. Please enter them again.`;
  }
  if (r.lost_unknown) {
    s +=
      " The list of changes not yet sent could not be read: any change made on this desk that is missing after " +
      "the reload is lost; please enter it again.";
  }
  if (r.views_lost > 0) {
    s += ` ${r.views_lost} record view${r.views_lost === 1 ? "" : "s"} could not be reported to the clinic's access log.`;
  }
  return s + ` The damaged file was kept for IT: ${r.aside}.`;
}

/** When the server was last heard from, in the clinic's zone. */
export function lastSyncedLabel(at: string | null, c: Clinic): string {
  return at ? `Up to date as of ${formatTime(at, c)}` : "Not synced yet";
}

/** Initial sync progress as a fraction in [0, 1]. */
export function syncProgress(p: { cursor: number; head: number }, start = 0): number {
  if (p.head <= start) return 1;
  return Math.min(1, Math.max(0, (p.cursor - start) / (p.head - start)));
}
