// The waiting room: today's patients who have arrived, per doctor, with when
// they arrived and how long they have waited, live on every desk (a check-in
// at reception shows here as soon as it reaches this desk). A doctor calls
// their next patient in from here (status → with the doctor).
import { useQuery } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { api, errorMessage } from "../api";
import type { Appointment } from "../bindings/Appointment";
import type { Entity } from "../bindings/Entity";
import type { Staff } from "../bindings/Staff";
import { PatientLink } from "../components/PatientLink";
import { useDesk } from "../desk";
import { canSetStatus } from "../lib/roles";
import { formatDay, formatTime, formatTimeRange, todayIn } from "../lib/time";

/** "just arrived", "4 min", "1 h 05 min". */
export function waitLabel(sinceMs: number, nowMs: number): string {
  const minutes = Math.max(0, Math.floor((nowMs - sinceMs) / 60000));
  if (minutes < 1) return "just arrived";
  if (minutes < 60) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
}

export function WaitingRoom({ user }: { user: Staff }) {
  const { clinic, names } = useDesk();
  // The clock the waits are counted on, once every 20 s.
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 20000);
    return () => clearInterval(t);
  }, []);
  const today = todayIn(clinic.zone, now);
  const schedule = useQuery({ queryKey: ["schedule", today, "", clinic.zone], queryFn: () => api.daySchedule(today, null) });
  const staff = useQuery({ queryKey: ["rows", "staff"], queryFn: api.staff });
  const rows = schedule.data ?? [];
  const waiting = rows.filter((r) => r.data.status === "checked_in");
  const inside = rows.filter((r) => r.data.status === "in_progress");
  const doctors = (staff.data ?? [])
    .map((r) => r.data)
    .filter((s) => s.role === "doctor" && (s.active || rows.some((r) => r.data.doctor_id === s.id)))
    .sort((a, b) => (a.id === user.id ? -1 : b.id === user.id ? 1 : a.display_name.localeCompare(b.display_name)));
  const arrived = (a: Appointment) => (a.checked_in_at ? Date.parse(a.checked_in_at) : now);
  return (
    <div className="waiting-room">
      <h2 className="day-title" data-testid="waiting-title">
        Waiting room · {formatDay(today, clinic)} <span className="muted small">· times in {clinic.zone.replace(/_/g, " ")}</span>
      </h2>
      {doctors.map((d) => {
        const mine = waiting.filter((r) => r.data.doctor_id === d.id).sort((x, y) => arrived(x.data) - arrived(y.data));
        const withDoctor = inside.filter((r) => r.data.doctor_id === d.id);
        return (
          <section key={d.id} data-testid="waiting-doctor" aria-label={`Waiting for ${d.display_name}`}>
            <h3>
              {d.display_name}{" "}
              <span className="muted small">
                {mine.length === 0 ? "· nobody waiting" : mine.length === 1 ? "· 1 waiting" : `· ${mine.length} waiting`}
                {withDoctor.length > 0 && ` · with the doctor: ${withDoctor.map((r) => names.patient(r.data.patient_id) ?? "a patient").join(", ")}`}
              </span>
            </h3>
            {mine.length > 0 && (
              <table className="day">
                <thead>
                  <tr>
                    <th scope="col">Patient</th>
                    <th scope="col">Arrived</th>
                    <th scope="col">Waiting</th>
                    <th scope="col">Appointment</th>
                    <th scope="col">
                      <span className="sr-only">Actions</span>
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {mine.map((r, i) => (
                    <WaitingRow key={r.id} row={r} first={i === 0} user={user} now={now} />
                  ))}
                </tbody>
              </table>
            )}
          </section>
        );
      })}
      {(schedule.isError || staff.isError) && (
        <p className="error" role="alert" data-testid="waiting-error">
          The waiting room could not be read: {errorMessage(schedule.error ?? staff.error)}
        </p>
      )}
      {schedule.isSuccess && staff.isSuccess && doctors.length === 0 && <p className="muted">No doctors are on this computer's staff list yet.</p>}
    </div>
  );
}

function WaitingRow({ row, first, user, now }: { row: Entity<Appointment>; first: boolean; user: Staff; now: number }) {
  const { clinic, names } = useDesk();
  const [error, setError] = useState<string | null>(null);
  const a = row.data;
  const name = names.patient(a.patient_id) ?? "A patient not on this computer yet";
  // The doctor calls their own patients in; an admin may for anyone.
  const mayCall = canSetStatus(user.role, "in_progress") && (user.role !== "doctor" || a.doctor_id === user.id);
  async function call() {
    setError(null);
    try {
      await api.mutate({ type: "set_appointment_status", args: { id: row.id, status: "in_progress" } });
    } catch (e) {
      setError(errorMessage(e));
    }
  }
  return (
    <tr data-testid="waiting-patient" data-id={row.id}>
      <td data-testid="waiting-name">
        {names.patient(a.patient_id) ? <PatientLink id={a.patient_id} name={name} /> : name}
        {row.pending && <span className="badge">saving</span>}
      </td>
      <td data-testid="waiting-arrived">{a.checked_in_at ? formatTime(a.checked_in_at, clinic) : "—"}</td>
      <td data-testid="waiting-for">{a.checked_in_at ? waitLabel(Date.parse(a.checked_in_at), now) : "—"}</td>
      <td>{formatTimeRange(a.start, a.end, clinic)}</td>
      <td>
        {mayCall && (
          <button data-testid="waiting-call" className={first ? "primary" : ""} onClick={call} title={`Call ${name} in`}>
            Call in
          </button>
        )}
        {error && (
          <span className="error" role="alert">
            {error}
          </span>
        )}
      </td>
    </tr>
  );
}
