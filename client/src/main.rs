//! `clinic`: the command-line client, for scripting, support and tests.
//! Every read is local; every write is applied locally at once and queued
//! (it works offline and prints the new id immediately); `sync` and `watch`
//! talk to the server. `--json` prints machine-readable output.

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use clinic_client::store::Row;
use clinic_client::{ClientError, Engine, EngineConfig, Store};
use clinic_shared::model::{AppointmentStatus, Table, Timestamp};
use clinic_shared::mutation::*;
use serde::Serialize;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
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
    },
    /// Sign out; unsent changes stay queued for the next sign-in.
    Logout,
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
    /// Changes not yet confirmed by the server.
    Pending,
    /// Changes the server refused, with the reason.
    Rejected {
        /// Dismiss this rejection (mutation id) after reading it.
        #[arg(long)]
        dismiss: Option<u64>,
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
    /// A day's appointments (default today), for one doctor or all.
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

    fn rows(&self, rows: &[Row]) -> anyhow::Result<()> {
        self.value(&rows, || {
            rows.iter().map(describe).collect::<Vec<_>>().join("\n")
        })
    }
}

fn describe(row: &Row) -> String {
    let d = &row.data;
    let s = |k: &str| d.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
    let flag = if row.pending { " (pending)" } else { "" };
    match row.table {
        Table::Patients => format!(
            "{}  {} {}  born {}  {}{flag}",
            row.id,
            s("first_name"),
            s("last_name"),
            s("date_of_birth"),
            s("phone")
        ),
        Table::Appointments => format!(
            "{}  {} – {}  {}  patient {}{flag}",
            row.id,
            s("start"),
            s("end"),
            s("status"),
            s("patient_id")
        ),
        Table::InventoryItems => format!(
            "{}  {}: {} {} (reorder at {}){flag}",
            row.id,
            s("name"),
            d.get("quantity").and_then(|v| v.as_i64()).unwrap_or(0),
            s("unit"),
            d.get("reorder_level").and_then(|v| v.as_i64()).unwrap_or(0)
        ),
        _ => format!("{} {}{flag}", row.table, row.id),
    }
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

/// Resolves a doctor given by id or username from the local mirror.
fn doctor_id(store: &Store, doctor: &str) -> anyhow::Result<Uuid> {
    if let Ok(id) = Uuid::parse_str(doctor) {
        return Ok(id);
    }
    store
        .list(Table::Staff)?
        .into_iter()
        .find(|r| r.data.get("username").and_then(|u| u.as_str()) == Some(doctor))
        .map(|r| r.id)
        .with_context(|| format!("no staff member `{doctor}` in the local mirror (sync first?)"))
}

fn version_of(store: &Store, table: Table, id: Uuid) -> anyhow::Result<u64> {
    Ok(store
        .get(table, id)?
        .with_context(|| format!("no {table} {id} here"))?
        .version)
}

fn status_of(s: &str) -> anyhow::Result<AppointmentStatus> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).with_context(|| {
        format!("unknown status `{s}` (checked_in, in_progress, completed, cancelled, no_show)")
    })
}

async fn write(engine: &Engine, out: &Out, mutation: Mutation, id: Uuid) -> anyhow::Result<()> {
    let receipt = engine.mutate(mutation).await?;
    #[derive(Serialize)]
    struct Written {
        id: Uuid,
        mutation_id: u64,
        status: &'static str,
    }
    out.value(
        &Written {
            id,
            mutation_id: receipt.mutation_id,
            status: "pending",
        },
        || id.to_string(),
    )
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let json = cli.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
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
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let dir = match cli.data_dir {
        Some(d) => d,
        None => clinic_client::default_data_dir().context("no home directory; pass --data-dir")?,
    };
    let store = Arc::new(Store::open(&dir)?);
    let config = EngineConfig {
        websocket: !cli.no_websocket,
        ..EngineConfig::default()
    };
    let engine = Engine::new(store.clone(), config)?;
    let out = Out { json: cli.json };
    match cli.command {
        Command::Login {
            username,
            password_stdin: _,
        } => {
            let server = match cli.server.or(store.identity()?.server_url) {
                Some(s) => s,
                None => bail!("pass --server URL the first time"),
            };
            let password = read_password()?;
            let user = engine.login(&server, &username, &password).await?;
            if engine.signed_in_offline() {
                // An offline sign-in lives in the engine's memory; this process
                // ends now, so it would not outlast the command.
                bail!("the server at {server} cannot be reached: `clinic login` needs it");
            }
            out.value(&user, || {
                format!("signed in as {} ({})", user.display_name, user.role)
            })
        }
        Command::Logout => {
            engine.logout().await?;
            out.value(&serde_json::json!({"signed_out": true}), || {
                "signed out".into()
            })
        }
        Command::Status => {
            #[derive(Serialize)]
            struct Status {
                identity: clinic_client::store::Identity,
                queue: clinic_client::store::QueueStats,
                last_synced_at: Option<Timestamp>,
                rows: Vec<(Table, u64)>,
            }
            let status = Status {
                identity: store.identity()?,
                queue: store.stats()?,
                last_synced_at: store.last_synced_at()?,
                rows: store.counts()?,
            };
            out.value(&status, || {
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
            })
        }
        Command::Sync => {
            let report = engine.sync_once().await?;
            out.value(&report, || {
                format!(
                    "applied {}, rejected {}, received {} rows; cursor {}; {} still pending",
                    report.applied, report.rejected, report.rows, report.cursor, report.pending
                )
            })
        }
        Command::Watch => watch(engine, store).await,
        Command::Patients { command } => patients(&engine, &store, &out, command).await,
        Command::Appointments { command } => appointments(&engine, &store, &out, command).await,
        Command::Records { command } => records(&engine, &store, &out, command).await,
        Command::Stock { command } => match command {
            StockCommand::List { low } => out.rows(&if low {
                store.low_stock()?
            } else {
                store.list(Table::InventoryItems)?
            }),
            StockCommand::Adjust { id, delta, reason } => {
                write(
                    &engine,
                    &out,
                    Mutation::AdjustStock(AdjustStock { id, delta, reason }),
                    id,
                )
                .await
            }
        },
        Command::Pending => {
            let pending = store.pending()?;
            out.value(&pending, || {
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
            })
        }
        Command::Rejected { dismiss } => {
            if let Some(id) = dismiss {
                let found = store.dismiss_rejected(id)?;
                return out.value(&serde_json::json!({"dismissed": found}), || {
                    if found {
                        format!("dismissed #{id}")
                    } else {
                        format!("no rejection #{id}")
                    }
                });
            }
            let rejected = store.rejected()?;
            out.value(&rejected, || {
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
            })
        }
    }
}

async fn patients(
    engine: &Engine,
    store: &Store,
    out: &Out,
    command: PatientCommand,
) -> anyhow::Result<()> {
    match command {
        PatientCommand::Add {
            first_name,
            last_name,
            date_of_birth,
            phone,
            email,
            address,
        } => {
            let id = Uuid::now_v7();
            let m = CreatePatient {
                id,
                first_name,
                last_name,
                date_of_birth,
                phone,
                email,
                address,
            };
            write(engine, out, Mutation::CreatePatient(m), id).await
        }
        PatientCommand::List => out.rows(&store.list(Table::Patients)?),
        PatientCommand::Search { query } => out.rows(&store.search_patients(&query, 50)?),
        PatientCommand::Show { id } => {
            let chart = store
                .patient_chart(id)?
                .with_context(|| format!("no patient {id} here"))?;
            out.value(&chart, || {
                let mut lines = vec![describe(&chart.patient)];
                lines.extend(
                    chart
                        .appointments
                        .iter()
                        .map(|r| format!("  appointment {}", describe(r))),
                );
                lines.extend(
                    chart
                        .treatment_records
                        .iter()
                        .map(|r| format!("  record {}", r.id)),
                );
                lines.extend(chart.invoices.iter().map(|r| format!("  invoice {}", r.id)));
                lines.join("\n")
            })
        }
        PatientCommand::Update { id, fields } => {
            let patch = PatientPatch {
                first_name: fields.first_name,
                last_name: fields.last_name,
                date_of_birth: fields.date_of_birth,
                phone: fields.phone.map(|p| (!p.is_empty()).then_some(p)),
                email: fields.email.map(|e| (!e.is_empty()).then_some(e)),
                address: fields.address.map(|a| (!a.is_empty()).then_some(a)),
            };
            let base_version = version_of(store, Table::Patients, id)?;
            write(
                engine,
                out,
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
            let base_version = version_of(store, Table::Patients, id)?;
            write(
                engine,
                out,
                Mutation::DeletePatient(DeletePatient { id, base_version }),
                id,
            )
            .await
        }
    }
}

async fn appointments(
    engine: &Engine,
    store: &Store,
    out: &Out,
    command: AppointmentCommand,
) -> anyhow::Result<()> {
    match command {
        AppointmentCommand::Book {
            patient,
            doctor,
            start,
            end,
            reason,
        } => {
            let id = Uuid::now_v7();
            let doctor_id = doctor_id(store, &doctor)?;
            let m = BookAppointment {
                id,
                patient_id: patient,
                doctor_id,
                start,
                end,
                reason,
            };
            write(engine, out, Mutation::BookAppointment(m), id).await
        }
        AppointmentCommand::List { date, doctor } => {
            let date = date.unwrap_or_else(|| chrono::Utc::now().date_naive());
            let doctor = doctor.map(|d| doctor_id(store, &d)).transpose()?;
            out.rows(&store.day_schedule(date, doctor)?)
        }
        AppointmentCommand::Reschedule {
            id,
            start,
            end,
            doctor,
        } => {
            let base_version = version_of(store, Table::Appointments, id)?;
            let doctor_id = doctor.map(|d| doctor_id(store, &d)).transpose()?;
            let m = RescheduleAppointment {
                id,
                base_version,
                start,
                end,
                doctor_id,
            };
            write(engine, out, Mutation::RescheduleAppointment(m), id).await
        }
        AppointmentCommand::SetStatus { id, status } => {
            let m = SetAppointmentStatus {
                id,
                status: status_of(&status)?,
            };
            write(engine, out, Mutation::SetAppointmentStatus(m), id).await
        }
    }
}

async fn records(
    engine: &Engine,
    store: &Store,
    out: &Out,
    command: RecordCommand,
) -> anyhow::Result<()> {
    match command {
        RecordCommand::Add {
            patient,
            appointment,
            notes,
            diagnosis,
        } => {
            let id = Uuid::now_v7();
            let m = AddTreatmentRecord {
                id,
                patient_id: patient,
                appointment_id: appointment,
                notes,
                diagnosis,
                procedures: vec![],
                recorded_at: now(),
            };
            write(engine, out, Mutation::AddTreatmentRecord(m), id).await
        }
        RecordCommand::Update {
            id,
            notes,
            diagnosis,
        } => {
            let base_version = version_of(store, Table::TreatmentRecords, id)?;
            let fields = TreatmentRecordPatch {
                notes,
                diagnosis,
                procedures: None,
            };
            write(
                engine,
                out,
                Mutation::UpdateTreatmentRecord(UpdateTreatmentRecord {
                    id,
                    base_version,
                    fields,
                }),
                id,
            )
            .await
        }
    }
}

/// Runs the engine and prints every applied batch, rejection and status
/// change as one JSON line each, until interrupted.
async fn watch(engine: Arc<Engine>, store: Arc<Store>) -> anyhow::Result<()> {
    let mut events = store.subscribe();
    let mut status = engine.status();
    let runner = tokio::spawn(engine.clone().run());
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
                    if ev.origin == clinic_client::store::ChangeOrigin::Rejection {
                        for r in store.rejected()? {
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
    engine.stop();
    let _ = runner.await;
    Ok(())
}
