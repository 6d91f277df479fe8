//! `clinic-bench`: benchmarks of Clinic Sync with targets.
//!
//! Starts the real `clinic-server` binary (built next to this one) on
//! `127.0.0.1:0` and real clients (`clinic_client::ClinicClient`, the facade
//! the desktop app uses, each with its own SQLite directory; "engines" in
//! the figures) in this process, and measures:
//!
//! 1. propagation latency from one writer to N subscribers (clients, and
//!    protocol-level WebSocket subscribers at large N);
//! 2. the same over the long-poll fallback, and plain interval polling;
//! 3. write throughput of concurrent writers, and raw SQLite on this disk;
//! 4. catch-up after being offline (time, peak memory);
//! 5. initial sync of a large clinic (time, peak memory);
//! 6. local write and patient search latency;
//! 7. server memory per idle client and CPU per fanned-out change;
//! 8. scale-out on PostgreSQL: throughput through 1 and 3 instances and
//!    cross-instance propagation latency, with SQLite beside them.
//!
//! Prints one JSON line per scenario on standard output as it finishes, then
//! a table; progress goes to standard error. Exits non-zero if a scenario
//! fails or loses a delivery (a missed speed target does not fail the run).
//! `--smoke` runs every scenario tiny, to keep the tool working in CI.

mod cost;
mod data;
mod harness;
mod local;
mod propagation;
mod report;
mod scaleout;
mod sync;
mod throughput;

use anyhow::Context;
use clap::{Parser, Subcommand};
use propagation::{Case, Mode};
use report::ScenarioReport;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "clinic-bench",
    about = "Benchmarks of Clinic Sync: the real server binary and real client engines on loopback"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Child>,
    /// Run every scenario at a tiny size (for CI: keeps the tool working, judges nothing).
    #[arg(long)]
    smoke: bool,
    /// Only these scenarios (e.g. `--only 1,3`).
    #[arg(long, value_delimiter = ',')]
    only: Vec<u8>,
    /// Where servers and client stores put their files (default: the temp dir).
    #[arg(long)]
    tmp_dir: Option<PathBuf>,

    /// [1, 2] Writes per phase.
    #[arg(long)]
    prop_changes: Option<usize>,
    /// [1, 2] Fixed write rate of the first phase (changes/s).
    #[arg(long)]
    prop_rate: Option<f64>,
    /// [1] Numbers of subscriber engines (e.g. `1,10,100`; `0` for none).
    #[arg(long, value_delimiter = ',')]
    prop_engines: Vec<usize>,
    /// [1] Numbers of protocol-level WebSocket subscribers (e.g. `1000,5000`; `0` for none).
    #[arg(long, value_delimiter = ',')]
    prop_ws: Vec<usize>,
    /// [1] Full engines alongside the WebSocket subscribers.
    #[arg(long)]
    prop_ws_engines: Option<usize>,
    /// [1, 2] Seconds to wait for the last deliveries after the last write.
    #[arg(long)]
    prop_grace_secs: Option<u64>,
    /// [2] Subscriber engines for the long-poll and interval-polling cases.
    #[arg(long)]
    poll_engines: Option<usize>,
    /// [2] Protocol-level long-poll subscribers (`0` for none).
    #[arg(long)]
    lp_subscribers: Option<usize>,
    /// [2] Writes of the long-poll subscribers' case.
    #[arg(long)]
    lp_changes: Option<usize>,
    /// [2] Write rate of the long-poll subscribers' case (changes/s).
    #[arg(long)]
    lp_rate: Option<f64>,
    /// [2] Intervals of plain polling, in seconds (e.g. `1,30`).
    #[arg(long, value_delimiter = ',')]
    poll_secs: Vec<u64>,

    /// [3] Concurrent writers.
    #[arg(long)]
    tp_writers: Option<usize>,
    /// [3] Mutations per writer.
    #[arg(long)]
    tp_mutations: Option<usize>,
    /// [3] Mutations per push.
    #[arg(long)]
    tp_batch: Option<usize>,
    /// [3] Single-mutation pushes per writer.
    #[arg(long)]
    tp_single: Option<usize>,
    /// [3] Rows for the raw SQLite insert rate.
    #[arg(long)]
    raw_rows: Option<usize>,

    /// [4] Patients already synced before going offline.
    #[arg(long)]
    catchup_base: Option<usize>,
    /// [4] Rows changed while offline: the small and the large backlog.
    #[arg(long, value_delimiter = ',')]
    catchup_rows: Vec<usize>,

    /// [5] Patients of the clinic.
    #[arg(long)]
    initial_patients: Option<usize>,
    /// [5] Appointments of the clinic.
    #[arg(long)]
    initial_appointments: Option<usize>,
    /// [5] Treatment records of the clinic.
    #[arg(long)]
    initial_records: Option<usize>,

    /// [6] Patients in the desk's mirror.
    #[arg(long)]
    local_patients: Option<usize>,
    /// [6] Local writes.
    #[arg(long)]
    local_writes: Option<usize>,
    /// [6] Patient searches.
    #[arg(long)]
    local_searches: Option<usize>,

    /// [7] Idle WebSocket clients.
    #[arg(long)]
    idle_clients: Option<usize>,
    /// [7] Subscribers for the fan-out CPU figure.
    #[arg(long)]
    fanout_clients: Option<usize>,
    /// [7] Changes for the fan-out CPU figure.
    #[arg(long)]
    fanout_changes: Option<usize>,

    /// [8] Concurrent writers, spread over the instances.
    #[arg(long)]
    so_writers: Option<usize>,
    /// [8] Mutations per writer.
    #[arg(long)]
    so_mutations: Option<usize>,
    /// [8] WebSocket subscribers for the cross-instance latency, spread over 3 instances.
    #[arg(long)]
    so_subscribers: Option<usize>,
    /// [8] Changes written at the fixed rate for the latency.
    #[arg(long)]
    so_changes: Option<usize>,
}

#[derive(Subcommand)]
enum Child {
    /// (internal) Run one syncing client process and report as JSON.
    #[command(hide = true)]
    ChildSync {
        #[arg(long)]
        server: String,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        login: Option<String>,
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
}

fn pick<T: Clone>(given: Option<T>, smoke: bool, tiny: T, full: T) -> T {
    given.unwrap_or(if smoke { tiny } else { full })
}

fn pick_list<T: Clone>(given: &[T], smoke: bool, tiny: &[T], full: &[T]) -> Vec<T> {
    if !given.is_empty() {
        given.to_vec()
    } else if smoke {
        tiny.to_vec()
    } else {
        full.to_vec()
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    format!(
        "{} cores, {cpu}, memory {mem}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}

fn main() -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let cli = Cli::parse();
    if let Some(Child::ChildSync {
        server,
        dir,
        login,
        timeout_secs,
    }) = &cli.command
    {
        let report = sync::child_sync(
            server,
            dir,
            login.as_deref(),
            Duration::from_secs(*timeout_secs),
        )?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let passed = runtime.block_on(run(&cli))?;
    // Engines' blocking tasks may still be winding down; do not wait for them.
    runtime.shutdown_timeout(Duration::from_secs(5));
    if !passed {
        std::process::exit(1);
    }
    Ok(())
}

async fn run(cli: &Cli) -> anyhow::Result<bool> {
    let smoke = cli.smoke;
    let tmp = cli.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    // Fail early, before any scenario, if the server is not built.
    harness::sibling_binary("clinic-server")?;
    eprintln!(
        "clinic-bench{}: {}; files under {}",
        if smoke { " --smoke" } else { "" },
        machine(),
        tmp.display()
    );
    let wants = |n: u8| cli.only.is_empty() || cli.only.contains(&n);
    let changes = pick(cli.prop_changes, smoke, 30, 2000);
    let rate = pick(cli.prop_rate, smoke, 100.0, 100.0);
    let grace = Duration::from_secs(pick(cli.prop_grace_secs, smoke, 20, 60));
    let mut reports = Vec::new();

    if wants(1) {
        let mut cases = Vec::new();
        let engine_counts = pick_list(&cli.prop_engines, smoke, &[1, 3], &[1, 10, 100]);
        for n in engine_counts.into_iter().filter(|n| *n > 0) {
            cases.push(Case {
                label: format!("{n} engines"),
                engines: n,
                ws: 0,
                mode: Mode::Live,
                changes,
                rate,
                fast_phase: true,
                p99_target: (n == 100).then_some(10.0),
                grace,
                lp: 0,
                cpu_target: None,
            });
        }
        let extra = pick(cli.prop_ws_engines, smoke, 1, 3);
        let ws_counts = pick_list(&cli.prop_ws, smoke, &[20], &[1000, 5000]);
        for n in ws_counts.into_iter().filter(|n| *n > 0) {
            cases.push(Case {
                label: format!("{n} ws subscribers + {extra} engines"),
                engines: extra,
                ws: n,
                mode: Mode::Live,
                changes,
                rate,
                fast_phase: true,
                p99_target: (n == 1000).then_some(30.0),
                grace,
                lp: 0,
                cpu_target: None,
            });
        }
        reports.push(
            scenario(
                "1-propagation",
                "Propagation latency, writer's local call -> subscriber has the row (WebSocket)",
                async |r: &mut ScenarioReport| {
                    for case in &cases {
                        propagation::run_case(case, &tmp, r).await?;
                    }
                    Ok(())
                },
            )
            .await,
        );
    }

    if wants(2) {
        let n = pick(cli.poll_engines, smoke, 3, 100);
        let mut cases = vec![Case {
            label: format!("{n} engines, long-poll (WebSocket off)"),
            engines: n,
            ws: 0,
            mode: Mode::LongPoll,
            changes,
            rate,
            fast_phase: true,
            p99_target: (n == 100).then_some(100.0),
            grace,
            lp: 0,
            cpu_target: None,
        }];
        // `--poll-engines 0`: only the protocol-level subscribers below.
        cases.retain(|c| c.engines > 0);
        // Protocol-level long-poll subscribers at issue 15's load: they
        // measure the server's long-poll path, not the bench's engines.
        let lp = pick(cli.lp_subscribers, smoke, 5, 100);
        if lp > 0 {
            cases.insert(
                0,
                Case {
                    label: format!("{lp} long-poll subscribers (protocol)"),
                    engines: 0,
                    ws: 0,
                    lp,
                    mode: Mode::Live,
                    changes: pick(cli.lp_changes, smoke, 20, 6000),
                    rate: cli.lp_rate.unwrap_or(if smoke { 50.0 } else { 200.0 }),
                    fast_phase: false,
                    p99_target: (lp == 100).then_some(50.0),
                    grace,
                    cpu_target: (lp == 100).then_some(25.0),
                },
            );
        }
        for secs in pick_list(&cli.poll_secs, smoke, &[1, 2], &[1, 30]) {
            if n == 0 {
                break;
            }
            cases.push(Case {
                label: format!("{n} engines, polling every {secs} s"),
                engines: n,
                ws: 0,
                mode: Mode::Interval(Duration::from_secs(secs)),
                changes,
                rate,
                fast_phase: false,
                p99_target: None,
                grace: grace + Duration::from_secs(secs),
                lp: 0,
                cpu_target: None,
            });
        }
        reports.push(
            scenario(
                "2-fallback",
                "Propagation without WebSockets: long-poll fallback, and plain interval polling as the baseline",
                async |r: &mut ScenarioReport| {
                    for case in &cases {
                        propagation::run_case(case, &tmp, r).await?;
                        if let Mode::Interval(every) = case.mode {
                            r.note(format!(
                                "{}: expected from the interval alone (uniform wait): p50 {:.0} ms, p99 {:.0} ms",
                                case.label,
                                every.as_secs_f64() * 500.0,
                                every.as_secs_f64() * 990.0
                            ));
                        }
                    }
                    Ok(())
                },
            )
            .await,
        );
    }

    if wants(3) {
        let sizes = throughput::Sizes {
            writers: pick(cli.tp_writers, smoke, 10, 10),
            mutations_per_writer: pick(cli.tp_mutations, smoke, 100, 5000),
            batch: pick(cli.tp_batch, smoke, 20, 100),
            single_pushes_per_writer: pick(cli.tp_single, smoke, 10, 500),
            raw_rows: pick(cli.raw_rows, smoke, 2000, 100_000),
        };
        reports.push(
            scenario(
                "3-throughput",
                "Write throughput (acknowledged = durable)",
                async |r: &mut ScenarioReport| throughput::run(&sizes, &tmp, r).await,
            )
            .await,
        );
    }

    if wants(4) {
        let rows = pick_list(&cli.catchup_rows, smoke, &[100, 1000], &[10_000, 100_000]);
        let sizes = sync::CatchUpSizes {
            base_patients: pick(cli.catchup_base, smoke, 200, 10_000),
            small: rows.first().copied().unwrap_or(100),
            large: rows.last().copied().unwrap_or(1000),
        };
        reports.push(
            scenario(
                "4-catch-up",
                "Catch-up after reconnecting (separate client process)",
                async |r: &mut ScenarioReport| sync::catch_up(&sizes, &tmp, r).await,
            )
            .await,
        );
    }

    if wants(5) {
        let sizes = sync::InitialSizes {
            patients: pick(cli.initial_patients, smoke, 500, 50_000),
            appointments: pick(cli.initial_appointments, smoke, 5000, 500_000),
            records: pick(cli.initial_records, smoke, 1000, 100_000),
        };
        reports.push(
            scenario(
                "5-initial-sync",
                "Initial sync of a whole clinic (separate client process)",
                async |r: &mut ScenarioReport| sync::initial_sync(&sizes, &tmp, r).await,
            )
            .await,
        );
    }

    if wants(6) {
        let sizes = local::Sizes {
            patients: pick(cli.local_patients, smoke, 1000, 50_000),
            writes: pick(cli.local_writes, smoke, 30, 2000),
            searches: pick(cli.local_searches, smoke, 40, 2000),
        };
        reports.push(
            scenario(
                "6-local",
                "Local speed: write committed + visible, patient search",
                async |r: &mut ScenarioReport| local::run(&sizes, &tmp, r).await,
            )
            .await,
        );
    }

    if wants(7) {
        let sizes = cost::Sizes {
            idle_clients: pick(cli.idle_clients, smoke, 20, 1000),
            fanout_clients: pick(cli.fanout_clients, smoke, 5, 100),
            fanout_changes: pick(cli.fanout_changes, smoke, 50, 1000),
        };
        reports.push(
            scenario(
                "7-server-cost",
                "Server cost: memory per idle client, CPU per fanned-out change",
                async |r: &mut ScenarioReport| cost::run(&sizes, &tmp, r).await,
            )
            .await,
        );
    }

    if wants(8) {
        let sizes = scaleout::Sizes {
            writers: pick(cli.so_writers, smoke, 4, 10),
            mutations_per_writer: pick(cli.so_mutations, smoke, 100, 5000),
            batch: pick(cli.tp_batch, smoke, 20, 100),
            subscribers: pick(cli.so_subscribers, smoke, 15, 300),
            changes: pick(cli.so_changes, smoke, 50, 2000),
            rate: pick(cli.prop_rate, smoke, 100.0, 100.0),
        };
        reports.push(
            scenario(
                "8-scale-out",
                "PostgreSQL with 1 and 3 server instances: throughput, cross-instance propagation (SQLite beside)",
                async |r: &mut ScenarioReport| scaleout::run(&sizes, &tmp, r).await,
            )
            .await,
        );
    }

    println!();
    println!("{}", report::table(&reports));
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.id)
        .collect();
    let missed = reports
        .iter()
        .flat_map(|r| &r.figures)
        .filter(|f| f.met() == Some(false) && !f.must)
        .count();
    eprintln!(
        "{} scenarios run; {} failed{}; {missed} speed targets missed",
        reports.len(),
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(" ({})", failed.join(", "))
        }
    );
    Ok(failed.is_empty())
}

/// The first three fields of `/proc/loadavg`.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Runs one scenario, timing it, catching its error, and printing its JSON line.
async fn scenario(
    id: &'static str,
    title: &'static str,
    body: impl AsyncFnOnce(&mut ScenarioReport) -> anyhow::Result<()>,
) -> ScenarioReport {
    eprintln!("== scenario {id}: {title}");
    let mut report = ScenarioReport::new(id, title);
    let load_before = loadavg();
    let started = Instant::now();
    let outcome = body(&mut report).await;
    report.secs = started.elapsed().as_secs_f64();
    // Other work on the machine shows in the figures: say how busy it was.
    report.note(format!(
        "load average (1, 5, 15 min) before: {load_before}; after: {}",
        loadavg()
    ));
    if let Err(e) = outcome {
        eprintln!("   scenario {id} failed: {e:#}");
        report.error = Some(format!("{e:#}"));
    }
    println!("{}", report.json_line());
    report
}
