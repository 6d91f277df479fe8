// Referrals: who was referred where, how urgently, and where each referral
// is (written → sent → accepted → seen, or withdrawn). Doctors write them;
// reception sends them and follows them up. The clinical reason is for
// doctors and administrators only: reception's desk never receives it
// (clinic_shared::field_access), and opening it is recorded in the access
// log like opening a chart.
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useRef, useState, type FormEvent } from "react";
import { api, errorMessage, newId } from "../api";
import type { Entity } from "../bindings/Entity";
import type { Mutation } from "../bindings/Mutation";
import type { Referral } from "../bindings/Referral";
import type { ReferralStatus } from "../bindings/ReferralStatus";
import type { Rejection } from "../bindings/Rejection";
import type { Staff } from "../bindings/Staff";
import type { Urgency } from "../bindings/Urgency";
import { PERMISSIONS, REFERRAL_STEPS } from "../bindings/permissions";
import { Field } from "../components/Field";
import { PatientLink } from "../components/PatientLink";
import { useDesk } from "../desk";
import { fieldSentences, referralWords, rejectionSentence, type Names } from "../lib/errors";
import { can } from "../lib/roles";
import { release, send, type Sent } from "../lib/submit";
import { formatDate, formatDayOf, nowInstant, type Clinic } from "../lib/time";

/** Open: still on its way (not yet seen, not withdrawn). */
const OPEN: ReferralStatus[] = ["draft", "sent", "accepted"];

/** The button that takes a referral to `to`. */
const STEP_LABELS: Record<ReferralStatus, string> = {
  draft: "Back to draft",
  sent: "Mark sent",
  accepted: "Mark accepted",
  completed: "Mark seen",
  cancelled: "Withdraw",
};

/** What the status column says. */
const STATUS_LABELS: Record<ReferralStatus, string> = {
  draft: "Written, not sent",
  sent: "Sent",
  accepted: "Accepted",
  completed: "Seen",
  cancelled: "Withdrawn",
};

/** One line of a chart's referral list ("Cardiology · Sent · urgent · written Thu, 3 Dec 2026 by Dr. Dana Doyle"); the reason only where the desk holds it. */
export function referralLine(r: Entity<Referral>, clinic: Clinic, names: Names): string {
  const d = r.data;
  const parts = [d.referred_to, STATUS_LABELS[d.status], d.urgency === "urgent" ? "urgent" : "routine", `written ${formatDayOf(d.created_at, clinic)} by ${names.staff(d.referring_doctor_id) ?? "a doctor"}`];
  if (d.reason) parts.push(d.reason);
  return parts.join(" · ");
}

/** Whether `role` receives the referral's clinical reason. */
export const readsReasons = (role: Staff["role"]) => !(PERMISSIONS[role].withheld.referrals ?? []).includes("reason");

export function Referrals({ user }: { user: Staff }) {
  const referrals = useQuery({ queryKey: ["rows", "referrals"], queryFn: api.referrals });
  const [openOnly, setOpenOnly] = useState(true);
  const [writing, setWriting] = useState(false);
  const rows = (referrals.data ?? [])
    .filter((r) => !openOnly || OPEN.includes(r.data.status))
    // Urgent first, then the oldest: what has waited longest is followed up first.
    .sort((a, b) => (a.data.urgency === b.data.urgency ? a.data.created_at.localeCompare(b.data.created_at) : a.data.urgency === "urgent" ? -1 : 1));
  const reasons = readsReasons(user.role);
  return (
    <div className="referrals">
      <div className="toolbar">
        <label className="check">
          <input type="checkbox" data-testid="referrals-open-only" checked={openOnly} onChange={(e) => setOpenOnly(e.target.checked)} /> Only referrals still on their way
        </label>
        {can(user.role, "create_referral") && !writing && (
          <button className="primary" data-testid="referral-new" onClick={() => setWriting(true)}>
            New referral
          </button>
        )}
      </div>
      {!reasons && <p className="muted small" data-testid="referral-reason-note">The clinical reason of a referral is seen by doctors only.</p>}
      {writing && <ReferralForm onDone={() => setWriting(false)} />}
      {referrals.isSuccess && rows.length === 0 && (
        <p className="muted" data-testid="referrals-empty">
          {openOnly ? "No referral is on its way." : "No referrals yet."}
        </p>
      )}
      {rows.length > 0 && (
        <table className="day" data-testid="referrals">
          <thead>
            <tr>
              <th scope="col">Written</th>
              <th scope="col">Patient</th>
              <th scope="col">Referred to</th>
              <th scope="col">Urgency</th>
              <th scope="col">Status</th>
              <th scope="col">By</th>
              <th scope="col">
                <span className="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <ReferralRow key={r.id} row={r} user={user} reasons={reasons} />
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

function ReferralRow({ row, user, reasons }: { row: Entity<Referral>; user: Staff; reasons: boolean }) {
  const { clinic, names, claim, toast } = useDesk();
  const client = useQueryClient();
  const [error, setError] = useState<string | null>(null);
  const [showReason, setShowReason] = useState(false);
  const [confirmWithdraw, setConfirmWithdraw] = useState(false);
  const [busy, setBusy] = useState(false);
  const r = row.data;
  const patient = names.patient(r.patient_id) ?? "A patient not on this computer yet";
  const steps = can(user.role, "set_referral_status") ? REFERRAL_STEPS[r.status] : [];

  async function step(to: ReferralStatus) {
    setError(null);
    setConfirmWithdraw(false);
    setBusy(true);
    let sent: Sent | null = null;
    try {
      sent = await send({ type: "set_referral_status", args: { id: row.id, status: to } }, claim);
      if (sent.state === "refused") return setError(rejectionSentence(sent.rejection, names));
      const what = `The referral of ${patient} to ${r.referred_to}`;
      toast({ text: sent.state === "confirmed" ? `${what} is ${referralWords(to)}.` : `${what} is marked ${referralWords(to)} on this desk; it is sent when the server answers.` });
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      await release(sent, claim, client).catch(() => undefined);
      setBusy(false);
    }
  }

  function toggleReason() {
    const next = !showReason;
    setShowReason(next);
    // Reading the clinical reason is an access to the patient's record.
    if (next) void api.reportView("referrals", row.id).catch(() => undefined);
  }

  return (
    <>
      <tr data-testid="referral" data-id={row.id} data-status={r.status}>
        <td>{formatDayOf(r.created_at, clinic)}</td>
        <td data-testid="referral-patient">
          {names.patient(r.patient_id) ? <PatientLink id={r.patient_id} name={patient} /> : patient}
          {row.pending && <span className="badge">saving</span>}
        </td>
        <td data-testid="referral-to">{r.referred_to}</td>
        <td>{r.urgency === "urgent" ? <span className="badge warn">Urgent</span> : "Routine"}</td>
        <td data-testid="referral-status">{STATUS_LABELS[r.status]}</td>
        <td>{names.staff(r.referring_doctor_id) ?? "A doctor"}</td>
        <td className="actions">
          {reasons && (
            <button data-testid="referral-show-reason" aria-expanded={showReason} onClick={toggleReason}>
              {showReason ? "Hide reason" : "Reason"}
            </button>
          )}
          {steps
            .filter((s) => s !== "cancelled")
            .map((s) => (
              <button key={s} data-testid={`referral-step-${s}`} disabled={busy} onClick={() => void step(s)}>
                {STEP_LABELS[s]}
              </button>
            ))}
          {steps.includes("cancelled") &&
            (confirmWithdraw ? (
              <span className="confirm" data-testid="referral-withdraw-confirm">
                Withdraw the referral of {patient} to {r.referred_to}?{" "}
                <button data-testid="referral-withdraw-yes" disabled={busy} onClick={() => void step("cancelled")}>
                  Withdraw
                </button>{" "}
                <button data-testid="referral-withdraw-no" onClick={() => setConfirmWithdraw(false)}>
                  Keep it
                </button>
              </span>
            ) : (
              <button data-testid="referral-step-cancelled" disabled={busy} onClick={() => setConfirmWithdraw(true)}>
                {STEP_LABELS.cancelled}
              </button>
            ))}
          {error && (
            <span className="error" role="alert" data-testid="referral-error">
              {error}
            </span>
          )}
        </td>
      </tr>
      {showReason && (
        <tr className="detail">
          <td colSpan={7} data-testid="referral-reason">
            {r.reason || "No reason was written."}
          </td>
        </tr>
      )}
    </>
  );
}

function ReferralForm({ onDone }: { onDone: () => void }) {
  const { clinic, names, claim, toast } = useDesk();
  const client = useQueryClient();
  const [query, setQuery] = useState("");
  const [patient, setPatient] = useState("");
  const [to, setTo] = useState("");
  const [urgency, setUrgency] = useState<Urgency>("routine");
  const [reason, setReason] = useState("");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [refusal, setRefusal] = useState<Rejection | null>(null);
  const [busy, setBusy] = useState(false);
  const [sent, setSent] = useState<Sent | null>(null);
  const first = useRef<HTMLInputElement>(null);
  useEffect(() => first.current?.focus(), []);
  const matches = useQuery({ queryKey: ["search", query], queryFn: () => api.searchPatients(query, 20), enabled: query.trim().length > 0 });
  const choices = (matches.data ?? []).filter((r) => !r.data.archived_at);
  useEffect(() => {
    if (choices.length === 1 && !patient) setPatient(choices[0].id);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [matches.data]);

  function show(r: Rejection) {
    const byField = fieldSentences(r.fields, clinic.locale);
    setErrors(byField);
    setRefusal(Object.keys(byField).length ? null : r);
  }

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    try {
      await release(sent, claim, client);
      setSent(null);
      if (!patient) {
        setErrors({ patient_id: "Patient is needed: search and choose one." });
        return;
      }
      const m: Mutation = { type: "create_referral", args: { id: newId(), patient_id: patient, referred_to: to, reason, urgency, created_at: nowInstant() } };
      const result = await send(m, claim);
      setSent(result);
      if (result.state === "refused") return show(result.rejection);
      const who = names.patient(patient) ?? "The patient";
      toast({
        text:
          result.state === "confirmed"
            ? `Referral written: ${who} to ${to.trim()}. Reception can send it now.`
            : `Referral written on this desk: ${who} to ${to.trim()}. It is sent to the server when it answers; you will be told if it is refused.`,
      });
      onDone();
    } catch (err) {
      setRefusal(null);
      setErrors({ form: errorMessage(err) });
    } finally {
      setBusy(false);
    }
  }
  const cancel = () => {
    void release(sent, claim, client);
    onDone();
  };
  return (
    <form
      className="card inline"
      onSubmit={submit}
      data-testid="referral-form"
      aria-label="Write a referral"
      onKeyDown={(e) => {
        if (e.key === "Escape") {
          e.preventDefault();
          cancel();
        }
      }}
    >
      <label htmlFor="referral-patient-search">
        <span>Patient</span>
        <input ref={first} id="referral-patient-search" data-testid="referral-patient-search" placeholder="Search…" value={query} onChange={(e) => setQuery(e.target.value)} autoComplete="off" />
        <select data-testid="referral-patient-choice" aria-label="Choose the patient" value={patient} onChange={(e) => setPatient(e.target.value)} aria-invalid={errors.patient_id ? true : undefined}>
          <option value="">Choose…</option>
          {choices.map((r) => (
            <option key={r.id} value={r.id}>
              {r.data.last_name}, {r.data.first_name} ({formatDate(r.data.date_of_birth, clinic)})
            </option>
          ))}
        </select>
        {errors.patient_id && <span className="field-error">{errors.patient_id}</span>}
      </label>
      <Field label="Referred to" name="referred_to" testid="referral-referred-to" placeholder="Cardiology, Dr. Weber" value={to} onChange={(e) => setTo(e.target.value)} error={errors.referred_to} />
      <label>
        <span>Urgency</span>
        <select data-testid="referral-urgency" value={urgency} onChange={(e) => setUrgency(e.target.value as Urgency)}>
          <option value="routine">Routine</option>
          <option value="urgent">Urgent</option>
        </select>
      </label>
      <label htmlFor="referral-reason-text">
        <span>Clinical reason (doctors only)</span>
        <textarea id="referral-reason-text" data-testid="referral-reason-text" rows={3} value={reason} onChange={(e) => setReason(e.target.value)} aria-invalid={errors.reason ? true : undefined} />
        {errors.reason && (
          <span className="field-error" data-testid="error-reason" role="alert">
            {errors.reason}
          </span>
        )}
      </label>
      {(refusal || errors.form) && (
        <p className="error" data-testid="referral-form-error" role="alert">
          {refusal ? rejectionSentence(refusal, names) : errors.form}
        </p>
      )}
      <div className="actions">
        <button data-testid="referral-submit" className="primary" disabled={busy}>
          {busy ? "Saving…" : "Write referral"}
        </button>
        <button type="button" data-testid="referral-cancel" onClick={cancel} title="Cancel (Esc)" aria-keyshortcuts="Escape">
          Cancel
        </button>
      </div>
    </form>
  );
}
