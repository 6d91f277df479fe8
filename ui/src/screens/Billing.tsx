import { useQuery } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { api, errorMessage, newId } from "../api";
import type { Invoice } from "../bindings/Invoice";
import type { PaymentMethod } from "../bindings/PaymentMethod";
import type { Entity } from "../bindings/Entity";
import { PrintButton } from "../components/PrintButton";
import { useDesk } from "../desk";
import { fieldSentences, formatMoney, rejectionSentence } from "../lib/errors";
import { parseMoney } from "../lib/money";
import { formatDayOf, nowInstant } from "../lib/time";

export function Billing() {
  const invoices = useQuery({ queryKey: ["rows", "invoices"], queryFn: api.invoices });
  const patients = useQuery({ queryKey: ["rows", "patients"], queryFn: api.patients });
  const [openOnly, setOpenOnly] = useState(true);
  const nameOf = new Map((patients.data ?? []).map((r) => [r.id, `${r.data.last_name}, ${r.data.first_name}`]));
  const rows = (invoices.data ?? [])
    .filter((r) => !openOnly || r.data.status === "open")
    .sort((a, b) => b.data.issued_at.localeCompare(a.data.issued_at));
  return (
    <div>
      <div className="toolbar">
        <label className="check"><input type="checkbox" checked={openOnly} onChange={(e) => setOpenOnly(e.target.checked)} /> Only open invoices</label>
      </div>
      <table data-testid="invoices">
        <thead><tr><th>Issued</th><th>Patient</th><th>Lines</th><th>Total</th><th>Paid</th><th>Status</th><th>Payment</th><th><span className="sr-only">Print</span></th></tr></thead>
        <tbody>{rows.map((r) => <InvoiceRow key={r.id} row={r} patient={nameOf.get(r.data.patient_id) ?? "…"} />)}</tbody>
      </table>
    </div>
  );
}

function InvoiceRow({ row, patient }: { row: Entity<Invoice>; patient: string }) {
  const inv = row.data;
  const outstanding = inv.total_cents - inv.paid_cents;
  const { clinic, names } = useDesk();
  const [amount, setAmount] = useState(formatMoney(outstanding, clinic.locale));
  const [method, setMethod] = useState<PaymentMethod>("card");
  const [error, setError] = useState<string | null>(null);
  async function pay(e: FormEvent) {
    e.preventDefault();
    setError(null);
    try {
      const cents = parseMoney(amount, clinic.locale);
      if (cents === null) return setError(`Amount is not an amount of money; type it like ${formatMoney(4550, clinic.locale)}.`);
      const m = { type: "record_payment" as const, args: { id: newId(), invoice_id: row.id, amount_cents: cents, method, paid_at: nowInstant() } };
      const refusal = await api.checkMutation(m);
      if (refusal) return setError(Object.values(fieldSentences(refusal.fields, clinic.locale))[0] ?? rejectionSentence(refusal, names));
      await api.mutate(m);
    } catch (err) {
      setError(errorMessage(err));
    }
  }
  return (
    <tr data-testid="invoice">
      <td>{formatDayOf(inv.issued_at, clinic)}</td>
      <td>{patient}</td>
      <td>{inv.lines.map((l) => `${l.quantity}× ${l.description}`).join(", ")}</td>
      <td>{formatMoney(inv.total_cents, clinic.locale)}</td>
      <td>{formatMoney(inv.paid_cents, clinic.locale)}</td>
      <td>{inv.status}{row.pending && <span className="badge">saving</span>}</td>
      <td>
        {inv.status === "open" && (
          <form className="inline" onSubmit={pay}>
            <input className="narrow" aria-label="Amount" data-testid="payment-amount" value={amount} onChange={(e) => setAmount(e.target.value)} aria-invalid={error ? true : undefined} />
            <select aria-label="Payment method" value={method} onChange={(e) => setMethod(e.target.value as PaymentMethod)}>
              <option value="card">card</option><option value="cash">cash</option>
              <option value="transfer">transfer</option><option value="insurance">insurance</option>
            </select>
            <button data-testid="payment-record">Record payment</button>
            {error && <span className="error" role="alert" data-testid="payment-error">{error}</span>}
          </form>
        )}
      </td>
      <td>
        <PrintButton
          label={inv.status === "paid" ? "Print receipt" : "Print invoice"}
          what={`the ${inv.status === "paid" ? "receipt" : "invoice"} for ${patient}`}
          testid="print-invoice"
          print={() => api.printInvoice(row.id)}
        />
      </td>
    </tr>
  );
}
