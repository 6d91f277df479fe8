// Bridges the shell's events into React: "store-changed" invalidates the
// queries that read what changed; "sync-status" feeds the status bar; rows
// changed by someone else are remembered briefly so lists can highlight them.
import { listen } from "@tauri-apps/api/event";
import { useQueryClient } from "@tanstack/react-query";
import { createContext, useContext, useEffect, useState, type ReactNode } from "react";
import { api } from "./api";
import type { StoreEvent } from "./bindings/StoreEvent";
import type { SyncStatus } from "./bindings/SyncStatus";
import { staleKeys } from "./lib/invalidate";

const HIGHLIGHT_MS = 2500;

// Waiters for the next store event (a form waiting for the server's answer).
const waiters = new Set<() => void>();

/** Resolves at the next store event, or after `ms` (a bounded wait). */
export function nextStoreEvent(ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      waiters.delete(done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    waiters.add(done);
  });
}

interface Live {
  status: SyncStatus | null;
  recent: Set<string>;
}

export const LiveContext = createContext<Live>({ status: null, recent: new Set() });

export function useLive(): Live {
  return useContext(LiveContext);
}

export function LiveProvider({ initial, children }: { initial: SyncStatus | null; children: ReactNode }) {
  const client = useQueryClient();
  const [status, setStatus] = useState<SyncStatus | null>(initial);
  const [recent, setRecent] = useState<Set<string>>(new Set());

  useEffect(() => {
    let heard = false;
    let gone = false;
    const unlisteners = [
      listen<StoreEvent>("store-changed", ({ payload }) => {
        for (const key of staleKeys(payload)) client.invalidateQueries({ queryKey: key });
        for (const w of [...waiters]) w();
        if (payload.origin === "remote" && payload.rows.length > 0) {
          const ids = payload.rows.map(([, id]) => id);
          setRecent((old) => new Set([...old, ...ids]));
          setTimeout(() => setRecent((old) => new Set([...old].filter((id) => !ids.includes(id)))), HIGHLIGHT_MS);
        }
      }),
      listen<SyncStatus>("sync-status", ({ payload }) => {
        heard = true;
        setStatus(payload);
      }),
    ];
    // The status in `initial` and the first queries were read before these
    // listeners existed: what changed in between (a new desk's whole first
    // sync can) was emitted to nobody, and a quiet desk emits nothing more,
    // so the bar would say "Connecting…" for good. Read both again once they
    // listen. A status event heard since is as new or newer (the shell always
    // sends the latest status).
    void Promise.all(unlisteners)
      .then(() => {
        void client.invalidateQueries({ predicate: (q) => q.queryKey[0] !== "session" });
        return api.sessionInfo();
      })
      .then((info) => {
        if (!heard && !gone) setStatus(info.status);
      })
      .catch(() => {
        // The next status event brings it; the bar keeps what it has.
      });
    return () => {
      gone = true;
      for (const u of unlisteners) u.then((f) => f());
    };
  }, [client]);

  return <LiveContext.Provider value={{ status, recent }}>{children}</LiveContext.Provider>;
}
