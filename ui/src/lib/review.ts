// What staff can do with a refused change: keep what is on the server
// (dismiss), apply their own again on top of it (rebased on the record's
// current version), or book one of the nearest free slots instead. Each is
// a normal mutation through the same rules, so it is checked and audited.
import type { QueryClient } from "@tanstack/react-query";
import { api, newId } from "../api";
import type { FreeSlot } from "../bindings/FreeSlot";
import type { Mutation } from "../bindings/Mutation";
import type { RejectedEntry } from "../bindings/RejectedEntry";
import type { Table } from "../bindings/Table";
import { minutesBetween } from "./time";

const tableOf: Partial<Record<Mutation["type"], Table>> = {
  update_patient: "patients",
  delete_patient: "patients",
  reschedule_appointment: "appointments",
  update_treatment_record: "treatment_records",
  update_inventory_item: "inventory_items",
};

/** The same intent rebased on the row's current version, for "re-apply mine". */
export function rebased(m: Mutation, currentVersion: number): Mutation {
  if ("base_version" in m.args) return { ...m, args: { ...m.args, base_version: currentVersion } } as Mutation;
  return m;
}

/** Removes a refusal from the list and re-reads the list at once. */
export async function dismiss(client: QueryClient, entry: RejectedEntry): Promise<void> {
  await api.dismissRejected(entry.mutation_id);
  await client.invalidateQueries({ queryKey: ["rejected"] });
}

/** Sends the refused change again (rebased on the current version when it edits a record); dismisses the refusal once queued. */
export async function reapply(client: QueryClient, entry: RejectedEntry): Promise<void> {
  let m = entry.mutation;
  const table = tableOf[m.type];
  if (table) {
    const row = await api.row(table, (m.args as { id: string }).id);
    if (row) m = rebased(m, row.version);
  }
  if (m.type === "book_appointment") m = { ...m, args: { ...m.args, id: newId() } };
  await api.mutate(m);
  await dismiss(client, entry);
}

/** The booking or move a refusal was about, if it was one: what free slots are looked up for. */
export function slotRequest(m: Mutation, appointment?: { patient_id: string; doctor_id: string }) {
  if (m.type === "book_appointment") {
    const a = m.args;
    return { doctor_id: a.doctor_id, patient_id: a.patient_id, start: a.start, minutes: minutesBetween(a.start, a.end), moving: undefined as string | undefined };
  }
  if (m.type === "reschedule_appointment" && appointment) {
    const a = m.args;
    return { doctor_id: a.doctor_id ?? appointment.doctor_id, patient_id: appointment.patient_id, start: a.start, minutes: minutesBetween(a.start, a.end), moving: a.id };
  }
  return null;
}

/** The refused booking (or move) again, at a free slot instead. */
export function atSlot(m: Mutation, slot: FreeSlot, currentVersion?: number): Mutation | null {
  if (m.type === "book_appointment") return { ...m, args: { ...m.args, id: newId(), start: slot.start, end: slot.end } };
  if (m.type === "reschedule_appointment")
    return { ...m, args: { ...m.args, start: slot.start, end: slot.end, base_version: currentVersion ?? m.args.base_version } };
  return null;
}
