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
use crate::error::{ClientError, ClientResult};
use crate::mirror::Mirror;
use crate::session::Session;
use crate::transport::Transport;
use crate::types::{Connection, SyncStatus};
use clinic_shared::protocol::ErrorCode;
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
    /// The server ended the session for good (see [`RunEnd::Revoked`]).
    Revoked(String),
}

/// Why [`SyncEngine::run`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RunEnd {
    /// [`SyncEngine::stop`] was called.
    Stopped,
    /// The server ended the session (signed out elsewhere, password changed
    /// or reset, sessions ended): the token is dropped; the caller applies
    /// the revocation policy. The server's words.
    Revoked(String),
    /// The server refuses the account (disabled) to an offline sign-in
    /// asking for a token.
    Disabled,
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
    /// Held while views are being reported.
    views_flush: tokio::sync::Mutex<()>,
}

fn with_jitter(d: Duration) -> Duration {
    // Full jitter in [d/2, d]: spreads a clinic's reconnects after a blip.
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(2);
    Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms))
}

/// `3` from the field `views[3].id`.
fn view_index(field: &str) -> Option<usize> {
    field
        .strip_prefix("views[")?
        .split(']')
        .next()?
        .parse()
        .ok()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl SyncEngine {
    /// An engine for one user's mirror, reporting to `status` (shared by
    /// every user's engine: one status line per desk).
    pub(crate) fn new(
        mirror: Arc<Mirror>,
        session: Arc<Session>,
        transport: Arc<dyn Transport>,
        config: SyncConfig,
        clock: Arc<dyn Clock>,
        status: watch::Sender<SyncStatus>,
    ) -> SyncEngine {
        SyncEngine {
            mirror,
            session,
            transport,
            config,
            clock,
            status,
            wake: Notify::new(),
            shutdown: watch::channel(false).0,
            views_flush: tokio::sync::Mutex::new(()),
        }
    }

    /// The transport (for requests outside the loop, like history).
    pub(crate) fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// Tells the loop there is something to push (or a sign-in to use).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops [`SyncEngine::run`] (now, or at once when it starts).
    pub(crate) fn stop(&self) {
        self.shutdown.send_replace(true);
        self.wake.notify_one();
    }

    /// Lets [`SyncEngine::run`] run again after a stop.
    pub(crate) fn resume(&self) {
        self.shutdown.send_replace(false);
    }

    /// Re-reads the queue counts into the status, and sets the connection
    /// state when given.
    pub(crate) async fn refresh_status(&self, connection: Option<Connection>) {
        let stats = self.mirror.stats().await;
        let last = self.mirror.last_synced_at().await;
        let restored = self.mirror.restore_notice().await;
        let rebuilt = self.mirror.rebuilt_notice().await;
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
            if let Ok(restored) = restored {
                s.server_restored = restored;
            }
            if let Ok(rebuilt) = rebuilt {
                s.mirror_rebuilt = rebuilt;
            }
        });
    }

    /// Reports the records the person opened to the server's access log
    /// (in batches; kept until the server has recorded them). A view the
    /// server cannot record (a record it does not hold, e.g. one whose
    /// creation it refused, or a table the role may no longer read) is
    /// dropped with a note so it cannot hold up the others.
    pub(crate) async fn flush_views(&self) -> ClientResult<()> {
        // One report at a time: two would send the same queued views.
        let _one = self.views_flush.lock().await;
        let mut signed_in = None;
        loop {
            let queued = self
                .mirror
                .queued_views(clinic_shared::protocol::limits::MAX_VIEWS_PER_REPORT)
                .await?;
            let Some(&(last, _)) = queued.last() else {
                return Ok(());
            };
            if signed_in.is_none() {
                let Some((url, token)) = self.session.credentials().await? else {
                    return Ok(());
                };
                signed_in = Some((url, token, self.mirror.identity().await?.client_id));
            }
            let Some((url, token, client_id)) = &signed_in else {
                return Ok(());
            };
            let (client_id, url, token) = (*client_id, url.as_str(), token.as_str());
            let report = clinic_shared::protocol::ViewReport {
                client_id,
                views: queued.iter().map(|(_, v)| v.clone()).collect(),
            };
            match self.transport.report_views(url, token, &report).await {
                Ok(_) => self.mirror.drop_views(last, false).await?,
                Err(ClientError::Server(body)) if !body.retryable => {
                    let Some(n) = body
                        .field
                        .as_deref()
                        .and_then(view_index)
                        .and_then(|i| queued.get(i))
                        .map(|(n, _)| *n)
                    else {
                        return Err(ClientError::Server(body));
                    };
                    tracing::info!(code = ?body.code, "a view the server cannot record was dropped");
                    self.mirror.drop_views(n, true).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reports views without failing the round that calls it: what was not
    /// reported stays queued for the next one.
    pub(crate) async fn flush_views_quietly(&self) {
        if let Err(e) = self.flush_views().await {
            tracing::debug!(error = %e, "views not reported yet");
        }
    }

    fn set_error(&self, e: &ClientError) {
        let message = e.to_string();
        self.status.send_modify(|s| s.last_error = Some(message));
    }

    fn clear_error(&self) {
        self.status.send_modify(|s| s.last_error = None);
    }

    /// What an error ends: `None` for an ordinary failure (offline, a
    /// server error: retry later); a reconnect after an expired sign-in
    /// (token dropped; mirror, queue and offline sign-in stay); a revocation
    /// (token dropped; the caller applies the policy).
    async fn session_end_of(&self, e: &ClientError) -> Option<SessionEnd> {
        let (message, end) = match e {
            ClientError::Server(body) if body.code == ErrorCode::PasswordChangeRequired => {
                self.session.set_must_change_password(true);
                return Some(SessionEnd::Reconnect);
            }
            ClientError::Expired(m) => (m.clone(), SessionEnd::Reconnect),
            ClientError::Auth(m) => (m.clone(), SessionEnd::Revoked(m.clone())),
            _ => return None,
        };
        tracing::info!("the server ended the session; holding changes");
        if matches!(end, SessionEnd::Revoked(_)) {
            self.session.set_revoked();
        }
        if let Err(e) = self.session.drop_token().await {
            tracing::warn!(error = %e, "could not forget the refused token");
        }
        self.status.send_modify(|s| s.last_error = Some(message));
        Some(end)
    }

    async fn signed_in(&self) -> bool {
        self.session.credentials().await.is_ok_and(|c| c.is_some())
    }

    /// Runs until [`SyncEngine::stop`] or until the server ends the session
    /// for good: live over the WebSocket when it can, polling when it
    /// cannot, waiting for a sign-in when there is none.
    pub(crate) async fn run(self: Arc<Self>) -> RunEnd {
        let mut shutdown = self.shutdown.subscribe();
        let mut backoff = self.config.backoff_min;
        let end = loop {
            if *shutdown.borrow() {
                break RunEnd::Stopped;
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
                    Err(ClientError::Auth(m)) => {
                        self.session.set_revoked();
                        break RunEnd::Revoked(m);
                    }
                    Err(ClientError::Server(body))
                        if body.code == clinic_shared::protocol::ErrorCode::Forbidden =>
                    {
                        break RunEnd::Disabled;
                    }
                    Err(e) => self.set_error(&e),
                }
                continue;
            }
            if !self.signed_in().await || self.session.must_change_password() {
                // Nothing syncs until there is a session that may (a new
                // password first, when the server asked for one).
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
                    Ok(SessionEnd::Shutdown) => break RunEnd::Stopped,
                    Ok(SessionEnd::Revoked(m)) => break RunEnd::Revoked(m),
                    Ok(SessionEnd::Reconnect) => {
                        backoff = self.config.backoff_min;
                        continue;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "websocket unavailable");
                        match self.session_end_of(&e).await {
                            Some(SessionEnd::Revoked(m)) => break RunEnd::Revoked(m),
                            Some(_) => continue,
                            None => self.set_error(&e),
                        }
                    }
                }
            }
            // Poll until the next WebSocket attempt is due.
            let delay = with_jitter(backoff);
            backoff = (backoff * 2).min(self.config.backoff_max);
            let next_ws = Instant::now() + delay;
            if let Some(end) = self.poll_until(next_ws, &mut shutdown).await {
                match end {
                    SessionEnd::Shutdown => break RunEnd::Stopped,
                    SessionEnd::Revoked(m) => break RunEnd::Revoked(m),
                    SessionEnd::Reconnect => continue,
                }
            }
        };
        let connection = match end {
            RunEnd::Stopped => Connection::Stopped,
            RunEnd::Revoked(_) | RunEnd::Disabled => Connection::SignedOut,
        };
        self.refresh_status(Some(connection)).await;
        end
    }
}
