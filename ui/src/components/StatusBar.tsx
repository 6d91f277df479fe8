import { useEffect, useState } from "react";
import { useLive } from "../events";
import { connectionLabel, lastSyncedLabel, refusedLabel, saveLabel } from "../lib/format";
import type { Clinic } from "../lib/time";

/** Always on screen, in plain words: connection, whether everything is saved, refused changes. */
export function StatusBar({ onOpenSync, clinic }: { onOpenSync: () => void; clinic: Clinic }) {
  const { status } = useLive();
  // "last tried N s ago" moves on by itself.
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, []);
  if (!status) return <footer className="statusbar">Starting…</footer>;
  const state = status.connection.state;
  return (
    <footer className="statusbar" role="status" aria-live="polite" aria-label="Sync status">
      <span className={`dot ${state}`} aria-hidden="true" />
      <span data-testid="connection">{connectionLabel(status.connection)}</span>
      <span data-testid="saved" hidden={status.pending > 0}>
        {saveLabel(status, now)}
      </span>
      <button className="link" data-testid="pending" onClick={onOpenSync} hidden={status.pending === 0}>
        {saveLabel(status, now)}
      </button>
      <button className="link danger" data-testid="rejected-count" onClick={onOpenSync} hidden={status.rejected === 0}>
        {refusedLabel(status.rejected)}
      </button>
      <span className="muted" data-testid="last-synced">
        {lastSyncedLabel(status.last_synced_at, clinic)}
      </span>
    </footer>
  );
}
