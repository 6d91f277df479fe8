// Shown when the server's certificate is not one this computer trusts yet:
// the person compares the fingerprint with the one IT reads from the server
// (`clinic-server tls show`) and only then trusts it.
import { useState } from "react";
import { api, errorMessage } from "../api";

export interface Certificate {
  server: string;
  fingerprint: string;
  short: string;
}

export function TrustServer({ certificate, onTrusted }: { certificate: Certificate; onTrusted: () => void }) {
  const [error, setError] = useState<string | null>(null);
  async function trust() {
    setError(null);
    try {
      await api.trustServer(certificate.server, certificate.fingerprint);
      onTrusted();
    } catch (err) {
      setError(errorMessage(err));
    }
  }
  return (
    <div className="card warn" role="alertdialog" aria-labelledby="trust-title" data-testid="trust-server">
      <h2 id="trust-title">Check the server before you go on</h2>
      <p>
        This computer has not talked to <strong>{certificate.server}</strong> before. Ask IT for the server's
        fingerprint (they read it with <code>clinic-server tls show</code>) and compare it with this one:
      </p>
      <p className="fingerprint" data-testid="trust-short">{certificate.short}</p>
      <p className="muted small" data-testid="trust-hex">{certificate.fingerprint}</p>
      <p>Only if every group is the same, trust it. If it differs, stop and tell IT.</p>
      {error && <p className="error">{error}</p>}
      <button type="button" onClick={trust} data-testid="trust-confirm">The numbers match — trust this server</button>
    </div>
  );
}
