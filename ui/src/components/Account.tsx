// The desk's account controls: the screen lock (after idle time, or on
// request), switching user, signing out, changing the password. Data stays
// hidden while locked; the same person's password opens it again, or
// another person signs in with their own account (their own local copy).
import { useQueryClient } from "@tanstack/react-query";
import { useEffect, useRef, useState, type FormEvent } from "react";
import { api, errorMessage, isAppError } from "../api";
import type { Staff } from "../bindings/Staff";

/** Locks the screen after `seconds` without a key press, click or touch (0 or null: never). */
export function useIdleLock(seconds: number | null) {
  const client = useQueryClient();
  const timer = useRef<number | undefined>(undefined);
  useEffect(() => {
    if (!seconds || seconds <= 0) return;
    const lock = () => {
      void api.lock().then(() => client.invalidateQueries({ queryKey: ["session"] }));
    };
    const reset = () => {
      window.clearTimeout(timer.current);
      timer.current = window.setTimeout(lock, seconds * 1000);
    };
    const events = ["keydown", "mousedown", "mousemove", "touchstart", "wheel"];
    for (const e of events) window.addEventListener(e, reset, { passive: true });
    reset();
    return () => {
      window.clearTimeout(timer.current);
      for (const e of events) window.removeEventListener(e, reset);
    };
  }, [seconds, client]);
}

/** Shown instead of the clinic's data while the screen is locked. */
export function LockScreen({ user, onSwitch }: { user: Staff; onSwitch: () => void }) {
  const client = useQueryClient();
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  async function unlock(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.unlock(password);
      setPassword("");
      await client.invalidateQueries();
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  }
  return (
    <div className="signin" data-testid="lock-screen">
      <form onSubmit={unlock} aria-labelledby="lock-title">
        <h1 id="lock-title">Locked</h1>
        <p>
          {user.display_name}'s session is locked. Patient information is hidden until the password is entered
          again. Changes keep syncing meanwhile.
        </p>
        <label>
          Password for {user.username}
          <input data-testid="unlock-password" type="password" autoFocus value={password} onChange={(e) => setPassword(e.target.value)} />
        </label>
        {error && <p className="error" data-testid="unlock-error" role="alert">{error}</p>}
        <button data-testid="unlock-submit" disabled={busy || !password}>{busy ? "Checking…" : "Unlock"}</button>
        <button type="button" className="link" data-testid="switch-user" onClick={onSwitch}>
          Someone else? Sign in with your own account
        </button>
      </form>
    </div>
  );
}

/** Lock, sign out and change password, in the top bar. */
export function AccountMenu({ user, onChangePassword }: { user: Staff; onChangePassword: () => void }) {
  const client = useQueryClient();
  const [pending, setPending] = useState<number | null>(null);
  const [error, setError] = useState<string | null>(null);
  async function lock() {
    await api.lock();
    await client.invalidateQueries({ queryKey: ["session"] });
  }
  async function signOut(discard: boolean) {
    setError(null);
    try {
      await api.signOut(discard);
      setPending(null);
      await client.invalidateQueries();
    } catch (err) {
      if (isAppError(err) && err.code === "pending_changes") {
        const n = Number(/^(\d+)/.exec(err.message)?.[1] ?? "0");
        setPending(n || 1);
      } else {
        setError(errorMessage(err));
      }
    }
  }
  return (
    <span className="account" data-testid="account-menu">
      <span className="who" data-testid="who">{user.display_name} · {user.role}</span>
      <button className="link" data-testid="lock" title="Lock the screen (Ctrl+L)" onClick={() => void lock()}>Lock</button>
      <button className="link" data-testid="change-password" onClick={onChangePassword}>Password</button>
      <button className="link" data-testid="sign-out" onClick={() => void signOut(false)}>Sign out</button>
      {pending !== null && (
        <span className="card warn" role="alertdialog" data-testid="sign-out-confirm">
          {pending} {pending === 1 ? "change has" : "changes have"} not reached the server yet. Signing out removes
          this computer's copy, and {pending === 1 ? "it" : "they"} would be lost.
          <button data-testid="sign-out-wait" onClick={() => setPending(null)}>Keep working</button>
          <button className="danger" data-testid="sign-out-discard" onClick={() => void signOut(true)}>Sign out and discard</button>
        </span>
      )}
      {error && <span className="error" role="alert">{error}</span>}
    </span>
  );
}

/** Change one's own password (also when an administrator's reset requires it). */
export function ChangePassword({ required, onDone }: { required: boolean; onDone: () => void }) {
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [again, setAgain] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState(false);
  const mismatch = again !== "" && again !== next;
  async function submit(e: FormEvent) {
    e.preventDefault();
    setError(null);
    try {
      await api.changePassword(current, next);
      setDone(true);
      onDone();
    } catch (err) {
      setError(errorMessage(err));
    }
  }
  return (
    <form className="card" onSubmit={submit} data-testid="password-form" aria-labelledby="password-title">
      <h2 id="password-title">{required ? "Choose a new password to continue" : "Change your password"}</h2>
      {required && <p>An administrator set a temporary password for you. Choose your own before you go on.</p>}
      <label>Current password<input type="password" data-testid="password-current" value={current} onChange={(e) => setCurrent(e.target.value)} /></label>
      <label>New password (at least 12 characters)<input type="password" data-testid="password-new" value={next} onChange={(e) => setNext(e.target.value)} /></label>
      <label>New password again<input type="password" data-testid="password-again" value={again} onChange={(e) => setAgain(e.target.value)} /></label>
      {mismatch && <p className="field-error">The two new passwords are not the same.</p>}
      {error && <p className="error" role="alert" data-testid="password-error">{error}</p>}
      {done && <p data-testid="password-changed">Your password was changed. Other sessions of your account were ended.</p>}
      <div className="actions">
        <button data-testid="password-save" disabled={!current || next.length < 12 || mismatch}>Change password</button>
        {!required && <button type="button" onClick={onDone}>Cancel</button>}
      </div>
    </form>
  );
}
