//! Forwards the client's change feed and sync status to the UI.

use clinic_client::{ChangeOrigin, ClinicClient, StoreEvent};
use tauri::Emitter;

/// Runs until the app ends.
pub async fn forward(handle: tauri::AppHandle, client: ClinicClient) {
    let mut events = client.subscribe();
    let mut status = client.status();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => { let _ = handle.emit("store-changed", event); }
                // Missed events: tell the UI to re-read everything.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let _ = handle.emit("store-changed", StoreEvent::everything(ChangeOrigin::Remote));
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
