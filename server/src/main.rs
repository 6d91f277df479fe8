//! `clinic-server`: run the Clinic Sync server, or manage staff accounts.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use clinic_server::storage::Storage;
use clinic_server::storage::postgres::{self as pg, PgStorage};
use clinic_server::storage::sqlite::SqliteStorage;
use clinic_server::{Config, admin, demo, system_clock};
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
    /// A PostgreSQL database (`postgres://user@host:port/db`) instead of the
    /// SQLite file in the data directory; several servers may share one.
    #[arg(
        long,
        global = true,
        env = "CLINIC_DATABASE_URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// PostgreSQL connections this process keeps at most (one more listens
    /// for other servers' commits).
    #[arg(long, global = true, default_value_t = pg::DEFAULT_POOL_SIZE, env = "CLINIC_DATABASE_CONNECTIONS")]
    database_connections: usize,
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
        /// How often to look for commits made by other processes, in ms
        /// (a fallback on PostgreSQL, where wake-ups say so at once; tests
        /// raise it to prove that).
        #[arg(long, default_value_t = 500, hide = true)]
        external_poll_ms: u64,
    },
    /// Manage staff accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Copy a clinic from SQLite into an empty PostgreSQL database, with its
    /// sequence, versions, audit trail, clients' results and sessions (desks
    /// continue without a full re-sync). Stop the server first.
    Migrate {
        /// The source: `sqlite:PATH` (the `clinic.db` file).
        #[arg(long)]
        from: String,
        /// The target: `postgres://…` (an empty database).
        #[arg(long)]
        to: String,
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
    /// Set a new password (read from standard input); ends the account's sessions.
    SetPassword { username: String },
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
    if let Command::Migrate { from, to } = &cli.command {
        return migrate(from, to, cli.database_connections);
    }
    let storage: Arc<dyn Storage> = match &cli.database_url {
        Some(url) => {
            if !pg::is_postgres_url(url) {
                bail!("--database-url must start with postgres:// or postgresql://");
            }
            let shown = pg::redact_url(url);
            Arc::new(
                PgStorage::open(url, cli.database_connections)
                    .with_context(|| format!("opening the database {shown}"))?,
            )
        }
        None => {
            let db_path = dir.join("clinic.db");
            Arc::new(
                SqliteStorage::open(&db_path)
                    .with_context(|| format!("opening the database {}", db_path.display()))?,
            )
        }
    };
    let storage_ref = storage.as_ref();
    let clock = system_clock();
    match cli.command {
        Command::Serve {
            listen,
            demo,
            feed_capacity,
            external_poll_ms,
        } => {
            let config = Config {
                feed_capacity,
                external_poll: std::time::Duration::from_millis(external_poll_ms.max(10)),
                ..Config::default()
            };
            serve(storage, &listen, demo, config, &dir)
        }
        Command::Migrate { .. } => unreachable!("handled above"),
        Command::User { command } => {
            let staff = match command {
                UserCommand::Add {
                    username,
                    display_name,
                    role,
                } => {
                    let password = read_password()?;
                    admin::add_user(
                        storage_ref,
                        &username,
                        &display_name,
                        role,
                        &password,
                        &clock,
                    )?
                }
                UserCommand::Disable { username } => {
                    admin::set_active(storage_ref, &username, false, &clock)?
                }
                UserCommand::Enable { username } => {
                    admin::set_active(storage_ref, &username, true, &clock)?
                }
                UserCommand::SetRole { username, role } => {
                    admin::set_role(storage_ref, &username, role, &clock)?
                }
                UserCommand::SetPassword { username } => {
                    let password = read_password()?;
                    admin::set_password(storage_ref, &username, &password)?
                }
            };
            println!("{}", serde_json::to_string(&staff)?);
            Ok(())
        }
    }
}

/// `clinic-server migrate --from sqlite:PATH --to postgres://…`.
fn migrate(from: &str, to: &str, connections: usize) -> anyhow::Result<()> {
    let Some(path) = from.strip_prefix("sqlite:") else {
        bail!("--from must be sqlite:PATH (the clinic.db file to copy)");
    };
    if !pg::is_postgres_url(to) {
        bail!("--to must start with postgres:// or postgresql://");
    }
    let path = std::path::Path::new(path);
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    let source = SqliteStorage::open(path)
        .with_context(|| format!("opening the database {}", path.display()))?;
    let shown = pg::redact_url(to);
    let target = PgStorage::open(to, connections.max(1))
        .with_context(|| format!("opening the database {shown}"))?;
    let started = std::time::Instant::now();
    let report = clinic_server::storage::transfer::sqlite_to_postgres(&source, &target)
        .with_context(|| format!("copying {} to {shown}", path.display()))?;
    eprintln!(
        "copied {} rows, {} changes (head {}), {} credentials, {} sessions, {} clients, {} mutation results in {:.1}s",
        report.rows,
        report.changes,
        report.head,
        report.credentials,
        report.sessions,
        report.clients,
        report.results,
        started.elapsed().as_secs_f64()
    );
    println!(
        "{}",
        serde_json::json!({
            "rows": report.rows, "changes": report.changes, "head": report.head,
            "credentials": report.credentials, "sessions": report.sessions,
            "clients": report.clients, "results": report.results,
        })
    );
    Ok(())
}

fn serve(
    storage: Arc<dyn Storage>,
    listen: &str,
    demo_mode: bool,
    config: Config,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
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
        let (s, now) = (storage.clone(), (config.clock)());
        let purged = tokio::task::spawn_blocking(move || s.purge_expired_sessions(now)).await??;
        if purged > 0 {
            tracing::info!(purged, "expired sessions removed");
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let addr = listener.local_addr()?;
        // The first line of standard output is the address: scripts and tests read it.
        println!("clinic-server listening on http://{addr}");
        tracing::info!(%addr, data = %dir.display(), "serving");
        if demo_mode {
            println!("demo clinic: sign in as admin, doctor, doctor2, assistant or reception with password `{}`", demo::DEMO_PASSWORD);
        }
        std::io::stdout().flush().ok();
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
