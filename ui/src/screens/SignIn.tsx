import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { api, errorMessage, isAppError } from "../api";
import { TrustServer, type Certificate } from "../components/TrustServer";

export function SignIn({
  defaultServer,
  previousUser,
  onCancel,
  cancelLabel,
}: {
  defaultServer: string | null;
  previousUser: string | null;
  /** Offered when signing in is a choice (switching user on a locked desk). */
  onCancel?: () => void;
  cancelLabel?: string;
}) {
  const client = useQueryClient();
  const configured = useQuery({ queryKey: ["defaultServer"], queryFn: api.defaultServer });
  // What the person typed, else the one IT configured (CLINIC_SERVER, as the
  // README says), else the last server used here, else the local demo server.
  const [typed, setServer] = useState<string | null>(null);
  const server = typed ?? configured.data ?? defaultServer ?? "http://127.0.0.1:8787";
  const [username, setUsername] = useState(previousUser ?? "");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [certificate, setCertificate] = useState<Certificate | null>(null);
  const [busy, setBusy] = useState(false);

  async function signIn() {
    setBusy(true);
    setError(null);
    setCertificate(null);
    try {
      await api.signIn(server, username, password);
      await client.invalidateQueries();
    } catch (err) {
      const cert = isAppError(err) ? (err as { certificate?: Certificate }).certificate : undefined;
      if (cert) setCertificate(cert);
      else setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  }

  function submit(e: FormEvent) {
    e.preventDefault();
    void signIn();
  }

  return (
    <div className="signin">
      <form onSubmit={submit} data-testid="signin-form">
        <h1>Clinic Sync</h1>
        {previousUser && (
          <p className="muted">
            Your unsent changes are kept until you sign in again. If the server cannot be reached, {previousUser} can
            still sign in here: the password is checked on this computer and changes sync once the server answers.
          </p>
        )}
        <label>
          Server
          <input data-testid="signin-server" value={server} onChange={(e) => setServer(e.target.value)} />
        </label>
        <label>
          Username
          <input data-testid="signin-username" value={username} autoFocus onChange={(e) => setUsername(e.target.value)} />
        </label>
        <label>
          Password
          <input data-testid="signin-password" type="password" value={password} onChange={(e) => setPassword(e.target.value)} />
        </label>
        {error && <p className="error" data-testid="signin-error">{error}</p>}
        {certificate && <TrustServer certificate={certificate} onTrusted={() => void signIn()} />}
        <button data-testid="signin-submit" disabled={busy || !username || !password}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
        {onCancel && (
          <button type="button" className="link" data-testid="signin-cancel" onClick={onCancel}>
            {cancelLabel ?? "Cancel"}
          </button>
        )}
      </form>
    </div>
  );
}
