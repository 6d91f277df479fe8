//! Reconnect storm (issue 5, part 4): 1 000 WebSocket clients, each with
//! its own client id (sharing the sign-ins of four users: a token may hold
//! any number of sessions), connected and caught up; then the server is
//! killed with SIGKILL and started again on the same port. Every client
//! reconnects with exponential backoff and full jitter (first retry within
//! 0–2 s) and must catch up to the server's head, which moved while they
//! were away (changes pushed right after the restart, so the catch-up is
//! real). Reported: the peak accepted connection rate (from the clients'
//! handshake timestamps), the server's peak RSS (sampled from /proc), and
//! the time from restart until every client was caught up.
//!
//! `CLINIC_STORM_CLIENTS` changes the number of clients (default 1000).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use clinic_e2e::raw::RssSampler;
use clinic_e2e::*;
use clinic_shared::model::Table;
use clinic_shared::mutation::{CreatePatient, Mutation};
use clinic_shared::protocol::{ClientMessage, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

struct Shared {
    url: String,
    /// Handshakes completed, with when.
    connects: std::sync::Mutex<Vec<Instant>>,
    /// Connection attempts that failed (server down, refused).
    failed: AtomicU64,
    /// Sessions that ended (server killed, closed).
    dropped: AtomicU64,
    stop: AtomicBool,
}

/// One protocol-level client: connect, `hello` from its cursor, follow
/// `changes` and `caught_up`, and on any end reconnect after a jittered,
/// exponentially growing delay. Reports every cursor it reaches.
async fn client(
    index: usize,
    token: String,
    mut cursor: u64,
    shared: Arc<Shared>,
    report: mpsc::UnboundedSender<(usize, u64)>,
) {
    let client_id = Uuid::now_v7();
    let mut attempt: u32 = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        // Full jitter: 0–2 s on the first try, doubling up to 0–8 s.
        let cap_ms = (2000u64 << attempt.min(2)).min(8000);
        let delay = rand::thread_rng().gen_range(0..=cap_ms);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let Ok(Ok((mut ws, _))) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(&shared.url),
        )
        .await
        else {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            attempt += 1;
            continue;
        };
        shared.connects.lock().unwrap().push(Instant::now());
        let hello = ClientMessage::Hello {
            token: token.clone(),
            client_id,
            cursor,
        };
        if ws
            .send(Message::Text(serde_json::to_string(&hello).unwrap().into()))
            .await
            .is_err()
        {
            attempt += 1;
            continue;
        }
        attempt = 0;
        // The server pings every 15 s; a minute of silence is a dead link.
        while let Ok(Some(Ok(frame))) =
            tokio::time::timeout(Duration::from_secs(60), ws.next()).await
        {
            let Message::Text(text) = frame else { continue };
            match serde_json::from_str::<ServerMessage>(&text) {
                Ok(
                    ServerMessage::Changes { cursor: c, .. }
                    | ServerMessage::CaughtUp { cursor: c },
                ) => {
                    cursor = cursor.max(c);
                    let _ = report.send((index, cursor));
                }
                Ok(ServerMessage::Error(e)) => panic!("client {index}: error frame {e:?}"),
                _ => {}
            }
        }
        shared.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Waits until every client has reported a cursor of at least `target`.
async fn all_reach(
    cursors: &mut [u64],
    rx: &mut mpsc::UnboundedReceiver<(usize, u64)>,
    target: u64,
    within: Duration,
) {
    let deadline = tokio::time::Instant::now() + within;
    let mut behind = cursors.iter().filter(|c| **c < target).count();
    while behind > 0 {
        let (i, c) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{behind} clients never reached cursor {target}"))
            .expect("clients alive");
        if cursors[i] < target && c >= target {
            behind -= 1;
        }
        cursors[i] = cursors[i].max(c);
    }
}

fn patient(name: &str) -> Mutation {
    Mutation::CreatePatient(CreatePatient {
        id: Uuid::now_v7(),
        first_name: name.into(),
        last_name: "Storm".into(),
        date_of_birth: "1975-06-01".parse().unwrap(),
        phone: None,
        email: None,
        address: None,
        sex: None,
        emergency_contact: None,
        emergency_phone: None,
        insurer: None,
        insurance_number: None,
        alerts: None,
    })
}

/// The highest number of handshakes within any one-second window.
fn peak_per_second(times: &mut [Instant]) -> usize {
    times.sort();
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi].duration_since(times[lo]) >= Duration::from_secs(1) {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_reconnect_after_a_server_kill_and_catch_up() {
    let n: usize = std::env::var("CLINIC_STORM_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    // 1 socket per client here and one per session in the server (which
    // inherits this limit), plus files and slack.
    let _ = rlimit::increase_nofile_limit(4 * n as u64 + 1024);
    let mut server = Server::start();
    let mut writer = Api::login(&server, "reception").await;
    let mut tokens = Vec::new();
    for user in ["reception", "doctor", "assistant", "admin"] {
        tokens.push(Api::login(&server, user).await.token);
    }
    let head0 = healthz(&server.base).await["head"].as_u64().unwrap();
    let shared = Arc::new(Shared {
        url: server.ws_url(),
        connects: std::sync::Mutex::new(Vec::new()),
        failed: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut cursors = vec![0u64; n];
    let started = Instant::now();
    let sampler = RssSampler::start(server.pid(), Duration::from_millis(10));
    let mut tasks = Vec::new();
    for i in 0..n {
        tasks.push(tokio::spawn(client(
            i,
            tokens[i % tokens.len()].clone(),
            head0,
            shared.clone(),
            tx.clone(),
        )));
    }
    // Phase 1: all connected and caught up, and a live change reaches all.
    all_reach(&mut cursors, &mut rx, head0, Duration::from_secs(60)).await;
    let connected_in = started.elapsed();
    let live = applied_seq(&writer.push_one(patient("Live")).await);
    all_reach(&mut cursors, &mut rx, live, Duration::from_secs(30)).await;
    let sessions = healthz(&server.base).await["ws_sessions"].as_u64().unwrap();
    assert_eq!(sessions, n as u64, "one session per client");
    let rss_before = server.rss_kib();
    let peak_connect = sampler.peak();
    drop(sampler);
    let first_connects = std::mem::take(&mut *shared.connects.lock().unwrap());
    eprintln!(
        "storm: {n} clients connected and caught up in {connected_in:.1?} ({} handshakes, server RSS {rss_before} KiB, peak {peak_connect} KiB)",
        first_connects.len()
    );

    // Phase 2: SIGKILL, restart on the same port, and move the head.
    server.kill();
    let killed = Instant::now();
    server.start_again();
    let restarted = Instant::now();
    let sampler = RssSampler::start(server.pid(), Duration::from_millis(10));
    let rss_fresh = server.rss_kib();
    writer.rebase(&server);
    let results = writer
        .push((0..5).map(|i| patient(&format!("WhileAway{i}"))).collect())
        .await;
    let head = results
        .iter()
        .map(|r| applied_seq(&r.outcome))
        .max()
        .unwrap();
    assert!(head >= live + 5);
    all_reach(&mut cursors, &mut rx, head, Duration::from_secs(90)).await;
    let caught_up_in = restarted.elapsed();
    let peak_rss = sampler.peak().max(server.rss_kib());
    drop(sampler);
    let health = healthz(&server.base).await;
    let mut reconnects = std::mem::take(&mut *shared.connects.lock().unwrap());
    let peak_rate = peak_per_second(&mut reconnects);
    let spread = reconnects
        .last()
        .zip(reconnects.first())
        .map(|(l, f)| l.duration_since(*f))
        .unwrap_or_default();
    eprintln!(
        "storm: killed and restarted in {:.0?}; {} reconnections ({} failed attempts) over {spread:.1?}, \
         peak {peak_rate} connections/s; all {n} caught up to head {head} {caught_up_in:.1?} after the restart; \
         server RSS {rss_fresh} KiB fresh, peak {peak_rss} KiB (before the kill {rss_before} KiB); ws_sessions {}",
        restarted.duration_since(killed),
        reconnects.len(),
        shared.failed.load(Ordering::Relaxed),
        health["ws_sessions"],
    );
    assert!(reconnects.len() >= n, "every client reconnected");
    assert_eq!(health["ws_sessions"], n as u64, "one session per client");
    assert!(
        peak_rss < 1024 * 1024,
        "server RSS peaked at {peak_rss} KiB"
    );

    // The data the clients caught up to is the server's.
    let reader = Api::login(&server, "doctor").await;
    let patients = reader.table(Table::Patients).await;
    let away = patients
        .values()
        .filter(|r| {
            r.data
                .as_ref()
                .and_then(|d| d["first_name"].as_str())
                .is_some_and(|f| f.starts_with("WhileAway"))
        })
        .count();
    assert_eq!(away, 5);

    shared.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }
}
