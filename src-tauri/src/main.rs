//! Clinic Sync desktop app: a thin Tauri shell over the `clinic-client`
//! facade. [`app::run_app`] opens the client and starts sync; `commands`
//! are one-line shims from the WebView to the facade; `events` forwards the
//! client's change feed ("store-changed") and sync status ("sync-status") to
//! the UI. Errors reach the UI as `{code, message, retryable}`. No business
//! logic lives here.
//!
//! Environment (for IT and the demo): `CLINIC_DATA_DIR` puts the local
//! database elsewhere (a second instance needs its own); `CLINIC_SERVER`
//! pre-fills the server address; `CLINIC_LOGIN_USER` / `CLINIC_LOGIN_PASSWORD`
//! sign in at start when no session is stored (demo and tests);
//! `CLINIC_PDF_OPENER` is the program printouts are opened with (default the
//! system's PDF viewer).

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod app;
mod commands;
mod events;
mod opener;

/// stderr logging: `RUST_LOG` (default `warn`) and, whatever it says, the
/// dependency caps of `clinic_shared::logging` (no tokens, keys or records
/// in logs at any level).
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let caps = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::level_filters::LevelFilter::TRACE)
        .with_targets(
            clinic_shared::logging::CAPPED_TARGETS
                .iter()
                .map(|t| (*t, tracing::level_filters::LevelFilter::INFO)),
        );
    let env = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::registry()
        .with(caps)
        .with(env)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .try_init();
}

fn main() {
    init_logging();
    if let Err(e) = app::run_app() {
        eprintln!("Clinic Sync could not start: {e}");
        std::process::exit(1);
    }
}
