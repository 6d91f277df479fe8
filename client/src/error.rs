//! The client's one error type. Every error has a stable `code` (for the UI
//! and scripts), a message for a person, and says whether retrying can help.
//! It serializes as `{code, message, retryable}` (plus the rejection, for a
//! refused change). Causes are kept as `#[source]` for logs and debugging;
//! they are never sent to the UI.

use clinic_shared::protocol::{ErrorBody, Rejection};
use serde::ser::SerializeStruct;

/// A boxed cause.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Something the client could not do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The local database is locked by another process (e.g. a second app).
    #[error("the local database is in use by another program")]
    Busy(#[source] rusqlite::Error),
    /// The local database is damaged or from a newer app.
    #[error("the local database cannot be used: {detail}")]
    Corrupt {
        /// What is wrong, for a person.
        detail: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Cause>,
    },
    /// Any other local database error.
    #[error("local database error")]
    Database(#[source] rusqlite::Error),
    /// A file-system error.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No user is signed in on this machine.
    #[error("not signed in")]
    NotSignedIn,
    /// The change breaks a rule (checked locally or by the server).
    #[error("{}", .0.message)]
    Rejected(Box<Rejection>),
    /// Unsent changes are still queued here.
    #[error("{0} unsent changes are still queued; sync them first")]
    PendingChanges(u64),
    /// The server cannot be reached; changes stay queued.
    #[error("cannot reach the server: {reason}")]
    Offline {
        /// Why, for a person.
        reason: String,
        /// The transport error, if any.
        #[source]
        source: Option<Cause>,
    },
    /// The server's certificate is not one this computer trusts: compare
    /// its fingerprint with the one the server prints, then trust it (or
    /// get the clinic CA file from IT).
    #[error(
        "this computer does not know the certificate of {server} yet. Compare its \
         fingerprint with the one the server shows (`clinic-server tls show`): {short}. \
         Only if they match, trust it"
    )]
    UntrustedServer {
        /// The server's address.
        server: String,
        /// The certificate's SHA-256 fingerprint, `AB:CD:…`.
        fingerprint: String,
        /// The same in digit groups, for reading aloud.
        short: String,
    },
    /// Credentials refused, or the session was ended by the server (signed
    /// out elsewhere, password changed, sessions ended): sign in again.
    #[error("{0}")]
    Auth(String),
    /// The sign-in's time ran out: sign in again (offline too).
    #[error("{0}")]
    Expired(String),
    /// The account is disabled; what this computer still had queued for it
    /// is named, because it could not be sent and was removed.
    #[error("{}", disabled_message(.lost))]
    AccountDisabled {
        /// The changes that were lost, in words.
        lost: Vec<String>,
    },
    /// The screen is locked: the same user's password (or another user's
    /// sign-in) opens it.
    #[error("the screen is locked; enter your password to go on")]
    Locked,
    /// The server answered with an error.
    #[error("the server refused: {}", .0.message)]
    Server(ErrorBody),
    /// The server said something this client does not understand.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// Invalid input to a command (not a domain rule).
    #[error("{0}")]
    Invalid(String),
    /// A part of the client stopped (its thread ended); restart the app.
    #[error("the local store has stopped: {0}")]
    Stopped(&'static str),
    /// A document could not be made for printing.
    #[error("the document could not be made for printing")]
    Print(#[source] clinic_print::PrintError),
}

fn disabled_message(lost: &[String]) -> String {
    let mut m = String::from("this account is disabled; ask an administrator");
    if !lost.is_empty() {
        m.push_str(&format!(
            ". {} change{} made on this computer could not be sent and {} removed: {}",
            lost.len(),
            if lost.len() == 1 { "" } else { "s" },
            if lost.len() == 1 { "was" } else { "were" },
            lost.join("; ")
        ));
    }
    m
}

/// Result of client operations.
pub type ClientResult<T> = Result<T, ClientError>;

impl From<rusqlite::Error> for ClientError {
    /// Tells "locked" and "damaged" apart from other database errors.
    fn from(e: rusqlite::Error) -> ClientError {
        use rusqlite::ErrorCode as C;
        match e.sqlite_error_code() {
            Some(C::DatabaseBusy | C::DatabaseLocked) => ClientError::Busy(e),
            Some(C::DatabaseCorrupt | C::NotADatabase) => ClientError::Corrupt {
                detail: "the file is damaged or not a database".into(),
                source: Some(Box::new(e)),
            },
            _ => ClientError::Database(e),
        }
    }
}

impl From<serde_json::Error> for ClientError {
    /// JSON the client itself stored and cannot read back: damage.
    fn from(e: serde_json::Error) -> ClientError {
        ClientError::Corrupt {
            detail: "unreadable data in the local database".into(),
            source: Some(Box::new(e)),
        }
    }
}

impl ClientError {
    /// Damage described in words, without an underlying error.
    pub fn corrupt(detail: impl Into<String>) -> ClientError {
        ClientError::Corrupt {
            detail: detail.into(),
            source: None,
        }
    }

    /// The server cannot be reached, for `reason`.
    pub fn offline(reason: impl std::fmt::Display) -> ClientError {
        ClientError::Offline {
            reason: reason.to_string(),
            source: None,
        }
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ClientError::Busy(_) => "database_busy",
            ClientError::Corrupt { .. } => "database_corrupt",
            ClientError::Database(_) => "database_error",
            ClientError::Io { .. } => "io_error",
            ClientError::NotSignedIn => "not_signed_in",
            ClientError::Rejected(_) => "rejected",
            ClientError::PendingChanges(_) => "pending_changes",
            ClientError::Offline { .. } => "offline",
            ClientError::UntrustedServer { .. } => "untrusted_server",
            ClientError::Auth(_) => "unauthorized",
            ClientError::Expired(_) => "session_expired",
            ClientError::AccountDisabled { .. } => "account_disabled",
            ClientError::Locked => "locked",
            // The desk offers to break the glass on this one.
            ClientError::Server(body)
                if body.code == clinic_shared::protocol::ErrorCode::NotInCare =>
            {
                "not_in_care"
            }
            ClientError::Server(_) => "server_error",
            ClientError::Protocol(_) => "protocol_error",
            ClientError::Invalid(_) => "invalid_input",
            ClientError::Stopped(_) => "stopped",
            ClientError::Print(_) => "print_failed",
        }
    }

    /// Whether trying again later can help.
    pub fn retryable(&self) -> bool {
        match self {
            ClientError::Busy(_) | ClientError::Offline { .. } => true,
            ClientError::Server(body) => body.retryable,
            _ => false,
        }
    }
}

impl serde::Serialize for ClientError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("ClientError", 5)?;
        st.serialize_field("code", self.code())?;
        st.serialize_field("message", &self.to_string())?;
        st.serialize_field("retryable", &self.retryable())?;
        match self {
            ClientError::Rejected(r) => st.serialize_field("rejection", r)?,
            _ => st.skip_field("rejection")?,
        }
        match self {
            ClientError::UntrustedServer {
                server,
                fingerprint,
                short,
            } => st.serialize_field(
                "certificate",
                &serde_json::json!({"server": server, "fingerprint": fingerprint, "short": short}),
            )?,
            _ => st.skip_field("certificate")?,
        }
        st.end()
    }
}
