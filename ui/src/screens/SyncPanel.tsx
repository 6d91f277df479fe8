import { useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { api, errorMessage } from "../api";
import type { Mutation } from "../bindings/Mutation";
import type { RejectedEntry } from "../bindings/RejectedEntry";
import type { Table } from "../bindings/Table";
import { useLive } from "../events";
import { connectionLabel, durationLabel } from "../lib/format";

/** A mutation's own words for a person. */
export function describeMutation(m: Mutation): string {
  return m.type.replace(/_/g, " ");
}

const tableOf: Partial<Record<Mutation["type"], Table>> = {
  update_patient: "patients",
  delete_patient: "patients",
  reschedule_appointment: "appointments",
  update_treatment_record: "treatment_records",
  update_inventory_item: "inventory_items",
};

/** The same intent rebased on the row's current version, for "apply mine again". */
export function rebased(m: Mutation, currentVersion: number): Mutation {
  if ("base_version" in m.args) return { ...m, args: { ...m.args, base_version: currentVersion } } as Mutation;
  return m;
}

export function SyncPanel() {
  const { status } = useLive();
  const pending = useQuery({ queryKey: ["pending"], queryFn: api.pendingChanges });
  const rejected = useQuery({ queryKey: ["rejected"], queryFn: api.rejectedChanges });
  return (
    <div className="sync-panel">
      <div className="card">
        <h2>Sync</h2>
        {status && <p>{connectionLabel(status.connection)} · cursor {status.cursor}</p>}
        <button onClick={() => api.syncNow()}>Sync now</button>
      </div>
      <div className="card" data-testid="rejected-list">
        <h3>Changes the server did not accept</h3>
        {(rejected.data ?? []).length === 0 && <p className="muted">None.</p>}
        {(rejected.data ?? []).map((r) => <RejectedItem key={r.mutation_id} entry={r} />)}
      </div>
      <div className="card" data-testid="pending-list">
        <h3>Waiting to be sent</h3>
        {(pending.data ?? []).length === 0 && <p className="muted">Everything is saved on the server.</p>}
        <ul>
          {(pending.data ?? []).map((p) => (
            <li key={p.mutation_id}>
              #{p.mutation_id} {describeMutation(p.mutation)} · made {durationLabel(Math.max(0, (Date.now() - Date.parse(p.created_at)) / 1000))} ago
              {p.applied_seq != null && " · saved, finishing"}
            </li>
          ))}
        </ul>
      </div>
    </div>
  );
}

function RejectedItem({ entry }: { entry: RejectedEntry }) {
  const [error, setError] = useState<string | null>(null);
  const { rejection, mutation } = entry;
  const conflicts = rejection.conflicts ?? [];
  const fields = rejection.fields ?? [];
  async function discard() {
    await api.dismissRejected(entry.mutation_id);
  }
  async function retry(useMine: boolean) {
    setError(null);
    try {
      let m = mutation;
      const table = tableOf[m.type];
      if (useMine && table) {
        const row = await api.row(table, (m.args as { id: string }).id);
        if (!row) throw new Error("the record no longer exists");
        m = rebased(m, row.version);
      }
      await api.mutate(m);
      await api.dismissRejected(entry.mutation_id);
    } catch (err) {
      setError(errorMessage(err));
    }
  }
  return (
    <div className="rejected" data-testid="rejected-item">
      <p>
        <strong>{describeMutation(mutation)}</strong> — <span data-testid="rejected-reason">{rejection.message}</span>
      </p>
      {conflicts.length > 0 && (
        <table className="conflict" data-testid="conflict-review">
          <thead><tr><th>Field</th><th>Mine</th><th>Theirs (now on the server)</th></tr></thead>
          <tbody>
            {conflicts.map((c) => (
              <tr key={c.field}>
                <td>{c.field}{c.clinical && <span className="badge warn">clinical</span>}</td>
                <td className="mine">{display(c.yours)}</td>
                <td className="theirs">{display(c.theirs)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {fields.length > 0 && (
        <ul>{fields.map((f) => <li key={f.field}>{f.field}: {f.message}</li>)}</ul>
      )}
      <div className="actions">
        {conflicts.length > 0 ? (
          <>
            <button onClick={discard} data-testid="keep-theirs">Keep theirs</button>
            <button onClick={() => retry(true)} data-testid="use-mine">Use mine</button>
          </>
        ) : (
          <>
            <button onClick={() => retry(false)}>Try again</button>
            <button onClick={discard} data-testid="discard">Discard</button>
          </>
        )}
      </div>
      {error && <p className="error">{error}</p>}
    </div>
  );
}

function display(v: unknown): string {
  if (v === null || v === undefined) return "(empty)";
  return typeof v === "string" ? v : JSON.stringify(v);
}
