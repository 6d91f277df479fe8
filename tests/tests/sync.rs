//! Sync scenarios across processes: the real server binary, real client
//! clients (in this process, each with its own SQLite file) and the real
//! `clinic` CLI (separate processes), over real sockets, all over TLS with the clinic CA from `clinic-server tls init`.

#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic

use clinic_client::{
    ChangeOrigin, ClientConfig, ClinicClient, Connection, RejectedEntry, Row, SyncConfig,
};
use clinic_e2e::*;
use clinic_shared::model::Table;
use clinic_shared::mutation::*;
use clinic_shared::protocol::{HistoryResponse, RejectCode};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A desk: one client with its own local database.
struct Desk {
    _dir: tempfile::TempDir,
    client: ClinicClient,
}

/// What a desk shows at one moment, read through the client's facade, so
/// that conditions can be written as plain expressions.
struct Snap {
    rows: BTreeMap<(Table, Uuid), Row>,
    pending: u64,
    rejected: Vec<RejectedEntry>,
    cursor: u64,
    synced_once: bool,
    role: Option<clinic_shared::model::Role>,
    connection: Connection,
}

impl Snap {
    fn connection(&self) -> Connection {
        self.connection.clone()
    }

    fn has(&self, table: Table, id: Uuid) -> bool {
        self.rows.contains_key(&(table, id))
    }

    fn pending(&self) -> u64 {
        self.pending
    }

    fn data(&self, table: Table, id: Uuid) -> Value {
        self.rows[&(table, id)].data.clone()
    }

    fn list(&self, table: Table) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|((t, _), _)| *t == table)
            .map(|(_, r)| r)
            .collect()
    }
}

fn fast_config() -> SyncConfig {
    SyncConfig {
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(800),
        push_retry: Duration::from_secs(2),
        heartbeat: Duration::from_secs(2),
        dead_after: Duration::from_secs(8),
        ..SyncConfig::default()
    }
}

impl Desk {
    async fn new(url: &str, username: &str) -> Desk {
        Self::with_config(url, username, fast_config()).await
    }

    async fn with_config(url: &str, username: &str, config: SyncConfig) -> Desk {
        let dir = tempfile::tempdir().unwrap();
        // The server speaks TLS with its own clinic CA, which IT hands out.
        let ca = write_trusted_cas(&dir.path().join("clinic-ca.pem"));
        let client = ClinicClient::open(
            ClientConfig::new(dir.path())
                .with_sync(config)
                .with_ca_files(vec![ca]),
        )
        .await
        .unwrap();
        client.sign_in(url, username, "demo").await.unwrap();
        Desk { _dir: dir, client }
    }

    fn start(&mut self) {
        self.client.start();
    }

    async fn stop(&mut self) {
        self.client.stop().await;
    }

    async fn snap(&self) -> Snap {
        let mut rows = BTreeMap::new();
        for table in Table::ALL {
            for r in self.client.rows(table).await.unwrap() {
                rows.insert((table, r.id), r);
            }
        }
        let state = self.client.sync_state().await.unwrap();
        Snap {
            rows,
            pending: self.client.queue_stats().await.unwrap().pending,
            rejected: self.client.rejected().await.unwrap(),
            cursor: state.cursor,
            synced_once: state.synced_once,
            role: self.client.identity().await.unwrap().user.map(|u| u.role),
            connection: self.client.status_now().connection,
        }
    }

    /// Waits (on client events and status changes, never by sleeping) until
    /// `cond` holds for what the desk shows.
    async fn wait_for(&self, what: &str, cond: impl Fn(&Snap) -> bool) {
        let mut events = self.client.subscribe();
        let mut status = self.client.status();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if cond(&self.snap().await) {
                return;
            }
            tokio::select! {
                _ = events.recv() => {}
                _ = status.changed() => {}
                () = tokio::time::sleep_until(deadline) => panic!("timed out waiting for {what}; status {:?}", self.client.status_now()),
            }
        }
    }

    async fn has(&self, table: Table, id: Uuid) -> bool {
        self.client.row(table, id).await.unwrap().is_some()
    }

    async fn pending(&self) -> u64 {
        self.client.queue_stats().await.unwrap().pending
    }

    async fn data(&self, table: Table, id: Uuid) -> Value {
        self.client.row(table, id).await.unwrap().unwrap().data
    }

    async fn get(&self, table: Table, id: Uuid) -> Row {
        self.client.row(table, id).await.unwrap().unwrap()
    }
}

fn new_patient(first: &str) -> CreatePatient {
    CreatePatient {
        id: Uuid::now_v7(),
        first_name: first.into(),
        last_name: "Desk".into(),
        date_of_birth: "1975-06-15".parse().unwrap(),
        phone: Some("+1 555 200 3000".into()),
        email: None,
        address: None,
        sex: None,
        emergency_contact: None,
        emergency_phone: None,
        insurer: None,
        insurance_number: None,
        alerts: None,
    }
}

type Mirror = BTreeMap<(Table, Uuid), (u64, bool, Option<Value>)>;

/// The server's rows as this user may see them.
async fn server_rows(api: &Api) -> Mirror {
    let (rows, _) = api.pull_all(0).await;
    let mut map = BTreeMap::new();
    for r in rows {
        map.insert((r.table, r.id), (r.version, r.deleted, r.data));
    }
    map
}

async fn desk_rows(desk: &Desk, visible: bool) -> Mirror {
    desk.client
        .dump(visible)
        .await
        .unwrap()
        .into_iter()
        .map(|(t, id, v, d, data)| ((t, id), (v, d, if d { None } else { data })))
        .collect()
}

/// The `clinic` CLI on a data directory, trusting this process's clinic CAs.
fn clinic_command(dir: &std::path::Path) -> Command {
    let ca = write_trusted_cas(&dir.with_extension("ca.pem"));
    let mut command = Command::new(bin("clinic"));
    command.arg("--data-dir").arg(dir).env("CLINIC_CA_FILE", ca);
    command
}

/// Runs the `clinic` CLI on a data directory.
fn clinic(dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    run_with_stdin(clinic_command(dir).arg("--json").args(args), stdin)
}

fn clinic_ok(dir: &std::path::Path, args: &[&str]) -> Value {
    let out = clinic(dir, args, None);
    assert!(
        out.status.success(),
        "clinic {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_write_shows_at_once_locally_and_reaches_another_desk_unprompted() {
    let server = Server::start_tls();
    let mut a = Desk::new(&server.base, "reception").await;
    let mut b = Desk::new(&server.base, "doctor").await;
    a.start();
    b.start();
    a.wait_for("a live", |d| {
        d.connection() == Connection::Live && d.synced_once
    })
    .await;
    b.wait_for("b live", |d| {
        d.connection() == Connection::Live && d.synced_once
    })
    .await;

    let p = new_patient("Instant");
    let id = p.id;
    a.client.mutate(Mutation::CreatePatient(p)).await.unwrap();
    // Visible in A the moment the call returns, marked pending.
    let row = a
        .client
        .row(Table::Patients, id)
        .await
        .unwrap()
        .expect("visible at once");
    assert!(row.pending);
    // B receives it without doing anything.
    b.wait_for("B to see A's patient", |d| d.has(Table::Patients, id))
        .await;
    a.wait_for("A's change confirmed", |d| d.pending() == 0)
        .await;
    assert!(!a.get(Table::Patients, id).await.pending);

    // An update from B reaches A too.
    let version = b.get(Table::Patients, id).await.version;
    let patch = PatientPatch {
        address: Some(Some("12 Harbour Road".into())),
        ..Default::default()
    };
    b.client
        .mutate(Mutation::UpdatePatient(UpdatePatient {
            id,
            base_version: version,
            fields: patch,
        }))
        .await
        .unwrap();
    a.wait_for("A to see B's update", |d| {
        d.data(Table::Patients, id)["address"] == "12 Harbour Road"
    })
    .await;
    b.wait_for("B's change confirmed", |d| d.pending() == 0)
        .await;

    // Both mirrors equal the server's rows for their roles, and visible = confirmed.
    for (desk, user) in [(&a, "reception"), (&b, "doctor")] {
        let api = Api::login(&server, user).await;
        let head = api.pull(0, 0).await; // touch: any page
        drop(head);
        let expected = server_rows(&api).await;
        desk.wait_for("mirror caught up", |d| {
            d.cursor >= server_head_sync(&server)
        })
        .await;
        assert_eq!(
            desk_rows(desk, false).await,
            expected,
            "{user}'s confirmed rows equal the server's"
        );
        assert_eq!(
            desk_rows(desk, true).await,
            expected,
            "{user}'s visible rows equal the server's"
        );
    }
    a.stop().await;
    b.stop().await;
}

/// The server's head, read from its database file.
fn server_head_sync(server: &Server) -> u64 {
    let db = rusqlite::Connection::open(server.db_path()).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let head: i64 = db
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| {
            r.get(0)
        })
        .unwrap();
    head as u64
}

#[tokio::test]
async fn a_hundred_offline_changes_from_restarted_cli_processes_apply_once_in_order() {
    let mut server = Server::start_tls();
    let dir = tempfile::tempdir().unwrap();
    let login = clinic(
        dir.path(),
        &[
            "--server",
            &server.base,
            "login",
            "--username",
            "admin",
            "--password-stdin",
        ],
        Some("demo\n"),
    );
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    clinic_ok(dir.path(), &["sync"]);
    let mut b = Desk::new(&server.base, "doctor").await;
    b.start();
    b.wait_for("b synced", |d| d.synced_once).await;
    let items: Vec<Uuid> = b
        .client
        .rows(Table::InventoryItems)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    let mut stock_before: Vec<i64> = Vec::new();
    for i in &items {
        stock_before.push(
            b.data(Table::InventoryItems, *i).await["quantity"]
                .as_i64()
                .unwrap(),
        );
    }

    server.kill();
    let failed = clinic(dir.path(), &["sync"], None);
    assert!(
        !failed.status.success(),
        "sync fails while the server is down"
    );

    // 100 changes, each made by a fresh `clinic` process (the engine restarts every time).
    let mut created = Vec::new();
    for i in 0..40 {
        let out = clinic_ok(
            dir.path(),
            &[
                "patients",
                "add",
                "--first-name",
                &format!("Offline{i}"),
                "--last-name",
                "Visit",
                "--date-of-birth",
                "1990-01-01",
            ],
        );
        created.push(Uuid::parse_str(out["id"].as_str().unwrap()).unwrap());
    }
    for (i, id) in created.iter().take(30).enumerate() {
        clinic_ok(
            dir.path(),
            &[
                "patients",
                "update",
                &id.to_string(),
                "--phone",
                &format!("+1 555 300 {:04}", i),
            ],
        );
    }
    for id in created.iter().skip(30) {
        clinic_ok(dir.path(), &["patients", "delete", &id.to_string()]);
    }
    let mut deltas = vec![0i64; items.len()];
    for i in 0..20 {
        let delta = if i % 2 == 0 { 2 } else { -1 };
        let item = i % items.len();
        deltas[item] += delta;
        clinic_ok(
            dir.path(),
            &[
                "stock",
                "adjust",
                &items[item].to_string(),
                "--delta",
                &delta.to_string(),
            ],
        );
    }
    let pending = clinic_ok(dir.path(), &["pending"]);
    assert_eq!(pending.as_array().unwrap().len(), 100);
    let ids: Vec<u64> = pending
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["mutation_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, (1..=100).collect::<Vec<_>>());

    server.start_again();
    let report = clinic_ok(dir.path(), &["sync"]);
    assert_eq!(report["applied"], 100, "{report}");
    assert_eq!(report["pending"], 0, "{report}");

    // Exactly once, in order: the server recorded mutations 1..=100 of this client, each applied once.
    let status = clinic_ok(dir.path(), &["status"]);
    let client_id = status["identity"]["client_id"].as_str().unwrap().to_owned();
    let db = rusqlite::Connection::open(server.db_path()).unwrap();
    let results: Vec<(i64, String)> = db
        .prepare("SELECT mutation_id, outcome FROM mutation_results WHERE client_id = ?1 ORDER BY mutation_id")
        .unwrap()
        .query_map([&client_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(results.len(), 100);
    assert!(
        results
            .iter()
            .enumerate()
            .all(|(i, (m, o))| *m == i as i64 + 1 && o.contains("applied"))
    );
    let order: Vec<i64> = db
        .prepare("SELECT mutation_id FROM changes WHERE client_id = ?1 ORDER BY seq")
        .unwrap()
        .query_map([&client_id], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        order,
        (1..=100).collect::<Vec<i64>>(),
        "applied once each, in the order made"
    );

    // B (which lost its connection too) sees all of it.
    b.wait_for("B to see the offline work", |d| {
        created
            .iter()
            .take(30)
            .all(|id| d.has(Table::Patients, *id))
            && created
                .iter()
                .skip(30)
                .all(|id| !d.has(Table::Patients, *id))
            && items
                .iter()
                .zip(&stock_before)
                .zip(&deltas)
                .all(|((item, before), delta)| {
                    d.data(Table::InventoryItems, *item)["quantity"].as_i64()
                        == Some(before + delta)
                })
    })
    .await;
    assert_eq!(
        b.data(Table::Patients, created[7]).await["phone"],
        "+1 555 300 0007"
    );
    b.stop().await;
}

#[tokio::test]
async fn refused_changes_roll_back_with_the_servers_reason() {
    let server = Server::start_tls();
    let mut desk_a = Desk::new(&server.base, "reception").await;
    let desk_b = Desk::new(&server.base, "admin").await;
    desk_a.client.sync_once().await.unwrap();
    desk_b.client.sync_once().await.unwrap();
    let doctor = desk_b
        .client
        .rows(Table::Staff)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.data["username"] == "doctor")
        .unwrap()
        .id;
    let patient = desk_b.client.rows(Table::Patients).await.unwrap()[0].id;

    // 1. A double booking: B takes the slot first; A books it while its mirror does not know.
    let slot = |id| BookAppointment {
        id,
        patient_id: patient,
        doctor_id: doctor,
        start: ts("2032-05-05T10:00:00Z"),
        end: ts("2032-05-05T10:30:00Z"),
        reason: None,
        correction: false,
    };
    desk_b
        .client
        .mutate(Mutation::BookAppointment(slot(Uuid::now_v7())))
        .await
        .unwrap();
    desk_b.client.sync_once().await.unwrap();
    let mine = Uuid::now_v7();
    desk_a
        .client
        .mutate(Mutation::BookAppointment(slot(mine)))
        .await
        .unwrap();
    assert!(
        desk_a.has(Table::Appointments, mine).await,
        "optimistic booking shows at once"
    );
    desk_a.start();
    desk_a
        .wait_for("the booking to be refused", |d| !d.rejected.is_empty())
        .await;
    assert!(
        !desk_a.has(Table::Appointments, mine).await,
        "the booking disappeared"
    );
    let rejected = desk_a.client.rejected().await.unwrap();
    assert_eq!(rejected[0].rejection.code, RejectCode::DoubleBooked);
    assert!(
        rejected[0]
            .rejection
            .message
            .contains("already has appointment")
    );
    desk_a.wait_for("no pending", |d| d.pending() == 0).await;
    desk_a.stop().await;

    // 2. A clinical note edited from the same version on two desks of its
    //    doctor (a doctor edits only their own records).
    let d1 = Desk::new(&server.base, "doctor").await;
    let mut d2 = Desk::new(&server.base, "doctor").await;
    d1.client.sync_once().await.unwrap();
    let record = AddTreatmentRecord {
        id: Uuid::now_v7(),
        patient_id: patient,
        appointment_id: None,
        notes: "First note".into(),
        diagnosis: "Sprain".into(),
        procedures: vec![],
        recorded_at: ts("2026-11-23T09:00:00Z"),
    };
    let record_id = record.id;
    d1.client
        .mutate(Mutation::AddTreatmentRecord(record))
        .await
        .unwrap();
    d1.client.sync_once().await.unwrap();
    d2.client.sync_once().await.unwrap();
    let base = d2.get(Table::TreatmentRecords, record_id).await.version;
    let edit = |notes: &str| {
        Mutation::UpdateTreatmentRecord(UpdateTreatmentRecord {
            id: record_id,
            base_version: base,
            fields: TreatmentRecordPatch {
                notes: Some(notes.into()),
                ..Default::default()
            },
        })
    };
    d1.client
        .mutate(edit("Doctor one's version"))
        .await
        .unwrap();
    d1.client.sync_once().await.unwrap();
    d2.client
        .mutate(edit("Doctor two's version"))
        .await
        .unwrap();
    assert_eq!(
        d2.data(Table::TreatmentRecords, record_id).await["notes"],
        "Doctor two's version"
    );
    d2.start();
    d2.wait_for("the conflict", |d| !d.rejected.is_empty())
        .await;
    let conflict = &d2.client.rejected().await.unwrap()[0].rejection;
    assert_eq!(conflict.code, RejectCode::Conflict);
    assert_eq!(conflict.conflicts[0].field, "notes");
    assert_eq!(conflict.conflicts[0].yours, "Doctor two's version");
    assert_eq!(conflict.conflicts[0].theirs, "Doctor one's version");
    assert!(conflict.conflicts[0].clinical);
    d2.wait_for("the other doctor's note to show", |d| {
        d.data(Table::TreatmentRecords, record_id)["notes"] == "Doctor one's version"
    })
    .await;
    d2.stop().await;

    // 3. Over-drawing stock: the assistant takes what the mirror shows, but someone took most of it.
    let mut nurse = Desk::new(&server.base, "assistant").await;
    nurse.client.sync_once().await.unwrap();
    desk_b.client.sync_once().await.unwrap();
    let item = nurse.client.rows(Table::InventoryItems).await.unwrap()[0].clone();
    let qty = item.data["quantity"].as_i64().unwrap();
    desk_b
        .client
        .mutate(Mutation::AdjustStock(AdjustStock {
            id: item.id,
            delta: -(qty - 1),
            reason: None,
        }))
        .await
        .unwrap();
    desk_b.client.sync_once().await.unwrap();
    nurse
        .client
        .mutate(Mutation::AdjustStock(AdjustStock {
            id: item.id,
            delta: -qty,
            reason: None,
        }))
        .await
        .unwrap();
    assert_eq!(
        nurse.data(Table::InventoryItems, item.id).await["quantity"],
        0
    );
    nurse.start();
    nurse
        .wait_for("the over-draw to be refused", |d| !d.rejected.is_empty())
        .await;
    assert_eq!(
        nurse.client.rejected().await.unwrap()[0].rejection.code,
        RejectCode::InsufficientStock
    );
    nurse
        .wait_for("the real stock to show", |d| {
            d.data(Table::InventoryItems, item.id)["quantity"] == 1
        })
        .await;
    nurse.stop().await;
}

#[tokio::test]
async fn kill_dash_nine_during_sync_loses_and_duplicates_nothing() {
    let server = Server::start_tls();
    let dir = tempfile::tempdir().unwrap();
    let login = clinic(
        dir.path(),
        &[
            "--server",
            &server.base,
            "login",
            "--username",
            "reception",
            "--password-stdin",
        ],
        Some("demo\n"),
    );
    assert!(login.status.success());
    let mut created = Vec::new();
    for round in 0..8 {
        // Queue some changes, then let a syncing process run and kill it mid-flight.
        for i in 0..5 {
            // Kept local (`--no-sync`): the syncing process below sends them.
            let out = clinic_ok(
                dir.path(),
                &[
                    "--no-sync",
                    "patients",
                    "add",
                    "--first-name",
                    &format!("Crash{round}x{i}"),
                    "--last-name",
                    "Test",
                    "--date-of-birth",
                    "1985-03-03",
                ],
            );
            created.push(out["id"].as_str().unwrap().to_owned());
        }
        let mut watch = clinic_command(dir.path())
            .arg("watch")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        if round % 2 == 1 {
            // Wait for it to be mid-sync: its first applied batch.
            use std::io::BufRead;
            let stdout = watch.stdout.take().unwrap();
            let mut lines = std::io::BufReader::new(stdout).lines();
            let deadline = Instant::now() + Duration::from_secs(30);
            for line in lines.by_ref() {
                let line = line.unwrap();
                if line.contains("\"changes\"") || Instant::now() > deadline {
                    break;
                }
            }
        }
        watch.kill().unwrap(); // SIGKILL
        watch.wait().unwrap();
        // The database opens cleanly after every kill.
        let client = ClinicClient::open(ClientConfig::new(dir.path()))
            .await
            .unwrap();
        client.integrity_check().await.unwrap();
        let pending = client.pending().await.unwrap();
        let ids: Vec<u64> = pending.iter().map(|p| p.mutation_id).collect();
        let mut sorted = ids.clone();
        sorted.dedup();
        assert_eq!(ids, sorted, "no duplicated outbox entries");
    }
    let report = clinic_ok(dir.path(), &["sync"]);
    assert_eq!(report["pending"], 0);
    let status = clinic_ok(dir.path(), &["status"]);
    let client_id = status["identity"]["client_id"].as_str().unwrap().to_owned();
    let db = rusqlite::Connection::open(server.db_path()).unwrap();
    let applied: Vec<String> = db
        .prepare("SELECT row_id FROM changes WHERE client_id = ?1 ORDER BY seq")
        .unwrap()
        .query_map([&client_id], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        applied, created,
        "every queued patient applied exactly once, in order"
    );
    let client = ClinicClient::open(ClientConfig::new(dir.path()))
        .await
        .unwrap();
    for id in &created {
        assert!(
            client
                .row(Table::Patients, Uuid::parse_str(id).unwrap())
                .await
                .unwrap()
                .is_some()
        );
    }
}

#[tokio::test]
async fn without_websockets_changes_arrive_by_long_poll_and_the_socket_comes_back() {
    let server = Server::start_tls();
    let proxy = Proxy::start_tls(&server).await;
    proxy.block_websocket(true);
    let mut desk = Desk::new(&proxy.url(), "doctor").await;
    desk.start();
    desk.wait_for("polling", |d| {
        d.connection() == Connection::Polling && d.synced_once
    })
    .await;
    let mut writer = Api::login(&server, "reception").await;
    let mut worst = Duration::ZERO;
    for i in 0..5 {
        let p = new_patient(&format!("Polled{i}"));
        let id = p.id;
        let sent = Instant::now();
        writer.push_one(Mutation::CreatePatient(p)).await;
        desk.wait_for("the change by long-poll", |d| d.has(Table::Patients, id))
            .await;
        worst = worst.max(sent.elapsed());
    }
    eprintln!("long-poll delivery, worst of 5: {worst:?}");
    assert!(
        worst < Duration::from_secs(1),
        "changes arrive within a second by long-poll (worst {worst:?})"
    );
    // A local write while polling is pushed at once (the long-poll is cut short).
    let p = new_patient("FromPollingDesk");
    let id = p.id;
    desk.client
        .mutate(Mutation::CreatePatient(p))
        .await
        .unwrap();
    desk.wait_for("pushed while polling", |d| d.pending() == 0)
        .await;
    assert!(writer.table(Table::Patients).await.contains_key(&id));

    proxy.block_websocket(false);
    desk.wait_for("back on the WebSocket", |d| {
        d.connection() == Connection::Live
    })
    .await;
    let p = new_patient("LiveAgain");
    let id = p.id;
    writer.push_one(Mutation::CreatePatient(p)).await;
    desk.wait_for("the change over the socket", |d| d.has(Table::Patients, id))
        .await;
    desk.stop().await;
}

/// Ends every session on the server by expiring it, as a week without
/// signing in would.
fn expire_sessions(server: &Server) {
    let db = rusqlite::Connection::open(server.db_path()).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute(
        "UPDATE sessions SET expires_at = '2000-01-01T00:00:00Z'",
        [],
    )
    .unwrap();
}

/// A reception desk connected live to `server` through a proxy the test
/// can cut.
async fn live_reception_behind_proxy(server: &Server) -> (Proxy, Desk) {
    let proxy = Proxy::start_tls(server).await;
    let mut desk = Desk::new(&proxy.url(), "reception").await;
    desk.start();
    desk.wait_for("live", |d| d.connection() == Connection::Live)
        .await;
    (proxy, desk)
}

#[tokio::test]
async fn an_outage_is_reported_and_ridden_out() {
    let server = Server::start_tls();
    let (proxy, mut desk) = live_reception_behind_proxy(&server).await;
    proxy.set_down(true);
    desk.wait_for("offline", |d| {
        matches!(d.connection(), Connection::Offline { .. })
    })
    .await;
    let p = new_patient("DuringOutage");
    let id = p.id;
    desk.client
        .mutate(Mutation::CreatePatient(p))
        .await
        .unwrap();
    // The status line follows the write at once (it is refreshed off the
    // writer's path).
    let mut status = desk.client.status();
    let status = tokio::time::timeout(WAIT, status.wait_for(|s| s.pending == 1))
        .await
        .expect("the status shows the queued change")
        .unwrap()
        .clone();
    assert!(status.oldest_pending_secs.is_some());
    proxy.set_down(false);
    desk.wait_for("synced after the outage", |d| {
        d.pending() == 0 && d.connection() == Connection::Live
    })
    .await;
    let api = Api::login(&server, "reception").await;
    assert!(api.table(Table::Patients).await.contains_key(&id));
    desk.stop().await;
}

#[tokio::test]
async fn an_expired_sign_in_holds_the_queue_until_the_user_signs_in_again() {
    let server = Server::start_tls();
    let mut desk = Desk::new(&server.base, "reception").await;
    desk.start();
    desk.wait_for("live", |d| d.connection() == Connection::Live)
        .await;
    desk.stop().await;
    expire_sessions(&server);
    let p = new_patient("HeldBack");
    let id = p.id;
    desk.client
        .mutate(Mutation::CreatePatient(p))
        .await
        .unwrap();
    desk.start();
    desk.wait_for("signed out", |d| d.connection() == Connection::SignedOut)
        .await;
    assert_eq!(desk.pending().await, 1, "nothing dropped");
    assert!(desk.has(Table::Patients, id).await);
    desk.client
        .sign_in(&server.base, "reception", "demo")
        .await
        .unwrap();
    desk.wait_for("synced after signing in again", |d| d.pending() == 0)
        .await;
    let api = Api::login(&server, "reception").await;
    assert!(api.table(Table::Patients).await.contains_key(&id));
    desk.stop().await;
}

/// The issue's "works offline for a user who signed in on this machine
/// before": the sign-in expired, the server is unreachable, the same user
/// signs in again (checked against this machine's Argon2id verifier), works,
/// and the engine gets a real token once the server answers.
#[tokio::test]
async fn a_user_who_signed_in_here_before_can_sign_in_offline() {
    let server = Server::start_tls();
    let (proxy, mut desk) = live_reception_behind_proxy(&server).await;
    // The sign-in expires on the server: the desk keeps its mirror and queue.
    desk.stop().await;
    expire_sessions(&server);
    desk.start();
    desk.wait_for("signed out", |d| d.connection() == Connection::SignedOut)
        .await;
    proxy.set_down(true);

    // Another user, or a wrong password, cannot get in without the server.
    let other = desk.client.sign_in(&proxy.url(), "doctor", "demo").await;
    assert!(
        matches!(other, Err(clinic_client::ClientError::Offline { .. })),
        "{other:?}"
    );
    let wrong = desk.client.sign_in(&proxy.url(), "reception", "nope").await;
    assert!(
        matches!(wrong, Err(clinic_client::ClientError::Auth(_))),
        "{wrong:?}"
    );
    assert!(!desk.client.session_info().await.unwrap().identity.signed_in);

    let signed_in = desk
        .client
        .sign_in(&proxy.url(), "RECEPTION", "demo")
        .await
        .unwrap();
    assert!(signed_in.offline);
    assert_eq!(signed_in.user.username, "reception");
    assert!(desk.client.session_info().await.unwrap().identity.signed_in);
    assert!(
        desk.client.identity().await.unwrap().offline,
        "no token yet"
    );
    let p = new_patient("SignedInOffline");
    let id = p.id;
    desk.client
        .mutate(Mutation::CreatePatient(p))
        .await
        .unwrap();
    assert!(desk.has(Table::Patients, id).await);
    desk.wait_for("offline", |d| {
        matches!(d.connection(), Connection::Offline { .. })
    })
    .await;

    proxy.set_down(false);
    desk.wait_for("signed in online and synced", |d| {
        d.pending() == 0 && d.connection() == Connection::Live
    })
    .await;
    assert!(
        !desk.client.identity().await.unwrap().offline,
        "a token now"
    );
    assert!(!desk.client.signed_in_offline());
    let api = Api::login(&server, "reception").await;
    assert!(api.table(Table::Patients).await.contains_key(&id));
    desk.stop().await;
}

#[tokio::test]
async fn a_role_change_removes_what_the_user_may_no_longer_see() {
    let server = Server::start_tls();
    let mut desk = Desk::new(&server.base, "doctor2").await;
    desk.start();
    desk.wait_for("synced", |d| d.synced_once).await;
    assert!(
        !desk
            .client
            .rows(Table::TreatmentRecords)
            .await
            .unwrap()
            .is_empty(),
        "a doctor sees records"
    );
    let out = server.admin(
        &["user", "set-role", "doctor2", "--role", "reception"],
        None,
    );
    assert!(out.status.success());
    desk.wait_for("records to leave the mirror", |d| {
        d.role == Some(clinic_shared::model::Role::Reception)
            && d.list(Table::TreatmentRecords).is_empty()
            && d.synced_once
    })
    .await;
    assert!(
        !desk.client.rows(Table::Invoices).await.unwrap().is_empty(),
        "and it now sees billing"
    );
    desk.stop().await;
}

/// Issue 11, item 4: a doctor's desk on the HTTP fallback (no WebSocket)
/// is demoted to reception; the long-poll answer's role makes the desk purge
/// what the new role may not read, field by field (the same
/// `clinic_shared::field_access::redact` the server sends by), in its
/// confirmed and its visible rows.
#[tokio::test]
async fn a_role_change_over_long_poll_leaves_no_withheld_field_in_the_mirror() {
    use clinic_shared::field_access;
    use clinic_shared::model::{Role, Urgency};
    const REASON: &str = "Recurrent syncope, exclude arrhythmia (e2e-5d1)";
    let server = Server::start_tls();
    let proxy = Proxy::start_tls(&server).await;
    proxy.block_websocket(true);
    let mut desk = Desk::new(&proxy.url(), "doctor2").await;
    desk.start();
    desk.wait_for("polling", |d| {
        d.connection() == Connection::Polling && d.synced_once
    })
    .await;
    let patient = desk.client.rows(Table::Patients).await.unwrap()[0].id;
    let referral = CreateReferral {
        id: Uuid::now_v7(),
        patient_id: patient,
        referred_to: "Cardiology, City Hospital".into(),
        reason: REASON.into(),
        urgency: Urgency::Urgent,
        created_at: ts("2026-11-23T09:58:00Z"),
    };
    let id = referral.id;
    desk.client
        .mutate(Mutation::CreateReferral(referral))
        .await
        .unwrap();
    desk.wait_for("the referral confirmed", |d| {
        d.pending() == 0 && d.has(Table::Referrals, id)
    })
    .await;
    let held = |rows: &[clinic_client::DumpRow]| {
        rows.iter()
            .find(|r| r.0 == Table::Referrals && r.1 == id)
            .and_then(|r| r.4.clone())
            .expect("the referral is in the mirror")
    };
    assert_eq!(
        held(&desk.client.dump(false).await.unwrap())["reason"],
        REASON
    );

    let out = server.admin(
        &["user", "set-role", "doctor2", "--role", "reception"],
        None,
    );
    assert!(out.status.success());
    desk.wait_for("the desk to sync again as reception", |d| {
        d.role == Some(Role::Reception) && d.synced_once
    })
    .await;
    assert_ne!(
        desk.snap().await.connection(),
        Connection::Live,
        "the role change came over long-poll"
    );
    for visible in [false, true] {
        let rows = desk.client.dump(visible).await.unwrap();
        for (table, row_id, _, _, data) in &rows {
            let Some(data) = data.as_ref().and_then(Value::as_object) else {
                continue;
            };
            assert!(
                *table != Table::TreatmentRecords,
                "no treatment records (visible: {visible})"
            );
            for field in data.keys() {
                assert!(
                    field_access::can_read_field(Role::Reception, *table, field),
                    "{table}.{field} of {row_id} left in the mirror (visible: {visible})"
                );
            }
        }
        let referral = held(&rows);
        assert!(referral.get("reason").is_none(), "{referral}");
        assert_eq!(referral["referred_to"], "Cardiology, City Hospital");
        assert!(
            !rows
                .iter()
                .any(|r| r.4.as_ref().is_some_and(|d| d.to_string().contains(REASON))),
            "no trace of the reason (visible: {visible})"
        );
    }
    desk.stop().await;
}

#[tokio::test]
async fn events_name_what_changed_and_where_from() {
    let server = Server::start_tls();
    let mut desk = Desk::new(&server.base, "reception").await;
    desk.client.sync_once().await.unwrap();
    let mut events = desk.client.subscribe();
    let p = new_patient("Evented");
    let id = p.id;
    desk.client
        .mutate(Mutation::CreatePatient(p))
        .await
        .unwrap();
    let ev = events.recv().await.unwrap();
    assert_eq!(ev.origin, ChangeOrigin::Local);
    assert_eq!(ev.rows, vec![(Table::Patients, id)]);
    desk.start();
    let deadline = Instant::now() + WAIT;
    loop {
        let ev = tokio::time::timeout(WAIT, events.recv())
            .await
            .unwrap()
            .unwrap();
        if ev.origin == ChangeOrigin::Remote && ev.rows.contains(&(Table::Patients, id)) {
            break;
        }
        assert!(Instant::now() < deadline);
    }
    // Local queries.
    assert_eq!(
        desk.client.search_patients("evented", 10).await.unwrap()[0].id,
        id
    );
    assert_eq!(
        desk.client
            .search_patients("5552003000", 10)
            .await
            .unwrap()
            .iter()
            .filter(|r| r.id == id)
            .count(),
        1
    );
    assert!(
        desk.client
            .search_patients("1975-06", 10)
            .await
            .unwrap()
            .iter()
            .any(|r| r.id == id)
    );
    desk.stop().await;
}

/// A write from the CLI reaches the server before the command exits when
/// the server can be reached, without a `clinic sync`: another client's
/// `clinic watch` sees it arrive.
#[tokio::test]
async fn a_cli_write_is_sent_before_the_command_exits() {
    use std::io::BufRead;
    let server = Server::start_tls();
    let (writer, watcher) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (dir, user) in [(&writer, "reception"), (&watcher, "doctor")] {
        let login = clinic(
            dir.path(),
            &[
                "--server",
                &server.base,
                "login",
                "--username",
                user,
                "--password-stdin",
            ],
            Some("demo\n"),
        );
        assert!(
            login.status.success(),
            "{}",
            String::from_utf8_lossy(&login.stderr)
        );
    }
    let mut watch = clinic_command(watcher.path())
        .arg("watch")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    // The watcher is live once it has caught up.
    let deadline = Instant::now() + WAIT;
    loop {
        let line = lines
            .recv_timeout(deadline - Instant::now())
            .expect("watch goes live");
        if line.contains("\"live\"") {
            break;
        }
    }
    let out = clinic_ok(
        writer.path(),
        &[
            "patients",
            "add",
            "--first-name",
            "Scripted",
            "--last-name",
            "Walkin",
            "--date-of-birth",
            "1991-02-03",
        ],
    );
    assert_eq!(out["state"], "confirmed", "{out}");
    let id = out["id"].as_str().unwrap().to_owned();
    // Nothing queued on the writer, and the other client's watch sees it.
    assert_eq!(
        clinic_ok(writer.path(), &["pending"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the watcher sees the new patient");
        if line.contains("\"changes\"") && line.contains(&id) {
            break;
        }
    }
    watch.kill().unwrap();
    watch.wait().unwrap();
    // Kept local when asked, and still sent by the next sync.
    let kept = clinic_ok(
        writer.path(),
        &[
            "--no-sync",
            "patients",
            "add",
            "--first-name",
            "Later",
            "--last-name",
            "Walkin",
            "--date-of-birth",
            "1991-02-04",
        ],
    );
    assert_eq!(kept["state"], "queued", "{kept}");
    assert_eq!(
        clinic_ok(writer.path(), &["pending"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(clinic_ok(writer.path(), &["sync"])["pending"], 0);
}

/// A backup, more work, the server restored from the backup: the desk
/// notices (new server epoch, over long-poll or over the WebSocket), drops
/// what the restored server no longer has, keeps and re-sends its queue,
/// ends with exactly the server's rows, and says so once.
async fn a_restore_is_noticed_and_the_desk_converges(live: bool) {
    let mut server = Server::start_tls();
    let mut desk = Desk::new(&server.base, "reception").await;
    let mut other = Api::login(&server, "doctor").await;
    let create = async |desk: &Desk, first: &str| {
        let p = new_patient(first);
        let id = p.id;
        desk.client
            .mutate(Mutation::CreatePatient(p))
            .await
            .unwrap();
        id
    };
    let kept = create(&desk, "InTheBackup").await;
    desk.client.sync_once().await.unwrap();
    let backup = server.dir.path().join("before.db");
    let out = server.admin(&["backup", "--out", backup.to_str().unwrap()], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // After the backup: one change of this desk and one of another reach
    // the server (and will be lost by the restore); one more of this desk
    // is still queued when the server goes down.
    let lost = create(&desk, "AfterTheBackup").await;
    desk.client.sync_once().await.unwrap();
    let theirs = new_patient("OtherDesk");
    let theirs_id = theirs.id;
    applied_seq(&other.push_one(Mutation::CreatePatient(theirs)).await);
    server.kill();
    let queued = create(&desk, "QueuedOffline").await;
    assert!(desk.client.sync_once().await.is_err(), "the server is down");
    let out = server.admin(&["restore", backup.to_str().unwrap()], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.start_again();
    other.rebase(&server);

    if live {
        desk.start();
        desk.wait_for("the desk is live again with nothing pending", |d| {
            d.connection() == Connection::Live && d.synced_once && d.pending == 0
        })
        .await;
        desk.stop().await;
    } else {
        // The first round sends the queued change and then learns of the
        // restore; the second re-sends it (answered from the stored
        // result) and settles.
        desk.client.sync_once().await.unwrap();
        let report = desk.client.sync_once().await.unwrap();
        assert_eq!(report.pending, 0, "{report:?}");
    }
    let server_now = server_rows(&Api::login(&server, "reception").await).await;
    assert_eq!(desk_rows(&desk, false).await, server_now, "confirmed rows");
    assert_eq!(
        desk_rows(&desk, true).await,
        server_now,
        "what the desk shows"
    );
    let patients: Vec<Uuid> = server_now
        .keys()
        .filter(|(t, _)| *t == Table::Patients)
        .map(|(_, id)| *id)
        .collect();
    assert!(patients.contains(&kept), "the backup's patient is there");
    assert!(patients.contains(&queued), "the queued change was sent");
    assert!(!patients.contains(&lost) && !patients.contains(&theirs_id));
    // Applied once, though sent twice.
    let history: HistoryResponse = other
        .get(&format!("/v1/history/patients/{queued}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history.entries.len(), 1, "{history:?}");
    // Told once, until dismissed.
    let notice = desk.client.status_now().server_restored.expect("a notice");
    eprintln!("NOTICE {notice:?} live={live}");
    assert_eq!(notice.resent, 1);
    desk.client.dismiss_server_restored().await.unwrap();
    assert_eq!(desk.client.status_now().server_restored, None);
    desk.client.sync_once().await.unwrap();
    assert_eq!(desk.client.status_now().server_restored, None);
}

#[tokio::test]
async fn a_restore_is_noticed_over_long_poll_and_the_desk_converges() {
    a_restore_is_noticed_and_the_desk_converges(false).await;
}

#[tokio::test]
async fn a_restore_is_noticed_over_the_websocket_and_the_desk_converges() {
    a_restore_is_noticed_and_the_desk_converges(true).await;
}
