import { useState } from "react";
import { errorMessage } from "../api";
import type { Printout } from "../bindings/Printout";

/**
 * A button that makes a printout (a PDF made on this computer, so it works
 * with no network) and hands it to the system's PDF viewer, where the person
 * prints it. Says what happened in a sentence: opened, or saved where the
 * viewer could not be started, or why it could not be made.
 */
export function PrintButton({ label, what, testid, print }: { label: string; what: string; testid: string; print: () => Promise<Printout> }) {
  const [busy, setBusy] = useState(false);
  const [note, setNote] = useState<{ text: string; error: boolean } | null>(null);
  async function run() {
    setBusy(true);
    setNote(null);
    try {
      const done = await print();
      setNote({
        error: false,
        text: done.opened
          ? `${capitalize(what)} opened in your PDF viewer: print it from there.`
          : `${capitalize(what)} was saved as ${done.path}, but no PDF viewer could be opened. Open that file to print it.`,
      });
    } catch (e) {
      setNote({ error: true, text: `${capitalize(what)} could not be made: ${errorMessage(e)}` });
    } finally {
      setBusy(false);
    }
  }
  return (
    <span className="print">
      <button type="button" data-testid={testid} onClick={run} disabled={busy}>
        {busy ? "Preparing…" : label}
      </button>
      {note && (
        <span className={note.error ? "error" : "muted small"} role={note.error ? "alert" : "status"} data-testid={`${testid}-note`}>
          {note.text}
        </span>
      )}
    </span>
  );
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
