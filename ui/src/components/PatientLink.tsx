// A patient's name that opens their chart (on the schedule, in the waiting
// room, on a referral). Plain text where there is no chart to go to.
import { useOpenPatient } from "../navigate";

export function PatientLink({ id, name, testid = "open-chart" }: { id: string; name: string; testid?: string }) {
  const open = useOpenPatient();
  if (!open) return <>{name}</>;
  return (
    <button type="button" className="link" data-testid={testid} title={`Open ${name}'s chart`} onClick={() => open(id)}>
      {name}
    </button>
  );
}
