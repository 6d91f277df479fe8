// For administrators: who received or opened a patient's records, from the
// server's access log (needs a connection; the log is not mirrored).
import { useQuery } from "@tanstack/react-query";
import { api, errorMessage } from "../api";
import type { AccessKind } from "../bindings/AccessKind";
import { useDesk } from "../desk";
import { formatInstant } from "../lib/time";

const how: Record<AccessKind, string> = {
  view: "opened it",
  history: "read its history",
  pull: "received it (sync)",
  ws_catch_up: "received it (sync)",
  ws_live: "received it (live)",
  break_the_glass: "broke the glass (not their patient)",
  clinical: "received it (opened the chart)",
};

export function AccessLog({ patientId }: { patientId: string }) {
  const { clinic } = useDesk();
  const log = useQuery({ queryKey: ["access", patientId], queryFn: () => api.accessLog(patientId), staleTime: 0 });
  if (log.isError) return <p className="muted">The access log needs a connection to the server: {errorMessage(log.error)}</p>;
  if (!log.data) return <p className="muted">Loading who accessed this record…</p>;
  if (log.data.entries.length === 0) return <p className="muted">Nobody has received or opened this patient's clinical records yet.</p>;
  return (
    <table className="history" data-testid="access-log">
      <thead><tr><th>When</th><th>Who</th><th>What</th><th>How</th></tr></thead>
      <tbody>
        {log.data.entries.map((e) => (
          <tr key={e.seq}>
            <td>{formatInstant(e.at, clinic)}</td>
            <td>{e.user_name ?? "—"}</td>
            <td>{e.kind === "break_the_glass" ? "clinical records" : e.table.replace(/_/g, " ")}{e.row_ids.length > 1 ? ` (${e.row_ids.length})` : ""}</td>
            <td data-testid={`access-${e.kind}`}>
              {how[e.kind]}
              {e.reason ? `: “${e.reason}”` : ""}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
