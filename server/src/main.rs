//! `clinic-server`: run the Clinic Sync server, manage staff accounts, read
//! and verify the audit logs.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use clinic_server::session::ThrottlePolicy;
use clinic_server::storage::Storage;
use clinic_server::storage::postgres::{self as pg, PgStorage};
use clinic_server::storage::sqlite::SqliteStorage;
use clinic_server::tls::{ServerNames, TlsPaths};
use clinic_server::{Config, admin, audit, datadir, demo, logging, system_clock, tls};
use clinic_shared::model::Role;
use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
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
    /// for other servers' commits and security events).
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
        /// Serve HTTPS with this certificate chain (PEM, server certificate
        /// first). Without it, the data directory's `tls/` setup from `tls
        /// init` is used when there is one.
        #[arg(
            long,
            env = "CLINIC_TLS_CERT",
            requires = "tls_key",
            conflicts_with = "insecure_http"
        )]
        tls_cert: Option<PathBuf>,
        /// The private key of `--tls-cert` (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC).
        #[arg(long, env = "CLINIC_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Serve plain HTTP even on a non-loopback address and even when the
        /// data directory has a TLS setup. Only for a TLS-terminating proxy
        /// in front of the server: otherwise tokens and patient records
        /// cross the network readable by anyone on it.
        #[arg(long, env = "CLINIC_INSECURE_HTTP")]
        insecure_http: bool,
        /// How often to look for commits made by other processes, in ms
        /// (a fallback on PostgreSQL, where wake-ups say so at once; tests
        /// raise it to prove that).
        #[arg(long, default_value_t = 500, hide = true)]
        external_poll_ms: u64,
        /// How often to read the security-event log, in ms (revocation
        /// made elsewhere reaches open sessions within this; on PostgreSQL
        /// a wake-up says so at once, and tests raise it to prove that).
        #[arg(long, default_value_t = 200, hide = true)]
        security_poll_ms: u64,
        /// The clinic's time zone, an IANA name such as Europe/Berlin: desks
        /// show and take every time in it (default: this machine's zone).
        #[arg(long, env = "CLINIC_TIME_ZONE")]
        time_zone: Option<String>,
        /// Also serve `GET /metrics` (Prometheus text format) in plain HTTP
        /// on this address, without a sign-in: it carries no patient data,
        /// but bind it to localhost or the monitoring network only (port 0
        /// picks a free port). Administrators can read the same on the main
        /// listener with their token.
        #[arg(long, env = "CLINIC_METRICS_LISTEN")]
        metrics_listen: Option<String>,
        /// How long the metrics keep the database size and session count
        /// before reading them again, in ms.
        #[arg(long, default_value_t = 5000, hide = true)]
        metrics_refresh_ms: u64,
        /// How long a doctor's break of the glass lets them read the
        /// clinical records of a patient outside their care, in minutes
        /// (default: 720, a shift). Counted from when they broke it, for
        /// grants already made too.
        #[arg(long, env = "CLINIC_GLASS_GRANT_MINUTES", default_value_t = 720, value_parser = clap::value_parser!(u64).range(1..=10080))]
        glass_grant_minutes: u64,
        /// The same in seconds, for tests (wins over minutes).
        #[arg(long, hide = true)]
        glass_grant_secs: Option<u64>,
    },
    /// Print a running server's figures for a person (uptime, connections,
    /// mutations, commit latency, database size, sessions, sign-in
    /// failures), read from its metrics listener (`serve --metrics-listen`).
    Status {
        /// The metrics listener to read: `HOST:PORT` or
        /// `http://HOST:PORT/metrics`.
        #[arg(long)]
        url: Option<String>,
        /// Without --url: the address given to `serve --metrics-listen`
        /// (read from the same environment variable the server reads).
        #[arg(long, env = "CLINIC_METRICS_LISTEN")]
        metrics_listen: Option<String>,
    },
    /// The clinic CA and the server's certificate (in `<data-dir>/tls/`).
    Tls {
        #[command(subcommand)]
        command: TlsCommand,
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
    /// Write a consistent copy of the clinic's SQLite database to FILE while
    /// the server runs (on PostgreSQL, use pg_dump or your provider's
    /// backups, then `epoch new` after restoring).
    Backup {
        /// The file to write (must not exist yet).
        #[arg(long)]
        out: PathBuf,
    },
    /// Replace the clinic's SQLite database with a backup made by `backup`.
    /// Stop the server first. The current database is kept beside it as
    /// `clinic.db.before-restore-<time>`; the restored one gets a new server
    /// epoch, so every desk re-syncs and re-sends what it had not seen
    /// confirmed.
    Restore {
        /// The backup file.
        file: PathBuf,
    },
    /// The server epoch, which tells desks the database was restored.
    Epoch {
        #[command(subcommand)]
        command: EpochCommand,
    },
    /// Copy a clinic from SQLite into an empty PostgreSQL database, with its
    /// sequence, versions, audit trail and hash chains, access and sign-in
    /// logs, security state, clients' results and sessions (desks continue
    /// without a full re-sync). Stop the server first.
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
enum EpochCommand {
    /// Print the server epoch.
    Show,
    /// Make a new server epoch after restoring the database by other means
    /// (pg_restore, a file copy, a VM snapshot), with every server stopped:
    /// desks then re-sync instead of missing changes.
    New,
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
enum TlsCommand {
    /// Make a clinic CA (10 years) and a server certificate signed by it
    /// (2 years), and print the CA's fingerprint and where its file is.
    Init {
        /// A DNS name desks use to reach the server (repeatable).
        /// `localhost` and this machine's host name are always included.
        #[arg(long = "hostname", value_name = "NAME")]
        hostnames: Vec<String>,
        /// An IP address desks use to reach the server (repeatable).
        /// 127.0.0.1 and ::1 are always included.
        #[arg(long = "ip", value_name = "ADDR")]
        ips: Vec<IpAddr>,
        /// Replace an existing setup (desks that trust the old CA will then
        /// refuse the server until they get the new `ca.pem`).
        #[arg(long)]
        force: bool,
    },
    /// Print the CA's fingerprint and the server certificate's names and expiry.
    Show,
    /// Issue a new server certificate from the same CA (desks keep
    /// trusting it); keeps the old names unless new ones are given.
    Renew {
        /// DNS names for the new certificate (repeatable).
        #[arg(long = "hostname", value_name = "NAME")]
        hostnames: Vec<String>,
        /// IP addresses for the new certificate (repeatable).
        #[arg(long = "ip", value_name = "ADDR")]
        ips: Vec<IpAddr>,
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
    if let Some(warning) = datadir::foreign_owner_warning(&dir) {
        eprintln!("{warning}");
    }
    secure_data_dir(&dir)?;
    Ok(dir)
}

/// Creates the data directory and makes it and the server's files in it
/// private (0700 / 0600), saying what had to be tightened.
fn secure_data_dir(dir: &Path) -> anyhow::Result<()> {
    let tightened = datadir::secure(dir)
        .with_context(|| format!("making {} private to this user", dir.display()))?;
    for t in tightened {
        tracing::info!(path = %t.path.display(), was = format!("{:o}", t.was), now = format!("{:o}", t.now), "tightened file permissions");
    }
    Ok(())
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
    // Before any file is made: the database, its WAL and the TLS keys are
    // for this user only.
    datadir::private_umask();
    logging::init();
    let cli = Cli::parse();
    // Status reads a running server over the network: no data directory.
    if let Command::Status {
        url,
        metrics_listen,
    } = &cli.command
    {
        return status(url.as_deref(), metrics_listen.as_deref());
    }
    let dir = data_dir(cli.data_dir)?;
    // The TLS tools need no database.
    let command = match cli.command {
        Command::Tls { command } => return tls_command(command, &dir),
        Command::Migrate { from, to } => return migrate(&from, &to, cli.database_connections),
        Command::Restore { file } => {
            if cli.database_url.is_some() {
                bail!(
                    "restore replaces the SQLite database; on PostgreSQL restore with pg_restore \
                     (or your provider's tools), then run `clinic-server epoch new`"
                );
            }
            return restore(&file, &dir);
        }
        other => other,
    };
    let (storage, sqlite_storage): (Arc<dyn Storage>, Option<Arc<SqliteStorage>>) =
        match &cli.database_url {
            Some(url) => {
                if !pg::is_postgres_url(url) {
                    bail!("--database-url must start with postgres:// or postgresql://");
                }
                let shown = pg::redact_url(url);
                let pg = PgStorage::open(url, cli.database_connections)
                    .with_context(|| format!("opening the database {shown}"))?;
                (Arc::new(pg), None)
            }
            None => {
                let db_path = dir.join("clinic.db");
                let sqlite = SqliteStorage::open(&db_path)
                    .with_context(|| format!("opening the database {}", db_path.display()))?;
                // Opening made the -wal and -shm files if they were missing.
                secure_data_dir(&dir)?;
                let sqlite = Arc::new(sqlite);
                (sqlite.clone(), Some(sqlite))
            }
        };
    let storage_ref = storage.as_ref();
    let clock = system_clock();
    match command {
        Command::Serve {
            listen,
            demo,
            feed_capacity,
            signin_free_failures,
            signin_free_failures_per_address,
            signin_backoff_ms,
            signin_backoff_cap_secs,
            time_zone,
            tls_cert,
            tls_key,
            insecure_http,
            external_poll_ms,
            security_poll_ms,
            metrics_listen,
            metrics_refresh_ms,
            glass_grant_minutes,
            glass_grant_secs,
        } => {
            let tls = choose_tls(&dir, tls_cert, tls_key, insecure_http)?;
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
                external_poll: std::time::Duration::from_millis(external_poll_ms.max(10)),
                metrics_refresh: std::time::Duration::from_millis(metrics_refresh_ms),
                glass_grant: std::time::Duration::from_secs(
                    glass_grant_secs.unwrap_or(glass_grant_minutes * 60).max(1),
                ),
                security_poll: std::time::Duration::from_millis(security_poll_ms.max(10)),
                throttle: ThrottlePolicy {
                    free_failures_per_user: signin_free_failures,
                    free_failures_per_address: signin_free_failures_per_address,
                    base: std::time::Duration::from_millis(signin_backoff_ms.max(1)),
                    cap: std::time::Duration::from_secs(signin_backoff_cap_secs),
                    ..ThrottlePolicy::default()
                },
                ..Config::default()
            };
            let listen = Listen {
                api: &listen,
                metrics: metrics_listen.as_deref(),
            };
            serve(storage, listen, config, &dir, tls, insecure_http)
        }
        Command::Audit { command } => audit_command(storage_ref, command),
        Command::Backup { out } => {
            let Some(sqlite) = sqlite_storage.as_ref() else {
                bail!(
                    "backup copies the SQLite database; on PostgreSQL use pg_dump (or your \
                     provider's backups), and after restoring run `clinic-server epoch new`"
                );
            };
            let started = std::time::Instant::now();
            let head = sqlite
                .backup_to(&out)
                .with_context(|| format!("backing up to {}", out.display()))?;
            eprintln!(
                "backed up the clinic up to change {head} to {} in {:.1}s",
                out.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Epoch { command } => match command {
            EpochCommand::Show => {
                println!("{}", storage_ref.server_epoch()?);
                Ok(())
            }
            EpochCommand::New => {
                let epoch = storage_ref.start_new_epoch(clock())?;
                eprintln!("new server epoch {epoch}: desks will re-sync when they next connect");
                println!("{epoch}");
                Ok(())
            }
        },
        // Handled before the database was opened.
        Command::Tls { .. }
        | Command::Migrate { .. }
        | Command::Restore { .. }
        | Command::Status { .. } => Ok(()),
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
                    let staff = admin::set_password(storage_ref, &username, &password, &clock)?;
                    eprintln!(
                        "password set; `{}` must change it at the next sign-in",
                        staff.username
                    );
                    staff
                }
                UserCommand::EndSessions { username } => {
                    let (staff, ended) = admin::end_sessions_of(storage_ref, &username, &clock)?;
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

fn audit_command(storage: &dyn Storage, command: AuditCommand) -> anyhow::Result<()> {
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

/// `clinic-server migrate --from sqlite:PATH --to postgres://…`.
fn restore(file: &Path, dir: &Path) -> anyhow::Result<()> {
    if !file.exists() {
        bail!("{} does not exist", file.display());
    }
    let db = dir.join("clinic.db");
    let restored = clinic_server::storage::sqlite::restore_from(file, &db, system_clock()())
        .with_context(|| format!("restoring {} from {}", db.display(), file.display()))?;
    secure_data_dir(dir)?;
    if let Some(previous) = &restored.previous {
        eprintln!("the database it replaced is kept as {}", previous.display());
    }
    eprintln!(
        "restored the clinic up to change {} with the new server epoch {}: desks re-sync when they next connect and re-send what they had not seen confirmed",
        restored.head, restored.epoch
    );
    Ok(())
}

fn migrate(from: &str, to: &str, connections: usize) -> anyhow::Result<()> {
    let Some(path) = from.strip_prefix("sqlite:") else {
        bail!("--from must be sqlite:PATH (the clinic.db file to copy)");
    };
    if !pg::is_postgres_url(to) {
        bail!("--to must start with postgres:// or postgresql://");
    }
    let path = Path::new(path);
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
        "copied {} in {:.1}s; both hash chains verified on the target",
        report.summary(),
        started.elapsed().as_secs_f64()
    );
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn tls_command(command: TlsCommand, dir: &Path) -> anyhow::Result<()> {
    let paths = TlsPaths::in_data_dir(dir);
    let now = chrono::Utc::now();
    let summary = match command {
        TlsCommand::Init {
            hostnames,
            ips,
            force,
        } => tls::init(&paths, &ServerNames { hostnames, ips }, force, now)?,
        TlsCommand::Show => tls::show(&paths)?,
        TlsCommand::Renew { hostnames, ips } => {
            let s = tls::renew(&paths, &ServerNames { hostnames, ips }, now)?;
            eprintln!("restart the server to use the new certificate");
            s
        }
    };
    for line in summary.lines(now) {
        println!("{line}");
    }
    Ok(())
}

/// Where the server's TLS identity comes from.
struct TlsChoice {
    acceptor: tokio_rustls::TlsAcceptor,
    /// For the log: the certificate file and whether it is the data
    /// directory's own setup.
    cert: PathBuf,
    from_data_dir: bool,
}

fn choose_tls(
    dir: &Path,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    insecure_http: bool,
) -> anyhow::Result<Option<TlsChoice>> {
    if let (Some(cert), Some(key)) = (cert, key) {
        let acceptor = tls::acceptor(&cert, &key)?;
        return Ok(Some(TlsChoice {
            acceptor,
            cert,
            from_data_dir: false,
        }));
    }
    let paths = TlsPaths::in_data_dir(dir);
    if insecure_http || !paths.has_server_identity() {
        return Ok(None);
    }
    let acceptor = tls::acceptor(&paths.server_cert, &paths.server_key)
        .context("using the data directory's TLS setup (from `clinic-server tls init`)")?;
    Ok(Some(TlsChoice {
        acceptor,
        cert: paths.server_cert,
        from_data_dir: true,
    }))
}

/// Why plain HTTP is refused off loopback, and what to do instead.
fn plain_http_refusal(addr: std::net::SocketAddr, dir: &Path) -> String {
    format!(
        "refusing to serve plain HTTP on {addr}: it is not a loopback address, so sign-in \
         tokens and patient records would cross the network unencrypted. Either run \
         `clinic-server --data-dir {} tls init --hostname <name desks use>` once (a clinic CA \
         and server certificate, used from then on), or pass --tls-cert FILE --tls-key FILE. \
         Only behind a TLS-terminating proxy, --insecure-http serves plain HTTP anyway.",
        dir.display()
    )
}

/// `clinic-server status`.
fn status(url: Option<&str>, metrics_listen: Option<&str>) -> anyhow::Result<()> {
    let Some(url) = url.or(metrics_listen) else {
        bail!(
            "no metrics address: pass --url HOST:PORT, or set CLINIC_METRICS_LISTEN to the \
             address the server's --metrics-listen was given"
        );
    };
    let text = clinic_server::status::fetch(url, std::time::Duration::from_secs(10))?;
    let status = clinic_server::status::Status::parse(&text, url)?;
    print!("{}", status.table());
    Ok(())
}

/// Where `serve` listens.
struct Listen<'a> {
    /// The API (and WebSockets).
    api: &'a str,
    /// `GET /metrics` without sign-in, plain HTTP.
    metrics: Option<&'a str>,
}

fn serve(
    storage: Arc<dyn Storage>,
    listen: Listen<'_>,
    config: Config,
    dir: &std::path::Path,
    tls: Option<TlsChoice>,
    insecure_http: bool,
) -> anyhow::Result<()> {
    let demo_mode = config.demo;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let scheme = if tls.is_some() { "https" } else { "http" };
        if let Some(choice) = &tls {
            if choice.from_data_dir {
                tracing::info!(cert = %choice.cert.display(), "TLS on, with the clinic CA setup in the data directory");
            } else {
                tracing::info!(cert = %choice.cert.display(), "TLS on");
            }
        }
        let config = Config {
            tls: tls.map(|c| c.acceptor),
            ..config
        };
        if demo_mode {
            let s = storage.clone();
            let clock = config.clock.clone();
            let seeded = tokio::task::spawn_blocking(move || demo::seed_if_empty(s.as_ref(), &clock)).await??;
            if let Some(summary) = seeded {
                tracing::info!(patients = summary.patients, appointments = summary.appointments, "demo clinic seeded");
            }
        }
        let (s, cutoff) = (storage.clone(), clinic_server::session::purge_cutoff((config.clock)()));
        let purged = tokio::task::spawn_blocking(move || s.purge_expired_sessions(cutoff)).await??;
        if purged > 0 {
            tracing::info!(purged, "expired sessions removed");
        }
        let listener = tokio::net::TcpListener::bind(listen.api)
            .await
            .with_context(|| format!("listening on {}", listen.api))?;
        let addr = listener.local_addr()?;
        let metrics_listener = match listen.metrics {
            Some(at) => Some(
                tokio::net::TcpListener::bind(at)
                    .await
                    .with_context(|| format!("--metrics-listen {at}"))?,
            ),
            None => None,
        };
        if config.tls.is_none() && !addr.ip().is_loopback() {
            if !insecure_http {
                bail!(plain_http_refusal(addr, dir));
            }
            tracing::warn!(%addr, "serving plain HTTP on a non-loopback address (--insecure-http): tokens and records are readable on the network");
        }
        // The first line of standard output is the address: scripts and tests read it.
        println!("clinic-server listening on {scheme}://{addr}");
        if let Some(m) = &metrics_listener {
            let at = m.local_addr()?;
            // The second line when there is one: the metrics' address.
            println!("clinic-server metrics on http://{at}/metrics");
            if !at.ip().is_loopback() {
                tracing::info!(%at, "metrics served without sign-in on a non-loopback address: keep it to the monitoring network");
            }
        }
        tracing::info!(%addr, data = %dir.display(), time_zone = %config.time_zone, "serving");
        if demo_mode {
            println!("demo clinic: sign in as admin, doctor, doctor2, assistant or reception with password `{}`", demo::DEMO_PASSWORD);
        }
        std::io::stdout().flush().ok();
        clinic_server::run_with_metrics(listener, metrics_listener, storage, config, shutdown_signal()).await?;
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
