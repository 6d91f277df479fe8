import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useCallback, useEffect, useMemo, useState } from "react";
import { api } from "./api";
import { AccountMenu, ChangePassword, LockScreen, useIdleLock } from "./components/Account";
import { Notifications } from "./components/Notifications";
import { RestoredNotice } from "./components/RestoredNotice";
import { RebuiltNotice } from "./components/RebuiltNotice";
import { StatusBar } from "./components/StatusBar";
import { DeskProvider, useDesk } from "./desk";
import { LiveProvider, useLive } from "./events";
import { syncProgress } from "./lib/format";
import { screensFor, type Screen } from "./lib/roles";
import { commandFor, type Command } from "./lib/shortcuts";
import { Billing } from "./screens/Billing";
import { Inventory } from "./screens/Inventory";
import { Patients } from "./screens/Patients";
import { OpenInvoiceContext, OpenPatientContext } from "./navigate";
import { Referrals } from "./screens/Referrals";
import { Schedule } from "./screens/Schedule";
import { SignIn } from "./screens/SignIn";
import { StaffScreen } from "./screens/Staff";
import { SyncPanel } from "./screens/SyncPanel";
import { WaitingRoom } from "./screens/WaitingRoom";
import type { Staff } from "./bindings/Staff";

const titles: Record<Screen, string> = {
  patients: "Patients",
  schedule: "Schedule",
  waiting: "Waiting room",
  referrals: "Referrals",
  billing: "Billing",
  inventory: "Inventory",
  staff: "Staff",
  sync: "Sync",
};

export function App() {
  const client = useQueryClient();
  const session = useQuery({ queryKey: ["session"], queryFn: api.sessionInfo });
  if (session.isPending) return <div className="splash">Opening…</div>;
  if (session.isError) return <div className="splash error">Could not open the local database: {String(session.error)}</div>;
  const info = session.data;
  const { identity } = info;
  return (
    <LiveProvider initial={info.status}>
      {identity.locked && identity.user ? (
        <Locked user={identity.user} server={identity.server_url} />
      ) : identity.signed_in && identity.user && identity.must_change_password ? (
        <div className="signin">
          <ChangePassword required onDone={() => void client.invalidateQueries({ queryKey: ["session"] })} />
        </div>
      ) : identity.signed_in && identity.user ? (
        <DeskProvider zone={info.time_zone} user={identity.user}>
          <Shell user={identity.user} />
        </DeskProvider>
      ) : (
        <SignIn defaultServer={identity.server_url} previousUser={identity.user?.username ?? null} />
      )}
    </LiveProvider>
  );
}

/** A locked desk: the same person unlocks, or someone else signs in with their own account (their own local copy). */
function Locked({ user, server }: { user: Staff; server: string | null }) {
  const [switching, setSwitching] = useState(false);
  if (!switching) return <LockScreen user={user} onSwitch={() => setSwitching(true)} />;
  return <SignIn defaultServer={server} previousUser={null} onCancel={() => setSwitching(false)} cancelLabel={`Back to ${user.display_name}'s locked screen`} />;
}

function Shell({ user }: { user: Staff }) {
  const screens = useMemo(() => screensFor(user.role), [user.role]);
  const [screen, setScreen] = useState<Screen>("patients");
  const [command, setCommand] = useState<Command | null>(null);
  const client = useQueryClient();
  const { status } = useLive();
  const { clinic } = useDesk();
  const [changingPassword, setChangingPassword] = useState(false);
  const settings = useQuery({ queryKey: ["deskSettings"], queryFn: api.deskSettings, staleTime: Infinity });
  useIdleLock(settings.data?.idle_lock_seconds ?? null);
  // The keyboard shortcuts (lib/shortcuts.ts): each switches to its screen and hands the command over.
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const target = e.target as HTMLElement | null;
      const inField = !!target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT");
      const name = commandFor(e, inField);
      if (!name) return;
      e.preventDefault();
      if (name === "lock") {
        void api.lock().then(() => client.invalidateQueries({ queryKey: ["session"] }));
        return;
      }
      if (name === "undo") {
        const buttons = document.querySelectorAll<HTMLButtonElement>('[data-testid="toast-undo"]');
        buttons[buttons.length - 1]?.click();
        return;
      }
      if (name === "search") {
        document.querySelector<HTMLInputElement>('[data-shortcut="search"]')?.focus();
        if (!document.querySelector('[data-shortcut="search"]')) setScreen("patients");
        return;
      }
      const target_screen: Screen = name === "new-patient" ? "patients" : "schedule";
      if (!screens.includes(target_screen)) return;
      setScreen(target_screen);
      setCommand((c) => ({ name, seq: (c?.seq ?? 0) + 1 }));
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [screens, client]);
  const openPatient = useCallback((patientId: string) => {
    setScreen("patients");
    setCommand((c) => ({ name: "open-patient", seq: (c?.seq ?? 0) + 1, patientId }));
  }, []);
  const openInvoice = useCallback((invoiceId: string) => {
    setScreen("billing");
    setCommand((c) => ({ name: "open-invoice", seq: (c?.seq ?? 0) + 1, invoiceId }));
  }, []);
  // The role shown is the one the mirror holds; a role change re-reads the session.
  if (status?.connection.state === "signed_out") {
    client.invalidateQueries({ queryKey: ["session"] });
  }
  return (
    <div className="shell">
      <header className="topbar">
        <span className="brand">Clinic Sync</span>
        <nav aria-label="Screens">
          {screens.map((s) => (
            <button key={s} data-testid={`nav-${s}`} className={s === screen ? "active" : ""} aria-current={s === screen ? "page" : undefined} onClick={() => setScreen(s)}>
              {titles[s]}
            </button>
          ))}
        </nav>
        <AccountMenu user={user} onChangePassword={() => setChangingPassword(true)} />
      </header>
      {changingPassword && (
        <div className="overlay-form">
          <ChangePassword required={false} onDone={() => setChangingPassword(false)} />
        </div>
      )}
      <div className="progress-slot">
        {status?.initial_sync && (
          <div className="progress" data-testid="initial-sync">
            <div style={{ width: `${Math.round(100 * syncProgress(status.initial_sync))}%` }} />
            <span>Loading the clinic's data… {status.initial_sync.rows} records</span>
          </div>
        )}
      </div>
      <RestoredNotice clinic={clinic} />
      <RebuiltNotice clinic={clinic} />
      <Notifications onReview={() => setScreen("sync")} />
      <OpenPatientContext.Provider value={openPatient}>
      <OpenInvoiceContext.Provider value={openInvoice}>
      <main>
        {screen === "patients" && <Patients user={user} command={command} />}
        {screen === "schedule" && <Schedule user={user} command={command} />}
        {screen === "waiting" && <WaitingRoom user={user} />}
        {screen === "referrals" && <Referrals user={user} />}
        {screen === "billing" && <Billing user={user} command={command} />}
        {screen === "inventory" && <Inventory />}
        {screen === "staff" && <StaffScreen user={user} />}
        {screen === "sync" && <SyncPanel />}
      </main>
      </OpenInvoiceContext.Provider>
      </OpenPatientContext.Provider>
      <StatusBar onOpenSync={() => setScreen("sync")} clinic={clinic} />
    </div>
  );
}
