//! `clinic-server`: run the Clinic Sync server, manage staff accounts, read
//! and verify the audit logs.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use clinic_server::session::ThrottlePolicy;
use clinic_server::storage::Storage;
use clinic_server::storage::sqlite::SqliteStorage;
use clinic_server::{Config, admin, audit, demo, system_clock};
use clinic_shared::model::Role;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "clinic-server", version, about = "The Clinic Sync server")]
struct Cli {
    /// Where the database lives (default: the platform's data directory).
    #[arg(long, global = true, env = "CLINIC_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API.
    Serve {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:8787", env = "CLINIC_LISTEN")]
        listen: String,
        /// Seed a demo clinic on first start (demo accounts, password `demo`).
        #[arg(long)]
        demo: bool,
        /// Change batches kept for live subscribers; one that falls further
        /// behind catches up from the database instead.
        #[arg(long, default_value_t = 256)]
        feed_capacity: usize,
        /// Failed sign-ins a username may have before each further one
        /// locks it (1 s, doubling up to the cap).
        #[arg(long, default_value_t = 5, env = "CLINIC_SIGNIN_FREE_FAILURES")]
        signin_free_failures: u32,
        /// Failed sign-ins one client address may have before each further
        /// one locks it (desks of a clinic often share an address).
        #[arg(
            long,
            default_value_t = 20,
            env = "CLINIC_SIGNIN_FREE_FAILURES_PER_ADDRESS"
        )]
        signin_free_failures_per_address: u32,
        /// The first sign-in lockout, in milliseconds.
        #[arg(long, default_value_t = 1000, env = "CLINIC_SIGNIN_BACKOFF_MS")]
        signin_backoff_ms: u64,
        /// The longest sign-in lockout, in seconds.
        #[arg(long, default_value_t = 900, env = "CLINIC_SIGNIN_BACKOFF_CAP_SECS")]
        signin_backoff_cap_secs: u64,
        /// The clinic's time zone, an IANA name such as Europe/Berlin: desks
        /// show and take every time in it (default: this machine's zone).
        #[arg(long, env = "CLINIC_TIME_ZONE")]
        time_zone: Option<String>,
    },
    /// Manage staff accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Read and verify the audit logs.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chains of the change log and the access log; name the
    /// first bad entry and exit with status 1 if one does not match.
    Verify,
    /// Print sign-in attempts, newest first, one JSON object a line.
    SignIns {
        /// How many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Only events older than this id.
        #[arg(long)]
        before: Option<u64>,
    },
    /// Print who received or opened a patient's records, newest first, one
    /// JSON object a line.
    Access {
        /// The patient's id.
        #[arg(long)]
        patient: uuid::Uuid,
        /// How many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add an account; the password is read from standard input.
    Add {
        #[arg(long)]
        username: String,
        #[arg(long)]
        display_name: String,
        #[arg(long)]
        role: Role,
    },
    /// Disable an account and end its sessions.
    Disable { username: String },
    /// Enable a disabled account.
    Enable { username: String },
    /// Change an account's role.
    SetRole {
        username: String,
        #[arg(long)]
        role: Role,
    },
    /// Set a new password (read from standard input); ends the account's
    /// sessions, and the account must change it at its next sign-in.
    SetPassword { username: String },
    /// End every session of an account (open connections close within a
    /// second on every running server).
    EndSessions { username: String },
}

fn data_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = match given {
        Some(dir) => dir,
        None => directories::ProjectDirs::from("org", "ClinicSync", "clinic-server")
            .context("no home directory to put the data in; pass --data-dir")?
            .data_dir()
            .to_path_buf(),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn read_password() -> anyhow::Result<String> {
    if atty_stdin() {
        eprint!("Password: ");
        std::io::stderr().flush().ok();
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("no password given on standard input");
    }
    Ok(password)
}

fn atty_stdin() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal()
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,clinic_server=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let dir = data_dir(cli.data_dir)?;
    let db_path = dir.join("clinic.db");
    let storage = SqliteStorage::open(&db_path)
        .with_context(|| format!("opening the database {}", db_path.display()))?;
    let clock = system_clock();
    match cli.command {
        Command::Serve {
            listen,
            demo,
            feed_capacity,
            signin_free_failures,
            signin_free_failures_per_address,
            signin_backoff_ms,
            signin_backoff_cap_secs,
            time_zone,
        } => {
            let time_zone = match time_zone {
                Some(name) => clinic_shared::time::ClinicZone::parse(&name)
                    .with_context(|| "--time-zone".to_owned())?
                    .name()
                    .to_owned(),
                None => clinic_server::system_time_zone(),
            };
            let config = Config {
                time_zone,
                feed_capacity,
                demo,
                throttle: ThrottlePolicy {
                    free_failures_per_user: signin_free_failures,
                    free_failures_per_address: signin_free_failures_per_address,
                    base: std::time::Duration::from_millis(signin_backoff_ms.max(1)),
                    cap: std::time::Duration::from_secs(signin_backoff_cap_secs),
                    ..ThrottlePolicy::default()
                },
                ..Config::default()
            };
            serve(Arc::new(storage), &listen, config, &dir)
        }
        Command::Audit { command } => audit_command(&storage, command),
        Command::User { command } => {
            let staff = match command {
                UserCommand::Add {
                    username,
                    display_name,
                    role,
                } => {
                    let password = read_password()?;
                    admin::add_user(&storage, &username, &display_name, role, &password, &clock)?
                }
                UserCommand::Disable { username } => {
                    admin::set_active(&storage, &username, false, &clock)?
                }
                UserCommand::Enable { username } => {
                    admin::set_active(&storage, &username, true, &clock)?
                }
                UserCommand::SetRole { username, role } => {
                    admin::set_role(&storage, &username, role, &clock)?
                }
                UserCommand::SetPassword { username } => {
                    let password = read_password()?;
                    let staff = admin::set_password(&storage, &username, &password, &clock)?;
                    eprintln!(
                        "password set; `{}` must change it at the next sign-in",
                        staff.username
                    );
                    staff
                }
                UserCommand::EndSessions { username } => {
                    let (staff, ended) = admin::end_sessions_of(&storage, &username, &clock)?;
                    eprintln!(
                        "{} session(s) of `{}` ended",
                        ended.sessions, staff.username
                    );
                    staff
                }
            };
            println!("{}", serde_json::to_string(&staff)?);
            Ok(())
        }
    }
}

fn audit_command(storage: &SqliteStorage, command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify => {
            let mut failed = false;
            for (name, result) in [
                ("change log", audit::verify_changes(storage)),
                ("access log", audit::verify_access(storage)),
            ] {
                match result {
                    Ok(v) => println!(
                        "{name}: {} entries, chain intact, head {}",
                        v.entries, v.head
                    ),
                    Err(e @ audit::VerifyError::Broken { .. }) => {
                        println!("{e}");
                        failed = true;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if failed {
                bail!("an audit log does not match its hash chain");
            }
            Ok(())
        }
        AuditCommand::SignIns { limit, before } => {
            for event in storage.sign_in_events(before, limit)? {
                println!("{}", serde_json::to_string(&event)?);
            }
            Ok(())
        }
        AuditCommand::Access { patient, limit } => {
            for entry in storage.access_log(patient, None, limit)? {
                println!("{}", serde_json::to_string(&entry)?);
            }
            Ok(())
        }
    }
}

fn serve(
    storage: Arc<SqliteStorage>,
    listen: &str,
    config: Config,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let demo_mode = config.demo;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        if demo_mode {
            let s = storage.clone();
            let clock = config.clock.clone();
            let seeded = tokio::task::spawn_blocking(move || demo::seed_if_empty(s.as_ref(), &clock)).await??;
            if let Some(summary) = seeded {
                tracing::info!(patients = summary.patients, appointments = summary.appointments, "demo clinic seeded");
            }
        }
        let purged = storage.purge_expired_sessions((config.clock)())?;
        if purged > 0 {
            tracing::info!(purged, "expired sessions removed");
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let addr = listener.local_addr()?;
        // The first line of standard output is the address: scripts and tests read it.
        println!("clinic-server listening on http://{addr}");
        tracing::info!(%addr, data = %dir.display(), time_zone = %config.time_zone, "serving");
        if demo_mode {
            println!("demo clinic: sign in as admin, doctor, doctor2, assistant or reception with password `{}`", demo::DEMO_PASSWORD);
        }
        std::io::stdout().flush().ok();
        let storage: Arc<dyn Storage> = storage;
        clinic_server::run(listener, storage, config, shutdown_signal()).await?;
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown requested");
}
