//! Scenario 3: write throughput. Concurrent writers, each its own client
//! over its own WebSocket, push batches as fast as the server acknowledges
//! them (an acknowledgement means committed with `synchronous=FULL`). Then
//! the raw insert rate of SQLite on the same disk with the same settings.

use crate::harness::{self, ServerProc, WsWriter};
use crate::report::{Samples, ScenarioReport, Target};
use rusqlite::{Connection, params};
use std::path::Path;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Sizes of scenario 3.
#[derive(Debug, Clone)]
pub(crate) struct Sizes {
    pub writers: usize,
    pub mutations_per_writer: usize,
    pub batch: usize,
    pub single_pushes_per_writer: usize,
    pub raw_rows: usize,
}

/// Starts a server with the bench accounts (and `patients` seeded patients).
pub(crate) async fn fresh_server(
    tmp: &Path,
    prefix: &str,
    patients: usize,
) -> anyhow::Result<(tempfile::TempDir, ServerProc)> {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(tmp)?;
    let server_dir = dir.path().join("server");
    std::fs::create_dir_all(&server_dir)?;
    let sd = server_dir.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let storage = clinic_server::storage::sqlite::SqliteStorage::open(sd.join("clinic.db"))?;
        let seeded = harness::seed_accounts(&storage, 0)?;
        if patients > 0 {
            crate::data::seed_clinic(&storage, &seeded.doctors, patients, 0, 0)?;
        }
        Ok(())
    })
    .await??;
    let server = ServerProc::start(&server_dir, &[])?;
    Ok((dir, server))
}

/// `writers` concurrent writers each pushing `per_writer` new patients in
/// pushes of `batch`; returns (acknowledged mutations, seconds, latency of
/// each push).
pub(crate) async fn push_load(
    server: &ServerProc,
    token: &str,
    writers: usize,
    per_writer: usize,
    batch: usize,
) -> anyhow::Result<(u64, f64, Samples)> {
    let head = harness::head(&server.base).await?;
    let mut conns = Vec::with_capacity(writers);
    for _ in 0..writers {
        conns.push(WsWriter::connect(&server.ws_url(), token, head).await?);
    }
    let start = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(w, mut conn)| {
            tokio::spawn(async move {
                let mut lat = Samples::default();
                let mut done = 0u64;
                let mut n = (w as u64) << 32;
                while (done as usize) < per_writer {
                    let size = batch.min(per_writer - done as usize);
                    let mutations = (0..size)
                        .map(|_| {
                            n += 1;
                            harness::new_patient(Uuid::now_v7(), n)
                        })
                        .collect();
                    let t = Instant::now();
                    conn.push(mutations).await?;
                    lat.push(t.elapsed());
                    done += size as u64;
                }
                anyhow::Ok((done, lat))
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

pub(crate) async fn run(
    sizes: &Sizes,
    tmp: &Path,
    report: &mut ScenarioReport,
) -> anyhow::Result<()> {
    let (_dir, server) = fresh_server(tmp, "tp-", 0).await?;
    let desk = harness::login(&server.base, harness::DESK).await?;
    let cpu0 = harness::cpu_secs(&server.pid().to_string())?;

    let case = format!(
        "{} writers, {} mutations/push (WS)",
        sizes.writers, sizes.batch
    );
    let (acked, secs, mut lat) = push_load(
        &server,
        &desk.token,
        sizes.writers,
        sizes.mutations_per_writer,
        sizes.batch,
    )
    .await?;
    let cpu1 = harness::cpu_secs(&server.pid().to_string())?;
    let rate = acked as f64 / secs;
    report.add(
        &case,
        "acknowledged mutations/s",
        rate,
        "/s",
        (sizes.writers == 10).then_some(Target::AtLeast(5000.0)),
    );
    lat.report(report, &case, "push ack latency", None);
    report.add(
        &case,
        "server CPU (of 1 core)",
        (cpu1 - cpu0) / secs * 100.0,
        "%",
        None,
    );
    eprintln!(
        "  {case}: {acked} acknowledged in {secs:.2} s = {rate:.0}/s, push p99 {:.1} ms",
        lat.pct_ms(99.0)
    );

    let case1 = format!("{} writers, 1 mutation/push (WS)", sizes.writers);
    let (acked1, secs1, mut lat1) = push_load(
        &server,
        &desk.token,
        sizes.writers,
        sizes.single_pushes_per_writer,
        1,
    )
    .await?;
    let rate1 = acked1 as f64 / secs1;
    report.add(&case1, "acknowledged mutations/s", rate1, "/s", None);
    lat1.report(report, &case1, "ack latency", None);
    eprintln!(
        "  {case1}: {acked1} acknowledged in {secs1:.2} s = {rate1:.0}/s, p99 {:.1} ms",
        lat1.pct_ms(99.0)
    );
    server.stop();

    // Raw SQLite on the same disk, same pragmas, the server's row and
    // change-log tables, one row + one log entry per "mutation".
    let raw_dir = tempfile::Builder::new().prefix("raw-").tempdir_in(tmp)?;
    let path = raw_dir.path().join("raw.db");
    let raw_rows = sizes.raw_rows;
    let raw = tokio::task::spawn_blocking(move || raw_sqlite(&path, raw_rows)).await??;
    for (per_txn, rate) in &raw {
        report.add(
            &format!("raw SQLite, {per_txn} rows/transaction"),
            "inserts/s",
            *rate,
            "/s",
            None,
        );
    }
    if let Some((_, best)) = raw.first() {
        report.add(
            &case,
            "server rate / raw SQLite rate",
            rate / best,
            "x",
            None,
        );
        report.note(format!(
            "raw SQLite: WAL, synchronous=FULL, the server's `rows` + `changes` tables and indexes, a patient-sized JSON row; {}",
            raw.iter()
                .map(|(n, r)| format!("{n} rows/txn {r:.0}/s"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}

/// Insert rates at 1000, 100 and 1 rows per transaction.
fn raw_sqlite(path: &Path, rows: usize) -> anyhow::Result<Vec<(usize, f64)>> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE rows (
            tbl TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL,
            PRIMARY KEY (tbl, id)
        ) WITHOUT ROWID;
        CREATE INDEX rows_by_version ON rows (version);
        CREATE TABLE changes (
            seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, row_id TEXT NOT NULL,
            action TEXT NOT NULL, actor_id TEXT, client_id TEXT, mutation_id INTEGER,
            mutation TEXT NOT NULL, at TEXT NOT NULL, before TEXT, after TEXT NOT NULL
        );
        CREATE INDEX changes_by_row ON changes (tbl, row_id, seq);",
    )?;
    let mut seq = 0i64;
    let mut results = Vec::new();
    for (per_txn, count) in [(1000, rows), (100, rows / 10), (1, (rows / 100).max(50))] {
        let count = count.max(per_txn);
        let start = Instant::now();
        let mut done = 0;
        while done < count {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut row = tx.prepare_cached(
                    "INSERT INTO rows (tbl, id, version, deleted, data) VALUES ('patients', ?1, ?2, 0, ?3)",
                )?;
                let mut change = tx.prepare_cached(
                    "INSERT INTO changes (seq, tbl, row_id, action, actor_id, client_id, mutation_id, mutation, at, before, after)
                     VALUES (?1, 'patients', ?2, 'create', ?3, ?4, ?5, 'create_patient', '2026-01-01T00:00:00Z', NULL, ?6)",
                )?;
                for _ in 0..per_txn {
                    seq += 1;
                    let id = Uuid::now_v7();
                    let data = serde_json::to_string(&crate::data::patient(id, seq as u64))?;
                    let actor = Uuid::nil().to_string();
                    row.execute(params![id.to_string(), seq, data])?;
                    change.execute(params![seq, id.to_string(), actor, actor, seq, data])?;
                }
            }
            tx.commit()?;
            done += per_txn;
        }
        results.push((per_txn, done as f64 / start.elapsed().as_secs_f64()));
    }
    Ok(results)
}
