//! Server metrics in the Prometheus text exposition format (version 0.0.4),
//! served on `GET /metrics`: on the separate `--metrics-listen` address
//! ([`serve`], plain HTTP for the monitoring network) and on the main
//! listener to administrators.
//!
//! A small registry of atomics rather than a metrics crate: the server has
//! a fixed, small set of series, each owned by one [`Metrics`] value in
//! [`crate::AppState`] (no global recorder, so several servers in one test
//! process keep apart), every update is one relaxed atomic add on the hot
//! path, and the format is a few dozen lines to write and to test.
//!
//! What the series may carry: counts, durations and sizes only. No label
//! holds a username, a patient, a record id or anything a person typed (a
//! label per user would leak who works when and grow without bound); label
//! values come from fixed lists in this module.
//!
//! Figures that need a storage query (database size, open sessions) are
//! read on the blocking pool at most once per `Config::metrics_refresh`,
//! however often the endpoint is scraped, and never on an async worker.
//!
//! Also here: [`parse`] reads the format back (for `clinic-server status`),
//! and [`Histogram::quantile`] estimates a quantile from buckets the way
//! Prometheus' `histogram_quantile` does.

use crate::storage::Storage;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the commit-latency buckets: a SQLite group
/// commit with fsync takes about a millisecond on an SSD, a PostgreSQL one
/// a few; seconds mean a disk or lock in trouble.
pub const COMMIT_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Upper bounds (seconds) of the fan-out lag buckets: from a commit to its
/// live frame written to a subscriber's socket.
pub const FANOUT_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A histogram of durations with fixed buckets.
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// An empty histogram with these upper bounds (ascending, seconds).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Cumulative counts per upper bound (`+Inf` last) and the sum in
    /// seconds. The count is the `+Inf` bucket, so the two always agree.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0u64;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            running += c.load(Ordering::Relaxed);
            let bound = self.bounds.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, running));
        }
        HistogramSnapshot {
            buckets,
            sum: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// A histogram read at one moment: cumulative `(upper bound, count)`
/// pairs ending with `+Inf`, and the sum of observations.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Cumulative buckets, `+Inf` last.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the observations, seconds.
    pub sum: f64,
}

impl HistogramSnapshot {
    /// Observations.
    pub fn count(&self) -> u64 {
        self.buckets.last().map_or(0, |(_, c)| *c)
    }

    /// The `q` quantile (0..=1) estimated by linear interpolation within
    /// the bucket that holds it, as Prometheus' `histogram_quantile` does;
    /// `None` without observations. A quantile in the `+Inf` bucket is
    /// given as the highest finite bound (it is at least that).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut lower = (0.0, 0u64);
        for &(bound, count) in &self.buckets {
            if count as f64 >= rank && count > 0 {
                if bound.is_infinite() {
                    return Some(lower.0);
                }
                let in_bucket = (count - lower.1) as f64;
                let into = if in_bucket > 0.0 {
                    (rank - lower.1 as f64) / in_bucket
                } else {
                    1.0
                };
                return Some(lower.0 + (bound - lower.0) * into.clamp(0.0, 1.0));
            }
            lower = (bound, count);
        }
        Some(lower.0)
    }
}

/// How a mutation of a push came out, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutationCount {
    /// Applied now.
    Applied,
    /// Refused now (a rule, a conflict, a permission).
    Rejected,
    /// A retry of one processed before: answered with its first result.
    Duplicate,
    /// Not processed (out of order, bad id): the client sends it again.
    Retry,
}

impl MutationCount {
    const ALL: [MutationCount; 4] = [
        MutationCount::Applied,
        MutationCount::Rejected,
        MutationCount::Duplicate,
        MutationCount::Retry,
    ];

    fn label(self) -> &'static str {
        match self {
            MutationCount::Applied => "applied",
            MutationCount::Rejected => "rejected",
            MutationCount::Duplicate => "duplicate",
            MutationCount::Retry => "retry",
        }
    }
}

/// How a push that reached the writer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushCount {
    /// Committed; each mutation has its result.
    Committed,
    /// Refused whole (a client id of another user).
    Refused,
    /// The transaction failed (disk full, database error): nothing written.
    Failed,
}

impl PushCount {
    const ALL: [PushCount; 3] = [PushCount::Committed, PushCount::Refused, PushCount::Failed];

    fn label(self) -> &'static str {
        match self {
            PushCount::Committed => "committed",
            PushCount::Refused => "refused",
            PushCount::Failed => "failed",
        }
    }
}

/// Why a WebSocket subscriber stopped getting live frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutOff {
    /// A send took longer than `Config::ws_send_timeout`: disconnected.
    TooSlow,
    /// It fell more than `--feed-capacity` batches behind the feed and
    /// catches up from storage instead (the connection stays).
    Lagged,
    /// The peer sent nothing past the idle limit: disconnected.
    Idle,
}

impl CutOff {
    const ALL: [CutOff; 3] = [CutOff::TooSlow, CutOff::Lagged, CutOff::Idle];

    fn label(self) -> &'static str {
        match self {
            CutOff::TooSlow => "too_slow",
            CutOff::Lagged => "lagged",
            CutOff::Idle => "idle",
        }
    }
}

/// Why a password check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInFailure {
    /// Unknown username or wrong password.
    WrongCredentials,
    /// Right password, disabled account.
    Disabled,
}

impl SignInFailure {
    const ALL: [SignInFailure; 2] = [SignInFailure::WrongCredentials, SignInFailure::Disabled];

    fn label(self) -> &'static str {
        match self {
            SignInFailure::WrongCredentials => "wrong_credentials",
            SignInFailure::Disabled => "disabled",
        }
    }
}

/// Counts per second over the last minute, for `clinic-server status`
/// (Prometheus derives rates from the counters instead). Only the writer
/// thread adds, so a slot's reset and its adds never race.
struct LastMinute {
    second: [AtomicU64; 60],
    count: [AtomicU64; 60],
}

impl LastMinute {
    fn new() -> LastMinute {
        LastMinute {
            second: std::array::from_fn(|_| AtomicU64::new(u64::MAX)),
            count: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn add(&self, now: u64, n: u64) {
        let i = (now % 60) as usize;
        if self.second[i].load(Ordering::Relaxed) != now {
            self.count[i].store(0, Ordering::Relaxed);
            self.second[i].store(now, Ordering::Relaxed);
        }
        self.count[i].fetch_add(n, Ordering::Relaxed);
    }

    fn sum(&self, now: u64) -> u64 {
        (0..60)
            .filter(|&i| {
                let s = self.second[i].load(Ordering::Relaxed);
                s <= now && now - s < 60
            })
            .map(|i| self.count[i].load(Ordering::Relaxed))
            .sum()
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What storage says, read at most once per refresh interval.
#[derive(Debug, Clone, Copy)]
struct StorageFigures {
    database_bytes: u64,
    open_sessions: u64,
}

/// Every series of one server process.
pub struct Metrics {
    storage: Arc<dyn Storage>,
    clock: crate::Clock,
    server_epoch: Arc<str>,
    started_unix: f64,
    refresh: Duration,
    websockets: AtomicUsize,
    http_in_flight: AtomicUsize,
    waiting_pulls: Arc<AtomicUsize>,
    pushes: [AtomicU64; 3],
    mutations: [AtomicU64; 4],
    applied_last_minute: LastMinute,
    commits: Histogram,
    commit_failures: AtomicU64,
    fanout: Histogram,
    cut_off: [AtomicU64; 3],
    sign_in_failures: [AtomicU64; 2],
    sign_in_throttled: AtomicU64,
    /// The storage figures and when they were read; the lock makes one
    /// scrape read them while others wait for its answer.
    figures: tokio::sync::Mutex<Option<(Instant, Option<StorageFigures>)>>,
}

impl Metrics {
    /// The series of a server over `storage`; `waiting_pulls` is the
    /// long-poll count `/healthz` shows too.
    pub fn new(
        storage: Arc<dyn Storage>,
        clock: crate::Clock,
        server_epoch: Arc<str>,
        waiting_pulls: Arc<AtomicUsize>,
        refresh: Duration,
    ) -> Metrics {
        Metrics {
            storage,
            clock,
            server_epoch,
            started_unix: unix_now(),
            refresh,
            websockets: AtomicUsize::new(0),
            http_in_flight: AtomicUsize::new(0),
            waiting_pulls,
            pushes: Default::default(),
            mutations: Default::default(),
            applied_last_minute: LastMinute::new(),
            commits: Histogram::new(COMMIT_BUCKETS),
            commit_failures: AtomicU64::new(0),
            fanout: Histogram::new(FANOUT_BUCKETS),
            cut_off: Default::default(),
            sign_in_failures: Default::default(),
            sign_in_throttled: AtomicU64::new(0),
            figures: tokio::sync::Mutex::new(None),
        }
    }

    /// Counts an open WebSocket until the guard is dropped.
    pub fn websocket_open(self: &Arc<Self>) -> OpenGuard {
        self.websockets.fetch_add(1, Ordering::Relaxed);
        OpenGuard(self.clone())
    }

    /// A group commit that became durable `took` after its transaction
    /// began.
    pub fn commit_durable(&self, took: Duration) {
        self.commits.observe(took);
    }

    /// A write transaction that failed (nothing written).
    pub fn commit_failed(&self) {
        self.commit_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// One push's end at the writer.
    pub fn push(&self, how: PushCount) {
        self.pushes[how as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// `n` mutations that came out `how`. Called by the writer thread only
    /// (the last-minute window relies on one adder).
    pub fn mutations(&self, how: MutationCount, n: u64) {
        if n == 0 {
            return;
        }
        self.mutations[how as usize].fetch_add(n, Ordering::Relaxed);
        if how == MutationCount::Applied {
            self.applied_last_minute.add(unix_now() as u64, n);
        }
    }

    /// A live frame written to a subscriber `lag` after its commit was
    /// published.
    pub fn fanout(&self, lag: Duration) {
        self.fanout.observe(lag);
    }

    /// A subscriber cut off from the live feed.
    pub fn cut_off(&self, why: CutOff) {
        self.cut_off[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A failed password check (sign-in or password change).
    pub fn sign_in_failed(&self, why: SignInFailure) {
        self.sign_in_failures[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A password check refused unseen because its username or address is
    /// locked out.
    pub fn sign_in_throttled(&self) {
        self.sign_in_throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// The storage figures, read anew on the blocking pool when older than
    /// the refresh interval; `None` when the last read failed (logged).
    async fn storage_figures(&self) -> Option<StorageFigures> {
        let mut cached = self.figures.lock().await;
        if let Some((at, figures)) = *cached
            && at.elapsed() < self.refresh
        {
            return figures;
        }
        let storage = self.storage.clone();
        let now = (self.clock)();
        let read = tokio::task::spawn_blocking(move || {
            Ok::<_, crate::storage::StorageError>(StorageFigures {
                database_bytes: storage.database_size()?,
                open_sessions: storage.count_open_sessions(now)?,
            })
        })
        .await;
        let figures = match read {
            Ok(Ok(f)) => Some(f),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reading the database size and sessions for the metrics failed");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "the metrics' storage read did not finish");
                None
            }
        };
        *cached = Some((Instant::now(), figures));
        figures
    }

    /// Every series in the text format.
    pub async fn render(&self) -> String {
        let figures = self.storage_figures().await;
        let mut out = Text::default();
        out.family(
            "clinic_build_info",
            "gauge",
            "Always 1; the labels say which server this is: version, storage backend, and the database's server epoch (new after a restore).",
        );
        out.sample(
            "clinic_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("backend", self.storage.backend_name()),
                ("server_epoch", &self.server_epoch),
            ],
            1.0,
        );
        out.family(
            "process_start_time_seconds",
            "gauge",
            "When the server process started, Unix time in seconds.",
        );
        out.sample("process_start_time_seconds", &[], self.started_unix);
        out.family(
            "clinic_connections_open",
            "gauge",
            "Open connections by transport: WebSocket sessions (from the upgrade to the close), long-polls waiting for a change, HTTP requests being answered on the main listener (long-polls included).",
        );
        for (transport, n) in [
            ("websocket", self.websockets.load(Ordering::Relaxed)),
            ("long_poll", self.waiting_pulls.load(Ordering::Relaxed)),
            ("http", self.http_in_flight.load(Ordering::Relaxed)),
        ] {
            out.sample(
                "clinic_connections_open",
                &[("transport", transport)],
                n as f64,
            );
        }
        out.family(
            "clinic_pushes_total",
            "counter",
            "Pushes (HTTP or WebSocket) that reached the writer, by result: committed, refused whole (another user's client id), failed (nothing written).",
        );
        for how in PushCount::ALL {
            let n = self.pushes[how as usize].load(Ordering::Relaxed);
            out.sample("clinic_pushes_total", &[("result", how.label())], n as f64);
        }
        out.family(
            "clinic_mutations_total",
            "counter",
            "Mutations processed in committed pushes, by outcome: applied, rejected, duplicate (a retry answered with its first result), retry (not processed; the client sends it again). Mutations per second: rate().",
        );
        for how in MutationCount::ALL {
            let n = self.mutations[how as usize].load(Ordering::Relaxed);
            out.sample(
                "clinic_mutations_total",
                &[("outcome", how.label())],
                n as f64,
            );
        }
        out.family(
            "clinic_mutations_applied_last_minute",
            "gauge",
            "Mutations applied in the last 60 seconds by this process (for `clinic-server status`; in Prometheus use rate(clinic_mutations_total[1m])).",
        );
        out.sample(
            "clinic_mutations_applied_last_minute",
            &[],
            self.applied_last_minute.sum(unix_now() as u64) as f64,
        );
        out.histogram(
            "clinic_commit_duration_seconds",
            "The writer's group commits: from the start of the transaction to durable (committed and synced), seconds.",
            &self.commits.snapshot(),
        );
        out.family(
            "clinic_commit_failures_total",
            "counter",
            "Write transactions of the writer that failed and wrote nothing (disk full, database errors).",
        );
        out.sample(
            "clinic_commit_failures_total",
            &[],
            self.commit_failures.load(Ordering::Relaxed) as f64,
        );
        out.histogram(
            "clinic_fanout_lag_seconds",
            "From a commit published to the feed (right after it became durable) to its live changes frame written to a WebSocket subscriber, seconds.",
            &self.fanout.snapshot(),
        );
        out.family(
            "clinic_subscribers_cut_off_total",
            "counter",
            "WebSocket subscribers cut off from the live feed, by reason: too_slow (a send timed out; disconnected), lagged (fell behind the feed; caught up from the database), idle (silent past the limit; disconnected).",
        );
        for why in CutOff::ALL {
            let n = self.cut_off[why as usize].load(Ordering::Relaxed);
            out.sample(
                "clinic_subscribers_cut_off_total",
                &[("reason", why.label())],
                n as f64,
            );
        }
        out.family(
            "clinic_sign_in_failures_total",
            "counter",
            "Failed password checks (sign-ins and password changes), by reason: wrong_credentials (unknown user or wrong password), disabled (right password, disabled account).",
        );
        for why in SignInFailure::ALL {
            let n = self.sign_in_failures[why as usize].load(Ordering::Relaxed);
            out.sample(
                "clinic_sign_in_failures_total",
                &[("reason", why.label())],
                n as f64,
            );
        }
        out.family(
            "clinic_sign_in_throttled_total",
            "counter",
            "Password checks answered 429 without looking at the password: the username or the address was locked out after repeated failures.",
        );
        out.sample(
            "clinic_sign_in_throttled_total",
            &[],
            self.sign_in_throttled.load(Ordering::Relaxed) as f64,
        );
        out.family(
            "clinic_database_size_bytes",
            "gauge",
            "Bytes the database takes on disk: SQLite, the database file plus its WAL; PostgreSQL, pg_database_size. Read at most once per refresh interval; absent when the read failed.",
        );
        if let Some(f) = figures {
            out.sample("clinic_database_size_bytes", &[], f.database_bytes as f64);
        }
        out.family(
            "clinic_sessions_open",
            "gauge",
            "Sign-in sessions that have not expired (every server on the database), read with the database size.",
        );
        if let Some(f) = figures {
            out.sample("clinic_sessions_open", &[], f.open_sessions as f64);
        }
        out.0
    }
}

/// Keeps an open connection counted.
pub struct OpenGuard(Arc<Metrics>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.websockets.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The exposition text being written.
#[derive(Default)]
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {}", number(value));
    }

    fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (bound, count) in &h.buckets {
            let le = number(*bound);
            self.sample(&bucket, &[("le", &le)], *count as f64);
        }
        self.sample(&format!("{name}_sum"), &[], h.sum);
        self.sample(&format!("{name}_count"), &[], h.count() as f64);
    }
}

/// A value as the format writes it (`+Inf`, integers without a fraction).
fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.is_nan() {
        "NaN".to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// Counts the main listener's requests in flight (a layer of
/// [`crate::http::router`]).
pub async fn count_in_flight(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    struct InFlight(Arc<Metrics>);
    impl Drop for InFlight {
        fn drop(&mut self) {
            self.0.http_in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
    metrics.http_in_flight.fetch_add(1, Ordering::Relaxed);
    // Dropped when the answer is ready, or when the client went away first.
    let _in_flight = InFlight(metrics);
    next.run(request).await
}

/// The answer of `GET /metrics`.
pub async fn answer(metrics: &Metrics) -> Response {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        metrics.render().await,
    )
        .into_response()
}

/// The metrics listener's routes: `GET /metrics`, nothing else.
pub fn router(metrics: Arc<Metrics>, request_timeout: Duration) -> axum::Router {
    axum::Router::new()
        .route(
            "/metrics",
            get(|State(m): State<Arc<Metrics>>| async move { answer(&m).await }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "this listener serves only GET /metrics\n",
            )
        })
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .with_state(metrics)
}

/// Serves `GET /metrics` in plain HTTP on `listener` until `shutdown` is
/// cancelled. It carries no patient data and needs no sign-in: bind it to
/// localhost or the monitoring network only.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    header_read_timeout: Duration,
    request_timeout: Duration,
    shutdown: CancellationToken,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let service = hyper_util::service::TowerToHyperService::new(router(metrics, request_timeout));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let service = service.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // As on the main listener: a connection that sends nothing is
            // closed (hyper's header timeout starts with the first byte),
            // and HTTP/1.1 only, so every request head has a deadline.
            let mut first = [0u8; 1];
            match tokio::time::timeout(header_read_timeout, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "metrics connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
}

/// One sample read back from the text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series name (`..._bucket`, `..._sum` included).
    pub name: String,
    /// Its labels in the order written.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A line that is not the text format.
#[derive(Debug, thiserror::Error)]
#[error("line {line} of the metrics is not in the Prometheus text format: {reason}")]
pub struct ParseError {
    /// 1-based.
    pub line: usize,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Reads the samples of a text-format document (comments skipped).
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut samples = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |reason| ParseError {
            line: i + 1,
            reason,
        };
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .ok_or(fail("no value"))?;
        let name = &line[..name_end];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            return Err(fail("bad series name"));
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let (parsed, after) = parse_labels(inner).ok_or(fail("bad labels"))?;
            labels = parsed;
            rest = after;
        }
        let value = rest.split_whitespace().next().ok_or(fail("no value"))?;
        let value = match value {
            "+Inf" | "Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| fail("bad value"))?,
        };
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(samples)
}

/// `k="v",...}` → the labels and what follows the `}`.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_owned();
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (at, c) = chars.next()?;
            match c {
                '"' => break at,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                other => value.push(other),
            }
        };
        labels.push((key, value));
        s = s[end + 1..].trim_start();
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_their_count_is_the_inf_bucket() {
        let h = Histogram::new(&[0.001, 0.01, 0.1]);
        for ms in [0, 1, 5, 5, 50, 2000] {
            h.observe(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        assert_eq!(
            s.buckets,
            vec![(0.001, 2), (0.01, 4), (0.1, 5), (f64::INFINITY, 6)]
        );
        assert_eq!(s.count(), 6);
        assert!((s.sum - 2.061).abs() < 1e-9, "{}", s.sum);
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_like_prometheus() {
        let s = HistogramSnapshot {
            buckets: vec![(0.001, 50), (0.01, 90), (0.1, 100), (f64::INFINITY, 100)],
            sum: 0.0,
        };
        // Rank 50 of 100 is the top of the first bucket.
        assert!((s.quantile(0.5).unwrap() - 0.001).abs() < 1e-12);
        // Rank 70: halfway through (0.001, 0.01].
        assert!((s.quantile(0.7).unwrap() - 0.0055).abs() < 1e-12);
        // Rank 99: 9 of the 10 in (0.01, 0.1].
        assert!((s.quantile(0.99).unwrap() - 0.091).abs() < 1e-12);
        let over = HistogramSnapshot {
            buckets: vec![(0.001, 1), (f64::INFINITY, 10)],
            sum: 0.0,
        };
        assert_eq!(over.quantile(0.99), Some(0.001), "at least the top bound");
        let empty = HistogramSnapshot {
            buckets: vec![(0.001, 0), (f64::INFINITY, 0)],
            sum: 0.0,
        };
        assert_eq!(empty.quantile(0.5), None);
    }

    #[test]
    fn text_written_reads_back_with_escapes_and_infinity() {
        let mut t = Text::default();
        t.family("x_total", "counter", "Things.");
        t.sample("x_total", &[("a", "q\"uo\\te"), ("b", "two\nlines")], 3.0);
        t.histogram(
            "lat_seconds",
            "Latency.",
            &HistogramSnapshot {
                buckets: vec![(0.5, 1), (f64::INFINITY, 2)],
                sum: 1.25,
            },
        );
        let samples = parse(&t.0).unwrap();
        assert_eq!(samples[0].name, "x_total");
        assert_eq!(samples[0].label("a"), Some("q\"uo\\te"));
        assert_eq!(samples[0].label("b"), Some("two\nlines"));
        assert_eq!(samples[0].value, 3.0);
        let inf = samples
            .iter()
            .find(|s| s.label("le") == Some("+Inf"))
            .unwrap();
        assert_eq!(inf.value, 2.0);
        assert!(
            t.0.contains("lat_seconds_bucket{le=\"0.5\"} 1\n"),
            "{}",
            t.0
        );
        assert!(t.0.contains("lat_seconds_sum 1.25\n"));
        assert!(t.0.contains("lat_seconds_count 2\n"));
        assert!(parse("bad line with {").is_err());
        assert!(parse("name{a=\"x\"} notanumber").is_err());
    }

    #[test]
    fn the_last_minute_window_forgets_old_seconds() {
        let w = LastMinute::new();
        w.add(1000, 3);
        w.add(1030, 2);
        assert_eq!(w.sum(1030), 5);
        assert_eq!(w.sum(1059), 5);
        assert_eq!(w.sum(1060), 2, "second 1000 is a minute old");
        w.add(1060, 1); // the same slot as second 1000, reset first
        assert_eq!(w.sum(1060), 3);
        assert_eq!(w.sum(2000), 0);
    }
}
