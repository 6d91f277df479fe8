//! Scenarios 1 and 2: how long a change takes from the front desk to every
//! other desk.
//!
//! One writer (a full client, `clinic_client::ClinicClient`, signed in as
//! reception) registers patients; latency is measured from its local call
//! (`ClinicClient::mutate`) returning to each subscriber having the row:
//! - a full client ("engine"): the row committed in its local SQLite mirror
//!   and the mirror's change event received (`ClinicClient::subscribe`);
//! - a protocol-level WebSocket subscriber: the `changes` message holding
//!   the row received and decoded;
//! - a protocol-level long-poll subscriber (`GET /v1/pull?wait=…` in a
//!   loop, as a desk behind a proxy that blocks WebSockets): the answer
//!   holding the row received and decoded. It measures the server's
//!   long-poll path without 100 full engines in the bench process.
//!
//! Row ids are made before a phase starts, so a subscriber finds which
//! write a row belongs to without a lock; write times are atomics.

use crate::harness::{self, EngineHandle, ServerProc};
use crate::report::{Samples, ScenarioReport, Target};
use clinic_client::{ChangeOrigin, ClinicClient, SyncConfig};
use clinic_shared::model::Table;
use clinic_shared::protocol::{ClientMessage, LoginResponse, PullResponse, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, broadcast, watch};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// How subscriber engines sync.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Mode {
    /// WebSocket (the default engine).
    Live,
    /// WebSocket disabled: HTTP push and long-poll pull.
    LongPoll,
    /// Plain interval polling: `sync_once` every so often, nothing live.
    Interval(Duration),
}

/// One propagation case.
#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub label: String,
    /// Full subscriber engines.
    pub engines: usize,
    /// Protocol-level WebSocket subscribers.
    pub ws: usize,
    /// Protocol-level long-poll subscribers.
    pub lp: usize,
    pub mode: Mode,
    /// Writes per phase.
    pub changes: usize,
    /// Fixed rate of the first phase (changes/s).
    pub rate: f64,
    /// Also run an as-fast-as-possible phase.
    pub fast_phase: bool,
    /// p99 target (ms) of the fixed-rate phase, for both subscriber kinds.
    pub p99_target: Option<f64>,
    /// How long to wait for the last deliveries after the last write.
    pub grace: Duration,
    /// Server CPU target (% of one core) of the fixed-rate phase.
    pub cpu_target: Option<f64>,
}

/// Deliveries seen by one subscriber in one phase.
#[derive(Default)]
struct Recv {
    seen: Vec<u64>,
    lat_us: Vec<u32>,
    /// Rows that arrived before the writer noted its time (resolved later).
    early: Vec<(u32, u64)>,
}

/// One phase: the writes and what every subscriber received.
struct Phase {
    ids: Vec<Uuid>,
    index: HashMap<Uuid, u32>,
    epoch: Instant,
    /// Nanoseconds since `epoch` + 1 when the writer's call returned; 0 = not yet.
    written: Vec<AtomicU64>,
    recv: Vec<Mutex<Recv>>,
    delivered: AtomicU64,
    duplicates: AtomicU64,
}

type Slot = Arc<RwLock<Option<Arc<Phase>>>>;

fn current(slot: &Slot) -> Option<Arc<Phase>> {
    slot.read().unwrap_or_else(|p| p.into_inner()).clone()
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Phase {
    fn new(changes: usize, subscribers: usize) -> Phase {
        let ids: Vec<Uuid> = (0..changes).map(|_| Uuid::now_v7()).collect();
        let index = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        let words = changes.div_ceil(64);
        Phase {
            ids,
            index,
            epoch: Instant::now(),
            written: (0..changes).map(|_| AtomicU64::new(0)).collect(),
            recv: (0..subscribers)
                .map(|_| {
                    Mutex::new(Recv {
                        seen: vec![0; words],
                        lat_us: Vec::with_capacity(changes),
                        early: Vec::new(),
                    })
                })
                .collect(),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
        }
    }

    fn mark_written(&self, i: usize) {
        if let Some(w) = self.written.get(i) {
            w.store(nanos(self.epoch.elapsed()) + 1, Ordering::Release);
        }
    }

    /// Notes that subscriber `sub` has the rows `ids` at `now`.
    fn record(&self, sub: usize, ids: impl Iterator<Item = Uuid>, now: Instant) {
        let Some(cell) = self.recv.get(sub) else {
            return;
        };
        let now_ns = nanos(now.saturating_duration_since(self.epoch)) + 1;
        let mut r = cell.lock().unwrap_or_else(|p| p.into_inner());
        let mut fresh = 0;
        for id in ids {
            let Some(&i) = self.index.get(&id) else {
                continue;
            };
            let (word, bit) = ((i / 64) as usize, 1u64 << (i % 64));
            if r.seen[word] & bit != 0 {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            r.seen[word] |= bit;
            fresh += 1;
            let w = self.written[i as usize].load(Ordering::Acquire);
            if w == 0 {
                r.early.push((i, now_ns));
            } else {
                let us = now_ns.saturating_sub(w) / 1000;
                r.lat_us.push(u32::try_from(us).unwrap_or(u32::MAX));
            }
        }
        drop(r);
        self.delivered.fetch_add(fresh, Ordering::Release);
    }

    /// Ids subscriber `sub` has not received yet.
    fn unseen(&self, sub: usize) -> Vec<Uuid> {
        let Some(cell) = self.recv.get(sub) else {
            return Vec::new();
        };
        let r = cell.lock().unwrap_or_else(|p| p.into_inner());
        self.ids
            .iter()
            .enumerate()
            .filter(|(i, _)| r.seen[i / 64] & (1u64 << (i % 64)) == 0)
            .map(|(_, id)| *id)
            .collect()
    }

    /// Latencies of subscribers `range`.
    fn samples(&self, range: std::ops::Range<usize>) -> Samples {
        let mut s = Samples::default();
        for cell in &self.recv[range] {
            let r = cell.lock().unwrap_or_else(|p| p.into_inner());
            s.extend(&r.lat_us);
            for &(i, at) in &r.early {
                let w = self.written[i as usize].load(Ordering::Acquire);
                s.push_us(at.saturating_sub(w) / 1000);
            }
        }
        s
    }

    fn delivered_in(&self, range: std::ops::Range<usize>) -> u64 {
        self.recv[range]
            .iter()
            .map(|cell| {
                let r = cell.lock().unwrap_or_else(|p| p.into_inner());
                r.seen
                    .iter()
                    .map(|w| u64::from(w.count_ones()))
                    .sum::<u64>()
            })
            .sum()
    }
}

/// Listens to one client's change events and records the rows they carry.
async fn listen(sub: usize, client: ClinicClient, slot: Slot, lagged: Arc<AtomicU64>) {
    let mut events = client.subscribe();
    loop {
        match events.recv().await {
            Ok(ev) => {
                if ev.origin != ChangeOrigin::Remote {
                    continue;
                }
                let now = Instant::now();
                let Some(phase) = current(&slot) else {
                    continue;
                };
                if ev.rows.is_empty() && ev.tables.contains(&Table::Patients) {
                    // A large batch lists only its tables: look the rows up.
                    sweep(sub, &client, &phase, now).await;
                } else {
                    phase.record(
                        sub,
                        ev.rows
                            .iter()
                            .filter(|(t, _)| *t == Table::Patients)
                            .map(|(_, id)| *id),
                        now,
                    );
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                lagged.fetch_add(n, Ordering::Relaxed);
                if let Some(phase) = current(&slot) {
                    sweep(sub, &client, &phase, Instant::now()).await;
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Records every phase row now visible in `client` that was not seen yet.
async fn sweep(sub: usize, client: &ClinicClient, phase: &Arc<Phase>, now: Instant) {
    let mut found = Vec::new();
    for id in phase.unseen(sub) {
        if matches!(client.row(Table::Patients, id).await, Ok(Some(_))) {
            found.push(id);
        }
    }
    phase.record(sub, found.into_iter(), now);
}

/// A protocol-level subscriber: receives and decodes, nothing else;
/// reconnects from its cursor if the server cuts it off.
#[allow(clippy::too_many_arguments)]
async fn ws_subscriber(
    sub: usize,
    url: String,
    token: String,
    cursor: u64,
    slot: Slot,
    ready: Arc<AtomicUsize>,
    reconnects: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
    connect_permits: Arc<Semaphore>,
) -> anyhow::Result<()> {
    let client_id = Uuid::now_v7();
    let mut cursor = cursor;
    let mut first = true;
    let mut failures = 0;
    loop {
        let opened = {
            let _permit = connect_permits.acquire().await?;
            harness::ws_hello(&url, &token, client_id, cursor).await
        };
        let (mut ws, c) = match opened {
            Ok(o) => o,
            Err(e) => {
                failures += 1;
                if failures > 20 || *stop.borrow() {
                    return Err(e.context("subscriber could not (re)connect"));
                }
                tokio::time::sleep(Duration::from_millis(200 * failures)).await;
                continue;
            }
        };
        failures = 0;
        cursor = c;
        if first {
            ready.fetch_add(1, Ordering::AcqRel);
            first = false;
        } else {
            reconnects.fetch_add(1, Ordering::Relaxed);
        }
        let mut ping = tokio::time::interval(Duration::from_secs(20));
        ping.tick().await;
        let mut nonce = 0;
        loop {
            tokio::select! {
                _ = stop.changed() => {
                    let _ = ws.close(None).await;
                    return Ok(());
                }
                _ = ping.tick() => {
                    nonce += 1;
                    let text = serde_json::to_string(&ClientMessage::Ping { nonce })?;
                    if ws.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        let now = Instant::now();
                        match serde_json::from_str::<ServerMessage>(&text)? {
                            ServerMessage::Changes { rows, cursor: c, .. } => {
                                cursor = c;
                                if let Some(phase) = current(&slot) {
                                    phase.record(
                                        sub,
                                        rows.iter().filter(|r| r.table == Table::Patients).map(|r| r.id),
                                        now,
                                    );
                                }
                            }
                            ServerMessage::Error(e) if !e.retryable => {
                                anyhow::bail!("server error to a subscriber: {}", e.message);
                            }
                            _ => {}
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        if *stop.borrow() {
            return Ok(());
        }
    }
}

/// A protocol-level long-poll subscriber: `GET /v1/pull` with a wait, in a
/// loop, decoding each answer and nothing else. Each has its own HTTP
/// connection, as each desk would.
#[allow(clippy::too_many_arguments)]
async fn lp_subscriber(
    sub: usize,
    base: String,
    token: String,
    cursor: u64,
    slot: Slot,
    ready: Arc<AtomicUsize>,
    polls: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let http = harness::http()?;
    let client_id = Uuid::now_v7().to_string();
    let url = format!("{base}/v1/pull");
    let mut cursor = cursor;
    let mut first = true;
    loop {
        // The first poll does not wait: it tells the phase this subscriber
        // is listening.
        let wait = if first { "0" } else { "25" };
        let request = http
            .get(&url)
            .bearer_auth(&token)
            .query(&[
                ("cursor", cursor.to_string().as_str()),
                ("wait", wait),
                ("client_id", client_id.as_str()),
            ])
            .send();
        let response = tokio::select! {
            r = request => r?,
            _ = stop.changed() => return Ok(()),
        };
        let status = response.status();
        let body = response.bytes().await?;
        let now = Instant::now();
        if !status.is_success() {
            anyhow::bail!(
                "long-poll answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let page: PullResponse = serde_json::from_slice(&body)?;
        polls.fetch_add(1, Ordering::Relaxed);
        cursor = page.cursor;
        if let Some(phase) = current(&slot) {
            phase.record(
                sub,
                page.rows
                    .iter()
                    .filter(|r| r.table == Table::Patients)
                    .map(|r| r.id),
                now,
            );
        }
        if first {
            ready.fetch_add(1, Ordering::AcqRel);
            first = false;
        }
        if *stop.borrow() {
            return Ok(());
        }
    }
}

/// Waits until `want` subscribers counted themselves in `ready`; fails at
/// `deadline` or as soon as one of `tasks` ends (with its error, if any).
async fn until_ready(
    ready: &AtomicUsize,
    want: usize,
    tasks: &mut Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    deadline: Instant,
    what: &str,
) -> anyhow::Result<()> {
    while ready.load(Ordering::Acquire) < want {
        if Instant::now() > deadline {
            anyhow::bail!("only {} of {want} {what}", ready.load(Ordering::Acquire));
        }
        if let Some(done) = tasks.iter().position(|t| t.is_finished()) {
            let t = tasks.swap_remove(done);
            t.await??;
            anyhow::bail!("a subscriber ended during setup ({what})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Plain interval polling: one `sync_once` every `every`, from a random
/// phase, like a desk that refreshes on a timer.
async fn interval_poller(client: ClinicClient, every: Duration, mut stop: watch::Receiver<bool>) {
    let offset = rand::thread_rng().gen_range(0..every.as_millis().max(1) as u64);
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(offset)) => {}
        _ = stop.changed() => return,
    }
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = client.sync_once().await {
                    eprintln!("  interval poll failed: {e}");
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Runs one case on a fresh server and adds its figures to `report`.
pub(crate) async fn run_case(
    case: &Case,
    tmp: &Path,
    report: &mut ScenarioReport,
) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("prop-").tempdir_in(tmp)?;
    let server_dir = dir.path().join("server");
    std::fs::create_dir_all(&server_dir)?;
    {
        let sd = server_dir.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let storage =
                clinic_server::storage::sqlite::SqliteStorage::open(sd.join("clinic.db"))?;
            harness::seed_accounts(&storage, 0)?;
            Ok(())
        })
        .await??;
    }
    let server = ServerProc::start(&server_dir, &[])?;
    let result = run_on_server(case, &server, dir.path(), report).await;
    let warnings = server.warnings();
    if !warnings.is_empty() {
        report.note(format!(
            "{}: server logged {} warnings, e.g. {}",
            case.label,
            warnings.len(),
            warnings.first().map(String::as_str).unwrap_or_default()
        ));
    }
    server.stop();
    result
}

async fn run_on_server(
    case: &Case,
    server: &ServerProc,
    dir: &Path,
    report: &mut ScenarioReport,
) -> anyhow::Result<()> {
    // The protocol-level subscribers' token (the clients sign in themselves).
    let doctor: LoginResponse = harness::login(&server.base, harness::DOCTOR).await?;
    let live = SyncConfig::default();
    let no_ws = SyncConfig {
        websocket: false,
        ..SyncConfig::default()
    };
    let writer_config = if case.mode == Mode::LongPoll {
        no_ws.clone()
    } else {
        live.clone()
    };
    let sub_config = if case.mode == Mode::LongPoll {
        no_ws
    } else {
        live
    };
    let slot: Slot = Arc::new(RwLock::new(None));
    let (stop_tx, stop_rx) = watch::channel(false);
    let lagged = Arc::new(AtomicU64::new(0));

    let writer = EngineHandle::start(
        dir.join("writer"),
        &server.base,
        harness::DESK,
        writer_config,
        true,
    )
    .await?;

    // Subscriber engines.
    let setup_start = Instant::now();
    let mut engines = Vec::with_capacity(case.engines);
    let mut tasks = Vec::new();
    let running = !matches!(case.mode, Mode::Interval(_));
    for i in 0..case.engines {
        let h = EngineHandle::start(
            dir.join(format!("engine-{i}")),
            &server.base,
            harness::DOCTOR,
            sub_config.clone(),
            running,
        )
        .await?;
        tasks.push(tokio::spawn(listen(
            i,
            h.client.clone(),
            slot.clone(),
            lagged.clone(),
        )));
        engines.push(h);
    }
    writer.wait_synced(Duration::from_secs(60)).await?;
    match case.mode {
        Mode::Interval(every) => {
            for h in &engines {
                h.client.sync_once().await?;
                tasks.push(tokio::spawn(interval_poller(
                    h.client.clone(),
                    every,
                    stop_rx.clone(),
                )));
            }
        }
        _ => {
            for h in &engines {
                h.wait_synced(Duration::from_secs(120)).await?;
            }
        }
    }

    // Protocol-level subscribers.
    let ready = Arc::new(AtomicUsize::new(0));
    let reconnects = Arc::new(AtomicU64::new(0));
    let permits = Arc::new(Semaphore::new(32));
    let head = harness::head(&server.base).await?;
    let mut ws_tasks = Vec::with_capacity(case.ws);
    for i in 0..case.ws {
        ws_tasks.push(tokio::spawn(ws_subscriber(
            case.engines + i,
            server.ws_url(),
            doctor.token.clone(),
            head,
            slot.clone(),
            ready.clone(),
            reconnects.clone(),
            stop_rx.clone(),
            permits.clone(),
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    until_ready(
        &ready,
        case.ws,
        &mut ws_tasks,
        deadline,
        "WebSocket subscribers connected",
    )
    .await?;
    // Protocol-level long-poll subscribers, also as the doctor.
    let lp_ready = Arc::new(AtomicUsize::new(0));
    let polls = Arc::new(AtomicU64::new(0));
    for i in 0..case.lp {
        ws_tasks.push(tokio::spawn(lp_subscriber(
            case.engines + case.ws + i,
            server.base.clone(),
            doctor.token.clone(),
            head,
            slot.clone(),
            lp_ready.clone(),
            polls.clone(),
            stop_rx.clone(),
        )));
    }
    until_ready(
        &lp_ready,
        case.lp,
        &mut ws_tasks,
        deadline,
        "long-poll subscribers answered",
    )
    .await?;
    eprintln!(
        "  {}: {} engines + {} WebSocket + {} long-poll subscribers ready in {:.1} s",
        case.label,
        case.engines,
        case.ws,
        case.lp,
        setup_start.elapsed().as_secs_f64()
    );

    let subscribers = case.engines + case.ws + case.lp;
    let mut phases: Vec<(&str, Option<f64>)> = vec![("fixed", Some(case.rate))];
    if case.fast_phase {
        phases.push(("fast", None));
    }
    let server_pid = server.pid().to_string();
    let mut outcome = Ok(());
    for (name, rate) in phases {
        let phase = Arc::new(Phase::new(case.changes, subscribers));
        *slot.write().unwrap_or_else(|p| p.into_inner()) = Some(phase.clone());
        let cpu0 = (harness::cpu_secs(&server_pid)?, harness::cpu_secs("self")?);
        let polls0 = polls.load(Ordering::Relaxed);
        let started = Instant::now();
        let written = write(&writer.client, &phase, rate).await;
        let write_secs = started.elapsed().as_secs_f64();
        if let Err(e) = written {
            outcome = Err(e);
            break;
        }
        let expected = (case.changes * subscribers) as u64;
        let deadline = Instant::now() + case.grace;
        while phase.delivered.load(Ordering::Acquire) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let drain = started.elapsed().as_secs_f64() - write_secs;
        let cpu1 = (harness::cpu_secs(&server_pid)?, harness::cpu_secs("self")?);
        *slot.write().unwrap_or_else(|p| p.into_inner()) = None;
        let wall = started.elapsed().as_secs_f64();
        let case_name = format!("{} {name}", case.label);
        let rate_done = case.changes as f64 / write_secs.max(1e-9);
        report.add(&case_name, "writes/s achieved", rate_done, "/s", None);
        let groups = [
            ("engines", 0..case.engines),
            ("ws subscribers", case.engines..case.engines + case.ws),
            ("long-poll subscribers", case.engines + case.ws..subscribers),
        ];
        for (group, range) in groups {
            if range.is_empty() {
                continue;
            }
            let mut samples = phase.samples(range.clone());
            let expected = (case.changes * range.len()) as u64;
            let lost = expected.saturating_sub(phase.delivered_in(range));
            let target = if name == "fixed" {
                case.p99_target
            } else {
                None
            };
            samples.report(report, &case_name, &format!("{group} latency"), target);
            report.must(
                &case_name,
                &format!("{group} lost deliveries"),
                lost as f64,
                "",
                Target::AtMost(0.0),
            );
            eprintln!(
                "  {case_name} [{group}]: {} deliveries, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, lost {lost}",
                samples.len(),
                samples.pct_ms(50.0),
                samples.pct_ms(99.0),
                samples.max_ms()
            );
        }
        report.add(
            &case_name,
            "server CPU (of 1 core)",
            (cpu1.0 - cpu0.0) / wall * 100.0,
            "%",
            if name == "fixed" {
                case.cpu_target.map(Target::AtMost)
            } else {
                None
            },
        );
        if case.lp > 0 {
            let n = polls.load(Ordering::Relaxed) - polls0;
            report.add(
                &case_name,
                "long-polls answered per s",
                n as f64 / wall,
                "/s",
                None,
            );
        }
        report.add(
            &case_name,
            "bench process CPU (of 1 core)",
            (cpu1.1 - cpu0.1) / wall * 100.0,
            "%",
            None,
        );
        report.add(&case_name, "drain after last write", drain, "s", None);
        let dups = phase.duplicates.load(Ordering::Relaxed);
        if dups > 0 {
            report.note(format!(
                "{case_name}: {dups} rows delivered more than once (after catch-up)"
            ));
        }
    }
    let (rss, _) = harness::memory_kib(&server_pid)?;
    report.add(
        &case.label,
        "server RSS at end",
        rss as f64 / 1024.0,
        "MiB",
        None,
    );
    let re = reconnects.load(Ordering::Relaxed);
    if case.ws > 0 {
        report.add(&case.label, "ws subscriber reconnects", re as f64, "", None);
    }
    let lag = lagged.load(Ordering::Relaxed);
    if lag > 0 {
        report.note(format!(
            "{}: change-event listeners lagged by {lag} events (rows were then looked up in the mirror)",
            case.label
        ));
    }

    // Teardown.
    stop_tx.send_replace(true);
    for t in ws_tasks {
        if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(10), t).await {
            report.note(format!("{}: a subscriber failed: {e:#}", case.label));
        }
    }
    let stops: Vec<_> = engines.into_iter().map(EngineHandle::stop).collect();
    futures_util::future::join_all(stops).await;
    writer.stop().await;
    for t in tasks {
        t.abort();
    }
    outcome
}

/// The writer's phase: `changes` patients, at `rate` per second or as
/// fast as it can.
async fn write(writer: &ClinicClient, phase: &Phase, rate: Option<f64>) -> anyhow::Result<()> {
    let mut tick = rate.map(|r| tokio::time::interval(Duration::from_secs_f64(1.0 / r)));
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    for (i, id) in phase.ids.iter().enumerate() {
        if let Some(t) = &mut tick {
            t.tick().await;
        }
        let n = SERIAL.fetch_add(1, Ordering::Relaxed);
        writer.mutate(harness::new_patient(*id, n)).await?;
        phase.mark_written(i);
    }
    Ok(())
}
