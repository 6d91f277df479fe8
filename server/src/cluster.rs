//! Several server processes on one database (PostgreSQL, or the admin CLI
//! beside a server on SQLite): what one process commits or revokes reaches
//! the connections of every other.
//!
//! - **Commits**: [`Feed::publish_external`] reads the changes past the
//!   published head once per process and fans them out to every subscriber.
//!   It runs on every wake-up from the storage ([`Storage::watch`]:
//!   PostgreSQL's payload-less LISTEN/NOTIFY) and on a timer
//!   (`Config::external_poll`), which covers backends without wake-ups and
//!   a notification connection that dropped.
//! - **Ended sessions** (sign-out, account disabled, password set, made
//!   through another process): on a wake-up, and on the timer while wake-ups
//!   are not arriving, the tokens of this process's open WebSockets
//!   ([`LiveTokens`]) are checked against the database in one query; the
//!   ended ones are announced on `AppState::ended_sessions`, which closes
//!   their sockets. Only on a shared database (a backend that can wake us):
//!   an embedded SQLite server learns of account changes through the feed.

use crate::AppState;
use crate::feed::Feed;
use crate::storage::{Signal, Storage, Watching};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Token hashes of this process's open WebSocket sessions, with how many
/// sockets use each.
#[derive(Default)]
pub struct LiveTokens(Mutex<HashMap<String, usize>>);

/// Keeps a token registered while it lives.
pub struct Registered {
    tokens: Arc<LiveTokens>,
    hash: String,
}

impl LiveTokens {
    /// Registers an open socket's token until the guard is dropped.
    pub fn register(self: &Arc<Self>, token_hash: &str) -> Registered {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(token_hash.to_owned()).or_default() += 1;
        Registered {
            tokens: self.clone(),
            hash: token_hash.to_owned(),
        }
    }

    /// Every registered token hash.
    pub fn snapshot(&self) -> Vec<String> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.keys().cloned().collect()
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut map = self.tokens.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.hash) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.hash);
            }
        }
    }
}

/// Starts publishing other processes' commits and, on a shared database,
/// closing sessions they ended. The tasks end when `token` is cancelled.
pub fn start(
    state: &AppState,
    token: CancellationToken,
) -> Result<Vec<JoinHandle<()>>, crate::storage::StorageError> {
    let commits = Arc::new(Notify::new());
    let sessions = Arc::new(Notify::new());
    let (c, s) = (commits.clone(), sessions.clone());
    let watching = state.storage.watch(Arc::new(move |signal| match signal {
        Signal::Commits => c.notify_one(),
        Signal::Sessions => s.notify_one(),
    }))?;
    let poll = state.config.external_poll;
    let mut tasks = vec![tokio::spawn(publish_external_commits(
        state.feed.clone(),
        poll,
        token.clone(),
        commits,
    ))];
    if let Some(watching) = watching {
        tasks.push(tokio::spawn(close_ended_sessions(
            state.clone(),
            watching,
            sessions,
            token,
        )));
    }
    Ok(tasks)
}

async fn publish_external_commits(
    feed: Arc<Feed>,
    poll: Duration,
    token: CancellationToken,
    woken: Arc<Notify>,
) {
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = woken.notified() => {}
            () = token.cancelled() => return,
        }
        // Wake-ups that arrive while this read runs leave one permit: one
        // more read after it, not one per wake-up.
        let feed = feed.clone();
        match tokio::task::spawn_blocking(move || feed.publish_external()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "looking for external commits failed"),
            Err(e) => tracing::warn!(error = %e, "external commit poller panicked"),
        }
    }
}

async fn close_ended_sessions(
    state: AppState,
    watching: Watching,
    woken: Arc<Notify>,
    token: CancellationToken,
) {
    let mut tick = tokio::time::interval(state.config.external_poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // Wake-ups say when to look; without them, look every tick.
                if watching.connected() {
                    continue;
                }
            }
            () = woken.notified() => {}
            () = token.cancelled() => return,
        }
        let live = state.live_tokens.snapshot();
        if live.is_empty() {
            continue;
        }
        let storage: Arc<dyn Storage> = state.storage.clone();
        let asked = live.clone();
        match tokio::task::spawn_blocking(move || storage.existing_sessions(&asked)).await {
            Ok(Ok(existing)) => {
                let existing: std::collections::HashSet<String> = existing.into_iter().collect();
                for hash in live.into_iter().filter(|h| !existing.contains(h)) {
                    tracing::info!("a session ended elsewhere; closing its connections");
                    let _ = state.ended_sessions.send(hash);
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "re-checking open sessions failed"),
            Err(e) => tracing::warn!(error = %e, "session re-check panicked"),
        }
    }
}
