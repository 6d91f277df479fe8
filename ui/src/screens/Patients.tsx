import { useQuery } from "@tanstack/react-query";
import { useVirtualizer } from "@tanstack/react-virtual";
import { useRef, useState, type FormEvent } from "react";
import { api, errorMessage, isAppError, newId } from "../api";
import type { Appointment } from "../bindings/Appointment";
import type { Entity } from "../bindings/Entity";
import type { Invoice } from "../bindings/Invoice";
import type { Patient } from "../bindings/Patient";
import type { Staff } from "../bindings/Staff";
import type { TreatmentRecord } from "../bindings/TreatmentRecord";
import { useLive } from "../events";
import { money, timeOfDay } from "../lib/format";
import { fieldErrors, formOf, isEmptyPatch, patientPatch, type PatientForm } from "../lib/patch";
import { canReadHistory, canSeeRecords, canWriteRecords } from "../lib/roles";

export function Patients({ user }: { user: Staff }) {
  const [query, setQuery] = useState("");
  const [selected, setSelected] = useState<string | null>(null);
  const [creating, setCreating] = useState(false);
  const rows = useQuery({
    queryKey: query.trim() ? ["search", query.trim()] : ["rows", "patients"],
    queryFn: () => (query.trim() ? api.searchPatients(query.trim(), 500) : api.patients()),
    placeholderData: (prev) => prev,
  });
  const patients = [...(rows.data ?? [])].sort(byName);
  return (
    <div className="split">
      <section className="list-pane">
        <div className="toolbar">
          <input
            data-testid="patient-search"
            placeholder="Search name, phone or date of birth"
            value={query}
            onChange={(e) => setQuery(e.target.value)}
          />
          <button data-testid="patient-new" onClick={() => { setCreating(true); setSelected(null); }}>
            New patient
          </button>
        </div>
        <PatientList patients={patients} selected={selected} onSelect={(id) => { setSelected(id); setCreating(false); }} />
        <p className="muted small" data-testid="patient-count">{patients.length} patients</p>
      </section>
      <section className="detail-pane">
        {creating && <PatientEditor onDone={(id) => { setCreating(false); setSelected(id); }} />}
        {!creating && selected && <PatientChart id={selected} user={user} onDeleted={() => setSelected(null)} />}
        {!creating && !selected && <p className="muted">Select a patient, or register a new one.</p>}
      </section>
    </div>
  );
}

function byName(a: Entity<Patient>, b: Entity<Patient>): number {
  return a.data.last_name.localeCompare(b.data.last_name) || a.data.first_name.localeCompare(b.data.first_name);
}

function PatientList({ patients, selected, onSelect }: { patients: Entity<Patient>[]; selected: string | null; onSelect: (id: string) => void }) {
  const parent = useRef<HTMLDivElement>(null);
  const { recent } = useLive();
  const virtual = useVirtualizer({ count: patients.length, getScrollElement: () => parent.current, estimateSize: () => 44, overscan: 10 });
  return (
    <div ref={parent} className="virtual-list" data-testid="patient-list">
      <div style={{ height: virtual.getTotalSize(), position: "relative" }}>
        {virtual.getVirtualItems().map((item) => {
          const row = patients[item.index];
          const p = row.data;
          const classes = ["list-row", row.id === selected ? "selected" : "", recent.has(row.id) ? "flash" : "", row.pending ? "pending" : ""];
          return (
            <div
              key={row.id}
              className={classes.join(" ")}
              data-testid="patient-row"
              data-id={row.id}
              style={{ position: "absolute", top: 0, left: 0, right: 0, height: item.size, transform: `translateY(${item.start}px)` }}
              onClick={() => onSelect(row.id)}
            >
              <strong>{p.last_name}, {p.first_name}</strong>
              <span className="muted"> {p.date_of_birth} · {p.phone ?? ""}</span>
              {row.pending && <span className="badge">saving</span>}
            </div>
          );
        })}
      </div>
    </div>
  );
}

function PatientEditor({ row, onDone }: { row?: Entity<Patient>; onDone: (id: string) => void }) {
  const before = row?.data ?? null;
  const [form, setForm] = useState<PatientForm>(formOf(before));
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const set = (k: keyof PatientForm) => (e: { target: { value: string } }) => setForm({ ...form, [k]: e.target.value });

  async function submit(e: FormEvent) {
    e.preventDefault();
    setErrors({});
    setError(null);
    if (!/^\d{4}-\d{2}-\d{2}$/.test(form.date_of_birth)) {
      setErrors({ date_of_birth: "is not a date (use YYYY-MM-DD)" });
      return;
    }
    try {
      if (row && before) {
        const fields = patientPatch(before, form);
        if (isEmptyPatch(fields)) return onDone(row.id);
        await api.mutate({ type: "update_patient", args: { id: row.id, base_version: row.version, fields } });
        onDone(row.id);
      } else {
        const id = newId();
        const opt = (s: string) => (s.trim() === "" ? null : s.trim());
        await api.mutate({
          type: "create_patient",
          args: {
            id,
            first_name: form.first_name,
            last_name: form.last_name,
            date_of_birth: form.date_of_birth,
            phone: opt(form.phone),
            email: opt(form.email),
            address: opt(form.address),
          },
        });
        onDone(id);
      }
    } catch (err) {
      if (isAppError(err) && err.rejection?.fields?.length) setErrors(fieldErrors(err.rejection.fields));
      else setError(errorMessage(err));
    }
  }

  const field = (k: keyof PatientForm, label: string, type = "text") => (
    <label>
      {label}
      <input data-testid={`patient-${k}`} type={type} value={form[k]} onChange={set(k)} className={errors[k] ? "invalid" : ""} />
      {errors[k] && <span className="field-error" data-testid={`error-${k}`}>{errors[k]}</span>}
    </label>
  );
  return (
    <form className="card" onSubmit={submit} data-testid="patient-form">
      <h2>{row ? "Edit patient" : "New patient"}</h2>
      {field("first_name", "First name")}
      {field("last_name", "Last name")}
      {field("date_of_birth", "Date of birth (YYYY-MM-DD)")}
      {field("phone", "Phone")}
      {field("email", "E-mail")}
      {field("address", "Address")}
      {error && <p className="error">{error}</p>}
      <button data-testid="patient-save">Save</button>
    </form>
  );
}

function PatientChart({ id, user, onDeleted }: { id: string; user: Staff; onDeleted: () => void }) {
  const chart = useQuery({ queryKey: ["chart", id], queryFn: () => api.patientChart(id) });
  const [editing, setEditing] = useState(false);
  const [showHistory, setShowHistory] = useState(false);
  const [error, setError] = useState<string | null>(null);
  if (!chart.data) return <p className="muted">{chart.isPending ? "Loading…" : "This patient no longer exists."}</p>;
  const { patient, appointments, treatment_records, invoices } = chart.data;
  const p = patient.data;
  if (editing) return <PatientEditor row={patient} onDone={() => setEditing(false)} />;
  async function remove() {
    setError(null);
    try {
      await api.mutate({ type: "delete_patient", args: { id, base_version: patient.version } });
      onDeleted();
    } catch (err) {
      setError(errorMessage(err));
    }
  }
  return (
    <div className="chart" data-testid="patient-chart">
      <div className="card">
        <h2 data-testid="chart-name">{p.first_name} {p.last_name}</h2>
        <p>Born {p.date_of_birth} · {p.phone ?? "no phone"} · {p.email ?? "no e-mail"}</p>
        {p.address && <p>{p.address}</p>}
        <div className="actions">
          <button onClick={() => setEditing(true)} data-testid="patient-edit">Edit</button>
          {(user.role === "admin" || user.role === "reception") && (
            <button className="danger" onClick={remove} data-testid="patient-delete">Delete</button>
          )}
          {canReadHistory(user.role) && (
            <button onClick={() => setShowHistory(!showHistory)} data-testid="patient-history-toggle">History</button>
          )}
        </div>
        {error && <p className="error">{error}</p>}
        {showHistory && <History table="patients" id={id} />}
      </div>
      <div className="card">
        <h3>Appointments</h3>
        {appointments.length === 0 && <p className="muted">None.</p>}
        <ul>
          {appointments.map((a) => (
            <li key={a.id}>{visitLine(a)}</li>
          ))}
        </ul>
      </div>
      {canSeeRecords(user.role) && <Records patientId={id} records={treatment_records} user={user} />}
      {invoices.length > 0 && (
        <div className="card">
          <h3>Invoices</h3>
          <ul>
            {invoices.map((i) => (
              <li key={i.id}>{invoiceLine(i)}</li>
            ))}
          </ul>
        </div>
      )}
    </div>
  );
}

function visitLine(a: Entity<Appointment>): string {
  return `${a.data.start.slice(0, 10)} ${timeOfDay(a.data.start)} · ${a.data.status} · ${a.data.reason ?? ""}`;
}

function invoiceLine(i: Entity<Invoice>): string {
  return `${i.data.issued_at.slice(0, 10)} · ${money(i.data.total_cents)} · ${i.data.status}`;
}

function Records({ patientId, records, user }: { patientId: string; records: Entity<TreatmentRecord>[]; user: Staff }) {
  const [editing, setEditing] = useState<Entity<TreatmentRecord> | "new" | null>(null);
  return (
    <div className="card" data-testid="records">
      <h3>Treatment records</h3>
      {records.map((r) => {
        const t = r.data;
        return (
          <div key={r.id} className="record" data-testid="record">
            <strong>{t.diagnosis}</strong> <span className="muted">{t.recorded_at.slice(0, 10)}</span>
            {r.pending && <span className="badge">saving</span>}
            <p className="notes">{t.notes}</p>
            {canWriteRecords(user.role) && <button onClick={() => setEditing(r)}>Edit</button>}
          </div>
        );
      })}
      {canWriteRecords(user.role) && editing === null && (
        <button data-testid="record-new" onClick={() => setEditing("new")}>Add record</button>
      )}
      {editing !== null && <RecordEditor patientId={patientId} row={editing === "new" ? null : editing} onDone={() => setEditing(null)} />}
    </div>
  );
}

function RecordEditor({ patientId, row, onDone }: { patientId: string; row: Entity<TreatmentRecord> | null; onDone: () => void }) {
  const before = row?.data ?? null;
  const [notes, setNotes] = useState(before?.notes ?? "");
  const [diagnosis, setDiagnosis] = useState(before?.diagnosis ?? "");
  const [error, setError] = useState<string | null>(null);
  async function submit(e: FormEvent) {
    e.preventDefault();
    try {
      if (row && before) {
        const fields: { notes?: string; diagnosis?: string } = {};
        if (notes !== before.notes) fields.notes = notes;
        if (diagnosis !== before.diagnosis) fields.diagnosis = diagnosis;
        if (Object.keys(fields).length > 0) {
          await api.mutate({ type: "update_treatment_record", args: { id: row.id, base_version: row.version, fields } });
        }
      } else {
        const id = newId();
        const recorded_at = new Date().toISOString().slice(0, 19) + "Z";
        await api.mutate({
          type: "add_treatment_record",
          args: { id, patient_id: patientId, appointment_id: null, notes, diagnosis, procedures: [], recorded_at },
        });
      }
      onDone();
    } catch (err) {
      setError(errorMessage(err));
    }
  }
  return (
    <form className="record-editor" onSubmit={submit} data-testid="record-form">
      <label>Diagnosis<input data-testid="record-diagnosis" value={diagnosis} onChange={(e) => setDiagnosis(e.target.value)} /></label>
      <label>Notes<textarea data-testid="record-notes" rows={5} value={notes} onChange={(e) => setNotes(e.target.value)} /></label>
      {error && <p className="error">{error}</p>}
      <div className="actions">
        <button data-testid="record-save">Save</button>
        <button type="button" onClick={onDone}>Cancel</button>
      </div>
    </form>
  );
}

function History({ table, id }: { table: "patients"; id: string }) {
  const history = useQuery({ queryKey: ["history", table, id], queryFn: () => api.recordHistory(table, id), staleTime: 0 });
  if (history.isError) return <p className="muted">History needs a connection to the server: {errorMessage(history.error)}</p>;
  if (!history.data) return <p className="muted">Loading history…</p>;
  return (
    <table className="history" data-testid="history">
      <thead><tr><th>When (UTC)</th><th>Who</th><th>What</th><th>Changed</th></tr></thead>
      <tbody>
        {history.data.entries.map((e) => (
          <tr key={e.seq}>
            <td>{e.at.replace("T", " ").slice(0, 16)}</td>
            <td>{e.actor_name ?? e.mutation}</td>
            <td>{e.action}</td>
            <td>{changedFields(e.before, e.after).join(", ")}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function changedFields(before: unknown, after: unknown): string[] {
  const b = (before ?? {}) as Record<string, unknown>;
  const a = (after ?? {}) as Record<string, unknown>;
  return [...new Set([...Object.keys(b), ...Object.keys(a)])].filter((k) => JSON.stringify(b[k]) !== JSON.stringify(a[k]) && k !== "id");
}
