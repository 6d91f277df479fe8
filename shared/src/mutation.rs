//! Mutations: named, row-scoped intents with typed arguments.
//!
//! Terms:
//! - **mutation**: what a user asked for ("reschedule this appointment"), not
//!   the rows it will produce. The server decides the rows; the client replays
//!   the same intent on its local rows for an optimistic view.
//! - **mutation id**: a number that rises by one per client with every
//!   mutation; `(client_id, mutation_id)` names a mutation forever and makes
//!   retries safe.
//! - **base version**: for updates, the row version the user saw when editing.
//!   A field someone else changed after it is a conflict.
//! - **patch**: the fields an update changes, and only those. A field absent
//!   from a patch is left alone; `null` clears an optional field.

use crate::model::{
    AppointmentStatus, InvoiceLine, PaymentMethod, ReferralStatus, Role, Sex, Table, Timestamp,
    Urgency,
};
use crate::validate::{self, Errors, FieldCode, FieldError};
use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

/// Deserializes a present field (even `null`) as `Some`, so that a patch can
/// tell "absent" (`None`) from "clear" (`Some(None)`).
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A mutation with its identity, as pushed by a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct PendingMutation {
    /// Rises by one per client, starting at 1.
    pub mutation_id: u64,
    /// The intent.
    pub mutation: Mutation,
}

/// Every intent a client can send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
// Nothing but `type` and `args` in the envelope: a field a client thinks
// means something must not be dropped in silence.
#[serde(
    tag = "type",
    content = "args",
    rename_all = "snake_case",
    deny_unknown_fields
)]
pub enum Mutation {
    /// Admin: add a staff account.
    CreateStaff(CreateStaff),
    /// Admin: change a staff member's role.
    SetStaffRole(SetStaffRole),
    /// Admin: enable or disable an account.
    SetStaffActive(SetStaffActive),
    /// Register a patient.
    CreatePatient(CreatePatient),
    /// Change some of a patient's fields.
    UpdatePatient(UpdatePatient),
    /// Delete a patient (leaves a tombstone). Kept for older clients; the
    /// desk archives instead ([`Mutation::ArchivePatient`]).
    DeletePatient(DeletePatient),
    /// Archive a patient: the record stays (clinics keep records), the
    /// patient is no longer listed or bookable.
    ArchivePatient(ArchivePatient),
    /// Bring an archived patient back (the undo of an archive).
    RestorePatient(RestorePatient),
    /// Book an appointment.
    BookAppointment(BookAppointment),
    /// Move an appointment in time, or to another doctor.
    RescheduleAppointment(RescheduleAppointment),
    /// Move an appointment along its status flow.
    SetAppointmentStatus(SetAppointmentStatus),
    /// Doctor: write a treatment record.
    AddTreatmentRecord(AddTreatmentRecord),
    /// Doctor: edit a treatment record (their own: see
    /// [`Mutation::HandOverTreatmentRecord`]).
    UpdateTreatmentRecord(UpdateTreatmentRecord),
    /// Admin: make another doctor responsible for a treatment record, so
    /// that they may edit it (a doctor edits only their own records).
    HandOverTreatmentRecord(HandOverTreatmentRecord),
    /// Issue an invoice, or start a draft.
    CreateInvoice(CreateInvoice),
    /// Void an invoice (a draft, or an issued one) with a reason.
    VoidInvoice(VoidInvoice),
    /// Record a payment against an issued invoice.
    RecordPayment(RecordPayment),
    /// Replace a draft invoice's lines.
    UpdateInvoiceLines(UpdateInvoiceLines),
    /// Issue a draft invoice: its lines are final from then on.
    IssueInvoice(IssueInvoice),
    /// Pay back money received on a void invoice.
    RefundPayment(RefundPayment),
    /// Admin: add an entry to the price list.
    CreatePriceItem(CreatePriceItem),
    /// Admin: change or retire a price list entry.
    UpdatePriceItem(UpdatePriceItem),
    /// Add an inventory item.
    CreateInventoryItem(CreateInventoryItem),
    /// Change an item's name, unit or reorder level.
    UpdateInventoryItem(UpdateInventoryItem),
    /// Add or remove stock; deltas commute and never conflict.
    AdjustStock(AdjustStock),
    /// Doctor: refer a patient.
    CreateReferral(CreateReferral),
    /// Move a referral along its status flow.
    SetReferralStatus(SetReferralStatus),
}

/// Arguments of [`Mutation::CreateStaff`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct CreateStaff {
    /// New row id.
    pub id: Uuid,
    /// Login name.
    pub username: String,
    /// Name shown to others.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// Initial password; hashed by the server, never stored or echoed.
    pub password: String,
}

/// Arguments of [`Mutation::SetStaffRole`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct SetStaffRole {
    /// Staff row.
    pub id: Uuid,
    /// New role.
    pub role: Role,
}

/// Arguments of [`Mutation::SetStaffActive`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct SetStaffActive {
    /// Staff row.
    pub id: Uuid,
    /// Enabled or disabled.
    pub active: bool,
}

/// Arguments of [`Mutation::CreatePatient`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct CreatePatient {
    /// New row id.
    pub id: Uuid,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Date of birth.
    pub date_of_birth: NaiveDate,
    /// Phone.
    #[serde(default)]
    pub phone: Option<String>,
    /// E-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// Address.
    #[serde(default)]
    pub address: Option<String>,
    /// Sex or gender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub sex: Option<Sex>,
    /// Emergency contact: name and relation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub emergency_contact: Option<String>,
    /// Emergency contact's phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub emergency_phone: Option<String>,
    /// Health insurer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub insurer: Option<String>,
    /// Member number with the insurer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub insurance_number: Option<String>,
    /// Allergies and alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub alerts: Option<String>,
}

/// Fields of a patient an update may change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct PatientPatch {
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// Date of birth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<NaiveDate>,
    /// Phone; `null` clears it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    pub phone: Option<Option<String>>,
    /// E-mail; `null` clears it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    pub email: Option<Option<String>>,
    /// Address; `null` clears it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    pub address: Option<Option<String>>,
    /// Sex or gender; `null` clears it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[ts(optional)]
    pub sex: Option<Option<Sex>>,
    /// Emergency contact; `null` clears it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[ts(optional)]
    pub emergency_contact: Option<Option<String>>,
    /// Emergency contact's phone; `null` clears it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[ts(optional)]
    pub emergency_phone: Option<Option<String>>,
    /// Health insurer; `null` clears it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[ts(optional)]
    pub insurer: Option<Option<String>>,
    /// Member number; `null` clears it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[ts(optional)]
    pub insurance_number: Option<Option<String>>,
    /// Allergies and alerts; `null` clears it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "nullable"
    )]
    #[ts(optional)]
    pub alerts: Option<Option<String>>,
}

/// Arguments of [`Mutation::UpdatePatient`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct UpdatePatient {
    /// Patient row.
    pub id: Uuid,
    /// Version the edit was based on.
    pub base_version: u64,
    /// Changed fields.
    pub fields: PatientPatch,
}

/// Arguments of [`Mutation::DeletePatient`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct DeletePatient {
    /// Patient row.
    pub id: Uuid,
    /// Version the user saw when deciding to delete.
    pub base_version: u64,
}

/// Arguments of [`Mutation::ArchivePatient`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct ArchivePatient {
    /// Patient row.
    pub id: Uuid,
    /// Cancel the patient's future appointments in the same change. Without
    /// it, a patient with future appointments is not archived (the refusal
    /// says how many).
    #[serde(default)]
    pub cancel_future_appointments: bool,
}

/// Arguments of [`Mutation::RestorePatient`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct RestorePatient {
    /// Patient row.
    pub id: Uuid,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Arguments of [`Mutation::BookAppointment`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct BookAppointment {
    /// New row id.
    pub id: Uuid,
    /// The patient.
    pub patient_id: Uuid,
    /// The doctor.
    pub doctor_id: Uuid,
    /// Start.
    pub start: Timestamp,
    /// End.
    pub end: Timestamp,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
    /// An administrator's correction: entered after the fact, so it may
    /// start in the past. Admins only; the change log names it
    /// (`book_appointment_correction`).
    #[serde(default, skip_serializing_if = "is_false")]
    #[ts(as = "Option<bool>", optional)]
    pub correction: bool,
}

/// Arguments of [`Mutation::RescheduleAppointment`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct RescheduleAppointment {
    /// Appointment row.
    pub id: Uuid,
    /// Version the move was based on.
    pub base_version: u64,
    /// New start.
    pub start: Timestamp,
    /// New end.
    pub end: Timestamp,
    /// New doctor, if the appointment changes doctor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doctor_id: Option<Uuid>,
    /// An administrator's correction, which may move it into the past (see
    /// [`BookAppointment::correction`]).
    #[serde(default, skip_serializing_if = "is_false")]
    #[ts(as = "Option<bool>", optional)]
    pub correction: bool,
}

/// Arguments of [`Mutation::SetAppointmentStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct SetAppointmentStatus {
    /// Appointment row.
    pub id: Uuid,
    /// Next status; must be an allowed step from the current one.
    pub status: AppointmentStatus,
    /// When it happened, by the desk's clock (a check-in made offline
    /// keeps its real arrival time). Used for `checked_in`: it becomes the
    /// appointment's `checked_in_at`. Omitted: the applying side's time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub at: Option<Timestamp>,
}

/// Arguments of [`Mutation::AddTreatmentRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct AddTreatmentRecord {
    /// New row id.
    pub id: Uuid,
    /// The patient.
    pub patient_id: Uuid,
    /// The visit, if any.
    #[serde(default)]
    pub appointment_id: Option<Uuid>,
    /// Clinical notes.
    pub notes: String,
    /// Diagnosis.
    pub diagnosis: String,
    /// Procedures.
    #[serde(default)]
    pub procedures: Vec<String>,
    /// When written (client clock).
    pub recorded_at: Timestamp,
}

/// Fields of a treatment record an edit may change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct TreatmentRecordPatch {
    /// Notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Diagnosis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<String>,
    /// Procedures (replaces the list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub procedures: Option<Vec<String>>,
}

/// Arguments of [`Mutation::UpdateTreatmentRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct UpdateTreatmentRecord {
    /// Record row.
    pub id: Uuid,
    /// Version the edit was based on.
    pub base_version: u64,
    /// Changed fields.
    pub fields: TreatmentRecordPatch,
}

/// Arguments of [`Mutation::HandOverTreatmentRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct HandOverTreatmentRecord {
    /// Record row.
    pub id: Uuid,
    /// The doctor who becomes responsible for it (an active doctor).
    pub doctor_id: Uuid,
}

/// Arguments of [`Mutation::CreateInvoice`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct CreateInvoice {
    /// New row id.
    pub id: Uuid,
    /// The patient.
    pub patient_id: Uuid,
    /// The visit, if any.
    #[serde(default)]
    pub appointment_id: Option<Uuid>,
    /// Lines: at least one, unless a draft.
    pub lines: Vec<InvoiceLine>,
    /// When issued, or for a draft when started (client clock).
    pub issued_at: Timestamp,
    /// Start a draft: lines may change until it is issued
    /// ([`Mutation::IssueInvoice`]). Absent: issued at once.
    #[serde(default, skip_serializing_if = "is_false")]
    #[ts(as = "Option<bool>", optional)]
    pub draft: bool,
}

/// Arguments of [`Mutation::VoidInvoice`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct VoidInvoice {
    /// Invoice row.
    pub id: Uuid,
    /// Why (3 to 500 characters): kept on the invoice and in its history.
    #[serde(default)]
    pub reason: String,
}

/// Arguments of [`Mutation::UpdateInvoiceLines`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct UpdateInvoiceLines {
    /// Invoice row (a draft).
    pub id: Uuid,
    /// Version the edit was based on: lines changed by another desk since
    /// are a conflict, never overwritten.
    pub base_version: u64,
    /// The draft's new lines, all of them.
    pub lines: Vec<InvoiceLine>,
}

/// Arguments of [`Mutation::IssueInvoice`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct IssueInvoice {
    /// Invoice row (a draft with at least one line).
    pub id: Uuid,
    /// Version the desk showed: lines changed since are a conflict, so
    /// nothing is issued that the desk did not see.
    pub base_version: u64,
    /// When issued (client clock).
    pub issued_at: Timestamp,
}

/// Arguments of [`Mutation::RefundPayment`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct RefundPayment {
    /// New payment row id (a refund row).
    pub id: Uuid,
    /// The void invoice the money was paid on.
    pub invoice_id: Uuid,
    /// Amount paid back, in cents: at most what was paid and not yet
    /// refunded.
    pub amount_cents: i64,
    /// How it is paid back.
    pub method: PaymentMethod,
    /// Why (3 to 500 characters).
    pub reason: String,
    /// When paid back (client clock).
    pub refunded_at: Timestamp,
}

/// Arguments of [`Mutation::CreatePriceItem`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct CreatePriceItem {
    /// New row id.
    pub id: Uuid,
    /// Short code.
    pub code: String,
    /// What the invoice line says.
    pub description: String,
    /// Price of one, in cents.
    pub unit_price_cents: i64,
    /// Visit length this entry bills, in minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub visit_minutes: Option<u32>,
}

/// Fields of a price list entry an update may change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct PriceItemPatch {
    /// Short code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub code: Option<String>,
    /// What the invoice line says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub description: Option<String>,
    /// Price of one, in cents (lines already on invoices keep theirs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub unit_price_cents: Option<i64>,
    /// Visit length; `null` clears it.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[ts(optional, type = "number | null")]
    pub visit_minutes: Option<Option<u32>>,
    /// Retired, or back on offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub retired: Option<bool>,
}

/// Arguments of [`Mutation::UpdatePriceItem`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct UpdatePriceItem {
    /// Entry row.
    pub id: Uuid,
    /// Version the edit was based on.
    pub base_version: u64,
    /// Changed fields.
    pub fields: PriceItemPatch,
}

/// Arguments of [`Mutation::RecordPayment`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct RecordPayment {
    /// New payment row id.
    pub id: Uuid,
    /// The invoice paid.
    pub invoice_id: Uuid,
    /// Amount in cents.
    pub amount_cents: i64,
    /// How.
    pub method: PaymentMethod,
    /// When received (client clock).
    pub paid_at: Timestamp,
}

/// Arguments of [`Mutation::CreateInventoryItem`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct CreateInventoryItem {
    /// New row id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Unit.
    pub unit: String,
    /// Initial stock.
    pub quantity: i64,
    /// Reorder level.
    pub reorder_level: i64,
}

/// Fields of an inventory item an update may change (not the quantity:
/// that only moves by [`AdjustStock`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct InventoryItemPatch {
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Reorder level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reorder_level: Option<i64>,
}

/// Arguments of [`Mutation::UpdateInventoryItem`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct UpdateInventoryItem {
    /// Item row.
    pub id: Uuid,
    /// Version the edit was based on.
    pub base_version: u64,
    /// Changed fields.
    pub fields: InventoryItemPatch,
}

/// Arguments of [`Mutation::AdjustStock`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct AdjustStock {
    /// Item row.
    pub id: Uuid,
    /// Units added (positive) or taken (negative); not zero.
    pub delta: i64,
    /// Why (validated; for the client's pending list, not stored).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Arguments of [`Mutation::CreateReferral`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct CreateReferral {
    /// New row id.
    pub id: Uuid,
    /// The patient.
    pub patient_id: Uuid,
    /// To whom.
    pub referred_to: String,
    /// Clinical reason.
    pub reason: String,
    /// How soon.
    pub urgency: Urgency,
    /// When written (client clock).
    pub created_at: Timestamp,
}

/// Arguments of [`Mutation::SetReferralStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct SetReferralStatus {
    /// Referral row.
    pub id: Uuid,
    /// Next status.
    pub status: ReferralStatus,
}

/// What a mutation does to an account beyond its staff row. The server
/// carries it out in the same transaction (credentials and sessions are not
/// rows), so the list of such mutations lives here, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountEffect {
    /// A new account: its password hash is stored (hashed before the
    /// transaction, see [`Mutation::new_password`]).
    Created {
        /// The new account.
        user: Uuid,
    },
    /// Disabled: its sessions end.
    Disabled {
        /// The account.
        user: Uuid,
    },
    /// Enabled again.
    Enabled {
        /// The account.
        user: Uuid,
    },
    /// Its role changed: open sessions re-check what they may see.
    RoleChanged {
        /// The account.
        user: Uuid,
    },
}

impl Mutation {
    /// The account effect of this mutation, if any.
    pub fn account_effect(&self) -> Option<AccountEffect> {
        match self {
            Mutation::CreateStaff(a) => Some(AccountEffect::Created { user: a.id }),
            Mutation::SetStaffActive(a) if a.active => Some(AccountEffect::Enabled { user: a.id }),
            Mutation::SetStaffActive(a) => Some(AccountEffect::Disabled { user: a.id }),
            Mutation::SetStaffRole(a) => Some(AccountEffect::RoleChanged { user: a.id }),
            _ => None,
        }
    }

    /// A password this mutation carries (a new account's), which the server
    /// hashes before its write transaction (hashing is slow) and never
    /// stores or echoes in clear.
    pub fn new_password(&self) -> Option<&str> {
        match self {
            Mutation::CreateStaff(a) => Some(&a.password),
            _ => None,
        }
    }

    /// The mutation's wire name (`create_patient`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Mutation::CreateStaff(_) => "create_staff",
            Mutation::SetStaffRole(_) => "set_staff_role",
            Mutation::SetStaffActive(_) => "set_staff_active",
            Mutation::CreatePatient(_) => "create_patient",
            Mutation::UpdatePatient(_) => "update_patient",
            Mutation::DeletePatient(_) => "delete_patient",
            Mutation::ArchivePatient(_) => "archive_patient",
            Mutation::RestorePatient(_) => "restore_patient",
            Mutation::BookAppointment(_) => "book_appointment",
            Mutation::RescheduleAppointment(_) => "reschedule_appointment",
            Mutation::SetAppointmentStatus(_) => "set_appointment_status",
            Mutation::AddTreatmentRecord(_) => "add_treatment_record",
            Mutation::UpdateTreatmentRecord(_) => "update_treatment_record",
            Mutation::HandOverTreatmentRecord(_) => "hand_over_treatment_record",
            Mutation::CreateInvoice(_) => "create_invoice",
            Mutation::VoidInvoice(_) => "void_invoice",
            Mutation::RecordPayment(_) => "record_payment",
            Mutation::UpdateInvoiceLines(_) => "update_invoice_lines",
            Mutation::IssueInvoice(_) => "issue_invoice",
            Mutation::RefundPayment(_) => "refund_payment",
            Mutation::CreatePriceItem(_) => "create_price_item",
            Mutation::UpdatePriceItem(_) => "update_price_item",
            Mutation::CreateInventoryItem(_) => "create_inventory_item",
            Mutation::UpdateInventoryItem(_) => "update_inventory_item",
            Mutation::AdjustStock(_) => "adjust_stock",
            Mutation::CreateReferral(_) => "create_referral",
            Mutation::SetReferralStatus(_) => "set_referral_status",
        }
    }

    /// Every mutation's wire name, in declaration order (the permission
    /// matrix the UI uses is generated over this list).
    pub const KINDS: [&'static str; 27] = [
        "create_staff",
        "set_staff_role",
        "set_staff_active",
        "create_patient",
        "update_patient",
        "delete_patient",
        "archive_patient",
        "restore_patient",
        "book_appointment",
        "reschedule_appointment",
        "set_appointment_status",
        "add_treatment_record",
        "update_treatment_record",
        "hand_over_treatment_record",
        "create_invoice",
        "void_invoice",
        "record_payment",
        "update_invoice_lines",
        "issue_invoice",
        "refund_payment",
        "create_price_item",
        "update_price_item",
        "create_inventory_item",
        "update_inventory_item",
        "adjust_stock",
        "create_referral",
        "set_referral_status",
    ];

    /// The name the change log records: the wire name, except that an
    /// administrator's correction in the past says so
    /// (`book_appointment_correction`, `reschedule_appointment_correction`),
    /// so the exception is visible in every record's history.
    pub fn audit_name(&self) -> &'static str {
        match self {
            Mutation::BookAppointment(a) if a.correction => "book_appointment_correction",
            Mutation::RescheduleAppointment(a) if a.correction => {
                "reschedule_appointment_correction"
            }
            other => other.kind(),
        }
    }

    /// The table and id of the row the mutation is about.
    pub fn target(&self) -> (Table, Uuid) {
        match self {
            Mutation::CreateStaff(a) => (Table::Staff, a.id),
            Mutation::SetStaffRole(a) => (Table::Staff, a.id),
            Mutation::SetStaffActive(a) => (Table::Staff, a.id),
            Mutation::CreatePatient(a) => (Table::Patients, a.id),
            Mutation::UpdatePatient(a) => (Table::Patients, a.id),
            Mutation::DeletePatient(a) => (Table::Patients, a.id),
            Mutation::ArchivePatient(a) => (Table::Patients, a.id),
            Mutation::RestorePatient(a) => (Table::Patients, a.id),
            Mutation::BookAppointment(a) => (Table::Appointments, a.id),
            Mutation::RescheduleAppointment(a) => (Table::Appointments, a.id),
            Mutation::SetAppointmentStatus(a) => (Table::Appointments, a.id),
            Mutation::AddTreatmentRecord(a) => (Table::TreatmentRecords, a.id),
            Mutation::UpdateTreatmentRecord(a) => (Table::TreatmentRecords, a.id),
            Mutation::HandOverTreatmentRecord(a) => (Table::TreatmentRecords, a.id),
            Mutation::CreateInvoice(a) => (Table::Invoices, a.id),
            Mutation::VoidInvoice(a) => (Table::Invoices, a.id),
            Mutation::RecordPayment(a) => (Table::Payments, a.id),
            Mutation::UpdateInvoiceLines(a) => (Table::Invoices, a.id),
            Mutation::IssueInvoice(a) => (Table::Invoices, a.id),
            Mutation::RefundPayment(a) => (Table::Payments, a.id),
            Mutation::CreatePriceItem(a) => (Table::PriceItems, a.id),
            Mutation::UpdatePriceItem(a) => (Table::PriceItems, a.id),
            Mutation::CreateInventoryItem(a) => (Table::InventoryItems, a.id),
            Mutation::UpdateInventoryItem(a) => (Table::InventoryItems, a.id),
            Mutation::AdjustStock(a) => (Table::InventoryItems, a.id),
            Mutation::CreateReferral(a) => (Table::Referrals, a.id),
            Mutation::SetReferralStatus(a) => (Table::Referrals, a.id),
        }
    }

    /// Checks the arguments that can be checked without any row: required
    /// fields, lengths, formats, ranges. Entities are validated again once
    /// built, so this covers what is specific to the intent.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Errors::new();
        match self {
            Mutation::CreateStaff(a) => {
                if !validate::is_username(&a.username) {
                    e.add(
                        "username",
                        FieldCode::NotAUsername,
                        "must be 2 to 40 characters of a-z, 0-9, '.', '_' or '-'",
                    );
                }
                e.text("display_name", &a.display_name, validate::MAX_NAME);
                validate::password("password", &a.password, &mut e);
            }
            Mutation::UpdatePatient(a) if a.fields == PatientPatch::default() => {
                e.add("fields", FieldCode::NothingChanged, "changes nothing");
            }
            Mutation::UpdateTreatmentRecord(a) if a.fields == TreatmentRecordPatch::default() => {
                e.add("fields", FieldCode::NothingChanged, "changes nothing");
            }
            Mutation::UpdateInventoryItem(a) if a.fields == InventoryItemPatch::default() => {
                e.add("fields", FieldCode::NothingChanged, "changes nothing");
            }
            Mutation::CreateInvoice(a) => validate::invoice_lines(&a.lines, a.draft, &mut e),
            Mutation::UpdateInvoiceLines(a) => validate::invoice_lines(&a.lines, true, &mut e),
            Mutation::VoidInvoice(a) => validate::reason("reason", &a.reason, &mut e),
            Mutation::RecordPayment(a) => validate::amount("amount_cents", a.amount_cents, &mut e),
            Mutation::RefundPayment(a) => {
                validate::amount("amount_cents", a.amount_cents, &mut e);
                validate::reason("reason", &a.reason, &mut e);
            }
            Mutation::UpdatePriceItem(a) if a.fields == PriceItemPatch::default() => {
                e.add("fields", FieldCode::NothingChanged, "changes nothing");
            }
            Mutation::AdjustStock(a) => {
                if a.delta == 0 {
                    e.add("delta", FieldCode::Zero, "must not be zero");
                } else if a.delta.unsigned_abs() > 1_000_000 {
                    e.add_bounded(
                        "delta",
                        FieldCode::OutOfRange,
                        (Some(-1_000_000), Some(1_000_000)),
                        "must be between -1000000 and 1000000",
                    );
                }
                if let Some(r) = &a.reason {
                    e.optional_text("reason", r, validate::MAX_TEXT);
                }
            }
            _ => {}
        }
        e.finish()
    }
}
