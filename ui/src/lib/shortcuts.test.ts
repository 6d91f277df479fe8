import { describe, expect, it } from "vitest";
import { commandFor } from "./shortcuts";

const key = (k: string, mods: Partial<{ altKey: boolean; ctrlKey: boolean; metaKey: boolean; code: string }> = {}) => ({ key: k, altKey: false, ctrlKey: false, metaKey: false, code: "", ...mods });

describe("keyboard shortcuts", () => {
  it("maps / and Ctrl+F to search, Alt+N/B/I/Z to their commands", () => {
    expect(commandFor(key("/"), false)).toBe("search");
    expect(commandFor(key("/"), true)).toBeNull(); // typing a slash into a field
    expect(commandFor(key("f", { ctrlKey: true }), true)).toBe("search");
    expect(commandFor(key("n", { altKey: true }), false)).toBe("new-patient");
    expect(commandFor(key("∫", { altKey: true, code: "KeyB" }), true)).toBe("book");
    expect(commandFor(key("i", { altKey: true }), false)).toBe("check-in");
    expect(commandFor(key("z", { altKey: true }), false)).toBe("undo");
    expect(commandFor(key("n"), false)).toBeNull();
  });
  it("locks with Ctrl+L, also from inside a field", () => {
    expect(commandFor(key("l", { ctrlKey: true }), true)).toBe("lock");
    expect(commandFor(key("l", { metaKey: true }), false)).toBe("lock");
    expect(commandFor(key("l"), false)).toBeNull();
    expect(commandFor(key("l", { ctrlKey: true, altKey: true }), false)).toBeNull();
  });
});
