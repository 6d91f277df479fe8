import { useQuery } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { api, errorMessage, newId } from "../api";
import type { Appointment } from "../bindings/Appointment";
import type { AppointmentStatus } from "../bindings/AppointmentStatus";
import type { Entity } from "../bindings/Entity";
import type { Staff } from "../bindings/Staff";
import { useLive } from "../events";
import { timeOfDay } from "../lib/format";
import { canBook } from "../lib/roles";

const today = () => new Date().toISOString().slice(0, 10);

/** Next steps of the status flow, as offered on each appointment. */
export function nextSteps(status: AppointmentStatus, role: Staff["role"]): AppointmentStatus[] {
  const steps: Record<AppointmentStatus, AppointmentStatus[]> = {
    scheduled: ["checked_in", "no_show", "cancelled"],
    checked_in: ["in_progress", "cancelled"],
    in_progress: ["completed"],
    completed: [],
    cancelled: [],
    no_show: [],
  };
  const allowed = steps[status];
  return role === "assistant" ? allowed.filter((s) => s === "checked_in" || s === "in_progress") : allowed;
}

const stepLabel: Record<AppointmentStatus, string> = {
  scheduled: "Scheduled",
  checked_in: "Check in",
  in_progress: "Start",
  completed: "Complete",
  cancelled: "Cancel",
  no_show: "No-show",
};

export function Schedule({ user }: { user: Staff }) {
  const [date, setDate] = useState(today());
  const [doctor, setDoctor] = useState<string>(user.role === "doctor" ? user.id : "");
  const [booking, setBooking] = useState(false);
  const staff = useQuery({ queryKey: ["rows", "staff"], queryFn: api.staff });
  const doctors = (staff.data ?? []).map((r) => r.data).filter((s) => s.role === "doctor" && s.active);
  const schedule = useQuery({ queryKey: ["schedule", date, doctor], queryFn: () => api.daySchedule(date, doctor || null) });
  const patients = useQuery({ queryKey: ["rows", "patients"], queryFn: api.patients });
  const nameOf = new Map((patients.data ?? []).map((r) => [r.id, `${r.data.last_name}, ${r.data.first_name}`]));
  const doctorName = new Map(doctors.map((d) => [d.id, d.display_name]));
  return (
    <div className="schedule">
      <div className="toolbar">
        <input type="date" data-testid="schedule-date" value={date} onChange={(e) => setDate(e.target.value)} />
        <select data-testid="schedule-doctor" value={doctor} onChange={(e) => setDoctor(e.target.value)}>
          <option value="">All doctors</option>
          {doctors.map((d) => <option key={d.id} value={d.id}>{d.display_name}</option>)}
        </select>
        {canBook(user.role) && <button data-testid="book-open" onClick={() => setBooking(!booking)}>Book appointment</button>}
      </div>
      {booking && <BookingForm date={date} doctors={doctors} defaultDoctor={doctor} onDone={() => setBooking(false)} />}
      <table className="day" data-testid="schedule">
        <thead><tr><th>Time</th><th>Doctor</th><th>Patient</th><th>Reason</th><th>Status</th><th></th></tr></thead>
        <tbody>
          {(schedule.data ?? []).map((row) => (
            <AppointmentRow key={row.id} row={row} user={user} patient={nameOf.get(row.data.patient_id) ?? "…"} doctor={doctorName.get(row.data.doctor_id) ?? "…"} />
          ))}
        </tbody>
      </table>
      {schedule.data?.length === 0 && <p className="muted">No appointments on {date}.</p>}
    </div>
  );
}

function AppointmentRow({ row, user, patient, doctor }: { row: Entity<Appointment>; user: Staff; patient: string; doctor: string }) {
  const a = row.data;
  const { recent } = useLive();
  const [error, setError] = useState<string | null>(null);
  const [moving, setMoving] = useState(false);
  async function step(status: AppointmentStatus) {
    setError(null);
    try {
      await api.mutate({ type: "set_appointment_status", args: { id: row.id, status } });
    } catch (err) {
      setError(errorMessage(err));
    }
  }
  return (
    <>
      <tr className={[recent.has(row.id) ? "flash" : "", row.pending ? "pending" : ""].join(" ")} data-testid="appointment" data-id={row.id}>
        <td>{timeOfDay(a.start)}–{timeOfDay(a.end)}</td>
        <td>{doctor}</td>
        <td>{patient}</td>
        <td>{a.reason ?? ""}</td>
        <td data-testid="appointment-status">{a.status.replace("_", " ")}{row.pending && <span className="badge">saving</span>}</td>
        <td className="actions">
          {nextSteps(a.status, user.role).map((s) => (
            <button key={s} onClick={() => step(s)} data-testid={`step-${s}`}>{stepLabel[s]}</button>
          ))}
          {a.status === "scheduled" && canBook(user.role) && <button onClick={() => setMoving(!moving)}>Move</button>}
        </td>
      </tr>
      {moving && (
        <tr><td colSpan={6}><MoveForm row={row} onDone={() => setMoving(false)} /></td></tr>
      )}
      {error && <tr><td colSpan={6} className="error">{error}</td></tr>}
    </>
  );
}

function toTimestamp(date: string, time: string): string {
  return `${date}T${time}:00Z`;
}

function addMinutes(ts: string, minutes: number): string {
  return new Date(Date.parse(ts) + minutes * 60000).toISOString().slice(0, 19) + "Z";
}

function BookingForm({ date, doctors, defaultDoctor, onDone }: { date: string; doctors: Staff[]; defaultDoctor: string; onDone: () => void }) {
  const [query, setQuery] = useState("");
  const [patient, setPatient] = useState<string>("");
  const [doctor, setDoctor] = useState(defaultDoctor || doctors[0]?.id || "");
  const [time, setTime] = useState("09:00");
  const [minutes, setMinutes] = useState(30);
  const [reason, setReason] = useState("");
  const [error, setError] = useState<string | null>(null);
  const matches = useQuery({ queryKey: ["search", query], queryFn: () => api.searchPatients(query, 20), enabled: query.trim().length > 0 });
  async function submit(e: FormEvent) {
    e.preventDefault();
    setError(null);
    try {
      const start = toTimestamp(date, time);
      await api.mutate({
        type: "book_appointment",
        args: { id: newId(), patient_id: patient, doctor_id: doctor, start, end: addMinutes(start, minutes), reason: reason || null },
      });
      onDone();
    } catch (err) {
      setError(errorMessage(err));
    }
  }
  return (
    <form className="card inline" onSubmit={submit} data-testid="booking-form">
      <label>Patient
        <input data-testid="book-patient-search" placeholder="Search…" value={query} onChange={(e) => setQuery(e.target.value)} />
        <select data-testid="book-patient" value={patient} onChange={(e) => setPatient(e.target.value)}>
          <option value="">Choose…</option>
          {(matches.data ?? []).map((r) => {
            const p = r.data;
            return <option key={r.id} value={r.id}>{p.last_name}, {p.first_name} ({p.date_of_birth})</option>;
          })}
        </select>
      </label>
      <label>Doctor
        <select data-testid="book-doctor" value={doctor} onChange={(e) => setDoctor(e.target.value)}>
          {doctors.map((d) => <option key={d.id} value={d.id}>{d.display_name}</option>)}
        </select>
      </label>
      <label>Time (UTC)<input data-testid="book-time" type="time" value={time} onChange={(e) => setTime(e.target.value)} /></label>
      <label>Minutes<input type="number" min={5} max={240} value={minutes} onChange={(e) => setMinutes(Number(e.target.value))} /></label>
      <label>Reason<input value={reason} onChange={(e) => setReason(e.target.value)} /></label>
      {error && <p className="error" data-testid="book-error">{error}</p>}
      <button data-testid="book-submit" disabled={!patient || !doctor}>Book</button>
    </form>
  );
}

function MoveForm({ row, onDone }: { row: Entity<Appointment>; onDone: () => void }) {
  const a = row.data;
  const [date, setDate] = useState(a.start.slice(0, 10));
  const [time, setTime] = useState(timeOfDay(a.start));
  const [error, setError] = useState<string | null>(null);
  const minutes = (Date.parse(a.end) - Date.parse(a.start)) / 60000;
  async function submit(e: FormEvent) {
    e.preventDefault();
    try {
      const start = toTimestamp(date, time);
      await api.mutate({ type: "reschedule_appointment", args: { id: row.id, base_version: row.version, start, end: addMinutes(start, minutes) } });
      onDone();
    } catch (err) {
      setError(errorMessage(err));
    }
  }
  return (
    <form className="inline" onSubmit={submit}>
      <input type="date" value={date} onChange={(e) => setDate(e.target.value)} />
      <input type="time" value={time} onChange={(e) => setTime(e.target.value)} />
      <button>Move</button>
      {error && <span className="error">{error}</span>}
    </form>
  );
}
