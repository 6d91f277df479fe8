//! clinic-client: the headless Clinic Sync engine, shared by the desktop app
//! and the `clinic` CLI.
//!
//! - [`store`]: the local SQLite mirror: confirmed rows, the durable outbox,
//!   the visible rows (confirmed ⊕ pending) every query reads, and a change
//!   feed after every commit.
//! - [`sync`]: the engine that keeps the store and the server in step, live
//!   over a WebSocket or by HTTP long-poll, with backoff, retries and status.
//! - [`error`]: the typed error every call returns.
//!
//! Nothing here knows about Tauri or a WebView: the whole engine is tested
//! and benchmarked headless.

pub mod error;
pub mod store;
pub mod sync;

pub use error::{ClientError, ClientResult};
pub use store::Store;
pub use sync::{Engine, EngineConfig, SyncStatus};

/// The default data directory of the client on this platform.
pub fn default_data_dir() -> Option<std::path::PathBuf> {
    directories::ProjectDirs::from("org", "ClinicSync", "clinic")
        .map(|d| d.data_dir().to_path_buf())
}
