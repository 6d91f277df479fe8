//! Running blocking storage calls from async code: on tokio's blocking
//! pool, never on a worker thread (SQLite calls may wait seconds for a lock).
//! Shared by the HTTP and WebSocket layers, which do not depend on each
//! other.

use crate::storage::StorageError;
use clinic_shared::protocol::{ErrorBody, ErrorCode};

/// The answer a client gets for a storage failure: `unavailable` (retry)
/// when the database was busy, `internal` otherwise. The cause is logged,
/// never sent.
pub fn storage_error_body(e: &StorageError) -> ErrorBody {
    tracing::error!(error = %e, "storage error");
    let code = if e.retryable() {
        ErrorCode::Unavailable
    } else {
        ErrorCode::Internal
    };
    let message = match e {
        StorageError::Unavailable(_) => {
            "the server's disk is full or failing; nothing was written, try again later"
        }
        _ => "the server could not read or write its database",
    };
    ErrorBody::new(code, message)
}

/// Runs blocking storage work off the async workers.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, ErrorBody> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(|e| storage_error_body(&e)),
        Err(e) => {
            tracing::error!(error = %e, "blocking task failed");
            Err(ErrorBody::new(ErrorCode::Internal, "internal error"))
        }
    }
}
