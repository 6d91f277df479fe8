//! Billing on the desk: the price list, drafts started from a visit, and
//! the end-of-day report, all from the rows this desk holds (so they work
//! offline like the rest of billing: every change is a mutation the server
//! judges by the same planner).
//!
//! "Per desk" in the clinic's sense is per person at the till: payments
//! carry who took them (`received_by`), and the report can be narrowed to
//! one staff member. The clinic's report is the same with no one named.

use crate::error::{ClientError, ClientResult};
use crate::facade::ClinicClient;
use crate::printing::short_number;
use crate::types::Entity;
use chrono::NaiveDate;
use clinic_shared::model::{
    Appointment, Invoice, InvoiceLine, InvoiceStatus, Patient, Payment, PaymentMethod, PriceItem,
    Staff, Table, Timestamp,
};
use clinic_shared::mutation::{CreateInvoice, Mutation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use uuid::Uuid;

/// Totals of one payment method on a day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct MethodTotal {
    /// The method.
    pub method: Option<PaymentMethod>,
    /// Payments received, in cents.
    pub taken_cents: i64,
    /// Refunds paid back, in cents.
    pub refunded_cents: i64,
    /// `taken_cents − refunded_cents`: what the till or account should show.
    pub net_cents: i64,
    /// Number of payments and refunds.
    pub count: u32,
}

/// One staff member's takings on a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct StaffTotal {
    /// Who took the money.
    pub user_id: Uuid,
    /// Their name as the desk shows it.
    pub name: String,
    /// Payments received, in cents.
    pub taken_cents: i64,
    /// Refunds paid back, in cents.
    pub refunded_cents: i64,
    /// Number of payments and refunds.
    pub count: u32,
}

/// A payment or refund on the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct ReportPayment {
    /// Payment row.
    pub id: Uuid,
    /// Its invoice.
    pub invoice_id: Uuid,
    /// The patient billed ("Last, First"), or a note that the row is not
    /// on this desk yet.
    pub patient: String,
    /// When (client clock of the desk that took it).
    pub at: Timestamp,
    /// How.
    pub method: PaymentMethod,
    /// Amount in cents (positive, also for refunds).
    pub amount_cents: i64,
    /// Money paid back.
    pub refund: bool,
    /// Who took or paid it.
    pub by: String,
}

/// An invoice that still wants something: payment, or a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct OpenInvoice {
    /// Invoice row.
    pub id: Uuid,
    /// The patient ("Last, First").
    pub patient: String,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// What is owed (open invoices) or to be paid back (void ones), in cents.
    pub cents: i64,
}

/// The end-of-day report: what came in and went out on one day in the
/// clinic's time zone, and what is still open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct DayReport {
    /// The day.
    #[ts(type = "string")]
    pub date: NaiveDate,
    /// Narrowed to one staff member's takings, or the whole clinic.
    pub staff: Option<Uuid>,
    /// Per method, in the order cash, card, transfer, insurance (methods
    /// with nothing that day included, so the till can be counted).
    pub by_method: Vec<MethodTotal>,
    /// Per staff member who took money, by name.
    pub by_staff: Vec<StaffTotal>,
    /// All methods together.
    pub total: MethodTotal,
    /// Every payment and refund of the day, in time order.
    pub payments: Vec<ReportPayment>,
    /// Invoices issued that day: how many, and their sum in cents (void
    /// ones not counted).
    pub issued_count: u32,
    /// Sum of those invoices.
    pub issued_cents: i64,
    /// Every open invoice of the clinic (any day), oldest first.
    pub open_invoices: Vec<OpenInvoice>,
    /// Their sum.
    pub open_cents: i64,
    /// Void invoices with money still to pay back, oldest first.
    pub refunds_due: Vec<OpenInvoice>,
    /// Drafts not yet issued.
    pub drafts: u32,
    /// Invoices and payments on this desk that could not be read (left
    /// out of every figure above; the desk says so).
    pub unreadable: u32,
}

const METHODS: [PaymentMethod; 4] = [
    PaymentMethod::Cash,
    PaymentMethod::Card,
    PaymentMethod::Transfer,
    PaymentMethod::Insurance,
];

fn add(total: &mut MethodTotal, p: &Payment) {
    if p.refund {
        total.refunded_cents += p.amount_cents;
    } else {
        total.taken_cents += p.amount_cents;
    }
    total.net_cents = total.taken_cents - total.refunded_cents;
    total.count += 1;
}

fn name_of(patients: &HashMap<Uuid, Patient>, id: Uuid) -> String {
    match patients.get(&id) {
        Some(p) => format!("{}, {}", p.last_name, p.first_name),
        None => "(patient not on this computer yet)".to_owned(),
    }
}

fn typed<T: serde::de::DeserializeOwned>(rows: Vec<crate::types::Row>) -> Vec<T> {
    typed_counted(rows, &mut 0)
}

/// The rows that decode, adding the number that do not to `skipped` (a
/// row this version cannot read, e.g. written by a newer server): a
/// report says it left them out rather than totalling less in silence.
fn typed_counted<T: serde::de::DeserializeOwned>(
    rows: Vec<crate::types::Row>,
    skipped: &mut u32,
) -> Vec<T> {
    rows.into_iter()
        .filter_map(|r| match serde_json::from_value(r.data) {
            Ok(v) => Some(v),
            Err(_) => {
                *skipped = skipped.saturating_add(1);
                None
            }
        })
        .collect()
}

impl ClinicClient {
    /// The price list: entries on offer first, then retired ones, each by
    /// code.
    pub async fn price_list(&self) -> ClientResult<Vec<Entity<PriceItem>>> {
        let mut items: Vec<Entity<PriceItem>> = self
            .rows(Table::PriceItems)
            .await?
            .into_iter()
            .filter_map(|r| {
                Some(Entity {
                    id: r.id,
                    version: r.version,
                    pending: r.pending,
                    data: serde_json::from_value(r.data).ok()?,
                })
            })
            .collect();
        items.sort_by(|a, b| (a.data.retired, &a.data.code).cmp(&(b.data.retired, &b.data.code)));
        Ok(items)
    }

    /// Starts a draft invoice for a visit: the patient and visit filled in,
    /// and one line for each entry of the price list on offer that bills a
    /// visit of this length (none if no entry does: the desk adds lines).
    /// Refused, with the invoice named, if the visit already has an invoice
    /// that is not void: a visit is billed once. Returns the draft's id and
    /// the change's receipt.
    pub async fn draft_invoice_for_visit(
        &self,
        appointment: Uuid,
    ) -> ClientResult<(Uuid, crate::types::Receipt)> {
        let Some(Entity { data: appt, .. }) = self
            .entity::<Appointment>(Table::Appointments, appointment)
            .await?
        else {
            return Err(ClientError::Invalid(
                "that visit is not on this computer".into(),
            ));
        };
        let invoices: Vec<Invoice> = typed(self.rows(Table::Invoices).await?);
        if let Some(billed) = invoices
            .iter()
            .find(|i| i.appointment_id == Some(appointment) && i.status != InvoiceStatus::Void)
        {
            return Err(ClientError::Invalid(format!(
                "this visit already has an invoice ({}, {}): open that one, or void it first",
                short_number(billed.id),
                billed.status.as_str()
            )));
        }
        let minutes = (appt.end.unix() - appt.start.unix()) / 60;
        let lines: Vec<InvoiceLine> = self
            .price_list()
            .await?
            .into_iter()
            .filter(|p| !p.data.retired && p.data.visit_minutes.map(i64::from) == Some(minutes))
            .map(|p| InvoiceLine {
                description: p.data.description,
                quantity: 1,
                unit_price_cents: p.data.unit_price_cents,
            })
            .collect();
        let id = self.new_id();
        let receipt = self
            .mutate(Mutation::CreateInvoice(CreateInvoice {
                id,
                patient_id: appt.patient_id,
                appointment_id: Some(appointment),
                lines,
                issued_at: self.now(),
                draft: true,
            }))
            .await?;
        Ok((id, receipt))
    }

    /// The end-of-day report for `date` in the clinic's time zone, of the
    /// whole clinic or of one staff member's takings (`staff`).
    pub async fn day_report(
        &self,
        date: NaiveDate,
        staff: Option<Uuid>,
    ) -> ClientResult<DayReport> {
        let zone = self.clinic_zone().await?;
        let (from, until) = zone
            .day_bounds(date)
            .map_err(|_| ClientError::Invalid(format!("{date} is not a usable day")))?;
        let mut unreadable = 0;
        let invoices: Vec<Invoice> =
            typed_counted(self.rows(Table::Invoices).await?, &mut unreadable);
        let patients: HashMap<Uuid, Patient> = typed::<Patient>(self.rows(Table::Patients).await?)
            .into_iter()
            .map(|p| (p.id, p))
            .collect();
        let staff_names: HashMap<Uuid, String> = typed::<Staff>(self.rows(Table::Staff).await?)
            .into_iter()
            .map(|s| (s.id, s.display_name))
            .collect();
        let patient_of: HashMap<Uuid, Uuid> =
            invoices.iter().map(|i| (i.id, i.patient_id)).collect();
        let mut payments: Vec<Payment> =
            typed_counted::<Payment>(self.rows(Table::Payments).await?, &mut unreadable)
                .into_iter()
                .filter(|p| p.paid_at >= from && p.paid_at < until)
                .filter(|p| staff.is_none_or(|s| p.received_by == s))
                .collect();
        payments.sort_by_key(|p| (p.paid_at, p.id));

        let mut by_method: Vec<MethodTotal> = METHODS
            .iter()
            .map(|m| MethodTotal {
                method: Some(*m),
                ..MethodTotal::default()
            })
            .collect();
        let mut total = MethodTotal::default();
        let mut by_staff: HashMap<Uuid, StaffTotal> = HashMap::new();
        for p in &payments {
            if let Some(t) = by_method.iter_mut().find(|t| t.method == Some(p.method)) {
                add(t, p);
            }
            add(&mut total, p);
            let s = by_staff.entry(p.received_by).or_insert_with(|| StaffTotal {
                user_id: p.received_by,
                name: staff_names
                    .get(&p.received_by)
                    .cloned()
                    .unwrap_or_else(|| "(staff member not on this computer)".into()),
                taken_cents: 0,
                refunded_cents: 0,
                count: 0,
            });
            if p.refund {
                s.refunded_cents += p.amount_cents;
            } else {
                s.taken_cents += p.amount_cents;
            }
            s.count += 1;
        }
        let mut by_staff: Vec<StaffTotal> = by_staff.into_values().collect();
        by_staff.sort_by(|a, b| (&a.name, a.user_id).cmp(&(&b.name, b.user_id)));

        let issued: Vec<&Invoice> = invoices
            .iter()
            .filter(|i| i.issued_at >= from && i.issued_at < until)
            .filter(|i| matches!(i.status, InvoiceStatus::Open | InvoiceStatus::Paid))
            .collect();
        let mut open: Vec<&Invoice> = invoices
            .iter()
            .filter(|i| i.outstanding_cents() > 0)
            .collect();
        open.sort_by_key(|i| (i.issued_at, i.id));
        let mut due: Vec<&Invoice> = invoices
            .iter()
            .filter(|i| i.refund_due_cents() > 0)
            .collect();
        due.sort_by_key(|i| (i.issued_at, i.id));
        let listed = |i: &&Invoice, cents: i64| OpenInvoice {
            id: i.id,
            patient: name_of(&patients, i.patient_id),
            issued_at: i.issued_at,
            cents,
        };
        Ok(DayReport {
            date,
            staff,
            by_method,
            by_staff,
            total,
            payments: payments
                .iter()
                .map(|p| ReportPayment {
                    id: p.id,
                    invoice_id: p.invoice_id,
                    patient: patient_of
                        .get(&p.invoice_id)
                        .map(|id| name_of(&patients, *id))
                        .unwrap_or_else(|| "(invoice not on this computer yet)".into()),
                    at: p.paid_at,
                    method: p.method,
                    amount_cents: p.amount_cents,
                    refund: p.refund,
                    by: staff_names
                        .get(&p.received_by)
                        .cloned()
                        .unwrap_or_else(|| "(staff member not on this computer)".into()),
                })
                .collect(),
            issued_count: u32::try_from(issued.len()).unwrap_or(u32::MAX),
            issued_cents: issued.iter().map(|i| i.total_cents).sum(),
            open_cents: open.iter().map(|i| i.outstanding_cents()).sum(),
            open_invoices: open
                .iter()
                .map(|i| listed(i, i.outstanding_cents()))
                .collect(),
            refunds_due: due
                .iter()
                .map(|i| listed(i, i.refund_due_cents()))
                .collect(),
            drafts: u32::try_from(
                invoices
                    .iter()
                    .filter(|i| i.status == InvoiceStatus::Draft)
                    .count(),
            )
            .unwrap_or(u32::MAX),
            unreadable,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::types::Row;

    fn row(data: serde_json::Value) -> Row {
        Row {
            table: Table::Payments,
            id: Uuid::now_v7(),
            version: 1,
            pending: false,
            data,
        }
    }

    #[test]
    fn rows_that_do_not_decode_are_counted_not_dropped_in_silence() {
        let good = serde_json::json!({
            "id": Uuid::now_v7(),
            "invoice_id": Uuid::now_v7(),
            "amount_cents": 4000,
            "method": "cash",
            "paid_at": "2031-02-10T09:40:00Z",
            "received_by": Uuid::now_v7(),
        });
        // A method this version does not know (a newer server's), and a
        // row missing its amount.
        let mut newer = good.clone();
        newer["method"] = "voucher".into();
        let mut broken = good.clone();
        broken.as_object_mut().unwrap().remove("amount_cents");
        let mut skipped = 0;
        let payments: Vec<Payment> =
            typed_counted(vec![row(good), row(newer), row(broken)], &mut skipped);
        assert_eq!(payments.len(), 1);
        assert_eq!(payments[0].amount_cents, 4000);
        assert_eq!(skipped, 2);
    }
}
