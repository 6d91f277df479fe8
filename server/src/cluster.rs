//! Several server processes on one database (PostgreSQL, or the admin CLI
//! beside a server on SQLite): what one process commits or revokes reaches
//! the connections of every other.
//!
//! - **Commits**: [`Feed::publish_external`] reads the changes past the
//!   published head once per process and fans them out to every subscriber.
//!   It runs on every commit wake-up from the storage ([`Storage::watch`]:
//!   PostgreSQL's payload-less LISTEN/NOTIFY) and on a timer
//!   (`Config::external_poll`), which covers backends without wake-ups and
//!   a notification connection that dropped.
//! - **Revocation** has one mechanism on every backend: the durable
//!   security-event log, read by [`Revocations`] every
//!   `Config::security_poll` and whenever poked. Here a security wake-up
//!   from the storage (PostgreSQL: `NOTIFY clinic_security`, sent by the
//!   transaction that recorded the event) pokes it, so a sign-out or a
//!   disable made through another instance reaches this one's open
//!   sessions at once rather than at the next poll. Nothing else ends a
//!   session: the wake-up only says "read the log now".

use crate::feed::Feed;
use crate::revocation::Revocations;
use crate::storage::{Signal, Storage, StorageResult, Watching};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Starts publishing other processes' commits, and wakes `revocations`
/// when the storage says another process recorded a security event. The
/// tasks end when `token` is cancelled.
pub fn start(
    storage: Arc<dyn Storage>,
    feed: Arc<Feed>,
    revocations: Arc<Revocations>,
    poll: Duration,
    token: CancellationToken,
) -> StorageResult<Vec<JoinHandle<()>>> {
    let commits = Arc::new(Notify::new());
    let woken = commits.clone();
    // Called on the storage's listener thread: neither may block.
    let watching = storage.watch(Arc::new(move |signal| match signal {
        Signal::Commits => woken.notify_one(),
        Signal::Security => revocations.poke(),
    }))?;
    Ok(vec![tokio::spawn(publish_external_commits(
        feed, poll, token, commits, watching,
    ))])
}

async fn publish_external_commits(
    feed: Arc<Feed>,
    poll: Duration,
    token: CancellationToken,
    woken: Arc<Notify>,
    // Held for as long as the task runs: dropping it stops the listener.
    _watching: Option<Watching>,
) {
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Said once while the database is unreachable, not at every tick.
    let mut failing = false;
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
            Ok(Ok(())) => {
                if failing {
                    tracing::info!("looking for external commits again");
                    failing = false;
                }
            }
            Ok(Err(e)) if failing => {
                tracing::debug!(error = %e, "looking for external commits still fails")
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "looking for external commits failed; retrying");
                failing = true;
            }
            Err(e) => tracing::warn!(error = %e, "external commit poller panicked"),
        }
    }
}
