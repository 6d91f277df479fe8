//! Scenario 8: scale-out on PostgreSQL. A throwaway PostgreSQL cluster on
//! this machine (`clinic_e2e::pg`: `initdb` + `pg_ctl`, default settings,
//! `fsync` and `synchronous_commit` on), one database, 1 and 3
//! `clinic-server` instances on it:
//!
//! - acknowledged mutations/s with writers spread over the instances
//!   (an acknowledgement means committed and flushed by PostgreSQL);
//! - cross-instance propagation: one writer on instance A at a fixed rate,
//!   protocol-level WebSocket subscribers spread over every instance;
//!   latency from the writer sending the push to a subscriber receiving the
//!   row, reported for subscribers on other instances (B, C) and on A;
//! - the same figures on SQLite (one server) beside them.

use crate::harness::{self, ServerProc, WsWriter};
use crate::report::{Samples, ScenarioReport, Target};
use anyhow::Context;
use clinic_e2e::pg::PgCluster;
use clinic_shared::model::Table;
use clinic_shared::protocol::{ClientMessage, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// Sizes of scenario 8.
#[derive(Debug, Clone)]
pub(crate) struct Sizes {
    pub writers: usize,
    pub mutations_per_writer: usize,
    pub batch: usize,
    pub subscribers: usize,
    pub changes: usize,
    pub rate: f64,
}

/// A database and `n` server instances on it, seeded with the bench accounts.
async fn pg_instances(
    cluster: &Arc<PgCluster>,
    tmp: &Path,
    n: usize,
) -> anyhow::Result<(tempfile::TempDir, Vec<ServerProc>)> {
    let c = cluster.clone();
    let url = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let url = c.create_database();
        let storage = clinic_server::storage::postgres::PgStorage::open(&url, 2)?;
        harness::seed_accounts(&storage, 0)?;
        Ok(url)
    })
    .await??;
    let dir = tempfile::Builder::new().prefix("so-").tempdir_in(tmp)?;
    let mut servers = Vec::new();
    for i in 0..n {
        let d = dir.path().join(format!("instance{i}"));
        std::fs::create_dir_all(&d)?;
        servers.push(ServerProc::start(&d, &["--database-url", &url])?);
    }
    Ok((dir, servers))
}

/// `writers` writers, writer `w` on server `w % n`, each pushing
/// `per_writer` new patients in pushes of `batch`.
async fn push_load(
    servers: &[ServerProc],
    token: &str,
    writers: usize,
    per_writer: usize,
    batch: usize,
) -> anyhow::Result<(u64, f64, Samples)> {
    let mut conns = Vec::with_capacity(writers);
    for w in 0..writers {
        let server = &servers[w % servers.len()];
        let head = harness::head(&server.base).await?;
        conns.push(WsWriter::connect(&server.ws_url(), token, head).await?);
    }
    let start = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(w, mut conn)| {
            tokio::spawn(async move {
                let mut lat = Samples::default();
                let mut done = 0usize;
                let mut n = (w as u64) << 32;
                while done < per_writer {
                    let size = batch.min(per_writer - done);
                    let mutations = (0..size)
                        .map(|_| {
                            n += 1;
                            harness::new_patient(Uuid::now_v7(), n)
                        })
                        .collect();
                    let t = Instant::now();
                    conn.push(mutations).await?;
                    lat.push(t.elapsed());
                    done += size;
                }
                anyhow::Ok((done as u64, lat))
            })
        })
        .collect();
    let mut total = 0;
    let mut lat = Samples::default();
    for t in tasks {
        let (done, l) = t.await??;
        total += done;
        lat.absorb(l);
    }
    Ok((total, start.elapsed().as_secs_f64(), lat))
}

fn record_throughput(
    report: &mut ScenarioReport,
    case: &str,
    (acked, secs, mut lat): (u64, f64, Samples),
    target: Option<Target>,
) {
    let rate = acked as f64 / secs;
    report.add(case, "acknowledged mutations/s", rate, "/s", target);
    lat.report(report, case, "push ack latency", None);
    eprintln!(
        "  {case}: {acked} acknowledged in {secs:.2} s = {rate:.0}/s, push p99 {:.1} ms",
        lat.pct_ms(99.0)
    );
}

/// What the propagation case measured.
struct Propagation {
    /// Subscribers on another instance than the writer's.
    other: Samples,
    /// Subscribers on the writer's instance.
    same: Samples,
    lost: u64,
}

/// One writer on `servers[0]` at `rate`/s; `subscribers` WebSocket
/// subscribers, subscriber `i` on `servers[i % n]`.
async fn propagation(
    servers: &[ServerProc],
    desk_token: &str,
    doctor_token: &str,
    subscribers: usize,
    changes: usize,
    rate: f64,
) -> anyhow::Result<Propagation> {
    let ids: Arc<Vec<Uuid>> = Arc::new((0..changes).map(|_| Uuid::now_v7()).collect());
    let index: Arc<HashMap<Uuid, usize>> =
        Arc::new(ids.iter().enumerate().map(|(i, id)| (*id, i)).collect());
    let base = Instant::now();
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..changes).map(|_| AtomicU64::new(0)).collect());
    let received = Arc::new(AtomicUsize::new(0));
    let head = harness::head(&servers[0].base).await?;
    let mut tasks = Vec::new();
    for s in 0..subscribers {
        let server = &servers[s % servers.len()];
        let (mut ws, _) =
            harness::ws_hello(&server.ws_url(), doctor_token, Uuid::now_v7(), head).await?;
        let (index, sent, received) = (index.clone(), sent.clone(), received.clone());
        let other = s % servers.len() != 0;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(changes);
            let mut seen = 0usize;
            let deadline =
                tokio::time::Instant::now() + Duration::from_secs_f64(changes as f64 / rate + 60.0);
            while seen < changes {
                let frame = tokio::time::timeout_at(deadline, ws.next())
                    .await
                    .context("a subscriber waited too long")?;
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                    _ => anyhow::bail!("a subscriber's socket closed"),
                };
                let now = base.elapsed();
                if let ServerMessage::Changes { rows, .. } = serde_json::from_str(&text)? {
                    for r in rows.iter().filter(|r| r.table == Table::Patients) {
                        if let Some(&i) = index.get(&r.id) {
                            let at = Duration::from_nanos(sent[i].load(Ordering::Acquire));
                            lat.push(now.saturating_sub(at));
                            seen += 1;
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            let _ = ws
                .send(Message::Text(
                    serde_json::to_string(&ClientMessage::Ping { nonce: 0 })?.into(),
                ))
                .await;
            anyhow::Ok((other, lat))
        }));
    }
    let mut writer = WsWriter::connect(&servers[0].ws_url(), desk_token, head).await?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for (i, id) in ids.iter().enumerate() {
        tick.tick().await;
        let at = u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        sent[i].store(at, Ordering::Release);
        writer
            .push(vec![harness::new_patient(*id, i as u64)])
            .await?;
    }
    let mut result = Propagation {
        other: Samples::default(),
        same: Samples::default(),
        lost: 0,
    };
    for t in tasks {
        match t.await? {
            Ok((other, lat)) => {
                let samples = if other {
                    &mut result.other
                } else {
                    &mut result.same
                };
                for d in lat {
                    samples.push(d);
                }
            }
            Err(e) => {
                eprintln!("  a subscriber failed: {e:#}");
                result.lost += 1;
            }
        }
    }
    let expected = (subscribers * changes) as u64;
    let got = received.load(Ordering::Relaxed) as u64;
    result.lost = result.lost.max(expected.saturating_sub(got));
    Ok(result)
}

fn record_propagation(
    report: &mut ScenarioReport,
    case: &str,
    mut p: Propagation,
    cross_target: Option<f64>,
) {
    if p.other.len() > 0 {
        p.other.report(
            report,
            &format!("{case}, subscribers on other instances"),
            "push -> row",
            cross_target,
        );
    }
    if p.same.len() > 0 {
        p.same.report(
            report,
            &format!("{case}, subscribers on the writer's instance"),
            "push -> row",
            None,
        );
    }
    report.must(
        case,
        "lost deliveries",
        p.lost as f64,
        "",
        Target::AtMost(0.0),
    );
    eprintln!(
        "  {case}: cross-instance p50 {:.1} ms p99 {:.1} ms; same instance p50 {:.1} ms p99 {:.1} ms; lost {}",
        p.other.pct_ms(50.0),
        p.other.pct_ms(99.0),
        p.same.pct_ms(50.0),
        p.same.pct_ms(99.0),
        p.lost
    );
}

pub(crate) async fn run(
    sizes: &Sizes,
    tmp: &Path,
    report: &mut ScenarioReport,
) -> anyhow::Result<()> {
    let cluster = tokio::task::spawn_blocking(PgCluster::try_start)
        .await?
        .map_err(|e| anyhow::anyhow!("cannot start a PostgreSQL cluster: {e}"))?;
    let cluster = Arc::new(cluster);
    report.note(
        "PostgreSQL: a throwaway cluster on this machine, default settings (fsync on, synchronous_commit on, shared_buffers 128 MB), its own temp dir on the same disk",
    );
    let tp = |n: usize| {
        format!(
            "{n} instance{}, {} writers, {} mutations/push",
            if n == 1 { "" } else { "s" },
            sizes.writers,
            sizes.batch
        )
    };

    for n in [1, 3] {
        let (_dir, servers) = pg_instances(&cluster, tmp, n).await?;
        let desk = harness::login(&servers[0].base, harness::DESK).await?;
        let figures = push_load(
            &servers,
            &desk.token,
            sizes.writers,
            sizes.mutations_per_writer,
            sizes.batch,
        )
        .await?;
        let target = (n == 3 && sizes.writers >= 10).then_some(Target::AtLeast(5000.0));
        record_throughput(report, &format!("PostgreSQL, {}", tp(n)), figures, target);
        for s in servers {
            s.stop();
        }
    }
    {
        let (_dir, server) = crate::throughput::fresh_server(tmp, "so-sqlite-", 0).await?;
        let desk = harness::login(&server.base, harness::DESK).await?;
        let servers = [server];
        let figures = push_load(
            &servers,
            &desk.token,
            sizes.writers,
            sizes.mutations_per_writer,
            sizes.batch,
        )
        .await?;
        record_throughput(report, &format!("SQLite, {}", tp(1)), figures, None);
    }

    let prop = format!(
        "{} subscribers, {} changes at {}/s",
        sizes.subscribers, sizes.changes, sizes.rate
    );
    {
        let (_dir, servers) = pg_instances(&cluster, tmp, 3).await?;
        let desk = harness::login(&servers[0].base, harness::DESK).await?;
        let doctor = harness::login(&servers[0].base, harness::DOCTOR).await?;
        let p = propagation(
            &servers,
            &desk.token,
            &doctor.token,
            sizes.subscribers,
            sizes.changes,
            sizes.rate,
        )
        .await?;
        let target = (sizes.subscribers >= 300).then_some(20.0);
        record_propagation(
            report,
            &format!("PostgreSQL, 3 instances, {prop}"),
            p,
            target,
        );
        for s in &servers {
            let warnings = s.warnings();
            if !warnings.is_empty() {
                report.note(format!("server warnings: {}", warnings.join(" | ")));
            }
        }
    }
    {
        let (_dir, server) = crate::throughput::fresh_server(tmp, "so-sqlite-", 0).await?;
        let desk = harness::login(&server.base, harness::DESK).await?;
        let doctor = harness::login(&server.base, harness::DOCTOR).await?;
        let servers = [server];
        let p = propagation(
            &servers,
            &desk.token,
            &doctor.token,
            sizes.subscribers,
            sizes.changes,
            sizes.rate,
        )
        .await?;
        record_propagation(report, &format!("SQLite, 1 server, {prop}"), p, None);
    }
    Ok(())
}
