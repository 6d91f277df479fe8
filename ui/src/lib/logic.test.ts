import { describe, expect, it } from "vitest";
import type { Patient } from "../bindings/Patient";
import { nextSteps } from "../screens/Schedule";
import { rebased } from "../screens/SyncPanel";
import { formatMoney } from "./errors";
import { connectionLabel, durationLabel, rebuiltSentence, restoredSentence, saveLabel, syncProgress } from "./format";
import { formatTime } from "./time";
import { staleKeys } from "./invalidate";
import { fieldErrors, formOf, isEmptyPatch, patientPatch } from "./patch";
import { screensFor } from "./roles";

const patient: Patient = {
  id: "0190a5d0-0000-7000-8000-000000000001",
  first_name: "Ana",
  last_name: "Costa",
  date_of_birth: "1980-04-02",
  phone: "+1 555 010 2030",
  email: null,
  address: "1 Main St",
  archived_at: undefined,
};

describe("status labels", () => {
  it("says how the connection stands", () => {
    expect(connectionLabel({ state: "live" })).toBe("Live");
    expect(connectionLabel({ state: "polling" })).toBe("Connected");
    expect(connectionLabel({ state: "offline", retry_in_ms: 2600 })).toBe("Offline — trying again in 3 s");
    expect(connectionLabel({ state: "offline", retry_in_ms: 10 })).toBe("Offline — trying again in 1 s");
    expect(connectionLabel({ state: "signed_out" })).toContain("changes kept");
  });
  it("counts pending changes with the oldest age", () => {
    const now = Date.parse("2026-11-23T09:30:10Z");
    expect(saveLabel({ pending: 0, last_attempt_at: null }, now)).toBe("All changes saved");
    expect(saveLabel({ pending: 3, last_attempt_at: "2026-11-23T09:30:00Z" }, now)).toBe("3 changes waiting — last tried 10 s ago");
    expect(saveLabel({ pending: 1, last_attempt_at: "2026-11-23T09:28:00Z" }, now)).toBe("1 change waiting — last tried 2 min ago");
    expect(saveLabel({ pending: 2, last_attempt_at: null }, now)).toBe("2 changes waiting — not sent yet");
    expect(durationLabel(59)).toBe("59 s");
    expect(durationLabel(7200)).toBe("2 h");
    expect(durationLabel(200000)).toBe("2 d");
  });
  it("formats times, money and progress", () => {
    expect(formatTime("2026-11-23T09:30:00Z", { zone: "UTC", locale: "en-GB" })).toBe("09:30");
    expect(formatMoney(6550)).toBe("65.50");
    expect(syncProgress({ cursor: 50, head: 200 })).toBe(0.25);
    expect(syncProgress({ cursor: 10, head: 0 })).toBe(1);
  });
});

describe("patient patch", () => {
  it("sends only what changed", () => {
    const form = { ...formOf(patient), phone: "+1 555 999 0000" };
    expect(patientPatch(patient, form)).toEqual({ phone: "+1 555 999 0000" });
  });
  it("clears an optional field with null and ignores whitespace-only edits", () => {
    const form = { ...formOf(patient), address: "   ", first_name: " Ana " };
    expect(patientPatch(patient, form)).toEqual({ address: null });
  });
  it("knows an untouched form changes nothing", () => {
    expect(isEmptyPatch(patientPatch(patient, formOf(patient)))).toBe(true);
  });
  it("maps rejection fields for inline errors", () => {
    expect(fieldErrors([{ field: "phone", message: "is not a phone number" }])).toEqual({ phone: "is not a phone number" });
    expect(fieldErrors(undefined)).toEqual({});
  });
});

describe("query invalidation", () => {
  it("re-reads only what a change touched", () => {
    const keys = staleKeys({ origin: "remote", tables: ["inventory_items"] });
    expect(keys).toContainEqual(["rows", "inventory_items"]);
    expect(keys).toContainEqual(["lowStock"]);
    expect(keys).not.toContainEqual(["search"]);
    expect(keys).not.toContainEqual(["rows", "patients"]);
  });
  it("patients invalidate search, charts and schedules", () => {
    const keys = staleKeys({ origin: "local", tables: ["patients"] });
    expect(keys).toEqual(expect.arrayContaining([["search"], ["chart"], ["schedule"], ["rows", "patients"], ["pending"]]));
  });
  it("payments refresh the end-of-day report, the price list does not", () => {
    expect(staleKeys({ origin: "remote", tables: ["payments"] })).toContainEqual(["dayReport"]);
    expect(staleKeys({ origin: "remote", tables: ["price_items"] })).not.toContainEqual(["dayReport"]);
  });
  it("appointments refresh free-slot suggestions", () => {
    expect(staleKeys({ origin: "remote", tables: ["appointments"] })).toContainEqual(["slots"]);
  });
  it("a session change re-reads everything", () => {
    expect(staleKeys({ origin: "session", tables: [] })).toEqual([[]]);
  });
});

describe("roles and flows", () => {
  it("shows each role only its screens", () => {
    expect(screensFor("reception")).toEqual(["patients", "schedule", "waiting", "referrals", "billing", "sync"]);
    expect(screensFor("doctor")).toEqual(["patients", "schedule", "waiting", "referrals", "inventory", "sync"]);
    expect(screensFor("assistant")).not.toContain("referrals");
    expect(screensFor("admin")).toContain("staff");
    expect(screensFor("assistant")).not.toContain("billing");
  });
  it("offers the next steps of the appointment flow", () => {
    expect(nextSteps("scheduled", "reception")).toEqual(["checked_in", "no_show", "cancelled"]);
    expect(nextSteps("checked_in", "assistant")).toEqual(["in_progress"]);
    expect(nextSteps("completed", "admin")).toEqual([]);
  });
  it("rebases an update on the current version for 'use mine'", () => {
    const m = { type: "update_patient" as const, args: { id: patient.id, base_version: 3, fields: { phone: "1" } } };
    expect(rebased(m, 9)).toEqual({ ...m, args: { ...m.args, base_version: 9 } });
    const create = { type: "void_invoice" as const, args: { id: patient.id, reason: "billed twice" } };
    expect(rebased(create, 9)).toBe(create);
  });
});

describe("rebuiltSentence", () => {
  const berlin = { zone: "Europe/Berlin", locale: "en-GB" };
  const base = {
    noticed_at: "2026-11-23T09:30:00Z",
    kept: 3,
    lost: ["an appointment (new or changed) for Ana Costa"],
    lost_unknown: false,
    views_lost: 0,
    aside: "/data/users/u/clinic-client.db.corrupt-20261123T093000Z",
  };
  it("says what was kept and names what was lost, in the clinic's time, and where the damaged file is", () => {
    expect(rebuiltSentence(base, berlin)).toBe(
      "This desk's copy of the clinic's data was damaged and has been rebuilt from the server (found 23 Nov 2026, 10:30). 3 unsent changes were kept and will be sent. 1 unsent change could not be read and is lost: an appointment (new or changed) for Ana Costa. Please enter it again. The damaged file was kept for IT: /data/users/u/clinic-client.db.corrupt-20261123T093000Z.",
    );
    expect(rebuiltSentence({ ...base, kept: 1, lost: [] }, berlin)).toContain("(found 23 Nov 2026, 10:30). 1 unsent change was kept and will be sent. The damaged");
    expect(rebuiltSentence({ ...base, kept: 0, lost: ["a", "b"] }, berlin)).toContain("2 unsent changes could not be read and are lost: a; b. Please enter them again.");
    expect(rebuiltSentence({ ...base, kept: 0, lost: [], lost_unknown: true, views_lost: 2 }, berlin)).toContain(
      "could not be read: any change made on this desk that is missing after the reload is lost; please enter it again. 2 record views could not be reported",
    );
  });
});

describe("restoredSentence", () => {
  const berlin = { zone: "Europe/Berlin", locale: "en-GB" };
  it("says what happened, in the clinic's time, what the desk did and what to check", () => {
    expect(restoredSentence({ noticed_at: "2026-11-23T09:30:00Z", resent: 2 }, berlin)).toBe(
      "The clinic's server was restored from a backup (noticed 23 Nov 2026, 10:30). This desk has reloaded the clinic's data and sent its 2 unconfirmed changes again. Work saved after that backup may be missing: please check today's bookings, records and payments.",
    );
    expect(restoredSentence({ noticed_at: "2026-11-23T09:30:00Z", resent: 1 }, berlin)).toContain("sent its 1 unconfirmed change again.");
    expect(restoredSentence({ noticed_at: "2026-11-23T09:30:00Z", resent: 0 }, berlin)).toContain("reloaded the clinic's data. Work saved");
  });
});

describe("the waiting room", () => {
  it("says how long a patient has waited in words", async () => {
    const { waitLabel } = await import("../screens/WaitingRoom");
    const t = Date.parse("2031-03-03T09:00:00Z");
    expect(waitLabel(t, t + 20_000)).toBe("just arrived");
    expect(waitLabel(t, t + 4 * 60_000 + 59_000)).toBe("4 min");
    expect(waitLabel(t, t + 65 * 60_000)).toBe("1 h 05 min");
    // A desk clock behind the one that checked the patient in: never negative.
    expect(waitLabel(t, t - 90_000)).toBe("just arrived");
  });
});

describe("the record fields beyond contact", () => {
  const patient: Patient = {
    id: "p",
    first_name: "Ana",
    last_name: "Lee",
    date_of_birth: "1990-01-01",
    phone: null,
    email: null,
    address: null,
    sex: "female",
    alerts: "Latex allergy",
  };
  it("patches only what changed, clearing with an empty value", () => {
    const form = { ...formOf(patient), sex: "" as const, alerts: "Latex allergy; penicillin", insurer: "Northwind Health" };
    expect(patientPatch(patient, form)).toEqual({ sex: null, alerts: "Latex allergy; penicillin", insurer: "Northwind Health" });
    expect(patientPatch(patient, { ...formOf(patient), alerts: "  " })).toEqual({ alerts: null });
    expect(isEmptyPatch(patientPatch(patient, formOf(patient)))).toBe(true);
  });
});
