//! The wire protocol between clients and the server: HTTP bodies and
//! WebSocket messages, all JSON. `docs/PROTOCOL.md` explains them; the golden
//! tests in `tests/golden.rs` freeze their exact shape.
//!
//! Terms:
//! - **cursor**: the highest change sequence number a client has applied. A
//!   pull or a WebSocket `hello` from cursor `c` returns every row the caller
//!   may see whose version is above `c`.
//! - **head**: the server's highest committed sequence number.
//! - **ack**: `last_mutation_id`, the highest mutation id of the calling
//!   client the server has processed (applied or rejected). It arrives in the
//!   same message as the changes that contain those mutations' effects.

use crate::model::{Role, Staff, SyncRow, Table, Timestamp};
use crate::mutation::PendingMutation;
use crate::validate::FieldError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Protocol version spoken by this build, sent in `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Limits the server enforces (documented in PROTOCOL.md).
pub mod limits {
    /// Largest HTTP request body, in bytes.
    pub const MAX_BODY_BYTES: usize = 1024 * 1024;
    /// Largest WebSocket message, in bytes.
    pub const MAX_WS_MESSAGE_BYTES: usize = 1024 * 1024;
    /// Most mutations in one push.
    pub const MAX_PUSH_MUTATIONS: usize = 500;
    /// Default page of a pull, and the page size of WebSocket catch-up.
    pub const DEFAULT_PAGE_ROWS: usize = 1000;
    /// Largest page of a pull.
    pub const MAX_PAGE_ROWS: usize = 5000;
    /// Longest long-poll wait, in seconds.
    pub const MAX_WAIT_SECONDS: u64 = 60;
    /// Seconds a WebSocket may stay silent before it is closed.
    pub const WS_IDLE_SECONDS: u64 = 45;
    /// Seconds after upgrade within which `hello` must arrive.
    pub const WS_HELLO_SECONDS: u64 = 10;
    /// Most records in one `POST /v1/audit/views` report.
    pub const MAX_VIEWS_PER_REPORT: usize = 100;
    /// Default page of the audit listings (`/v1/audit/*`).
    pub const DEFAULT_AUDIT_PAGE: usize = 100;
    /// Largest page of the audit listings.
    pub const MAX_AUDIT_PAGE: usize = 1000;
}

/// Machine-readable error codes. Each says whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request or frame is malformed (not JSON, wrong types, unknown type).
    BadRequest,
    /// A field's value is invalid; `field` names it.
    InvalidField,
    /// No token, an unknown token, or wrong credentials.
    Unauthorized,
    /// The token has expired: sign in again.
    TokenExpired,
    /// The caller's role may not do this.
    Forbidden,
    /// No such record, or not visible to the caller.
    NotFound,
    /// The body or frame is larger than the limit.
    PayloadTooLarge,
    /// A mutation id arrived before the ones preceding it.
    OutOfOrder,
    /// Too many requests; slow down.
    RateLimited,
    /// The server is shutting down or overloaded; try again.
    Unavailable,
    /// The client fell too far behind the live stream; reconnect and catch up.
    Lagged,
    /// The account's role or status changed; reconnect.
    SessionChanged,
    /// The password was reset by an administrator (or no longer meets the
    /// policy): change it with `POST /v1/password` before anything else.
    PasswordChangeRequired,
    /// The patient is not in the caller's care (see `care`): their clinical
    /// records are read only after breaking the glass
    /// (`POST /v1/patients/{id}/glass`).
    NotInCare,
    /// A server fault; nothing was written.
    Internal,
}

impl ErrorCode {
    /// Whether the same request may succeed later without change.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::OutOfOrder
                | ErrorCode::RateLimited
                | ErrorCode::Unavailable
                | ErrorCode::Lagged
                | ErrorCode::SessionChanged
                | ErrorCode::Internal
        )
    }
}

/// An error body (HTTP) or error frame (WebSocket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct ErrorBody {
    /// What kind of error.
    pub code: ErrorCode,
    /// For a person; never contains record contents.
    pub message: String,
    /// The offending field or JSON path, when one is to blame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Whether retrying the same request can help.
    pub retryable: bool,
}

impl ErrorBody {
    /// An error with a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
            field: None,
            retryable: code.retryable(),
        }
    }
    /// Names the field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

/// Why a mutation was refused. Refusals are final: retrying the same
/// mutation gets the same answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// Arguments invalid; `fields` says which.
    Validation,
    /// The caller's role may not do this.
    Forbidden,
    /// The target row does not exist (or was deleted).
    NotFound,
    /// The id is already taken by another row.
    AlreadyExists,
    /// A field was changed by someone else since the base version.
    Conflict,
    /// The time is taken: the doctor, or the patient (who cannot be in two
    /// places at once), already has an appointment then. `detail` is the
    /// `clash` naming that appointment.
    DoubleBooked,
    /// The stock would go below zero.
    InsufficientStock,
    /// The patient is unknown or deleted.
    PatientUnavailable,
    /// A referenced row (doctor, appointment, invoice) is unknown or unsuitable.
    InvalidReference,
    /// The status change is not an allowed step.
    InvalidTransition,
    /// The request breaks another clinic rule (e.g. paying a void invoice).
    RuleViolation,
    /// The mutation id was already processed with different contents: a
    /// client must never reuse an id for another change. Nothing of this
    /// one was applied; the first one's outcome stands.
    MutationIdReused,
}

/// A field changed by someone else since the base version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct FieldConflict {
    /// The field.
    pub field: String,
    /// The value this mutation wanted to write.
    pub yours: serde_json::Value,
    /// The value now on the server.
    pub theirs: serde_json::Value,
    /// Whether the field is clinical content (never merged silently).
    pub clinical: bool,
    /// The value at the base version: what the user saw before either
    /// change (absent in refusals from older servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub base: Option<serde_json::Value>,
    /// Who made the latest change to the field (staff id; absent for
    /// server tools and older servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub changed_by: Option<Uuid>,
    /// When the server applied that change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub changed_at: Option<Timestamp>,
}

/// Whose time an existing appointment already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum ClashWith {
    /// The doctor is booked then (double booking).
    Doctor,
    /// The patient is booked then, with this or another doctor.
    Patient,
}

/// What is wrong with a record a mutation refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceProblem {
    /// No such record.
    Unknown,
    /// The record was deleted.
    Deleted,
    /// The patient is archived.
    Archived,
    /// The staff member is not a doctor.
    NotADoctor,
    /// The account is disabled.
    Disabled,
    /// The appointment belongs to another patient.
    OtherPatient,
}

/// A clinic rule behind a `rule_violation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// An administrator cannot remove their own admin role.
    OwnAdminRole,
    /// An administrator cannot disable their own account.
    OwnAccount,
    /// The invoice is already void.
    InvoiceNotVoidable,
    /// The invoice is a draft, paid or void and takes no payments.
    InvoiceClosed,
    /// The invoice is issued: its lines are final (void it and bill again).
    InvoiceIssued,
    /// The invoice is a draft with no lines: nothing to issue.
    InvoiceEmpty,
    /// A refund is for a void invoice, up to what was paid on it and not
    /// yet refunded (see `outstanding_cents` for that amount).
    RefundNotDue,
    /// The invoice total overflows.
    TotalTooLarge,
    /// The patient is already archived.
    AlreadyArchived,
    /// The patient is not archived.
    NotArchived,
    /// The patient still has future appointments (see `future_appointments`).
    HasFutureAppointments,
    /// A retried mutation whose result is no longer kept.
    ResultExpired,
    /// A stored record does not decode (a server fault).
    Unreadable,
}

/// Machine-readable facts behind a refusal, so that a front end can say
/// it in words ("Dr Doyle already has Anna Meyer at 15:30–16:00") in the
/// clinic's time zone, with the names it knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RejectionDetail {
    /// The time is taken (`double_booked`): the appointment that holds it.
    Clash {
        /// Whose time it is: the doctor's or the patient's.
        with: ClashWith,
        /// The appointment already there.
        appointment_id: Uuid,
        /// Its patient.
        patient_id: Uuid,
        /// Its doctor.
        doctor_id: Uuid,
        /// Its start.
        start: Timestamp,
        /// Its end.
        end: Timestamp,
    },
    /// The patient still has future appointments (`rule_violation`,
    /// `has_future_appointments`): archive with `cancel_future_appointments`.
    FutureAppointments {
        /// How many.
        count: u32,
        /// Which.
        appointment_ids: Vec<Uuid>,
    },
    /// The status step is not allowed (`invalid_transition`).
    Transition {
        /// Whose status (`appointments` or `referrals`).
        table: Table,
        /// The status now (wire name).
        from: String,
        /// The status asked for.
        to: String,
    },
    /// Not enough stock (`insufficient_stock`).
    Stock {
        /// Units in stock.
        available: i64,
        /// Units asked for.
        requested: i64,
    },
    /// The payment is larger than what is owed (`rule_violation`).
    Outstanding {
        /// Cents still owed.
        outstanding_cents: i64,
    },
    /// A referenced record is unknown or unsuitable (`invalid_reference`,
    /// `patient_unavailable`, `not_found`).
    Reference {
        /// Its table.
        table: Table,
        /// Its id.
        id: Uuid,
        /// What is wrong with it.
        problem: ReferenceProblem,
    },
    /// The treatment record is another doctor's (`forbidden`): a doctor
    /// edits only the records they are responsible for, unless an admin
    /// hands the record over (`hand_over_treatment_record`).
    RecordOwner {
        /// The doctor responsible for the record (its author, unless an
        /// admin handed it over).
        doctor_id: Uuid,
    },
    /// A field the role may not read, so may not write either
    /// (`forbidden`); see `clinic_shared::field_access`.
    WithheldField {
        /// Its table.
        table: Table,
        /// The field.
        field: String,
    },
    /// Which clinic rule (`rule_violation`).
    Rule {
        /// The rule.
        rule: Rule,
    },
}

/// A refused mutation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct Rejection {
    /// Why.
    pub code: RejectCode,
    /// For a person (English, for logs and the CLI); never quotes clinical
    /// content. A desk composes its own sentence from `code` and `detail`.
    pub message: String,
    /// Invalid fields, for `validation`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
    /// Both values of every conflicting field, for `conflict`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<FieldConflict>,
    /// The facts behind the refusal, when there are any beyond the code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional, as = "Option<RejectionDetail>")]
    pub detail: Option<Box<RejectionDetail>>,
}

impl Rejection {
    /// A rejection with a message and nothing else.
    pub fn new(code: RejectCode, message: impl Into<String>) -> Self {
        Rejection {
            code,
            message: message.into(),
            fields: vec![],
            conflicts: vec![],
            detail: None,
        }
    }
    /// With the facts behind it.
    pub fn with_detail(mut self, detail: RejectionDetail) -> Self {
        // Boxed: most refusals have none, and a refusal travels in every
        // planner result (keeps `Result<_, Rejection>` small).
        self.detail = Some(Box::new(detail));
        self
    }
    /// A validation rejection naming the fields.
    pub fn validation(fields: Vec<FieldError>) -> Self {
        let names: Vec<String> = fields.iter().map(|f| f.field.replace('_', " ")).collect();
        let message = format!("please correct: {}", names.join(", "));
        Rejection {
            code: RejectCode::Validation,
            message,
            fields,
            conflicts: vec![],
            detail: None,
        }
    }
}

/// What became of one pushed mutation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum MutationOutcome {
    /// Applied; its effects carry versions up to `seq`. The client drops the
    /// mutation from its outbox once its cursor reaches `seq`.
    Applied {
        /// Highest sequence number the mutation wrote.
        seq: u64,
    },
    /// Refused for good; nothing was written.
    Rejected {
        /// Why.
        rejection: Rejection,
    },
    /// Not processed now (e.g. out of order, server busy); send it again.
    Retry {
        /// Why.
        error: ErrorBody,
    },
}

/// The result of one mutation of a push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct MutationResult {
    /// The mutation's id.
    pub mutation_id: u64,
    /// What became of it.
    #[serde(flatten)]
    pub outcome: MutationOutcome,
}

/// `POST /v1/login` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Login name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// `POST /v1/login` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct LoginResponse {
    /// Bearer token for `Authorization: Bearer …` and `hello`.
    pub token: String,
    /// When the token stops working.
    pub expires_at: Timestamp,
    /// The signed-in staff member.
    pub user: Staff,
    /// The clinic's time zone (IANA name, e.g. `Europe/Berlin`): everything
    /// a person sees or types is in it. Absent from older servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub time_zone: Option<String>,
    /// The password must be changed (`POST /v1/password`) before any other
    /// request but `GET /v1/me` and `POST /v1/logout` is served.
    #[serde(default)]
    pub must_change_password: bool,
}

/// `POST /v1/password` body: a signed-in user changes their own password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct PasswordChangeRequest {
    /// The password now in use.
    pub current_password: String,
    /// The new one (at least 12 characters, not a common password).
    pub new_password: String,
}

/// `POST /v1/password` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct PasswordChangeResponse {
    /// Other sessions of the account that were ended (this one stays).
    pub other_sessions_ended: u64,
    /// The account's security epoch after the change.
    pub epoch: u64,
}

/// `POST /v1/staff/{id}/password` body: an administrator sets a new
/// password; the account must change it at its next sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetRequest {
    /// The temporary password (same policy as any password).
    pub new_password: String,
}

/// Answer of the endpoints that end sessions (`POST /v1/logout?everywhere=true`,
/// `POST /v1/staff/{id}/end-sessions`, `POST /v1/staff/{id}/password`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct SessionsEnded {
    /// Sessions that were ended.
    pub sessions_ended: u64,
    /// The account's security epoch after the change.
    pub epoch: u64,
}

/// `POST /v1/push` body, and the WebSocket `push` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// The pushing client (one per installation), bound to the first user
    /// who pushes with it.
    pub client_id: Uuid,
    /// Mutations in ascending `mutation_id` order.
    pub mutations: Vec<PendingMutation>,
}

/// `POST /v1/push` answer: one result per mutation, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct PushResponse {
    /// Results, same order as the request.
    pub results: Vec<MutationResult>,
    /// The server epoch (see `PullResponse::server_epoch`): a client checks
    /// it before it applies the results, which a restored server computed.
    #[serde(default)]
    pub server_epoch: String,
}

/// `GET /v1/pull` answer: a page of changed rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct PullResponse {
    /// Rows the caller may see with `cursor_in < version <= cursor`, by version.
    pub rows: Vec<SyncRow>,
    /// The cursor to store once `rows` are applied, and to pull from next.
    pub cursor: u64,
    /// Whether more rows are waiting past `cursor` (pull again at once).
    pub more: bool,
    /// The highest mutation id of `client_id` the server has processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_mutation_id: Option<u64>,
    /// The caller's role now. When it differs from the role the client
    /// synced under, the client purges every table the new role may not
    /// read and syncs again from cursor 0 (see PROTOCOL.md, revocation).
    pub role: Role,
    /// The account's security epoch: it rises with every password change,
    /// disable or enable, role change and "end all sessions".
    pub epoch: u64,
    /// The highest committed sequence number when this page was read. A
    /// requested cursor above it means the database is older than the
    /// client's copy (restored from a backup): re-sync from 0.
    #[serde(default)]
    pub head: u64,
    /// The server epoch: made with the database and anew by every restore.
    /// A client that sees it change re-syncs from 0 (PROTOCOL.md §7.8).
    #[serde(default)]
    pub server_epoch: String,
}

/// One entry of a record's audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct HistoryEntry {
    /// Change sequence number.
    pub seq: u64,
    /// When the server applied it.
    pub at: Timestamp,
    /// `create`, `update` or `delete`.
    pub action: String,
    /// Who (staff id), absent for server-side tools.
    pub actor_id: Option<Uuid>,
    /// Their display name at the time of reading.
    pub actor_name: Option<String>,
    /// From which client installation.
    pub client_id: Option<Uuid>,
    /// Which mutation.
    pub mutation_id: Option<u64>,
    /// The mutation's name (`update_patient`, …), or the tool's.
    pub mutation: String,
    /// The row before (absent for creates).
    pub before: Option<serde_json::Value>,
    /// The row after (absent for deletes).
    pub after: Option<serde_json::Value>,
}

/// `GET /v1/history/{table}/{id}` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct HistoryResponse {
    /// Table.
    pub table: Table,
    /// Row id.
    pub id: Uuid,
    /// Changes, oldest first.
    pub entries: Vec<HistoryEntry>,
}

/// One record a person opened in the desk, for `POST /v1/audit/views`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct ViewedRecord {
    /// Table of the record (`patients` for a chart).
    pub table: Table,
    /// Row id.
    pub id: Uuid,
}

/// `POST /v1/audit/views` body: records a person opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct ViewReport {
    /// The reporting client installation.
    pub client_id: Uuid,
    /// What was opened (at most `limits::MAX_VIEWS_PER_REPORT`).
    pub views: Vec<ViewedRecord>,
}

/// `POST /v1/audit/views` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct ViewsRecorded {
    /// Access-log entries written (one per viewed record).
    pub recorded: usize,
}

/// How clinical content reached a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum AccessKind {
    /// The desk reported that the person opened the record.
    View,
    /// The record's change history was read (`GET /v1/history`).
    History,
    /// Rows were sent in answer to `GET /v1/pull`.
    Pull,
    /// Rows were sent in a WebSocket catch-up page.
    WsCatchUp,
    /// Rows were sent in a live WebSocket batch.
    WsLive,
    /// A doctor broke the glass for a patient outside their care; `reason`
    /// is what they typed.
    BreakTheGlass,
    /// A patient's clinical records were sent in answer to
    /// `GET /v1/patients/{id}/clinical` or a break of the glass.
    Clinical,
}

impl AccessKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessKind::View => "view",
            AccessKind::History => "history",
            AccessKind::Pull => "pull",
            AccessKind::WsCatchUp => "ws_catch_up",
            AccessKind::WsLive => "ws_live",
            AccessKind::BreakTheGlass => "break_the_glass",
            AccessKind::Clinical => "clinical",
        }
    }
}

impl std::str::FromStr for AccessKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            AccessKind::View,
            AccessKind::History,
            AccessKind::Pull,
            AccessKind::WsCatchUp,
            AccessKind::WsLive,
            AccessKind::BreakTheGlass,
            AccessKind::Clinical,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| format!("unknown access kind `{s}`"))
    }
}

/// One entry of the access log: one delivery of one patient's records of
/// one table to one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct AccessLogEntry {
    /// Position in the access log (its hash chain follows this order).
    pub seq: u64,
    /// When the server delivered or recorded it.
    pub at: Timestamp,
    /// Who received or opened it.
    pub user_id: Uuid,
    /// Their display name at the time of reading the log.
    pub user_name: Option<String>,
    /// From which client installation, when known.
    pub client_id: Option<Uuid>,
    /// How.
    pub kind: AccessKind,
    /// The patient whose records these are.
    pub patient_id: Option<Uuid>,
    /// Table of the records.
    pub table: Table,
    /// The records delivered (ids only; never content).
    pub row_ids: Vec<Uuid>,
    /// Why, for a break of the glass: what the doctor typed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub reason: Option<String>,
}

/// `POST /v1/patients/{id}/glass` body: a doctor reads the clinical records
/// of a patient outside their care, saying why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(deny_unknown_fields)]
pub struct GlassRequest {
    /// Why (at least `care::GLASS_REASON_MIN` characters, trimmed).
    pub reason: String,
    /// The client installation asking, when it is one (for the access log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub client_id: Option<Uuid>,
}

/// A patient's clinical records in full, for a doctor whose care includes
/// them (`GET /v1/patients/{id}/clinical`, `POST /v1/patients/{id}/glass`):
/// their treatment records and referrals at their current versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct ClinicalRecords {
    /// The patient.
    pub patient_id: Uuid,
    /// The rows, clinical fields included (tombstones left out).
    pub rows: Vec<SyncRow>,
    /// When the caller's glass grant for the patient ends; absent when the
    /// patient is in their care for another reason (then it does not end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub grant_expires_at: Option<Timestamp>,
}

/// `GET /v1/audit/access?patient=ID` answer, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct AccessLogResponse {
    /// The patient asked about.
    pub patient_id: Uuid,
    /// Entries, newest first.
    pub entries: Vec<AccessLogEntry>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

/// What a sign-in event was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum SignInKind {
    /// `POST /v1/login`.
    SignIn,
    /// `POST /v1/password` (the current password is checked like a sign-in).
    PasswordChange,
}

/// How a sign-in attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum SignInOutcome {
    /// Right password.
    Success,
    /// Wrong username or password.
    Failure,
    /// Refused unchecked: too many recent failures for the username or the address.
    Locked,
    /// Right password, but the account is disabled.
    Disabled,
}

/// One sign-in attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct SignInEvent {
    /// Position in the sign-in log.
    pub id: u64,
    /// When.
    pub at: Timestamp,
    /// Sign-in or password change.
    pub kind: SignInKind,
    /// How it ended.
    pub outcome: SignInOutcome,
    /// The username as given (lower-cased, trimmed; it may name no account).
    pub username: String,
    /// The account, when the username names one.
    pub user_id: Option<Uuid>,
    /// The client's IP address as the server saw it.
    pub address: Option<String>,
    /// The client installation (`X-Clinic-Client` header), when given.
    pub client_id: Option<Uuid>,
    /// The `User-Agent` header, shortened to 200 characters.
    pub user_agent: Option<String>,
}

/// `GET /v1/audit/sign-ins` answer, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct SignInEventsResponse {
    /// Events, newest first.
    pub events: Vec<SignInEvent>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

/// Messages a client sends over the WebSocket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message: who, and from where to catch up.
    Hello {
        /// Bearer token from login.
        token: String,
        /// The client installation.
        client_id: Uuid,
        /// Highest sequence number already applied (0 for a fresh mirror).
        cursor: u64,
    },
    /// Mutations to apply (the same shape as `POST /v1/push`).
    Push {
        /// Echoed in the matching `push_result`.
        request_id: u64,
        /// Mutations in ascending id order.
        mutations: Vec<PendingMutation>,
    },
    /// Liveness probe; answered by `pong`.
    Ping {
        /// Echoed.
        nonce: u64,
    },
}

/// Messages the server sends over the WebSocket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Answer to `hello`: the session is open; catch-up follows.
    Welcome {
        /// Protocol version.
        protocol: u32,
        /// The signed-in staff member.
        user: Staff,
        /// Server head at the time of hello.
        head: u64,
        /// The account's security epoch (see `PullResponse::epoch`).
        #[serde(default)]
        epoch: u64,
        /// The server epoch (see `PullResponse::server_epoch`).
        #[serde(default)]
        server_epoch: String,
        /// The clinic's time zone (see `LoginResponse::time_zone`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        time_zone: Option<String>,
    },
    /// Changed rows: catch-up pages, then live batches, in version order.
    Changes {
        /// Rows with versions in `(previous cursor, cursor]`.
        rows: Vec<SyncRow>,
        /// Cursor to store once the rows are applied.
        cursor: u64,
        /// In catch-up, on the last page: the highest mutation id of this
        /// client the server has processed (applied or rejected). Live: the
        /// highest mutation of this client whose effects are in `rows`.
        /// Rejections arrive in `push_result` (or in answer to a re-push).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_mutation_id: Option<u64>,
    },
    /// Catch-up is complete; live batches follow.
    CaughtUp {
        /// Cursor at that point.
        cursor: u64,
    },
    /// Results of a `push`.
    PushResult {
        /// The push's `request_id`.
        request_id: u64,
        /// One per mutation, in order.
        results: Vec<MutationResult>,
    },
    /// Answer to `ping`.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// Something went wrong; the connection stays open unless the code says
    /// otherwise (`unauthorized`, `token_expired`, `session_changed`,
    /// `password_change_required` and `forbidden` are followed by a close).
    Error(ErrorBody),
}

/// Who the caller is, as the server and the shared rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    /// The staff member.
    pub user_id: Uuid,
    /// Their role now.
    pub role: Role,
}
