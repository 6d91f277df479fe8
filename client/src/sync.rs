//! The sync engine: keeps the local store and the server in step.
//!
//! Transport, in order of preference:
//! - **live**: one WebSocket; `hello` with token and cursor, catch-up pages
//!   and live batches are applied as they come, outbox batches are pushed
//!   as they appear; application-level pings detect a dead link.
//! - **polling**: when the WebSocket cannot be opened or keeps dropping,
//!   `POST /v1/push` and long-polling `GET /v1/pull?wait=` from the same
//!   cursor, so changes still arrive within a second; a local write cuts the
//!   long-poll short so it is pushed at once. The WebSocket is retried with
//!   exponential backoff and jitter (desks that all lost the network at once
//!   do not all come back in the same instant).
//!
//! Unanswered pushes are retried on a timer, not only when a new write
//! happens. A refused or expired sign-in holds the queue and reports
//! `signed_out`: nothing is dropped. Only the server's answer (applied and
//! caught up, or rejected) removes a mutation from the outbox.

use crate::error::{ClientError, ClientResult};
use crate::store::Store;
use clinic_shared::model::{Staff, Timestamp};
use clinic_shared::protocol::{
    ClientMessage, ErrorBody, ErrorCode, LoginRequest, LoginResponse, PullResponse, PushRequest,
    PushResponse, ServerMessage,
};
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};
use tokio_tungstenite::tungstenite::Message;

/// How the engine syncs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
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

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
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

/// How the engine is connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Connection {
    /// Opening a connection.
    Connecting,
    /// Live over the WebSocket.
    Live,
    /// Syncing by HTTP long-poll (WebSocket unavailable).
    Polling,
    /// The server cannot be reached; the next attempt is due.
    Offline {
        /// Milliseconds until the next attempt.
        retry_in_ms: u64,
    },
    /// No valid sign-in: changes are held until the user signs in again.
    SignedOut,
    /// The engine is not running.
    Stopped,
}

/// What the UI shows about sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct SyncStatus {
    /// Connection state.
    pub connection: Connection,
    /// Last time anything arrived from the server.
    pub last_synced_at: Option<Timestamp>,
    /// Changes not yet confirmed.
    pub pending: u64,
    /// Age of the oldest of them, in seconds.
    pub oldest_pending_secs: Option<u64>,
    /// Rejections not yet dismissed.
    pub rejected: u64,
    /// Progress of the first full sync, while it runs.
    pub initial_sync: Option<InitialSync>,
    /// The mirror's cursor.
    pub cursor: u64,
    /// The last error, for a tooltip.
    pub last_error: Option<String>,
}

/// Progress of a first full sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct InitialSync {
    /// Rows received so far.
    pub rows: u64,
    /// Cursor reached.
    pub cursor: u64,
    /// Server head when it started.
    pub head: u64,
}

impl Default for SyncStatus {
    fn default() -> Self {
        SyncStatus {
            connection: Connection::Stopped,
            last_synced_at: None,
            pending: 0,
            oldest_pending_secs: None,
            rejected: 0,
            initial_sync: None,
            cursor: 0,
            last_error: None,
        }
    }
}

/// The signed-in identity and the sync status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct SessionInfo {
    /// Who and where.
    pub identity: crate::store::Identity,
    /// How sync stands.
    pub status: SyncStatus,
}

/// The outcome of one [`Engine::sync_once`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct SyncReport {
    /// Mutations the server applied.
    pub applied: u64,
    /// Mutations the server rejected.
    pub rejected: u64,
    /// Rows received.
    pub rows: u64,
    /// Cursor at the end.
    pub cursor: u64,
    /// Mutations still queued.
    pub pending: u64,
}

enum SessionEnd {
    Shutdown,
    Reconnect,
}

/// The sync engine over one store and one server.
pub struct Engine {
    store: Arc<Store>,
    http: reqwest::Client,
    config: EngineConfig,
    status: watch::Sender<SyncStatus>,
    wake: Notify,
    shutdown: watch::Sender<bool>,
    /// A sign-in accepted offline (against the stored verifier), kept in
    /// memory only, until the server can be asked for a token.
    offline_sign_in: std::sync::Mutex<Option<Credentials>>,
}

/// What an offline sign-in needs to become an online one.
#[derive(Clone)]
struct Credentials {
    server_url: String,
    username: String,
    password: String,
}

fn offline(e: impl std::fmt::Display) -> ClientError {
    ClientError::Offline(e.to_string())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ClientResult<T> + Send + 'static,
) -> ClientResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ClientError::Database(format!("store task failed: {e}")))?
}

/// Turns an HTTP error answer into a client error.
async fn error_of(response: reqwest::Response) -> ClientError {
    let status = response.status();
    let body: Option<ErrorBody> = response.json().await.ok();
    match body {
        Some(b) if matches!(b.code, ErrorCode::Unauthorized | ErrorCode::TokenExpired) => {
            ClientError::Auth(b.message)
        }
        Some(b) => ClientError::Server(b),
        None => ClientError::Protocol(format!("HTTP {status} without an error body")),
    }
}

/// Sends a request and decodes its JSON answer: a transport failure is
/// `Offline`, an error status its `ErrorBody`, a bad body `Protocol`.
async fn answer<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
) -> ClientResult<T> {
    let response = request.send().await.map_err(offline)?;
    if !response.status().is_success() {
        return Err(error_of(response).await);
    }
    response
        .json()
        .await
        .map_err(|e| ClientError::Protocol(e.to_string()))
}

fn with_jitter(d: Duration) -> Duration {
    // Full jitter in [d/2, d]: spreads a clinic's reconnects after a blip.
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(2);
    Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms))
}

impl Engine {
    /// An engine over `store`; the server is the one the store was signed in to.
    pub fn new(store: Arc<Store>, config: EngineConfig) -> ClientResult<Arc<Engine>> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.request_timeout)
            .build()
            .map_err(|e| ClientError::Io(e.to_string()))?;
        Ok(Arc::new(Engine {
            store,
            http,
            config,
            status: watch::channel(SyncStatus::default()).0,
            wake: Notify::new(),
            shutdown: watch::channel(false).0,
            offline_sign_in: std::sync::Mutex::new(None),
        }))
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Watches the sync status.
    pub fn status(&self) -> watch::Receiver<SyncStatus> {
        self.status.subscribe()
    }

    /// Tells the sync loop there is something to push.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops [`Engine::run`].
    pub fn stop(&self) {
        self.shutdown.send_replace(true);
        self.wake.notify_one();
    }

    /// Applies a mutation locally (see [`Store::mutate`]) and wakes the sync
    /// loop to push it.
    pub async fn mutate(
        &self,
        mutation: clinic_shared::mutation::Mutation,
    ) -> ClientResult<crate::store::Receipt> {
        let store = self.store.clone();
        let receipt = blocking(move || store.mutate(mutation)).await?;
        self.refresh_status(None).await;
        self.wake();
        Ok(receipt)
    }

    fn server_url(&self) -> ClientResult<String> {
        self.store
            .identity()?
            .server_url
            .ok_or(ClientError::NotSignedIn)
    }

    /// Signs in and stores the session. When the server cannot be reached
    /// and `username` is the user who last signed in here, the password is
    /// checked against the hash kept from that sign-in: the user works on the
    /// local mirror (changes queue) and the engine asks the server for a
    /// token as soon as it answers.
    pub async fn login(
        &self,
        server_url: &str,
        username: &str,
        password: &str,
    ) -> ClientResult<Staff> {
        let server_url = server_url.trim_end_matches('/').to_owned();
        match self.login_online(&server_url, username, password).await {
            Err(ClientError::Offline(reason)) => {
                self.login_offline(&server_url, username, password, reason)
                    .await
            }
            other => other,
        }
    }

    async fn login_offline(
        &self,
        server_url: &str,
        username: &str,
        password: &str,
        reason: String,
    ) -> ClientResult<Staff> {
        let same_server = self.store.identity()?.server_url.as_deref() == Some(server_url);
        let Some((user, hash)) = self
            .store
            .offline_verifier(username)?
            .filter(|_| same_server)
        else {
            return Err(ClientError::Offline(reason));
        };
        let given = password.to_owned();
        let matches =
            blocking(move || Ok(clinic_shared::password::password_matches(&given, &hash))).await?;
        if !matches {
            return Err(ClientError::Auth(
                "wrong username or password (checked on this computer: the server cannot be reached)"
                    .into(),
            ));
        }
        tracing::info!("signed in offline; the server will be asked for a token when it answers");
        if let Ok(mut slot) = self.offline_sign_in.lock() {
            *slot = Some(Credentials {
                server_url: server_url.to_owned(),
                username: username.to_owned(),
                password: password.to_owned(),
            });
        }
        self.wake();
        Ok(user)
    }

    /// Whether a user signed in offline and the engine still waits to turn
    /// that into a server session.
    pub fn signed_in_offline(&self) -> bool {
        self.offline_sign_in.lock().is_ok_and(|c| c.is_some())
    }

    async fn login_online(
        &self,
        server_url: &str,
        username: &str,
        password: &str,
    ) -> ClientResult<Staff> {
        let server_url = server_url.to_owned();
        let request = LoginRequest {
            username: username.to_owned(),
            password: password.to_owned(),
        };
        let login: LoginResponse = answer(
            self.http
                .post(format!("{server_url}/v1/login"))
                .timeout(self.config.request_timeout)
                .json(&request),
        )
        .await?;
        let store = self.store.clone();
        let user = login.user.clone();
        let (name, given) = (username.trim().to_owned(), password.to_owned());
        blocking(move || {
            store.sign_in(&server_url, &login.token, &login.user)?;
            // For the next sign-in without the server (see `login`).
            match clinic_shared::password::hash_password(&given) {
                Ok(hash) => store.set_offline_verifier(&name, &hash),
                Err(e) => {
                    tracing::warn!(error = %e, "no offline sign-in verifier kept");
                    Ok(())
                }
            }
        })
        .await?;
        if let Ok(mut slot) = self.offline_sign_in.lock() {
            *slot = None;
        }
        self.wake();
        Ok(user)
    }

    /// Ends the session on the server (best effort) and forgets the token.
    pub async fn logout(&self) -> ClientResult<()> {
        if let (Ok(url), Ok(Some(token))) = (self.server_url(), self.store.token()) {
            let _ = self
                .http
                .post(format!("{url}/v1/logout"))
                .bearer_auth(token)
                .timeout(self.config.request_timeout)
                .send()
                .await;
        }
        if let Ok(mut slot) = self.offline_sign_in.lock() {
            *slot = None;
        }
        self.store.drop_token()?;
        self.wake();
        Ok(())
    }

    /// The audit trail of one record, from the server (needs a connection;
    /// history is not mirrored locally).
    pub async fn history(
        &self,
        table: clinic_shared::model::Table,
        id: uuid::Uuid,
    ) -> ClientResult<clinic_shared::protocol::HistoryResponse> {
        let url = self.server_url()?;
        answer(
            self.http
                .get(format!("{url}/v1/history/{table}/{id}"))
                .bearer_auth(self.token()?)
                .timeout(self.config.request_timeout),
        )
        .await
    }

    /// Who is signed in and how sync stands, in one answer. A user signed in
    /// offline counts as signed in.
    pub fn session_info(&self) -> ClientResult<SessionInfo> {
        let mut identity = self.store.identity()?;
        identity.signed_in |= self.signed_in_offline();
        Ok(SessionInfo {
            identity,
            status: self.status.borrow().clone(),
        })
    }

    fn token(&self) -> ClientResult<String> {
        self.store.token()?.ok_or(ClientError::NotSignedIn)
    }

    async fn refresh_status(&self, connection: Option<Connection>) {
        let store = self.store.clone();
        let stats = blocking(move || Ok((store.stats()?, store.last_synced_at()?))).await;
        self.status.send_modify(|s| {
            if let Some(c) = connection {
                s.connection = c;
            }
            if let Ok((stats, last)) = &stats {
                s.pending = stats.pending;
                s.rejected = stats.rejected;
                s.cursor = stats.cursor;
                s.last_synced_at = *last;
                s.oldest_pending_secs = stats
                    .oldest_pending
                    .map(|t| u64::try_from(chrono::Utc::now().timestamp() - t.unix()).unwrap_or(0));
            }
        });
    }

    fn set_error(&self, e: &ClientError) {
        let message = e.to_string();
        self.status.send_modify(|s| s.last_error = Some(message));
    }

    /// Handles the server saying the session changed: learns the account's
    /// current role; if it changed, rows the role may no longer see leave the
    /// mirror and it re-syncs.
    async fn on_session_changed(&self) -> ClientResult<()> {
        let url = self.server_url()?;
        let user: Staff = answer(
            self.http
                .get(format!("{url}/v1/me"))
                .bearer_auth(self.token()?)
                .timeout(self.config.request_timeout),
        )
        .await?;
        let current = self.store.identity()?.user;
        if current.as_ref().map(|u| u.role) != Some(user.role) {
            tracing::info!(role = %user.role, "role changed; re-syncing the mirror");
            let store = self.store.clone();
            blocking(move || store.change_role(&user)).await?;
        }
        Ok(())
    }

    // ---- HTTP ----

    /// Pushes every unsent mutation over HTTP; returns (applied, rejected).
    async fn push_http(&self, url: &str, token: &str) -> ClientResult<(u64, u64)> {
        let (mut applied, mut rejected) = (0, 0);
        let client_id = self.store.identity()?.client_id;
        loop {
            let store = self.store.clone();
            let batch = self.config.push_batch;
            let mutations = blocking(move || store.unsent(batch)).await?;
            if mutations.is_empty() {
                return Ok((applied, rejected));
            }
            let sent = mutations.len();
            let request = PushRequest {
                client_id,
                mutations,
            };
            let pushed: PushResponse = answer(
                self.http
                    .post(format!("{url}/v1/push"))
                    .bearer_auth(token)
                    .timeout(self.config.request_timeout)
                    .json(&request),
            )
            .await?;
            let mut retry = false;
            for r in &pushed.results {
                match r.outcome {
                    clinic_shared::protocol::MutationOutcome::Applied { .. } => applied += 1,
                    clinic_shared::protocol::MutationOutcome::Rejected { .. } => rejected += 1,
                    clinic_shared::protocol::MutationOutcome::Retry { .. } => retry = true,
                }
            }
            let store = self.store.clone();
            blocking(move || store.apply_results(&pushed.results)).await?;
            if retry || sent < self.config.push_batch {
                return Ok((applied, rejected));
            }
        }
    }

    async fn pull_http(&self, url: &str, token: &str, wait: u64) -> ClientResult<PullResponse> {
        let cursor = self.store.cursor()?;
        let client_id = self.store.identity()?.client_id;
        let page: PullResponse = answer(
            self.http
                .get(format!(
                    "{url}/v1/pull?cursor={cursor}&wait={wait}&client_id={client_id}"
                ))
                .bearer_auth(token)
                .timeout(self.config.request_timeout + Duration::from_secs(wait)),
        )
        .await?;
        let store = self.store.clone();
        let (rows, cursor, ack, complete) = (
            page.rows.clone(),
            page.cursor,
            page.last_mutation_id,
            !page.more,
        );
        blocking(move || store.apply_remote(&rows, cursor, ack, complete)).await?;
        Ok(page)
    }

    /// One round over HTTP: push everything pending, pull until caught up.
    /// Fails when the server cannot be reached; the changes stay queued.
    pub async fn sync_once(&self) -> ClientResult<SyncReport> {
        let url = self.server_url()?;
        let token = self.token()?;
        let mut report = SyncReport::default();
        let (applied, rejected) = self.push_http(&url, &token).await?;
        report.applied = applied;
        report.rejected = rejected;
        loop {
            let page = self.pull_http(&url, &token, 0).await?;
            report.rows += page.rows.len() as u64;
            if !page.more {
                break;
            }
        }
        self.store.mark_synced_once()?;
        // Effects pulled above may have completed pushed mutations.
        let stats = self.store.stats()?;
        report.cursor = stats.cursor;
        report.pending = stats.pending;
        self.refresh_status(None).await;
        Ok(report)
    }

    // ---- the loop ----

    /// Runs until [`Engine::stop`]: live over the WebSocket when it can,
    /// polling when it cannot, waiting for a sign-in when there is none.
    pub async fn run(self: Arc<Self>) {
        self.shutdown.send_replace(false);
        let mut shutdown = self.shutdown.subscribe();
        let mut backoff = self.config.backoff_min;
        loop {
            if *shutdown.borrow() {
                break;
            }
            if !self.store.identity().map(|i| i.signed_in).unwrap_or(false)
                && let Some(credentials) = self.offline_sign_in.lock().ok().and_then(|c| c.clone())
            {
                // Signed in offline: ask the server for a token until it answers.
                let Credentials {
                    server_url,
                    username,
                    password,
                } = credentials;
                match self.login_online(&server_url, &username, &password).await {
                    Ok(_) => backoff = self.config.backoff_min,
                    Err(ClientError::Offline(reason)) => {
                        let delay = with_jitter(backoff);
                        backoff = (backoff * 2).min(self.config.backoff_max);
                        let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                        self.status.send_modify(|s| s.last_error = Some(reason));
                        self.refresh_status(Some(Connection::Offline { retry_in_ms }))
                            .await;
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                    Err(e) => {
                        // The password changed on the server, the account was
                        // disabled: the offline sign-in ends; changes stay queued.
                        tracing::info!("offline sign-in refused by the server");
                        if let Ok(mut slot) = self.offline_sign_in.lock() {
                            *slot = None;
                        }
                        self.set_error(&e);
                    }
                }
                continue;
            }
            if !self.store.identity().map(|i| i.signed_in).unwrap_or(false) {
                self.refresh_status(Some(Connection::SignedOut)).await;
                tokio::select! {
                    () = self.wake.notified() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            if self.config.websocket {
                self.refresh_status(Some(Connection::Connecting)).await;
                match self.run_websocket(&mut shutdown).await {
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

    /// True when `e` was an auth failure (the token is dropped; the queue is kept).
    async fn handle_auth_error(&self, e: &ClientError) -> bool {
        if let ClientError::Auth(message) = e {
            tracing::info!("sign-in refused or expired; holding changes until the user signs in");
            let _ = self.store.drop_token();
            self.status
                .send_modify(|s| s.last_error = Some(message.clone()));
            true
        } else {
            false
        }
    }

    /// HTTP polling until `deadline` (or forever when the WebSocket is off).
    /// `None` when the deadline came (time to try the WebSocket again).
    async fn poll_until(
        &self,
        deadline: Instant,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<SessionEnd> {
        let mut failure_backoff = self.config.backoff_min;
        loop {
            if *shutdown.borrow() {
                return Some(SessionEnd::Shutdown);
            }
            let now = Instant::now();
            if self.config.websocket && now >= deadline {
                return None;
            }
            let (url, token) = match (self.server_url(), self.token()) {
                (Ok(u), Ok(t)) => (u, t),
                _ => return Some(SessionEnd::Reconnect),
            };
            let remaining = deadline.saturating_duration_since(now).as_secs();
            let wait = if self.config.websocket {
                remaining.min(self.config.long_poll_secs)
            } else {
                self.config.long_poll_secs
            };
            let round = async {
                self.push_http(&url, &token).await?;
                // A local write ends the long-poll early so it is pushed now.
                tokio::select! {
                    page = self.pull_http(&url, &token, wait) => page.map(Some),
                    () = self.wake.notified() => Ok(None),
                }
            };
            let result = tokio::select! {
                r = round => r,
                _ = shutdown.changed() => return Some(SessionEnd::Shutdown),
            };
            match result {
                Ok(page) => {
                    failure_backoff = self.config.backoff_min;
                    if page.as_ref().is_some_and(|p| !p.more) {
                        let _ = self.store.mark_synced_once();
                    }
                    self.status.send_modify(|s| s.last_error = None);
                    self.refresh_status(Some(Connection::Polling)).await;
                }
                Err(e) => {
                    if self.handle_auth_error(&e).await {
                        return Some(SessionEnd::Reconnect);
                    }
                    self.set_error(&e);
                    let pause = with_jitter(failure_backoff).min(
                        deadline
                            .saturating_duration_since(Instant::now())
                            .max(Duration::from_millis(100)),
                    );
                    failure_backoff = (failure_backoff * 2).min(self.config.backoff_max);
                    let retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
                    self.refresh_status(Some(Connection::Offline { retry_in_ms }))
                        .await;
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = self.wake.notified() => {}
                        _ = shutdown.changed() => return Some(SessionEnd::Shutdown),
                    }
                }
            }
        }
    }

    async fn run_websocket(
        &self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> ClientResult<SessionEnd> {
        let url = self.server_url()?;
        let token = self.token()?;
        let identity = self.store.identity()?;
        let ws_url = format!("{}/v1/ws", url.replacen("http", "ws", 1));
        let connect = tokio_tungstenite::connect_async(ws_url.as_str());
        let (mut ws, _) = tokio::time::timeout(self.config.request_timeout, connect)
            .await
            .map_err(|_| offline("timed out opening the WebSocket"))?
            .map_err(offline)?;
        let start_cursor = self.store.cursor()?;
        let hello = ClientMessage::Hello {
            token,
            client_id: identity.client_id,
            cursor: start_cursor,
        };
        let text =
            serde_json::to_string(&hello).map_err(|e| ClientError::Protocol(e.to_string()))?;
        ws.send(Message::Text(text.into())).await.map_err(offline)?;

        let mut heartbeat = tokio::time::interval(self.config.heartbeat);
        heartbeat.tick().await;
        let mut retry_timer = tokio::time::interval(self.config.push_retry);
        retry_timer.tick().await;
        let mut last_heard = Instant::now();
        let mut in_flight: Option<(u64, Instant)> = None;
        let mut request_id = 0u64;
        let mut nonce = 0u64;
        let mut welcomed = false;
        let mut initial_rows = 0u64;
        let first_sync = !self.store.synced_once()?;
        loop {
            let mut push_now = false;
            tokio::select! {
                _ = shutdown.changed() => {
                    let _ = ws.close(None).await;
                    return Ok(SessionEnd::Shutdown);
                }
                frame = ws.next() => {
                    let text = match frame {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Close(_))) | None => return Err(offline("the server closed the connection")),
                        Some(Ok(_)) => { last_heard = Instant::now(); continue; }
                        Some(Err(e)) => return Err(offline(e)),
                    };
                    last_heard = Instant::now();
                    let msg: ServerMessage = serde_json::from_str(&text)
                        .map_err(|e| ClientError::Protocol(format!("bad server message: {e}")))?;
                    match msg {
                        ServerMessage::Welcome { head, .. } => {
                            welcomed = true;
                            if first_sync {
                                self.status.send_modify(|s| s.initial_sync = Some(InitialSync { rows: 0, cursor: start_cursor, head }));
                            }
                            self.refresh_status(Some(Connection::Live)).await;
                            self.status.send_modify(|s| s.last_error = None);
                            push_now = true;
                        }
                        ServerMessage::Changes { rows, cursor, last_mutation_id } => {
                            initial_rows += rows.len() as u64;
                            let store = self.store.clone();
                            // The server acknowledges our mutations only in a
                            // message that holds every change up to its cursor
                            // (the last catch-up page, a live batch); a page
                            // without the ack may be partial.
                            let complete = last_mutation_id.is_some();
                            blocking(move || store.apply_remote(&rows, cursor, last_mutation_id, complete)).await?;
                            if first_sync {
                                self.status.send_modify(|s| if let Some(p) = &mut s.initial_sync { p.rows = initial_rows; p.cursor = cursor; });
                            }
                            self.refresh_status(None).await;
                        }
                        ServerMessage::CaughtUp { cursor } => {
                            let store = self.store.clone();
                            blocking(move || store.apply_remote(&[], cursor, None, true)).await?;
                            self.store.mark_synced_once()?;
                            self.status.send_modify(|s| s.initial_sync = None);
                            self.refresh_status(Some(Connection::Live)).await;
                        }
                        ServerMessage::PushResult { request_id: answered, results } => {
                            if in_flight.is_some_and(|(id, _)| id == answered) {
                                in_flight = None;
                            }
                            let store = self.store.clone();
                            blocking(move || store.apply_results(&results)).await?;
                            self.refresh_status(None).await;
                            push_now = true;
                        }
                        ServerMessage::Pong { .. } => {}
                        ServerMessage::Error(e) => match e.code {
                            ErrorCode::Unauthorized | ErrorCode::TokenExpired => {
                                return Err(ClientError::Auth(e.message));
                            }
                            ErrorCode::SessionChanged => {
                                self.on_session_changed().await?;
                                return Ok(SessionEnd::Reconnect);
                            }
                            _ => {
                                tracing::warn!(code = ?e.code, message = %e.message, "server error frame");
                                in_flight = None;
                            }
                        },
                    }
                }
                () = self.wake.notified() => push_now = true,
                _ = retry_timer.tick() => push_now = true,
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > self.config.dead_after {
                        return Err(offline("no answer from the server"));
                    }
                    nonce += 1;
                    let ping = serde_json::to_string(&ClientMessage::Ping { nonce }).map_err(|e| ClientError::Protocol(e.to_string()))?;
                    ws.send(Message::Text(ping.into())).await.map_err(offline)?;
                }
            }
            let stale = in_flight.is_some_and(|(_, at)| at.elapsed() >= self.config.push_retry);
            if welcomed && push_now && (in_flight.is_none() || stale) {
                let store = self.store.clone();
                let batch = self.config.push_batch;
                let mutations = blocking(move || store.unsent(batch)).await?;
                if !mutations.is_empty() {
                    request_id += 1;
                    let push = ClientMessage::Push {
                        request_id,
                        mutations,
                    };
                    let text = serde_json::to_string(&push)
                        .map_err(|e| ClientError::Protocol(e.to_string()))?;
                    ws.send(Message::Text(text.into())).await.map_err(offline)?;
                    in_flight = Some((request_id, Instant::now()));
                }
            }
        }
    }
}
