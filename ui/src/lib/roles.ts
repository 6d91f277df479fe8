// Which screens a role gets. The server is the authority (it filters every
// row and checks every change); this only avoids showing empty screens.
import type { Role } from "../bindings/Role";

export type Screen = "patients" | "schedule" | "billing" | "inventory" | "staff" | "sync";

export function screensFor(role: Role): Screen[] {
  const screens: Screen[] = ["patients", "schedule"];
  if (role === "admin" || role === "reception") screens.push("billing");
  if (role !== "reception") screens.push("inventory");
  if (role === "admin") screens.push("staff");
  screens.push("sync");
  return screens;
}

export const canSeeRecords = (role: Role) => role === "doctor" || role === "admin";
export const canWriteRecords = (role: Role) => role === "doctor";
export const canBook = (role: Role) => role !== "assistant";
export const canReadHistory = (role: Role) => role === "doctor" || role === "admin";
