import { useQuery } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { api, errorMessage, newId } from "../api";
import type { Role } from "../bindings/Role";
import type { Staff } from "../bindings/Staff";

const roles: Role[] = ["admin", "doctor", "assistant", "reception"];

export function StaffScreen({ user }: { user: Staff }) {
  const staff = useQuery({ queryKey: ["rows", "staff"], queryFn: api.staff });
  const [error, setError] = useState<string | null>(null);
  const run = async (f: () => Promise<unknown>) => {
    setError(null);
    try {
      await f();
    } catch (err) {
      setError(errorMessage(err));
    }
  };
  const people = (staff.data ?? []).map((r) => r.data).sort((a, b) => a.username.localeCompare(b.username));
  return (
    <div>
      <AddStaff />
      {error && <p className="error">{error}</p>}
      <table data-testid="staff">
        <thead><tr><th>Username</th><th>Name</th><th>Role</th><th>Status</th><th></th></tr></thead>
        <tbody>
          {people.map((s) => (
            <tr key={s.id} className={s.active ? "" : "disabled"}>
              <td>{s.username}</td>
              <td>{s.display_name}</td>
              <td>
                <select value={s.role} disabled={s.id === user.id} onChange={(e) => run(() => api.mutate({ type: "set_staff_role", args: { id: s.id, role: e.target.value as Role } }))}>
                  {roles.map((r) => <option key={r} value={r}>{r}</option>)}
                </select>
              </td>
              <td>{s.active ? "active" : "disabled"}</td>
              <td>
                {s.id !== user.id && (
                  <button onClick={() => run(() => api.mutate({ type: "set_staff_active", args: { id: s.id, active: !s.active } }))}>
                    {s.active ? "Disable" : "Enable"}
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function AddStaff() {
  const [username, setUsername] = useState("");
  const [name, setName] = useState("");
  const [role, setRole] = useState<Role>("reception");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  async function submit(e: FormEvent) {
    e.preventDefault();
    setError(null);
    try {
      await api.mutate({ type: "create_staff", args: { id: newId(), username, display_name: name, role, password } });
      setUsername(""); setName(""); setPassword("");
    } catch (err) {
      setError(errorMessage(err));
    }
  }
  return (
    <form className="card inline" onSubmit={submit}>
      <input placeholder="username" value={username} onChange={(e) => setUsername(e.target.value)} />
      <input placeholder="display name" value={name} onChange={(e) => setName(e.target.value)} />
      <select value={role} onChange={(e) => setRole(e.target.value as Role)}>{roles.map((r) => <option key={r}>{r}</option>)}</select>
      <input placeholder="initial password" type="password" value={password} onChange={(e) => setPassword(e.target.value)} />
      <button>Add staff member</button>
      {error && <span className="error">{error}</span>}
    </form>
  );
}
