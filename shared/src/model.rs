//! The clinic domain model: the synced tables and the entity stored in each.
//!
//! Terms:
//! - **table**: one kind of synced record ([`Table`]). Every table's rows are
//!   addressed by a UUIDv7 `id` made by whoever created the row.
//! - **entity**: the typed content of a row (e.g. [`Patient`]). On the wire and
//!   in storage an entity is its JSON object; the typed structs here are the
//!   single definition both sides validate against.
//! - **version**: the server's global change sequence number of the row's last
//!   change. **tombstone**: a deleted row, kept so that deletes sync.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The synced tables. The serialized name is the table's name on the wire and
/// in storage.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ts_rs::TS,
)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// Staff accounts (no credentials: those never leave the server).
    Staff,
    /// Patients.
    Patients,
    /// Appointments of a patient with a doctor.
    Appointments,
    /// Clinical records written by doctors.
    TreatmentRecords,
    /// Invoices with their line items.
    Invoices,
    /// Payments against invoices.
    Payments,
    /// Stocked consumables.
    InventoryItems,
    /// Referrals of a patient to a specialist.
    Referrals,
    /// The clinic's price list: what the desk bills, kept by admins.
    PriceItems,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Table; 9] = [
        Table::Staff,
        Table::Patients,
        Table::Appointments,
        Table::TreatmentRecords,
        Table::Invoices,
        Table::Payments,
        Table::InventoryItems,
        Table::Referrals,
        Table::PriceItems,
    ];

    /// The table's wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Staff => "staff",
            Table::Patients => "patients",
            Table::Appointments => "appointments",
            Table::TreatmentRecords => "treatment_records",
            Table::Invoices => "invoices",
            Table::Payments => "payments",
            Table::InventoryItems => "inventory_items",
            Table::Referrals => "referrals",
            Table::PriceItems => "price_items",
        }
    }

    /// Fields whose content is clinical: a concurrent edit of these is never
    /// merged or overwritten silently.
    pub fn clinical_fields(self) -> &'static [&'static str] {
        match self {
            Table::TreatmentRecords => &["notes", "diagnosis", "procedures"],
            Table::Referrals => &["reason"],
            _ => &[],
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A table name that is not one of [`Table::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown table `{0}`")]
pub struct UnknownTable(pub String);

impl FromStr for Table {
    type Err = UnknownTable;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Table::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTable(s.to_owned()))
    }
}

/// A staff member's role. Permissions follow from it (see [`crate::permissions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages staff accounts; sees everything, audits changes.
    Admin,
    /// Sees schedules and charts, writes treatment records and referrals.
    Doctor,
    /// Inventory and preparing treatments.
    Assistant,
    /// Front desk: patients, appointments, billing.
    Reception,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Doctor, Role::Assistant, Role::Reception];

    /// The role's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Doctor => "doctor",
            Role::Assistant => "assistant",
            Role::Reception => "reception",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}` (expected admin, doctor, assistant or reception)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// A point in time, UTC, whole seconds, serialized as `YYYY-MM-DDTHH:MM:SSZ`.
///
/// The fixed format makes the text sort in time order, which storage relies
/// on for range queries (a doctor's overlapping appointments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ts_rs::TS)]
#[ts(export, as = "String")]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// Truncates `t` to whole seconds.
    pub fn from_datetime(t: DateTime<Utc>) -> Self {
        Timestamp(DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t))
    }
    /// Seconds since the Unix epoch.
    pub fn from_unix(secs: i64) -> Option<Self> {
        DateTime::from_timestamp(secs, 0).map(Timestamp)
    }
    /// The time as a chrono value.
    pub fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }
    /// Seconds since the Unix epoch.
    pub fn unix(&self) -> i64 {
        self.0.timestamp()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}

impl FromStr for Timestamp {
    type Err = chrono::ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = DateTime::parse_from_rfc3339(s)?;
        Ok(Timestamp::from_datetime(t.with_timezone(&Utc)))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|_| {
            serde::de::Error::custom(format!(
                "`{s}` is not a date-time (expected RFC 3339, e.g. 2026-11-23T09:30:00Z)"
            ))
        })
    }
}

/// A staff member. Credentials are not part of the synced row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct Staff {
    /// Row id.
    pub id: Uuid,
    /// Login name: lowercase letters, digits, `.`, `_`, `-`.
    pub username: String,
    /// Name shown to other staff.
    pub display_name: String,
    /// What the account may do.
    pub role: Role,
    /// A disabled account cannot sign in and its sessions are closed.
    pub active: bool,
}

/// A patient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct Patient {
    /// Row id.
    pub id: Uuid,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Date of birth (`YYYY-MM-DD`).
    pub date_of_birth: NaiveDate,
    /// Phone number: digits, spaces, `+ - ( ) .`.
    #[serde(default)]
    pub phone: Option<String>,
    /// E-mail address.
    #[serde(default)]
    pub email: Option<String>,
    /// Postal address, free text.
    #[serde(default)]
    pub address: Option<String>,
    /// Sex or gender as the patient gives it. The fields from here to
    /// `alerts` are absent when not recorded (rows written before they
    /// existed read the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub sex: Option<Sex>,
    /// Whom to call in an emergency: name and relation, free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub emergency_contact: Option<String>,
    /// That person's phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub emergency_phone: Option<String>,
    /// The health insurer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub insurer: Option<String>,
    /// The member number with that insurer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub insurance_number: Option<String>,
    /// Allergies and alerts everyone who books, prepares or treats the
    /// patient must see ("Penicillin allergy", "latex", "needs a
    /// wheelchair"): a banner on the chart and in the booking form. Not
    /// findings: those belong in treatment records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub alerts: Option<String>,
    /// When the patient was archived: the record is kept, but the patient
    /// is no longer listed or bookable. Absent for active patients (so their
    /// rows read as before this field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub archived_at: Option<Timestamp>,
}

/// Where an appointment is in its life.
///
/// `scheduled → checked_in → in_progress → completed`, or `cancelled` /
/// `no_show` from `scheduled` (and `cancelled` from `checked_in`). The desk's
/// undo steps go back to `scheduled`: from `checked_in` (a check-in made by
/// mistake), `cancelled` (reinstated; the slot must still be free) and
/// `no_show` (the patient came after all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum AppointmentStatus {
    /// Booked.
    Scheduled,
    /// The patient has arrived.
    CheckedIn,
    /// With the doctor.
    InProgress,
    /// Done.
    Completed,
    /// Called off; frees the slot.
    Cancelled,
    /// The patient did not come; frees nothing (the slot has passed).
    NoShow,
}

impl AppointmentStatus {
    /// Whether `self → next` is an allowed step.
    pub fn can_become(self, next: AppointmentStatus) -> bool {
        use AppointmentStatus::*;
        matches!(
            (self, next),
            (Scheduled, CheckedIn)
                | (Scheduled, Cancelled)
                | (Scheduled, NoShow)
                | (CheckedIn, InProgress)
                | (CheckedIn, Cancelled)
                | (InProgress, Completed)
                | (CheckedIn, Scheduled)
                | (Cancelled, Scheduled)
                | (NoShow, Scheduled)
        )
    }

    /// Whether an appointment in this status occupies its doctor's time.
    pub fn occupies_slot(self) -> bool {
        !matches!(
            self,
            AppointmentStatus::Cancelled | AppointmentStatus::NoShow
        )
    }

    /// The status's wire name.
    pub fn as_str(self) -> &'static str {
        use AppointmentStatus::*;
        match self {
            Scheduled => "scheduled",
            CheckedIn => "checked_in",
            InProgress => "in_progress",
            Completed => "completed",
            Cancelled => "cancelled",
            NoShow => "no_show",
        }
    }
}

/// An appointment of a patient with a doctor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct Appointment {
    /// Row id.
    pub id: Uuid,
    /// The patient.
    pub patient_id: Uuid,
    /// The doctor (a staff row with role doctor).
    pub doctor_id: Uuid,
    /// Start, inclusive.
    pub start: Timestamp,
    /// End, exclusive; after `start`.
    pub end: Timestamp,
    /// Life-cycle state.
    pub status: AppointmentStatus,
    /// Why the patient comes, short free text.
    #[serde(default)]
    pub reason: Option<String>,
    /// When the patient arrived (checked in), by the clock of the desk that
    /// checked them in: the waiting room's "waiting since". Kept through
    /// the visit; cleared when the check-in is undone. Absent before
    /// arrival (so rows read as before this field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub checked_in_at: Option<Timestamp>,
}

/// A doctor's record of a treatment: clinical content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct TreatmentRecord {
    /// Row id.
    pub id: Uuid,
    /// The patient.
    pub patient_id: Uuid,
    /// The doctor responsible for it, the only one who may edit it: the
    /// doctor who wrote it, unless an admin handed it over
    /// (`hand_over_treatment_record`; the change log keeps the author).
    pub doctor_id: Uuid,
    /// The visit it belongs to, if any.
    #[serde(default)]
    pub appointment_id: Option<Uuid>,
    /// Clinical notes. Withheld from a doctor for a patient outside their
    /// care (see [`crate::care`]), so it decodes as empty there.
    #[serde(default)]
    pub notes: String,
    /// Diagnosis (withheld like `notes`).
    #[serde(default)]
    pub diagnosis: String,
    /// Procedures performed (withheld like `notes`).
    #[serde(default)]
    pub procedures: Vec<String>,
    /// When the doctor recorded it (client clock).
    pub recorded_at: Timestamp,
}

/// One line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct InvoiceLine {
    /// What was provided.
    pub description: String,
    /// How many, at least 1.
    pub quantity: u32,
    /// Price of one, in cents.
    pub unit_price_cents: i64,
}

/// Whether an invoice still expects payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    /// Being written: lines may change, takes no payments, owes nothing.
    Draft,
    /// Issued and not fully paid.
    Open,
    /// Paid in full.
    Paid,
    /// Cancelled with a reason; takes no payments. What was paid on it is
    /// returned with refunds.
    Void,
}

impl InvoiceStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Draft => "draft",
            InvoiceStatus::Open => "open",
            InvoiceStatus::Paid => "paid",
            InvoiceStatus::Void => "void",
        }
    }
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// An invoice for a patient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct Invoice {
    /// Row id.
    pub id: Uuid,
    /// The patient billed.
    pub patient_id: Uuid,
    /// The visit billed, if any.
    #[serde(default)]
    pub appointment_id: Option<Uuid>,
    /// Line items: at least one once issued (a draft may have none yet).
    pub lines: Vec<InvoiceLine>,
    /// Sum of the lines, in cents (computed).
    pub total_cents: i64,
    /// Sum of payments received, in cents (computed by the server).
    /// Refunds do not lower it: they are counted in `refunded_cents`.
    pub paid_cents: i64,
    /// Draft, open, paid or void (computed from payments, or voided).
    pub status: InvoiceStatus,
    /// When it was issued (client clock); for a draft, when it was started.
    pub issued_at: Timestamp,
    /// Why it was voided (only on a void invoice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub void_reason: Option<String>,
    /// When it was voided (client clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub voided_at: Option<Timestamp>,
    /// Sum of refunds paid back, in cents (only on a void invoice); at most
    /// `paid_cents`. Absent when nothing was refunded.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[ts(as = "Option<i64>", optional)]
    pub refunded_cents: i64,
}

impl Invoice {
    /// The total of `lines`, or `None` if it overflows.
    pub fn total_of(lines: &[InvoiceLine]) -> Option<i64> {
        lines.iter().try_fold(0i64, |sum, l| {
            l.unit_price_cents
                .checked_mul(i64::from(l.quantity))
                .and_then(|x| sum.checked_add(x))
        })
    }

    /// What is still owed: nothing on a draft or a void invoice.
    pub fn outstanding_cents(&self) -> i64 {
        match self.status {
            InvoiceStatus::Open => self.total_cents - self.paid_cents,
            _ => 0,
        }
    }

    /// What the clinic still has to pay back: what was paid on a void
    /// invoice and not yet refunded.
    pub fn refund_due_cents(&self) -> i64 {
        match self.status {
            InvoiceStatus::Void => self.paid_cents - self.refunded_cents,
            _ => 0,
        }
    }
}

/// How a payment was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    /// Cash at the desk.
    Cash,
    /// Card terminal.
    Card,
    /// Bank transfer.
    Transfer,
    /// Paid by an insurer.
    Insurance,
}

/// A payment against an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct Payment {
    /// Row id.
    pub id: Uuid,
    /// The invoice paid.
    pub invoice_id: Uuid,
    /// Amount in cents, positive.
    pub amount_cents: i64,
    /// How it was paid.
    pub method: PaymentMethod,
    /// When it was received (client clock).
    pub paid_at: Timestamp,
    /// The staff member who took it (or, for a refund, paid it back).
    pub received_by: Uuid,
    /// Money paid back to the patient rather than received: the amount
    /// counts against the day's takings. Absent on a payment.
    #[serde(default, skip_serializing_if = "is_false")]
    #[ts(as = "Option<bool>", optional)]
    pub refund: bool,
    /// Why the money was paid back (refunds only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub reason: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One entry of the clinic's price list: what the desk puts on an invoice
/// line with a click. Admins keep it; an entry is retired, never deleted,
/// so that old invoices still read the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct PriceItem {
    /// Row id.
    pub id: Uuid,
    /// Short code the clinic uses ("C30", "ECG"), unique among entries.
    pub code: String,
    /// What the invoice line says.
    pub description: String,
    /// Price of one, in cents.
    pub unit_price_cents: i64,
    /// Visit length this entry bills, in minutes: a draft started from a
    /// visit of that length gets this line. Absent: added by hand only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub visit_minutes: Option<u32>,
    /// Retired: no longer offered for new lines.
    #[serde(default, skip_serializing_if = "is_false")]
    #[ts(as = "Option<bool>", optional)]
    pub retired: bool,
}

/// A stocked consumable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct InventoryItem {
    /// Row id.
    pub id: Uuid,
    /// Item name.
    pub name: String,
    /// Unit of count ("box", "ml", "pcs").
    pub unit: String,
    /// Units in stock; never below zero.
    pub quantity: i64,
    /// At or below this, the item needs reordering.
    pub reorder_level: i64,
}

/// A patient's sex or gender, as registration forms ask it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    /// Female.
    Female,
    /// Male.
    Male,
    /// Diverse (neither, or not only one of them).
    Diverse,
}

/// How soon a referral should be seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    /// Normal waiting times.
    Routine,
    /// As soon as possible.
    Urgent,
}

/// Where a referral is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum ReferralStatus {
    /// Written, not yet sent.
    Draft,
    /// Sent to the specialist.
    Sent,
    /// The specialist accepted it.
    Accepted,
    /// The patient was seen.
    Completed,
    /// Withdrawn.
    Cancelled,
}

impl ReferralStatus {
    /// Every status, in the order of the flow.
    pub const ALL: [ReferralStatus; 5] = [
        ReferralStatus::Draft,
        ReferralStatus::Sent,
        ReferralStatus::Accepted,
        ReferralStatus::Completed,
        ReferralStatus::Cancelled,
    ];

    /// The wire name (`"draft"`, `"sent"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ReferralStatus::Draft => "draft",
            ReferralStatus::Sent => "sent",
            ReferralStatus::Accepted => "accepted",
            ReferralStatus::Completed => "completed",
            ReferralStatus::Cancelled => "cancelled",
        }
    }

    /// Whether `self → next` is an allowed step.
    pub fn can_become(self, next: ReferralStatus) -> bool {
        use ReferralStatus::*;
        matches!(
            (self, next),
            (Draft, Sent)
                | (Sent, Accepted)
                | (Accepted, Completed)
                | (Draft, Cancelled)
                | (Sent, Cancelled)
                | (Accepted, Cancelled)
        )
    }
}

/// A referral of a patient to a specialist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct Referral {
    /// Row id.
    pub id: Uuid,
    /// The patient referred.
    pub patient_id: Uuid,
    /// The referring doctor.
    pub referring_doctor_id: Uuid,
    /// Who the patient is referred to (specialty, clinic or person).
    pub referred_to: String,
    /// Clinical reason. Withheld from roles that may not read it (absent
    /// from the row they receive, see [`crate::field_access`]), so it
    /// decodes as empty there.
    #[serde(default)]
    pub reason: String,
    /// How soon.
    pub urgency: Urgency,
    /// Where it is.
    pub status: ReferralStatus,
    /// When it was written (client clock).
    pub created_at: Timestamp,
}

/// One synced row as it travels: table, id, version, and the entity's JSON
/// (`null` for a tombstone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct SyncRow {
    /// The row's table.
    pub table: Table,
    /// The row's id.
    pub id: Uuid,
    /// Sequence number of the row's last change.
    pub version: u64,
    /// A tombstone: the row was deleted.
    pub deleted: bool,
    /// The entity, absent for tombstones.
    pub data: Option<serde_json::Value>,
}
