//! The client's error type. Every error has a stable `code` (for the UI and
//! scripts), a message for a person, and says whether retrying can help. It
//! serializes as `{code, message, retryable}`.

use clinic_shared::protocol::{ErrorBody, Rejection};
use serde::ser::SerializeStruct;

/// Something the engine or the store could not do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The local database is locked by another process (e.g. a second app).
    #[error("the local database is in use by another program: {0}")]
    Busy(String),
    /// The local database is damaged or from a newer app.
    #[error("the local database cannot be used: {0}")]
    Corrupt(String),
    /// Any other local database error.
    #[error("local database error: {0}")]
    Database(String),
    /// A file-system error.
    #[error("{0}")]
    Io(String),
    /// No user is signed in on this machine.
    #[error("not signed in")]
    NotSignedIn,
    /// The change breaks a rule (checked locally or by the server).
    #[error("{}", .0.message)]
    Rejected(Box<Rejection>),
    /// Another user's unsent changes are still queued here.
    #[error("{0} unsent changes of the previous user are still queued; sync them first")]
    PendingChangesOfAnotherUser(u64),
    /// The server cannot be reached; changes stay queued.
    #[error("cannot reach the server: {0}")]
    Offline(String),
    /// Credentials refused, or the sign-in expired: sign in again.
    #[error("{0}")]
    Auth(String),
    /// The server answered with an error.
    #[error("the server refused: {}", .0.message)]
    Server(ErrorBody),
    /// The server said something this client does not understand.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// Invalid input to a command (not a domain rule).
    #[error("{0}")]
    Invalid(String),
}

/// Result of client operations.
pub type ClientResult<T> = Result<T, ClientError>;

impl ClientError {
    /// Maps a SQLite error, telling "locked" and "damaged" apart.
    pub fn from_sqlite(e: rusqlite::Error) -> ClientError {
        use rusqlite::ErrorCode as C;
        match e.sqlite_error_code() {
            Some(C::DatabaseBusy | C::DatabaseLocked) => ClientError::Busy(e.to_string()),
            Some(C::DatabaseCorrupt | C::NotADatabase) => ClientError::Corrupt(e.to_string()),
            _ => ClientError::Database(e.to_string()),
        }
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ClientError::Busy(_) => "database_busy",
            ClientError::Corrupt(_) => "database_corrupt",
            ClientError::Database(_) => "database_error",
            ClientError::Io(_) => "io_error",
            ClientError::NotSignedIn => "not_signed_in",
            ClientError::Rejected(_) => "rejected",
            ClientError::PendingChangesOfAnotherUser(_) => "pending_changes",
            ClientError::Offline(_) => "offline",
            ClientError::Auth(_) => "unauthorized",
            ClientError::Server(_) => "server_error",
            ClientError::Protocol(_) => "protocol_error",
            ClientError::Invalid(_) => "invalid_input",
        }
    }

    /// Whether trying again later can help.
    pub fn retryable(&self) -> bool {
        match self {
            ClientError::Busy(_) | ClientError::Offline(_) => true,
            ClientError::Server(body) => body.retryable,
            _ => false,
        }
    }
}

impl serde::Serialize for ClientError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("ClientError", 4)?;
        st.serialize_field("code", self.code())?;
        st.serialize_field("message", &self.to_string())?;
        st.serialize_field("retryable", &self.retryable())?;
        match self {
            ClientError::Rejected(r) => st.serialize_field("rejection", r)?,
            _ => st.skip_field("rejection")?,
        }
        st.end()
    }
}
