// What a role may do, from the permission matrix the server enforces
// (`bindings/permissions.ts`, generated from clinic_shared::permissions by
// the Rust tests, never written by hand). The server stays the authority;
// this decides what the desk offers, so nobody fills a form they may not send.
import type { AppointmentStatus } from "../bindings/AppointmentStatus";
import type { Mutation } from "../bindings/Mutation";
import { PERMISSIONS } from "../bindings/permissions";
import type { Role } from "../bindings/Role";
import type { Table } from "../bindings/Table";

export type Screen = "patients" | "schedule" | "waiting" | "referrals" | "billing" | "inventory" | "staff" | "sync";

/** Whether `role` may send mutations of `kind`. */
export const can = (role: Role, kind: Mutation["type"]) => PERMISSIONS[role].send.includes(kind);
/** Whether `role` receives the rows of `table`. */
export const canRead = (role: Role, table: Table) => PERMISSIONS[role].read.includes(table);
/** Whether `role` may move an appointment to `status`. */
export const canSetStatus = (role: Role, status: AppointmentStatus) =>
  can(role, "set_appointment_status") && PERMISSIONS[role].appointmentStatuses.includes(status);

export function screensFor(role: Role): Screen[] {
  const screens: Screen[] = ["patients", "schedule"];
  if (canRead(role, "appointments")) screens.push("waiting");
  if (canRead(role, "referrals")) screens.push("referrals");
  if (canRead(role, "invoices")) screens.push("billing");
  if (canRead(role, "inventory_items")) screens.push("inventory");
  if (can(role, "create_staff")) screens.push("staff");
  screens.push("sync");
  return screens;
}

export const canSeeRecords = (role: Role) => canRead(role, "treatment_records");
export const canWriteRecords = (role: Role) => can(role, "add_treatment_record");
export const canBook = (role: Role) => can(role, "book_appointment");
export const canReadHistory = (role: Role) => PERMISSIONS[role].history.includes("patients");
export const canEditPatients = (role: Role) => can(role, "update_patient");
export const canRegisterPatients = (role: Role) => can(role, "create_patient");
export const canArchive = (role: Role) => can(role, "archive_patient");
export const canReadAudit = (role: Role) => PERMISSIONS[role].readAudit;
