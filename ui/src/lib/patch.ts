// Builds the minimal patch of an edit form: only the fields the user
// changed, with "" meaning "clear" for optional fields. Unit-tested.
import type { Patient } from "../bindings/Patient";
import type { PatientPatch } from "../bindings/PatientPatch";
import type { Sex } from "../bindings/Sex";

export interface PatientForm {
  first_name: string;
  last_name: string;
  date_of_birth: string;
  phone: string;
  email: string;
  address: string;
  /** "" when not recorded. */
  sex: Sex | "";
  emergency_contact: string;
  emergency_phone: string;
  insurer: string;
  insurance_number: string;
  alerts: string;
}

/** The optional text fields after `address`, in form order. */
export const MORE_TEXT = ["emergency_contact", "emergency_phone", "insurer", "insurance_number", "alerts"] as const;

export function formOf(p: Patient | null): PatientForm {
  return {
    first_name: p?.first_name ?? "",
    last_name: p?.last_name ?? "",
    date_of_birth: p?.date_of_birth ?? "",
    phone: p?.phone ?? "",
    email: p?.email ?? "",
    address: p?.address ?? "",
    sex: p?.sex ?? "",
    emergency_contact: p?.emergency_contact ?? "",
    emergency_phone: p?.emergency_phone ?? "",
    insurer: p?.insurer ?? "",
    insurance_number: p?.insurance_number ?? "",
    alerts: p?.alerts ?? "",
  };
}

export function patientPatch(before: Patient, form: PatientForm): PatientPatch {
  const patch: PatientPatch = {};
  const trimmed = (s: string) => s.trim();
  if (trimmed(form.first_name) !== before.first_name) patch.first_name = trimmed(form.first_name);
  if (trimmed(form.last_name) !== before.last_name) patch.last_name = trimmed(form.last_name);
  if (form.date_of_birth !== before.date_of_birth) patch.date_of_birth = form.date_of_birth;
  const optional = (value: string, old: string | null) => {
    const v = trimmed(value);
    if (v === (old ?? "")) return undefined;
    return v === "" ? null : v;
  };
  const phone = optional(form.phone, before.phone);
  if (phone !== undefined) patch.phone = phone;
  const email = optional(form.email, before.email);
  if (email !== undefined) patch.email = email;
  const address = optional(form.address, before.address);
  if (address !== undefined) patch.address = address;
  for (const k of MORE_TEXT) {
    const v = optional(form[k], before[k] ?? null);
    if (v !== undefined) patch[k] = v;
  }
  if (form.sex !== (before.sex ?? "")) patch.sex = form.sex === "" ? null : form.sex;
  return patch;
}

export function isEmptyPatch(p: PatientPatch): boolean {
  return Object.keys(p).length === 0;
}

/** Field errors of a rejection, by field name, for inline display. */
export function fieldErrors(fields: { field: string; message: string }[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of fields ?? []) out[f.field] = f.message;
  return out;
}
