//! Revocation: security events (sign-out, "end all sessions", password
//! change or reset, disable, enable, role change) reach every open
//! WebSocket and waiting long-poll of the account, whichever process made
//! the change.
//!
//! Every such change appends a row to the storage's security-event log in
//! the same transaction as the change itself. [`Revocations::run`] reads
//! the log past the highest id it has seen and broadcasts each new event to
//! the sessions of this process, which re-check their session and account
//! against storage and end (or, for a role change seen by a long-poll,
//! answer at once with the new role). The log is read every
//! `Config::security_poll` (200 ms by default), so a change made by the
//! admin CLI or another server process on the same database is noticed
//! within that; a change made in this process calls [`Revocations::poke`],
//! which reads the log at once, and so does a wake-up from the storage when
//! another process recorded an event (PostgreSQL's `NOTIFY clinic_security`:
//! [`crate::cluster`]). This is the one way sessions are ended across
//! processes.

use crate::storage::{SecurityEvent, Storage, StorageResult};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

/// Events read per query.
const PAGE: usize = 1000;

/// Broadcasts security events to this process's sessions.
pub struct Revocations {
    storage: Arc<dyn Storage>,
    events: broadcast::Sender<Arc<SecurityEvent>>,
    seen: Mutex<u64>,
    wake: Notify,
}

impl Revocations {
    /// Starts after the events already in storage (sessions opened from
    /// now on authenticate against the current state anyway).
    pub fn new(storage: Arc<dyn Storage>) -> StorageResult<Revocations> {
        let seen = storage.security_head()?;
        Ok(Revocations {
            storage,
            events: broadcast::channel(1024).0,
            seen: Mutex::new(seen),
            wake: Notify::new(),
        })
    }

    /// Receives every event published from now on. A receiver that lags
    /// must re-check its session: it may have missed its own event.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<SecurityEvent>> {
        self.events.subscribe()
    }

    /// Reads the log now: call after committing a security event.
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    /// Publishes events past the highest seen. Blocking.
    pub fn publish_new(&self) -> StorageResult<usize> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut published = 0;
        loop {
            let events = self.storage.security_events_after(*seen, PAGE)?;
            let n = events.len();
            for event in events {
                *seen = (*seen).max(event.id);
                // No receivers is fine: nobody is connected.
                let _ = self.events.send(Arc::new(event));
            }
            published += n;
            if n < PAGE {
                return Ok(published);
            }
        }
    }

    /// Reads the log every `interval` and whenever poked, until `token` is
    /// cancelled.
    pub async fn run(self: Arc<Self>, interval: Duration, token: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // While the database is unreachable every read fails: say so once,
        // not five times a second.
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.wake.notified() => {}
                () = token.cancelled() => return,
            }
            let me = self.clone();
            match tokio::task::spawn_blocking(move || me.publish_new()).await {
                Ok(Ok(n)) => {
                    if failing {
                        tracing::info!("reading security events again");
                        failing = false;
                    }
                    if n > 0 {
                        tracing::debug!(events = n, "security events published");
                    }
                }
                Ok(Err(e)) if failing => {
                    tracing::debug!(error = %e, "reading security events still fails")
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "reading security events failed; retrying");
                    failing = true;
                }
                Err(e) => tracing::warn!(error = %e, "security event reader panicked"),
            }
        }
    }
}
