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

use crate::field_access;
use crate::model::{
    Appointment, AppointmentStatus, InventoryItem, Invoice, InvoiceStatus, Patient, Payment,
    PriceItem, Referral, ReferralStatus, Role, Staff, Table, Timestamp, TreatmentRecord,
};
use crate::mutation::Mutation;
use crate::permissions;
use crate::protocol::{
    Actor, ClashWith, ReferenceProblem, RejectCode, Rejection, RejectionDetail, Rule,
};
use crate::validate::{self, FieldCode, FieldError};
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
    /// The patient's live (not deleted) appointments whose start is in
    /// `[from, until)`, with any doctor and in any status: the range scan
    /// behind the rule that a patient cannot be in two places at once
    /// ([`patient_clashes`]) and behind archiving ([`future_appointments`]).
    fn patient_appointments_starting_between(
        &mut self,
        patient_id: Uuid,
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
    Ok(clashes_with(src, appt, ClashWith::Doctor)?
        .into_iter()
        .map(|(id, _)| id)
        .collect())
}

/// The patient-in-two-places rule, beside the double-booking rule and the
/// same shape: the patient's other appointments, with any doctor, that
/// occupy their slot and overlap `[appt.start, appt.end)`.
pub fn patient_clashes<S: RowSource>(
    src: &mut S,
    appt: &Appointment,
) -> Result<Vec<Uuid>, PlanError<S::Error>> {
    Ok(clashes_with(src, appt, ClashWith::Patient)?
        .into_iter()
        .map(|(id, _)| id)
        .collect())
}

/// The overlapping, slot-occupying appointments of `appt`'s doctor or
/// patient (not `appt` itself), with their entities, by start.
fn clashes_with<S: RowSource>(
    src: &mut S,
    appt: &Appointment,
    with: ClashWith,
) -> Result<Vec<(Uuid, Appointment)>, PlanError<S::Error>> {
    // Appointments last at most MAX_APPOINTMENT_SECS, so only those starting
    // in [start − that, end) can overlap.
    let from = Timestamp::from_unix(appt.start.unix() - validate::MAX_APPOINTMENT_SECS)
        .unwrap_or(appt.start);
    let candidates = match with {
        ClashWith::Doctor => src.appointments_starting_between(appt.doctor_id, from, appt.end),
        ClashWith::Patient => {
            src.patient_appointments_starting_between(appt.patient_id, from, appt.end)
        }
    }
    .map_err(PlanError::Source)?;
    let mut clashes = Vec::new();
    for c in candidates {
        if c.id == appt.id {
            continue;
        }
        let other: Appointment = decode(Table::Appointments, &c.data)?;
        if other.status.occupies_slot() && other.start < appt.end && other.end > appt.start {
            clashes.push((c.id, other));
        }
    }
    clashes.sort_by_key(|(id, a)| (a.start, *id));
    Ok(clashes)
}

/// An appointment row as read, its entity, and its id.
pub type FoundAppointment = (CurrentRow, Appointment, Uuid);

/// The patient's appointments still to come that hold a slot (scheduled or
/// checked in, ending after `now`), by start: what archiving the patient
/// must cancel first.
pub fn future_appointments<S: RowSource>(
    src: &mut S,
    patient_id: Uuid,
    now: Timestamp,
) -> Result<Vec<FoundAppointment>, PlanError<S::Error>> {
    let from = Timestamp::from_unix(now.unix() - validate::MAX_APPOINTMENT_SECS).unwrap_or(now);
    let until = Timestamp::from_unix(253_402_300_799).unwrap_or(now); // 9999-12-31T23:59:59Z
    let candidates = src
        .patient_appointments_starting_between(patient_id, from, until)
        .map_err(PlanError::Source)?;
    let mut out = Vec::new();
    for c in candidates {
        let appt: Appointment = decode(Table::Appointments, &c.data)?;
        let upcoming = matches!(
            appt.status,
            AppointmentStatus::Scheduled | AppointmentStatus::CheckedIn
        ) && appt.end > now;
        if upcoming
            && let Some(row) = src
                .row(Table::Appointments, c.id)
                .map_err(PlanError::Source)?
        {
            out.push((row, appt, c.id));
        }
    }
    out.sort_by_key(|(_, a, id)| (a.start, *id));
    Ok(out)
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
        .with_detail(RejectionDetail::Rule {
            rule: Rule::Unreadable,
        })
    })
}

fn rule<T, E>(rule: Rule, message: impl Into<String>) -> Result<T, PlanError<E>> {
    Err(PlanError::Rejected(
        Rejection::new(RejectCode::RuleViolation, message)
            .with_detail(RejectionDetail::Rule { rule }),
    ))
}

fn reference<T, E>(
    code: RejectCode,
    table: Table,
    id: Uuid,
    problem: ReferenceProblem,
    message: impl Into<String>,
) -> Result<T, PlanError<E>> {
    Err(PlanError::Rejected(
        Rejection::new(code, message).with_detail(RejectionDetail::Reference {
            table,
            id,
            problem,
        }),
    ))
}

fn transition<T, E>(
    table: Table,
    from: &str,
    to: &str,
    message: impl Into<String>,
) -> Result<T, PlanError<E>> {
    Err(PlanError::Rejected(
        Rejection::new(RejectCode::InvalidTransition, message).with_detail(
            RejectionDetail::Transition {
                table,
                from: from.to_owned(),
                to: to.to_owned(),
            },
        ),
    ))
}

/// "Not in the past": a booking (or a move) must start at or after `now`,
/// unless it is an administrator's correction (checked by the permissions).
fn ensure_not_past<E>(
    start: Timestamp,
    now: Timestamp,
    correction: bool,
) -> Result<(), PlanError<E>> {
    if start < now && !correction {
        return Err(PlanError::Rejected(Rejection::validation(vec![
            FieldError::new("start", FieldCode::InThePast, "is in the past"),
        ])));
    }
    Ok(())
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
        Some(_) => reference(
            RejectCode::NotFound,
            table,
            id,
            ReferenceProblem::Deleted,
            format!("{table} {id} was deleted"),
        ),
        None => reference(
            RejectCode::NotFound,
            table,
            id,
            ReferenceProblem::Unknown,
            format!("{table} {id} does not exist"),
        ),
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
    let unavailable = |problem, message: String| {
        reference(
            RejectCode::PatientUnavailable,
            Table::Patients,
            id,
            problem,
            message,
        )
    };
    match src.row(Table::Patients, id).map_err(PlanError::Source)? {
        Some(row) if !row.deleted => {
            let patient: Patient = decode(Table::Patients, &row.data)?;
            if patient.archived_at.is_some() {
                return unavailable(
                    ReferenceProblem::Archived,
                    format!("patient {id} is archived"),
                );
            }
            Ok(())
        }
        Some(_) => unavailable(
            ReferenceProblem::Deleted,
            format!("patient {id} has been deleted"),
        ),
        None => unavailable(
            ReferenceProblem::Unknown,
            format!("patient {id} is unknown"),
        ),
    }
}

fn ensure_doctor<S: RowSource>(src: &mut S, id: Uuid) -> Result<(), PlanError<S::Error>> {
    let bad = |problem, message: String| {
        reference(
            RejectCode::InvalidReference,
            Table::Staff,
            id,
            problem,
            message,
        )
    };
    let row = match src.row(Table::Staff, id).map_err(PlanError::Source)? {
        Some(row) if !row.deleted => row,
        _ => return bad(ReferenceProblem::Unknown, format!("doctor {id} is unknown")),
    };
    let staff: Staff = decode(Table::Staff, &row.data)?;
    if staff.role != Role::Doctor {
        return bad(
            ReferenceProblem::NotADoctor,
            format!("staff {id} is not a doctor"),
        );
    }
    if !staff.active {
        return bad(
            ReferenceProblem::Disabled,
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
            return reference(
                RejectCode::InvalidReference,
                Table::Appointments,
                id,
                ReferenceProblem::Unknown,
                format!("appointment {id} is unknown"),
            );
        }
    };
    let appt: Appointment = decode(Table::Appointments, &row.data)?;
    if appt.patient_id != patient_id {
        return reference(
            RejectCode::InvalidReference,
            Table::Appointments,
            id,
            ReferenceProblem::OtherPatient,
            format!("appointment {id} belongs to another patient"),
        );
    }
    Ok(())
}

/// The slot must be free for the doctor (double booking) and for the
/// patient (in two places at once); the refusal names the appointment that
/// holds it.
fn ensure_free_slot<S: RowSource>(
    src: &mut S,
    appt: &Appointment,
) -> Result<(), PlanError<S::Error>> {
    for with in [ClashWith::Doctor, ClashWith::Patient] {
        if let Some((id, other)) = clashes_with(src, appt, with)?.into_iter().next() {
            let whose = match with {
                ClashWith::Doctor => "the doctor",
                ClashWith::Patient => "the patient",
            };
            // The message keeps its older wording for scripts and logs; a
            // desk says it in words from `detail`.
            return Err(PlanError::Rejected(
                Rejection::new(
                    RejectCode::DoubleBooked,
                    format!(
                        "{whose} already has appointment {id} between {} and {}",
                        other.start, other.end
                    ),
                )
                .with_detail(RejectionDetail::Clash {
                    with,
                    appointment_id: id,
                    patient_id: other.patient_id,
                    doctor_id: other.doctor_id,
                    start: other.start,
                    end: other.end,
                }),
            ));
        }
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

/// The named fields of a row's value, for a conflict check on fields an
/// intent writes that are not a patch.
fn fields_named(row: &Value, names: &[&str]) -> Map<String, Value> {
    names
        .iter()
        .filter_map(|n| Some(((*n).to_owned(), row.get(*n)?.clone())))
        .collect()
}

/// The status of an invoice as it is issued: nothing to pay is paid.
fn issued_status(total_cents: i64) -> InvoiceStatus {
    if total_cents == 0 {
        InvoiceStatus::Paid
    } else {
        InvoiceStatus::Open
    }
}

/// Lines change only on a draft.
fn ensure_draft<E>(invoice: &Invoice) -> Result<(), PlanError<E>> {
    if invoice.status == InvoiceStatus::Draft {
        return Ok(());
    }
    rule(
        Rule::InvoiceIssued,
        format!(
            "the invoice is {} and its lines are final: void it and bill again",
            match invoice.status {
                InvoiceStatus::Void => "void",
                _ => "issued",
            }
        ),
    )
}

/// The invoice a payment or refund is for, or `invalid_reference`.
fn invoice_row<S: RowSource>(src: &mut S, id: Uuid) -> Result<CurrentRow, PlanError<S::Error>> {
    match src.row(Table::Invoices, id).map_err(PlanError::Source)? {
        Some(row) if !row.deleted => Ok(row),
        _ => reference(
            RejectCode::InvalidReference,
            Table::Invoices,
            id,
            ReferenceProblem::Unknown,
            format!("invoice {id} is unknown"),
        ),
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

/// Plans `mutation` by `actor` at `now` against the rows in `src`: the row
/// writes it produces, or why it is refused. `now` comes from the caller (the
/// server's clock on the server; on a desk, the injected clock, or the time a
/// queued change was made when it is replayed), never from the system clock
/// here, so both sides judge "in the past" the same way.
pub fn plan<S: RowSource>(
    mutation: &Mutation,
    actor: &Actor,
    now: Timestamp,
    src: &mut S,
) -> Plan<S::Error> {
    let writes = plan_writes(mutation, actor, now, src)?;
    ensure_fields_writable(actor, &writes)?;
    Ok(writes)
}

/// A role may not write a field it may not read ([`field_access`]): the
/// refusal names the first such field.
fn ensure_fields_writable(actor: &Actor, writes: &[RowWrite]) -> Result<(), Rejection> {
    for w in writes {
        if let Some(field) =
            field_access::unreadable_written_field(actor.role, w.table, w.before.as_ref(), &w.after)
        {
            return Err(Rejection::new(
                RejectCode::Forbidden,
                format!(
                    "role {} may not write the {} of {}: it is withheld from that role",
                    actor.role,
                    field.replace('_', " "),
                    w.table.as_str().replace('_', " ")
                ),
            )
            .with_detail(RejectionDetail::WithheldField {
                table: w.table,
                field: field.to_owned(),
            }));
        }
    }
    Ok(())
}

/// The name to tell a person for a staff member: the display name if the
/// row is there, else the id.
fn staff_name<S: RowSource>(src: &mut S, id: Uuid) -> Result<String, PlanError<S::Error>> {
    let row = src.row(Table::Staff, id).map_err(PlanError::Source)?;
    Ok(row
        .and_then(|r| serde_json::from_value::<Staff>(r.data).ok())
        .map_or_else(|| format!("staff {id}"), |s| s.display_name))
}

/// A doctor edits only the treatment records they are responsible for
/// (`doctor_id`: the author, or the doctor an admin handed the record to).
fn ensure_own_record<S: RowSource>(
    src: &mut S,
    actor: &Actor,
    record: &TreatmentRecord,
) -> Result<(), PlanError<S::Error>> {
    if record.doctor_id == actor.user_id {
        return Ok(());
    }
    let name = staff_name(src, record.doctor_id)?;
    Err(PlanError::Rejected(
        Rejection::new(
            RejectCode::Forbidden,
            format!(
                "this treatment record is {name}'s: only the doctor responsible for a record \
                 may edit it (an admin can hand it over to you)"
            ),
        )
        .with_detail(RejectionDetail::RecordOwner {
            doctor_id: record.doctor_id,
        }),
    ))
}

fn plan_writes<S: RowSource>(
    mutation: &Mutation,
    actor: &Actor,
    now: Timestamp,
    src: &mut S,
) -> Plan<S::Error> {
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
                let mut taken = Rejection::validation(vec![FieldError::new(
                    "username",
                    FieldCode::Taken,
                    "is taken",
                )]);
                taken.code = RejectCode::AlreadyExists;
                taken.message = format!("username {} is taken", a.username);
                return Err(taken.into());
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
                return rule(Rule::OwnAdminRole, "you cannot remove your own admin role");
            }
            staff.role = a.role;
            Ok(vec![update(Table::Staff, a.id, &row, &staff)])
        }
        Mutation::SetStaffActive(a) => {
            let row = live(src, Table::Staff, a.id)?;
            let mut staff: Staff = decode(Table::Staff, &row.data)?;
            if a.id == actor.user_id && !a.active {
                return rule(Rule::OwnAccount, "you cannot disable your own account");
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
                sex: a.sex,
                emergency_contact: a.emergency_contact.clone(),
                emergency_phone: a.emergency_phone.clone(),
                insurer: a.insurer.clone(),
                insurance_number: a.insurance_number.clone(),
                alerts: a.alerts.clone(),
                archived_at: None,
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
        Mutation::ArchivePatient(a) => {
            let row = live(src, Table::Patients, a.id)?;
            let mut patient: Patient = decode(Table::Patients, &row.data)?;
            if patient.archived_at.is_some() {
                return rule(Rule::AlreadyArchived, "the patient is already archived");
            }
            let upcoming = future_appointments(src, a.id, now)?;
            if !upcoming.is_empty() && !a.cancel_future_appointments {
                let count = u32::try_from(upcoming.len()).unwrap_or(u32::MAX);
                return Err(PlanError::Rejected(
                    Rejection::new(
                        RejectCode::RuleViolation,
                        format!(
                            "the patient has {count} future appointment(s); cancel them in the same change to archive"
                        ),
                    )
                    .with_detail(RejectionDetail::FutureAppointments {
                        count,
                        appointment_ids: upcoming.iter().map(|(_, _, id)| *id).collect(),
                    }),
                ));
            }
            patient.archived_at = Some(now);
            let mut writes = vec![update(Table::Patients, a.id, &row, &patient)];
            for (appt_row, mut appt, id) in upcoming {
                appt.status = AppointmentStatus::Cancelled;
                writes.push(update(Table::Appointments, id, &appt_row, &appt));
            }
            Ok(writes)
        }
        Mutation::RestorePatient(a) => {
            let row = live(src, Table::Patients, a.id)?;
            let mut patient: Patient = decode(Table::Patients, &row.data)?;
            if patient.archived_at.is_none() {
                return rule(Rule::NotArchived, "the patient is not archived");
            }
            patient.archived_at = None;
            Ok(vec![update(Table::Patients, a.id, &row, &patient)])
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
                checked_in_at: None,
            };
            validated(validate::appointment, &appt)?;
            ensure_not_past(a.start, now, a.correction)?;
            ensure_free_slot(src, &appt)?;
            Ok(vec![create(Table::Appointments, a.id, &appt)])
        }
        Mutation::RescheduleAppointment(a) => {
            let row = live(src, Table::Appointments, a.id)?;
            let mut appt: Appointment = decode(Table::Appointments, &row.data)?;
            if appt.status != AppointmentStatus::Scheduled {
                return transition(
                    Table::Appointments,
                    appt.status.as_str(),
                    "moved",
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
            ensure_not_past(a.start, now, a.correction)?;
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
                return transition(
                    Table::Appointments,
                    appt.status.as_str(),
                    a.status.as_str(),
                    format!(
                        "an appointment cannot go from {} to {}",
                        appt.status.as_str(),
                        a.status.as_str()
                    ),
                );
            }
            if !permissions::can_set_status(actor.role, a.status) {
                return reject(
                    RejectCode::Forbidden,
                    "assistants may only check patients in and start treatments",
                );
            }
            let reinstated = !appt.status.occupies_slot() && a.status.occupies_slot();
            if appt.status == AppointmentStatus::Cancelled {
                // Reinstating a cancelled visit books its slot again: not in
                // the past, and only while the slot is still free. (A
                // no-show's slot has passed; undoing it books nothing new.)
                ensure_not_past(appt.start, now, false)?;
            }
            match a.status {
                // Arrival: the desk's time when it says, else ours; never
                // later than now (a desk clock running fast would make
                // the wait negative).
                AppointmentStatus::CheckedIn if appt.status == AppointmentStatus::Scheduled => {
                    appt.checked_in_at = Some(a.at.map_or(now, |at| at.min(now)));
                }
                // Check-in undone: not arrived after all.
                AppointmentStatus::Scheduled => appt.checked_in_at = None,
                _ => {}
            }
            appt.status = a.status;
            if reinstated {
                ensure_patient(src, appt.patient_id)?;
                ensure_free_slot(src, &appt)?;
            }
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
            let record: TreatmentRecord = decode(Table::TreatmentRecords, &row.data)?;
            ensure_own_record(src, actor, &record)?;
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
        Mutation::HandOverTreatmentRecord(a) => {
            let row = live(src, Table::TreatmentRecords, a.id)?;
            let mut record: TreatmentRecord = decode(Table::TreatmentRecords, &row.data)?;
            ensure_doctor(src, a.doctor_id)?;
            record.doctor_id = a.doctor_id;
            Ok(vec![update(Table::TreatmentRecords, a.id, &row, &record)])
        }
        Mutation::CreateInvoice(a) => {
            ensure_absent(src, Table::Invoices, a.id)?;
            ensure_patient(src, a.patient_id)?;
            ensure_visit(src, a.appointment_id, a.patient_id)?;
            let Some(total) = Invoice::total_of(&a.lines) else {
                return rule(Rule::TotalTooLarge, "the invoice total is too large");
            };
            let invoice = Invoice {
                id: a.id,
                patient_id: a.patient_id,
                appointment_id: a.appointment_id,
                lines: a.lines.clone(),
                total_cents: total,
                paid_cents: 0,
                status: if a.draft {
                    InvoiceStatus::Draft
                } else {
                    issued_status(total)
                },
                issued_at: a.issued_at,
                void_reason: None,
                voided_at: None,
                refunded_cents: 0,
            };
            validated(validate::invoice, &invoice)?;
            Ok(vec![create(Table::Invoices, a.id, &invoice)])
        }
        Mutation::UpdateInvoiceLines(a) => {
            let row = live(src, Table::Invoices, a.id)?;
            let mut invoice: Invoice = decode(Table::Invoices, &row.data)?;
            ensure_draft(&invoice)?;
            let Some(total) = Invoice::total_of(&a.lines) else {
                return rule(Rule::TotalTooLarge, "the invoice total is too large");
            };
            invoice.lines = a.lines.clone();
            invoice.total_cents = total;
            validated(validate::invoice, &invoice)?;
            let mut write = update(Table::Invoices, a.id, &row, &invoice);
            write.conflict_check = Some(ConflictCheck {
                base_version: a.base_version,
                fields: fields_named(&write.after, &["lines", "total_cents"]),
                whole_row: false,
            });
            Ok(vec![write])
        }
        Mutation::IssueInvoice(a) => {
            let row = live(src, Table::Invoices, a.id)?;
            let mut invoice: Invoice = decode(Table::Invoices, &row.data)?;
            ensure_draft(&invoice)?;
            if invoice.lines.is_empty() {
                return rule(
                    Rule::InvoiceEmpty,
                    "the draft has no lines: add what was provided before issuing it",
                );
            }
            invoice.status = issued_status(invoice.total_cents);
            invoice.issued_at = a.issued_at;
            let mut write = update(Table::Invoices, a.id, &row, &invoice);
            // What is issued is what the desk showed: a draft another desk
            // changed meanwhile stops the issue instead of going out unseen
            // (a draft changes only by its lines, so any change counts).
            write.conflict_check = Some(ConflictCheck {
                base_version: a.base_version,
                fields: Map::new(),
                whole_row: true,
            });
            Ok(vec![write])
        }
        Mutation::VoidInvoice(a) => {
            let row = live(src, Table::Invoices, a.id)?;
            let mut invoice: Invoice = decode(Table::Invoices, &row.data)?;
            if invoice.status == InvoiceStatus::Void {
                return rule(Rule::InvoiceNotVoidable, "the invoice is already void");
            }
            // Payments stay recorded: what was paid is returned with
            // refunds, so the day's takings stay true.
            invoice.status = InvoiceStatus::Void;
            invoice.void_reason = Some(a.reason.trim().to_owned());
            invoice.voided_at = Some(now);
            validated(validate::invoice, &invoice)?;
            Ok(vec![update(Table::Invoices, a.id, &row, &invoice)])
        }
        Mutation::RecordPayment(a) => {
            ensure_absent(src, Table::Payments, a.id)?;
            let row = invoice_row(src, a.invoice_id)?;
            let mut invoice: Invoice = decode(Table::Invoices, &row.data)?;
            if invoice.status != InvoiceStatus::Open {
                return rule(
                    Rule::InvoiceClosed,
                    format!(
                        "invoice {} is {}, it takes no payments",
                        a.invoice_id,
                        match invoice.status {
                            InvoiceStatus::Paid => "already paid",
                            InvoiceStatus::Draft => "a draft not yet issued",
                            _ => "void",
                        }
                    ),
                );
            }
            let outstanding = invoice.total_cents - invoice.paid_cents;
            if a.amount_cents > outstanding {
                let mut too_much = Rejection::validation(vec![
                    FieldError::new(
                        "amount_cents",
                        FieldCode::ExceedsOutstanding,
                        format!("exceeds the outstanding {outstanding} cents"),
                    )
                    .bounds(Some(1), Some(outstanding)),
                ]);
                too_much.code = RejectCode::RuleViolation;
                too_much.message = format!(
                    "the payment of {} cents exceeds the {} cents outstanding",
                    a.amount_cents, outstanding
                );
                too_much = too_much.with_detail(RejectionDetail::Outstanding {
                    outstanding_cents: outstanding,
                });
                return Err(too_much.into());
            }
            let payment = Payment {
                id: a.id,
                invoice_id: a.invoice_id,
                amount_cents: a.amount_cents,
                method: a.method,
                paid_at: a.paid_at,
                received_by: actor.user_id,
                refund: false,
                reason: None,
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
        Mutation::RefundPayment(a) => {
            ensure_absent(src, Table::Payments, a.id)?;
            let row = invoice_row(src, a.invoice_id)?;
            let mut invoice: Invoice = decode(Table::Invoices, &row.data)?;
            let due = invoice.refund_due_cents();
            if invoice.status != InvoiceStatus::Void || a.amount_cents > due {
                let message = if invoice.status != InvoiceStatus::Void {
                    "only money paid on a void invoice is refunded: void the invoice first"
                        .to_owned()
                } else {
                    format!(
                        "the refund of {} cents exceeds the {due} cents paid and not yet refunded",
                        a.amount_cents
                    )
                };
                return rule(Rule::RefundNotDue, message);
            }
            let refund = Payment {
                id: a.id,
                invoice_id: a.invoice_id,
                amount_cents: a.amount_cents,
                method: a.method,
                paid_at: a.refunded_at,
                received_by: actor.user_id,
                refund: true,
                reason: Some(a.reason.trim().to_owned()),
            };
            validated(validate::payment, &refund)?;
            invoice.refunded_cents += a.amount_cents;
            Ok(vec![
                create(Table::Payments, a.id, &refund),
                update(Table::Invoices, a.invoice_id, &row, &invoice),
            ])
        }
        Mutation::CreatePriceItem(a) => {
            ensure_absent(src, Table::PriceItems, a.id)?;
            let item = PriceItem {
                id: a.id,
                code: a.code.trim().to_owned(),
                description: a.description.trim().to_owned(),
                unit_price_cents: a.unit_price_cents,
                visit_minutes: a.visit_minutes,
                retired: false,
            };
            validated(validate::price_item, &item)?;
            Ok(vec![create(Table::PriceItems, a.id, &item)])
        }
        Mutation::UpdatePriceItem(a) => {
            let row = live(src, Table::PriceItems, a.id)?;
            let fields = fields_of(&a.fields);
            let mut write = patched::<PriceItem>(
                Table::PriceItems,
                &row,
                fields.clone(),
                validate::price_item,
            )?;
            write.id = a.id;
            write.conflict_check = Some(ConflictCheck {
                base_version: a.base_version,
                fields,
                whole_row: false,
            });
            Ok(vec![write])
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
                return Err(PlanError::Rejected(
                    Rejection::new(
                        RejectCode::InsufficientStock,
                        format!(
                            "only {} {} of {} in stock, cannot take {}",
                            item.quantity,
                            item.unit,
                            item.name,
                            a.delta.unsigned_abs()
                        ),
                    )
                    .with_detail(RejectionDetail::Stock {
                        available: item.quantity,
                        requested: i64::try_from(a.delta.unsigned_abs()).unwrap_or(i64::MAX),
                    }),
                ));
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
                let name = |s: ReferralStatus| s.as_str().to_owned();
                return transition(
                    Table::Referrals,
                    &name(referral.status),
                    &name(a.status),
                    format!(
                        "a referral cannot go from {} to {}",
                        name(referral.status),
                        name(a.status)
                    ),
                );
            }
            referral.status = a.status;
            Ok(vec![update(Table::Referrals, a.id, &row, &referral)])
        }
    }
}

#[cfg(test)]
mod tests {
    //! The clinic rules the planner adds for the front desk: the patient in
    //! two places, no booking in the past (with the admin's explicit
    //! correction), archiving with its future appointments, and the undo
    //! steps of the appointment flow.
    use super::*;
    use crate::mutation::{ArchivePatient, BookAppointment, RestorePatient, SetAppointmentStatus};
    use std::collections::BTreeMap;
    use std::convert::Infallible;

    #[derive(Default)]
    struct Rows(BTreeMap<(Table, Uuid), CurrentRow>);

    impl Rows {
        fn put<T: Serialize>(&mut self, table: Table, id: Uuid, entity: &T) {
            self.0.insert(
                (table, id),
                CurrentRow {
                    version: 1,
                    deleted: false,
                    data: to_value(entity),
                },
            );
        }
        fn apply(&mut self, writes: &[RowWrite]) {
            for w in writes {
                self.0.insert(
                    (w.table, w.id),
                    CurrentRow {
                        version: 2,
                        deleted: w.action == Action::Delete,
                        data: w.after.clone(),
                    },
                );
            }
        }
        fn appointments(
            &self,
            keep: impl Fn(&Appointment) -> bool,
            from: Timestamp,
            until: Timestamp,
        ) -> Vec<SlotCandidate> {
            self.0
                .iter()
                .filter(|((t, _), r)| *t == Table::Appointments && !r.deleted)
                .filter_map(|((_, id), r)| {
                    let a: Appointment = serde_json::from_value(r.data.clone()).ok()?;
                    (keep(&a) && a.start >= from && a.start < until).then(|| SlotCandidate {
                        id: *id,
                        data: r.data.clone(),
                    })
                })
                .collect()
        }
    }

    impl RowSource for Rows {
        type Error = Infallible;
        fn row(&mut self, table: Table, id: Uuid) -> Result<Option<CurrentRow>, Infallible> {
            Ok(self.0.get(&(table, id)).cloned())
        }
        fn appointments_starting_between(
            &mut self,
            doctor: Uuid,
            from: Timestamp,
            until: Timestamp,
        ) -> Result<Vec<SlotCandidate>, Infallible> {
            Ok(self.appointments(|a| a.doctor_id == doctor, from, until))
        }
        fn patient_appointments_starting_between(
            &mut self,
            patient: Uuid,
            from: Timestamp,
            until: Timestamp,
        ) -> Result<Vec<SlotCandidate>, Infallible> {
            Ok(self.appointments(|a| a.patient_id == patient, from, until))
        }
        fn staff_id_by_username(&mut self, _: &str) -> Result<Option<Uuid>, Infallible> {
            Ok(None)
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }
    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }
    const NOW: &str = "2031-03-03T08:00:00Z";
    const ANNA: u128 = 10;
    const BEN: u128 = 11;
    const DOYLE: u128 = 1;
    const LEE: u128 = 2;

    fn actor(role: Role) -> Actor {
        Actor {
            user_id: id(99),
            role,
        }
    }

    fn clinic() -> Rows {
        let mut rows = Rows::default();
        for (n, name) in [(DOYLE, "doyle"), (LEE, "lee")] {
            rows.put(
                Table::Staff,
                id(n),
                &Staff {
                    id: id(n),
                    username: name.into(),
                    display_name: name.into(),
                    role: Role::Doctor,
                    active: true,
                },
            );
        }
        for (n, name) in [(ANNA, "Anna"), (BEN, "Ben")] {
            rows.put(
                Table::Patients,
                id(n),
                &Patient {
                    id: id(n),
                    first_name: name.into(),
                    last_name: "Meyer".into(),
                    date_of_birth: "1980-01-01".parse().unwrap(),
                    phone: None,
                    email: None,
                    address: None,
                    sex: None,
                    emergency_contact: None,
                    emergency_phone: None,
                    insurer: None,
                    insurance_number: None,
                    alerts: None,
                    archived_at: None,
                },
            );
        }
        rows
    }

    fn book(appt: u128, patient: u128, doctor: u128, start: &str, end: &str) -> Mutation {
        Mutation::BookAppointment(BookAppointment {
            id: id(appt),
            patient_id: id(patient),
            doctor_id: id(doctor),
            start: ts(start),
            end: ts(end),
            reason: None,
            correction: false,
        })
    }

    fn run(rows: &mut Rows, m: &Mutation, role: Role) -> Result<Vec<RowWrite>, Rejection> {
        match plan(m, &actor(role), ts(NOW), rows) {
            Ok(w) => {
                rows.apply(&w);
                Ok(w)
            }
            Err(PlanError::Rejected(r)) => Err(r),
            Err(PlanError::Source(e)) => match e {},
        }
    }

    fn status(
        rows: &mut Rows,
        appt: u128,
        to: AppointmentStatus,
        role: Role,
    ) -> Result<Vec<RowWrite>, Rejection> {
        run(
            rows,
            &Mutation::SetAppointmentStatus(SetAppointmentStatus {
                id: id(appt),
                status: to,
                at: None,
            }),
            role,
        )
    }

    #[test]
    fn a_check_in_records_the_arrival_which_an_undo_clears_and_the_visit_keeps() {
        let mut rows = clinic();
        run(
            &mut rows,
            &book(
                100,
                ANNA,
                DOYLE,
                "2031-03-03T09:00:00Z",
                "2031-03-03T09:30:00Z",
            ),
            Role::Reception,
        )
        .unwrap();
        let arrived = |rows: &Rows| -> Option<Timestamp> {
            let row = &rows.0[&(Table::Appointments, id(100))];
            serde_json::from_value::<Appointment>(row.data.clone())
                .unwrap()
                .checked_in_at
        };
        assert_eq!(arrived(&rows), None, "not arrived when booked");
        let check_in = |at: &str| {
            Mutation::SetAppointmentStatus(SetAppointmentStatus {
                id: id(100),
                status: AppointmentStatus::CheckedIn,
                at: Some(ts(at)),
            })
        };
        // Checked in offline a while ago: the desk's time is the arrival.
        run(
            &mut rows,
            &check_in("2031-03-03T07:52:00Z"),
            Role::Reception,
        )
        .unwrap();
        assert_eq!(arrived(&rows), Some(ts("2031-03-03T07:52:00Z")));
        // Undone: not arrived after all.
        status(
            &mut rows,
            100,
            AppointmentStatus::Scheduled,
            Role::Reception,
        )
        .unwrap();
        assert_eq!(arrived(&rows), None);
        // A desk clock ahead of ours: never later than now.
        run(
            &mut rows,
            &check_in("2031-03-03T09:15:00Z"),
            Role::Reception,
        )
        .unwrap();
        assert_eq!(arrived(&rows), Some(ts(NOW)));
        // Without a time: now. Kept through the visit.
        status(
            &mut rows,
            100,
            AppointmentStatus::Scheduled,
            Role::Reception,
        )
        .unwrap();
        status(
            &mut rows,
            100,
            AppointmentStatus::CheckedIn,
            Role::Assistant,
        )
        .unwrap();
        assert_eq!(arrived(&rows), Some(ts(NOW)));
        status(&mut rows, 100, AppointmentStatus::InProgress, Role::Doctor).unwrap();
        status(&mut rows, 100, AppointmentStatus::Completed, Role::Doctor).unwrap();
        assert_eq!(arrived(&rows), Some(ts(NOW)), "the visit keeps its arrival");
    }

    #[test]
    fn a_patient_cannot_be_in_two_places_at_once() {
        let mut rows = clinic();
        run(
            &mut rows,
            &book(
                100,
                ANNA,
                DOYLE,
                "2031-03-03T15:30:00Z",
                "2031-03-03T16:00:00Z",
            ),
            Role::Reception,
        )
        .unwrap();
        // Same patient, another doctor, overlapping: refused, naming the appointment.
        let r = run(
            &mut rows,
            &book(
                101,
                ANNA,
                LEE,
                "2031-03-03T15:45:00Z",
                "2031-03-03T16:15:00Z",
            ),
            Role::Reception,
        )
        .unwrap_err();
        assert_eq!(r.code, RejectCode::DoubleBooked);
        assert_eq!(
            r.detail.as_deref(),
            Some(&RejectionDetail::Clash {
                with: ClashWith::Patient,
                appointment_id: id(100),
                patient_id: id(ANNA),
                doctor_id: id(DOYLE),
                start: ts("2031-03-03T15:30:00Z"),
                end: ts("2031-03-03T16:00:00Z"),
            })
        );
        // Another patient with the first doctor: the doctor's clash.
        let r = run(
            &mut rows,
            &book(
                102,
                BEN,
                DOYLE,
                "2031-03-03T15:00:00Z",
                "2031-03-03T15:45:00Z",
            ),
            Role::Reception,
        )
        .unwrap_err();
        assert!(
            matches!(
                r.detail.as_deref(),
                Some(RejectionDetail::Clash {
                    with: ClashWith::Doctor,
                    ..
                })
            ),
            "{r:?}"
        );
        // Back to back is fine, and so is the same time once the first is cancelled.
        run(
            &mut rows,
            &book(
                103,
                ANNA,
                LEE,
                "2031-03-03T16:00:00Z",
                "2031-03-03T16:30:00Z",
            ),
            Role::Reception,
        )
        .unwrap();
        status(
            &mut rows,
            100,
            AppointmentStatus::Cancelled,
            Role::Reception,
        )
        .unwrap();
        run(
            &mut rows,
            &book(
                104,
                ANNA,
                LEE,
                "2031-03-03T15:30:00Z",
                "2031-03-03T16:00:00Z",
            ),
            Role::Reception,
        )
        .unwrap();
    }

    #[test]
    fn no_booking_in_the_past_except_an_admins_audited_correction() {
        let mut rows = clinic();
        let past = book(
            100,
            ANNA,
            DOYLE,
            "2031-03-03T07:00:00Z",
            "2031-03-03T07:30:00Z",
        );
        let r = run(&mut rows, &past, Role::Reception).unwrap_err();
        assert_eq!(r.code, RejectCode::Validation);
        assert_eq!(
            (r.fields[0].field.as_str(), r.fields[0].code),
            ("start", FieldCode::InThePast)
        );
        let Mutation::BookAppointment(mut correction) = past else {
            unreachable!()
        };
        correction.correction = true;
        let correction = Mutation::BookAppointment(correction);
        assert_eq!(
            run(&mut rows, &correction, Role::Reception)
                .unwrap_err()
                .code,
            RejectCode::Forbidden
        );
        run(&mut rows, &correction, Role::Admin).unwrap();
        assert_eq!(correction.audit_name(), "book_appointment_correction");
    }

    #[test]
    fn archiving_cancels_future_appointments_only_when_asked() {
        let mut rows = clinic();
        let correction = |m: Mutation| match m {
            Mutation::BookAppointment(mut a) => {
                a.correction = true;
                Mutation::BookAppointment(a)
            }
            m => m,
        };
        run(
            &mut rows,
            &correction(book(
                100,
                ANNA,
                DOYLE,
                "2031-03-01T09:00:00Z",
                "2031-03-01T09:30:00Z",
            )),
            Role::Admin,
        )
        .unwrap();
        run(
            &mut rows,
            &book(
                101,
                ANNA,
                DOYLE,
                "2031-03-05T09:00:00Z",
                "2031-03-05T09:30:00Z",
            ),
            Role::Reception,
        )
        .unwrap();
        run(
            &mut rows,
            &book(
                102,
                ANNA,
                LEE,
                "2031-04-05T09:00:00Z",
                "2031-04-05T09:30:00Z",
            ),
            Role::Reception,
        )
        .unwrap();
        let archive = |cancel| {
            Mutation::ArchivePatient(ArchivePatient {
                id: id(ANNA),
                cancel_future_appointments: cancel,
            })
        };
        let r = run(&mut rows, &archive(false), Role::Reception).unwrap_err();
        assert_eq!(
            r.detail.as_deref(),
            Some(&RejectionDetail::FutureAppointments {
                count: 2,
                appointment_ids: vec![id(101), id(102)]
            })
        );
        assert_eq!(
            run(&mut rows, &archive(true), Role::Doctor)
                .unwrap_err()
                .code,
            RejectCode::Forbidden
        );
        let writes = run(&mut rows, &archive(true), Role::Reception).unwrap();
        assert_eq!(writes.len(), 3, "the patient and the two future visits");
        assert_eq!(writes[1].after["status"], "cancelled");
        let patient: Patient = serde_json::from_value(writes[0].after.clone()).unwrap();
        assert_eq!(patient.archived_at, Some(ts(NOW)));
        // The past visit is kept as it was; the archived patient cannot be booked.
        assert_eq!(
            rows.0[&(Table::Appointments, id(100))].data["status"],
            "scheduled"
        );
        let r = run(
            &mut rows,
            &book(
                103,
                ANNA,
                LEE,
                "2031-05-05T09:00:00Z",
                "2031-05-05T09:30:00Z",
            ),
            Role::Reception,
        )
        .unwrap_err();
        assert_eq!(r.code, RejectCode::PatientUnavailable);
        assert!(matches!(
            r.detail.as_deref(),
            Some(RejectionDetail::Reference {
                problem: ReferenceProblem::Archived,
                ..
            })
        ));
        // Undo: restore, then reinstate a cancelled visit (its slot is still free).
        run(
            &mut rows,
            &Mutation::RestorePatient(RestorePatient { id: id(ANNA) }),
            Role::Reception,
        )
        .unwrap();
        status(
            &mut rows,
            101,
            AppointmentStatus::Scheduled,
            Role::Reception,
        )
        .unwrap();
        let again = run(
            &mut rows,
            &Mutation::RestorePatient(RestorePatient { id: id(ANNA) }),
            Role::Reception,
        )
        .unwrap_err();
        assert_eq!(
            again.detail.as_deref(),
            Some(&RejectionDetail::Rule {
                rule: Rule::NotArchived
            })
        );
    }

    #[test]
    fn undo_steps_of_the_appointment_flow() {
        let mut rows = clinic();
        run(
            &mut rows,
            &book(
                100,
                ANNA,
                DOYLE,
                "2031-03-03T09:00:00Z",
                "2031-03-03T09:30:00Z",
            ),
            Role::Reception,
        )
        .unwrap();
        // A check-in undone by reception; assistants only move forward.
        status(
            &mut rows,
            100,
            AppointmentStatus::CheckedIn,
            Role::Assistant,
        )
        .unwrap();
        assert_eq!(
            status(
                &mut rows,
                100,
                AppointmentStatus::Scheduled,
                Role::Assistant
            )
            .unwrap_err()
            .code,
            RejectCode::Forbidden
        );
        status(
            &mut rows,
            100,
            AppointmentStatus::Scheduled,
            Role::Reception,
        )
        .unwrap();
        // A cancellation undone while the slot is free; refused once someone took it.
        status(
            &mut rows,
            100,
            AppointmentStatus::Cancelled,
            Role::Reception,
        )
        .unwrap();
        run(
            &mut rows,
            &book(
                101,
                BEN,
                DOYLE,
                "2031-03-03T09:00:00Z",
                "2031-03-03T09:30:00Z",
            ),
            Role::Reception,
        )
        .unwrap();
        let r = status(
            &mut rows,
            100,
            AppointmentStatus::Scheduled,
            Role::Reception,
        )
        .unwrap_err();
        assert!(
            matches!(r.detail.as_deref(), Some(RejectionDetail::Clash { appointment_id, .. }) if *appointment_id == id(101)),
            "{r:?}"
        );
        // A no-show undone; completed visits stay completed.
        status(&mut rows, 101, AppointmentStatus::NoShow, Role::Reception).unwrap();
        status(
            &mut rows,
            101,
            AppointmentStatus::Scheduled,
            Role::Reception,
        )
        .unwrap();
        let r = status(
            &mut rows,
            101,
            AppointmentStatus::Completed,
            Role::Reception,
        )
        .unwrap_err();
        assert_eq!(
            r.detail.as_deref(),
            Some(&RejectionDetail::Transition {
                table: Table::Appointments,
                from: "scheduled".into(),
                to: "completed".into()
            })
        );
    }

    fn plan_as(rows: &mut Rows, m: &Mutation, who: Actor) -> Result<Vec<RowWrite>, Rejection> {
        match plan(m, &who, ts(NOW), rows) {
            Ok(w) => {
                rows.apply(&w);
                Ok(w)
            }
            Err(PlanError::Rejected(r)) => Err(r),
            Err(PlanError::Source(e)) => match e {},
        }
    }

    #[test]
    fn a_doctor_edits_only_their_own_records_until_an_admin_hands_one_over() {
        use crate::mutation::{
            AddTreatmentRecord, HandOverTreatmentRecord, TreatmentRecordPatch,
            UpdateTreatmentRecord,
        };
        let mut rows = clinic();
        let doyle = Actor {
            user_id: id(DOYLE),
            role: Role::Doctor,
        };
        let lee = Actor {
            user_id: id(LEE),
            role: Role::Doctor,
        };
        let admin = actor(Role::Admin);
        plan_as(
            &mut rows,
            &Mutation::AddTreatmentRecord(AddTreatmentRecord {
                id: id(300),
                patient_id: id(ANNA),
                appointment_id: None,
                notes: "n".into(),
                diagnosis: "d".into(),
                procedures: vec![],
                recorded_at: ts(NOW),
            }),
            doyle,
        )
        .unwrap();
        let edit = Mutation::UpdateTreatmentRecord(UpdateTreatmentRecord {
            id: id(300),
            base_version: 0,
            fields: TreatmentRecordPatch {
                notes: Some("amended".into()),
                ..Default::default()
            },
        });
        // The author may; another doctor is refused, told whose it is.
        plan_as(&mut rows, &edit, doyle).unwrap();
        let refused = plan_as(&mut rows, &edit, lee).unwrap_err();
        assert_eq!(refused.code, RejectCode::Forbidden);
        assert!(refused.message.contains("doyle's"), "{}", refused.message);
        assert_eq!(
            refused.detail.as_deref(),
            Some(&RejectionDetail::RecordOwner {
                doctor_id: id(DOYLE)
            })
        );
        // Only an admin hands a record over, and only to an active doctor.
        let hand_over = |to: u128| {
            Mutation::HandOverTreatmentRecord(HandOverTreatmentRecord {
                id: id(300),
                doctor_id: id(to),
            })
        };
        let r = plan_as(&mut rows, &hand_over(LEE), doyle).unwrap_err();
        assert_eq!(r.code, RejectCode::Forbidden);
        let r = plan_as(&mut rows, &hand_over(ANNA), admin).unwrap_err();
        assert_eq!(r.code, RejectCode::InvalidReference);
        let writes = plan_as(&mut rows, &hand_over(LEE), admin).unwrap();
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].after["doctor_id"], json_id(LEE));
        assert_eq!(writes[0].after["notes"], "amended", "content untouched");
        // Now Lee may edit it, and Doyle no longer.
        plan_as(&mut rows, &edit, lee).unwrap();
        let r = plan_as(&mut rows, &edit, doyle).unwrap_err();
        assert!(r.message.contains("lee's"), "{}", r.message);
    }

    fn json_id(n: u128) -> Value {
        Value::String(id(n).to_string())
    }

    #[test]
    fn the_planner_refuses_a_write_of_a_withheld_field_by_name() {
        let mut writes = vec![RowWrite {
            table: Table::Referrals,
            id: id(5),
            action: Action::Create,
            before: None,
            after: serde_json::json!({"id": id(5), "reason": "chest pain", "status": "draft"}),
            conflict_check: None,
        }];
        let r = ensure_fields_writable(&actor(Role::Reception), &writes).unwrap_err();
        assert_eq!(r.code, RejectCode::Forbidden);
        assert_eq!(
            r.message,
            "role reception may not write the reason of referrals: it is withheld from that role"
        );
        assert_eq!(
            r.detail.as_deref(),
            Some(&RejectionDetail::WithheldField {
                table: Table::Referrals,
                field: "reason".into()
            })
        );
        ensure_fields_writable(&actor(Role::Doctor), &writes).unwrap();
        // Without the field (the desk's redacted row, planned back): fine.
        writes[0].after = serde_json::json!({"id": id(5), "status": "draft"});
        ensure_fields_writable(&actor(Role::Reception), &writes).unwrap();
    }
}
