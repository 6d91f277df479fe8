//! The field-level read matrix: which fields of a table's rows each role
//! receives, decided field by field, and the one function that withholds the
//! rest ([`redact`]).
//!
//! [`crate::permissions`] says which *tables* a role receives; this module
//! narrows that down to *fields*. A role receives a field only if it reads
//! the table and the field's rule lets it. The server calls [`redact`] on
//! every path that delivers row content (pull, WebSocket catch-up and live
//! changes, `/v1/history` before/after values, conflict details of push
//! results); the desk calls it on its own mirror when the signed-in user's
//! role changes, and on the rows it plans optimistically, so that both sides
//! hold the same fields.
//!
//! A withheld field is **absent** from the row's JSON (not `null`, not an
//! empty string): what is not sent cannot leak. Entity fields that may be
//! withheld decode as empty (`#[serde(default)]` on the model).
//!
//! Writes follow reads: a role may not write a field it may not read
//! ([`unreadable_written_field`], checked by the planner in
//! [`crate::apply::plan`]), so a refusal names the field.
//!
//! Decided by default: a field that is not in the matrix is withheld from
//! everyone, and a unit test fails for every model field without a decision.
//! The matrix as a Markdown table ([`markdown_matrix`]) is in
//! docs/PROTOCOL.md; a test keeps the two in step.

use crate::model::{Role, SyncRow, Table};
use crate::permissions;
use crate::protocol::{HistoryEntry, Rejection};
use serde_json::Value;

/// Who, among the roles that read a table, receives one of its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readers {
    /// Every role that reads the table.
    TableReaders,
    /// Only these roles (and only if they read the table at all). Clinical
    /// fields name their readers explicitly, so that opening a table to a
    /// new role does not open its clinical text with it.
    Only(&'static [Role]),
}

/// The decision for one field of one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldRule {
    /// The field's name in the entity's JSON.
    pub field: &'static str,
    /// Who receives it.
    pub readers: Readers,
    /// Why, for free text and for every restriction (shown in the docs).
    pub why: &'static str,
}

const fn all(field: &'static str) -> FieldRule {
    FieldRule {
        field,
        readers: Readers::TableReaders,
        why: "",
    }
}

const fn all_because(field: &'static str, why: &'static str) -> FieldRule {
    FieldRule {
        field,
        readers: Readers::TableReaders,
        why,
    }
}

const fn only(field: &'static str, roles: &'static [Role], why: &'static str) -> FieldRule {
    FieldRule {
        field,
        readers: Readers::Only(roles),
        why,
    }
}

const CLINICIANS: &[Role] = &[Role::Admin, Role::Doctor];

const STAFF: &[FieldRule] = &[
    all("id"),
    all("username"),
    all("display_name"),
    all("role"),
    all("active"),
];

const PATIENTS: &[FieldRule] = &[
    all("id"),
    all("first_name"),
    all("last_name"),
    all("date_of_birth"),
    all("phone"),
    all("email"),
    all_because(
        "address",
        "postal address, free text but demographic, not clinical: the desk bills and writes to it",
    ),
    all("sex"),
    all_because(
        "emergency_contact",
        "whom to call, free text: whoever is with the patient when it matters must find it",
    ),
    all("emergency_phone"),
    all_because(
        "insurer",
        "billing details: reception bills and checks cover at check-in",
    ),
    all("insurance_number"),
    all_because(
        "alerts",
        "allergies and alerts (latex, penicillin, needs a wheelchair), free text shown as a \
         banner: reception books and assistants prepare with them, so every role that reads \
         patients receives them. Findings belong in treatment records, never here",
    ),
    all("archived_at"),
];

const APPOINTMENTS: &[FieldRule] = &[
    all("id"),
    all("patient_id"),
    all("doctor_id"),
    all("start"),
    all("end"),
    all("status"),
    all_because(
        "checked_in_at",
        "when the patient arrived: the waiting room that reception, assistants and doctors work from",
    ),
    all_because(
        "reason",
        "the visit type the desk types when it books (\"check-up\", \"filling\") and assistants \
         prepare for; reception writes it, so it reads it. Clinical findings belong in treatment \
         records, never here",
    ),
];

const TREATMENT_RECORDS: &[FieldRule] = &[
    all("id"),
    all("patient_id"),
    all("doctor_id"),
    all("appointment_id"),
    only("notes", CLINICIANS, "clinical notes"),
    only("diagnosis", CLINICIANS, "clinical"),
    only("procedures", CLINICIANS, "clinical"),
    all("recorded_at"),
];

const INVOICES: &[FieldRule] = &[
    all("id"),
    all("patient_id"),
    all("appointment_id"),
    all_because(
        "lines",
        "line descriptions are billing text the desk writes and the patient receives on the \
         invoice; only admins and reception read invoices",
    ),
    all("total_cents"),
    all("paid_cents"),
    all("status"),
    all("issued_at"),
    all("void_reason"),
    all("voided_at"),
    all("refunded_cents"),
];

const PAYMENTS: &[FieldRule] = &[
    all("id"),
    all("invoice_id"),
    all("amount_cents"),
    all("method"),
    all("paid_at"),
    all("received_by"),
    all("refund"),
    all_because(
        "reason",
        "why money was paid back: billing text the desk writes, read by those who bill",
    ),
];

const PRICE_ITEMS: &[FieldRule] = &[
    all("id"),
    all("code"),
    all("description"),
    all("unit_price_cents"),
    all("visit_minutes"),
    all("retired"),
];

const INVENTORY_ITEMS: &[FieldRule] = &[
    all("id"),
    all("name"),
    all("unit"),
    all("quantity"),
    all("reorder_level"),
];

const REFERRALS: &[FieldRule] = &[
    all("id"),
    all("patient_id"),
    all("referring_doctor_id"),
    all_because(
        "referred_to",
        "where the referral goes: reception sends it and follows it up (sent, accepted)",
    ),
    only(
        "reason",
        CLINICIANS,
        "the clinical reason: withheld from reception, which needs where and how soon, not why",
    ),
    all("urgency"),
    all("status"),
    all("created_at"),
];

/// The decisions for every field of `table`, in the entity's field order.
pub fn rules(table: Table) -> &'static [FieldRule] {
    match table {
        Table::Staff => STAFF,
        Table::Patients => PATIENTS,
        Table::Appointments => APPOINTMENTS,
        Table::TreatmentRecords => TREATMENT_RECORDS,
        Table::Invoices => INVOICES,
        Table::Payments => PAYMENTS,
        Table::InventoryItems => INVENTORY_ITEMS,
        Table::Referrals => REFERRALS,
        Table::PriceItems => PRICE_ITEMS,
    }
}

/// Whether `role` receives `field` of `table`'s rows. A field the matrix
/// does not list: no one.
pub fn can_read_field(role: Role, table: Table, field: &str) -> bool {
    if !permissions::can_read(role, table) {
        return false;
    }
    rules(table)
        .iter()
        .find(|r| r.field == field)
        .is_some_and(|r| match r.readers {
            Readers::TableReaders => true,
            Readers::Only(roles) => roles.contains(&role),
        })
}

/// The fields of `table` that `role` reads the table but does not receive.
pub fn withheld_fields(role: Role, table: Table) -> Vec<&'static str> {
    if !permissions::can_read(role, table) {
        return Vec::new();
    }
    rules(table)
        .iter()
        .filter(|r| !can_read_field(role, table, r.field))
        .map(|r| r.field)
        .collect()
}

/// Removes from an entity's JSON object every field `role` may not receive.
/// Returns whether anything was removed. Not an object (a tombstone's
/// `null`): left alone.
pub fn redact(role: Role, table: Table, data: &mut Value) -> bool {
    let Value::Object(map) = data else {
        return false;
    };
    let before = map.len();
    map.retain(|field, _| can_read_field(role, table, field));
    map.len() != before
}

/// [`redact`] on an optional entity (history before/after, row data).
pub fn redact_opt(role: Role, table: Table, data: Option<&mut Value>) -> bool {
    data.is_some_and(|d| redact(role, table, d))
}

/// [`redact`] on every row as it travels (pull pages, WebSocket changes).
pub fn redact_rows(role: Role, rows: &mut [SyncRow]) {
    for row in rows {
        if let Some(data) = row.data.as_mut() {
            redact(role, row.table, data);
        }
    }
}

/// [`redact`] on the before/after values of a record's history.
pub fn redact_history(role: Role, table: Table, entries: &mut [HistoryEntry]) {
    for e in entries {
        redact_opt(role, table, e.before.as_mut());
        redact_opt(role, table, e.after.as_mut());
    }
}

/// Withholds, from a refusal of a mutation on `table`, the values of
/// conflicting fields `role` may not read (the field's name stays, its
/// values become `null`). The planner already refuses writes of such
/// fields, so this is the last line, not the rule.
pub fn redact_rejection(role: Role, table: Table, rejection: &mut Rejection) {
    for c in &mut rejection.conflicts {
        if !can_read_field(role, table, &c.field) {
            c.yours = Value::Null;
            c.theirs = Value::Null;
            c.base = None;
        }
    }
}

/// A value that says nothing: what a withheld field decodes to.
fn is_blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// The first field of a row write (entity `after`, row `before`) that
/// `role` may not read and that the write sets or changes: a role may not
/// write what it may not read. A field left as it was is no write; nor is a
/// blank value where the row had none (a desk that holds the row without
/// the field plans it back as blank).
pub fn unreadable_written_field(
    role: Role,
    table: Table,
    before: Option<&Value>,
    after: &Value,
) -> Option<&'static str> {
    let Value::Object(after) = after else {
        return None;
    };
    let before = before.and_then(Value::as_object);
    for (field, value) in after {
        if can_read_field(role, table, field) {
            continue;
        }
        let old = before.and_then(|b| b.get(field)).unwrap_or(&Value::Null);
        let unchanged = old == value || (is_blank(old) && is_blank(value));
        if !unchanged {
            // The matrix's own (static) name; a field outside the matrix,
            // which no planner writes, is reported generically.
            return Some(
                rules(table)
                    .iter()
                    .find(|r| r.field == field)
                    .map_or("(unknown field)", |r| r.field),
            );
        }
    }
    None
}

fn mark(role: Role, table: Table, rule: &FieldRule) -> &'static str {
    if !permissions::can_read(role, table) {
        "–"
    } else if can_read_field(role, table, rule.field) {
        "r"
    } else {
        "**withheld**"
    }
}

/// The matrix as a Markdown table (docs/PROTOCOL.md holds this text; a test
/// fails when they differ): one line per table and field, a column per
/// role (`r` = receives, `withheld` = reads the table but not this field,
/// `–` = does not read the table), and why for the fields that need saying.
pub fn markdown_matrix() -> String {
    use std::fmt::Write;
    let mut out = String::from("| table | field |");
    for role in Role::ALL {
        let _ = write!(out, " {role} |");
    }
    out.push_str(" why |\n|---|---|");
    for _ in Role::ALL {
        out.push_str("---|");
    }
    out.push_str("---|\n");
    for table in Table::ALL {
        for rule in rules(table) {
            let _ = write!(out, "| {table} | `{}` |", rule.field);
            for role in Role::ALL {
                let _ = write!(out, " {} |", mark(role, table, rule));
            }
            let _ = writeln!(out, " {} |", rule.why);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;
    use serde_json::json;
    use std::collections::BTreeSet;
    use uuid::Uuid;

    fn ts() -> Timestamp {
        Timestamp::from_unix(1_700_000_000).unwrap()
    }

    /// One entity of every table with every optional field set, as JSON.
    /// Adding a field to a model struct breaks this literal (a compile
    /// error) and, once added here, fails [`every_model_field_is_decided`]
    /// until the matrix decides it.
    fn samples() -> Vec<(Table, Value)> {
        let id = Uuid::nil();
        let date = chrono::NaiveDate::from_ymd_opt(1980, 1, 2).unwrap();
        let v = |x: serde_json::Result<Value>| x.unwrap();
        vec![
            (
                Table::Staff,
                v(serde_json::to_value(Staff {
                    id,
                    username: "u".into(),
                    display_name: "U".into(),
                    role: Role::Doctor,
                    active: true,
                })),
            ),
            (
                Table::Patients,
                v(serde_json::to_value(Patient {
                    id,
                    first_name: "A".into(),
                    last_name: "B".into(),
                    date_of_birth: date,
                    phone: Some("1".into()),
                    email: Some("a@b.c".into()),
                    address: Some("x".into()),
                    sex: Some(crate::model::Sex::Diverse),
                    emergency_contact: Some("x".into()),
                    emergency_phone: Some("1".into()),
                    insurer: Some("x".into()),
                    insurance_number: Some("1".into()),
                    alerts: Some("x".into()),
                    archived_at: Some(ts()),
                })),
            ),
            (
                Table::Appointments,
                v(serde_json::to_value(Appointment {
                    id,
                    patient_id: id,
                    doctor_id: id,
                    start: ts(),
                    end: ts(),
                    status: AppointmentStatus::CheckedIn,
                    reason: Some("check-up".into()),
                    // Every optional field set, so that each one is seen.
                    checked_in_at: Some(ts()),
                })),
            ),
            (
                Table::TreatmentRecords,
                v(serde_json::to_value(TreatmentRecord {
                    id,
                    patient_id: id,
                    doctor_id: id,
                    appointment_id: Some(id),
                    notes: "n".into(),
                    diagnosis: "d".into(),
                    procedures: vec!["p".into()],
                    recorded_at: ts(),
                })),
            ),
            (
                Table::Invoices,
                v(serde_json::to_value(Invoice {
                    id,
                    patient_id: id,
                    appointment_id: Some(id),
                    lines: vec![InvoiceLine {
                        description: "x".into(),
                        quantity: 1,
                        unit_price_cents: 1,
                    }],
                    total_cents: 1,
                    paid_cents: 0,
                    status: InvoiceStatus::Open,
                    issued_at: ts(),
                    void_reason: Some("wrong patient".into()),
                    voided_at: Some(ts()),
                    refunded_cents: 1,
                })),
            ),
            (
                Table::Payments,
                v(serde_json::to_value(Payment {
                    id,
                    invoice_id: id,
                    amount_cents: 1,
                    method: PaymentMethod::Cash,
                    paid_at: ts(),
                    received_by: id,
                    refund: true,
                    reason: Some("billed twice".into()),
                })),
            ),
            (
                Table::InventoryItems,
                v(serde_json::to_value(InventoryItem {
                    id,
                    name: "n".into(),
                    unit: "u".into(),
                    quantity: 1,
                    reorder_level: 0,
                })),
            ),
            (
                Table::Referrals,
                v(serde_json::to_value(Referral {
                    id,
                    patient_id: id,
                    referring_doctor_id: id,
                    referred_to: "cardiology".into(),
                    reason: "chest pain".into(),
                    urgency: Urgency::Urgent,
                    status: ReferralStatus::Draft,
                    created_at: ts(),
                })),
            ),
            (
                Table::PriceItems,
                v(serde_json::to_value(PriceItem {
                    id,
                    code: "C30".into(),
                    description: "Consultation".into(),
                    unit_price_cents: 6500,
                    visit_minutes: Some(30),
                    retired: true,
                })),
            ),
        ]
    }

    #[test]
    fn every_model_field_is_decided_and_every_decision_is_a_field() {
        let samples = samples();
        assert_eq!(
            samples.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            Table::ALL.to_vec(),
            "a sample of every table"
        );
        for (table, value) in samples {
            let fields: BTreeSet<&str> = value
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let decided: BTreeSet<&str> = rules(table).iter().map(|r| r.field).collect();
            assert_eq!(
                rules(table).len(),
                decided.len(),
                "{table}: a field decided twice"
            );
            assert_eq!(
                fields, decided,
                "{table}: every field of the entity needs a decision in field_access, and only those"
            );
            // Every role × field has an answer, and admins get everything.
            for role in Role::ALL {
                for f in &fields {
                    let r = can_read_field(role, table, f);
                    assert!(
                        !r || permissions::can_read(role, table),
                        "{role} {table}.{f}"
                    );
                }
                assert_eq!(
                    withheld_fields(Role::Admin, table),
                    Vec::<&str>::new(),
                    "admin {table}"
                );
            }
        }
    }

    #[test]
    fn restricted_and_free_text_fields_say_why() {
        for table in Table::ALL {
            for rule in rules(table) {
                if matches!(rule.readers, Readers::Only(_)) {
                    assert!(!rule.why.is_empty(), "{table}.{}", rule.field);
                }
            }
        }
        for (table, field) in [
            (Table::Patients, "address"),
            (Table::Appointments, "reason"),
            (Table::Invoices, "lines"),
            (Table::Referrals, "referred_to"),
        ] {
            let rule = rules(table).iter().find(|r| r.field == field).unwrap();
            assert!(!rule.why.is_empty(), "{table}.{field} kept: say why");
        }
    }

    #[test]
    fn no_role_but_clinicians_receives_clinical_content() {
        for table in Table::ALL {
            for field in table.clinical_fields() {
                for role in Role::ALL {
                    assert_eq!(
                        can_read_field(role, table, field),
                        matches!(role, Role::Admin | Role::Doctor),
                        "{role} {table}.{field}"
                    );
                }
                // Even a future table-level grant would not open it.
                let rule = rules(table).iter().find(|r| r.field == *field).unwrap();
                assert_eq!(rule.readers, Readers::Only(CLINICIANS), "{table}.{field}");
            }
        }
        assert_eq!(
            withheld_fields(Role::Reception, Table::Referrals),
            ["reason"]
        );
        // Reception does not read treatment records at all (table level).
        assert!(withheld_fields(Role::Reception, Table::TreatmentRecords).is_empty());
        assert!(!can_read_field(
            Role::Reception,
            Table::TreatmentRecords,
            "notes"
        ));
    }

    fn referral_sample() -> Value {
        samples()
            .into_iter()
            .find(|(t, _)| *t == Table::Referrals)
            .unwrap()
            .1
    }

    #[test]
    fn redact_removes_withheld_and_unknown_fields_only() {
        let mut referral = referral_sample();
        let full = referral.clone();
        assert!(!redact(Role::Doctor, Table::Referrals, &mut referral));
        assert_eq!(referral, full);
        assert!(redact(Role::Reception, Table::Referrals, &mut referral));
        assert!(referral.get("reason").is_none());
        assert_eq!(referral["referred_to"], "cardiology");
        assert_eq!(
            referral.as_object().unwrap().len(),
            full.as_object().unwrap().len() - 1
        );
        // A redacted referral still decodes (the reason reads as empty).
        let decoded: Referral = serde_json::from_value(referral.clone()).unwrap();
        assert_eq!(decoded.reason, "");
        // Idempotent.
        assert!(!redact(Role::Reception, Table::Referrals, &mut referral));
        // Unknown fields go for everyone; tombstones are left alone.
        let mut odd = json!({"id": Uuid::nil(), "secret": 1});
        assert!(redact(Role::Admin, Table::Staff, &mut odd));
        assert_eq!(odd, json!({"id": Uuid::nil()}));
        let mut tomb = Value::Null;
        assert!(!redact(Role::Reception, Table::Referrals, &mut tomb));
    }

    #[test]
    fn a_role_may_not_write_what_it_may_not_read() {
        let full = referral_sample();
        let mut redacted = full.clone();
        redact(Role::Reception, Table::Referrals, &mut redacted);
        // A status change planned on the server's full row: reason unchanged.
        let mut sent = full.clone();
        sent["status"] = json!("sent");
        assert_eq!(
            unreadable_written_field(Role::Reception, Table::Referrals, Some(&full), &sent),
            None
        );
        // Planned on the desk's redacted row: the reason decodes blank.
        let mut planned: Referral = serde_json::from_value(redacted.clone()).unwrap();
        planned.status = ReferralStatus::Sent;
        let planned = serde_json::to_value(planned).unwrap();
        assert_eq!(
            unreadable_written_field(Role::Reception, Table::Referrals, Some(&redacted), &planned),
            None
        );
        // Creating one with a reason, or changing the reason: refused, named.
        assert_eq!(
            unreadable_written_field(Role::Reception, Table::Referrals, None, &full),
            Some("reason")
        );
        let mut changed = full.clone();
        changed["reason"] = json!("other");
        assert_eq!(
            unreadable_written_field(Role::Reception, Table::Referrals, Some(&full), &changed),
            Some("reason")
        );
        // Blanking it is a write too.
        let mut blanked = full.clone();
        blanked["reason"] = json!("");
        assert_eq!(
            unreadable_written_field(Role::Reception, Table::Referrals, Some(&full), &blanked),
            Some("reason")
        );
        assert_eq!(
            unreadable_written_field(Role::Doctor, Table::Referrals, None, &full),
            None
        );
    }

    #[test]
    fn the_protocol_doc_holds_the_matrix() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md"))
                .unwrap();
        let table = markdown_matrix();
        assert!(
            doc.contains(&table),
            "docs/PROTOCOL.md must contain the field matrix exactly as \
             clinic_shared::field_access::markdown_matrix() prints it:\n{table}"
        );
    }
}
