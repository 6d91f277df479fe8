// A patient's allergies and alerts, where people act on them: the chart
// and the booking form. Everyone who reads patients sees it (the field
// matrix gives `alerts` to every role); nothing shows when none are recorded.
import type { Patient } from "../bindings/Patient";

export function AlertBanner({ patient, testid = "patient-alerts" }: { patient: Patient; testid?: string }) {
  const alerts = patient.alerts?.trim();
  if (!alerts) return null;
  return (
    <p className="alert-banner" role="alert" data-testid={testid}>
      <strong>Allergies and alerts:</strong> {alerts}
    </p>
  );
}
