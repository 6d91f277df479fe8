import { describe, expect, it } from "vitest";
import type { FieldCode } from "../bindings/FieldCode";
import type { Mutation } from "../bindings/Mutation";
import type { RejectCode } from "../bindings/RejectCode";
import type { Rejection } from "../bindings/Rejection";
import type { Rule } from "../bindings/Rule";
import { describeMutation, errorSentence, fieldLabel, fieldSentence, formatMoney, rejectionSentence, type Names } from "./errors";
import { parseMoney } from "./money";

const ANNA = "0190a5d0-0000-7000-8000-00000000a001";
const BEN = "0190a5d0-0000-7000-8000-00000000b002";
const DOYLE = "0190a5d0-0000-7000-8000-00000000d003";
const APPT = "0190a5d0-0000-7000-8000-00000000e004";
const names: Names = {
  clinic: { zone: "Europe/Berlin", locale: "en-GB" },
  patient: (id) => ({ [ANNA]: "Anna Meyer", [BEN]: "Ben Roth" })[id] ?? null,
  staff: (id) => (id === DOYLE ? "Dr Doyle" : null),
};

/** What must never reach the screen: ids, wire codes, type names, raw instants, cents. */
function clean(text: string) {
  expect(text, text).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-/);
  expect(text, text).not.toMatch(/\b[a-z]+_[a-z_]+\b/); // snake_case codes and field names
  expect(text, text).not.toMatch(/\d{4}-\d{2}-\d{2}T|Z\b/);
  expect(text, text).not.toMatch(/cents|undefined|null|NaN|\[object|invalid type|expected i64|Option|Uuid|Timestamp/);
  expect(text, text).toMatch(/^[A-Z0-9"]/);
  expect(text, text).toMatch(/[.?]$/);
}

const FIELD_CODES: FieldCode[] = [
  "required", "too_long", "too_short", "control_characters", "not_a_phone", "not_an_email", "not_a_username", "in_the_future", "too_early",
  "end_not_after_start", "too_long_appointment", "in_the_past", "out_of_range", "zero", "empty", "too_many", "mismatch", "taken",
  "password_too_short", "password_common", "nothing_changed", "stale_version", "exceeds_outstanding", "invalid",
];

describe("field problems as sentences", () => {
  it("has a sentence for every validation code, on every field", () => {
    for (const code of FIELD_CODES)
      for (const field of ["first_name", "date_of_birth", "amount_cents", "lines.0.unit_price_cents", "start", "email", "some_new_field"]) {
        const s = fieldSentence({ field, code, message: "raw engine message", min: 1, max: 100_000_000 });
        clean(s);
        expect(s).not.toContain("raw engine message");
      }
  });
  it("names the field and says money in money", () => {
    expect(fieldSentence({ field: "phone", code: "not_a_phone", message: "" })).toMatch(/^Phone is not a phone number/);
    expect(fieldSentence({ field: "amount_cents", code: "out_of_range", message: "", min: 1, max: 100_000_000 })).toBe("Amount must be between 0.01 and 1,000,000.00.");
    expect(fieldSentence({ field: "amount_cents", code: "exceeds_outstanding", message: "", min: 1, max: 4500 })).toBe("Amount is more than the 45.00 still owed.");
    expect(fieldLabel("lines.2.quantity")).toBe("Quantity (line 3)");
  });
});

const clash = (w: "doctor" | "patient"): Rejection => ({
  code: "double_booked",
  message: `the doctor already has appointment ${APPT} between 2031-02-03T14:30:00Z and 2031-02-03T15:00:00Z`,
  detail: { kind: "clash", with: w, appointment_id: APPT, patient_id: w === "doctor" ? BEN : ANNA, doctor_id: DOYLE, start: "2031-02-03T14:30:00Z", end: "2031-02-03T15:00:00Z" },
});

describe("refusals as sentences", () => {
  it("names the doctor whose record it is", () => {
    expect(rejectionSentence({ code: "forbidden", message: "x", detail: { kind: "record_owner", doctor_id: DOYLE } }, names)).toBe(
      "This treatment record is Dr Doyle's; only they can change it, or an administrator can hand it over to you.",
    );
  });
  it("says a double booking in words, in the clinic's zone", () => {
    expect(rejectionSentence(clash("doctor"), names)).toBe("Dr Doyle already has Ben Roth at 15:30–16:00 on Mon, 3 Feb 2031.");
    expect(rejectionSentence(clash("patient"), names)).toBe("Anna Meyer already has an appointment with Dr Doyle at 15:30–16:00 on Mon, 3 Feb 2031.");
  });
  it("has a sentence for every refusal code and rule, with or without detail", () => {
    const codes: RejectCode[] = ["validation", "forbidden", "not_found", "already_exists", "conflict", "double_booked", "insufficient_stock", "patient_unavailable", "invalid_reference", "invalid_transition", "rule_violation", "mutation_id_reused"];
    const rules: Rule[] = ["own_admin_role", "own_account", "invoice_not_voidable", "invoice_closed", "total_too_large", "already_archived", "not_archived", "has_future_appointments", "result_expired", "unreadable"];
    const raw = "raw message with id 0190a5d0-0000-7000-8000-00000000e004";
    for (const code of codes) clean(rejectionSentence({ code, message: raw }, names));
    for (const rule of rules) clean(rejectionSentence({ code: "rule_violation", message: raw, detail: { kind: "rule", rule } }, names));
    const details: Rejection[] = [
      { code: "rule_violation", message: raw, detail: { kind: "future_appointments", count: 2, appointment_ids: [APPT] } },
      { code: "rule_violation", message: raw, detail: { kind: "outstanding", outstanding_cents: 4500 } },
      { code: "insufficient_stock", message: raw, detail: { kind: "stock", available: 2, requested: 3 } },
      { code: "invalid_transition", message: raw, detail: { kind: "transition", table: "appointments", from: "completed", to: "cancelled" } },
      { code: "invalid_transition", message: raw, detail: { kind: "transition", table: "appointments", from: "checked_in", to: "moved" } },
      { code: "invalid_transition", message: raw, detail: { kind: "transition", table: "referrals", from: "completed", to: "cancelled" } },
      { code: "patient_unavailable", message: raw, detail: { kind: "reference", table: "patients", id: ANNA, problem: "archived" } },
      ...(["unknown", "deleted", "archived", "not_a_doctor", "disabled", "other_patient"] as const).map(
        (problem): Rejection => ({ code: "invalid_reference", message: raw, detail: { kind: "reference", table: "staff", id: DOYLE, problem } }),
      ),
      { code: "conflict", message: raw, conflicts: [{ field: "phone", yours: "1", theirs: "2", clinical: false }] },
      { code: "validation", message: "invalid: date_of_birth", fields: [{ field: "date_of_birth", code: "in_the_future", message: "is in the future" }] },
      { code: "forbidden", message: raw, detail: { kind: "record_owner", doctor_id: DOYLE } },
      { code: "forbidden", message: raw, detail: { kind: "withheld_field", table: "referrals", field: "reason" } },
    ];
    for (const r of details) clean(rejectionSentence(r, names));
    expect(rejectionSentence(details[0], names)).toBe("2 future appointments are still booked; cancel them to archive.");
    expect(rejectionSentence(details[1], names)).toBe("The payment is more than the 45.00 still owed.");
    expect(rejectionSentence(details[5], names)).toBe("A referral that is completed cannot be cancelled; it may have been changed on another desk.");
    expect(rejectionSentence(details[6], names)).toBe("Anna Meyer is archived; restore the patient first.");
  });
  it("describes every kind of change without ids", () => {
    const m: Mutation = { type: "book_appointment", args: { id: APPT, patient_id: ANNA, doctor_id: DOYLE, start: "2031-02-03T14:30:00Z", end: "2031-02-03T15:00:00Z", reason: null } };
    expect(describeMutation(m, names)).toBe("Booking Anna Meyer with Dr Doyle on Mon, 3 Feb 2031 at 15:30");
    const unknownPatient: Mutation = { type: "archive_patient", args: { id: APPT, cancel_future_appointments: false } };
    clean(`${describeMutation(unknownPatient, names)}.`);
  });
});

describe("engine errors as sentences", () => {
  it("never shows the parser's or the engine's words", () => {
    for (const code of ["database_busy", "database_corrupt", "database_error", "io_error", "not_signed_in", "pending_changes", "offline", "server_error", "protocol_error", "invalid_input", "stopped", "print_failed", "something_new"])
      clean(errorSentence({ code, message: "cannot reach the server: error sending request for url (http://127.0.0.1:1/v1/pull?cursor=4)", retryable: true }, names));
    // What Tauri says when an argument does not decode.
    clean(errorSentence("invalid args `mutation` for command `mutate`: input is out of range", names));
    clean(errorSentence({ code: "rejected", message: "invalid: diagnosis", retryable: false, rejection: { code: "validation", message: "invalid: diagnosis", fields: [{ field: "diagnosis", code: "required", message: "is required" }] } }, names));
    expect(errorSentence({ code: "unauthorized", message: "wrong username or password", retryable: false }, null)).toBe("Wrong username or password.");
  });
});

describe("money as people type it", () => {
  it("reads both decimal separators and refuses what is not an amount", () => {
    expect(parseMoney("45", "en-US")).toBe(4500);
    expect(parseMoney("45.5", "en-US")).toBe(4550);
    expect(parseMoney("45,50", "de-DE")).toBe(4550);
    expect(parseMoney("45,50", "en-US")).toBe(4550);
    expect(parseMoney("1,234.50", "en-US")).toBe(123450);
    expect(parseMoney("1.234,50", "de-DE")).toBe(123450);
    expect(parseMoney(".5", "en-US")).toBe(50);
    for (const bad of ["", "abc", "-5", "4.555", "1e3", "12a"]) expect(parseMoney(bad, "en-US"), bad).toBeNull();
    expect(formatMoney(123450, "de-DE")).toBe("1.234,50");
  });
});
