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
//! sign in at start when no session is stored (demo and tests).

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod app;
mod commands;
mod events;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = app::run_app() {
        eprintln!("Clinic Sync could not start: {e}");
        std::process::exit(1);
    }
}
