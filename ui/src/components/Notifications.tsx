// The notification area: undo toasts for a few seconds after a cancel,
// no-show, check-in or archive; and every change the server refused, as a
// prominent alert naming the patient and what was refused, with the next
// useful action (a free slot instead, keep theirs, re-apply mine). A refusal
// an open form shows itself is left to that form.
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { api, errorMessage } from "../api";
import type { Appointment } from "../bindings/Appointment";
import type { FreeSlot } from "../bindings/FreeSlot";
import type { RejectedEntry } from "../bindings/RejectedEntry";
import { useDesk } from "../desk";
import { describeMutation, rejectionSentence } from "../lib/errors";
import { atSlot, dismiss, reapply, slotRequest } from "../lib/review";
import { formatTime } from "../lib/time";

export function Notifications({ onReview }: { onReview: () => void }) {
  const { toasts, closeToast, claimed } = useDesk();
  const rejected = useQuery({ queryKey: ["rejected"], queryFn: api.rejectedChanges });
  const shown = (rejected.data ?? []).filter((r) => !claimed.has(r.mutation_id)).slice(-3);
  return (
    <div className="notifications">
      {shown.map((r) => (
        <Refusal key={r.mutation_id} entry={r} onReview={onReview} />
      ))}
      <div className="toasts" role="status" aria-live="polite">
        {toasts.map((t) => (
          <ToastItem key={t.id} text={t.text} seconds={t.seconds} undo={t.undo} onClose={() => closeToast(t.id)} />
        ))}
      </div>
    </div>
  );
}

function ToastItem({ text, seconds, undo, onClose }: { text: string; seconds: number; undo?: () => Promise<void>; onClose: () => void }) {
  const [left, setLeft] = useState(seconds);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const timer = setInterval(() => setLeft((s) => Math.max(0, s - 1)), 1000);
    return () => clearInterval(timer);
  }, []);
  return (
    <div className="toast" data-testid="toast">
      <span data-testid="toast-text">{text}</span>
      {undo && (
        <button
          data-testid="toast-undo"
          aria-keyshortcuts="Alt+Z"
          title="Undo (Alt+Z)"
          onClick={async () => {
            try {
              await undo();
              onClose();
            } catch (err) {
              setError(errorMessage(err));
            }
          }}
        >
          Undo ({left} s)
        </button>
      )}
      <button className="link" aria-label="Close" onClick={onClose}>×</button>
      {error && <span className="error">{error}</span>}
    </div>
  );
}

function Refusal({ entry, onReview }: { entry: RejectedEntry; onReview: () => void }) {
  const { names, clinic } = useDesk();
  const client = useQueryClient();
  const [error, setError] = useState<string | null>(null);
  const m = entry.mutation;
  const moving = m.type === "reschedule_appointment" ? m.args.id : null;
  const appointment = useQuery({
    queryKey: ["rows", "appointments", moving],
    queryFn: () => (moving ? api.row("appointments", moving) : Promise.resolve(null)),
    enabled: moving !== null,
  });
  const current = appointment.data ? (appointment.data.data as Appointment) : undefined;
  const request = entry.rejection.code === "double_booked" ? slotRequest(m, current) : null;
  const slots = useQuery({
    queryKey: ["slots", entry.mutation_id, request],
    queryFn: () => (request ? api.freeSlots({ ...request, count: 3 }) : Promise.resolve([] as FreeSlot[])),
    enabled: request !== null,
  });
  const run = async (f: () => Promise<void>) => {
    setError(null);
    try {
      await f();
    } catch (err) {
      setError(errorMessage(err));
    }
  };
  const conflict = entry.rejection.code === "conflict";
  return (
    <div className="refusal" role="alert" data-testid="refusal">
      <strong>Not saved.</strong>{" "}
      <span data-testid="refusal-text">
        {describeMutation(m, names)} was refused: {rejectionSentence(entry.rejection, names)}
      </span>
      <div className="actions">
        {(slots.data ?? []).map((slot) => (
          <button
            key={slot.start}
            data-testid="refusal-slot"
            onClick={() =>
              run(async () => {
                const again = atSlot(m, slot, appointment.data?.version);
                if (again) await api.mutate(again);
                await dismiss(client, entry);
              })
            }
          >
            {m.type === "reschedule_appointment" ? "Move to" : "Book"} {formatTime(slot.start, clinic)} instead
          </button>
        ))}
        <button data-testid="refusal-reapply" onClick={() => run(() => reapply(client, entry))}>
          {conflict ? "Re-apply mine" : "Try again"}
        </button>
        <button data-testid="refusal-dismiss" onClick={() => run(() => dismiss(client, entry))}>
          {conflict || request ? "Keep theirs" : "Dismiss"}
        </button>
        <button className="link" data-testid="refusal-review" onClick={onReview}>
          Review
        </button>
      </div>
      {error && <p className="error">{error}</p>}
    </div>
  );
}
