import { describe, expect, it } from "vitest";
import type { Entity } from "../bindings/Entity";
import type { Patient } from "../bindings/Patient";
import { findDuplicates, nameKey, phoneKey } from "./duplicates";

const patient = (id: string, first: string, last: string, dob: string, phone: string | null): Entity<Patient> => ({
  id,
  version: 1,
  pending: false,
  data: { id, first_name: first, last_name: last, date_of_birth: dob, phone, email: null, address: null },
});

const registered = [patient("a", "Zoë", "Müller-Lüdenscheidt", "1985-02-14", "+49 30 1234 5678"), patient("b", "Ben", "Roth", "1979-06-01", null)];

describe("duplicate patients", () => {
  it("compares names without case, accents or spacing, and phones by their digits", () => {
    expect(nameKey(" Zoe ")).toBe(nameKey("zoë"));
    expect(nameKey("Müller Lüdenscheidt")).toBe(nameKey("muller-ludenscheidt"));
    expect(phoneKey("0049 (30) 1234-5678")).toBe(phoneKey("+49 30 1234 5678"));
    expect(phoneKey("12 34")).toBeNull();
  });
  it("finds the same name and date of birth, or the same phone", () => {
    expect(findDuplicates({ first_name: "zoe", last_name: "Muller Ludenscheidt", date_of_birth: "1985-02-14", phone: "" }, registered).map((d) => [d.patient.id, d.reasons])).toEqual([["a", ["name_and_birth"]]]);
    expect(findDuplicates({ first_name: "Anna", last_name: "Roth", date_of_birth: "1990-01-01", phone: "0049 30 12345678" }, registered).map((d) => [d.patient.id, d.reasons])).toEqual([["a", ["phone"]]]);
  });
  it("does not match a namesake born on another day, or a half-typed form", () => {
    expect(findDuplicates({ first_name: "Ben", last_name: "Roth", date_of_birth: "1979-06-02", phone: "" }, registered)).toEqual([]);
    expect(findDuplicates({ first_name: "Ben", last_name: "Roth", date_of_birth: null, phone: "" }, registered)).toEqual([]);
    expect(findDuplicates({ first_name: "", last_name: "", date_of_birth: "1979-06-01", phone: "12" }, registered)).toEqual([]);
  });
});
