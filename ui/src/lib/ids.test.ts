import { describe, expect, it } from "vitest";
import { uuidv7, uuidv7Time } from "./ids";

describe("uuidv7", () => {
  it("has the version and variant of a UUIDv7", () => {
    const id = uuidv7();
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
  it("carries its creation time and sorts by it", () => {
    const t = Date.UTC(2026, 11, 1, 9, 30, 0, 123);
    const a = uuidv7(t, new Uint8Array(10).fill(255));
    const b = uuidv7(t + 1, new Uint8Array(10).fill(0));
    expect(uuidv7Time(a)).toBe(t);
    expect(a < b).toBe(true);
  });
  it("differs between calls", () => {
    const ids = new Set(Array.from({ length: 1000 }, () => uuidv7()));
    expect(ids.size).toBe(1000);
  });
});
