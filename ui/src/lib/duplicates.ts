// The duplicate-patient check of the registration form: the same person
// registered twice splits their chart, their visits and their bills, so the
// desk warns before a second record is made. A match is the same name and
// date of birth, or the same phone number; spelling differences that are not
// differences (case, accents, spaces, the phone's punctuation or its
// international prefix) do not hide one.
import type { Entity } from "../bindings/Entity";
import type { Patient } from "../bindings/Patient";

export type DuplicateReason = "name_and_birth" | "phone";

export interface Duplicate {
  patient: Entity<Patient>;
  reasons: DuplicateReason[];
}

/** A name as compared: lower case, accents and inner spacing removed. */
export function nameKey(s: string): string {
  return s
    .normalize("NFKD")
    .replace(/\p{M}/gu, "")
    .toLowerCase()
    .replace(/[\s\-'’.]+/g, "");
}

/** A phone number as compared: its digits, with an international 00 read as +; short ones compare as nothing. */
export function phoneKey(s: string | null | undefined): string | null {
  if (!s) return null;
  let digits = s.replace(/\D/g, "");
  if (digits.startsWith("00")) digits = digits.slice(2);
  return digits.length >= 6 ? digits : null;
}

/** The registered patients the typed details may be; at most `limit`, name matches first. */
export function findDuplicates(
  typed: { first_name: string; last_name: string; date_of_birth: string | null; phone: string },
  patients: Entity<Patient>[],
  limit = 3,
): Duplicate[] {
  const first = nameKey(typed.first_name);
  const last = nameKey(typed.last_name);
  const phone = phoneKey(typed.phone);
  const out: Duplicate[] = [];
  for (const p of patients) {
    const reasons: DuplicateReason[] = [];
    if (first && last && typed.date_of_birth && p.data.date_of_birth === typed.date_of_birth && nameKey(p.data.first_name) === first && nameKey(p.data.last_name) === last) {
      reasons.push("name_and_birth");
    }
    if (phone && phoneKey(p.data.phone) === phone) reasons.push("phone");
    if (reasons.length) out.push({ patient: p, reasons });
  }
  out.sort((a, b) => Number(b.reasons.includes("name_and_birth")) - Number(a.reasons.includes("name_and_birth")));
  return out.slice(0, limit);
}
