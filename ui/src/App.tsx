import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { api } from "./api";
import { StatusBar } from "./components/StatusBar";
import { LiveProvider, useLive } from "./events";
import { syncProgress } from "./lib/format";
import { screensFor, type Screen } from "./lib/roles";
import { Billing } from "./screens/Billing";
import { Inventory } from "./screens/Inventory";
import { Patients } from "./screens/Patients";
import { Schedule } from "./screens/Schedule";
import { SignIn } from "./screens/SignIn";
import { StaffScreen } from "./screens/Staff";
import { SyncPanel } from "./screens/SyncPanel";
import type { Staff } from "./bindings/Staff";

const titles: Record<Screen, string> = {
  patients: "Patients",
  schedule: "Schedule",
  billing: "Billing",
  inventory: "Inventory",
  staff: "Staff",
  sync: "Sync",
};

export function App() {
  const session = useQuery({ queryKey: ["session"], queryFn: api.sessionInfo });
  if (session.isPending) return <div className="splash">Opening…</div>;
  if (session.isError) return <div className="splash error">Could not open the local database: {String(session.error)}</div>;
  const info = session.data;
  return (
    <LiveProvider initial={info.status}>
      {info.identity.signed_in && info.identity.user ? (
        <Shell user={info.identity.user} />
      ) : (
        <SignIn defaultServer={info.identity.server_url} previousUser={info.identity.user?.username ?? null} />
      )}
    </LiveProvider>
  );
}

function Shell({ user }: { user: Staff }) {
  const screens = screensFor(user.role);
  const [screen, setScreen] = useState<Screen>("patients");
  const { status } = useLive();
  const client = useQueryClient();
  // The role shown is the one the mirror holds; a role change re-reads the session.
  if (status?.connection.state === "signed_out") {
    client.invalidateQueries({ queryKey: ["session"] });
  }
  return (
    <div className="shell">
      <header className="topbar">
        <span className="brand">Clinic Sync</span>
        <nav>
          {screens.map((s) => (
            <button key={s} data-testid={`nav-${s}`} className={s === screen ? "active" : ""} onClick={() => setScreen(s)}>
              {titles[s]}
            </button>
          ))}
        </nav>
        <span className="who" data-testid="who">
          {user.display_name} · {user.role}
        </span>
      </header>
      <div className="progress-slot">
        {status?.initial_sync && (
          <div className="progress" data-testid="initial-sync">
            <div style={{ width: `${Math.round(100 * syncProgress(status.initial_sync))}%` }} />
            <span>Loading the clinic's data… {status.initial_sync.rows} records</span>
          </div>
        )}
      </div>
      <main>
        {screen === "patients" && <Patients user={user} />}
        {screen === "schedule" && <Schedule user={user} />}
        {screen === "billing" && <Billing />}
        {screen === "inventory" && <Inventory />}
        {screen === "staff" && <StaffScreen user={user} />}
        {screen === "sync" && <SyncPanel />}
      </main>
      <StatusBar onOpenSync={() => setScreen("sync")} />
    </div>
  );
}
