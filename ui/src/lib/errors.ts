// Every error the desk can show, as a sentence for staff: field problems by
// their code (mapped to the field they belong to), refusals by their code
// and detail (with the names and times of the records involved, in the
// clinic's zone), and the engine's own errors by their code. No raw code,
// id, type name or cents value reaches the screen. The switches are
// exhaustive over the generated types, so a new code fails the type-check
// until it has its sentence. Unit-tested (Vitest).
import type { AppError } from "../api";
import type { AppointmentStatus } from "../bindings/AppointmentStatus";
import type { FieldError } from "../bindings/FieldError";
import type { Mutation } from "../bindings/Mutation";
import type { ReferralStatus } from "../bindings/ReferralStatus";
import type { Rejection } from "../bindings/Rejection";
import type { Table } from "../bindings/Table";
import { formatDayOf, formatTime, formatTimeRange, type Clinic } from "./time";

/** What a sentence needs to name records: names from the local mirror, and the clinic's zone. */
export interface Names {
  clinic: Clinic;
  /** "Anna Meyer", or null when this desk does not know the patient. */
  patient(id: string): string | null;
  /** A staff member's display name ("Dr. Dana Doyle"), or null. */
  staff(id: string): string | null;
}

function unreachable(x: never): never {
  throw new Error(`unhandled case ${JSON.stringify(x)}`);
}

const LABELS: Record<string, string> = {
  first_name: "First name",
  last_name: "Last name",
  date_of_birth: "Date of birth",
  phone: "Phone",
  email: "E-mail",
  address: "Address",
  sex: "Sex / gender",
  emergency_contact: "Emergency contact",
  emergency_phone: "Emergency contact's phone",
  insurer: "Insurer",
  insurance_number: "Insurance number",
  alerts: "Allergies and alerts",
  start: "Time",
  end: "End time",
  date: "Date",
  time: "Time",
  minutes: "Length",
  reason: "Reason",
  doctor_id: "Doctor",
  patient_id: "Patient",
  amount_cents: "Amount",
  delta: "Amount",
  notes: "Notes",
  diagnosis: "Diagnosis",
  procedures: "Procedures",
  username: "Username",
  display_name: "Name",
  password: "Password",
  new_password: "New password",
  name: "Name",
  unit: "Unit",
  quantity: "Quantity",
  reorder_level: "Reorder level",
  referred_to: "Referred to",
  lines: "The invoice",
  description: "Description",
  code: "Code",
  visit_minutes: "Visit length",
  retired: "Retired",
  unit_price_cents: "Unit price",
  total_cents: "The total",
  paid_cents: "The amount paid",
  fields: "The change",
  base_version: "The record",
};

/** A field's name for people: `first_name` → "First name", `lines.2.quantity` → "Quantity (line 3)". */
export function fieldLabel(path: string): string {
  const line = /^lines\.(\d+)\.(\w+)$/.exec(path);
  if (line) return `${LABELS[line[2]] ?? "A value"} (line ${Number(line[1]) + 1})`;
  const item = /^procedures\.(\d+)$/.exec(path);
  if (item) return `Procedure ${Number(item[1]) + 1}`;
  return LABELS[path] ?? "A value";
}

/** Cents as money in the locale ("45.00", "45,00"). */
export function formatMoney(cents: number, locale = "en-US"): string {
  return new Intl.NumberFormat(locale, { minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(cents / 100);
}

/** A field's bound for people: money for cents fields, a plain number otherwise. */
function bound(field: string, n: number | undefined, locale: string): string {
  if (n === undefined) return "";
  return /_cents$/.test(field) ? formatMoney(n, locale) : new Intl.NumberFormat(locale).format(n);
}

/** One field problem as a sentence ("Phone is not a phone number."). */
export function fieldSentence(e: FieldError, locale = "en-US"): string {
  const label = fieldLabel(e.field);
  const min = bound(e.field, e.min, locale);
  const max = bound(e.field, e.max, locale);
  switch (e.code) {
    case "required":
      return `${label} is needed.`;
    case "too_long":
      return `${label} is too long (at most ${max} characters).`;
    case "too_short":
      return `${label} is too short (at least ${min} characters).`;
    case "control_characters":
      return `${label} contains characters that cannot be saved; retype it.`;
    case "not_a_phone":
      return `${label} is not a phone number (5 to 20 digits, a leading + is allowed).`;
    case "not_an_email":
      return `${label} is not an e-mail address (like name@example.org).`;
    case "not_a_username":
      return `${label} may use 2 to 40 lowercase letters, digits, dots, dashes or underscores.`;
    case "in_the_future":
      return `${label} cannot be in the future.`;
    case "too_early":
      return `${label} cannot be before ${e.min ?? "then"}.`;
    case "end_not_after_start":
      return "The end must be after the start.";
    case "too_long_appointment":
      return "An appointment can last at most 12 hours.";
    case "in_the_past":
      return `${label} is in the past; choose a later time.`;
    case "out_of_range":
      if (e.min !== undefined && e.max !== undefined) return `${label} must be between ${min} and ${max}.`;
      if (e.min !== undefined) return `${label} must be at least ${min}.`;
      return `${label} must be at most ${max}.`;
    case "zero":
      return `${label} cannot be zero.`;
    case "empty":
      return `${label} needs at least one line.`;
    case "too_many":
      return `${label} has too many entries (at most ${max}).`;
    case "mismatch":
      return `${label} does not add up; reload and try again.`;
    case "taken":
      return `${label} is already in use; choose another.`;
    case "password_too_short":
      return `${label} must be at least ${min} characters; a few unrelated words make a long password that is easy to remember.`;
    case "password_common":
      return `${label} is one of the most common passwords and would be guessed quickly; choose another.`;
    case "nothing_changed":
      return "Nothing was changed.";
    case "stale_version":
      return "This record changed on another desk; reopen it and try again.";
    case "exceeds_outstanding":
      return `${label} is more than the ${max} still owed.`;
    case "invalid":
      return `${label} is not valid.`;
    default:
      return unreachable(e.code);
  }
}

/** Field problems by field name, for inline messages. */
export function fieldSentences(fields: FieldError[] | undefined, locale = "en-US"): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of fields ?? []) if (!(f.field in out)) out[f.field] = fieldSentence(f, locale);
  return out;
}

const TABLE_WORDS: Record<Table, string> = {
  staff: "staff member",
  patients: "patient",
  appointments: "appointment",
  treatment_records: "treatment record",
  invoices: "invoice",
  payments: "payment",
  inventory_items: "stock item",
  referrals: "referral",
  price_items: "price list entry",
};

const STATUS_WORDS: Record<AppointmentStatus, string> = {
  scheduled: "booked",
  checked_in: "checked in",
  in_progress: "with the doctor",
  completed: "completed",
  cancelled: "cancelled",
  no_show: "marked as no-show",
};

const REFERRAL_WORDS: Record<ReferralStatus, string> = {
  draft: "a draft",
  sent: "sent",
  accepted: "accepted",
  completed: "completed",
  cancelled: "cancelled",
};

/** A referral status in words ("sent", "a draft"). */
export function referralWords(s: string): string {
  return (REFERRAL_WORDS as Record<string, string>)[s] ?? "changed";
}

/** An appointment status in words ("checked in"). */
export function statusWords(s: string): string {
  return (STATUS_WORDS as Record<string, string>)[s] ?? (s === "moved" ? "moved" : "changed");
}

const patientName = (n: Names, id: string) => n.patient(id) ?? "this patient";
const staffName = (n: Names, id: string) => n.staff(id) ?? "the doctor";

/** What a change was about, in words ("Booking Anna Meyer with Dr. Dana Doyle on Mon 3 Feb 2031 at 15:30"). */
export function describeMutation(m: Mutation, n: Names): string {
  const c = n.clinic;
  switch (m.type) {
    case "create_staff":
      return `Adding ${m.args.display_name || "a staff member"}`;
    case "set_staff_role":
      return `Changing the role of ${n.staff(m.args.id) ?? "a staff member"}`;
    case "set_staff_active":
      return `${m.args.active ? "Enabling" : "Disabling"} ${n.staff(m.args.id) ?? "a staff member"}`;
    case "create_patient":
      return `Registering ${[m.args.first_name, m.args.last_name].join(" ").trim() || "a patient"}`;
    case "update_patient":
      return `Editing ${patientName(n, m.args.id)}`;
    case "delete_patient":
      return `Deleting ${patientName(n, m.args.id)}`;
    case "archive_patient":
      return `Archiving ${patientName(n, m.args.id)}`;
    case "restore_patient":
      return `Restoring ${patientName(n, m.args.id)}`;
    case "book_appointment":
      return `Booking ${patientName(n, m.args.patient_id)} with ${staffName(n, m.args.doctor_id)} on ${formatDayOf(m.args.start, c)} at ${formatTime(m.args.start, c)}`;
    case "reschedule_appointment":
      return `Moving an appointment to ${formatDayOf(m.args.start, c)} at ${formatTime(m.args.start, c)}`;
    case "set_appointment_status":
      return m.args.status === "scheduled" ? "Undoing an appointment's last step" : `Marking an appointment as ${statusWords(m.args.status)}`;
    case "add_treatment_record":
      return `Adding a treatment record for ${patientName(n, m.args.patient_id)}`;
    case "update_treatment_record":
      return "Editing a treatment record";
    case "create_invoice":
      return `Issuing an invoice for ${patientName(n, m.args.patient_id)}`;
    case "void_invoice":
      return "Voiding an invoice";
    case "record_payment":
      return "Recording a payment";
    case "update_invoice_lines":
      return "Changing a draft invoice";
    case "issue_invoice":
      return "Issuing an invoice";
    case "refund_payment":
      return "Recording a refund";
    case "create_price_item":
      return `Adding ${m.args.code || "an entry"} to the price list`;
    case "update_price_item":
      return "Changing the price list";
    case "create_inventory_item":
      return `Adding ${m.args.name || "a stock item"}`;
    case "update_inventory_item":
      return "Editing a stock item";
    case "adjust_stock":
      return m.args.delta < 0 ? `Taking ${-m.args.delta} from stock` : `Adding ${m.args.delta} to stock`;
    case "create_referral":
      return `Referring ${patientName(n, m.args.patient_id)}`;
    case "set_referral_status":
      return `Marking a referral as ${referralWords(m.args.status)}`;
    case "hand_over_treatment_record":
      return `Handing a treatment record over to ${staffName(n, m.args.doctor_id)}`;
    default:
      return unreachable(m);
  }
}

/** Why a change was refused, as a sentence naming the records involved. */
export function rejectionSentence(r: Rejection, n: Names): string {
  const c = n.clinic;
  const d = r.detail;
  switch (r.code) {
    case "validation": {
      const first = r.fields?.[0];
      return first ? fieldSentence(first, c.locale) : "Some details are missing or not valid.";
    }
    case "forbidden":
      if (d?.kind === "record_owner")
        return `This treatment record is ${staffName(n, d.doctor_id)}'s; only they can change it, or an administrator can hand it over to you.`;
      if (d?.kind === "withheld_field") return `Your role may not see or set the ${fieldLabel(d.field).toLowerCase()} of a ${TABLE_WORDS[d.table]}.`;
      return "Your role does not allow this change. Ask a colleague who may make it.";
    case "not_found":
      return d?.kind === "reference" && d.problem === "deleted"
        ? `This ${TABLE_WORDS[d.table]} was deleted on another desk.`
        : "This record no longer exists; it may have been removed on another desk.";
    case "already_exists":
      return r.fields?.length ? fieldSentence(r.fields[0], c.locale) : "This was already saved.";
    case "conflict": {
      const fields = (r.conflicts ?? []).map((x) => fieldLabel(x.field).toLowerCase());
      return `Someone else changed ${fields.join(", ") || "this record"} meanwhile; review both versions.`;
    }
    case "double_booked": {
      if (d?.kind !== "clash") return "That time is already taken.";
      const when = `${formatTimeRange(d.start, d.end, c)} on ${formatDayOf(d.start, c)}`;
      if (d.with === "doctor") return `${staffName(n, d.doctor_id)} already has ${patientName(n, d.patient_id)} at ${when}.`;
      return `${patientName(n, d.patient_id)} already has an appointment with ${staffName(n, d.doctor_id)} at ${when}.`;
    }
    case "insufficient_stock":
      return d?.kind === "stock"
        ? `Only ${d.available} in stock; ${d.requested} cannot be taken.`
        : "There is not enough in stock.";
    case "patient_unavailable":
      if (d?.kind === "reference" && d.problem === "archived") return `${patientName(n, d.id)} is archived; restore the patient first.`;
      if (d?.kind === "reference" && d.problem === "deleted") return "This patient was deleted.";
      return "This patient is not known on this desk.";
    case "invalid_reference": {
      if (d?.kind !== "reference") return "A record this change refers to is not available.";
      switch (d.problem) {
        case "not_a_doctor":
          return `${n.staff(d.id) ?? "That staff member"} is not a doctor.`;
        case "disabled":
          return `${n.staff(d.id) ?? "That doctor"}'s account is disabled.`;
        case "other_patient":
          return "That visit belongs to another patient.";
        case "archived":
          return "That patient is archived.";
        case "deleted":
        case "unknown":
          return `The ${TABLE_WORDS[d.table]} this refers to is not available.`;
        default:
          return unreachable(d.problem);
      }
    }
    case "invalid_transition":
      if (d?.kind === "transition") {
        if (d.table === "referrals") return `A referral that is ${referralWords(d.from)} cannot be ${referralWords(d.to)}; it may have been changed on another desk.`;
        if (d.to === "moved") return `Only booked appointments can be moved; this one is ${statusWords(d.from)}.`;
        return `An appointment that is ${statusWords(d.from)} cannot be ${statusWords(d.to)}.`;
      }
      return "That step is not possible now.";
    case "rule_violation": {
      if (d?.kind === "outstanding") return `The payment is more than the ${formatMoney(d.outstanding_cents, c.locale)} still owed.`;
      if (d?.kind === "future_appointments")
        return `${d.count === 1 ? "One future appointment is" : `${d.count} future appointments are`} still booked; cancel ${d.count === 1 ? "it" : "them"} to archive.`;
      if (d?.kind !== "rule") return "This change breaks a clinic rule.";
      switch (d.rule) {
        case "own_admin_role":
          return "You cannot remove your own administrator role.";
        case "own_account":
          return "You cannot disable your own account.";
        case "invoice_not_voidable":
          return "This invoice is already void.";
        case "invoice_closed":
          return "This invoice takes no payments: it is a draft not yet issued, already paid, or void.";
        case "invoice_issued":
          return "This invoice is issued, so its lines cannot change. Void it and bill again.";
        case "invoice_empty":
          return "This draft has no lines yet. Add what was provided, then issue it.";
        case "refund_not_due":
          return "Only money paid on a void invoice can be refunded, and no more than was paid. Void the invoice first, or check the amount.";
        case "total_too_large":
          return "The invoice total is too large.";
        case "already_archived":
          return "This patient is already archived.";
        case "not_archived":
          return "This patient is not archived.";
        case "has_future_appointments":
          return "The patient still has future appointments.";
        case "result_expired":
          return "This change was made long ago and its result is no longer known; check the record.";
        case "unreadable":
          return "A stored record could not be read. Ask IT to check the server.";
        default:
          return unreachable(d.rule);
      }
    }
    case "mutation_id_reused":
      return "This desk sent two different changes under one number, so the second was not saved. Make the change again; if this keeps happening, tell IT.";
    default:
      return unreachable(r.code);
  }
}

function isAppError(e: unknown): e is AppError {
  return typeof e === "object" && e !== null && "code" in e && "message" in e;
}

/** Any error from a command, as a sentence. */
export function errorSentence(e: unknown, n: Names | null): string {
  if (!isAppError(e)) {
    // A value the command could not even read (the form let through
    // something it should not have): say so without the parser's words.
    return "A value in the form could not be read; check it and try again.";
  }
  switch (e.code) {
    case "rejected":
      if (e.rejection && n) return rejectionSentence(e.rejection, n);
      return "This change breaks a clinic rule.";
    case "database_busy":
      return "The clinic's data on this computer is in use by another program; close other copies of Clinic Sync and try again.";
    case "database_corrupt":
      return "The clinic's data on this computer is damaged; nothing was changed. Ask IT for help.";
    case "database_error":
      return "This computer could not save the change; try again, and restart the app if it keeps happening.";
    case "io_error":
      return "This computer could not read or write the clinic's data folder.";
    case "not_signed_in":
      return "You are signed out; sign in again to continue.";
    case "pending_changes":
      return "Some changes have not reached the server yet; wait until they are saved.";
    case "offline":
      return "The server cannot be reached right now.";
    case "unauthorized":
      // The engine's own sentence ("wrong username or password …").
      return sentenceCase(e.message);
    case "server_error":
      return "The server could not do this now; try again in a moment.";
    case "protocol_error":
      return "The server answered in a way this app does not understand; it may need updating.";
    case "invalid_input":
      return "That value cannot be used here.";
    case "stopped":
      return "Part of the app stopped; restart Clinic Sync.";
    case "print_failed":
      return "The document could not be made on this computer; try again, and tell IT if it keeps failing.";
    case "not_in_care":
      return "This patient is not in your care: their clinical notes are open to you only if you break the glass.";
    default:
      return "Something went wrong; try again.";
  }
}

function sentenceCase(s: string): string {
  const t = s.trim();
  if (!t) return "Sign in again.";
  const first = t[0].toUpperCase() + t.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}
