import { render, screen } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import type { SyncStatus } from "../bindings/SyncStatus";
import { LiveContext } from "../events";
import { StatusBar } from "./StatusBar";

function renderWith(status: SyncStatus) {
  return render(
    <LiveContext.Provider value={{ status, recent: new Set() }}>
      <StatusBar onOpenSync={vi.fn()} />
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
};

describe("StatusBar", () => {
  it("shows live and the last sync, hides empty counters", () => {
    renderWith(base);
    expect(screen.getByTestId("connection").textContent).toBe("Live");
    expect(screen.getByTestId("last-synced").textContent).toContain("09:30:05");
    expect(screen.getByTestId("pending").hidden).toBe(true);
    expect(screen.getByTestId("rejected-count").hidden).toBe(true);
  });
  it("shows offline with the retry countdown, pending and rejections", () => {
    renderWith({ ...base, connection: { state: "offline", retry_in_ms: 4000 }, pending: 2, oldest_pending_secs: 30, rejected: 1, last_error: "cannot reach the server" });
    expect(screen.getByTestId("connection").textContent).toBe("Offline — reconnecting in 4 s");
    expect(screen.getByTestId("pending").textContent).toBe("2 pending (oldest 30 s)");
    expect(screen.getByTestId("rejected-count").textContent).toContain("1 not saved");
    expect(screen.getByText("cannot reach the server")).toBeTruthy();
  });
});
