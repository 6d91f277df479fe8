//! clinic-server: the Clinic Sync server, the authority on a clinic's data.
//!
//! It authorizes and applies every mutation exactly once ([`engine`], on one
//! writer thread: [`writer`]), records who did what, and streams the changes
//! to every connected client allowed to see them ([`feed`], [`ws`]), with
//! HTTP push and long-poll pull as the fallback ([`http`]). State lives
//! behind the [`storage::Storage`] trait; SQLite is the default backend.
//!
//! Layers, outermost first: [`run`] accepts connections (with header-read
//! timeouts and graceful shutdown) → [`http`] routes and limits →
//! [`auth`] → [`writer`] / [`feed`] → [`engine`] → [`storage`]. Beside them,
//! [`cluster`] brings in what other processes on the same database commit
//! or revoke.

pub mod admin;
pub mod auth;
pub mod cluster;
pub mod demo;
pub mod engine;
pub mod feed;
pub mod http;
pub mod storage;
pub mod writer;
pub mod ws;

use clinic_shared::model::Timestamp;
use feed::Feed;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use storage::Storage;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The server's clock, injectable for tests.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| Timestamp::from_datetime(chrono::Utc::now()))
}

/// Server settings. [`Config::default`] is what the binary uses.
#[derive(Clone)]
pub struct Config {
    /// How long a sign-in lasts.
    pub session_ttl: Duration,
    /// Batches a subscriber may fall behind before it must catch up from
    /// storage.
    pub feed_capacity: usize,
    /// How long one WebSocket send may take before the subscriber is cut off.
    pub ws_send_timeout: Duration,
    /// Interval of WebSocket pings from the server.
    pub heartbeat: Duration,
    /// How long a client may take to send request headers.
    pub header_read_timeout: Duration,
    /// Longest an ordinary (not long-poll) request may take.
    pub request_timeout: Duration,
    /// How often to look for commits made by other processes.
    pub external_poll: Duration,
    /// Signs-in verified at once (each Argon2 check costs ~19 MiB and tens of ms).
    pub concurrent_logins: usize,
    /// How long shutdown waits for open connections.
    pub shutdown_grace: Duration,
    /// The clock.
    pub clock: Clock,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            session_ttl: Duration::from_secs(7 * 24 * 3600),
            feed_capacity: 256,
            ws_send_timeout: Duration::from_secs(10),
            heartbeat: Duration::from_secs(15),
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            external_poll: Duration::from_millis(500),
            concurrent_logins: 4,
            shutdown_grace: Duration::from_secs(10),
            clock: system_clock(),
        }
    }
}

/// Everything a request handler needs.
#[derive(Clone)]
pub struct AppState {
    /// Durable state.
    pub storage: Arc<dyn Storage>,
    /// Published changes.
    pub feed: Arc<Feed>,
    /// The writer thread.
    pub writer: writer::WriterHandle,
    /// Settings.
    pub config: Arc<Config>,
    /// Sessions ended by logout, by token hash: open sockets of that session close.
    pub ended_sessions: tokio::sync::broadcast::Sender<String>,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// Limits concurrent password checks.
    pub login_permits: Arc<tokio::sync::Semaphore>,
    /// Open WebSocket tasks, awaited on shutdown.
    pub sockets: TaskTracker,
    /// WebSocket sessions past `hello`, for `/healthz`.
    pub live_sessions: Arc<std::sync::atomic::AtomicUsize>,
    /// Tokens of open WebSockets, re-checked when another process may have
    /// ended their sessions.
    pub live_tokens: Arc<cluster::LiveTokens>,
}

/// A failure that stops the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Storage could not be read at start.
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    /// A thread could not be started.
    #[error("could not start the writer thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Serves the API on `listener` until `shutdown` completes, then stops
/// accepting, closes WebSockets, lets in-flight requests and the writer's
/// queued transactions finish, and returns.
pub async fn run(
    listener: TcpListener,
    storage: Arc<dyn Storage>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    // Storage calls block (and PostgreSQL's client must not run on an async
    // worker): off the runtime, like every other.
    let (s, capacity) = (storage.clone(), config.feed_capacity);
    let feed = tokio::task::spawn_blocking(move || Feed::new(s, capacity))
        .await
        .map_err(std::io::Error::other)??;
    let feed = Arc::new(feed);
    let (writer, writer_thread) =
        writer::spawn(storage.clone(), feed.clone(), config.clock.clone())?;
    let token = CancellationToken::new();
    let state = AppState {
        storage: storage.clone(),
        feed: feed.clone(),
        writer,
        config: Arc::new(config.clone()),
        ended_sessions: tokio::sync::broadcast::channel(64).0,
        shutdown: token.clone(),
        login_permits: Arc::new(tokio::sync::Semaphore::new(config.concurrent_logins.max(1))),
        sockets: TaskTracker::new(),
        live_sessions: Arc::default(),
        live_tokens: Arc::default(),
    };

    let cluster_tasks = cluster::start(&state, token.clone())?;
    let app = http::router(state.clone());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(app.clone());
                let header_read_timeout = config.header_read_timeout;
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    // A connection that sends nothing at all is closed like
                    // one whose request head is slow: hyper's header read
                    // timeout only starts with the first byte.
                    let mut first = [0u8; 1];
                    match tokio::time::timeout(header_read_timeout, stream.peek(&mut first)).await {
                        Ok(Ok(n)) if n > 0 => {}
                        _ => {
                            tracing::debug!(%peer, "connection sent nothing in time; closed");
                            return;
                        }
                    }
                    let mut builder = auto::Builder::new(TokioExecutor::new());
                    builder
                        .http1()
                        .timer(TokioTimer::new())
                        .header_read_timeout(header_read_timeout);
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    tracing::info!("shutting down: no new connections");
    drop(listener);
    token.cancel();
    state.sockets.close();
    let grace = config.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some HTTP connections did not finish in time");
    }
    if tokio::time::timeout(grace, state.sockets.wait())
        .await
        .is_err()
    {
        tracing::warn!("some WebSocket connections did not close in time");
    }
    for task in cluster_tasks {
        let _ = task.await;
    }
    drop(app);
    drop(state);
    // Every writer handle is gone now: the writer finishes its queue and stops.
    let joined = tokio::task::spawn_blocking(move || writer_thread.join());
    if tokio::time::timeout(grace, joined).await.is_err() {
        tracing::warn!("the writer did not stop in time");
    }
    tracing::info!("stopped");
    Ok(())
}
