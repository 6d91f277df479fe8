// Which cached queries a "store-changed" event makes stale. Queries are keyed
// by what they read; an event names the tables it touched, so a screen
// re-reads only when its data changed. Unit-tested.
import type { StoreEvent } from "../bindings/StoreEvent";
import type { Table } from "../bindings/Table";

export type QueryRoot = "rows" | "search" | "schedule" | "chart" | "lowStock" | "pending" | "rejected" | "session" | "slots" | "dayReport";

const readers: Record<Table, QueryRoot[]> = {
  staff: ["rows", "schedule", "session", "dayReport"],
  patients: ["rows", "search", "chart", "schedule", "slots", "dayReport"],
  // Free-slot suggestions are computed from the appointments this desk holds.
  appointments: ["rows", "schedule", "chart", "slots"],
  treatment_records: ["rows", "chart"],
  // The end-of-day report adds up invoices and payments (names from patients and staff).
  invoices: ["rows", "chart", "dayReport"],
  payments: ["rows", "chart", "dayReport"],
  inventory_items: ["rows", "lowStock"],
  referrals: ["rows", "chart"],
  price_items: ["rows"],
};

/** Query keys to invalidate: `[root]` or `[root, table]` prefixes. */
export function staleKeys(event: Pick<StoreEvent, "tables" | "origin">): unknown[][] {
  if (event.origin === "session") return [[]]; // everything
  const keys: unknown[][] = [["pending"], ["rejected"]];
  const seen = new Set<string>();
  for (const table of event.tables) {
    for (const root of readers[table]) {
      const key = root === "rows" ? [root, table] : [root];
      const id = JSON.stringify(key);
      if (!seen.has(id)) {
        seen.add(id);
        keys.push(key);
      }
    }
  }
  return keys;
}
