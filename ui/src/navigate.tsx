// Going to a patient's chart from any screen (a name on the schedule, in the
// waiting room, on a referral): the shell switches to Patients and hands it
// the patient to open. Likewise to an invoice (a visit billed from the
// schedule opens its draft on Billing).
import { createContext, useContext } from "react";

/** Opens the chart of the patient with this id. */
export type OpenPatient = (patientId: string) => void;

export const OpenPatientContext = createContext<OpenPatient | null>(null);

/** The way to a chart, or null outside the shell (no patient list to go to). */
export function useOpenPatient(): OpenPatient | null {
  return useContext(OpenPatientContext);
}

/** Opens an invoice on Billing (a draft in its editor). */
export type OpenInvoice = (invoiceId: string) => void;

export const OpenInvoiceContext = createContext<OpenInvoice | null>(null);

/** The way to an invoice, or null outside the shell. */
export function useOpenInvoice(): OpenInvoice | null {
  return useContext(OpenInvoiceContext);
}
