//! `clinic`: the command-line client, for scripting, support and tests.
//! Every read is local. Every write is applied locally at once (it works
//! offline and prints the new id immediately) and, when the server can be
//! reached, sent before the command exits (bounded wait; `--no-sync` keeps
//! it local): the command says whether the server confirmed it, refused it,
//! or it stays queued for the next `sync`. `--json` prints machine-readable
//! output. Everything goes through the `clinic-client` facade.

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use clinic_client::{
    ClientConfig, ClientError, ClinicClient, Delivery, Entity, QueueStats, SyncConfig,
};
use clinic_shared::model::{
    Appointment, AppointmentStatus, InventoryItem, Patient, Referral, ReferralStatus, Sex, Table,
    Timestamp, Urgency,
};
use clinic_shared::mutation::*;
use serde::Serialize;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use uuid::Uuid;

#[derive(Parser)]
#[command(name = "clinic", version, about = "Clinic Sync command-line client")]
struct Cli {
    /// Where the local database lives (default: the platform data directory).
    #[arg(long, global = true, env = "CLINIC_CLIENT_DIR")]
    data_dir: Option<PathBuf>,
    /// The server's base URL (for login; afterwards the stored one is used).
    #[arg(long, global = true, env = "CLINIC_SERVER")]
    server: Option<String>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    /// Sync over HTTP long-poll only (no WebSocket).
    #[arg(long, global = true)]
    no_websocket: bool,
    /// Writes stay local and queued: no attempt to send them now.
    #[arg(long, global = true)]
    no_sync: bool,
    /// Seconds a write waits for the server's answer before it is left queued.
    #[arg(long, global = true, default_value_t = 2.0)]
    wait: f64,
    /// A CA certificate file (PEM) to trust, e.g. the clinic CA `ca.pem`
    /// from `clinic-server tls init` (repeatable; `:`-separated in the
    /// environment).
    #[arg(
        long = "ca",
        global = true,
        env = "CLINIC_CA_FILE",
        value_delimiter = ':'
    )]
    ca_files: Vec<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sign in (the password is read from standard input).
    Login {
        #[arg(long)]
        username: String,
        /// Read the password from standard input (the only way offered).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Trust the server's clinic CA by its fingerprint, as `clinic-server
        /// tls show` prints it on the server (when you have no `--ca` file):
        /// compare it with what a first `login` shows.
        #[arg(long, value_name = "FINGERPRINT")]
        trust: Option<String>,
    },
    /// Sign out: ends the session and removes the clinic's data from this
    /// machine. Refused while changes are unsent, unless --discard-pending.
    Logout {
        /// Throw away changes the server has not confirmed.
        #[arg(long)]
        discard_pending: bool,
    },
    /// Change your password: the current and the new one are read from
    /// standard input, one per line. Your other sessions end.
    Password {
        /// Read both passwords from standard input (the only way offered).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Who, where, and how the sync stands.
    Status,
    /// One round: push everything pending, pull until caught up, exit.
    Sync,
    /// Stay connected; print each applied change batch and rejection as a JSON line.
    Watch,
    /// Patients.
    Patients {
        #[command(subcommand)]
        command: PatientCommand,
    },
    /// Appointments.
    Appointments {
        #[command(subcommand)]
        command: AppointmentCommand,
    },
    /// Treatment records (doctors).
    Records {
        #[command(subcommand)]
        command: RecordCommand,
    },
    /// Inventory.
    Stock {
        #[command(subcommand)]
        command: StockCommand,
    },
    /// Referrals to specialists: doctors write them, reception sends and
    /// follows them up (reception never receives the clinical reason).
    Referrals {
        #[command(subcommand)]
        command: ReferralCommand,
    },
    /// Print to PDF from what this computer holds (works offline): a day
    /// sheet before an outage, a receipt for a patient.
    Print {
        #[command(subcommand)]
        command: PrintCommand,
    },
    /// Changes not yet confirmed by the server.
    Pending,
    /// Changes the server refused, with the reason.
    Rejected {
        /// Dismiss this rejection (mutation id) after reading it.
        #[arg(long)]
        dismiss: Option<u64>,
    },
}

#[derive(Subcommand)]
enum PrintCommand {
    /// A day's appointments (default tomorrow, the day to print before an
    /// outage): one doctor's with --doctor, else the whole clinic's, one
    /// section per doctor; times in the clinic's time zone.
    DaySheet {
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
        /// Username or id.
        #[arg(long)]
        doctor: Option<String>,
        /// The PDF file to write (readable by you only).
        #[arg(long)]
        out: PathBuf,
    },
    /// A summary for the patient (doctors and admins): details, treatment
    /// records, referrals and visits. Recorded in the access log like
    /// opening the chart.
    Summary {
        patient: Uuid,
        /// The PDF file to write (readable by you only).
        #[arg(long)]
        out: PathBuf,
    },
    /// An invoice with its payments ("Receipt" once paid in full).
    Invoice {
        id: Uuid,
        /// The PDF file to write (readable by you only).
        #[arg(long)]
        out: PathBuf,
    },
    /// The end-of-day report (default today, in the clinic's time zone):
    /// takings by method and by person, every payment and refund, what is
    /// still open. The whole clinic's, or one person's takings with --staff.
    DayReport {
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
        /// Username or id of the person whose takings to report.
        #[arg(long)]
        staff: Option<String>,
        /// The PDF file to write (readable by you only).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
struct PatientFields {
    #[arg(long)]
    first_name: Option<String>,
    #[arg(long)]
    last_name: Option<String>,
    #[arg(long)]
    date_of_birth: Option<chrono::NaiveDate>,
    #[arg(long)]
    phone: Option<String>,
    #[arg(long)]
    email: Option<String>,
    #[arg(long)]
    address: Option<String>,
    #[command(flatten)]
    more: PatientMore,
}

/// The record fields beyond name, birth and contact (on update, an empty
/// value clears one).
#[derive(Args)]
struct PatientMore {
    /// female, male or diverse (on update, "" clears it).
    #[arg(long, value_parser = parse_sex)]
    sex: Option<SexArg>,
    /// Whom to call in an emergency: name and relation.
    #[arg(long)]
    emergency_contact: Option<String>,
    /// Their phone number.
    #[arg(long)]
    emergency_phone: Option<String>,
    /// The health insurer.
    #[arg(long)]
    insurer: Option<String>,
    /// The member number with the insurer.
    #[arg(long)]
    insurance_number: Option<String>,
    /// Allergies and alerts, shown as a banner on the chart and when booking.
    #[arg(long)]
    alerts: Option<String>,
}

/// `--sex`: a value, or "" to clear it.
#[derive(Clone, Copy)]
struct SexArg(Option<Sex>);

/// `--sex` was given something else.
#[derive(Debug)]
struct NotASex;

impl std::fmt::Display for NotASex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("expected female, male or diverse (or \"\" to clear it)")
    }
}

impl std::error::Error for NotASex {}

fn parse_sex(s: &str) -> Result<SexArg, NotASex> {
    if s.is_empty() {
        return Ok(SexArg(None));
    }
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map(|sex| SexArg(Some(sex)))
        .map_err(|_| NotASex)
}

/// `Some("")` (clear) as `Some(None)`, for a patch.
fn clearing(v: Option<String>) -> Option<Option<String>> {
    v.map(|v| (!v.is_empty()).then_some(v))
}

/// An empty value as no value, for a new record.
fn given(v: Option<String>) -> Option<String> {
    v.filter(|v| !v.trim().is_empty())
}

#[derive(Subcommand)]
enum PatientCommand {
    /// Register a patient; prints the new id.
    Add {
        #[arg(long)]
        first_name: String,
        #[arg(long)]
        last_name: String,
        #[arg(long)]
        date_of_birth: chrono::NaiveDate,
        #[arg(long)]
        phone: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        address: Option<String>,
        #[command(flatten)]
        more: PatientMore,
    },
    /// Every patient.
    List,
    /// Search by name, phone or date of birth.
    Search { query: String },
    /// One patient's chart.
    Show { id: Uuid },
    /// Change some fields (only those given).
    Update {
        id: Uuid,
        #[command(flatten)]
        fields: PatientFields,
    },
    /// Delete a patient.
    Delete { id: Uuid },
}

#[derive(Subcommand)]
enum AppointmentCommand {
    /// Book; prints the new id.
    Book {
        #[arg(long)]
        patient: Uuid,
        /// Doctor's id or username.
        #[arg(long)]
        doctor: String,
        #[arg(long)]
        start: Timestamp,
        #[arg(long)]
        end: Timestamp,
        #[arg(long)]
        reason: Option<String>,
    },
    /// A day's appointments (default today), for one doctor or all; the day is
    /// the clinic's, in its time zone.
    List {
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
        #[arg(long)]
        doctor: Option<String>,
    },
    /// Move an appointment.
    Reschedule {
        id: Uuid,
        #[arg(long)]
        start: Timestamp,
        #[arg(long)]
        end: Timestamp,
        #[arg(long)]
        doctor: Option<String>,
    },
    /// Move along the status flow (checked_in, in_progress, completed, cancelled, no_show).
    SetStatus { id: Uuid, status: String },
}

#[derive(Subcommand)]
enum RecordCommand {
    /// Write a treatment record; prints the new id.
    Add {
        #[arg(long)]
        patient: Uuid,
        #[arg(long)]
        appointment: Option<Uuid>,
        #[arg(long)]
        notes: String,
        #[arg(long)]
        diagnosis: String,
    },
    /// Edit notes or diagnosis.
    Update {
        id: Uuid,
        #[arg(long)]
        notes: Option<String>,
        #[arg(long)]
        diagnosis: Option<String>,
    },
    /// Ask the server for a patient's clinical records (doctors receive
    /// them only for their own patients): fills in what this computer holds
    /// without them, or says the patient is not in your care.
    Open { patient: Uuid },
    /// Break the glass: read the clinical records of a patient outside your
    /// care, saying why (10 characters at least). The reason goes to the
    /// access log with your name; administrators review it.
    BreakGlass {
        patient: Uuid,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum StockCommand {
    /// Every item (or only those at or below their reorder level).
    List {
        #[arg(long)]
        low: bool,
    },
    /// Add (+) or take (−) stock.
    Adjust {
        id: Uuid,
        #[arg(long, allow_hyphen_values = true)]
        delta: i64,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Subcommand)]
enum ReferralCommand {
    /// Every referral, oldest first (or only those still on their way).
    List {
        #[arg(long)]
        open: bool,
    },
    /// Write a referral (doctors); prints the new id. It starts as a draft.
    Add {
        #[arg(long)]
        patient: Uuid,
        /// Who the patient is referred to (specialty, clinic or person).
        #[arg(long)]
        to: String,
        /// The clinical reason.
        #[arg(long)]
        reason: String,
        #[arg(long)]
        urgent: bool,
    },
    /// Move along the flow: sent, accepted, completed (seen) or cancelled.
    SetStatus { id: Uuid, status: String },
}

/// Exit status of a write the server refused (the change was made locally
/// and then rolled back).
const REFUSED_BY_SERVER: u8 = 2;

struct Out {
    json: bool,
}

impl Out {
    fn value<T: Serialize>(&self, v: &T, human: impl FnOnce() -> String) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        if self.json {
            writeln!(stdout, "{}", serde_json::to_string(v)?)?;
        } else {
            writeln!(stdout, "{}", human())?;
        }
        Ok(())
    }

    fn patients(&self, rows: &[Entity<Patient>]) -> anyhow::Result<()> {
        self.value(&rows, || {
            rows.iter()
                .map(describe_patient)
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    fn appointments(&self, rows: &[Entity<Appointment>]) -> anyhow::Result<()> {
        self.value(&rows, || {
            rows.iter()
                .map(describe_appointment)
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    fn items(&self, rows: &[Entity<InventoryItem>]) -> anyhow::Result<()> {
        self.value(&rows, || {
            rows.iter()
                .map(describe_item)
                .collect::<Vec<_>>()
                .join("\n")
        })
    }
}

fn flag(pending: bool) -> &'static str {
    if pending { " (pending)" } else { "" }
}

fn describe_referral(r: &Entity<Referral>) -> String {
    let d = &r.data;
    format!(
        "{}  patient {}  to {}  {}  {}{}{}",
        r.id,
        d.patient_id,
        d.referred_to,
        if d.urgency == Urgency::Urgent {
            "urgent"
        } else {
            "routine"
        },
        d.status.as_str(),
        // Withheld from roles that may not read it (it arrives empty).
        if d.reason.is_empty() {
            String::new()
        } else {
            format!("  reason: {}", d.reason)
        },
        flag(r.pending)
    )
}

fn describe_patient(p: &Entity<Patient>) -> String {
    let d = &p.data;
    format!(
        "{}  {} {}  born {}  {}{}",
        p.id,
        d.first_name,
        d.last_name,
        d.date_of_birth,
        d.phone.as_deref().unwrap_or(""),
        flag(p.pending)
    )
}

fn describe_appointment(a: &Entity<Appointment>) -> String {
    let d = &a.data;
    format!(
        "{}  {} – {}  {}  patient {}{}",
        a.id,
        d.start,
        d.end,
        d.status.as_str(),
        d.patient_id,
        flag(a.pending)
    )
}

fn describe_item(i: &Entity<InventoryItem>) -> String {
    let d = &i.data;
    format!(
        "{}  {}: {} {} (reorder at {}){}",
        i.id,
        d.name,
        d.quantity,
        d.unit,
        d.reorder_level,
        flag(i.pending)
    )
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("no password on standard input");
    }
    Ok(password)
}

fn now() -> Timestamp {
    Timestamp::from_datetime(chrono::Utc::now())
}

/// Writes `bytes` to `path` readable by the user only (a printout names
/// patients), through a temporary file beside it so that a failed write
/// leaves no half a PDF.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".clinic-print-")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Resolves a staff member (a doctor, or whoever took the money) given by
/// id or username from the local mirror.
async fn doctor_id(client: &ClinicClient, doctor: &str) -> anyhow::Result<Uuid> {
    if let Ok(id) = Uuid::parse_str(doctor) {
        return Ok(id);
    }
    client
        .staff_by_username(doctor)
        .await?
        .map(|s| s.id)
        .with_context(|| format!("no staff member `{doctor}` in the local mirror (sync first?)"))
}

async fn version_of(client: &ClinicClient, table: Table, id: Uuid) -> anyhow::Result<u64> {
    Ok(client
        .row(table, id)
        .await?
        .with_context(|| format!("no {table} {id} here"))?
        .version)
}

fn status_of(s: &str) -> anyhow::Result<AppointmentStatus> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).with_context(|| {
        format!("unknown status `{s}` (checked_in, in_progress, completed, cancelled, no_show)")
    })
}

/// How the command ended, beyond success or an error.
enum Outcome {
    Done,
    RefusedByServer,
}

/// Makes a change: applied locally, then (unless `--no-sync`) sent and
/// answered within the wait.
struct Writer<'a> {
    client: &'a ClinicClient,
    out: &'a Out,
    deliver: Option<Duration>,
}

impl Writer<'_> {
    async fn write(&self, mutation: Mutation, id: Uuid) -> anyhow::Result<Outcome> {
        let receipt = self.client.mutate(mutation).await?;
        let delivery = match self.deliver {
            Some(wait) if self.client.identity().await?.signed_in => {
                self.client.deliver(receipt.mutation_id, wait).await?
            }
            _ => Delivery::Queued {
                reason: "kept local (--no-sync)".into(),
            },
        };
        #[derive(Serialize)]
        struct Written {
            id: Uuid,
            mutation_id: u64,
            #[serde(flatten)]
            delivery: Delivery,
        }
        let refused = matches!(delivery, Delivery::Rejected { .. });
        let note = match &delivery {
            Delivery::Confirmed => "saved on the server".to_owned(),
            Delivery::Queued { reason } => format!("queued, not sent yet: {reason}"),
            Delivery::Rejected { rejection } => {
                format!("refused by the server: {}", rejection.message)
            }
        };
        self.out.value(
            &Written {
                id,
                mutation_id: receipt.mutation_id,
                delivery,
            },
            || id.to_string(),
        )?;
        if !self.out.json {
            eprintln!("{note}");
        }
        Ok(if refused {
            Outcome::RefusedByServer
        } else {
            Outcome::Done
        })
    }
}

/// stderr logging: `RUST_LOG` (default `warn`) and, whatever it says, the
/// dependency caps of `clinic_shared::logging` (no tokens, keys or records
/// in logs at any level).
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let caps = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::level_filters::LevelFilter::TRACE)
        .with_targets(
            clinic_shared::logging::CAPPED_TARGETS
                .iter()
                .map(|t| (*t, tracing::level_filters::LevelFilter::INFO)),
        );
    let env = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::registry()
        .with(caps)
        .with(env)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .try_init();
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let json = cli.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::RefusedByServer) => ExitCode::from(REFUSED_BY_SERVER),
        Err(e) => {
            if json {
                let body = match e.downcast_ref::<ClientError>() {
                    Some(c) => serde_json::to_value(c).unwrap_or_default(),
                    None => {
                        serde_json::json!({ "code": "error", "message": format!("{e:#}"), "retryable": false })
                    }
                };
                eprintln!("{body}");
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Prints, once (on stderr, so scripts reading stdout are not confused),
/// that this desk's mirror was found damaged and rebuilt, with what was kept
/// and lost; then dismisses the notice, as the desk's OK button does.
async fn tell_once_if_rebuilt(client: &ClinicClient) {
    let Ok(Some(notice)) = client.mirror_rebuilt().await else {
        return;
    };
    let noticed = match client.clinic_zone().await {
        Ok(zone) => match zone.local(notice.noticed_at) {
            Ok((date, time)) => format!("{date} {} {}", time.format("%H:%M"), zone.name()),
            Err(_) => notice.noticed_at.to_string(),
        },
        Err(_) => notice.noticed_at.to_string(),
    };
    eprintln!("{}", notice.sentence(&noticed));
    if let Err(e) = client.dismiss_mirror_rebuilt().await {
        eprintln!("warning: the notice could not be marked as read: {e}");
    }
}

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let dir = match cli.data_dir {
        Some(d) => d,
        None => clinic_client::default_data_dir().context("no home directory; pass --data-dir")?,
    };
    let sync = SyncConfig {
        websocket: !cli.no_websocket,
        ..SyncConfig::default()
    };
    let client = ClinicClient::open(
        ClientConfig::new(dir)
            .with_sync(sync)
            .with_ca_files(cli.ca_files),
    )
    .await?;
    let out = Out { json: cli.json };
    tell_once_if_rebuilt(&client).await;
    let deliver = (!cli.no_sync).then(|| Duration::from_secs_f64(cli.wait.clamp(0.0, 600.0)));
    let writer = Writer {
        client: &client,
        out: &out,
        deliver,
    };
    let done = |r: anyhow::Result<()>| r.map(|()| Outcome::Done);
    // Every connection is closed before the process exits, whatever the
    // outcome: SQLCipher's exit handler must not run while one is closing.
    let outcome = async {
    match cli.command {
        Command::Login {
            username,
            password_stdin: _,
            trust,
        } => {
            let server = match cli.server.or(client.identity().await?.server_url) {
                Some(s) => s,
                None => bail!("pass --server URL the first time"),
            };
            let password = read_password()?;
            let signed_in = match (client.sign_in(&server, &username, &password).await, trust) {
                (Err(ClientError::UntrustedServer { .. }), Some(fingerprint)) => {
                    client.trust_server(&server, &fingerprint)?;
                    client.sign_in(&server, &username, &password).await?
                }
                (Err(e @ ClientError::UntrustedServer { .. }), None) => {
                    return Err(anyhow::Error::new(e).context(
                        "run `clinic login` again with --trust FINGERPRINT once it matches, or with --ca FILE",
                    ));
                }
                (result, _) => result?,
            };
            if signed_in.offline {
                // An offline sign-in lives in this process's memory; it ends
                // now, so it would not outlast the command.
                bail!("the server at {server} cannot be reached: `clinic login` needs it");
            }
            let user = signed_in.user;
            let must_change = signed_in.must_change_password;
            done(out.value(&user, || {
                let mut line = format!("signed in as {} ({})", user.display_name, user.role);
                if must_change {
                    line.push_str(
                        "\nchoose a new password before anything else syncs: \
                         clinic password --password-stdin (current, then new, one per line)",
                    );
                }
                line
            }))
        }
        Command::Logout { discard_pending } => {
            client.sign_out(discard_pending).await?;
            done(out.value(&serde_json::json!({"signed_out": true}), || {
                "signed out; the local copy of the clinic's data was removed".into()
            }))
        }
        Command::Password { password_stdin: _ } => {
            let current = read_password()?;
            let new = read_password()
                .context("the new password goes on the second line of standard input")?;
            let answer = client.change_password(&current, &new).await?;
            done(out.value(&answer, || {
                "password changed; your other sessions were ended".into()
            }))
        }
        Command::Status => {
            #[derive(Serialize)]
            struct Status {
                identity: clinic_client::Identity,
                queue: QueueStats,
                last_synced_at: Option<Timestamp>,
                rows: Vec<(Table, u64)>,
            }
            let status = Status {
                identity: client.identity().await?,
                queue: client.queue_stats().await?,
                last_synced_at: client.last_synced_at().await?,
                rows: client.counts().await?,
            };
            done(out.value(&status, || {
                let who = status.identity.user.as_ref().map_or("nobody".into(), |u| format!("{} ({})", u.username, u.role));
                format!(
                    "user: {who}{}\nserver: {}\ncursor: {}  pending: {}  rejected: {}  last synced: {}",
                    if status.identity.signed_in { "" } else { " — signed out" },
                    status.identity.server_url.as_deref().unwrap_or("-"),
                    status.queue.cursor,
                    status.queue.pending,
                    status.queue.rejected,
                    status.last_synced_at.map_or("never".into(), |t| t.to_string())
                )
            }))
        }
        Command::Sync => {
            let report = client.sync_once().await?;
            done(out.value(&report, || {
                format!(
                    "applied {}, rejected {}, received {} rows; cursor {}; {} still pending",
                    report.applied, report.rejected, report.rows, report.cursor, report.pending
                )
            }))
        }
        Command::Watch => done(watch(client.clone()).await),
        Command::Patients { command } => patients(&writer, command).await,
        Command::Appointments { command } => appointments(&writer, command).await,
        Command::Records { command } => records(&writer, command).await,
        Command::Stock { command } => match command {
            StockCommand::List { low } => done(out.items(&if low {
                client.low_stock().await?
            } else {
                client.inventory().await?
            })),
            StockCommand::Adjust { id, delta, reason } => {
                writer
                    .write(Mutation::AdjustStock(AdjustStock { id, delta, reason }), id)
                    .await
            }
        },
        Command::Referrals { command } => match command {
            ReferralCommand::List { open } => {
                let mut rows = client.referrals().await?;
                rows.retain(|r| {
                    !open
                        || matches!(
                            r.data.status,
                            ReferralStatus::Draft | ReferralStatus::Sent | ReferralStatus::Accepted
                        )
                });
                rows.sort_by_key(|r| r.data.created_at);
                done(out.value(&rows, || {
                    rows.iter()
                        .map(describe_referral)
                        .collect::<Vec<_>>()
                        .join("\n")
                }))
            }
            ReferralCommand::Add {
                patient,
                to,
                reason,
                urgent,
            } => {
                let id = client.new_id();
                let m = CreateReferral {
                    id,
                    patient_id: patient,
                    referred_to: to,
                    reason,
                    urgency: if urgent {
                        Urgency::Urgent
                    } else {
                        Urgency::Routine
                    },
                    created_at: now(),
                };
                writer.write(Mutation::CreateReferral(m), id).await
            }
            ReferralCommand::SetStatus { id, status } => {
                let status = serde_json::from_value(serde_json::Value::String(status.clone()))
                    .with_context(|| {
                        format!("unknown referral status `{status}` (sent, accepted, completed, cancelled)")
                    })?;
                writer
                    .write(
                        Mutation::SetReferralStatus(SetReferralStatus { id, status }),
                        id,
                    )
                    .await
            }
        },
        Command::Print { command } => {
            let (pdf, what, out_file) = match command {
                PrintCommand::DaySheet { date, doctor, out } => {
                    let date = match date {
                        Some(d) => d,
                        None => client
                            .today()
                            .await?
                            .succ_opt()
                            .context("no day after today")?,
                    };
                    let doctor = match doctor {
                        Some(d) => Some(doctor_id(&client, &d).await?),
                        None => None,
                    };
                    let pdf = client.print_day_sheet(date, doctor).await?;
                    (pdf, format!("day sheet for {date}"), out)
                }
                PrintCommand::Invoice { id, out } => {
                    (client.print_invoice(id).await?, "invoice".to_owned(), out)
                }
                PrintCommand::DayReport { date, staff, out } => {
                    let date = match date {
                        Some(d) => d,
                        None => client.today().await?,
                    };
                    let staff = match staff {
                        Some(s) => Some(doctor_id(&client, &s).await?),
                        None => None,
                    };
                    let pdf = client.print_day_report(date, staff).await?;
                    (pdf, format!("end-of-day report for {date}"), out)
                }
                PrintCommand::Summary { patient, out } => {
                    let pdf = client.print_patient_summary(patient).await?;
                    // The view is queued in the mirror; send it now if the
                    // server answers (else the next sync does).
                    if deliver.is_some() && client.send_views().await.is_err() {
                        eprintln!("the server was not reached: this print is recorded at the next sync");
                    }
                    (pdf, "patient summary".to_owned(), out)
                }
            };
            write_private(&out_file, &pdf)?;
            done(out.value(
                &serde_json::json!({"file": out_file, "bytes": pdf.len()}),
                || format!("wrote the {what} to {}", out_file.display()),
            ))
        }
        Command::Pending => {
            let pending = client.pending().await?;
            done(out.value(&pending, || {
                pending
                    .iter()
                    .map(|p| {
                        format!(
                            "#{} {} {}  made {}",
                            p.mutation_id,
                            p.mutation.kind(),
                            p.mutation.target().1,
                            p.created_at
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }))
        }
        Command::Rejected { dismiss } => {
            if let Some(id) = dismiss {
                let found = client.dismiss_rejected(id).await?;
                return done(out.value(&serde_json::json!({"dismissed": found}), || {
                    if found {
                        format!("dismissed #{id}")
                    } else {
                        format!("no rejection #{id}")
                    }
                }));
            }
            let rejected = client.rejected().await?;
            done(out.value(&rejected, || {
                rejected
                    .iter()
                    .map(|r| {
                        format!(
                            "#{} {}: {:?} — {}",
                            r.mutation_id,
                            r.mutation.kind(),
                            r.rejection.code,
                            r.rejection.message
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }))
        }
    }
    }
    .await;
    client.close().await;
    outcome
}

async fn patients(w: &Writer<'_>, command: PatientCommand) -> anyhow::Result<Outcome> {
    let (client, out) = (w.client, w.out);
    match command {
        PatientCommand::Add {
            first_name,
            last_name,
            date_of_birth,
            phone,
            email,
            address,
            more,
        } => {
            let id = client.new_id();
            let m = CreatePatient {
                id,
                first_name,
                last_name,
                date_of_birth,
                phone,
                email,
                address,
                sex: more.sex.and_then(|s| s.0),
                emergency_contact: given(more.emergency_contact),
                emergency_phone: given(more.emergency_phone),
                insurer: given(more.insurer),
                insurance_number: given(more.insurance_number),
                alerts: given(more.alerts),
            };
            w.write(Mutation::CreatePatient(m), id).await
        }
        PatientCommand::List => out
            .patients(&client.patients().await?)
            .map(|()| Outcome::Done),
        PatientCommand::Search { query } => out
            .patients(&client.search_patients(&query, 50).await?)
            .map(|()| Outcome::Done),
        PatientCommand::Show { id } => {
            let chart = client
                .chart(id)
                .await?
                .with_context(|| format!("no patient {id} here"))?;
            // The read audit: this person opened the chart. Queued first, so
            // a server that cannot be reached now is told next time.
            client.report_view(Table::Patients, id).await?;
            if let Err(e) = client.send_views().await {
                tracing::info!(error = %e, "the chart view is reported at the next sync");
            }
            out.value(&chart, || {
                let mut lines = vec![describe_patient(&chart.patient)];
                lines.extend(
                    chart
                        .appointments
                        .iter()
                        .map(|a| format!("  appointment {}", describe_appointment(a))),
                );
                lines.extend(
                    chart
                        .treatment_records
                        .iter()
                        .map(|r| format!("  record {}", r.id)),
                );
                lines.extend(chart.invoices.iter().map(|r| format!("  invoice {}", r.id)));
                lines.join("\n")
            })?;
            Ok(Outcome::Done)
        }
        PatientCommand::Update { id, fields } => {
            let patch = PatientPatch {
                first_name: fields.first_name,
                last_name: fields.last_name,
                date_of_birth: fields.date_of_birth,
                phone: fields.phone.map(|p| (!p.is_empty()).then_some(p)),
                email: fields.email.map(|e| (!e.is_empty()).then_some(e)),
                address: fields.address.map(|a| (!a.is_empty()).then_some(a)),
                sex: fields.more.sex.map(|s| s.0),
                emergency_contact: clearing(fields.more.emergency_contact),
                emergency_phone: clearing(fields.more.emergency_phone),
                insurer: clearing(fields.more.insurer),
                insurance_number: clearing(fields.more.insurance_number),
                alerts: clearing(fields.more.alerts),
            };
            let base_version = version_of(client, Table::Patients, id).await?;
            w.write(
                Mutation::UpdatePatient(UpdatePatient {
                    id,
                    base_version,
                    fields: patch,
                }),
                id,
            )
            .await
        }
        PatientCommand::Delete { id } => {
            let base_version = version_of(client, Table::Patients, id).await?;
            w.write(
                Mutation::DeletePatient(DeletePatient { id, base_version }),
                id,
            )
            .await
        }
    }
}

async fn appointments(w: &Writer<'_>, command: AppointmentCommand) -> anyhow::Result<Outcome> {
    let (client, out) = (w.client, w.out);
    match command {
        AppointmentCommand::Book {
            patient,
            doctor,
            start,
            end,
            reason,
        } => {
            let id = client.new_id();
            let doctor_id = doctor_id(client, &doctor).await?;
            let m = BookAppointment {
                id,
                patient_id: patient,
                doctor_id,
                start,
                end,
                reason,
                correction: false,
            };
            w.write(Mutation::BookAppointment(m), id).await
        }
        AppointmentCommand::List { date, doctor } => {
            // A day in the clinic's time zone (today there by default).
            let date = match date {
                Some(d) => d,
                None => client.today().await?,
            };
            let doctor = match doctor {
                Some(d) => Some(doctor_id(client, &d).await?),
                None => None,
            };
            out.appointments(&client.day_schedule(date, doctor).await?)?;
            Ok(Outcome::Done)
        }
        AppointmentCommand::Reschedule {
            id,
            start,
            end,
            doctor,
        } => {
            let base_version = version_of(client, Table::Appointments, id).await?;
            let doctor_id = match doctor {
                Some(d) => Some(doctor_id(client, &d).await?),
                None => None,
            };
            let m = RescheduleAppointment {
                id,
                base_version,
                start,
                end,
                doctor_id,
                correction: false,
            };
            w.write(Mutation::RescheduleAppointment(m), id).await
        }
        AppointmentCommand::SetStatus { id, status } => {
            let m = SetAppointmentStatus {
                id,
                status: status_of(&status)?,
                // The arrival time a check-in records: now, by this
                // computer's clock, even if it is sent later.
                at: Some(client.now()),
            };
            w.write(Mutation::SetAppointmentStatus(m), id).await
        }
    }
}

async fn records(w: &Writer<'_>, command: RecordCommand) -> anyhow::Result<Outcome> {
    let client = w.client;
    match command {
        RecordCommand::Add {
            patient,
            appointment,
            notes,
            diagnosis,
        } => {
            let id = client.new_id();
            let m = AddTreatmentRecord {
                id,
                patient_id: patient,
                appointment_id: appointment,
                notes,
                diagnosis,
                procedures: vec![],
                recorded_at: now(),
            };
            w.write(Mutation::AddTreatmentRecord(m), id).await
        }
        RecordCommand::Update {
            id,
            notes,
            diagnosis,
        } => {
            let base_version = version_of(client, Table::TreatmentRecords, id).await?;
            let fields = TreatmentRecordPatch {
                notes,
                diagnosis,
                procedures: None,
            };
            w.write(
                Mutation::UpdateTreatmentRecord(UpdateTreatmentRecord {
                    id,
                    base_version,
                    fields,
                }),
                id,
            )
            .await
        }
        RecordCommand::Open { patient } => {
            let care = match client.clinical_records(patient).await {
                Err(ClientError::Server(body))
                    if body.code == clinic_shared::protocol::ErrorCode::NotInCare =>
                {
                    bail!(
                        "this patient is not in your care; to read their clinical records, \
                     clinic records break-glass {patient} --reason \"why you need them\""
                    )
                }
                other => other?,
            };
            w.out.value(&care, || care_line(&care, "open to you"))?;
            Ok(Outcome::Done)
        }
        RecordCommand::BreakGlass { patient, reason } => {
            let care = client.break_the_glass(patient, &reason).await?;
            w.out.value(&care, || {
                care_line(&care, "open to you; the reason is in the access log")
            })?;
            Ok(Outcome::Done)
        }
    }
}

/// "clinical records open to you until …" (UTC: a tool for IT people).
fn care_line(care: &clinic_client::ChartCare, what: &str) -> String {
    match care.grant_ends_at {
        Some(end) => format!("clinical records {what} until {end}"),
        None => format!("clinical records {what}"),
    }
}

/// Runs the sync loop and prints every applied batch, rejection and status
/// change as one JSON line each, until interrupted.
async fn watch(client: ClinicClient) -> anyhow::Result<()> {
    let mut events = client.subscribe();
    let mut status = client.status();
    client.start();
    let print = |v: serde_json::Value| {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{v}");
        let _ = stdout.flush();
    };
    let mut last_connection = None;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(ev) => {
                    if ev.origin == clinic_client::ChangeOrigin::Rejection {
                        for r in client.rejected().await? {
                            print(serde_json::json!({"event": "rejected", "mutation_id": r.mutation_id, "mutation": r.mutation.kind(), "rejection": r.rejection}));
                        }
                    }
                    print(serde_json::json!({"event": "changes", "origin": ev.origin, "tables": ev.tables, "rows": ev.rows, "cursor": ev.cursor}));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    print(serde_json::json!({"event": "lagged", "missed": n}));
                }
                Err(_) => break,
            },
            changed = status.changed() => {
                if changed.is_err() { break; }
                let s = status.borrow_and_update().clone();
                if last_connection.as_ref() != Some(&s.connection) {
                    last_connection = Some(s.connection.clone());
                    print(serde_json::json!({"event": "status", "status": s}));
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    client.stop().await;
    Ok(())
}
