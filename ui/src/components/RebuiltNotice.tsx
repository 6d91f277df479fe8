import { useState } from "react";
import { api } from "../api";
import { errorSentence } from "../lib/errors";
import { rebuiltSentence } from "../lib/format";
import type { Clinic } from "../lib/time";
import { useLive } from "../events";

/** Shown once after this desk's copy of the data was found damaged at start and rebuilt, until the person has read it. */
export function RebuiltNotice({ clinic }: { clinic: Clinic }) {
  const { status } = useLive();
  const [error, setError] = useState<string | null>(null);
  const notice = status?.mirror_rebuilt;
  if (!notice) return null;
  return (
    <div className="notice rebuilt" role="alert" data-testid="mirror-rebuilt">
      <p>{rebuiltSentence(notice, clinic)}</p>
      {error && <p className="error">{error}</p>}
      <button
        onClick={() => {
          setError(null);
          api.dismissMirrorRebuilt().catch((e) => setError(errorSentence(e, null)));
        }}
      >
        OK, I have read this
      </button>
    </div>
  );
}
