import { describe, expect, it } from "vitest";
import { addDays, addMinutes, datePattern, formatDate, formatDay, formatTime, formatTimeRange, localDateOf, localTimeOf, parseDate, parseTime, todayIn, zonedParts } from "./time";

const berlin = { zone: "Europe/Berlin", locale: "en-GB" };
const newYork = { zone: "America/New_York", locale: "en-US" };

describe("times in the clinic's zone", () => {
  it("shows instants in the clinic's zone, not the machine's or UTC", () => {
    expect(formatTime("2031-02-03T14:30:00Z", berlin)).toBe("15:30");
    expect(formatTime("2031-02-03T14:30:00Z", { zone: "America/New_York", locale: "en-GB" })).toBe("09:30");
    expect(formatTimeRange("2031-02-03T14:30:00Z", "2031-02-03T15:00:00Z", berlin)).toBe("15:30–16:00");
    expect(formatTime("2031-02-03T14:30:00Z", newYork)).toBe("09:30 AM");
  });
  it("follows both daylight-saving changes of a European zone", () => {
    // 29 March 2026: 01:59:59 CET is followed by 03:00 CEST.
    expect(localTimeOf("2026-03-29T00:59:00Z", "Europe/Berlin")).toBe("01:59");
    expect(localTimeOf("2026-03-29T01:00:00Z", "Europe/Berlin")).toBe("03:00");
    // 25 October 2026: 02:30 happens twice, an hour apart.
    expect(localTimeOf("2026-10-25T00:30:00Z", "Europe/Berlin")).toBe("02:30");
    expect(localTimeOf("2026-10-25T01:30:00Z", "Europe/Berlin")).toBe("02:30");
    expect(localTimeOf("2026-10-25T02:30:00Z", "Europe/Berlin")).toBe("03:30");
  });
  it("follows both daylight-saving changes of a US zone", () => {
    expect(localTimeOf("2027-03-14T06:59:00Z", "America/New_York")).toBe("01:59");
    expect(localTimeOf("2027-03-14T07:00:00Z", "America/New_York")).toBe("03:00");
    expect(localTimeOf("2027-11-07T05:30:00Z", "America/New_York")).toBe("01:30");
    expect(localTimeOf("2027-11-07T06:30:00Z", "America/New_York")).toBe("01:30");
    expect(zonedParts("2027-11-07T07:30:00Z", "America/New_York").hour).toBe(2);
  });
  it("knows today in the clinic's zone around midnight", () => {
    // 23:30 UTC on 1 December is already 2 December in Berlin, still 1 December in New York.
    const late = Date.parse("2026-12-01T23:30:00Z");
    expect(todayIn("Europe/Berlin", late)).toBe("2026-12-02");
    expect(todayIn("America/New_York", late)).toBe("2026-12-01");
    expect(todayIn("UTC", late)).toBe("2026-12-01");
    expect(localDateOf("2027-03-14T04:30:00Z", "America/New_York")).toBe("2027-03-13");
  });
  it("counts days and minutes on the calendar and the clock", () => {
    expect(addDays("2031-02-28", 1)).toBe("2031-03-01");
    expect(addDays("2032-02-28", 1)).toBe("2032-02-29");
    expect(addDays("2031-01-01", -1)).toBe("2030-12-31");
    // 30 minutes are 30 minutes across the change: 01:45 EST + 30 min = 03:15 EDT.
    const start = "2027-03-14T06:45:00Z";
    expect(localTimeOf(addMinutes(start, 30), "America/New_York")).toBe("03:15");
  });
});

describe("dates in the system locale", () => {
  it("formats and hints in the locale's order", () => {
    expect(formatDate("2031-02-03", { locale: "de-DE" })).toBe("03.02.2031");
    expect(formatDate("2031-02-03", { locale: "en-US" })).toBe("02/03/2031");
    expect(formatDate("2031-02-03", { locale: "en-GB" })).toBe("03/02/2031");
    expect(datePattern("de-DE")).toBe("DD.MM.YYYY");
    expect(datePattern("en-US")).toBe("MM/DD/YYYY");
    expect(formatDay("2031-02-03", { locale: "en-GB" })).toBe("Mon, 3 Feb 2031");
  });
  it("parses what people type, in the locale's order, real dates only", () => {
    expect(parseDate("03.02.2031", "de-DE")).toBe("2031-02-03");
    expect(parseDate("3.2.2031", "de-DE")).toBe("2031-02-03");
    expect(parseDate("2/3/2031", "en-US")).toBe("2031-02-03");
    expect(parseDate("3/2/2031", "en-GB")).toBe("2031-02-03");
    expect(parseDate("2031-02-03", "en-US")).toBe("2031-02-03");
    expect(parseDate("14 02 85", "de-DE", Date.parse("2026-12-01T00:00:00Z"))).toBe("1985-02-14");
    expect(parseDate("14.02.30", "de-DE", Date.parse("2026-12-01T00:00:00Z"))).toBe("2030-02-14");
    // 30 February does not exist (the engine's "input is out of range" never reaches the screen).
    expect(parseDate("1985-02-30", "en-US")).toBeNull();
    expect(parseDate("30.02.1985", "de-DE")).toBeNull();
    expect(parseDate("2024-02-29", "en-US")).toBe("2024-02-29");
    expect(parseDate("2023-02-29", "en-US")).toBeNull();
    for (const bad of ["", "tomorrow", "13/13/2031", "1.2", "2031-1-1-1", "12/31/20311"]) expect(parseDate(bad, "en-US")).toBeNull();
  });
});

describe("times as people type them", () => {
  it("reads 1530, 15:30 and 3:30pm as the same time", () => {
    for (const t of ["1530", "15:30", "15.30", "15h30", "3:30pm", "3:30 PM", "330pm", "3.30 p"]) expect(parseTime(t), t).toEqual({ hour: 15, minute: 30 });
    expect(parseTime("930")).toEqual({ hour: 9, minute: 30 });
    expect(parseTime("9")).toEqual({ hour: 9, minute: 0 });
    expect(parseTime("3pm")).toEqual({ hour: 15, minute: 0 });
    expect(parseTime("12am")).toEqual({ hour: 0, minute: 0 });
    expect(parseTime("12pm")).toEqual({ hour: 12, minute: 0 });
    expect(parseTime("noon")).toEqual({ hour: 12, minute: 0 });
    expect(parseTime("0000")).toEqual({ hour: 0, minute: 0 });
  });
  it("refuses what is not a time (1530 never becomes 23:00)", () => {
    for (const t of ["", "25:00", "15:60", "13pm", "0am", "15301", "half past three", "1:5"]) expect(parseTime(t), t).toBeNull();
  });
});
