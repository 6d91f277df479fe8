import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { api, errorMessage } from "../api";
import type { FieldConflict } from "../bindings/FieldConflict";
import type { RejectedEntry } from "../bindings/RejectedEntry";
import { useDesk } from "../desk";
import { useLive } from "../events";
import { describeMutation, fieldLabel, fieldSentence, rejectionSentence } from "../lib/errors";
import { saveLabel, syncSentence } from "../lib/format";
import { dismiss, reapply } from "../lib/review";
import { durationLabel, formatInstant } from "../lib/time";
import { valueWords } from "./Patients";

export { rebased } from "../lib/review";

export function SyncPanel() {
  const { status } = useLive();
  const { names } = useDesk();
  const pending = useQuery({ queryKey: ["pending"], queryFn: api.pendingChanges });
  const rejected = useQuery({ queryKey: ["rejected"], queryFn: api.rejectedChanges });
  return (
    <div className="sync-panel">
      <div className="card">
        <h2>Sync</h2>
        {status && (
          <p data-testid="sync-summary">
            {saveLabel(status, Date.now())} · {syncSentence(status.connection)}
          </p>
        )}
        <button onClick={() => api.syncNow()}>Send and receive now</button>
      </div>
      <div className="card" data-testid="rejected-list">
        <h3>Changes the server did not accept</h3>
        {(rejected.data ?? []).length === 0 && <p className="muted">None.</p>}
        {(rejected.data ?? []).map((r) => (
          <RejectedItem key={r.mutation_id} entry={r} />
        ))}
      </div>
      <div className="card" data-testid="pending-list">
        <h3>Waiting to be sent</h3>
        {(pending.data ?? []).length === 0 && <p className="muted">Everything is saved on the server.</p>}
        <ul>
          {(pending.data ?? []).map((p) => (
            <li key={p.mutation_id}>
              {describeMutation(p.mutation, names)} · made {durationLabel(Math.max(0, (Date.now() - Date.parse(p.created_at)) / 1000))} ago
              {p.applied_seq != null && " · saved, finishing"}
            </li>
          ))}
        </ul>
      </div>
    </div>
  );
}

function RejectedItem({ entry }: { entry: RejectedEntry }) {
  const { names, clinic } = useDesk();
  const client = useQueryClient();
  const [error, setError] = useState<string | null>(null);
  const { rejection, mutation } = entry;
  const conflicts = rejection.conflicts ?? [];
  const fields = rejection.fields ?? [];
  const run = async (f: () => Promise<void>) => {
    setError(null);
    try {
      await f();
    } catch (err) {
      setError(errorMessage(err));
    }
  };
  const changedBy = (c: FieldConflict) => {
    const who = c.changed_by ? (names.staff(c.changed_by) ?? "another user") : "another user";
    return c.changed_at ? `${who}, ${formatInstant(c.changed_at, clinic)}` : who;
  };
  return (
    <div className="rejected" data-testid="rejected-item">
      <p>
        <strong>{describeMutation(mutation, names)}</strong> — <span data-testid="rejected-reason">{rejectionSentence(rejection, names)}</span>
        <span className="muted small"> (refused {formatInstant(entry.rejected_at, clinic)})</span>
      </p>
      {conflicts.length > 0 && (
        <table className="conflict" data-testid="conflict-review">
          <thead>
            <tr>
              <th scope="col">Field</th>
              <th scope="col">Before</th>
              <th scope="col">Theirs (now on the server)</th>
              <th scope="col">Changed by</th>
              <th scope="col">Mine</th>
            </tr>
          </thead>
          <tbody>
            {conflicts.map((c) => (
              <tr key={c.field}>
                <td>
                  {fieldLabel(c.field)}
                  {c.clinical && <span className="badge warn">clinical</span>}
                </td>
                <td className="base">{c.base === undefined ? "—" : valueWords(c.field, c.base, clinic, names)}</td>
                <td className="theirs">
                  {c.base !== undefined && <span className="muted">→ </span>}
                  {valueWords(c.field, c.theirs, clinic, names)}
                </td>
                <td data-testid="conflict-who">{changedBy(c)}</td>
                <td className="mine">{valueWords(c.field, c.yours, clinic, names)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {fields.length > 1 && (
        <ul>
          {fields.map((f) => (
            <li key={f.field}>{fieldSentence(f, clinic.locale)}</li>
          ))}
        </ul>
      )}
      <div className="actions">
        <button onClick={() => run(() => dismiss(client, entry))} data-testid={conflicts.length > 0 ? "keep-theirs" : "discard"}>
          {conflicts.length > 0 ? "Keep theirs" : "Discard"}
        </button>
        <button onClick={() => run(() => reapply(client, entry))} data-testid={conflicts.length > 0 ? "use-mine" : "try-again"}>
          {conflicts.length > 0 ? "Re-apply mine" : "Try again"}
        </button>
      </div>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}
