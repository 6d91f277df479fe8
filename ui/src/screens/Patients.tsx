import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useVirtualizer } from "@tanstack/react-virtual";
import { useEffect, useRef, useState, type FormEvent, type KeyboardEvent } from "react";
import { api, errorMessage, newId } from "../api";
import type { Appointment } from "../bindings/Appointment";
import type { Entity } from "../bindings/Entity";
import type { HistoryEntry } from "../bindings/HistoryEntry";
import type { Invoice } from "../bindings/Invoice";
import type { Mutation } from "../bindings/Mutation";
import type { Patient } from "../bindings/Patient";
import type { Rejection } from "../bindings/Rejection";
import type { Sex } from "../bindings/Sex";
import type { Staff } from "../bindings/Staff";
import type { TreatmentRecord } from "../bindings/TreatmentRecord";
import { Dialog } from "../components/Dialog";
import { AlertBanner } from "../components/AlertBanner";
import { CareNotice } from "../components/CareNotice";
import { Field } from "../components/Field";
import { useDesk } from "../desk";
import { useLive } from "../events";
import { fieldLabel, fieldSentences, formatMoney, rejectionSentence, statusWords, type Names } from "../lib/errors";
import { formOf, isEmptyPatch, MORE_TEXT, patientPatch, type PatientForm } from "../lib/patch";
import { AccessLog } from "../components/AccessLog";
import { canArchive, canEditPatients, canReadAudit, canReadHistory, canRegisterPatients, canSeeRecords, canWriteRecords } from "../lib/roles";
import { release, send, type Sent } from "../lib/submit";
import { datePattern, formatDate, formatDayOf, formatInstant, formatTimeRange, nowInstant, parseDate, type Clinic } from "../lib/time";
import { take, type Command } from "../lib/shortcuts";
import { findDuplicates } from "../lib/duplicates";
import { useOpenPatient } from "../navigate";
import { referralLine } from "./Referrals";

export function Patients({ user, command }: { user: Staff; command: Command | null }) {
  const [query, setQuery] = useState("");
  const [selected, setSelected] = useState<string | null>(null);
  const [creating, setCreating] = useState(false);
  const [showArchived, setShowArchived] = useState(false);
  const search = useRef<HTMLInputElement>(null);
  const list = useRef<HTMLDivElement>(null);
  const rows = useQuery({
    queryKey: query.trim() ? ["search", query.trim()] : ["rows", "patients"],
    queryFn: () => (query.trim() ? api.searchPatients(query.trim(), 500) : api.patients()),
    placeholderData: (prev) => prev,
  });
  const all = [...(rows.data ?? [])].sort(byName);
  const patients = showArchived ? all : all.filter((p) => !p.data.archived_at);
  const archivedHidden = all.length - patients.length;
  useEffect(() => {
    if (canRegisterPatients(user.role) && take(command, "new-patient")) {
      setCreating(true);
      setSelected(null);
    }
    const open = command?.patientId;
    if (open && take(command, "open-patient")) {
      setCreating(false);
      setSelected(open);
    }
  }, [command, user.role]);
  return (
    <div className="split">
      <section className="list-pane" aria-label="Patient list">
        <div className="toolbar">
          <input
            ref={search}
            data-testid="patient-search"
            data-shortcut="search"
            aria-label="Search patients by name, phone or date of birth"
            title="Search (/ or Ctrl+F)"
            placeholder="Search name, phone or date of birth"
            value={query}
            onChange={(e) => setQuery(e.target.value)}
            onKeyDown={(e) => {
              if (e.key === "ArrowDown") {
                e.preventDefault();
                list.current?.focus();
              } else if (e.key === "Enter" && patients.length > 0) {
                setSelected(patients[0].id);
                setCreating(false);
              }
            }}
          />
          {canRegisterPatients(user.role) && (
            <button
              data-testid="patient-new"
              title="New patient (Alt+N)"
              aria-keyshortcuts="Alt+N"
              onClick={() => {
                setCreating(true);
                setSelected(null);
              }}
            >
              New patient
            </button>
          )}
        </div>
        <PatientList
          listRef={list}
          patients={patients}
          selected={selected}
          onSelect={(id) => {
            setSelected(id);
            setCreating(false);
          }}
          onEscape={() => search.current?.focus()}
        />
        <p className="muted small" data-testid="patient-count">
          {patients.length} patients
          {archivedHidden > 0 && ` · ${archivedHidden} archived not shown`}{" "}
          <label className="check inline-check">
            <input type="checkbox" data-testid="show-archived" checked={showArchived} onChange={(e) => setShowArchived(e.target.checked)} /> Show archived
          </label>
        </p>
      </section>
      <section className="detail-pane" aria-label="Patient details">
        {creating && (
          <PatientEditor
            onDone={(id) => {
              setCreating(false);
              setSelected(id);
            }}
            onCancel={() => {
              setCreating(false);
              search.current?.focus();
            }}
          />
        )}
        {!creating && selected && <PatientChart key={selected} id={selected} user={user} onClosed={() => list.current?.focus()} />}
        {!creating && !selected && <p className="muted">Select a patient{canRegisterPatients(user.role) ? ", or register a new one" : ""}.</p>}
      </section>
    </div>
  );
}

function byName(a: Entity<Patient>, b: Entity<Patient>): number {
  return a.data.last_name.localeCompare(b.data.last_name) || a.data.first_name.localeCompare(b.data.first_name);
}

/** The patient list: a listbox; arrows, Home/End and Page keys move, Enter opens, Esc goes back to the search. */
function PatientList({
  listRef,
  patients,
  selected,
  onSelect,
  onEscape,
}: {
  listRef: React.RefObject<HTMLDivElement | null>;
  patients: Entity<Patient>[];
  selected: string | null;
  onSelect: (id: string) => void;
  onEscape: () => void;
}) {
  const { recent } = useLive();
  const { clinic } = useDesk();
  const [active, setActive] = useState(0);
  const virtual = useVirtualizer({ count: patients.length, getScrollElement: () => listRef.current, estimateSize: () => 44, overscan: 10 });
  const index = Math.min(active, Math.max(0, patients.length - 1));
  function move(to: number) {
    const i = Math.max(0, Math.min(patients.length - 1, to));
    setActive(i);
    virtual.scrollToIndex(i);
  }
  function onKeyDown(e: KeyboardEvent) {
    const page = 10;
    const keys: Record<string, () => void> = {
      ArrowDown: () => move(index + 1),
      ArrowUp: () => move(index - 1),
      Home: () => move(0),
      End: () => move(patients.length - 1),
      PageDown: () => move(index + page),
      PageUp: () => move(index - page),
      Enter: () => patients[index] && onSelect(patients[index].id),
      " ": () => patients[index] && onSelect(patients[index].id),
      Escape: onEscape,
    };
    const f = keys[e.key];
    if (f) {
      e.preventDefault();
      f();
    }
  }
  const activeId = patients[index] ? `patient-option-${patients[index].id}` : undefined;
  return (
    <div
      ref={listRef}
      className="virtual-list"
      data-testid="patient-list"
      role="listbox"
      aria-label="Patients"
      tabIndex={0}
      aria-activedescendant={activeId}
      onKeyDown={onKeyDown}
    >
      <div style={{ height: virtual.getTotalSize(), position: "relative" }}>
        {virtual.getVirtualItems().map((item) => {
          const row = patients[item.index];
          const p = row.data;
          const classes = [
            "list-row",
            row.id === selected ? "selected" : "",
            item.index === index ? "active" : "",
            recent.has(row.id) ? "flash" : "",
            row.pending ? "pending" : "",
            p.archived_at ? "archived" : "",
          ];
          return (
            <div
              key={row.id}
              id={`patient-option-${row.id}`}
              role="option"
              aria-selected={row.id === selected}
              className={classes.join(" ")}
              data-testid="patient-row"
              data-id={row.id}
              style={{ position: "absolute", top: 0, left: 0, right: 0, height: item.size, transform: `translateY(${item.start}px)` }}
              onClick={() => {
                setActive(item.index);
                onSelect(row.id);
              }}
            >
              <strong>
                {p.last_name}, {p.first_name}
              </strong>
              <span className="muted">
                {" "}
                {formatDate(p.date_of_birth, clinic)}
                {p.phone ? ` · ${p.phone}` : ""}
              </span>
              {p.archived_at && <span className="badge">archived</span>}
              {row.pending && <span className="badge">saving</span>}
            </div>
          );
        })}
      </div>
    </div>
  );
}

/** A placeholder date for checking the other fields while the typed one does not parse. */
const PLACEHOLDER_DOB = "2000-01-01";

export function PatientEditor({ row, onDone, onCancel }: { row?: Entity<Patient>; onDone: (id: string, sent: Sent | null) => void; onCancel: () => void }) {
  const { clinic, names, claim } = useDesk();
  const client = useQueryClient();
  const before = row?.data ?? null;
  const [form, setForm] = useState<PatientForm>(() => {
    const f = formOf(before);
    return { ...f, date_of_birth: before ? formatDate(before.date_of_birth, clinic) : "" };
  });
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [tried, setTried] = useState(false);
  const [busy, setBusy] = useState(false);
  const [sent, setSent] = useState<Sent | null>(null);
  const [id] = useState(() => row?.id ?? newId());
  const first = useRef<HTMLInputElement>(null);
  useEffect(() => first.current?.focus(), []);
  const openPatient = useOpenPatient();
  // A new registration is checked against everyone this desk holds (archived patients too).
  const everyone = useQuery({ queryKey: ["rows", "patients"], queryFn: api.patients, enabled: !row });
  const duplicates = row
    ? []
    : findDuplicates({ first_name: form.first_name, last_name: form.last_name, date_of_birth: parseDate(form.date_of_birth, clinic.locale), phone: form.phone }, everyone.data ?? []);

  /** The change the form describes, and the problems only the form can see (a date that does not parse). */
  function build(f: PatientForm): { mutation: Mutation | null; own: Record<string, string> } {
    const own: Record<string, string> = {};
    let dob = parseDate(f.date_of_birth, clinic.locale);
    if (f.date_of_birth.trim() === "") own.date_of_birth = `${fieldLabel("date_of_birth")} is needed.`;
    else if (!dob) own.date_of_birth = `${fieldLabel("date_of_birth")} is not a date; type it like ${datePattern(clinic.locale)}.`;
    dob = dob ?? PLACEHOLDER_DOB;
    const typed = { ...f, date_of_birth: dob };
    if (row && before) {
      const fields = patientPatch(before, typed);
      if (isEmptyPatch(fields)) return { mutation: null, own };
      return { mutation: { type: "update_patient", args: { id: row.id, base_version: row.version, fields } }, own };
    }
    const opt = (s: string) => (s.trim() === "" ? null : s.trim());
    return {
      mutation: {
        type: "create_patient",
        args: {
          id,
          first_name: f.first_name,
          last_name: f.last_name,
          date_of_birth: dob,
          phone: opt(f.phone),
          email: opt(f.email),
          address: opt(f.address),
          ...(f.sex ? { sex: f.sex } : {}),
          ...Object.fromEntries(MORE_TEXT.filter((k) => opt(f[k]) !== null).map((k) => [k, opt(f[k])])),
        },
      },
      own,
    };
  }

  /** Every problem at once: the form's own and the rules' (the engine's check, nothing queued). */
  async function problems(f: PatientForm): Promise<{ mutation: Mutation | null; all: Record<string, string>; other: Rejection | null }> {
    const { mutation, own } = build(f);
    let all: Record<string, string> = { ...own };
    let other: Rejection | null = null;
    if (mutation) {
      const refusal = await api.checkMutation(mutation);
      if (refusal) {
        const byField = fieldSentences(refusal.fields, clinic.locale);
        // A placeholder date was checked in place of the typed one: its verdict does not count.
        if (own.date_of_birth) delete byField.date_of_birth;
        all = { ...byField, ...own };
        if (!refusal.fields?.length) other = refusal;
      }
    }
    return { mutation, all, other };
  }

  // After a first attempt, errors follow the input: each clears as its field is fixed.
  useEffect(() => {
    if (!tried) return;
    let stale = false;
    const timer = setTimeout(async () => {
      const p = await problems(form);
      if (!stale) setErrors(p.all);
    }, 120);
    return () => {
      stale = true;
      clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [form, tried]);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setError(null);
    setTried(true);
    setBusy(true);
    try {
      await release(sent, claim, client);
      const p = await problems(form);
      setErrors(p.all);
      if (Object.keys(p.all).length > 0) return;
      if (p.other) return setError(rejectionSentence(p.other, names));
      if (!p.mutation) return onDone(id, null);
      const result = await send(p.mutation, claim);
      setSent(result);
      if (result.state === "refused") {
        setErrors(fieldSentences(result.rejection.fields, clinic.locale));
        if (!result.rejection.fields?.length) setError(rejectionSentence(result.rejection, names));
        return;
      }
      onDone(id, result);
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  }
  const cancel = () => {
    void release(sent, claim, client);
    onCancel();
  };
  const set = (k: keyof PatientForm) => (e: { target: { value: string } }) => setForm({ ...form, [k]: e.target.value });
  const field = (k: keyof PatientForm, label: string, extra: Partial<React.ComponentProps<typeof Field>> = {}) => (
    <Field label={label} name={k} testid={`patient-${k}`} value={form[k]} onChange={set(k)} error={errors[k]} {...extra} />
  );
  return (
    <form
      className="card"
      onSubmit={submit}
      data-testid="patient-form"
      aria-labelledby="patient-form-title"
      onKeyDown={(e) => {
        if (e.key === "Escape") {
          e.preventDefault();
          cancel();
        }
      }}
    >
      <h2 id="patient-form-title">{row ? "Edit patient" : "New patient"}</h2>
      <Field ref={first} label="First name" name="first_name" testid="patient-first_name" value={form.first_name} onChange={set("first_name")} error={errors.first_name} autoComplete="off" />
      {field("last_name", "Last name", { autoComplete: "off" })}
      {field("date_of_birth", "Date of birth", { placeholder: datePattern(clinic.locale), hint: `For example ${formatDate("1985-02-14", clinic)}` })}
      {field("phone", "Phone", { type: "tel" })}
      {field("email", "E-mail", { type: "email" })}
      {field("address", "Address")}
      <label htmlFor="field-patient-sex">
        <span>Sex / gender</span>
        <select id="field-patient-sex" data-testid="patient-sex" value={form.sex} onChange={set("sex")}>
          <option value="">Not recorded</option>
          {SEXES.map((s) => (
            <option key={s} value={s}>
              {sexWords[s]}
            </option>
          ))}
        </select>
        {errors.sex && (
          <span className="field-error" data-testid="error-sex" role="alert">
            {errors.sex}
          </span>
        )}
      </label>
      {field("emergency_contact", "Emergency contact", { hint: "Name and relation, e.g. Maja Lindqvist (wife)" })}
      {field("emergency_phone", "Emergency contact's phone", { type: "tel" })}
      {field("insurer", "Insurer")}
      {field("insurance_number", "Insurance number")}
      {field("alerts", "Allergies and alerts", { hint: "Shown on the chart and when booking, e.g. Penicillin allergy" })}
      {duplicates.length > 0 && (
        <div className="card warn" role="status" data-testid="patient-duplicate">
          {duplicates.map((d) => {
            const p = d.patient.data;
            const name = `${p.first_name} ${p.last_name}`;
            const why = d.reasons.length === 2 ? "same name, date of birth and phone" : d.reasons[0] === "phone" ? `same phone, ${p.phone}` : "same name and date of birth";
            return (
              <p key={d.patient.id} data-testid="patient-duplicate-match">
                {name}, born {formatDate(p.date_of_birth, clinic)}, is already registered ({why}){p.archived_at ? " and archived" : ""}.{" "}
                {openPatient && (
                  <button type="button" className="link" data-testid="patient-duplicate-open" onClick={() => openPatient(d.patient.id)}>
                    Open {name}'s chart
                  </button>
                )}
              </p>
            );
          })}
          <p className="muted small">If this is a different person, save to register them.</p>
        </div>
      )}
      {error && (
        <p className="error" role="alert" data-testid="patient-error">
          {error}
        </p>
      )}
      <div className="actions">
        <button data-testid="patient-save" disabled={busy}>
          {busy ? "Saving…" : duplicates.length > 0 ? "Register anyway" : "Save"}
        </button>
        <button type="button" data-testid="patient-cancel" onClick={cancel} title="Cancel (Esc)" aria-keyshortcuts="Escape">
          Cancel
        </button>
      </div>
    </form>
  );
}

/** Appointments that archiving would cancel: booked or checked in, not over. */
export function upcoming(appointments: Entity<Appointment>[], now = nowInstant()): Entity<Appointment>[] {
  return appointments
    .filter((a) => (a.data.status === "scheduled" || a.data.status === "checked_in") && a.data.end > now)
    .sort((x, y) => x.data.start.localeCompare(y.data.start));
}

function PatientChart({ id, user, onClosed }: { id: string; user: Staff; onClosed: () => void }) {
  const { clinic, names, toast } = useDesk();
  const chart = useQuery({ queryKey: ["chart", id], queryFn: () => api.patientChart(id) });
  const [editing, setEditing] = useState(false);
  const [archiving, setArchiving] = useState(false);
  const [showHistory, setShowHistory] = useState(false);
  const [showAccess, setShowAccess] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const opened = !!chart.data;
  // The read audit: opening a chart is recorded on the server (queued here
  // when offline, sent when it answers), once per opening.
  useEffect(() => {
    if (!opened) return;
    api.reportView("patients", id).catch(() =>
      toast({ text: "This computer could not record that this chart was opened. Tell IT: the access record may be incomplete." }),
    );
  }, [opened, id, toast]);
  if (chart.isError) return <p className="error" data-testid="chart-error">This chart could not be opened: {errorMessage(chart.error)}</p>;
  if (!chart.data) return <p className="muted">{chart.isPending ? "Loading…" : "This patient no longer exists."}</p>;
  const { patient, appointments, treatment_records, invoices, referrals } = chart.data;
  const p = patient.data;
  const name = `${p.first_name} ${p.last_name}`;
  if (editing)
    return (
      <PatientEditor
        row={patient}
        onDone={(_, sent) => {
          setEditing(false);
          if (sent?.state === "confirmed") toast({ text: `${name}: changes saved.` });
          if (sent?.state === "queued") toast({ text: `${name}: changes saved on this desk. They are sent when the server answers; you will be told if they are refused.` });
        }}
        onCancel={() => setEditing(false)}
      />
    );
  const future = upcoming(appointments);
  async function archive() {
    setArchiving(false);
    setError(null);
    try {
      const receipt = await api.mutate({ type: "archive_patient", args: { id, cancel_future_appointments: future.length > 0 } });
      const cancelled = receipt.rows.filter(([t]) => t === "appointments").map(([, a]) => a);
      toast({
        text: cancelled.length > 0 ? `${name} archived; ${cancelled.length} appointment(s) cancelled.` : `${name} archived.`,
        undo: async () => {
          await api.mutate({ type: "restore_patient", args: { id } });
          for (const a of cancelled) await api.mutate({ type: "set_appointment_status", args: { id: a, status: "scheduled" } });
        },
      });
      onClosed();
    } catch (err) {
      setError(errorMessage(err));
    }
  }
  async function restore() {
    setError(null);
    try {
      await api.mutate({ type: "restore_patient", args: { id } });
      toast({ text: `${name} restored.` });
    } catch (err) {
      setError(errorMessage(err));
    }
  }
  return (
    <div className="chart" data-testid="patient-chart">
      <div className="card">
        <h2 data-testid="chart-name">{name}</h2>
        {p.archived_at && (
          <p className="notice" data-testid="archived-notice">
            Archived on {formatInstant(p.archived_at, clinic)}: kept for the record, not listed or bookable.
          </p>
        )}
        <p>
          Born {formatDate(p.date_of_birth, clinic)} · {p.phone ?? "no phone"} · {p.email ?? "no e-mail"}
        </p>
        {p.address && <p>{p.address}</p>}
        <AlertBanner patient={p} />
        {patientDetails(p).length > 0 && (
          <p data-testid="patient-details">{patientDetails(p).join(" · ")}</p>
        )}
        <div className="actions">
          {canEditPatients(user.role) && !p.archived_at && (
            <button onClick={() => setEditing(true)} data-testid="patient-edit">
              Edit
            </button>
          )}
          {canArchive(user.role) && !p.archived_at && (
            <button className="danger" onClick={() => setArchiving(true)} data-testid="patient-archive">
              Archive…
            </button>
          )}
          {canArchive(user.role) && p.archived_at && (
            <button onClick={restore} data-testid="patient-restore">
              Restore
            </button>
          )}
          {canReadHistory(user.role) && (
            <button onClick={() => setShowHistory(!showHistory)} data-testid="patient-history-toggle" aria-expanded={showHistory}>
              History
            </button>
          )}
          {canReadAudit(user.role) && (
            <button onClick={() => setShowAccess(!showAccess)} data-testid="patient-access-toggle" aria-expanded={showAccess}>
              Who opened this chart
            </button>
          )}
        </div>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        {showHistory && <History table="patients" id={id} />}
        {showAccess && <AccessLog patientId={id} />}
      </div>
      {archiving && (
        <Dialog
          title={`Archive ${name}?`}
          testid="archive-dialog"
          danger
          confirm={future.length > 0 ? `Archive and cancel ${future.length} appointment${future.length === 1 ? "" : "s"}` : "Archive"}
          onConfirm={archive}
          onCancel={() => setArchiving(false)}
        >
          <p>The record is kept; {p.first_name} will no longer be listed or bookable. You can restore the patient later.</p>
          {future.length > 0 && (
            <>
              <p data-testid="archive-count">
                {future.length === 1 ? "One future appointment" : `${future.length} future appointments`} will be cancelled:
              </p>
              <ul>
                {future.map((a) => (
                  <li key={a.id}>{visitLine(a, clinic, names)}</li>
                ))}
              </ul>
            </>
          )}
        </Dialog>
      )}
      <div className="card">
        <h3>Appointments</h3>
        {appointments.length === 0 && <p className="muted">None.</p>}
        <ul>
          {appointments.map((a) => (
            <li key={a.id}>{visitLine(a, clinic, names)}</li>
          ))}
        </ul>
      </div>
      {canSeeRecords(user.role) && <CareNotice patientId={id} name={name} care={chart.data.care} />}
      {canSeeRecords(user.role) && <Records patientId={id} records={treatment_records} user={user} withheld={chart.data.care.withheld} />}
      {referrals.length > 0 && (
        <div className="card" data-testid="chart-referrals">
          <h3>Referrals</h3>
          <ul>
            {referrals.map((r) => (
              <li key={r.id}>{referralLine(r, clinic, names)}</li>
            ))}
          </ul>
        </div>
      )}
      {invoices.length > 0 && (
        <div className="card">
          <h3>Invoices</h3>
          <ul>
            {invoices.map((i) => (
              <li key={i.id}>{invoiceLine(i, clinic)}</li>
            ))}
          </ul>
        </div>
      )}
    </div>
  );
}

const SEXES: Sex[] = ["female", "male", "diverse"];
const sexWords: Record<Sex, string> = { female: "Female", male: "Male", diverse: "Diverse" };

/** The record fields beyond contact, in words, for the chart's header. */
function patientDetails(p: Patient): string[] {
  const out: string[] = [];
  if (p.sex) out.push(sexWords[p.sex]);
  if (p.insurer || p.insurance_number) out.push(`Insured with ${p.insurer ?? "an insurer"}${p.insurance_number ? `, no. ${p.insurance_number}` : ""}`);
  if (p.emergency_contact || p.emergency_phone)
    out.push(`In an emergency: ${[p.emergency_contact, p.emergency_phone].filter(Boolean).join(", ")}`);
  return out;
}

function visitLine(a: Entity<Appointment>, clinic: Clinic, names: Names): string {
  const d = a.data;
  return `${formatDayOf(d.start, clinic)}, ${formatTimeRange(d.start, d.end, clinic)} · ${names.staff(d.doctor_id) ?? "a doctor"} · ${statusWords(d.status)}${d.reason ? ` · ${d.reason}` : ""}`;
}

const invoiceStatus: Record<Invoice["status"], string> = { draft: "draft", open: "open", paid: "paid", void: "void" };

function invoiceLine(i: Entity<Invoice>, clinic: Clinic): string {
  return `${formatDayOf(i.data.issued_at, clinic)} · ${formatMoney(i.data.total_cents, clinic.locale)} · ${invoiceStatus[i.data.status]}`;
}

function Records({ patientId, records, user, withheld }: { patientId: string; records: Entity<TreatmentRecord>[]; user: Staff; withheld: boolean }) {
  const { clinic, names } = useDesk();
  const [editing, setEditing] = useState<Entity<TreatmentRecord> | "new" | null>(null);
  return (
    <div className="card" data-testid="records">
      <h3>Treatment records</h3>
      {records.map((r) => {
        const t = r.data;
        return (
          <div key={r.id} className="record" data-testid="record">
            {withheld && !t.diagnosis && !t.notes ? (
              // Arrived without its clinical text (not this doctor's patient).
              <>
                <strong data-testid="record-withheld">Diagnosis and notes hidden</strong>{" "}
                <span className="muted">
                  {formatDayOf(t.recorded_at, clinic)} · {names.staff(t.doctor_id) ?? "another doctor"}
                </span>
              </>
            ) : (
              <>
                <strong>{t.diagnosis}</strong> <span className="muted">{formatDayOf(t.recorded_at, clinic)}</span>
                <p className="notes">{t.notes}</p>
              </>
            )}
            {r.pending && <span className="badge">saving</span>}
            {canWriteRecords(user.role) && <button onClick={() => setEditing(r)}>Edit</button>}
          </div>
        );
      })}
      {canWriteRecords(user.role) && editing === null && (
        <button data-testid="record-new" onClick={() => setEditing("new")}>
          Add record
        </button>
      )}
      {editing !== null && <RecordEditor patientId={patientId} row={editing === "new" ? null : editing} onDone={() => setEditing(null)} />}
    </div>
  );
}

function RecordEditor({ patientId, row, onDone }: { patientId: string; row: Entity<TreatmentRecord> | null; onDone: () => void }) {
  const { clinic, names } = useDesk();
  const before = row?.data ?? null;
  const [notes, setNotes] = useState(before?.notes ?? "");
  const [diagnosis, setDiagnosis] = useState(before?.diagnosis ?? "");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const first = useRef<HTMLInputElement>(null);
  useEffect(() => first.current?.focus(), []);
  async function submit(e: FormEvent) {
    e.preventDefault();
    setError(null);
    try {
      let m: Mutation | null = null;
      if (row && before) {
        const fields: { notes?: string; diagnosis?: string } = {};
        if (notes !== before.notes) fields.notes = notes;
        if (diagnosis !== before.diagnosis) fields.diagnosis = diagnosis;
        if (Object.keys(fields).length > 0) m = { type: "update_treatment_record", args: { id: row.id, base_version: row.version, fields } };
      } else {
        m = { type: "add_treatment_record", args: { id: newId(), patient_id: patientId, appointment_id: null, notes, diagnosis, procedures: [], recorded_at: nowInstant() } };
      }
      if (m) {
        const refusal = await api.checkMutation(m);
        if (refusal) {
          setErrors(fieldSentences(refusal.fields, clinic.locale));
          if (!refusal.fields?.length) setError(rejectionSentence(refusal, names));
          return;
        }
        await api.mutate(m);
      }
      onDone();
    } catch (err) {
      setError(errorMessage(err));
    }
  }
  return (
    <form
      className="record-editor"
      onSubmit={submit}
      data-testid="record-form"
      onKeyDown={(e) => {
        if (e.key === "Escape") {
          e.preventDefault();
          onDone();
        }
      }}
    >
      <Field ref={first} label="Diagnosis" name="diagnosis" testid="record-diagnosis" value={diagnosis} onChange={(e) => setDiagnosis(e.target.value)} error={errors.diagnosis} />
      <label>
        Notes
        <textarea data-testid="record-notes" rows={5} value={notes} onChange={(e) => setNotes(e.target.value)} aria-invalid={errors.notes ? true : undefined} />
        {errors.notes && <span className="field-error">{errors.notes}</span>}
      </label>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <div className="actions">
        <button data-testid="record-save">Save</button>
        <button type="button" onClick={onDone}>
          Cancel
        </button>
      </div>
    </form>
  );
}

const ACTIONS: Record<string, string> = {
  create_patient: "Registered",
  update_patient: "Edited",
  delete_patient: "Deleted",
  archive_patient: "Archived",
  restore_patient: "Restored",
  demo_seed: "Imported",
  admin_cli: "Changed by an administrator tool",
  conformance: "Changed",
};

/** A history entry's "what" in words. */
export function actionWords(e: Pick<HistoryEntry, "mutation" | "action">): string {
  return ACTIONS[e.mutation] ?? (e.action === "create" ? "Created" : e.action === "delete" ? "Deleted" : "Changed");
}

/** One value as people read it: dates and times in the clinic's zone, ids as names, nothing raw. */
export function valueWords(field: string, v: unknown, clinic: Clinic, names: Names): string {
  if (v === null || v === undefined || v === "") return "(empty)";
  if (typeof v === "string") {
    if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/.test(v)) return formatInstant(v, clinic);
    if (/^\d{4}-\d{2}-\d{2}$/.test(v)) return formatDate(v, clinic);
    if (field.endsWith("doctor_id") || field === "received_by") return names.staff(v) ?? "a staff member";
    if (field === "patient_id") return names.patient(v) ?? "a patient";
    if (field === "status") return statusWords(v);
    return v;
  }
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (Array.isArray(v)) return v.map((x) => valueWords(field, x, clinic, names)).join(", ") || "(empty)";
  if (typeof v === "number") return field.endsWith("_cents") ? formatMoney(v, clinic.locale) : String(v);
  return "(changed)";
}

/** The fields an entry changed, each as "Label: old → new". */
export function changeLines(e: Pick<HistoryEntry, "before" | "after">, clinic: Clinic, names: Names): string[] {
  const b = (e.before ?? {}) as Record<string, unknown>;
  const a = (e.after ?? {}) as Record<string, unknown>;
  const keys = [...new Set([...Object.keys(b), ...Object.keys(a)])].filter((k) => k !== "id" && JSON.stringify(b[k]) !== JSON.stringify(a[k]));
  return keys.map((k) => {
    const label = k === "archived_at" ? "Archived" : fieldLabel(k);
    return e.before ? `${label}: ${valueWords(k, b[k], clinic, names)} → ${valueWords(k, a[k], clinic, names)}` : `${label}: ${valueWords(k, a[k], clinic, names)}`;
  });
}

function History({ table, id }: { table: "patients"; id: string }) {
  const { clinic, names } = useDesk();
  const history = useQuery({ queryKey: ["history", table, id], queryFn: () => api.recordHistory(table, id), staleTime: 0 });
  if (history.isError) return <p className="muted">The history is kept on the server: {errorMessage(history.error)}</p>;
  if (!history.data) return <p className="muted">Loading history…</p>;
  return (
    <table className="history" data-testid="history">
      <caption className="muted small">Times in {clinic.zone.replace(/_/g, " ")}</caption>
      <thead>
        <tr>
          <th scope="col">When</th>
          <th scope="col">Who</th>
          <th scope="col">What</th>
          <th scope="col">Changes</th>
        </tr>
      </thead>
      <tbody>
        {history.data.entries.map((e) => (
          <tr key={e.seq} data-testid="history-entry">
            <td>{formatInstant(e.at, clinic)}</td>
            <td>{e.actor_name ?? "The system"}</td>
            <td>{actionWords(e)}</td>
            <td>
              <ul className="changes">
                {changeLines(e, clinic, names).map((l) => (
                  <li key={l}>{l}</li>
                ))}
              </ul>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
