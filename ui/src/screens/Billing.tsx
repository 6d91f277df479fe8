// Billing at the desk: invoices from draft to paid (or void and refunded),
// the end-of-day report with its printout, and the clinic's price list.
//
// A visit is billed from the schedule ("Bill visit" starts a draft with the
// price-list line for its length) and opens here in the draft editor, where
// lines are added from the price list, counted and removed until the invoice
// is issued. Every step is a mutation the engine checks with the same rules
// the server applies (no payment over what is owed, no line changes once
// issued, refunds only of what was paid on a void invoice), so a mistake is
// a sentence at the form, and it all works offline.
import { useQuery } from "@tanstack/react-query";
import { useEffect, useState, type FormEvent } from "react";
import { api, errorMessage, newId } from "../api";
import type { Entity } from "../bindings/Entity";
import type { Invoice } from "../bindings/Invoice";
import type { InvoiceLine } from "../bindings/InvoiceLine";
import type { Mutation } from "../bindings/Mutation";
import type { PaymentMethod } from "../bindings/PaymentMethod";
import type { PriceItem } from "../bindings/PriceItem";
import type { Staff } from "../bindings/Staff";
import { Dialog } from "../components/Dialog";
import { PrintButton } from "../components/PrintButton";
import { useDesk } from "../desk";
import { fieldLabel, fieldSentences, formatMoney, rejectionSentence, type Names } from "../lib/errors";
import { parseMoney } from "../lib/money";
import { can, canRead } from "../lib/roles";
import { take, type Command } from "../lib/shortcuts";
import { addDays, datePattern, formatDate, formatDay, formatDayOf, formatInstant, formatTime, nowInstant, parseDate, todayIn } from "../lib/time";

type View = "invoices" | "day" | "prices";

const METHOD_WORDS: Record<PaymentMethod, string> = {
  cash: "Cash",
  card: "Card",
  transfer: "Bank transfer",
  insurance: "Insurance",
};
const METHODS: PaymentMethod[] = ["cash", "card", "transfer", "insurance"];

/** An invoice's state in words, as the list shows it. */
function statusText(inv: Invoice, locale: string): string {
  switch (inv.status) {
    case "draft":
      return "Draft, not issued";
    case "open":
      return inv.paid_cents > 0 ? `Part paid, ${formatMoney(inv.total_cents - inv.paid_cents, locale)} open` : "Open";
    case "paid":
      return "Paid";
    case "void": {
      const due = inv.paid_cents - (inv.refunded_cents ?? 0);
      return due > 0 ? `Void, ${formatMoney(due, locale)} to pay back` : "Void";
    }
  }
}

/** Money still to be paid back on a void invoice. */
const refundDue = (inv: Invoice) => (inv.status === "void" ? inv.paid_cents - (inv.refunded_cents ?? 0) : 0);

/** Still wants something from the desk: a draft to issue, money to take, or money to pay back. */
const needsDoing = (inv: Invoice) => inv.status === "draft" || inv.status === "open" || refundDue(inv) > 0;

/**
 * Checks a change with the rules, then makes it. The refusal as a sentence
 * (the first field problem, else the rule), or null when it was made. A
 * refusal the server sends later becomes a notification like any other.
 */
async function attempt(m: Mutation, names: Names): Promise<string | null> {
  try {
    const refusal = await api.checkMutation(m);
    if (refusal) return Object.values(fieldSentences(refusal.fields, names.clinic.locale))[0] ?? rejectionSentence(refusal, names);
    await api.mutate(m);
    return null;
  } catch (err) {
    return errorMessage(err);
  }
}

export function Billing({ user, command }: { user: Staff; command: Command | null }) {
  const [view, setView] = useState<View>("invoices");
  // The invoice opened from elsewhere (a visit billed on the schedule): kept
  // in view until another is opened, its draft in the editor.
  const [opened, setOpened] = useState<{ id: string; editing: boolean } | null>(null);
  useEffect(() => {
    const id = command?.invoiceId;
    if (id && take(command, "open-invoice")) {
      setView("invoices");
      setOpened({ id, editing: true });
    }
  }, [command]);
  const views: [View, string][] = [
    ["invoices", "Invoices"],
    ["day", "End of day"],
  ];
  if (canRead(user.role, "price_items")) views.push(["prices", "Price list"]);
  return (
    <div className="billing">
      <div className="toolbar" role="tablist" aria-label="Billing">
        {views.map(([v, label]) => (
          <button key={v} role="tab" aria-selected={view === v} className={view === v ? "active" : ""} data-testid={`billing-${v}`} onClick={() => setView(v)}>
            {label}
          </button>
        ))}
      </div>
      {view === "invoices" && <Invoices user={user} opened={opened} setOpened={setOpened} />}
      {view === "day" && <EndOfDay />}
      {view === "prices" && <PriceList user={user} />}
    </div>
  );
}

function Invoices({ user, opened, setOpened }: { user: Staff; opened: { id: string; editing: boolean } | null; setOpened: (o: { id: string; editing: boolean }) => void }) {
  const openId = opened?.id ?? null;
  const invoices = useQuery({ queryKey: ["rows", "invoices"], queryFn: api.invoices });
  const patients = useQuery({ queryKey: ["rows", "patients"], queryFn: api.patients });
  const [todoOnly, setTodoOnly] = useState(true);
  const nameOf = new Map((patients.data ?? []).map((r) => [r.id, `${r.data.last_name}, ${r.data.first_name}`]));
  const rows = (invoices.data ?? [])
    // The invoice just opened stays in view even when it needs nothing more.
    .filter((r) => !todoOnly || needsDoing(r.data) || r.id === openId)
    .sort((a, b) => b.data.issued_at.localeCompare(a.data.issued_at));
  const waiting = openId !== null && invoices.data !== undefined && !invoices.data.some((r) => r.id === openId);
  return (
    <div>
      <div className="toolbar">
        <label className="check">
          <input type="checkbox" data-testid="billing-todo-only" checked={todoOnly} onChange={(e) => setTodoOnly(e.target.checked)} /> Only drafts, open invoices and refunds due
        </label>
      </div>
      {waiting && <p className="muted">Opening the invoice…</p>}
      <table data-testid="invoices">
        <thead>
          <tr>
            <th>Issued</th>
            <th>Patient</th>
            <th>Lines</th>
            <th>Total</th>
            <th>Paid</th>
            <th>Status</th>
            <th>Next step</th>
            <th>
              <span className="sr-only">Print</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {rows.map((r) => (
            <InvoiceRow
              key={r.id}
              row={r}
              user={user}
              patient={nameOf.get(r.data.patient_id) ?? "…"}
              editing={openId === r.id && !!opened?.editing && r.data.status === "draft"}
              onEdit={(editing) => setOpened({ id: r.id, editing })}
            />
          ))}
        </tbody>
      </table>
      {invoices.data !== undefined && rows.length === 0 && <p className="muted">{todoOnly ? "Nothing is waiting: every invoice is issued and settled." : "No invoices yet."}</p>}
    </div>
  );
}

function InvoiceRow({ row, user, patient, editing, onEdit }: { row: Entity<Invoice>; user: Staff; patient: string; editing: boolean; onEdit: (on: boolean) => void }) {
  const inv = row.data;
  const { clinic } = useDesk();
  const [voiding, setVoiding] = useState(false);
  const [refunding, setRefunding] = useState(false);
  const due = refundDue(inv);
  const [last, first] = patient.split(", ");
  const person = first ? `${first} ${last}` : patient;
  const printWhat = inv.status === "draft" ? "draft invoice" : inv.status === "paid" ? "receipt" : "invoice";
  return (
    <>
      <tr data-testid="invoice" data-id={row.id} data-status={inv.status}>
        <td>{inv.status === "draft" ? "Not yet" : formatDayOf(inv.issued_at, clinic)}</td>
        <td>{patient}</td>
        <td>{inv.lines.length ? inv.lines.map((l) => `${l.quantity}× ${l.description}`).join(", ") : <span className="muted">No lines yet</span>}</td>
        <td>{formatMoney(inv.total_cents, clinic.locale)}</td>
        <td>{formatMoney(inv.paid_cents, clinic.locale)}</td>
        <td data-testid="invoice-status">
          {statusText(inv, clinic.locale)}
          {inv.void_reason && <span className="muted small"> · {inv.void_reason}</span>}
          {row.pending && <span className="badge">saving</span>}
        </td>
        <td className="actions">
          {inv.status === "draft" && can(user.role, "update_invoice_lines") && !editing && (
            <button data-testid="draft-edit" onClick={() => onEdit(true)}>
              Edit and issue
            </button>
          )}
          {inv.status === "open" && can(user.role, "record_payment") && <PaymentForm row={row} />}
          {(inv.status === "open" || inv.status === "paid") && can(user.role, "void_invoice") && (
            <button className="danger" data-testid="invoice-void" onClick={() => setVoiding(true)}>
              Void
            </button>
          )}
          {due > 0 && can(user.role, "refund_payment") && !refunding && (
            <button data-testid="invoice-refund" onClick={() => setRefunding(true)}>
              Refund
            </button>
          )}
        </td>
        <td>
          <PrintButton label={inv.status === "paid" ? "Print receipt" : "Print invoice"} what={`the ${printWhat} for ${patient}`} testid="print-invoice" print={() => api.printInvoice(row.id)} />
        </td>
      </tr>
      {editing && (
        <tr>
          <td colSpan={8}>
            <DraftEditor row={row} person={person} onDone={() => onEdit(false)} />
          </td>
        </tr>
      )}
      {refunding && (
        <tr>
          <td colSpan={8}>
            <RefundForm row={row} person={person} onDone={() => setRefunding(false)} />
          </td>
        </tr>
      )}
      {voiding && <VoidDialog row={row} person={person} onDone={() => setVoiding(false)} />}
    </>
  );
}

function PaymentForm({ row }: { row: Entity<Invoice> }) {
  const inv = row.data;
  const { clinic, names } = useDesk();
  const outstanding = inv.total_cents - inv.paid_cents;
  const [amount, setAmount] = useState(formatMoney(outstanding, clinic.locale));
  const [method, setMethod] = useState<PaymentMethod>("card");
  const [error, setError] = useState<string | null>(null);
  // What is owed changes as payments arrive (here or on another desk): offer the rest.
  useEffect(() => setAmount(formatMoney(outstanding, clinic.locale)), [outstanding, clinic.locale]);
  async function pay(e: FormEvent) {
    e.preventDefault();
    setError(null);
    const cents = parseMoney(amount, clinic.locale);
    if (cents === null) return setError(`Amount is not an amount of money; type it like ${formatMoney(4550, clinic.locale)}.`);
    setError(await attempt({ type: "record_payment", args: { id: newId(), invoice_id: row.id, amount_cents: cents, method, paid_at: nowInstant() } }, names));
  }
  return (
    <form className="inline" onSubmit={pay}>
      <input className="narrow" aria-label="Amount" data-testid="payment-amount" value={amount} onChange={(e) => setAmount(e.target.value)} aria-invalid={error ? true : undefined} />
      <select aria-label="Payment method" data-testid="payment-method" value={method} onChange={(e) => setMethod(e.target.value as PaymentMethod)}>
        {METHODS.map((m) => (
          <option key={m} value={m}>
            {METHOD_WORDS[m].toLowerCase()}
          </option>
        ))}
      </select>
      <button data-testid="payment-record">Record payment</button>
      {error && (
        <span className="error" role="alert" data-testid="payment-error">
          {error}
        </span>
      )}
    </form>
  );
}

/** A line being edited: the quantity as typed. */
interface EditLine {
  description: string;
  unit_price_cents: number;
  quantity: string;
}

const toEdit = (lines: InvoiceLine[]): EditLine[] => lines.map((l) => ({ description: l.description, unit_price_cents: l.unit_price_cents, quantity: String(l.quantity) }));

/**
 * A draft's lines, changed until it is issued: add from the price list,
 * change how many, remove. Issuing sends what is on screen: the lines (if
 * changed) and then the issue, both against the version shown, so a draft
 * another desk changed meanwhile is not issued unseen.
 */
function DraftEditor({ row, person, onDone }: { row: Entity<Invoice>; person: string; onDone: () => void }) {
  const { clinic, names, toast } = useDesk();
  const prices = useQuery({ queryKey: ["rows", "price_items"], queryFn: api.priceList });
  const [lines, setLines] = useState<EditLine[]>(() => toEdit(row.data.lines));
  const [dirty, setDirty] = useState(false);
  const [pick, setPick] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const shown = JSON.stringify(row.data.lines);
  // Changed on another desk while untouched here: show theirs.
  useEffect(() => {
    if (!dirty) setLines(toEdit(JSON.parse(shown) as InvoiceLine[]));
  }, [shown, dirty]);
  const offered = (prices.data ?? []).filter((p) => !p.data.retired);
  const change = (next: EditLine[]) => {
    setLines(next);
    setDirty(true);
    setError(null);
  };
  function add() {
    const item = offered.find((p) => p.id === pick)?.data;
    if (!item) return setError("Choose an entry of the price list to add.");
    const same = lines.findIndex((l) => l.description === item.description && l.unit_price_cents === item.unit_price_cents);
    if (same >= 0) {
      const q = Number(lines[same].quantity);
      change(lines.map((l, i) => (i === same ? { ...l, quantity: String(Number.isSafeInteger(q) ? q + 1 : 1) } : l)));
    } else {
      change([...lines, { description: item.description, unit_price_cents: item.unit_price_cents, quantity: "1" }]);
    }
    setPick("");
  }
  /** The lines as sent, or a sentence naming the line whose count is not a number. */
  function parsed(): InvoiceLine[] | string {
    const out: InvoiceLine[] = [];
    for (const [i, l] of lines.entries()) {
      const q = l.quantity.trim();
      if (!/^\d+$/.test(q) || Number(q) < 1) return `${fieldLabel(`lines.${i}.quantity`)} is not a count; type a whole number like 1 or 2.`;
      out.push({ description: l.description, quantity: Number(q), unit_price_cents: l.unit_price_cents });
    }
    return out;
  }
  async function save(issue: boolean) {
    setError(null);
    const next = parsed();
    if (typeof next === "string") return setError(next);
    setBusy(true);
    try {
      if (dirty) {
        const refused = await attempt({ type: "update_invoice_lines", args: { id: row.id, base_version: row.version, lines: next } }, names);
        if (refused) return setError(refused);
        setDirty(false);
      }
      if (issue) {
        const refused = await attempt({ type: "issue_invoice", args: { id: row.id, base_version: row.version, issued_at: nowInstant() } }, names);
        if (refused) return setError(refused);
        const total = next.reduce((sum, l) => sum + l.quantity * l.unit_price_cents, 0);
        toast({ text: `Invoice for ${person} issued: ${formatMoney(total, clinic.locale)} to pay.` });
      }
      onDone();
    } finally {
      setBusy(false);
    }
  }
  const total = lines.reduce((sum, l) => sum + (/^\d+$/.test(l.quantity.trim()) ? Number(l.quantity) : 0) * l.unit_price_cents, 0);
  return (
    <div className="card" data-testid="draft-editor" aria-label={`Draft invoice for ${person}`}>
      <h3>Draft invoice for {person}</h3>
      <table data-testid="draft-lines">
        <thead>
          <tr>
            <th>What was provided</th>
            <th>How many</th>
            <th>Price of one</th>
            <th>Amount</th>
            <th>
              <span className="sr-only">Remove</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {lines.map((l, i) => (
            <tr key={i} data-testid="draft-line">
              <td>{l.description}</td>
              <td>
                <input
                  className="narrow"
                  aria-label={`How many: ${l.description}`}
                  data-testid="draft-quantity"
                  value={l.quantity}
                  onChange={(e) => change(lines.map((x, j) => (j === i ? { ...x, quantity: e.target.value } : x)))}
                />
              </td>
              <td>{formatMoney(l.unit_price_cents, clinic.locale)}</td>
              <td>{/^\d+$/.test(l.quantity.trim()) ? formatMoney(Number(l.quantity) * l.unit_price_cents, clinic.locale) : "—"}</td>
              <td>
                <button type="button" data-testid="draft-remove" aria-label={`Remove ${l.description}`} onClick={() => change(lines.filter((_, j) => j !== i))}>
                  Remove
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {lines.length === 0 && <p className="muted">No lines yet: add what was provided from the price list.</p>}
      <div className="toolbar">
        <select aria-label="Add from the price list" data-testid="draft-add-item" value={pick} onChange={(e) => setPick(e.target.value)}>
          <option value="">Add from the price list…</option>
          {offered.map((p) => (
            <option key={p.id} value={p.id}>
              {p.data.code} · {p.data.description} · {formatMoney(p.data.unit_price_cents, clinic.locale)}
            </option>
          ))}
        </select>
        <button type="button" data-testid="draft-add" onClick={add}>
          Add line
        </button>
        <strong data-testid="draft-total">Total {formatMoney(total, clinic.locale)}</strong>
      </div>
      {error && (
        <p className="error" role="alert" data-testid="draft-error">
          {error}
        </p>
      )}
      <div className="actions">
        <button type="button" data-testid="draft-close" onClick={onDone} disabled={busy}>
          {dirty ? "Close without saving" : "Close"}
        </button>
        <button type="button" data-testid="draft-save" onClick={() => void save(false)} disabled={busy || !dirty}>
          Save draft
        </button>
        <button type="button" className="primary" data-testid="draft-issue" onClick={() => void save(true)} disabled={busy}>
          {busy ? "Issuing…" : "Issue invoice"}
        </button>
      </div>
    </div>
  );
}

/** Voiding asks why (kept on the invoice and in its history); payments stay recorded and are paid back with refunds. */
function VoidDialog({ row, person, onDone }: { row: Entity<Invoice>; person: string; onDone: () => void }) {
  const { clinic, names, toast } = useDesk();
  const [reason, setReason] = useState("");
  const [error, setError] = useState<string | null>(null);
  const inv = row.data;
  async function confirm() {
    setError(null);
    const refused = await attempt({ type: "void_invoice", args: { id: row.id, reason: reason.trim() } }, names);
    if (refused) return setError(refused);
    toast({ text: `Invoice for ${person} voided.${inv.paid_cents > 0 ? ` ${formatMoney(inv.paid_cents, clinic.locale)} was paid on it: record the refund when it is paid back.` : ""}` });
    onDone();
  }
  return (
    <Dialog title={`Void the invoice for ${person}?`} confirm="Void invoice" danger onConfirm={() => void confirm()} onCancel={onDone} testid="void-dialog">
      <p>
        The invoice of {formatMoney(inv.total_cents, clinic.locale)} stops being owed and cannot be issued again; bill the visit anew if needed.
        {inv.paid_cents > 0 && ` The ${formatMoney(inv.paid_cents, clinic.locale)} already paid stays recorded until it is refunded.`}
      </p>
      <label>
        <span>Why is it voided?</span>
        <textarea data-testid="void-reason" value={reason} onChange={(e) => setReason(e.target.value)} aria-invalid={error ? true : undefined} rows={2} />
      </label>
      {error && (
        <p className="error" role="alert" data-testid="void-error">
          {error}
        </p>
      )}
    </Dialog>
  );
}

/** Paying money back on a void invoice: up to what was paid and not yet refunded. */
function RefundForm({ row, person, onDone }: { row: Entity<Invoice>; person: string; onDone: () => void }) {
  const { clinic, names, toast } = useDesk();
  const due = refundDue(row.data);
  const [amount, setAmount] = useState(formatMoney(due, clinic.locale));
  const [method, setMethod] = useState<PaymentMethod>("cash");
  const [reason, setReason] = useState(row.data.void_reason ?? "");
  const [error, setError] = useState<string | null>(null);
  async function refund(e: FormEvent) {
    e.preventDefault();
    setError(null);
    const cents = parseMoney(amount, clinic.locale);
    if (cents === null || cents === 0) return setError(`Amount is not an amount of money; type it like ${formatMoney(4550, clinic.locale)}.`);
    if (cents > due) return setError(`Amount is more than the ${formatMoney(due, clinic.locale)} still to pay back.`);
    const refused = await attempt({ type: "refund_payment", args: { id: newId(), invoice_id: row.id, amount_cents: cents, method, reason: reason.trim(), refunded_at: nowInstant() } }, names);
    if (refused) return setError(refused);
    toast({ text: `Refund of ${formatMoney(cents, clinic.locale)} to ${person} recorded.` });
    onDone();
  }
  return (
    <form className="card inline" data-testid="refund-form" onSubmit={refund}>
      <label>
        <span>Pay back to {person}</span>
        <input className="narrow" data-testid="refund-amount" value={amount} onChange={(e) => setAmount(e.target.value)} />
      </label>
      <label>
        <span>How</span>
        <select data-testid="refund-method" value={method} onChange={(e) => setMethod(e.target.value as PaymentMethod)}>
          {METHODS.map((m) => (
            <option key={m} value={m}>
              {METHOD_WORDS[m]}
            </option>
          ))}
        </select>
      </label>
      <label>
        <span>Why</span>
        <input data-testid="refund-reason" value={reason} onChange={(e) => setReason(e.target.value)} />
      </label>
      <button type="button" data-testid="refund-cancel" onClick={onDone}>
        Cancel
      </button>
      <button className="primary" data-testid="refund-record">
        Record refund
      </button>
      {error && (
        <span className="error" role="alert" data-testid="refund-error">
          {error}
        </span>
      )}
    </form>
  );
}

/**
 * The end-of-day report: what came in and went out on a day in the clinic's
 * zone, by method (to count the till against) and by person, and what is
 * still open. Of the whole clinic, or one person's takings; printable.
 */
function EndOfDay() {
  const { clinic, user } = useDesk();
  const [date, setDate] = useState(() => todayIn(clinic.zone));
  const [dateText, setDateText] = useState(() => formatDate(todayIn(clinic.zone), clinic));
  const [staff, setStaff] = useState<string>("");
  const people = useQuery({ queryKey: ["rows", "staff"], queryFn: api.staff });
  const report = useQuery({ queryKey: ["dayReport", date, staff], queryFn: () => api.dayReport(date, staff || null) });
  const go = (d: string) => {
    setDate(d);
    setDateText(formatDate(d, clinic));
  };
  const money = (c: number) => formatMoney(c, clinic.locale);
  const r = report.data;
  const whose = staff ? (people.data?.find((p) => p.id === staff)?.data.display_name ?? "one person") : "the whole clinic";
  return (
    <div data-testid="day-report">
      <div className="toolbar">
        <button aria-label="Previous day" onClick={() => go(addDays(date, -1))}>
          ‹
        </button>
        <input
          data-testid="report-date"
          aria-label={`Day (${datePattern(clinic.locale)})`}
          className="date-input"
          value={dateText}
          onChange={(e) => {
            setDateText(e.target.value);
            const d = parseDate(e.target.value, clinic.locale);
            if (d) setDate(d);
          }}
        />
        <button aria-label="Next day" onClick={() => go(addDays(date, 1))}>
          ›
        </button>
        <button data-testid="report-today" onClick={() => go(todayIn(clinic.zone))}>
          Today
        </button>
        <select aria-label="Whose takings" data-testid="report-staff" value={staff} onChange={(e) => setStaff(e.target.value)}>
          <option value="">Whole clinic</option>
          <option value={user.id}>Only mine ({user.display_name})</option>
          {(people.data ?? [])
            .filter((p) => p.id !== user.id && (p.data.role === "reception" || p.data.role === "admin"))
            .map((p) => (
              <option key={p.id} value={p.id}>
                Only {p.data.display_name}
              </option>
            ))}
        </select>
        <PrintButton label="Print report" what={`the end-of-day report for ${formatDay(date, clinic)}`} testid="print-report" print={() => api.printDayReport(date, staff || null)} />
      </div>
      <h2 data-testid="report-title">
        End of day · {formatDay(date, clinic)} · {whose} · times in {clinic.zone}
      </h2>
      {report.isError && (
        <p className="error" role="alert">
          The report could not be made: {errorMessage(report.error)}
        </p>
      )}
      {r && (
        <>
          <table data-testid="report-methods">
            <thead>
              <tr>
                <th>Method</th>
                <th>Taken</th>
                <th>Refunded</th>
                <th>Net</th>
                <th>Entries</th>
              </tr>
            </thead>
            <tbody>
              {r.by_method.map((t) => (
                <tr key={t.method ?? "all"} data-testid="report-method">
                  <td>{t.method ? METHOD_WORDS[t.method] : "All"}</td>
                  <td>{money(t.taken_cents)}</td>
                  <td>{money(t.refunded_cents)}</td>
                  <td>{money(t.net_cents)}</td>
                  <td>{t.count}</td>
                </tr>
              ))}
              <tr data-testid="report-total">
                <th>Total</th>
                <th>{money(r.total.taken_cents)}</th>
                <th>{money(r.total.refunded_cents)}</th>
                <th>{money(r.total.net_cents)}</th>
                <th>{r.total.count}</th>
              </tr>
            </tbody>
          </table>
          <p data-testid="report-summary">
            {r.issued_count === 1 ? "1 invoice" : `${r.issued_count} invoices`} issued, {money(r.issued_cents)}. Still open: {r.open_invoices.length === 1 ? "1 invoice" : `${r.open_invoices.length} invoices`}, {money(r.open_cents)} owed.
            {r.drafts > 0 && ` ${r.drafts === 1 ? "1 draft is" : `${r.drafts} drafts are`} not issued yet.`}
          </p>
          {r.unreadable > 0 && (
            <p className="card warn" role="alert" data-testid="report-unreadable">
              {r.unreadable === 1 ? "One billing record" : `${r.unreadable} billing records`} on this computer could not be read and {r.unreadable === 1 ? "is" : "are"} left out of these
              figures. The server still has {r.unreadable === 1 ? "it" : "them"}: ask IT to update Clinic Sync on this computer.
            </p>
          )}
          <h3>By person</h3>
          {r.by_staff.length === 0 ? (
            <p className="muted">No money was taken.</p>
          ) : (
            <ul>
              {r.by_staff.map((s) => (
                <li key={s.user_id} data-testid="report-person">
                  {s.name}: taken {money(s.taken_cents)}, refunded {money(s.refunded_cents)} ({s.count} {s.count === 1 ? "entry" : "entries"})
                </li>
              ))}
            </ul>
          )}
          <h3>Payments and refunds</h3>
          {r.payments.length === 0 ? (
            <p className="muted">None on this day.</p>
          ) : (
            <ul>
              {r.payments.map((p) => (
                <li key={p.id} data-testid="report-payment">
                  {formatTime(p.at, clinic)} {p.patient}: {p.refund ? "refund" : "paid"} {money(p.amount_cents)} {METHOD_WORDS[p.method].toLowerCase()} (by {p.by})
                </li>
              ))}
            </ul>
          )}
          {r.refunds_due.length > 0 && (
            <>
              <h3>Refunds due</h3>
              <ul>
                {r.refunds_due.map((i) => (
                  <li key={i.id} data-testid="report-refund-due">
                    {i.patient}: {money(i.cents)} to pay back (voided invoice of {formatInstant(i.issued_at, clinic)})
                  </li>
                ))}
              </ul>
            </>
          )}
        </>
      )}
    </div>
  );
}

/** The clinic's price list: what a line costs. Everyone who bills reads it; administrators keep it (entries are retired, never deleted). */
function PriceList({ user }: { user: Staff }) {
  const prices = useQuery({ queryKey: ["rows", "price_items"], queryFn: api.priceList });
  const keeps = can(user.role, "create_price_item");
  const [adding, setAdding] = useState(false);
  return (
    <div data-testid="price-list">
      {keeps && !adding && (
        <div className="toolbar">
          <button className="primary" data-testid="price-new" onClick={() => setAdding(true)}>
            New entry
          </button>
        </div>
      )}
      {adding && <PriceForm row={null} onDone={() => setAdding(false)} />}
      <table>
        <thead>
          <tr>
            <th>Code</th>
            <th>What the invoice says</th>
            <th>Price</th>
            <th>Bills a visit of</th>
            <th>Offered</th>
            {keeps && (
              <th>
                <span className="sr-only">Change</span>
              </th>
            )}
          </tr>
        </thead>
        <tbody>
          {(prices.data ?? []).map((p) => (
            <PriceRow key={p.id} row={p} keeps={keeps} />
          ))}
        </tbody>
      </table>
    </div>
  );
}

function PriceRow({ row, keeps }: { row: Entity<PriceItem>; keeps: boolean }) {
  const { clinic } = useDesk();
  const [editing, setEditing] = useState(false);
  const p = row.data;
  return (
    <>
      <tr data-testid="price-item" className={row.pending ? "pending" : ""}>
        <td>{p.code}</td>
        <td>{p.description}</td>
        <td>{formatMoney(p.unit_price_cents, clinic.locale)}</td>
        <td>{p.visit_minutes ? `${p.visit_minutes} min` : "—"}</td>
        <td>
          {p.retired ? "Retired" : "Yes"}
          {row.pending && <span className="badge">saving</span>}
        </td>
        {keeps && (
          <td>
            {!editing && (
              <button data-testid="price-edit" onClick={() => setEditing(true)}>
                Change
              </button>
            )}
          </td>
        )}
      </tr>
      {editing && (
        <tr>
          <td colSpan={6}>
            <PriceForm row={row} onDone={() => setEditing(false)} />
          </td>
        </tr>
      )}
    </>
  );
}

/** A new price-list entry, or a change to one (only the fields changed are sent). */
function PriceForm({ row, onDone }: { row: Entity<PriceItem> | null; onDone: () => void }) {
  const { clinic, names } = useDesk();
  const prices = useQuery({ queryKey: ["rows", "price_items"], queryFn: api.priceList });
  const p = row?.data;
  const [code, setCode] = useState(p?.code ?? "");
  const [description, setDescription] = useState(p?.description ?? "");
  const [price, setPrice] = useState(p ? formatMoney(p.unit_price_cents, clinic.locale) : "");
  const [minutes, setMinutes] = useState(p?.visit_minutes ? String(p.visit_minutes) : "");
  const [retired, setRetired] = useState(!!p?.retired);
  const [error, setError] = useState<string | null>(null);
  async function submit(e: FormEvent) {
    e.preventDefault();
    setError(null);
    const cents = parseMoney(price, clinic.locale);
    if (cents === null) return setError(`Price is not an amount of money; type it like ${formatMoney(4550, clinic.locale)}.`);
    const m = minutes.trim();
    if (m !== "" && (!/^\d+$/.test(m) || Number(m) < 1)) return setError("Visit length is not a number of minutes; type it like 30, or leave it empty.");
    const visit = m === "" ? undefined : Number(m);
    // Codes are how the desk picks an entry: two with one code would be mistaken for each other.
    const clash = (prices.data ?? []).find((x) => x.id !== row?.id && x.data.code.toLowerCase() === code.trim().toLowerCase());
    if (clash) return setError(`Code ${clash.data.code} is already used by “${clash.data.description}”; choose another.`);
    let mutation: Mutation;
    if (!row || !p) {
      mutation = { type: "create_price_item", args: { id: newId(), code: code.trim(), description: description.trim(), unit_price_cents: cents, ...(visit ? { visit_minutes: visit } : {}) } };
    } else {
      const fields: Record<string, unknown> = {};
      if (code.trim() !== p.code) fields.code = code.trim();
      if (description.trim() !== p.description) fields.description = description.trim();
      if (cents !== p.unit_price_cents) fields.unit_price_cents = cents;
      if ((visit ?? null) !== (p.visit_minutes ?? null)) fields.visit_minutes = visit ?? null;
      if (retired !== !!p.retired) fields.retired = retired;
      if (Object.keys(fields).length === 0) return onDone();
      mutation = { type: "update_price_item", args: { id: row.id, base_version: row.version, fields } };
    }
    const refused = await attempt(mutation, names);
    if (refused) return setError(refused);
    onDone();
  }
  return (
    <form className="card inline" data-testid="price-form" onSubmit={submit}>
      <label>
        <span>Code</span>
        <input className="narrow" data-testid="price-code" value={code} onChange={(e) => setCode(e.target.value)} />
      </label>
      <label>
        <span>What the invoice says</span>
        <input data-testid="price-description" value={description} onChange={(e) => setDescription(e.target.value)} />
      </label>
      <label>
        <span>Price</span>
        <input className="narrow" data-testid="price-amount" value={price} onChange={(e) => setPrice(e.target.value)} />
      </label>
      <label>
        <span>Bills a visit of (minutes)</span>
        <input className="narrow" data-testid="price-minutes" value={minutes} onChange={(e) => setMinutes(e.target.value)} />
      </label>
      {row && (
        <label className="check">
          <input type="checkbox" data-testid="price-retired" checked={retired} onChange={(e) => setRetired(e.target.checked)} /> Retired (no longer offered)
        </label>
      )}
      <button type="button" data-testid="price-cancel" onClick={onDone}>
        Cancel
      </button>
      <button className="primary" data-testid="price-save">
        {row ? "Save" : "Add to the price list"}
      </button>
      {error && (
        <span className="error" role="alert" data-testid="price-error">
          {error}
        </span>
      )}
    </form>
  );
}
