//! Scenario 7: what the server costs. Resident memory per idle connected
//! WebSocket client, and CPU time (utime + stime from `/proc/<pid>/stat`)
//! to apply and fan out changes to subscribers, against the same changes
//! with nobody listening.

use crate::harness::{self, WsStream, WsWriter};
use crate::report::{ScenarioReport, Target};
use clinic_shared::model::Table;
use clinic_shared::protocol::ServerMessage;
use futures_util::StreamExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// Sizes of scenario 7.
#[derive(Debug, Clone)]
pub(crate) struct Sizes {
    pub idle_clients: usize,
    pub fanout_clients: usize,
    pub fanout_changes: usize,
}

/// Reads a socket until it closes, counting patient rows.
async fn reader(mut ws: WsStream, rows: Arc<AtomicU64>) -> anyhow::Result<()> {
    while let Some(frame) = ws.next().await {
        if let Message::Text(text) = frame?
            && let ServerMessage::Changes { rows: r, .. } = serde_json::from_str(&text)?
        {
            let n = r.iter().filter(|r| r.table == Table::Patients).count();
            rows.fetch_add(n as u64, Ordering::AcqRel);
        }
    }
    Ok(())
}

async fn connect_all(
    url: &str,
    token: &str,
    n: usize,
    cursor: u64,
    rows: &Arc<AtomicU64>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<anyhow::Result<()>>>> {
    let mut tasks = Vec::with_capacity(n);
    // 32 hellos at a time.
    for chunk in (0..n).collect::<Vec<_>>().chunks(32) {
        let opened = futures_util::future::join_all(
            chunk
                .iter()
                .map(|_| harness::ws_hello(url, token, Uuid::now_v7(), cursor)),
        )
        .await;
        for o in opened {
            let (ws, _) = o?;
            tasks.push(tokio::spawn(reader(ws, rows.clone())));
        }
    }
    Ok(tasks)
}

pub(crate) async fn run(
    sizes: &Sizes,
    tmp: &Path,
    report: &mut ScenarioReport,
) -> anyhow::Result<()> {
    let (_dir, server) = crate::throughput::fresh_server(tmp, "cost-", 0).await?;
    let pid = server.pid().to_string();
    let doctor = harness::login(&server.base, harness::DOCTOR).await?;
    let desk = harness::login(&server.base, harness::DESK).await?;
    let url = server.ws_url();

    // Idle clients. Warm up first (runtime threads, allocator arenas).
    let sink = Arc::new(AtomicU64::new(0));
    let head = harness::head(&server.base).await?;
    let warm = connect_all(&url, &doctor.token, 16, head, &sink).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss0, _) = harness::memory_kib(&pid)?;
    let idle = connect_all(&url, &doctor.token, sizes.idle_clients, head, &sink).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss1, _) = harness::memory_kib(&pid)?;
    let case = format!("{} idle WebSocket clients", sizes.idle_clients);
    let per = rss1.saturating_sub(rss0) as f64 / sizes.idle_clients.max(1) as f64;
    report.add(
        &case,
        "server RSS per idle client",
        per,
        "KiB",
        (sizes.idle_clients >= 1000).then_some(Target::AtMost(100.0)),
    );
    report.add(&case, "server RSS total", rss1 as f64 / 1024.0, "MiB", None);
    eprintln!("  {case}: server RSS {rss0} -> {rss1} KiB = {per:.1} KiB per client");
    for t in idle.into_iter().chain(warm) {
        t.abort();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // CPU to apply and fan out changes.
    let mut cpu = Vec::new();
    for clients in [sizes.fanout_clients, 0] {
        let rows = Arc::new(AtomicU64::new(0));
        let head = harness::head(&server.base).await?;
        let readers = connect_all(&url, &doctor.token, clients, head, &rows).await?;
        let mut writer = WsWriter::connect(&url, &desk.token, head).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = harness::cpu_secs(&pid)?;
        let started = Instant::now();
        for n in 0..sizes.fanout_changes {
            writer
                .push(vec![harness::new_patient(Uuid::now_v7(), n as u64)])
                .await?;
        }
        let expected = (sizes.fanout_changes * clients) as u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while rows.load(Ordering::Acquire) < expected {
            if Instant::now() > deadline {
                anyhow::bail!(
                    "fan-out incomplete: {} of {expected} deliveries",
                    rows.load(Ordering::Acquire)
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let secs = harness::cpu_secs(&pid)? - before;
        let wall = started.elapsed().as_secs_f64();
        let per_1000 = secs * 1000.0 / sizes.fanout_changes.max(1) as f64;
        let case = format!(
            "{} changes (1 per push) to {clients} subscribers",
            sizes.fanout_changes
        );
        report.add(&case, "server CPU per 1000 changes", per_1000, "s", None);
        report.add(&case, "wall time", wall, "s", None);
        eprintln!("  {case}: server CPU {secs:.2} s in {wall:.2} s");
        cpu.push(per_1000);
        for t in readers {
            t.abort();
        }
        drop(writer);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if let [with, without] = cpu[..]
        && sizes.fanout_clients > 0
    {
        let fanout = (with - without).max(0.0);
        report.add(
            &format!("fan-out to {} subscribers", sizes.fanout_clients),
            "server CPU per 1000 changes, fan-out share",
            fanout,
            "s",
            None,
        );
        report.add(
            &format!("fan-out to {} subscribers", sizes.fanout_clients),
            "server CPU per delivered change",
            fanout * 1e6 / (1000.0 * sizes.fanout_clients as f64),
            "us",
            None,
        );
    }
    server.stop();
    Ok(())
}
