//! The randomized, seeded fault-injection run: several client engines make
//! random mutations of every kind (conflicting ones on purpose: the same
//! slots, the same notes, stock over-draws) while the harness cuts, delays
//! and stalls their network links, SIGKILLs and restarts `clinic` CLI
//! processes and the server itself, and takes clients offline for long
//! stretches. At the end every client syncs and the run checks that
//!
//! - every mirror (visible and confirmed rows) equals the server's rows for
//!   that user's role, as a pull by that user returns them;
//! - every mutation a client made was applied exactly once or rejected with
//!   a reason that client recorded: none lost, none duplicated, each
//!   client's order kept (server `mutation_results` and `changes` against
//!   each client's own log and its `rejected` list);
//! - the server's change sequence has no gaps, every row's version is its
//!   last change's sequence number and its data that change's `after`;
//! - the change log's and the access log's hash chains verify
//!   (`clinic-server audit verify`);
//! - `PRAGMA integrity_check` passes on every database.
//!
//! Two modes, run one after the other: SQLite (one server, SIGKILLed and
//! restarted) and PostgreSQL (three instances on one throwaway cluster,
//! each client's proxy balancing over them; instances SIGKILLed and
//! restarted, the database restarted as after a crash). The PostgreSQL
//! run's tables are copied into a SQLite file and audited by the same
//! queries; the database itself is checked with `amcheck` and its
//! sequence head. By default the PostgreSQL mode makes 2 000 mutations with
//! 6 instance kills, a database restart and 80 cuts (`CLINIC_FAULT_*`
//! override both modes alike).
//!
//! The seed is printed first; `CLINIC_FAULT_SEED=<n>` replays the same
//! decisions (timing still varies). Sizes: `CLINIC_FAULT_SCALE=10` for the
//! long run; `CLINIC_FAULT_MUTATIONS`, `CLINIC_FAULT_SERVER_KILLS`,
//! `CLINIC_FAULT_CLIENT_KILLS`, `CLINIC_FAULT_CUTS` override single figures.
//! Sleeps in this file are injected delays and pacing of the fault harness;
//! every wait for a result is on an event or a condition.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a run that cannot proceed should panic

use clinic_client::{ClientConfig, ClientError, ClinicClient, Connection, Row, SyncConfig};
use clinic_e2e::pg::PgCluster;
use clinic_e2e::*;
use clinic_shared::model::{
    AppointmentStatus, InvoiceLine, PaymentMethod, ReferralStatus, Role, Table, Timestamp, Urgency,
};
use clinic_shared::mutation::*;
use clinic_shared::protocol::MutationOutcome;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

// ---------------------------------------------------------------- settings

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Where the server side of a run keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// One server on one SQLite file.
    Sqlite,
    /// Several server instances on one PostgreSQL database.
    Postgres,
}

/// Server instances in PostgreSQL mode.
const PG_INSTANCES: usize = 3;

/// The size of a run.
#[derive(Debug, Clone)]
struct Plan {
    seed: u64,
    mutations: u64,
    server_kills: u64,
    /// Database restarts (PostgreSQL mode).
    db_restarts: u64,
    client_kills: u64,
    cuts: u64,
    offline_stretches: u64,
    latency_bursts: u64,
    stalls: u64,
    /// Longest offline stretch.
    offline_max: Duration,
}

impl Plan {
    fn from_env(backend: Backend) -> Plan {
        let seed = env_u64("CLINIC_FAULT_SEED").unwrap_or_else(rand::random);
        let scale = env_u64("CLINIC_FAULT_SCALE").unwrap_or(1).max(1);
        // The PostgreSQL mode runs beside the SQLite one in CI: a smaller
        // share of the same fault mix.
        let (mutations, kills, client_kills, cuts, stretches, bursts, stalls, restarts) =
            match backend {
                Backend::Sqlite => (5_000, 20, 50, 200, 12, 30, 12, 0),
                Backend::Postgres => (2_000, 6, 20, 80, 6, 12, 6, 1),
            };
        Plan {
            seed,
            mutations: env_u64("CLINIC_FAULT_MUTATIONS").unwrap_or(mutations * scale),
            server_kills: env_u64("CLINIC_FAULT_SERVER_KILLS").unwrap_or(kills * scale),
            db_restarts: env_u64("CLINIC_FAULT_DB_RESTARTS").unwrap_or(restarts * scale),
            client_kills: env_u64("CLINIC_FAULT_CLIENT_KILLS").unwrap_or(client_kills * scale),
            cuts: env_u64("CLINIC_FAULT_CUTS").unwrap_or(cuts * scale),
            offline_stretches: stretches * scale,
            latency_bursts: bursts * scale,
            stalls: stalls * scale,
            offline_max: Duration::from_secs(if scale > 1 { 30 } else { 6 }),
        }
    }
}

/// Desks: in-process engines, each behind its own proxy.
const DESKS: &[&str] = &[
    "reception",
    "reception",
    "doctor",
    "doctor2",
    "assistant",
    "admin",
];
/// `clinic` CLI processes, each behind its own proxy.
const CLIS: &[&str] = &["reception", "doctor", "assistant"];

fn engine_config() -> SyncConfig {
    SyncConfig {
        heartbeat: Duration::from_secs(1),
        dead_after: Duration::from_secs(4),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(1500),
        push_retry: Duration::from_secs(1),
        request_timeout: Duration::from_secs(5),
        long_poll_secs: 5,
        ..SyncConfig::default()
    }
}

// ---------------------------------------------------------------- counters

#[derive(Default)]
struct Stats {
    made: AtomicU64,
    made_by_desks: AtomicU64,
    made_by_clis: AtomicU64,
    refused_locally: Mutex<BTreeMap<String, u64>>,
    server_kills: AtomicU64,
    db_restarts: AtomicU64,
    client_kills: AtomicU64,
    write_kills: AtomicU64,
    cuts: AtomicU64,
    offline: AtomicU64,
    latency: AtomicU64,
    stalls: AtomicU64,
    cli_errors: Mutex<BTreeMap<String, u64>>,
}

fn bump(map: &Mutex<BTreeMap<String, u64>>, key: &str) {
    *map.lock().unwrap().entry(key.to_owned()).or_default() += 1;
}

// ---------------------------------------------------------------- clients

/// What a client made: mutation id → mutation kind.
type Log = BTreeMap<u64, String>;

struct Desk {
    user: &'static str,
    _dir: tempfile::TempDir,
    client: ClinicClient,
    proxy: Proxy,
    log: Mutex<Log>,
    in_stretch: AtomicBool,
}

struct Cli {
    user: &'static str,
    dir: tempfile::TempDir,
    proxy: Proxy,
    /// The mirror, read in this process (the CLI writes it).
    reader: ClinicClient,
    watch: tokio::sync::Mutex<Option<tokio::process::Child>>,
    log: Mutex<Log>,
    /// Writes killed before they printed their mutation id.
    unknown_writes: AtomicU64,
    in_stretch: AtomicBool,
}

impl Cli {
    fn command(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(bin("clinic"));
        c.arg("--data-dir")
            .arg(self.dir.path())
            .arg("--json")
            .env("RUST_LOG", "error")
            .kill_on_drop(true);
        c
    }

    async fn start_watch(&self) {
        let child = self
            .command()
            .arg("watch")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn clinic watch");
        *self.watch.lock().await = Some(child);
    }

    /// SIGKILL of the syncing process.
    async fn kill_watch(&self) -> bool {
        let mut guard = self.watch.lock().await;
        match guard.take() {
            Some(mut child) => {
                child.kill().await.expect("SIGKILL clinic watch");
                true
            }
            None => false,
        }
    }

    async fn run(&self, args: &[String]) -> std::process::Output {
        self.command()
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("run clinic")
    }
}

/// A client's rows as `(table, id) → (version, deleted, data)`.
type Mirror = BTreeMap<(Table, Uuid), MirrorRow>;
/// One row of a [`Mirror`]: version, deleted, data.
type MirrorRow = (u64, bool, Option<Value>);

async fn mirror_of(client: &ClinicClient, visible: bool) -> Mirror {
    client
        .dump(visible)
        .await
        .unwrap()
        .into_iter()
        .map(|(t, id, v, d, data)| ((t, id), (v, d, if d { None } else { data })))
        .collect()
}

async fn server_mirror(api: &Api) -> Mirror {
    let (rows, _) = api.pull_all(0).await;
    rows.into_iter()
        .map(|r| ((r.table, r.id), (r.version, r.deleted, r.data)))
        .collect()
}

// ---------------------------------------------------------------- mutations

const WORDS: &[&str] = &[
    "alpha", "brisk", "cedar", "delta", "ember", "fjord", "gale", "harbor", "iris", "jade", "kelp",
    "lumen", "maple", "north", "opal", "pine", "quill", "river", "stone", "tide",
];
const DIAGNOSES: &[&str] = &[
    "J06.9 acute upper respiratory infection",
    "M54.5 low back pain",
    "I10 essential hypertension",
    "E11.9 type 2 diabetes",
    "S93.4 ankle sprain",
];

fn words(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| WORDS[rng.gen_range(0..WORDS.len())])
        .collect::<Vec<_>>()
        .join(" ")
}

fn name(rng: &mut StdRng) -> String {
    let w = WORDS[rng.gen_range(0..WORDS.len())];
    let mut c = w.chars();
    let first = c.next().unwrap().to_ascii_uppercase();
    format!("{first}{}", c.as_str())
}

/// Picks a row from the hot set: the oldest few (demo rows every client
/// fights over) or the newest few (what was just made).
/// One to three random invoice lines (`min` 0: a draft may have none).
fn invoice_lines(rng: &mut StdRng, min: usize) -> Vec<InvoiceLine> {
    (0..rng.gen_range(min..=3))
        .map(|_| InvoiceLine {
            description: words(rng, 2),
            quantity: rng.gen_range(1..=3),
            unit_price_cents: rng.gen_range(0..20_000),
        })
        .collect()
}

fn hot<'a>(rng: &mut StdRng, rows: &'a [Row]) -> Option<&'a Row> {
    if rows.is_empty() {
        return None;
    }
    let k = rows.len().min(10);
    let i = if rng.gen_bool(0.5) {
        rng.gen_range(0..k)
    } else {
        rows.len() - 1 - rng.gen_range(0..k)
    };
    rows.get(i)
}

/// A contested slot on one of three fixed days: 30 or 60 minutes, starting
/// on the half hour, so bookings collide and overlap.
fn slot(rng: &mut StdRng) -> (Timestamp, Timestamp) {
    let day = rng.gen_range(0..3);
    let base: Timestamp = "2031-03-03T08:00:00Z".parse().unwrap();
    let start = base.unix() + day * 86_400 + rng.gen_range(0..20) * 1800;
    let len = if rng.gen_bool(0.5) { 1800 } else { 3600 };
    (
        Timestamp::from_unix(start).unwrap(),
        Timestamp::from_unix(start + len).unwrap(),
    )
}

fn now() -> Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Timestamp::from_unix(i64::try_from(secs).unwrap()).unwrap()
}

fn status_str(v: &Value) -> &str {
    v.get("status").and_then(Value::as_str).unwrap_or("")
}

fn appointment_status(s: &str) -> Option<AppointmentStatus> {
    serde_json::from_value(Value::String(s.to_owned())).ok()
}

fn referral_status(s: &str) -> Option<ReferralStatus> {
    serde_json::from_value(Value::String(s.to_owned())).ok()
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    CreateStaff,
    SetStaffRole,
    SetStaffActive,
    CreatePatient,
    UpdatePatient,
    DeletePatient,
    Book,
    Reschedule,
    SetStatus,
    AddRecord,
    UpdateRecord,
    CreateInvoice,
    UpdateLines,
    Issue,
    VoidInvoice,
    RecordPayment,
    Refund,
    CreateItem,
    UpdateItem,
    AdjustStock,
    CreateReferral,
    ReferralStatus,
}

fn kinds(role: Role, cli: bool) -> &'static [(Kind, u32)] {
    use Kind::*;
    match (role, cli) {
        (Role::Reception, false) => &[
            (CreatePatient, 10),
            (UpdatePatient, 14),
            (DeletePatient, 3),
            (Book, 16),
            (Reschedule, 8),
            (SetStatus, 8),
            (CreateInvoice, 8),
            (UpdateLines, 4),
            (Issue, 4),
            (RecordPayment, 8),
            (VoidInvoice, 3),
            (Refund, 3),
            (ReferralStatus, 3),
        ],
        (Role::Reception, true) => &[
            (CreatePatient, 10),
            (UpdatePatient, 14),
            (DeletePatient, 3),
            (Book, 16),
            (Reschedule, 8),
            (SetStatus, 8),
        ],
        (Role::Doctor, false) => &[
            (CreatePatient, 4),
            (UpdatePatient, 8),
            (Book, 10),
            (Reschedule, 5),
            (SetStatus, 6),
            (AddRecord, 10),
            (UpdateRecord, 14),
            (CreateItem, 2),
            (UpdateItem, 4),
            (AdjustStock, 10),
            (CreateReferral, 6),
            (ReferralStatus, 4),
        ],
        (Role::Doctor, true) => &[
            (CreatePatient, 4),
            (UpdatePatient, 8),
            (Book, 10),
            (Reschedule, 5),
            (SetStatus, 6),
            (AddRecord, 10),
            (UpdateRecord, 14),
            (AdjustStock, 10),
        ],
        (Role::Assistant, false) => &[
            (SetStatus, 20),
            (CreateItem, 4),
            (UpdateItem, 10),
            (AdjustStock, 30),
        ],
        (Role::Assistant, true) => &[(SetStatus, 10), (AdjustStock, 30)],
        (Role::Admin, _) => &[
            (CreateStaff, 1),
            (SetStaffRole, 2),
            (SetStaffActive, 2),
            (CreatePatient, 4),
            (UpdatePatient, 6),
            (DeletePatient, 2),
            (Book, 6),
            (Reschedule, 4),
            (SetStatus, 4),
            (CreateInvoice, 4),
            (UpdateLines, 2),
            (Issue, 2),
            (VoidInvoice, 2),
            (RecordPayment, 4),
            (Refund, 2),
            (CreateItem, 2),
            (UpdateItem, 4),
            (AdjustStock, 8),
            (ReferralStatus, 3),
        ],
    }
}

/// A client's visible rows of the table a mutation targets, read just
/// before it is made.
type Rows = BTreeMap<Table, Vec<Row>>;

struct Gen<'a> {
    rng: &'a mut StdRng,
    rows: &'a Rows,
    role: Role,
    doctors: &'a [Uuid],
    staff_counter: &'a AtomicU64,
}

impl Kind {
    /// The one table a mutation of this kind picks its target from.
    fn reads(self) -> Option<Table> {
        use Kind::*;
        match self {
            CreateStaff | CreatePatient | CreateItem => None,
            SetStaffRole | SetStaffActive => Some(Table::Staff),
            UpdatePatient | DeletePatient | Book | AddRecord | CreateInvoice | CreateReferral => {
                Some(Table::Patients)
            }
            Reschedule | SetStatus => Some(Table::Appointments),
            UpdateRecord => Some(Table::TreatmentRecords),
            UpdateLines | Issue | VoidInvoice | RecordPayment | Refund => Some(Table::Invoices),
            UpdateItem | AdjustStock => Some(Table::InventoryItems),
            ReferralStatus => Some(Table::Referrals),
        }
    }
}

/// A random kind of mutation this role may make.
fn pick_kind(rng: &mut StdRng, role: Role, cli: bool) -> Kind {
    let table = kinds(role, cli);
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut pick = rng.gen_range(0..total);
    let mut kind = table[0].0;
    for (k, w) in table {
        if pick < *w {
            kind = *k;
            break;
        }
        pick -= w;
    }
    kind
}

/// The rows a mutation of `kind` picks its target from, read now.
async fn rows_for(client: &ClinicClient, kind: Kind) -> Rows {
    let mut rows = Rows::new();
    if let Some(table) = kind.reads() {
        rows.insert(table, client.rows(table).await.unwrap_or_default());
    }
    rows
}

impl Gen<'_> {
    fn of_kind(&mut self, kind: Kind) -> Option<Mutation> {
        let (all, role, doctors, staff_counter) =
            (self.rows, self.role, self.doctors, self.staff_counter);
        let rows = |table| all.get(&table).cloned().unwrap_or_default();
        let rng = &mut *self.rng;
        Some(match kind {
            Kind::CreateStaff => {
                let n = staff_counter.fetch_add(1, Ordering::Relaxed);
                let role = [Role::Doctor, Role::Assistant, Role::Reception][rng.gen_range(0..3)];
                Mutation::CreateStaff(CreateStaff {
                    id: Uuid::now_v7(),
                    username: format!("fz{n}"),
                    display_name: format!("Fault {}", name(rng)),
                    role,
                    password: "fault-run-password".into(),
                })
            }
            Kind::SetStaffRole | Kind::SetStaffActive => {
                let staff: Vec<Row> = rows(Table::Staff)
                    .into_iter()
                    .filter(|r| {
                        r.data["username"]
                            .as_str()
                            .is_some_and(|u| u.starts_with("fz"))
                    })
                    .collect();
                let row = hot(rng, &staff)?;
                if matches!(kind, Kind::SetStaffRole) {
                    let role =
                        [Role::Doctor, Role::Assistant, Role::Reception][rng.gen_range(0..3)];
                    Mutation::SetStaffRole(SetStaffRole { id: row.id, role })
                } else {
                    Mutation::SetStaffActive(SetStaffActive {
                        id: row.id,
                        active: rng.gen_bool(0.5),
                    })
                }
            }
            Kind::CreatePatient => {
                let phone = match rng.gen_range(0..10) {
                    0 => Some("not a phone".to_owned()), // refused locally
                    1..=5 => Some(format!(
                        "+1 555 {:03} {:04}",
                        rng.gen_range(0..1000),
                        rng.gen_range(0..10_000)
                    )),
                    _ => None,
                };
                Mutation::CreatePatient(CreatePatient {
                    id: Uuid::now_v7(),
                    first_name: name(rng),
                    last_name: format!("{} Fault", name(rng)),
                    date_of_birth: format!(
                        "{}-{:02}-{:02}",
                        rng.gen_range(1940..2020),
                        rng.gen_range(1..=12),
                        rng.gen_range(1..=28)
                    )
                    .parse()
                    .unwrap(),
                    phone,
                    email: None,
                    address: None,
                    sex: None,
                    emergency_contact: None,
                    emergency_phone: None,
                    insurer: None,
                    insurance_number: None,
                    alerts: None,
                })
            }
            Kind::UpdatePatient => {
                let rows = rows(Table::Patients);
                let row = hot(rng, &rows)?;
                let mut fields = PatientPatch::default();
                match rng.gen_range(0..4) {
                    0 => {
                        fields.phone =
                            Some(Some(format!("+44 20 7946 {:04}", rng.gen_range(0..10_000))))
                    }
                    1 => {
                        fields.address = Some(Some(format!(
                            "{} {} Road",
                            rng.gen_range(1..200),
                            name(rng)
                        )))
                    }
                    2 => fields.address = Some(None),
                    _ => fields.first_name = Some(name(rng)),
                }
                Mutation::UpdatePatient(UpdatePatient {
                    id: row.id,
                    base_version: row.version,
                    fields,
                })
            }
            Kind::DeletePatient => {
                let rows = rows(Table::Patients);
                // Mostly patients made during the run; now and then a hot demo one.
                let row = if rng.gen_bool(0.85) {
                    let recent: Vec<Row> = rows
                        .iter()
                        .filter(|r| {
                            r.data["last_name"]
                                .as_str()
                                .is_some_and(|n| n.ends_with("Fault"))
                        })
                        .cloned()
                        .collect();
                    let i = recent
                        .len()
                        .checked_sub(1 + rng.gen_range(0..recent.len().clamp(1, 10)))?;
                    recent.get(i)?.clone()
                } else {
                    hot(rng, &rows)?.clone()
                };
                Mutation::DeletePatient(DeletePatient {
                    id: row.id,
                    base_version: row.version,
                })
            }
            Kind::Book => {
                let rows = rows(Table::Patients);
                let patient = hot(rng, &rows)?;
                let (start, end) = slot(rng);
                Mutation::BookAppointment(BookAppointment {
                    id: Uuid::now_v7(),
                    patient_id: patient.id,
                    doctor_id: doctors[rng.gen_range(0..doctors.len())],
                    start,
                    end,
                    reason: rng.gen_bool(0.5).then(|| words(rng, 3)),
                    correction: false,
                })
            }
            Kind::Reschedule => {
                let rows: Vec<Row> = rows(Table::Appointments)
                    .into_iter()
                    .filter(|r| status_str(&r.data) == "scheduled")
                    .collect();
                let row = hot(rng, &rows)?;
                let (start, end) = slot(rng);
                Mutation::RescheduleAppointment(RescheduleAppointment {
                    id: row.id,
                    base_version: row.version,
                    start,
                    end,
                    doctor_id: None,
                    correction: false,
                })
            }
            Kind::SetStatus => {
                let rows = rows(Table::Appointments);
                let row = hot(rng, &rows)?;
                let current = appointment_status(status_str(&row.data))?;
                use AppointmentStatus::*;
                let all = [CheckedIn, InProgress, Completed, Cancelled, NoShow];
                let allowed: Vec<AppointmentStatus> = all
                    .into_iter()
                    .filter(|s| current.can_become(*s))
                    .filter(|s| role != Role::Assistant || matches!(s, CheckedIn | InProgress))
                    .collect();
                let status = if allowed.is_empty() || rng.gen_bool(0.1) {
                    all[rng.gen_range(0..all.len())]
                } else {
                    allowed[rng.gen_range(0..allowed.len())]
                };
                Mutation::SetAppointmentStatus(SetAppointmentStatus {
                    id: row.id,
                    status,
                    at: None,
                })
            }
            Kind::AddRecord => {
                let rows = rows(Table::Patients);
                let patient = hot(rng, &rows)?;
                Mutation::AddTreatmentRecord(AddTreatmentRecord {
                    id: Uuid::now_v7(),
                    patient_id: patient.id,
                    appointment_id: None,
                    notes: words(rng, 8),
                    diagnosis: DIAGNOSES[rng.gen_range(0..DIAGNOSES.len())].into(),
                    procedures: vec![],
                    recorded_at: now(),
                })
            }
            Kind::UpdateRecord => {
                let rows = rows(Table::TreatmentRecords);
                let row = hot(rng, &rows)?;
                let mut fields = TreatmentRecordPatch::default();
                if rng.gen_bool(0.7) {
                    fields.notes = Some(words(rng, 6));
                } else {
                    fields.diagnosis = Some(DIAGNOSES[rng.gen_range(0..DIAGNOSES.len())].into());
                }
                Mutation::UpdateTreatmentRecord(UpdateTreatmentRecord {
                    id: row.id,
                    base_version: row.version,
                    fields,
                })
            }
            Kind::CreateInvoice => {
                let rows = rows(Table::Patients);
                let patient = hot(rng, &rows)?;
                // A third start as drafts (billed from a visit, issued later).
                let draft = rng.gen_bool(0.3);
                Mutation::CreateInvoice(CreateInvoice {
                    id: Uuid::now_v7(),
                    patient_id: patient.id,
                    appointment_id: None,
                    lines: invoice_lines(rng, if draft { 0 } else { 1 }),
                    issued_at: now(),
                    draft,
                })
            }
            Kind::UpdateLines | Kind::Issue => {
                let drafts: Vec<Row> = rows(Table::Invoices)
                    .into_iter()
                    .filter(|r| status_str(&r.data) == "draft")
                    .collect();
                let row = hot(rng, &drafts)?;
                // Two desks on one draft: the version each saw decides
                // whether the other's lines are a conflict.
                if matches!(kind, Kind::UpdateLines) {
                    Mutation::UpdateInvoiceLines(UpdateInvoiceLines {
                        id: row.id,
                        base_version: row.version,
                        lines: invoice_lines(rng, 0),
                    })
                } else {
                    Mutation::IssueInvoice(IssueInvoice {
                        id: row.id,
                        base_version: row.version,
                        issued_at: now(),
                    })
                }
            }
            Kind::Refund => {
                let due: Vec<Row> = rows(Table::Invoices)
                    .into_iter()
                    .filter(|r| {
                        status_str(&r.data) == "void"
                            && r.data["paid_cents"].as_i64().unwrap_or(0)
                                > r.data["refunded_cents"].as_i64().unwrap_or(0)
                    })
                    .collect();
                let row = hot(rng, &due)?;
                let left = row.data["paid_cents"].as_i64().unwrap_or(0)
                    - row.data["refunded_cents"].as_i64().unwrap_or(0);
                let amount = match rng.gen_range(0..4) {
                    0 => left,
                    1 => left + 100, // refused: more than was paid
                    _ => rng.gen_range(1..=left.max(1)),
                };
                Mutation::RefundPayment(RefundPayment {
                    id: Uuid::now_v7(),
                    invoice_id: row.id,
                    amount_cents: amount,
                    method: [PaymentMethod::Cash, PaymentMethod::Transfer][rng.gen_range(0..2)],
                    reason: "paid back at the desk".into(),
                    refunded_at: now(),
                })
            }
            Kind::VoidInvoice | Kind::RecordPayment => {
                let void = matches!(kind, Kind::VoidInvoice);
                let rows: Vec<Row> = rows(Table::Invoices)
                    .into_iter()
                    // Paid invoices are voided too (their money is then refunded).
                    .filter(|r| {
                        let s = status_str(&r.data);
                        s == "open" || (void && s == "paid")
                    })
                    .collect();
                let row = hot(rng, &rows)?;
                if void {
                    Mutation::VoidInvoice(VoidInvoice {
                        id: row.id,
                        reason: "billed in error".into(),
                    })
                } else {
                    let total = row.data["total_cents"].as_i64().unwrap_or(0);
                    let paid = row.data["paid_cents"].as_i64().unwrap_or(0);
                    let outstanding = (total - paid).max(1);
                    let amount = match rng.gen_range(0..4) {
                        0 => outstanding,
                        1 => outstanding + 100, // refused: more than is owed
                        _ => rng.gen_range(1..=outstanding),
                    };
                    Mutation::RecordPayment(RecordPayment {
                        id: Uuid::now_v7(),
                        invoice_id: row.id,
                        amount_cents: amount,
                        method: [
                            PaymentMethod::Cash,
                            PaymentMethod::Card,
                            PaymentMethod::Insurance,
                        ][rng.gen_range(0..3)],
                        paid_at: now(),
                    })
                }
            }
            Kind::CreateItem => Mutation::CreateInventoryItem(CreateInventoryItem {
                id: Uuid::now_v7(),
                name: format!("{} supply", name(rng)),
                unit: ["box", "ml", "pcs"][rng.gen_range(0..3)].into(),
                quantity: rng.gen_range(0..50),
                reorder_level: rng.gen_range(0..10),
            }),
            Kind::UpdateItem => {
                let rows = rows(Table::InventoryItems);
                let row = hot(rng, &rows)?;
                let mut fields = InventoryItemPatch::default();
                if rng.gen_bool(0.6) {
                    fields.reorder_level = Some(rng.gen_range(0..20));
                } else {
                    fields.name = Some(format!("{} supply", name(rng)));
                }
                Mutation::UpdateInventoryItem(UpdateInventoryItem {
                    id: row.id,
                    base_version: row.version,
                    fields,
                })
            }
            Kind::AdjustStock => {
                let rows = rows(Table::InventoryItems);
                let row = hot(rng, &rows)?;
                let quantity = row.data["quantity"].as_i64().unwrap_or(0);
                // Takes most of what the mirror shows, or more: over-draws.
                let delta = match rng.gen_range(0..10) {
                    0..=3 => rng.gen_range(1..=40),
                    4..=7 => -rng.gen_range(1..=quantity.clamp(1, 40)),
                    _ => -(quantity + rng.gen_range(0..3)).max(1),
                };
                Mutation::AdjustStock(AdjustStock {
                    id: row.id,
                    delta,
                    reason: rng.gen_bool(0.3).then(|| words(rng, 2)),
                })
            }
            Kind::CreateReferral => {
                let rows = rows(Table::Patients);
                let patient = hot(rng, &rows)?;
                Mutation::CreateReferral(CreateReferral {
                    id: Uuid::now_v7(),
                    patient_id: patient.id,
                    referred_to: format!("{} clinic", name(rng)),
                    reason: words(rng, 5),
                    urgency: if rng.gen_bool(0.2) {
                        Urgency::Urgent
                    } else {
                        Urgency::Routine
                    },
                    created_at: now(),
                })
            }
            Kind::ReferralStatus => {
                let rows = rows(Table::Referrals);
                let row = hot(rng, &rows)?;
                use ReferralStatus::*;
                let all = [Sent, Accepted, Completed, Cancelled];
                let current = referral_status(status_str(&row.data))?;
                let allowed: Vec<ReferralStatus> =
                    all.into_iter().filter(|s| current.can_become(*s)).collect();
                let status = if allowed.is_empty() || rng.gen_bool(0.1) {
                    all[rng.gen_range(0..all.len())]
                } else {
                    allowed[rng.gen_range(0..allowed.len())]
                };
                Mutation::SetReferralStatus(SetReferralStatus { id: row.id, status })
            }
        })
    }
}

/// The `clinic` command line for a mutation (the CLI picks its own new ids
/// and base versions from its mirror), or `None` if the CLI has no command
/// for it.
fn cli_args(m: &Mutation) -> Option<Vec<String>> {
    let s = |v: &str| v.to_owned();
    Some(match m {
        Mutation::CreatePatient(a) => {
            let mut v = vec![
                s("patients"),
                s("add"),
                s("--first-name"),
                a.first_name.clone(),
                s("--last-name"),
                a.last_name.clone(),
                s("--date-of-birth"),
                a.date_of_birth.to_string(),
            ];
            if let Some(p) = &a.phone {
                v.extend([s("--phone"), p.clone()]);
            }
            v
        }
        Mutation::UpdatePatient(a) => {
            let mut v = vec![s("patients"), s("update"), a.id.to_string()];
            if let Some(p) = &a.fields.phone {
                v.extend([s("--phone"), p.clone().unwrap_or_default()]);
            }
            if let Some(p) = &a.fields.address {
                v.extend([s("--address"), p.clone().unwrap_or_default()]);
            }
            if let Some(p) = &a.fields.first_name {
                v.extend([s("--first-name"), p.clone()]);
            }
            v
        }
        Mutation::DeletePatient(a) => vec![s("patients"), s("delete"), a.id.to_string()],
        Mutation::BookAppointment(a) => vec![
            s("appointments"),
            s("book"),
            s("--patient"),
            a.patient_id.to_string(),
            s("--doctor"),
            a.doctor_id.to_string(),
            s("--start"),
            a.start.to_string(),
            s("--end"),
            a.end.to_string(),
        ],
        Mutation::RescheduleAppointment(a) => vec![
            s("appointments"),
            s("reschedule"),
            a.id.to_string(),
            s("--start"),
            a.start.to_string(),
            s("--end"),
            a.end.to_string(),
        ],
        Mutation::SetAppointmentStatus(a) => vec![
            s("appointments"),
            s("set-status"),
            a.id.to_string(),
            a.status.as_str().to_owned(),
        ],
        Mutation::AddTreatmentRecord(a) => vec![
            s("records"),
            s("add"),
            s("--patient"),
            a.patient_id.to_string(),
            s("--notes"),
            a.notes.clone(),
            s("--diagnosis"),
            a.diagnosis.clone(),
        ],
        Mutation::UpdateTreatmentRecord(a) => {
            let mut v = vec![s("records"), s("update"), a.id.to_string()];
            if let Some(n) = &a.fields.notes {
                v.extend([s("--notes"), n.clone()]);
            }
            if let Some(d) = &a.fields.diagnosis {
                v.extend([s("--diagnosis"), d.clone()]);
            }
            v
        }
        Mutation::AdjustStock(a) => vec![
            s("stock"),
            s("adjust"),
            a.id.to_string(),
            s("--delta"),
            a.delta.to_string(),
        ],
        _ => return None,
    })
}

// ---------------------------------------------------------------- the run

struct Shared {
    plan: Plan,
    stats: Stats,
    doctors: Vec<Uuid>,
    staff_counter: AtomicU64,
    stop_making: AtomicBool,
    /// Claims whose attempt has not finished (a claim may still be given
    /// back when the change is refused locally).
    in_flight: AtomicU64,
}

impl Shared {
    /// Claims one mutation of the budget; false when every unit of it is
    /// made or being attempted. Every successful claim is followed by
    /// `finish` (after `unclaim` if the attempt made nothing).
    fn claim(&self) -> bool {
        if self.stop_making.load(Ordering::SeqCst) {
            return false;
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let n = self.stats.made.fetch_add(1, Ordering::SeqCst);
        if n >= self.plan.mutations {
            self.stats.made.fetch_sub(1, Ordering::SeqCst);
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    fn finish(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// True once the whole budget is made and no attempt is outstanding: an
    /// attempt refused at the very end gives its unit back to be made by
    /// someone else, so the run makes exactly the planned number.
    fn budget_spent(&self) -> bool {
        if self.stop_making.load(Ordering::SeqCst) {
            return true;
        }
        let done = self.in_flight.load(Ordering::SeqCst) == 0
            && self.stats.made.load(Ordering::SeqCst) >= self.plan.mutations;
        if done {
            self.stop_making.store(true, Ordering::SeqCst);
        }
        done
    }

    fn unclaim(&self) {
        self.stats.made.fetch_sub(1, Ordering::SeqCst);
    }

    fn progress(&self) -> f64 {
        self.stats.made.load(Ordering::SeqCst) as f64 / self.plan.mutations.max(1) as f64
    }
}

async fn desk_loop(shared: Arc<Shared>, desk: Arc<Desk>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let role = desk
        .client
        .identity()
        .await
        .unwrap()
        .user
        .expect("signed in")
        .role;
    loop {
        if shared.stop_making.load(Ordering::SeqCst) {
            return;
        }
        let kind = pick_kind(&mut rng, role, false);
        let rows = rows_for(&desk.client, kind).await;
        let mutation = {
            let mut generator = Gen {
                rng: &mut rng,
                rows: &rows,
                role,
                doctors: &shared.doctors,
                staff_counter: &shared.staff_counter,
            };
            generator.of_kind(kind)
        };
        let Some(mutation) = mutation else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if !shared.claim() {
            if shared.budget_spent() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let kind = mutation.kind().to_owned();
        match desk.client.mutate(mutation).await {
            Ok(receipt) => {
                shared.stats.made_by_desks.fetch_add(1, Ordering::Relaxed);
                let previous = desk.log.lock().unwrap().insert(receipt.mutation_id, kind);
                assert!(
                    previous.is_none(),
                    "mutation id {} given twice",
                    receipt.mutation_id
                );
            }
            Err(ClientError::Rejected(r)) => {
                shared.unclaim();
                bump(&shared.stats.refused_locally, &format!("{:?}", r.code));
            }
            Err(e) => panic!("desk {} could not make a change: {e}", desk.user),
        }
        shared.finish();
        // Pacing: a person clicks, then thinks.
        let pause = rng.gen_range(0..30);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

async fn cli_loop(shared: Arc<Shared>, cli: Arc<Cli>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let role = cli
        .reader
        .identity()
        .await
        .unwrap()
        .user
        .expect("signed in")
        .role;
    loop {
        if shared.stop_making.load(Ordering::SeqCst) {
            return;
        }
        let kind = pick_kind(&mut rng, role, true);
        let rows = rows_for(&cli.reader, kind).await;
        let mutation = {
            let mut generator = Gen {
                rng: &mut rng,
                rows: &rows,
                role,
                doctors: &shared.doctors,
                staff_counter: &shared.staff_counter,
            };
            generator.of_kind(kind)
        };
        let Some(mut args) = mutation.as_ref().and_then(cli_args) else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        // Most writes stay local for `clinic watch` to send; the others are
        // sent by the writing process itself before it exits, racing the
        // watcher on the same mirror and client id.
        if rng.gen_bool(0.75) {
            args.insert(0, "--no-sync".to_owned());
        } else {
            args.splice(0..0, ["--wait".to_owned(), "1".to_owned()]);
        }
        let mutation = mutation.unwrap();
        if !shared.claim() {
            if shared.budget_spent() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let kind = mutation.kind().to_owned();
        if rng.gen_bool(0.04) {
            // SIGKILL a writing process at a random moment: its change is
            // either fully queued or not made at all.
            let mut child = cli
                .command()
                .args(&args)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn clinic");
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..60))).await;
            let _ = child.start_kill();
            let status = child.wait().await.expect("wait clinic");
            shared.stats.write_kills.fetch_add(1, Ordering::Relaxed);
            if status.success() {
                // It finished before the signal: a change was made, id unknown.
                shared.stats.made_by_clis.fetch_add(1, Ordering::Relaxed);
            } else {
                shared.unclaim();
            }
            cli.unknown_writes.fetch_add(1, Ordering::Relaxed);
            shared.finish();
            continue;
        }
        let out = cli.run(&args).await;
        // Exit status 2: made locally, then refused by the server.
        if out.status.success() || out.status.code() == Some(2) {
            let v: Value = serde_json::from_slice(&out.stdout).expect("clinic prints JSON");
            let id = v["mutation_id"].as_u64().expect("mutation_id");
            shared.stats.made_by_clis.fetch_add(1, Ordering::Relaxed);
            let previous = cli.log.lock().unwrap().insert(id, kind);
            assert!(previous.is_none(), "mutation id {id} given twice");
        } else {
            shared.unclaim();
            let err: Value = serde_json::from_slice(&out.stderr).unwrap_or_else(
                |_| serde_json::json!({"code": String::from_utf8_lossy(&out.stderr).to_string()}),
            );
            match err["code"].as_str() {
                Some("rejected") => bump(
                    &shared.stats.refused_locally,
                    &format!(
                        "{:?}",
                        serde_json::from_value::<clinic_shared::protocol::RejectCode>(
                            err["rejection"]["code"].clone()
                        )
                        .unwrap()
                    ),
                ),
                other => {
                    // e.g. the row left the mirror between reading and writing.
                    bump(&shared.stats.cli_errors, other.unwrap_or("?"));
                }
            }
        }
        shared.finish();
    }
}

/// Injects faults in step with the mutation progress, so the quotas are
/// met when the budget is spent.
async fn fault_loop(
    shared: Arc<Shared>,
    servers: Arc<Mutex<Servers>>,
    desks: Vec<Arc<Desk>>,
    clis: Vec<Arc<Cli>>,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let plan = shared.plan.clone();
    let s = &shared.stats;
    let due = |target: u64, progress: f64| (progress.min(1.0) * target as f64).ceil() as u64;
    let proxies = desks.len() + clis.len();
    let mut stretches = Vec::new();
    loop {
        let done_making = shared.stop_making.load(Ordering::SeqCst);
        let p = if done_making { 1.0 } else { shared.progress() };
        let mut idle = true;
        if s.server_kills.load(Ordering::Relaxed) < due(plan.server_kills, p) {
            idle = false;
            let servers = servers.clone();
            let (which, down_for) = (rng.r#gen::<usize>(), rng.gen_range(0..800));
            tokio::task::spawn_blocking(move || {
                servers.lock().unwrap().kill_and_restart(which, down_for)
            })
            .await
            .unwrap();
            s.server_kills.fetch_add(1, Ordering::Relaxed);
        }
        if s.db_restarts.load(Ordering::Relaxed) < due(plan.db_restarts, (p - 0.3).max(0.0) / 0.4) {
            idle = false;
            let servers = servers.clone();
            tokio::task::spawn_blocking(move || servers.lock().unwrap().restart_database())
                .await
                .unwrap();
            s.db_restarts.fetch_add(1, Ordering::Relaxed);
        }
        if !clis.is_empty() && s.client_kills.load(Ordering::Relaxed) < due(plan.client_kills, p) {
            idle = false;
            let cli = &clis[rng.gen_range(0..clis.len())];
            if cli.kill_watch().await {
                s.client_kills.fetch_add(1, Ordering::Relaxed);
            }
            // Back after a short while, or at once.
            if rng.gen_bool(0.5) {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..500))).await;
            }
            cli.start_watch().await;
        }
        while s.cuts.load(Ordering::Relaxed) < due(plan.cuts, p) {
            idle = false;
            let i = rng.gen_range(0..proxies);
            proxy_of(&desks, &clis, i).cut();
            s.cuts.fetch_add(1, Ordering::Relaxed);
        }
        if s.offline.load(Ordering::Relaxed) < due(plan.offline_stretches, p) {
            let i = rng.gen_range(0..proxies);
            let flag = stretch_flag(&desks, &clis, i);
            if !flag.swap(true, Ordering::SeqCst) {
                idle = false;
                s.offline.fetch_add(1, Ordering::Relaxed);
                let length = Duration::from_millis(
                    rng.gen_range(500..=u64::try_from(plan.offline_max.as_millis()).unwrap()),
                );
                let (desks, clis) = (desks.clone(), clis.clone());
                stretches.push(tokio::spawn(async move {
                    proxy_of(&desks, &clis, i).set_down(true);
                    tokio::time::sleep(length).await;
                    proxy_of(&desks, &clis, i).set_down(false);
                    stretch_flag(&desks, &clis, i).store(false, Ordering::SeqCst);
                }));
            }
        }
        if s.latency.load(Ordering::Relaxed) < due(plan.latency_bursts, p) {
            idle = false;
            s.latency.fetch_add(1, Ordering::Relaxed);
            let i = rng.gen_range(0..proxies);
            let latency = Duration::from_millis(rng.gen_range(20..400));
            let length = Duration::from_millis(rng.gen_range(500..4000));
            let (desks, clis) = (desks.clone(), clis.clone());
            stretches.push(tokio::spawn(async move {
                proxy_of(&desks, &clis, i).set_latency(latency);
                tokio::time::sleep(length).await;
                proxy_of(&desks, &clis, i).set_latency(Duration::ZERO);
            }));
        }
        if s.stalls.load(Ordering::Relaxed) < due(plan.stalls, p) {
            idle = false;
            s.stalls.fetch_add(1, Ordering::Relaxed);
            let i = rng.gen_range(0..proxies);
            let length = Duration::from_millis(rng.gen_range(500..6000));
            let (desks, clis) = (desks.clone(), clis.clone());
            stretches.push(tokio::spawn(async move {
                proxy_of(&desks, &clis, i).set_stalled(true);
                tokio::time::sleep(length).await;
                proxy_of(&desks, &clis, i).set_stalled(false);
            }));
        }
        let all_done = s.server_kills.load(Ordering::Relaxed) >= plan.server_kills
            && s.db_restarts.load(Ordering::Relaxed) >= plan.db_restarts
            && s.client_kills.load(Ordering::Relaxed) >= plan.client_kills
            && s.cuts.load(Ordering::Relaxed) >= plan.cuts
            && s.offline.load(Ordering::Relaxed) >= plan.offline_stretches
            && s.latency.load(Ordering::Relaxed) >= plan.latency_bursts
            && s.stalls.load(Ordering::Relaxed) >= plan.stalls;
        if done_making && all_done {
            break;
        }
        if idle {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(20..120))).await;
        }
    }
    for t in stretches {
        t.await.unwrap();
    }
}

fn proxy_of<'a>(desks: &'a [Arc<Desk>], clis: &'a [Arc<Cli>], i: usize) -> &'a Proxy {
    if i < desks.len() {
        &desks[i].proxy
    } else {
        &clis[i - desks.len()].proxy
    }
}

fn stretch_flag<'a>(desks: &'a [Arc<Desk>], clis: &'a [Arc<Cli>], i: usize) -> &'a AtomicBool {
    if i < desks.len() {
        &desks[i].in_stretch
    } else {
        &clis[i - desks.len()].in_stretch
    }
}

/// What a desk's condition looks at.
struct DeskNow {
    pending: u64,
    cursor: u64,
    synced_once: bool,
}

/// Waits (on client events and status changes) until `cond` holds.
async fn wait_desk(desk: &Desk, what: &str, limit: Duration, cond: impl Fn(&DeskNow) -> bool) {
    let mut events = desk.client.subscribe();
    let mut status = desk.client.status();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let state = desk.client.sync_state().await.unwrap();
        let now = DeskNow {
            pending: desk.client.queue_stats().await.unwrap().pending,
            cursor: state.cursor,
            synced_once: state.synced_once,
        };
        if cond(&now) {
            return;
        }
        tokio::select! {
            _ = events.recv() => {}
            _ = status.changed() => {}
            () = tokio::time::sleep_until(deadline) => panic!(
                "desk {} timed out waiting for {what}; status {:?}",
                desk.user,
                desk.client.status_now()
            ),
        }
    }
}

fn server_head(db: &rusqlite::Connection) -> u64 {
    db.query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap() as u64
}

/// The server side of a run: one SQLite server, or instances on one
/// PostgreSQL database.
struct Servers {
    instances: Vec<Server>,
    pg: Option<(PgCluster, String)>,
    /// The PostgreSQL tables copied for the audit.
    audit_copy: Option<tempfile::TempDir>,
}

impl Servers {
    fn start(backend: Backend) -> Servers {
        match backend {
            Backend::Sqlite => Servers {
                instances: vec![Server::start()],
                pg: None,
                audit_copy: None,
            },
            Backend::Postgres => {
                let cluster = PgCluster::start();
                let url = cluster.create_database();
                // The first seeds the demo clinic; the others find it there.
                let instances = (0..PG_INSTANCES)
                    .map(|_| Server::start_pg(&url, &[]))
                    .collect();
                Servers {
                    instances,
                    pg: Some((cluster, url)),
                    audit_copy: None,
                }
            }
        }
    }

    fn first(&self) -> &Server {
        &self.instances[0]
    }

    fn addrs(&self) -> Vec<std::net::SocketAddr> {
        self.instances.iter().map(Server::addr).collect()
    }

    /// SIGKILLs one instance (any, picked by `which`); it comes back on
    /// the same port after `down_ms` (its clients move to the others
    /// meanwhile when there are others).
    fn kill_and_restart(&mut self, which: usize, down_ms: u64) {
        let n = self.instances.len();
        let server = &mut self.instances[which % n];
        server.kill();
        if n > 1 {
            std::thread::sleep(Duration::from_millis(down_ms));
        }
        server.start_again();
    }

    /// Restarts PostgreSQL as after a crash (`immediate`: no checkpoint,
    /// recovery from the WAL), while every instance keeps running.
    fn restart_database(&mut self) {
        if let Some((cluster, _)) = &mut self.pg {
            cluster.restart("immediate");
        }
    }

    fn head(&self) -> u64 {
        match &self.pg {
            None => server_head(&open_server_db(&self.first().db_path())),
            Some((cluster, url)) => cluster.with_client(url, |c| {
                c.query_one("SELECT head FROM sequence_head", &[])
                    .unwrap()
                    .get::<_, i64>(0) as u64
            }),
        }
    }

    /// A SQLite connection holding the server's `rows`, `changes`,
    /// `clients` and `mutation_results`: the file itself, or a copy of the
    /// PostgreSQL tables (every column the audit reads, as text).
    fn audit_db(&mut self) -> rusqlite::Connection {
        let Some((cluster, url)) = &self.pg else {
            return open_server_db(&self.first().db_path());
        };
        type Dump = (
            Vec<(String, String, i64, bool, String)>,
            Vec<(
                i64,
                String,
                String,
                String,
                Option<String>,
                Option<i64>,
                String,
                String,
            )>,
            Vec<(String, String, i64)>,
            Vec<(String, i64, String)>,
        );
        let dump: Dump = cluster.with_client(url, |c| {
            let rows = c
                .query("SELECT tbl, id::text, version, deleted, data::text FROM rows", &[])
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
                .collect();
            let changes = c
                .query(
                    "SELECT seq, tbl, row_id::text, action, client_id::text, mutation_id, mutation, after::text FROM changes",
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| {
                    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7))
                })
                .collect();
            let clients = c
                .query("SELECT client_id::text, user_id::text, last_mutation_id FROM clients", &[])
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            let results = c
                .query("SELECT client_id::text, mutation_id, outcome::text FROM mutation_results", &[])
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            (rows, changes, clients, results)
        });
        let dir = tempfile::tempdir().unwrap();
        let db = rusqlite::Connection::open(dir.path().join("audit.db")).unwrap();
        db.execute_batch(
            "CREATE TABLE rows (tbl TEXT, id TEXT, version INTEGER, deleted INTEGER, data TEXT, PRIMARY KEY (tbl, id));
             CREATE TABLE changes (seq INTEGER PRIMARY KEY, tbl TEXT, row_id TEXT, action TEXT, client_id TEXT, mutation_id INTEGER, mutation TEXT, after TEXT);
             CREATE TABLE clients (client_id TEXT PRIMARY KEY, user_id TEXT, last_mutation_id INTEGER);
             CREATE TABLE mutation_results (client_id TEXT, mutation_id INTEGER, outcome TEXT, PRIMARY KEY (client_id, mutation_id));
             BEGIN;",
        )
        .unwrap();
        for r in &dump.0 {
            db.execute(
                "INSERT INTO rows VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![r.0, r.1, r.2, r.3, r.4],
            )
            .unwrap();
        }
        for c in &dump.1 {
            db.execute(
                "INSERT INTO changes VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                rusqlite::params![c.0, c.1, c.2, c.3, c.4, c.5, c.6, c.7],
            )
            .unwrap();
        }
        for c in &dump.2 {
            db.execute(
                "INSERT INTO clients VALUES (?1, ?2, ?3)",
                rusqlite::params![c.0, c.1, c.2],
            )
            .unwrap();
        }
        for r in &dump.3 {
            db.execute(
                "INSERT INTO mutation_results VALUES (?1, ?2, ?3)",
                rusqlite::params![r.0, r.1, r.2],
            )
            .unwrap();
        }
        db.execute_batch("COMMIT").unwrap();
        self.audit_copy = Some(dir);
        db
    }

    /// The database's own soundness: SQLite's `integrity_check`, or
    /// PostgreSQL's `amcheck` over every index plus the sequence head
    /// agreeing with the change log. `None` when sound.
    fn database_check(&self, db: &rusqlite::Connection) -> Option<String> {
        match &self.pg {
            None => {
                let integrity: String = db
                    .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                    .unwrap();
                (integrity != "ok").then(|| format!("server database integrity_check: {integrity}"))
            }
            Some((cluster, url)) => cluster.with_client(url, |c| {
                c.batch_execute("CREATE EXTENSION IF NOT EXISTS amcheck").unwrap();
                let indexes: Vec<String> = c
                    .query(
                        "SELECT i.relname::text FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                         JOIN pg_namespace n ON n.oid = i.relnamespace JOIN pg_am a ON a.oid = i.relam
                         WHERE n.nspname = 'public' AND a.amname = 'btree'",
                        &[],
                    )
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                for index in &indexes {
                    if let Err(e) = c.execute("SELECT bt_index_check($1::text::regclass, true)", &[index]) {
                        return Some(format!("amcheck of index {index}: {e}"));
                    }
                }
                let r = c
                    .query_one(
                        "SELECT (SELECT head FROM sequence_head), COALESCE(MAX(seq), 0) FROM changes",
                        &[],
                    )
                    .unwrap();
                let (head, max): (i64, i64) = (r.get(0), r.get(1));
                (head != max).then(|| format!("sequence head {head} but the last change is {max}"))
            }),
        }
    }
}

fn open_server_db(path: &Path) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(path).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db
}

/// One client as the checks see it.
struct Audit<'a> {
    name: String,
    user: &'static str,
    client_id: Uuid,
    client: &'a ClinicClient,
    log: Log,
    /// Highest mutation id the client's store handed out.
    assigned: u64,
    /// Writes whose id the harness did not see (killed processes).
    unknown_writes: u64,
}

fn expected_writes(kind: &str) -> usize {
    // A payment or refund writes its row and its invoice's sums.
    if kind == "record_payment" || kind == "refund_payment" {
        2
    } else {
        1
    }
}

/// The invariants; returns every divergence found.
async fn audit(
    servers: &mut Servers,
    clients: &[Audit<'_>],
    rejections: &mut BTreeMap<String, u64>,
    applied_total: &mut u64,
) -> Vec<String> {
    let mut div = Vec::new();
    let db = servers.audit_db();

    // 1. The change sequence: 1..=head, no gaps, no duplicates.
    let (count, min, max): (i64, Option<i64>, Option<i64>) = db
        .query_row(
            "SELECT COUNT(*), MIN(seq), MAX(seq) FROM changes",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    if min != Some(1) || max != Some(count) {
        div.push(format!(
            "change sequence has gaps: {count} changes, seq {min:?}..={max:?}"
        ));
    }
    // 2. Every row's version is its last change, with that change's data.
    let bad_versions: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM rows r WHERE r.version IS NOT
               (SELECT MAX(seq) FROM changes c WHERE c.tbl = r.tbl AND c.row_id = r.id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    if bad_versions != 0 {
        div.push(format!(
            "{bad_versions} rows whose version is not their last change"
        ));
    }
    let bad_data: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM rows r JOIN changes c ON c.seq = r.version
             WHERE c.tbl <> r.tbl OR c.row_id <> r.id OR json(c.after) <> json(r.data)
                OR (c.action = 'delete') <> (r.deleted <> 0)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    if bad_data != 0 {
        div.push(format!(
            "{bad_data} rows whose data is not their last change's"
        ));
    }
    let orphans: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM (SELECT DISTINCT tbl, row_id FROM changes) c
             WHERE NOT EXISTS (SELECT 1 FROM rows r WHERE r.tbl = c.tbl AND r.id = c.row_id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    if orphans != 0 {
        div.push(format!(
            "{orphans} changed rows missing from the rows table"
        ));
    }
    // The money: every invoice's paid and refunded sums are its payments'
    // (each applied once, whatever was retried), never more than billed
    // or than was paid; a draft has no payments.
    let bad_money: Vec<String> = db
        .prepare(
            "WITH pay AS (
               SELECT json_extract(data, '$.invoice_id') AS inv,
                      SUM(CASE WHEN COALESCE(json_extract(data, '$.refund'), 0) = 0
                               THEN json_extract(data, '$.amount_cents') ELSE 0 END) AS paid,
                      SUM(CASE WHEN COALESCE(json_extract(data, '$.refund'), 0) <> 0
                               THEN json_extract(data, '$.amount_cents') ELSE 0 END) AS refunded
               FROM rows WHERE tbl = 'payments' AND deleted = 0 GROUP BY inv)
             SELECT i.id || ': ' || i.data FROM rows i LEFT JOIN pay ON pay.inv = i.id
             WHERE i.tbl = 'invoices' AND i.deleted = 0 AND (
               json_extract(i.data, '$.paid_cents') <> COALESCE(pay.paid, 0)
               OR COALESCE(json_extract(i.data, '$.refunded_cents'), 0) <> COALESCE(pay.refunded, 0)
               OR json_extract(i.data, '$.paid_cents') > json_extract(i.data, '$.total_cents')
               OR COALESCE(json_extract(i.data, '$.refunded_cents'), 0) > json_extract(i.data, '$.paid_cents')
               OR (json_extract(i.data, '$.status') = 'draft' AND COALESCE(pay.paid, 0) > 0)
               OR (json_extract(i.data, '$.status') = 'paid'
                   AND json_extract(i.data, '$.paid_cents') <> json_extract(i.data, '$.total_cents')))",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for b in bad_money {
        div.push(format!("invoice whose money does not add up: {b}"));
    }
    if let Some(broken) = servers.database_check(&db) {
        div.push(broken);
    }
    // The change log's and the access log's hash chains, as the admin
    // would check them (on PostgreSQL: written by several instances).
    let verify = servers.first().admin(&["audit", "verify"], None);
    if !verify.status.success() {
        div.push(format!(
            "audit verify: {}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        ));
    }
    let ours: BTreeSet<String> = clients.iter().map(|c| c.client_id.to_string()).collect();
    let foreign: Vec<String> = db
        .prepare("SELECT DISTINCT client_id FROM changes WHERE client_id IS NOT NULL")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for f in foreign.iter().filter(|f| !ours.contains(*f)) {
        div.push(format!("changes from an unknown client {f}"));
    }

    // 3. Per client: exactly once, in order, rejections recorded.
    for c in clients {
        let cid = c.client_id.to_string();
        let results: Vec<(i64, String)> = db
            .prepare("SELECT mutation_id, outcome FROM mutation_results WHERE client_id = ?1 ORDER BY mutation_id")
            .unwrap()
            .query_map([&cid], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let processed: Vec<u64> = results.iter().map(|(m, _)| *m as u64).collect();
        let expected: Vec<u64> = (1..=c.assigned).collect();
        if processed != expected {
            let missing: Vec<u64> = expected
                .iter()
                .filter(|m| !processed.contains(m))
                .copied()
                .collect();
            let extra: Vec<u64> = processed
                .iter()
                .filter(|m| !expected.contains(m))
                .copied()
                .collect();
            div.push(format!(
                "{}: server processed {} mutations, client made {} (missing {:?}, extra {:?})",
                c.name,
                processed.len(),
                c.assigned,
                &missing[..missing.len().min(10)],
                &extra[..extra.len().min(10)]
            ));
        }
        let unlogged = (1..=c.assigned).filter(|m| !c.log.contains_key(m)).count() as u64;
        if unlogged > c.unknown_writes || c.log.keys().any(|m| *m > c.assigned) {
            div.push(format!(
                "{}: the client's log ({} entries) does not match its store's ids 1..={} ({} writes unseen)",
                c.name,
                c.log.len(),
                c.assigned,
                c.unknown_writes
            ));
        }
        let last: Option<i64> = db
            .query_row(
                "SELECT last_mutation_id FROM clients WHERE client_id = ?1",
                [&cid],
                |r| r.get(0),
            )
            .ok();
        if c.assigned > 0 && last != Some(c.assigned as i64) {
            div.push(format!(
                "{}: server's last_mutation_id {last:?}, client made {}",
                c.name, c.assigned
            ));
        }
        let changes: Vec<(i64, i64, String)> = db
            .prepare(
                "SELECT seq, mutation_id, mutation FROM changes WHERE client_id = ?1 ORDER BY seq",
            )
            .unwrap()
            .query_map([&cid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        if changes.windows(2).any(|w| w[1].1 < w[0].1) {
            div.push(format!(
                "{}: changes applied out of the client's order",
                c.name
            ));
        }
        let mut by_mutation: BTreeMap<u64, Vec<(u64, String)>> = BTreeMap::new();
        for (seq, mid, kind) in changes {
            by_mutation
                .entry(mid as u64)
                .or_default()
                .push((seq as u64, kind));
        }
        let client_rejected: BTreeMap<u64, clinic_shared::protocol::RejectCode> = c
            .client
            .rejected()
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.mutation_id, r.rejection.code))
            .collect();
        let mut server_rejected = BTreeSet::new();
        for (mid, outcome) in &results {
            let mid = *mid as u64;
            let outcome: MutationOutcome = serde_json::from_str(outcome).unwrap();
            let kind = c.log.get(&mid);
            let writes = by_mutation.remove(&mid).unwrap_or_default();
            match outcome {
                MutationOutcome::Applied { seq } => {
                    *applied_total += 1;
                    let seqs: Vec<u64> = writes.iter().map(|(s, _)| *s).collect();
                    let contiguous = seqs.windows(2).all(|w| w[1] == w[0] + 1);
                    let want = kind.map_or(writes.len().max(1), |k| expected_writes(k));
                    if seqs.is_empty()
                        || seqs.last() != Some(&seq)
                        || !contiguous
                        || seqs.len() != want
                    {
                        div.push(format!(
                            "{}: mutation {mid} applied at {seq} but its changes are at {seqs:?} (expected {want})",
                            c.name
                        ));
                    }
                    if let Some(k) = kind
                        && writes.iter().any(|(_, w)| w != k)
                    {
                        div.push(format!(
                            "{}: mutation {mid} was {k} but the server applied {writes:?}",
                            c.name
                        ));
                    }
                    if client_rejected.contains_key(&mid) {
                        div.push(format!(
                            "{}: mutation {mid} applied but the client shows it rejected",
                            c.name
                        ));
                    }
                }
                MutationOutcome::Rejected { rejection } => {
                    *rejections
                        .entry(format!("{:?}", rejection.code))
                        .or_default() += 1;
                    server_rejected.insert(mid);
                    if !writes.is_empty() {
                        div.push(format!(
                            "{}: rejected mutation {mid} has changes {writes:?}",
                            c.name
                        ));
                    }
                    match client_rejected.get(&mid) {
                        Some(code) if *code == rejection.code => {}
                        other => div.push(format!(
                            "{}: mutation {mid} rejected ({:?}) but the client recorded {other:?}",
                            c.name, rejection.code
                        )),
                    }
                }
                MutationOutcome::Retry { error } => {
                    div.push(format!(
                        "{}: mutation {mid} stored as retry: {error:?}",
                        c.name
                    ));
                }
            }
        }
        for (mid, writes) in by_mutation {
            div.push(format!(
                "{}: changes {writes:?} for mutation {mid} with no result",
                c.name
            ));
        }
        for mid in client_rejected
            .keys()
            .filter(|m| !server_rejected.contains(m))
        {
            div.push(format!(
                "{}: client shows {mid} rejected; the server did not reject it",
                c.name
            ));
        }

        // 4. The mirror equals the server's rows for this user.
        let pending = c.client.queue_stats().await.unwrap().pending;
        if pending != 0 {
            div.push(format!("{}: {pending} mutations still pending", c.name));
        }
        if let Err(e) = c.client.integrity_check().await {
            div.push(format!("{}: integrity_check: {e}", c.name));
        }
        let api = Api::login(servers.first(), c.user).await;
        let theirs = server_mirror(&api).await;
        for (label, mine) in [
            ("visible", mirror_of(c.client, true).await),
            ("confirmed", mirror_of(c.client, false).await),
        ] {
            if mine != theirs {
                let keys: BTreeSet<_> = mine.keys().chain(theirs.keys()).collect();
                let differing: Vec<String> = keys
                    .into_iter()
                    .filter(|k| !same_row_for(api.user.role, k.0, mine.get(*k), theirs.get(*k)))
                    .take(5)
                    .map(|k| format!("{k:?}: mine {:?} server {:?}", mine.get(k), theirs.get(k)))
                    .collect();
                if !differing.is_empty() {
                    div.push(format!(
                        "{}: {label} rows ({}) differ from the server's ({}): {differing:?}",
                        c.name,
                        mine.len(),
                        theirs.len()
                    ));
                }
            }
        }
    }
    div
}

/// Whether a desk's row is the server's row as this desk may hold it: the
/// same, or, for a doctor, the same with the clinical fields withheld. A
/// row a doctor received before its patient came into their care stays
/// without its text until the chart asks the server for it
/// (`clinic_shared::care`; docs/PROTOCOL.md §11.3); the server's row is
/// read now, with the care of now. Holding text the server would not send
/// now is never accepted.
fn same_row_for(
    role: Role,
    table: Table,
    mine: Option<&MirrorRow>,
    theirs: Option<&MirrorRow>,
) -> bool {
    if mine == theirs {
        return true;
    }
    let (Some((v, d, Some(data))), Some((tv, td, Some(their_data)))) = (mine, theirs) else {
        return false;
    };
    if !clinic_shared::care::applies(role) || (v, d) != (tv, td) {
        return false;
    }
    let mut withheld = their_data.clone();
    clinic_shared::care::withhold(table, &mut withheld);
    *data == withheld
}

/// The two modes share the machine's two cores: one at a time.
static ONE_RUN_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn randomized_faults_converge_with_every_change_applied_exactly_once() {
    let _one = ONE_RUN_AT_A_TIME.lock().await;
    fault_run(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn randomized_faults_on_three_postgres_instances_converge_with_every_change_applied_exactly_once()
 {
    let _one = ONE_RUN_AT_A_TIME.lock().await;
    fault_run(Backend::Postgres).await;
}

async fn fault_run(backend: Backend) {
    let plan = Plan::from_env(backend);
    eprintln!(
        "fault run ({backend:?}): seed {} (replay with CLINIC_FAULT_SEED={}); plan {plan:?}",
        plan.seed, plan.seed
    );
    let started = Instant::now();
    let mut seeds = StdRng::seed_from_u64(plan.seed);
    let servers = tokio::task::spawn_blocking(move || Servers::start(backend))
        .await
        .unwrap();
    let admin = Api::login(servers.first(), "admin").await;
    let doctors = vec![
        staff_id(&admin, "doctor").await,
        staff_id(&admin, "doctor2").await,
    ];

    // Clients, each behind its own proxy.
    let mut desks = Vec::new();
    for user in DESKS {
        let proxy = Proxy::start_balanced(servers.addrs()).await;
        let dir = tempfile::tempdir().unwrap();
        let client = ClinicClient::open(ClientConfig::new(dir.path()).with_sync(engine_config()))
            .await
            .unwrap();
        client.sign_in(&proxy.url(), user, "demo").await.unwrap();
        let desk = Arc::new(Desk {
            user,
            _dir: dir,
            client,
            proxy,
            log: Mutex::default(),
            in_stretch: AtomicBool::new(false),
        });
        desks.push(desk);
    }
    for desk in &desks {
        desk.client.start();
    }
    let mut clis = Vec::new();
    for user in CLIS {
        let proxy = Proxy::start_balanced(servers.addrs()).await;
        let dir = tempfile::tempdir().unwrap();
        let login = run_with_stdin(
            std::process::Command::new(bin("clinic"))
                .arg("--data-dir")
                .arg(dir.path())
                .args([
                    "--json",
                    "--server",
                    &proxy.url(),
                    "login",
                    "--username",
                    user,
                    "--password-stdin",
                ]),
            Some("demo\n"),
        );
        assert!(
            login.status.success(),
            "{}",
            String::from_utf8_lossy(&login.stderr)
        );
        let reader = ClinicClient::open(ClientConfig::new(dir.path()))
            .await
            .unwrap();
        let cli = Arc::new(Cli {
            user,
            dir,
            proxy,
            reader,
            watch: tokio::sync::Mutex::new(None),
            log: Mutex::default(),
            unknown_writes: AtomicU64::new(0),
            in_stretch: AtomicBool::new(false),
        });
        let sync = cli.run(&["sync".to_owned()]).await;
        assert!(
            sync.status.success(),
            "{}",
            String::from_utf8_lossy(&sync.stderr)
        );
        cli.start_watch().await;
        clis.push(cli);
    }
    for desk in &desks {
        wait_desk(desk, "the first sync", Duration::from_secs(60), |d| {
            d.synced_once
        })
        .await;
    }
    let setup = started.elapsed();

    let shared = Arc::new(Shared {
        plan: plan.clone(),
        stats: Stats::default(),
        doctors,
        staff_counter: AtomicU64::new(0),
        stop_making: AtomicBool::new(false),
        in_flight: AtomicU64::new(0),
    });
    let servers = Arc::new(Mutex::new(servers));
    let mut makers = Vec::new();
    for desk in &desks {
        makers.push(tokio::spawn(desk_loop(
            shared.clone(),
            desk.clone(),
            seeds.r#gen(),
        )));
    }
    for cli in &clis {
        makers.push(tokio::spawn(cli_loop(
            shared.clone(),
            cli.clone(),
            seeds.r#gen(),
        )));
    }
    let faults = tokio::spawn(fault_loop(
        shared.clone(),
        servers.clone(),
        desks.clone(),
        clis.clone(),
        seeds.r#gen(),
    ));
    for m in makers {
        m.await.unwrap();
    }
    let making = started.elapsed() - setup;
    faults.await.unwrap();
    let faulting = started.elapsed() - setup;

    // Heal everything and let every client sync.
    for p in desks
        .iter()
        .map(|d| &d.proxy)
        .chain(clis.iter().map(|c| &c.proxy))
    {
        p.set_down(false);
        p.set_stalled(false);
        p.set_latency(Duration::ZERO);
    }
    let mut servers = Arc::try_unwrap(servers).ok().unwrap().into_inner().unwrap();
    for cli in &clis {
        cli.kill_watch().await;
    }
    let sync_cli = |cli: Arc<Cli>| async move {
        for attempt in 0.. {
            let out = cli.run(&["sync".to_owned()]).await;
            if out.status.success() {
                let report: Value = serde_json::from_slice(&out.stdout).unwrap();
                if report["pending"] == 0 {
                    return;
                }
            }
            assert!(
                attempt < 30,
                "cli {} does not converge: {}",
                cli.user,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    for cli in &clis {
        sync_cli(cli.clone()).await;
    }
    for desk in &desks {
        wait_desk(desk, "an empty outbox", Duration::from_secs(120), |d| {
            d.pending == 0
        })
        .await;
    }
    let head = servers.head();
    for desk in &desks {
        wait_desk(desk, "the final head", Duration::from_secs(120), |d| {
            d.cursor >= head
        })
        .await;
    }
    for cli in &clis {
        sync_cli(cli.clone()).await;
        assert!(cli.reader.sync_state().await.unwrap().cursor >= head);
    }
    let converging = started.elapsed() - setup - faulting;
    let mut live = 0;
    for desk in &desks {
        if desk.client.status_now().connection == Connection::Live {
            live += 1;
        }
        desk.client.stop().await;
    }

    // The checks.
    let mut audits = Vec::new();
    for (i, desk) in desks.iter().enumerate() {
        audits.push(Audit {
            name: format!("desk{i}({})", desk.user),
            user: desk.user,
            client_id: desk.client.identity().await.unwrap().client_id,
            client: &desk.client,
            assigned: desk.client.sync_state().await.unwrap().assigned,
            log: desk.log.lock().unwrap().clone(),
            unknown_writes: 0,
        });
    }
    // The CLI databases are checked through a new connection, as the next
    // `clinic` process would open them. The test's long-lived reader
    // connection, which watched other processes write, reports "fts5:
    // checksum mismatch" from `PRAGMA integrity_check` on databases that a
    // fresh connection finds intact (seen in these runs; the databases are
    // only ever written by the CLI processes).
    let mut cli_clients: Vec<ClinicClient> = Vec::new();
    for cli in &clis {
        cli_clients.push(
            ClinicClient::open(ClientConfig::new(cli.dir.path()))
                .await
                .unwrap(),
        );
    }
    for (i, (cli, client)) in clis.iter().zip(&cli_clients).enumerate() {
        let assigned = client.sync_state().await.unwrap().assigned;
        audits.push(Audit {
            name: format!("cli{i}({})", cli.user),
            user: cli.user,
            client_id: client.identity().await.unwrap().client_id,
            client,
            log: cli.log.lock().unwrap().clone(),
            assigned,
            unknown_writes: cli.unknown_writes.load(Ordering::Relaxed),
        });
    }
    let mut rejections = BTreeMap::new();
    let mut applied = 0;
    let divergences = audit(&mut servers, &audits, &mut rejections, &mut applied).await;
    let s = &shared.stats;
    let made: u64 = audits.iter().map(|a| a.assigned).sum();
    eprintln!(
        "FAULT RUN backend={backend:?} seed={} clients={} ({} engines, {} cli) mutations={} (engines {}, cli {}) \
         applied={} rejected={:?} refused_locally={:?} cli_errors={:?} \
         faults: server_kills={} db_restarts={} client_kills={} write_kills={} cuts={} offline_stretches={} \
         latency_bursts={} stalls={} changes={} live_at_end={}/{} \
         time: setup={:.1}s making={:.1}s faults={:.1}s converge={:.1}s total={:.1}s divergences={}",
        plan.seed,
        desks.len() + clis.len(),
        desks.len(),
        clis.len(),
        made,
        s.made_by_desks.load(Ordering::Relaxed),
        s.made_by_clis.load(Ordering::Relaxed),
        applied,
        rejections,
        s.refused_locally.lock().unwrap(),
        s.cli_errors.lock().unwrap(),
        s.server_kills.load(Ordering::Relaxed),
        s.db_restarts.load(Ordering::Relaxed),
        s.client_kills.load(Ordering::Relaxed),
        s.write_kills.load(Ordering::Relaxed),
        s.cuts.load(Ordering::Relaxed),
        s.offline.load(Ordering::Relaxed),
        s.latency.load(Ordering::Relaxed),
        s.stalls.load(Ordering::Relaxed),
        head,
        live,
        desks.len(),
        setup.as_secs_f64(),
        making.as_secs_f64(),
        faulting.as_secs_f64(),
        converging.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        divergences.len(),
    );
    for d in &divergences {
        eprintln!("DIVERGENCE: {d}");
    }
    assert!(
        divergences.is_empty(),
        "{} divergences (seed {}): {divergences:#?}",
        divergences.len(),
        plan.seed
    );
    assert!(
        made >= plan.mutations,
        "made {made} of {} mutations",
        plan.mutations
    );
    assert!(s.server_kills.load(Ordering::Relaxed) >= plan.server_kills);
    assert!(s.db_restarts.load(Ordering::Relaxed) >= plan.db_restarts);
    assert!(s.client_kills.load(Ordering::Relaxed) >= plan.client_kills);
    assert!(s.cuts.load(Ordering::Relaxed) >= plan.cuts);
}
