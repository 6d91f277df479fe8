// The desk's shared context: the clinic's zone and the locale (every time on
// screen goes through them), names from the local mirror for sentences, and
// the notification area: undo toasts and refusals that cannot be missed.
import { useQuery } from "@tanstack/react-query";
import { createContext, useCallback, useContext, useMemo, useRef, useState, type ReactNode } from "react";
import { api } from "./api";
import type { Staff } from "./bindings/Staff";
import type { Names } from "./lib/errors";
import { systemLocale, type Clinic } from "./lib/time";

export interface Toast {
  id: number;
  text: string;
  /** Offered for a few seconds; runs a normal (audited) mutation. */
  undo?: () => Promise<void>;
  /** Seconds the toast stays. */
  seconds: number;
}

interface Desk {
  clinic: Clinic;
  user: Staff;
  names: Names;
  toasts: Toast[];
  toast(t: Omit<Toast, "id" | "seconds"> & { seconds?: number }): void;
  closeToast(id: number): void;
  /** Mutations whose outcome an open form shows itself (no banner for them). */
  claimed: Set<number>;
  claim(mutationId: number, on: boolean): void;
}

const DeskContext = createContext<Desk | null>(null);

export function useDesk(): Desk {
  const d = useContext(DeskContext);
  if (!d) throw new Error("useDesk outside DeskProvider");
  return d;
}

/** How long an undo is offered. */
export const UNDO_SECONDS = 8;

export function DeskProvider({ zone, user, children }: { zone: string; user: Staff; children: ReactNode }) {
  const clinic = useMemo(() => ({ zone, locale: systemLocale() }), [zone]);
  const patients = useQuery({ queryKey: ["rows", "patients"], queryFn: api.patients });
  const staff = useQuery({ queryKey: ["rows", "staff"], queryFn: api.staff });
  const names = useMemo<Names>(() => {
    const p = new Map((patients.data ?? []).map((r) => [r.id, `${r.data.first_name} ${r.data.last_name}`]));
    const s = new Map((staff.data ?? []).map((r) => [r.id, r.data.display_name]));
    return { clinic, patient: (id) => p.get(id) ?? null, staff: (id) => s.get(id) ?? null };
  }, [patients.data, staff.data, clinic]);
  const [toasts, setToasts] = useState<Toast[]>([]);
  const next = useRef(1);
  const closeToast = useCallback((id: number) => setToasts((ts) => ts.filter((t) => t.id !== id)), []);
  const toast = useCallback(
    (t: Omit<Toast, "id" | "seconds"> & { seconds?: number }) => {
      const id = next.current++;
      const seconds = t.seconds ?? (t.undo ? UNDO_SECONDS : 5);
      setToasts((ts) => [...ts.slice(-3), { ...t, id, seconds }]);
      setTimeout(() => closeToast(id), seconds * 1000);
    },
    [closeToast],
  );
  const [claimed, setClaimed] = useState<Set<number>>(new Set());
  const claim = useCallback((mutationId: number, on: boolean) => {
    setClaimed((old) => {
      const s = new Set(old);
      if (on) s.add(mutationId);
      else s.delete(mutationId);
      return s;
    });
  }, []);
  const value = useMemo(() => ({ clinic, user, names, toasts, toast, closeToast, claimed, claim }), [clinic, user, names, toasts, toast, closeToast, claimed, claim]);
  return <DeskContext.Provider value={value}>{children}</DeskContext.Provider>;
}
