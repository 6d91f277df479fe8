import { render, screen } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import type { SyncStatus } from "../bindings/SyncStatus";
import { LiveContext } from "../events";
import { StatusBar } from "./StatusBar";

function renderWith(status: SyncStatus) {
  return render(
    <LiveContext.Provider value={{ status, recent: new Set() }}>
      <StatusBar onOpenSync={vi.fn()} clinic={{ zone: "Europe/Berlin", locale: "en-GB" }} />
    </LiveContext.Provider>,
  );
}

const base: SyncStatus = {
  connection: { state: "live" },
  last_synced_at: "2026-11-23T09:30:05Z",
  pending: 0,
  oldest_pending_secs: null,
  rejected: 0,
  initial_sync: null,
  cursor: 42,
  last_error: null,
  last_attempt_at: null,
  server_restored: null,
  mirror_rebuilt: null,
};

describe("StatusBar", () => {
  it("shows live and the last sync, hides empty counters", () => {
    renderWith(base);
    expect(screen.getByTestId("connection").textContent).toBe("Live");
    // In the clinic's zone (Berlin, UTC+1 in November), not UTC.
    expect(screen.getByTestId("last-synced").textContent).toBe("Up to date as of 10:30");
    expect(screen.getByTestId("saved").textContent).toBe("All changes saved");
    expect(screen.getByTestId("pending").hidden).toBe(true);
    expect(screen.getByTestId("rejected-count").hidden).toBe(true);
  });
  it("shows offline with the retry countdown, pending and rejections", () => {
    const tried = new Date(Date.now() - 10_000).toISOString().slice(0, 19) + "Z";
    const url = "error sending request for url (http://127.0.0.1:8787/v1/pull?cursor=436&client_id=0190a5d0-0000-7000-8000-000000000009)";
    renderWith({ ...base, connection: { state: "offline", retry_in_ms: 4000 }, pending: 2, oldest_pending_secs: 30, rejected: 1, last_error: url, last_attempt_at: tried, cursor: 436 });
    expect(screen.getByTestId("connection").textContent).toBe("Offline — trying again in 4 s");
    expect(screen.getByTestId("pending").textContent).toBe("2 changes waiting — last tried 10 s ago");
    expect(screen.getByTestId("rejected-count").textContent).toBe("1 change not saved — review");
    // No URL, client id, cursor or raw error in the status bar.
    const text = document.body.textContent ?? "";
    expect(text).not.toMatch(/http|client_id|cursor|436|0190a5d0|error sending/);
  });
});
