//! clinic-server: the Clinic Sync server, the authority on a clinic's data.
//!
//! It authorizes and applies every mutation exactly once ([`engine`], on one
//! writer thread: [`writer`]), records who did what, and streams the changes
//! to every connected client allowed to see them ([`feed`], [`ws`]), with
//! HTTP push and long-poll pull as the fallback ([`http`]). State lives
//! behind the [`storage::Storage`] trait; SQLite is the default backend.
//!
//! Layers, outermost first: [`run`] accepts connections (TLS when
//! configured: [`tls`]; header-read timeouts; graceful shutdown) → [`http`]
//! routes and limits, [`ws`] sockets → [`session`] (who is calling, sign-in
//! throttling) → [`writer`] / [`feed`] → [`engine`] → [`storage`]. Beside
//! them: [`revocation`] tells open sessions about security events,
//! [`audit`] records every delivery of clinical content; [`cluster`] brings
//! in what other processes on the same database commit (and wakes the
//! revocation reader when they record security events); [`blocking`] runs
//! storage calls off the async workers; [`datadir`] keeps the data directory
//! private and [`logging`] keeps secrets out of the logs; [`metrics`]
//! counts what operators watch (`GET /metrics`).

pub mod admin;
pub mod audit;
pub mod auth;
pub mod blocking;
pub mod care;
pub mod cluster;
pub mod datadir;
pub mod demo;
pub mod engine;
pub mod feed;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod revocation;
pub mod session;
pub mod status;
pub mod storage;
pub mod tls;
pub mod writer;
pub mod ws;

use clinic_shared::model::Timestamp;
use feed::Feed;
use hyper_util::rt::{TokioIo, TokioTimer};
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

/// The machine's time zone by IANA name (`TZ`, else `/etc/localtime`), or
/// `UTC` when it has none the time-zone database knows.
pub fn system_time_zone() -> String {
    jiff::tz::TimeZone::try_system()
        .ok()
        .and_then(|tz| tz.iana_name().map(str::to_owned))
        .filter(|name| clinic_shared::time::ClinicZone::parse(name).is_ok())
        .unwrap_or_else(|| "UTC".to_owned())
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
    /// How sign-in failures are throttled.
    pub throttle: session::ThrottlePolicy,
    /// How often to look for security events made by other processes
    /// (revocation reaches open sessions within this).
    pub security_poll: Duration,
    /// Demo mode (`serve --demo`): passwords that do not meet the policy
    /// (the demo's `demo`) are accepted without forcing a change.
    pub demo: bool,
    /// The clinic's time zone (IANA name), sent to every client at sign-in
    /// and on `welcome`: desks show and take times in it.
    pub time_zone: String,
    /// The clock.
    pub clock: Clock,
    /// TLS for every connection (`None`: plain HTTP, loopback only unless
    /// the operator insisted).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// How long the metrics keep the figures that cost a storage query
    /// (database size, open sessions) before reading them again.
    pub metrics_refresh: Duration,
    /// How long a doctor's break of the glass lets them read a patient's
    /// clinical records (from the moment they broke it).
    pub glass_grant: Duration,
    /// How long a waiting long-poll, woken by a new change, gathers what
    /// else arrives before it answers: each answer then carries several
    /// commits, and a busy clinic's desks poll a few dozen times a second,
    /// not once per commit.
    pub pull_gather: Duration,
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
            throttle: session::ThrottlePolicy::default(),
            security_poll: Duration::from_millis(200),
            demo: false,
            time_zone: system_time_zone(),
            clock: system_clock(),
            tls: None,
            metrics_refresh: Duration::from_secs(5),
            glass_grant: Duration::from_secs(clinic_shared::care::DEFAULT_GLASS_GRANT_SECONDS),
            pull_gather: Duration::from_millis(20),
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
    /// Security events (sign-outs, revocations) for open sessions.
    pub revocations: Arc<revocation::Revocations>,
    /// The access log's queue.
    pub audit: audit::AuditHandle,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// Limits concurrent password checks.
    pub login_permits: Arc<tokio::sync::Semaphore>,
    /// Open WebSocket tasks, awaited on shutdown.
    pub sockets: TaskTracker,
    /// WebSocket sessions past `hello`, for `/healthz`.
    pub live_sessions: Arc<std::sync::atomic::AtomicUsize>,
    /// Long-polls waiting for a change, for `/healthz`.
    pub waiting_pulls: Arc<std::sync::atomic::AtomicUsize>,
    /// The database's server epoch, read at start: a restore, which makes a
    /// new one, happens with every server stopped.
    pub server_epoch: Arc<str>,
    /// What `GET /metrics` reports.
    pub metrics: Arc<metrics::Metrics>,
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

/// A started server without a listener: its state, threads and pollers.
/// [`run`] serves it on a socket; tests can drive [`App::router`] in
/// process.
pub struct App {
    state: AppState,
    writer_thread: std::thread::JoinHandle<()>,
    audit_thread: std::thread::JoinHandle<()>,
    pollers: Vec<tokio::task::JoinHandle<()>>,
}

impl App {
    /// Starts the writer, the audit thread and the pollers over `storage`.
    /// Must be called within a tokio runtime.
    pub fn start(storage: Arc<dyn Storage>, config: Config) -> Result<App, ServerError> {
        // The two reads at start run on a thread of their own: storage calls
        // block, and PostgreSQL's blocking client panics on a thread that is
        // inside a tokio runtime (this one may be an async worker).
        let (feed, revocations, server_epoch) = std::thread::scope(|scope| {
            scope
                .spawn(|| -> Result<_, ServerError> {
                    Ok((
                        Feed::new(storage.clone(), config.feed_capacity)?,
                        revocation::Revocations::new(storage.clone())?,
                        storage.server_epoch()?,
                    ))
                })
                .join()
                .map_err(|_| std::io::Error::other("reading the storage at start panicked"))?
        })?;
        let (feed, revocations) = (Arc::new(feed), Arc::new(revocations));
        let server_epoch: Arc<str> = server_epoch.into();
        let waiting_pulls = Arc::<std::sync::atomic::AtomicUsize>::default();
        let metrics = Arc::new(metrics::Metrics::new(
            storage.clone(),
            config.clock.clone(),
            server_epoch.clone(),
            waiting_pulls.clone(),
            config.metrics_refresh,
        ));
        let (writer, writer_thread) = writer::spawn(
            storage.clone(),
            feed.clone(),
            revocations.clone(),
            config.clock.clone(),
            metrics.clone(),
        )?;
        let (audit, audit_thread) = audit::spawn(storage.clone())?;
        let token = CancellationToken::new();
        let state = AppState {
            storage: storage.clone(),
            feed: feed.clone(),
            writer,
            config: Arc::new(config.clone()),
            revocations: revocations.clone(),
            audit,
            shutdown: token.clone(),
            login_permits: Arc::new(tokio::sync::Semaphore::new(config.concurrent_logins.max(1))),
            sockets: TaskTracker::new(),
            live_sessions: Arc::default(),
            waiting_pulls,
            server_epoch,
            metrics,
        };
        let mut pollers = cluster::start(
            storage.clone(),
            feed.clone(),
            revocations.clone(),
            config.external_poll,
            token.clone(),
        )?;
        pollers.push(tokio::spawn(
            revocations.clone().run(config.security_poll, token.clone()),
        ));
        pollers.push(tokio::spawn(session::purge_expired_sessions(
            storage.clone(),
            config.clock.clone(),
            session::SESSION_PURGE_EVERY,
            token.clone(),
        )));
        Ok(App {
            state,
            writer_thread,
            audit_thread,
            pollers,
        })
    }

    /// The routes, ready to serve requests.
    pub fn router(&self) -> axum::Router {
        http::router(self.state.clone())
    }

    /// What request handlers share.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Closes WebSockets, stops the pollers, lets the writer and the audit
    /// thread finish their queues, and returns. Requests still in flight
    /// elsewhere should be finished first (see [`run`]).
    pub async fn stop(self) {
        let App {
            state,
            writer_thread,
            audit_thread,
            pollers,
        } = self;
        state.shutdown.cancel();
        state.sockets.close();
        let grace = state.config.shutdown_grace;
        if tokio::time::timeout(grace, state.sockets.wait())
            .await
            .is_err()
        {
            tracing::warn!("some WebSocket connections did not close in time");
        }
        for poller in pollers {
            let _ = poller.await;
        }
        drop(state);
        // Every writer and audit handle is gone now (the router and its
        // clones were dropped by the caller): both threads finish their
        // queues and stop.
        let joined = tokio::task::spawn_blocking(move || {
            let _ = writer_thread.join();
            audit_thread.join()
        });
        if tokio::time::timeout(grace, joined).await.is_err() {
            tracing::warn!("the writer or the audit thread did not stop in time");
        }
    }
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
    run_with_metrics(listener, None, storage, config, shutdown).await
}

/// [`run`], also serving `GET /metrics` in plain HTTP on
/// `metrics_listener` (the `--metrics-listen` address) when given.
pub async fn run_with_metrics(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    storage: Arc<dyn Storage>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let server = App::start(storage, config.clone())?;
    let app = server.router();
    let metrics_server = metrics_listener.map(|listener| {
        tokio::spawn(metrics::serve(
            listener,
            server.state().metrics.clone(),
            config.header_read_timeout,
            config.request_timeout,
            server.state().shutdown.clone(),
        ))
    });
    // Every connection task, so that shutdown can wait for in-flight
    // requests; `closing` asks each connection to finish its current
    // request and close.
    let connections = TaskTracker::new();
    let closing = CancellationToken::new();
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
                // Handlers see the peer (sign-in throttling and log) as `ConnectInfo`.
                let service = TowerToHyperService::new(
                    tower::ServiceExt::map_request(app.clone(), move |mut request: axum::extract::Request<hyper::body::Incoming>| {
                        request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                        request
                    }),
                );
                let header_read_timeout = config.header_read_timeout;
                let closing = closing.clone();
                let tls = config.tls.clone();
                connections.spawn(async move {
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
                    let Some(stream) = tls::wrap(stream, first[0], tls, header_read_timeout, peer).await else {
                        return;
                    };
                    // HTTP/1.1 only. The protocol is HTTP/1.1 (PROTOCOL §7.9):
                    // an HTTP/2 connection would bypass the header-read and
                    // idle timeouts below, so its preface is refused as a bad
                    // request line instead of being served.
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(header_read_timeout)
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    let mut conn = std::pin::pin!(conn);
                    let ended = tokio::select! {
                        ended = conn.as_mut() => ended,
                        () = closing.cancelled() => {
                            // Finish the request in flight, then close.
                            conn.as_mut().graceful_shutdown();
                            conn.await
                        }
                    };
                    if let Err(e) = ended {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    tracing::info!("shutting down: no new connections");
    drop(listener);
    // New requests are refused from here; in-flight ones finish.
    server.state().shutdown.cancel();
    closing.cancel();
    connections.close();
    if tokio::time::timeout(config.shutdown_grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("some HTTP connections did not finish in time");
    }
    drop(app);
    if let Some(task) = metrics_server {
        let _ = task.await;
    }
    server.stop().await;
    tracing::info!("stopped");
    Ok(())
}
