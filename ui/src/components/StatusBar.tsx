import { useLive } from "../events";
import { connectionLabel, pendingLabel } from "../lib/format";

/** Always on screen: connection, last sync, pending and rejected changes. */
export function StatusBar({ onOpenSync }: { onOpenSync: () => void }) {
  const { status } = useLive();
  if (!status) return <footer className="statusbar">Starting…</footer>;
  const state = status.connection.state;
  return (
    <footer className="statusbar">
      <span className={`dot ${state}`} />
      <span data-testid="connection">{connectionLabel(status.connection)}</span>
      <span className="muted" data-testid="last-synced">
        {status.last_synced_at ? `Last synced ${status.last_synced_at.slice(11, 19)} UTC` : "Not synced yet"}
      </span>
      <button className="link" data-testid="pending" onClick={onOpenSync} hidden={status.pending === 0}>
        {pendingLabel(status)}
      </button>
      <button className="link danger" data-testid="rejected-count" onClick={onOpenSync} hidden={status.rejected === 0}>
        {status.rejected} not saved — review
      </button>
      {status.last_error && state !== "live" && <span className="muted small">{status.last_error}</span>}
    </footer>
  );
}
