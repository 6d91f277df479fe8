//! The sync engine: keeps the mirror and the server in step.
//!
//! Transport, in order of preference:
//! - **live** ([`live`]): one WebSocket; `hello` with token and cursor,
//!   catch-up pages and live batches are applied as they come, outbox
//!   batches are pushed as they appear; application-level pings detect a
//!   dead link.
//! - **polling** ([`poll`]): when the WebSocket cannot be opened or keeps
//!   dropping, `POST /v1/push` and long-polling `GET /v1/pull?wait=` from the
//!   same cursor, so changes still arrive within a second; a local write cuts
//!   the long-poll short so it is pushed at once. The WebSocket is retried
//!   with exponential backoff and jitter (desks that all lost the network at
//!   once do not all come back in the same instant).
//!
//! Unanswered pushes are retried on a timer, not only when a new write
//! happens. A refused or expired sign-in holds the queue and reports
//! `signed_out`: nothing is dropped. Only the server's answer (applied and
//! caught up, or rejected) removes a mutation from the outbox.

mod live;
mod poll;

use crate::clock::Clock;
use crate::error::ClientError;
use crate::mirror::Mirror;
use crate::session::Session;
use crate::transport::Transport;
use crate::types::{Connection, SyncStatus};
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

/// How the engine syncs.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Try the WebSocket (disable to force polling).
    pub websocket: bool,
    /// Interval of pings on the WebSocket.
    pub heartbeat: Duration,
    /// A WebSocket silent this long is dead.
    pub dead_after: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Seconds a long-poll may wait.
    pub long_poll_secs: u64,
    /// Mutations per push.
    pub push_batch: usize,
    /// An unanswered push is sent again after this long.
    pub push_retry: Duration,
    /// Time limit for connecting and for one HTTP request.
    pub request_timeout: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            websocket: true,
            heartbeat: Duration::from_secs(10),
            dead_after: Duration::from_secs(35),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            long_poll_secs: 25,
            push_batch: 200,
            push_retry: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
        }
    }
}

/// How a live or polling session ended.
enum SessionEnd {
    Shutdown,
    Reconnect,
}

/// The engine over one mirror and one server.
pub(crate) struct SyncEngine {
    mirror: Arc<Mirror>,
    session: Arc<Session>,
    transport: Arc<dyn Transport>,
    config: SyncConfig,
    clock: Arc<dyn Clock>,
    status: watch::Sender<SyncStatus>,
    wake: Notify,
    shutdown: watch::Sender<bool>,
}

fn with_jitter(d: Duration) -> Duration {
    // Full jitter in [d/2, d]: spreads a clinic's reconnects after a blip.
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(2);
    Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl SyncEngine {
    pub(crate) fn new(
        mirror: Arc<Mirror>,
        session: Arc<Session>,
        transport: Arc<dyn Transport>,
        config: SyncConfig,
        clock: Arc<dyn Clock>,
    ) -> SyncEngine {
        SyncEngine {
            mirror,
            session,
            transport,
            config,
            clock,
            status: watch::channel(SyncStatus::default()).0,
            wake: Notify::new(),
            shutdown: watch::channel(false).0,
        }
    }

    /// The transport (for requests outside the loop, like history).
    pub(crate) fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// Watches the sync status.
    pub(crate) fn status(&self) -> watch::Receiver<SyncStatus> {
        self.status.subscribe()
    }

    /// The status now.
    pub(crate) fn status_now(&self) -> SyncStatus {
        self.status.borrow().clone()
    }

    /// Tells the loop there is something to push (or a sign-in to use).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops [`SyncEngine::run`].
    pub(crate) fn stop(&self) {
        self.shutdown.send_replace(true);
        self.wake.notify_one();
    }

    /// Re-reads the queue counts into the status, and sets the connection
    /// state when given.
    pub(crate) async fn refresh_status(&self, connection: Option<Connection>) {
        let stats = self.mirror.stats().await;
        let last = self.mirror.last_synced_at().await;
        let now = self.clock.now();
        self.status.send_modify(|s| {
            if let Some(c) = connection {
                if matches!(
                    c,
                    Connection::Live | Connection::Polling | Connection::Offline { .. }
                ) {
                    // Each of these follows an attempt to reach the server.
                    s.last_attempt_at = Some(now);
                }
                s.connection = c;
            }
            if let Ok(stats) = &stats {
                s.pending = stats.pending;
                s.rejected = stats.rejected;
                s.cursor = stats.cursor;
                s.oldest_pending_secs = stats
                    .oldest_pending
                    .map(|t| u64::try_from(now.unix() - t.unix()).unwrap_or(0));
            }
            if let Ok(last) = last {
                s.last_synced_at = last;
            }
        });
    }

    fn set_error(&self, e: &ClientError) {
        let message = e.to_string();
        self.status.send_modify(|s| s.last_error = Some(message));
    }

    fn clear_error(&self) {
        self.status.send_modify(|s| s.last_error = None);
    }

    /// True when `e` was an auth failure (the token is dropped; the queue
    /// is kept).
    async fn handle_auth_error(&self, e: &ClientError) -> bool {
        if let ClientError::Auth(message) = e {
            if let Err(e) = self.session.ended_by_server().await {
                tracing::warn!(error = %e, "could not forget the refused token");
            }
            self.status
                .send_modify(|s| s.last_error = Some(message.clone()));
            true
        } else {
            false
        }
    }

    async fn signed_in(&self) -> bool {
        self.session.credentials().await.is_ok_and(|c| c.is_some())
    }

    /// Runs until [`SyncEngine::stop`]: live over the WebSocket when it can,
    /// polling when it cannot, waiting for a sign-in when there is none.
    pub(crate) async fn run(self: Arc<Self>) {
        self.shutdown.send_replace(false);
        let mut shutdown = self.shutdown.subscribe();
        let mut backoff = self.config.backoff_min;
        loop {
            if *shutdown.borrow() {
                break;
            }
            if !self.signed_in().await && self.session.signed_in_offline() {
                // Signed in offline: ask the server for a token until it answers.
                match self.session.resume_online().await {
                    Ok(_) => backoff = self.config.backoff_min,
                    Err(e @ ClientError::Offline { .. }) => {
                        let delay = with_jitter(backoff);
                        backoff = (backoff * 2).min(self.config.backoff_max);
                        self.set_error(&e);
                        self.refresh_status(Some(Connection::Offline {
                            retry_in_ms: millis(delay),
                        }))
                        .await;
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                    Err(e) => self.set_error(&e),
                }
                continue;
            }
            if !self.signed_in().await {
                self.refresh_status(Some(Connection::SignedOut)).await;
                tokio::select! {
                    () = self.wake.notified() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            if self.config.websocket {
                self.refresh_status(Some(Connection::Connecting)).await;
                match self.run_live(&mut shutdown).await {
                    Ok(SessionEnd::Shutdown) => break,
                    Ok(SessionEnd::Reconnect) => {
                        backoff = self.config.backoff_min;
                        continue;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "websocket unavailable");
                        if self.handle_auth_error(&e).await {
                            continue;
                        }
                        self.set_error(&e);
                    }
                }
            }
            // Poll until the next WebSocket attempt is due.
            let delay = with_jitter(backoff);
            backoff = (backoff * 2).min(self.config.backoff_max);
            let next_ws = Instant::now() + delay;
            if let Some(end) = self.poll_until(next_ws, &mut shutdown).await {
                match end {
                    SessionEnd::Shutdown => break,
                    SessionEnd::Reconnect => continue,
                }
            }
        }
        self.refresh_status(Some(Connection::Stopped)).await;
    }
}
