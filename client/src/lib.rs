//! clinic-client: the headless Clinic Sync client, shared by the desktop
//! app and the `clinic` CLI.
//!
//! Everything goes through one facade, [`ClinicClient`]: sign in and out,
//! mutate, read, review pending and refused changes, watch the sync status.
//! Behind it, private layers with one job each:
//!
//! - `session`: who is signed in, the token, the offline verifier, and the
//!   one sign-out/wipe policy;
//! - `mirror`: the local SQLite file (confirmed rows, the durable outbox,
//!   the visible rows) owned by one thread that async code reaches over a
//!   channel;
//! - `read`: the queries screens make, returning typed entities, on a
//!   connection and thread of their own;
//! - `sync`: the loop that keeps the mirror and the server in step, live
//!   over a WebSocket or by HTTP long-poll, with backoff and status;
//! - [`transport`]: how the server is reached, behind the [`Transport`]
//!   trait (the network by default; tests inject their own).
//!
//! Clock, ids and transport are injectable ([`ClientConfig`]) so tests can
//! be deterministic. Nothing here knows about Tauri or a WebView: the whole
//! client is tested and benchmarked headless. See docs/ARCHITECTURE.md.

mod billing;
mod clock;
mod db;
mod error;
mod facade;
mod files;
#[cfg(any(test, feature = "internals"))]
pub mod internals;
mod legacy;
mod mirror;
mod printing;
mod read;
mod session;
mod sync;
mod transport;
mod types;
mod users;

pub use billing::{DayReport, MethodTotal, OpenInvoice, ReportPayment, StaffTotal};
pub use clock::{Clock, IdSource, ManualClock, SystemClock, V7Ids};
pub use error::{Cause, ClientError, ClientResult};
pub use facade::{ClientConfig, ClinicClient, SignInResult, default_data_dir};
pub use printing::status_label;
pub use session::keys::{KeyStoreUnavailable, SecretStore};
pub use sync::SyncConfig;
pub use transport::{LiveLink, PullQuery, Transport};
pub use types::*;
