// The desk's keyboard shortcuts, in one table: the shell listens, switches
// to the screen a command belongs to and hands the command over; buttons show
// their shortcut in their tooltip (title) and to screen readers
// (aria-keyshortcuts).

export type CommandName = "new-patient" | "book" | "check-in" | "search" | "open-patient" | "open-invoice";

/**
 * A command for a screen; `seq` makes a repeated press a new command. The
 * screen that acts on it marks it `handled`, so a screen opened later (or
 * remounted) does not act on it again.
 */
export interface Command {
  name: CommandName;
  seq: number;
  handled?: boolean;
  /** For `open-patient`: whose chart. */
  patientId?: string;
  /** For `open-invoice`: the invoice Billing opens (a draft opens in its editor). */
  invoiceId?: string;
}

/** Takes the command if it is `name` and nobody acted on it yet. */
export function take(command: Command | null, name: CommandName): boolean {
  if (!command || command.handled || command.name !== name) return false;
  command.handled = true;
  return true;
}

export interface Shortcut {
  name: CommandName | "undo" | "lock";
  /** Shown in tooltips and aria-keyshortcuts. */
  keys: string;
  label: string;
}

export const SHORTCUTS: Shortcut[] = [
  { name: "search", keys: "/ or Ctrl+F", label: "Search" },
  { name: "new-patient", keys: "Alt+N", label: "New patient" },
  { name: "book", keys: "Alt+B", label: "Book an appointment" },
  { name: "check-in", keys: "Alt+I", label: "Check in the selected appointment" },
  { name: "undo", keys: "Alt+Z", label: "Undo the last action (while offered)" },
  { name: "lock", keys: "Ctrl+L", label: "Lock the screen" },
];

/** The command a key press means, if any. Typing `/` into a field types a slash. */
export function commandFor(e: Pick<KeyboardEvent, "key" | "altKey" | "ctrlKey" | "metaKey" | "code">, inField: boolean): CommandName | "undo" | "lock" | null {
  const key = e.key.toLowerCase();
  const code = e.code ?? "";
  if ((e.ctrlKey || e.metaKey) && !e.altKey && key === "f") return "search";
  // Works in fields too: someone called away mid-form locks at once.
  if ((e.ctrlKey || e.metaKey) && !e.altKey && (key === "l" || code === "KeyL")) return "lock";
  if (!e.altKey && !e.ctrlKey && !e.metaKey && e.key === "/" && !inField) return "search";
  if (e.altKey && !e.ctrlKey && !e.metaKey) {
    // `code` as well as `key`: Alt+letter types other characters on some layouts.
    if (key === "n" || code === "KeyN") return "new-patient";
    if (key === "b" || code === "KeyB") return "book";
    if (key === "i" || code === "KeyI") return "check-in";
    if (key === "z" || code === "KeyZ") return "undo";
  }
  return null;
}
