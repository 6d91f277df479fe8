//! Planning a mutation: from an intent and the rows it touches to the row
//! writes it produces, enforcing permissions, validation and the clinic rules.
//!
//! This is pure logic over a [`RowSource`]. The server plans against its
//! database inside the write transaction (the authoritative answer); the
//! client plans against its local mirror to show the outcome at once (the
//! optimistic answer). One implementation means the two agree except where
//! the mirror is stale, and then the server's answer wins.
//!
//! Not here, because only the server holds the change log: the evidence for
//! conflict detection against changes made since a base version (see
//! [`RowWrite::conflict_check`]; the rule itself is [`crate::conflict`]), and
//! credential handling for new staff.

use crate::model::{
    Appointment, AppointmentStatus, InventoryItem, Invoice, InvoiceStatus, Patient, Payment,
    Referral, ReferralStatus, Role, Staff, Table, Timestamp, TreatmentRecord,
};
use crate::mutation::Mutation;
use crate::permissions;
use crate::protocol::{Actor, RejectCode, Rejection};
use crate::validate::{self, FieldError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use uuid::Uuid;

/// A row as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentRow {
    /// Version of its last change.
    pub version: u64,
    /// Tombstone.
    pub deleted: bool,
    /// The entity (kept for tombstones too where the store has it).
    pub data: Value,
}

/// Read access the planner needs. Implemented by the server's write
/// transaction and by the client's local store.
pub trait RowSource {
    /// Storage error.
    type Error;
    /// The row, tombstones included.
    fn row(&mut self, table: Table, id: Uuid) -> Result<Option<CurrentRow>, Self::Error>;
    /// The doctor's live (not deleted) appointments whose start is in
    /// `[from, until)`, whatever their status. The planner decides which of
    /// them clash ([`clashing_appointments`]); the source only does the range
    /// scan, which an index on (doctor, start) makes cheap.
    fn appointments_starting_between(
        &mut self,
        doctor_id: Uuid,
        from: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<SlotCandidate>, Self::Error>;
    /// The id of the staff row with this username, if any.
    fn staff_id_by_username(&mut self, username: &str) -> Result<Option<Uuid>, Self::Error>;
}

/// An appointment the source found in a time range: its id and entity.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotCandidate {
    /// Row id.
    pub id: Uuid,
    /// The appointment entity (JSON).
    pub data: Value,
}

/// The double-booking rule, written once for server and client: the ids of
/// the doctor's appointments, other than `appt` itself, that occupy their
/// slot (not cancelled, not a no-show) and overlap `[appt.start, appt.end)`.
/// Appointments last at most [`validate::MAX_APPOINTMENT_SECS`], so only
/// those starting in `[start − that, end)` can overlap.
pub fn clashing_appointments<S: RowSource>(
    src: &mut S,
    appt: &Appointment,
) -> Result<Vec<Uuid>, PlanError<S::Error>> {
    let from = Timestamp::from_unix(appt.start.unix() - validate::MAX_APPOINTMENT_SECS)
        .unwrap_or(appt.start);
    let candidates = src
        .appointments_starting_between(appt.doctor_id, from, appt.end)
        .map_err(PlanError::Source)?;
    let mut clashes = Vec::new();
    for c in candidates {
        if c.id == appt.id {
            continue;
        }
        let other: Appointment = decode(Table::Appointments, &c.data)?;
        if other.status.occupies_slot() && other.start < appt.end && other.end > appt.start {
            clashes.push(c.id);
        }
    }
    Ok(clashes)
}

/// What a row write does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A new row.
    Create,
    /// A changed row.
    Update,
    /// A tombstone.
    Delete,
}

impl Action {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// Fields an update wants to set and the version the user based them on:
/// the server rejects the update if someone else changed one of these
/// fields after `base_version`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictCheck {
    /// Version the edit was based on.
    pub base_version: u64,
    /// Field → value this update writes.
    pub fields: Map<String, Value>,
    /// The write replaces the whole row (a delete): any change by someone
    /// else since the base version is a conflict.
    pub whole_row: bool,
}

/// One row a mutation writes.
#[derive(Debug, Clone, PartialEq)]
pub struct RowWrite {
    /// Table.
    pub table: Table,
    /// Row id.
    pub id: Uuid,
    /// Create, update or delete.
    pub action: Action,
    /// The row before, if it existed.
    pub before: Option<Value>,
    /// The whole entity after the write (kept on tombstones for the audit).
    pub after: Value,
    /// For field updates based on a version.
    pub conflict_check: Option<ConflictCheck>,
}

/// Why planning stopped: the mutation is refused, or the source failed.
#[derive(Debug)]
pub enum PlanError<E> {
    /// Refused for good.
    Rejected(Rejection),
    /// Reading rows failed; the mutation was not judged.
    Source(E),
}

impl<E> From<Rejection> for PlanError<E> {
    fn from(r: Rejection) -> Self {
        PlanError::Rejected(r)
    }
}

type Plan<E> = Result<Vec<RowWrite>, PlanError<E>>;

fn reject<T, E>(code: RejectCode, message: impl Into<String>) -> Result<T, PlanError<E>> {
    Err(PlanError::Rejected(Rejection::new(code, message)))
}

fn to_value<T: Serialize>(entity: &T) -> Value {
    // Serializing these plain structs cannot fail (no maps with non-string
    // keys, no custom serializers that error).
    serde_json::to_value(entity).unwrap_or(Value::Null)
}

fn decode<T: DeserializeOwned>(table: Table, value: &Value) -> Result<T, Rejection> {
    serde_json::from_value(value.clone()).map_err(|e| {
        Rejection::new(
            RejectCode::RuleViolation,
            format!("stored {table} row is unreadable: {e}"),
        )
    })
}

fn validated<T>(check: fn(&T) -> Result<(), Vec<FieldError>>, entity: &T) -> Result<(), Rejection> {
    check(entity).map_err(Rejection::validation)
}

/// Loads a live (not deleted) row or rejects with `not_found`.
fn live<S: RowSource>(
    src: &mut S,
    table: Table,
    id: Uuid,
) -> Result<CurrentRow, PlanError<S::Error>> {
    match src.row(table, id).map_err(PlanError::Source)? {
        Some(row) if !row.deleted => Ok(row),
        _ => reject(RejectCode::NotFound, format!("{table} {id} does not exist")),
    }
}

fn ensure_absent<S: RowSource>(
    src: &mut S,
    table: Table,
    id: Uuid,
) -> Result<(), PlanError<S::Error>> {
    match src.row(table, id).map_err(PlanError::Source)? {
        None => Ok(()),
        Some(_) => reject(
            RejectCode::AlreadyExists,
            format!("{table} {id} already exists"),
        ),
    }
}

fn ensure_patient<S: RowSource>(src: &mut S, id: Uuid) -> Result<(), PlanError<S::Error>> {
    match src.row(Table::Patients, id).map_err(PlanError::Source)? {
        Some(row) if !row.deleted => Ok(()),
        Some(_) => reject(
            RejectCode::PatientUnavailable,
            format!("patient {id} has been deleted"),
        ),
        None => reject(
            RejectCode::PatientUnavailable,
            format!("patient {id} is unknown"),
        ),
    }
}

fn ensure_doctor<S: RowSource>(src: &mut S, id: Uuid) -> Result<(), PlanError<S::Error>> {
    let row = match src.row(Table::Staff, id).map_err(PlanError::Source)? {
        Some(row) if !row.deleted => row,
        _ => {
            return reject(
                RejectCode::InvalidReference,
                format!("doctor {id} is unknown"),
            );
        }
    };
    let staff: Staff = decode(Table::Staff, &row.data)?;
    if staff.role != Role::Doctor {
        return reject(
            RejectCode::InvalidReference,
            format!("staff {id} is not a doctor"),
        );
    }
    if !staff.active {
        return reject(
            RejectCode::InvalidReference,
            format!("doctor {id} is disabled"),
        );
    }
    Ok(())
}

/// Checks that an optional appointment exists and belongs to the patient.
fn ensure_visit<S: RowSource>(
    src: &mut S,
    appointment_id: Option<Uuid>,
    patient_id: Uuid,
) -> Result<(), PlanError<S::Error>> {
    let Some(id) = appointment_id else {
        return Ok(());
    };
    let row = match src
        .row(Table::Appointments, id)
        .map_err(PlanError::Source)?
    {
        Some(row) if !row.deleted => row,
        _ => {
            return reject(
                RejectCode::InvalidReference,
                format!("appointment {id} is unknown"),
            );
        }
    };
    let appt: Appointment = decode(Table::Appointments, &row.data)?;
    if appt.patient_id != patient_id {
        return reject(
            RejectCode::InvalidReference,
            format!("appointment {id} belongs to another patient"),
        );
    }
    Ok(())
}

fn ensure_free_slot<S: RowSource>(
    src: &mut S,
    appt: &Appointment,
) -> Result<(), PlanError<S::Error>> {
    let clashes = clashing_appointments(src, appt)?;
    if let Some(other) = clashes.first() {
        return reject(
            RejectCode::DoubleBooked,
            format!(
                "the doctor already has appointment {other} between {} and {}",
                appt.start, appt.end
            ),
        );
    }
    Ok(())
}

/// Applies a patch (a JSON object of changed fields) to a row's entity,
/// decoding and validating the result as `T`.
fn patched<T: DeserializeOwned + Serialize>(
    table: Table,
    current: &CurrentRow,
    fields: Map<String, Value>,
    check: fn(&T) -> Result<(), Vec<FieldError>>,
) -> Result<RowWrite, Rejection> {
    let mut after = current.data.clone();
    if let Value::Object(obj) = &mut after {
        for (k, v) in &fields {
            obj.insert(k.clone(), v.clone());
        }
    }
    let entity: T = decode(table, &after)?;
    validated(check, &entity)?;
    Ok(RowWrite {
        table,
        id: Uuid::nil(), // set by the caller
        action: Action::Update,
        before: Some(current.data.clone()),
        after: to_value(&entity),
        conflict_check: None,
    })
}

fn fields_of<T: Serialize>(patch: &T) -> Map<String, Value> {
    match to_value(patch) {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn create<T: Serialize>(table: Table, id: Uuid, entity: &T) -> RowWrite {
    RowWrite {
        table,
        id,
        action: Action::Create,
        before: None,
        after: to_value(entity),
        conflict_check: None,
    }
}

fn update<T: Serialize>(table: Table, id: Uuid, before: &CurrentRow, entity: &T) -> RowWrite {
    RowWrite {
        table,
        id,
        action: Action::Update,
        before: Some(before.data.clone()),
        after: to_value(entity),
        conflict_check: None,
    }
}

/// Plans `mutation` by `actor` against the rows in `src`: the row writes it
/// produces, or why it is refused.
pub fn plan<S: RowSource>(mutation: &Mutation, actor: &Actor, src: &mut S) -> Plan<S::Error> {
    if !permissions::can_mutate(actor.role, mutation) {
        return reject(
            RejectCode::Forbidden,
            format!(
                "role {} may not {}",
                actor.role,
                mutation.kind().replace('_', " ")
            ),
        );
    }
    mutation.validate().map_err(Rejection::validation)?;

    match mutation {
        Mutation::CreateStaff(a) => {
            ensure_absent(src, Table::Staff, a.id)?;
            if src
                .staff_id_by_username(&a.username)
                .map_err(PlanError::Source)?
                .is_some()
            {
                return Err(Rejection {
                    code: RejectCode::AlreadyExists,
                    message: format!("username {} is taken", a.username),
                    fields: vec![FieldError {
                        field: "username".into(),
                        message: "is taken".into(),
                    }],
                    conflicts: vec![],
                }
                .into());
            }
            let staff = Staff {
                id: a.id,
                username: a.username.clone(),
                display_name: a.display_name.trim().to_owned(),
                role: a.role,
                active: true,
            };
            validated(validate::staff, &staff)?;
            Ok(vec![create(Table::Staff, a.id, &staff)])
        }
        Mutation::SetStaffRole(a) => {
            let row = live(src, Table::Staff, a.id)?;
            let mut staff: Staff = decode(Table::Staff, &row.data)?;
            if a.id == actor.user_id && a.role != Role::Admin {
                return reject(
                    RejectCode::RuleViolation,
                    "you cannot remove your own admin role",
                );
            }
            staff.role = a.role;
            Ok(vec![update(Table::Staff, a.id, &row, &staff)])
        }
        Mutation::SetStaffActive(a) => {
            let row = live(src, Table::Staff, a.id)?;
            let mut staff: Staff = decode(Table::Staff, &row.data)?;
            if a.id == actor.user_id && !a.active {
                return reject(
                    RejectCode::RuleViolation,
                    "you cannot disable your own account",
                );
            }
            staff.active = a.active;
            Ok(vec![update(Table::Staff, a.id, &row, &staff)])
        }
        Mutation::CreatePatient(a) => {
            ensure_absent(src, Table::Patients, a.id)?;
            let patient = Patient {
                id: a.id,
                first_name: a.first_name.trim().to_owned(),
                last_name: a.last_name.trim().to_owned(),
                date_of_birth: a.date_of_birth,
                phone: a.phone.clone(),
                email: a.email.clone(),
                address: a.address.clone(),
            };
            validated(validate::patient, &patient)?;
            Ok(vec![create(Table::Patients, a.id, &patient)])
        }
        Mutation::UpdatePatient(a) => {
            let row = live(src, Table::Patients, a.id)?;
            let fields = fields_of(&a.fields);
            let mut write =
                patched::<Patient>(Table::Patients, &row, fields.clone(), validate::patient)?;
            write.id = a.id;
            write.conflict_check = Some(ConflictCheck {
                base_version: a.base_version,
                fields,
                whole_row: false,
            });
            Ok(vec![write])
        }
        Mutation::DeletePatient(a) => {
            let row = live(src, Table::Patients, a.id)?;
            Ok(vec![RowWrite {
                table: Table::Patients,
                id: a.id,
                action: Action::Delete,
                before: Some(row.data.clone()),
                after: row.data,
                conflict_check: Some(ConflictCheck {
                    base_version: a.base_version,
                    fields: Map::new(),
                    whole_row: true,
                }),
            }])
        }
        Mutation::BookAppointment(a) => {
            ensure_absent(src, Table::Appointments, a.id)?;
            ensure_patient(src, a.patient_id)?;
            ensure_doctor(src, a.doctor_id)?;
            let appt = Appointment {
                id: a.id,
                patient_id: a.patient_id,
                doctor_id: a.doctor_id,
                start: a.start,
                end: a.end,
                status: AppointmentStatus::Scheduled,
                reason: a.reason.clone(),
            };
            validated(validate::appointment, &appt)?;
            ensure_free_slot(src, &appt)?;
            Ok(vec![create(Table::Appointments, a.id, &appt)])
        }
        Mutation::RescheduleAppointment(a) => {
            let row = live(src, Table::Appointments, a.id)?;
            let mut appt: Appointment = decode(Table::Appointments, &row.data)?;
            if appt.status != AppointmentStatus::Scheduled {
                return reject(
                    RejectCode::InvalidTransition,
                    format!(
                        "only scheduled appointments can be moved (this one is {})",
                        appt.status.as_str()
                    ),
                );
            }
            ensure_patient(src, appt.patient_id)?;
            if let Some(doctor) = a.doctor_id {
                ensure_doctor(src, doctor)?;
                appt.doctor_id = doctor;
            }
            appt.start = a.start;
            appt.end = a.end;
            validated(validate::appointment, &appt)?;
            ensure_free_slot(src, &appt)?;
            let mut fields = Map::new();
            fields.insert("start".into(), to_value(&a.start));
            fields.insert("end".into(), to_value(&a.end));
            if let Some(doctor) = a.doctor_id {
                fields.insert("doctor_id".into(), to_value(&doctor));
            }
            let mut write = update(Table::Appointments, a.id, &row, &appt);
            write.conflict_check = Some(ConflictCheck {
                base_version: a.base_version,
                fields,
                whole_row: false,
            });
            Ok(vec![write])
        }
        Mutation::SetAppointmentStatus(a) => {
            let row = live(src, Table::Appointments, a.id)?;
            let mut appt: Appointment = decode(Table::Appointments, &row.data)?;
            if !appt.status.can_become(a.status) {
                return reject(
                    RejectCode::InvalidTransition,
                    format!(
                        "an appointment cannot go from {} to {}",
                        appt.status.as_str(),
                        a.status.as_str()
                    ),
                );
            }
            if actor.role == Role::Assistant
                && !matches!(
                    a.status,
                    AppointmentStatus::CheckedIn | AppointmentStatus::InProgress
                )
            {
                return reject(
                    RejectCode::Forbidden,
                    "assistants may only check patients in and start treatments",
                );
            }
            appt.status = a.status;
            Ok(vec![update(Table::Appointments, a.id, &row, &appt)])
        }
        Mutation::AddTreatmentRecord(a) => {
            ensure_absent(src, Table::TreatmentRecords, a.id)?;
            ensure_patient(src, a.patient_id)?;
            ensure_visit(src, a.appointment_id, a.patient_id)?;
            let record = TreatmentRecord {
                id: a.id,
                patient_id: a.patient_id,
                doctor_id: actor.user_id,
                appointment_id: a.appointment_id,
                notes: a.notes.clone(),
                diagnosis: a.diagnosis.trim().to_owned(),
                procedures: a.procedures.clone(),
                recorded_at: a.recorded_at,
            };
            validated(validate::treatment_record, &record)?;
            Ok(vec![create(Table::TreatmentRecords, a.id, &record)])
        }
        Mutation::UpdateTreatmentRecord(a) => {
            let row = live(src, Table::TreatmentRecords, a.id)?;
            let fields = fields_of(&a.fields);
            let mut write = patched::<TreatmentRecord>(
                Table::TreatmentRecords,
                &row,
                fields.clone(),
                validate::treatment_record,
            )?;
            write.id = a.id;
            write.conflict_check = Some(ConflictCheck {
                base_version: a.base_version,
                fields,
                whole_row: false,
            });
            Ok(vec![write])
        }
        Mutation::CreateInvoice(a) => {
            ensure_absent(src, Table::Invoices, a.id)?;
            ensure_patient(src, a.patient_id)?;
            ensure_visit(src, a.appointment_id, a.patient_id)?;
            let Some(total) = Invoice::total_of(&a.lines) else {
                return reject(RejectCode::RuleViolation, "the invoice total is too large");
            };
            let invoice = Invoice {
                id: a.id,
                patient_id: a.patient_id,
                appointment_id: a.appointment_id,
                lines: a.lines.clone(),
                total_cents: total,
                paid_cents: 0,
                status: if total == 0 {
                    InvoiceStatus::Paid
                } else {
                    InvoiceStatus::Open
                },
                issued_at: a.issued_at,
            };
            validated(validate::invoice, &invoice)?;
            Ok(vec![create(Table::Invoices, a.id, &invoice)])
        }
        Mutation::VoidInvoice(a) => {
            let row = live(src, Table::Invoices, a.id)?;
            let mut invoice: Invoice = decode(Table::Invoices, &row.data)?;
            if invoice.status != InvoiceStatus::Open || invoice.paid_cents != 0 {
                return reject(
                    RejectCode::RuleViolation,
                    "only an open invoice with no payments can be voided",
                );
            }
            invoice.status = InvoiceStatus::Void;
            Ok(vec![update(Table::Invoices, a.id, &row, &invoice)])
        }
        Mutation::RecordPayment(a) => {
            ensure_absent(src, Table::Payments, a.id)?;
            let row = match src
                .row(Table::Invoices, a.invoice_id)
                .map_err(PlanError::Source)?
            {
                Some(row) if !row.deleted => row,
                _ => {
                    return reject(
                        RejectCode::InvalidReference,
                        format!("invoice {} is unknown", a.invoice_id),
                    );
                }
            };
            let mut invoice: Invoice = decode(Table::Invoices, &row.data)?;
            if invoice.status != InvoiceStatus::Open {
                return reject(
                    RejectCode::RuleViolation,
                    format!(
                        "invoice {} is {}, it takes no payments",
                        a.invoice_id,
                        match invoice.status {
                            InvoiceStatus::Paid => "already paid",
                            _ => "void",
                        }
                    ),
                );
            }
            let outstanding = invoice.total_cents - invoice.paid_cents;
            if a.amount_cents > outstanding {
                return Err(Rejection {
                    code: RejectCode::RuleViolation,
                    message: format!(
                        "the payment of {} cents exceeds the {} cents outstanding",
                        a.amount_cents, outstanding
                    ),
                    fields: vec![FieldError {
                        field: "amount_cents".into(),
                        message: format!("exceeds the outstanding {outstanding} cents"),
                    }],
                    conflicts: vec![],
                }
                .into());
            }
            let payment = Payment {
                id: a.id,
                invoice_id: a.invoice_id,
                amount_cents: a.amount_cents,
                method: a.method,
                paid_at: a.paid_at,
                received_by: actor.user_id,
            };
            validated(validate::payment, &payment)?;
            invoice.paid_cents += a.amount_cents;
            if invoice.paid_cents >= invoice.total_cents {
                invoice.status = InvoiceStatus::Paid;
            }
            Ok(vec![
                create(Table::Payments, a.id, &payment),
                update(Table::Invoices, a.invoice_id, &row, &invoice),
            ])
        }
        Mutation::CreateInventoryItem(a) => {
            ensure_absent(src, Table::InventoryItems, a.id)?;
            let item = InventoryItem {
                id: a.id,
                name: a.name.trim().to_owned(),
                unit: a.unit.trim().to_owned(),
                quantity: a.quantity,
                reorder_level: a.reorder_level,
            };
            validated(validate::inventory_item, &item)?;
            Ok(vec![create(Table::InventoryItems, a.id, &item)])
        }
        Mutation::UpdateInventoryItem(a) => {
            let row = live(src, Table::InventoryItems, a.id)?;
            let fields = fields_of(&a.fields);
            let mut write = patched::<InventoryItem>(
                Table::InventoryItems,
                &row,
                fields.clone(),
                validate::inventory_item,
            )?;
            write.id = a.id;
            write.conflict_check = Some(ConflictCheck {
                base_version: a.base_version,
                fields,
                whole_row: false,
            });
            Ok(vec![write])
        }
        Mutation::AdjustStock(a) => {
            let row = live(src, Table::InventoryItems, a.id)?;
            let mut item: InventoryItem = decode(Table::InventoryItems, &row.data)?;
            let Some(quantity) = item.quantity.checked_add(a.delta).filter(|q| *q >= 0) else {
                return reject(
                    RejectCode::InsufficientStock,
                    format!(
                        "only {} {} of {} in stock, cannot take {}",
                        item.quantity,
                        item.unit,
                        item.name,
                        a.delta.unsigned_abs()
                    ),
                );
            };
            item.quantity = quantity;
            Ok(vec![update(Table::InventoryItems, a.id, &row, &item)])
        }
        Mutation::CreateReferral(a) => {
            ensure_absent(src, Table::Referrals, a.id)?;
            ensure_patient(src, a.patient_id)?;
            let referral = Referral {
                id: a.id,
                patient_id: a.patient_id,
                referring_doctor_id: actor.user_id,
                referred_to: a.referred_to.trim().to_owned(),
                reason: a.reason.clone(),
                urgency: a.urgency,
                status: ReferralStatus::Draft,
                created_at: a.created_at,
            };
            validated(validate::referral, &referral)?;
            Ok(vec![create(Table::Referrals, a.id, &referral)])
        }
        Mutation::SetReferralStatus(a) => {
            let row = live(src, Table::Referrals, a.id)?;
            let mut referral: Referral = decode(Table::Referrals, &row.data)?;
            if !referral.status.can_become(a.status) {
                return reject(
                    RejectCode::InvalidTransition,
                    format!(
                        "a referral cannot go from {:?} to {:?}",
                        referral.status, a.status
                    )
                    .to_lowercase(),
                );
            }
            referral.status = a.status;
            Ok(vec![update(Table::Referrals, a.id, &row, &referral)])
        }
    }
}
