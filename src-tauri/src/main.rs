//! Clinic Sync desktop app: a thin Tauri shell over the `clinic-client`
//! engine. Each command is a few lines that call the engine or its store;
//! one task forwards the store's change feed ("store-changed") and the sync
//! status ("sync-status") to the UI. Errors reach the UI as
//! `{code, message, retryable}`.
//!
//! Environment (for IT and the demo): `CLINIC_DATA_DIR` puts the local
//! database elsewhere (a second instance needs its own); `CLINIC_SERVER`
//! pre-fills the server address; `CLINIC_LOGIN_USER` / `CLINIC_LOGIN_PASSWORD`
//! sign in at start when no session is stored (demo and tests).

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use clinic_client::store::{Chart, PendingEntry, Receipt, RejectedEntry, Row};
use clinic_client::sync::SessionInfo;
use clinic_client::{ClientError, Engine, EngineConfig, Store};
use clinic_shared::model::{Staff, Table};
use clinic_shared::mutation::Mutation;
use clinic_shared::protocol::HistoryResponse;
use std::sync::Arc;
use tauri::{Emitter, Manager, State};
use uuid::Uuid;

/// What every command reaches.
struct App {
    engine: Arc<Engine>,
}

type Answer<T> = Result<T, ClientError>;

fn store(app: &State<'_, App>) -> Arc<Store> {
    app.engine.store().clone()
}

/// Runs blocking store work off the async runtime's workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Answer<T> + Send + 'static) -> Answer<T> {
    tauri::async_runtime::spawn_blocking(f)
        .await
        .map_err(|e| ClientError::Database(format!("store task failed: {e}")))?
}

#[tauri::command]
fn session_info(app: State<'_, App>) -> Answer<SessionInfo> {
    app.engine.session_info()
}

#[tauri::command]
async fn login(
    app: State<'_, App>,
    server_url: String,
    username: String,
    password: String,
) -> Answer<Staff> {
    app.engine.login(&server_url, &username, &password).await
}

#[tauri::command]
async fn logout(app: State<'_, App>, discard_pending: bool) -> Answer<()> {
    app.engine.logout().await?;
    let s = store(&app);
    blocking(move || s.sign_out_and_wipe(discard_pending)).await
}

#[tauri::command]
fn sync_now(app: State<'_, App>) {
    app.engine.wake();
}

#[tauri::command]
async fn list_rows(app: State<'_, App>, table: Table) -> Answer<Vec<Row>> {
    let s = store(&app);
    blocking(move || s.list(table)).await
}

#[tauri::command]
async fn get_row(app: State<'_, App>, table: Table, id: Uuid) -> Answer<Option<Row>> {
    let s = store(&app);
    blocking(move || s.get(table, id)).await
}

#[tauri::command]
async fn search_patients(app: State<'_, App>, query: String, limit: usize) -> Answer<Vec<Row>> {
    let s = store(&app);
    blocking(move || s.search_patients(&query, limit)).await
}

#[tauri::command]
async fn day_schedule(
    app: State<'_, App>,
    date: chrono::NaiveDate,
    doctor: Option<Uuid>,
) -> Answer<Vec<Row>> {
    let s = store(&app);
    blocking(move || s.day_schedule(date, doctor)).await
}

#[tauri::command]
async fn patient_chart(app: State<'_, App>, id: Uuid) -> Answer<Option<Chart>> {
    let s = store(&app);
    blocking(move || s.patient_chart(id)).await
}

#[tauri::command]
async fn low_stock(app: State<'_, App>) -> Answer<Vec<Row>> {
    let s = store(&app);
    blocking(move || s.low_stock()).await
}

#[tauri::command]
async fn mutate(app: State<'_, App>, mutation: Mutation) -> Answer<Receipt> {
    app.engine.mutate(mutation).await
}

#[tauri::command]
async fn pending_changes(app: State<'_, App>) -> Answer<Vec<PendingEntry>> {
    let s = store(&app);
    blocking(move || s.pending()).await
}

#[tauri::command]
async fn rejected_changes(app: State<'_, App>) -> Answer<Vec<RejectedEntry>> {
    let s = store(&app);
    blocking(move || s.rejected()).await
}

#[tauri::command]
async fn dismiss_rejected(app: State<'_, App>, mutation_id: u64) -> Answer<bool> {
    let s = store(&app);
    blocking(move || s.dismiss_rejected(mutation_id)).await
}

#[tauri::command]
async fn record_history(app: State<'_, App>, table: Table, id: Uuid) -> Answer<HistoryResponse> {
    app.engine.history(table, id).await
}

#[tauri::command]
fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// Forwards the engine's change feed and status to the UI until the app ends.
async fn forward_events(handle: tauri::AppHandle, engine: Arc<Engine>) {
    let mut events = engine.store().subscribe();
    let mut status = engine.status();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => { let _ = handle.emit("store-changed", event); }
                // Missed events: tell the UI to re-read everything.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let all = clinic_client::store::StoreEvent {
                        origin: clinic_client::store::ChangeOrigin::Remote,
                        tables: Table::ALL.to_vec(),
                        rows: vec![],
                        cursor: 0,
                    };
                    let _ = handle.emit("store-changed", all);
                }
                Err(_) => return,
            },
            changed = status.changed() => {
                if changed.is_err() { return; }
                let s = status.borrow_and_update().clone();
                let _ = handle.emit("sync-status", s);
            }
        }
    }
}

fn start(app: &mut tauri::App) -> Result<(), Box<dyn std::error::Error>> {
    let dir = match std::env::var_os("CLINIC_DATA_DIR") {
        Some(dir) => dir.into(),
        None => app.path().app_data_dir()?,
    };
    let store = Arc::new(Store::open(&dir)?);
    let engine = Engine::new(store.clone(), EngineConfig::default())?;
    app.manage(App {
        engine: engine.clone(),
    });
    tauri::async_runtime::spawn(forward_events(app.handle().clone(), engine.clone()));
    let auto_login = (
        std::env::var("CLINIC_SERVER")
            .ok()
            .or(store.identity()?.server_url),
        std::env::var("CLINIC_LOGIN_USER").ok(),
        std::env::var("CLINIC_LOGIN_PASSWORD").ok(),
    );
    let runner = engine.clone();
    tauri::async_runtime::spawn(async move {
        let signed_in = runner
            .store()
            .identity()
            .map(|i| i.signed_in)
            .unwrap_or(false);
        if let (Some(server), Some(user), Some(password), false) =
            (auto_login.0, auto_login.1, auto_login.2, signed_in)
            && let Err(e) = runner.login(&server, &user, &password).await
        {
            tracing::warn!(error = %e, "automatic sign-in failed");
        }
        runner.run().await;
    });
    Ok(())
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = tauri::Builder::default()
        .setup(start)
        .invoke_handler(tauri::generate_handler![
            session_info,
            login,
            logout,
            sync_now,
            list_rows,
            get_row,
            search_patients,
            day_schedule,
            patient_chart,
            low_stock,
            mutate,
            pending_changes,
            rejected_changes,
            dismiss_rejected,
            record_history,
            new_id,
        ])
        .run(tauri::generate_context!());
    if let Err(e) = result {
        eprintln!("Clinic Sync could not start: {e}");
        std::process::exit(1);
    }
}
