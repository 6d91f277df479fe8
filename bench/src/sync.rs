//! Scenarios 4 and 5: a desk catching up after being offline, and a fresh
//! desk syncing a whole clinic. The syncing client runs as a separate
//! process (this binary's hidden `child-sync` command: a real
//! `clinic_client::ClinicClient` over the WebSocket, as the desktop app runs
//! it), so its peak memory is its own: it reports `VmHWM` from
//! `/proc/self/status` just before it exits.

use crate::harness::{self, ServerProc};
use crate::report::{ScenarioReport, Target};
use anyhow::{Context, bail};
use clinic_client::{ClientConfig, ClinicClient, Connection};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What the child reports.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ChildReport {
    /// Opening (and checking) the local database.
    pub open_secs: f64,
    /// From starting the sync loop to holding every row up to the head.
    pub sync_secs: f64,
    /// Server head the child synced to.
    pub head: u64,
    /// Cursor at the end.
    pub cursor: u64,
    /// Peak resident memory of the process.
    pub vmhwm_kib: u64,
    /// Resident memory at the end.
    pub vmrss_kib: u64,
    /// Visible rows per table at the end.
    pub counts: BTreeMap<String, u64>,
    /// Local database size.
    pub db_bytes: u64,
}

/// The child: open the client in `dir` (signing in as `login` first if
/// given; otherwise the session stored there is used), run its sync loop
/// until its cursor reaches the server's head and it is live, and report.
pub(crate) fn child_sync(
    server: &str,
    dir: &Path,
    login: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<ChildReport> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let head = harness::head(server).await?;
        let t0 = Instant::now();
        let d = dir.to_path_buf();
        let client = ClinicClient::open(ClientConfig::new(d)).await?;
        let open_secs = t0.elapsed().as_secs_f64();
        if let Some(user) = login {
            let signed = client.sign_in(server, user, harness::PASSWORD).await?;
            if signed.offline {
                bail!("the sign-in as {user} was only checked offline");
            }
        } else if !client.identity().await?.signed_in {
            bail!("no session is stored in {}", dir.display());
        }
        let mut status = client.status();
        let t1 = Instant::now();
        client.start();
        let deadline = t1 + timeout;
        loop {
            let done = {
                let s = status.borrow_and_update();
                s.cursor >= head && s.initial_sync.is_none() && s.connection == Connection::Live
            };
            if done {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("not caught up within {timeout:?}: {:?}", *status.borrow());
            }
            let _ =
                tokio::time::timeout(left.min(Duration::from_millis(20)), status.changed()).await;
        }
        let sync_secs = t1.elapsed().as_secs_f64();
        let (vmrss_kib, vmhwm_kib) = harness::memory_kib("self")?;
        let _ = tokio::time::timeout(Duration::from_secs(10), client.stop()).await;
        let counts = client.counts().await?;
        let cursor = client.sync_state().await?.cursor;
        let db_bytes = harness::db_bytes(&client.database_file()?);
        // Closed before the process exits, as every front end does.
        client.close().await;
        Ok(ChildReport {
            open_secs,
            sync_secs,
            head,
            cursor,
            vmhwm_kib,
            vmrss_kib,
            counts: counts
                .into_iter()
                .map(|(t, n)| (t.as_str().to_owned(), n))
                .collect(),
            db_bytes,
        })
    })
}

/// Runs the child process and reads its report.
async fn run_child(
    server: &ServerProc,
    dir: &Path,
    login: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<(ChildReport, f64)> {
    let exe = std::env::current_exe()?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("child-sync")
        .arg("--server")
        .arg(&server.base)
        .arg("--dir")
        .arg(dir)
        .arg("--timeout-secs")
        .arg(timeout.as_secs().to_string())
        .kill_on_drop(true);
    if let Some(user) = login {
        cmd.arg("--login").arg(user);
    }
    let started = Instant::now();
    let out = tokio::time::timeout(timeout + Duration::from_secs(30), cmd.output())
        .await
        .context("the syncing client process did not finish")??;
    let wall = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "the syncing client process failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .last()
        .context("the syncing client printed nothing")?;
    Ok((
        serde_json::from_str(line).context("the syncing client's report")?,
        wall,
    ))
}

/// Sizes of scenario 4.
#[derive(Debug, Clone)]
pub(crate) struct CatchUpSizes {
    pub base_patients: usize,
    pub small: usize,
    pub large: usize,
}

pub(crate) async fn catch_up(
    sizes: &CatchUpSizes,
    tmp: &Path,
    report: &mut ScenarioReport,
) -> anyhow::Result<()> {
    let (dir, server) =
        crate::throughput::fresh_server(tmp, "catchup-", sizes.base_patients).await?;
    let client_dir: PathBuf = dir.path().join("client");
    let limit = Duration::from_secs(600);
    let (first, _) = run_child(&server, &client_dir, Some(harness::DOCTOR), limit).await?;
    report.add(
        &format!("first sync of {} patients", sizes.base_patients),
        "time",
        first.sync_secs,
        "s",
        None,
    );
    let desk = harness::login(&server.base, harness::DESK).await?;
    let mut peaks = Vec::new();
    let mut patients_expected = sizes.base_patients as u64;
    if first.counts.get("patients").copied() != Some(patients_expected) {
        bail!(
            "the first sync has {:?} patients, expected {patients_expected}",
            first.counts.get("patients")
        );
    }
    for backlog in [sizes.small, sizes.large] {
        // Offline (no client runs) while `backlog` rows change on the server.
        let per_writer = backlog.div_ceil(10);
        let before = harness::head(&server.base).await?;
        let (acked, secs, _) =
            crate::throughput::push_load(&server, &desk.token, 10, per_writer, 500).await?;
        // One change per new patient, gap-free: wait until the published
        // head (what the child syncs to) shows every one of them.
        harness::wait_head(&server.base, before + acked, Duration::from_secs(30)).await?;
        patients_expected += acked;
        let (r, wall) = run_child(&server, &client_dir, None, limit).await?;
        let case = format!("{acked} rows changed while offline");
        let target = (backlog >= 100_000).then_some(Target::AtMost(5.0));
        report.add(&case, "sync start -> caught up", r.sync_secs, "s", target);
        report.add(&case, "process start -> exit", wall, "s", None);
        report.add(&case, "rows/s", acked as f64 / r.sync_secs, "/s", None);
        report.add(
            &case,
            "peak client RSS (VmHWM)",
            r.vmhwm_kib as f64 / 1024.0,
            "MiB",
            None,
        );
        report.add(&case, "local database open", r.open_secs, "s", None);
        let patients = r.counts.get("patients").copied().unwrap_or(0);
        if r.cursor < r.head {
            bail!(
                "catch-up ended at cursor {} below head {}",
                r.cursor,
                r.head
            );
        }
        if patients != patients_expected {
            bail!(
                "after catching up the mirror has {patients} patients, expected {patients_expected}"
            );
        }
        eprintln!(
            "  catch-up of {acked} rows (written in {secs:.1} s): {:.2} s, peak RSS {} MiB, {patients} patients",
            r.sync_secs,
            r.vmhwm_kib / 1024
        );
        peaks.push(r.vmhwm_kib as f64);
    }
    if let [small, large] = peaks[..] {
        report.add(
            &format!("peak RSS at {} vs {} rows", sizes.large, sizes.small),
            "ratio (bounded = does not grow with the backlog)",
            large / small,
            "x",
            Some(Target::AtMost(1.25)),
        );
    }
    server.stop();
    Ok(())
}

/// Sizes of scenario 5.
#[derive(Debug, Clone)]
pub(crate) struct InitialSizes {
    pub patients: usize,
    pub appointments: usize,
    pub records: usize,
}

pub(crate) async fn initial_sync(
    sizes: &InitialSizes,
    tmp: &Path,
    report: &mut ScenarioReport,
) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("initial-")
        .tempdir_in(tmp)?;
    let server_dir = dir.path().join("server");
    std::fs::create_dir_all(&server_dir)?;
    let seed_start = Instant::now();
    let (sd, s) = (server_dir.clone(), sizes.clone());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let storage = clinic_server::storage::sqlite::SqliteStorage::open(sd.join("clinic.db"))?;
        let seeded = harness::seed_accounts(&storage, 8)?;
        crate::data::seed_clinic(
            &storage,
            &seeded.doctors,
            s.patients,
            s.appointments,
            s.records,
        )?;
        Ok(())
    })
    .await??;
    let seed_secs = seed_start.elapsed().as_secs_f64();
    let server_db = harness::db_bytes(&server_dir.join("clinic.db"));
    eprintln!(
        "  seeded {} patients, {} appointments, {} treatment records in {seed_secs:.1} s ({} MiB)",
        sizes.patients,
        sizes.appointments,
        sizes.records,
        server_db / (1 << 20)
    );
    let server = ServerProc::start(&server_dir, &[])?;
    let case = format!(
        "{} patients + {} appointments + {} records",
        sizes.patients, sizes.appointments, sizes.records
    );
    let full = sizes.patients >= 50_000 && sizes.appointments >= 500_000;
    let (r, wall) = run_child(
        &server,
        &dir.path().join("client"),
        Some(harness::DOCTOR),
        Duration::from_secs(1800),
    )
    .await?;
    let rows = sizes.patients + sizes.appointments + sizes.records;
    report.add(
        &case,
        "time to fully synced",
        r.sync_secs,
        "s",
        full.then_some(Target::AtMost(60.0)),
    );
    report.add(
        &case,
        "peak client memory (VmHWM)",
        r.vmhwm_kib as f64 * 1024.0 / 1e6,
        "MB",
        full.then_some(Target::AtMost(300.0)),
    );
    report.add(&case, "rows/s", rows as f64 / r.sync_secs, "/s", None);
    report.add(&case, "process start -> exit", wall, "s", None);
    report.add(
        &case,
        "client database size",
        r.db_bytes as f64 / 1e6,
        "MB",
        None,
    );
    report.add(
        &case,
        "server seeding (not measured as sync)",
        seed_secs,
        "s",
        None,
    );
    let got = |t: &str| r.counts.get(t).copied().unwrap_or(0);
    let expect = [
        ("patients", sizes.patients),
        ("appointments", sizes.appointments),
        ("treatment_records", sizes.records),
    ];
    for (table, n) in expect {
        if got(table) != n as u64 {
            bail!("the synced mirror has {} {table}, expected {n}", got(table));
        }
    }
    eprintln!(
        "  initial sync of {rows} rows: {:.1} s, peak {} MiB, local db {} MiB",
        r.sync_secs,
        r.vmhwm_kib / 1024,
        r.db_bytes / (1 << 20)
    );
    server.stop();
    Ok(())
}
