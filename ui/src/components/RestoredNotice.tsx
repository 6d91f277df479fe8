import { useState } from "react";
import { api } from "../api";
import { errorSentence } from "../lib/errors";
import { restoredSentence } from "../lib/format";
import type { Clinic } from "../lib/time";
import { useLive } from "../events";

/** Shown once after the clinic's server was restored from a backup, until the person has read it. */
export function RestoredNotice({ clinic }: { clinic: Clinic }) {
  const { status } = useLive();
  const [error, setError] = useState<string | null>(null);
  const notice = status?.server_restored;
  if (!notice) return null;
  return (
    <div className="notice restored" role="alert" data-testid="server-restored">
      <p>{restoredSentence(notice, clinic)}</p>
      {error && <p className="error">{error}</p>}
      <button
        onClick={() => {
          setError(null);
          api.dismissServerRestored().catch((e) => setError(errorSentence(e, null)));
        }}
      >
        OK, I will check
      </button>
    </div>
  );
}
