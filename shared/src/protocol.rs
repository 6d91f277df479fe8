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
    /// The doctor already has an appointment at that time.
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
}

/// A refused mutation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct Rejection {
    /// Why.
    pub code: RejectCode,
    /// For a person; may name records by id, never quotes clinical content.
    pub message: String,
    /// Invalid fields, for `validation`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
    /// Both values of every conflicting field, for `conflict`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<FieldConflict>,
}

impl Rejection {
    /// A rejection with a message and nothing else.
    pub fn new(code: RejectCode, message: impl Into<String>) -> Self {
        Rejection {
            code,
            message: message.into(),
            fields: vec![],
            conflicts: vec![],
        }
    }
    /// A validation rejection naming the fields.
    pub fn validation(fields: Vec<FieldError>) -> Self {
        let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        let message = format!("invalid: {}", names.join(", "));
        Rejection {
            code: RejectCode::Validation,
            message,
            fields,
            conflicts: vec![],
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
    /// otherwise (`unauthorized`, `token_expired`, `session_changed`, and `forbidden`
    /// are followed by a close).
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
