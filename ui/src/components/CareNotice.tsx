// A doctor's chart of a patient outside their care: the clinical notes,
// diagnoses and referral reasons are not on this desk (the server withholds
// them; clinic_shared::care). The desk first asks the server again (the
// patient may be the doctor's now), then offers to break the glass: a typed
// reason, recorded and shown to administrators, opens the records for a
// while. A grant in force is said with its end, in the clinic's time.
import { useQueryClient } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { api, errorMessage, isAppError } from "../api";
import type { ChartCare } from "../bindings/ChartCare";
import { useDesk } from "../desk";
import { fieldSentences } from "../lib/errors";
import { formatTime } from "../lib/time";
import { Dialog } from "./Dialog";

type Asked = "asking" | "not-in-care" | "unreachable" | "opened";

export function CareNotice({ patientId, name, care }: { patientId: string; name: string; care: ChartCare }) {
  const { clinic, toast } = useDesk();
  const client = useQueryClient();
  const [asked, setAsked] = useState<Asked | null>(null);
  const [breaking, setBreaking] = useState(false);
  const [reason, setReason] = useState("");
  const [reasonError, setReasonError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const withheld = care.withheld;

  // Once per chart opened with withheld text: may this doctor read it now?
  useEffect(() => {
    if (!withheld) return;
    let gone = false;
    setAsked("asking");
    api
      .clinicalRecords(patientId)
      .then(() => {
        if (gone) return;
        setAsked("opened");
        void client.invalidateQueries({ queryKey: ["chart", patientId] });
      })
      .catch((e) => {
        if (gone) return;
        setAsked(isAppError(e) && e.code === "not_in_care" ? "not-in-care" : "unreachable");
      });
    return () => {
      gone = true;
    };
  }, [patientId, withheld, client]);

  async function breakGlass() {
    setBusy(true);
    setReasonError(null);
    try {
      const granted = await api.breakTheGlass(patientId, reason);
      setBreaking(false);
      setReason("");
      setAsked("opened");
      await client.invalidateQueries({ queryKey: ["chart", patientId] });
      const until = granted.grant_ends_at ? ` until ${formatTime(granted.grant_ends_at, clinic)}` : "";
      toast({ text: `You broke the glass for ${name}: their clinical notes are open to you${until}. An administrator can see that you did, and why.` });
    } catch (e) {
      const fields = isAppError(e) ? fieldSentences(e.rejection?.fields, clinic.locale) : {};
      setReasonError(fields.reason ?? errorMessage(e));
    } finally {
      setBusy(false);
    }
  }

  if (care.grant_ends_at && !withheld) {
    return (
      <p className="card" role="status" data-testid="care-grant">
        You broke the glass for {name}: their clinical notes are open to you until {formatTime(care.grant_ends_at, clinic)}.
      </p>
    );
  }
  if (!withheld || asked === "opened") return null;
  if (asked === "asking" || asked === null) {
    return (
      <p className="muted" role="status" data-testid="care-checking">
        Checking with the server whether {name}'s clinical notes are open to you…
      </p>
    );
  }
  if (asked === "unreachable") {
    return (
      <div className="card warn" role="status" data-testid="care-notice">
        {name}'s clinical notes are not on this computer, and the server cannot be reached to check whether you may read them. Open the chart again when
        the connection is back.
      </div>
    );
  }
  return (
    <div className="card warn" role="status" data-testid="care-notice">
      <p data-testid="care-notice-text">
        {name} is not your patient, so their clinical notes, diagnoses and referral reasons are hidden on this desk. If you need them to treat {name}{" "}
        now, break the glass: say why, and an administrator will see that you did.
      </p>
      <button className="danger" data-testid="glass-open" onClick={() => setBreaking(true)}>
        Break the glass…
      </button>
      {breaking && (
        <Dialog
          title={`Read ${name}'s clinical records`}
          confirm={busy ? "Opening…" : "Open the records"}
          danger
          testid="glass"
          onCancel={() => {
            setBreaking(false);
            setReasonError(null);
          }}
          onConfirm={() => void breakGlass()}
        >
          <p>
            {name} is not in your care. Your reason is kept in the access record with your name and the time, and administrators review it. The notes stay
            open to you for a limited time; the chart says until when.
          </p>
          <label>
            Why do you need them?
            <textarea data-testid="glass-reason" value={reason} rows={3} onChange={(e) => setReason(e.target.value)} />
          </label>
          {reasonError && (
            <p className="error" data-testid="glass-error">
              {reasonError}
            </p>
          )}
        </Dialog>
      )}
    </div>
  );
}
