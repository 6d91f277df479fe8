//! Several real `clinic-server` processes on one real PostgreSQL (a
//! throwaway cluster started by the test): one sequence, the clinic rules
//! and exactly-once across instances, fan-out and revocation across
//! instances, resuming anywhere, a killed instance and a restarted
//! database losing nothing acknowledged, admin commands and `migrate`.

#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic

use clinic_e2e::pg::PgCluster;
use clinic_e2e::*;
use clinic_shared::model::Table;
use clinic_shared::mutation::*;
use clinic_shared::protocol::{ErrorCode, MutationOutcome, RejectCode, ServerMessage};
use std::time::{Duration, Instant};
use uuid::Uuid;

fn new_patient(first: &str) -> CreatePatient {
    CreatePatient {
        id: Uuid::now_v7(),
        first_name: first.into(),
        last_name: "Scale".into(),
        date_of_birth: "1980-04-02".parse().unwrap(),
        phone: None,
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

/// A cluster, a database and `n` instances on it (the first seeds the demo).
fn instances(n: usize) -> (PgCluster, String, Vec<Server>) {
    instances_with(n, &[])
}

/// Instances that poll for other processes' commits only every 5 s: what
/// reaches them sooner came by a wake-up.
fn instances_without_polling(n: usize) -> (PgCluster, String, Vec<Server>) {
    instances_with(
        n,
        &["--external-poll-ms", "5000", "--security-poll-ms", "5000"],
    )
}

fn instances_with(n: usize, extra: &[&str]) -> (PgCluster, String, Vec<Server>) {
    let cluster = PgCluster::start();
    let url = cluster.create_database();
    let servers = (0..n).map(|_| Server::start_pg(&url, extra)).collect();
    (cluster, url, servers)
}

/// The change sequence in the database: `(count, min, max)`.
fn sequence(cluster: &PgCluster, url: &str) -> (i64, Option<i64>, Option<i64>, i64) {
    cluster.with_client(url, |c| {
        let r = c
            .query_one(
                "SELECT COUNT(*), MIN(seq), MAX(seq), (SELECT head FROM sequence_head) FROM changes",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2), r.get(3))
    })
}

fn assert_gap_free(cluster: &PgCluster, url: &str) -> i64 {
    let (count, min, max, head) = sequence(cluster, url);
    assert_eq!(min, Some(1), "the sequence starts at 1");
    assert_eq!(max, Some(count), "no gaps: {count} changes up to {max:?}");
    assert_eq!(head, count, "the head is the last change");
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_keep_one_sequence_the_clinic_rules_and_exactly_once() {
    let (cluster, url, servers) = instances(3);
    let mut apis = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        for user in ["reception", "doctor"] {
            let mut api = Api::login(server, user).await;
            api.next_mutation = 1;
            apis.push((i, api));
        }
    }
    let doctor = staff_id(&apis[0].1, "doctor2").await;
    let patients = apis[0].1.table(Table::Patients).await;
    let patient = *patients.keys().next().unwrap();

    // Double booking: every client on every instance books the same slot at once.
    let mut tasks = Vec::new();
    for (_, mut api) in apis.drain(..) {
        tasks.push(tokio::spawn(async move {
            let outcome = api
                .push_one(Mutation::BookAppointment(BookAppointment {
                    id: Uuid::now_v7(),
                    patient_id: patient,
                    doctor_id: doctor,
                    start: ts("2032-05-05T09:00:00Z"),
                    end: ts("2032-05-05T09:30:00Z"),
                    reason: None,
                    correction: false,
                }))
                .await;
            (outcome, api)
        }));
    }
    let mut booked = 0;
    for t in tasks {
        let (outcome, api) = t.await.unwrap();
        match &outcome {
            MutationOutcome::Applied { .. } => booked += 1,
            MutationOutcome::Rejected { rejection } => {
                assert_eq!(rejection.code, RejectCode::DoubleBooked, "{rejection:?}")
            }
            other => panic!("unexpected {other:?}"),
        }
        apis.push((0, api));
    }
    assert_eq!(
        booked,
        1,
        "exactly one of {} concurrent bookings",
        apis.len()
    );

    // Stock never below zero: concurrent draws from every instance.
    let item_api = apis
        .iter()
        .find(|(_, a)| a.user.username == "doctor")
        .unwrap();
    let items = item_api.1.table(Table::InventoryItems).await;
    let quantity =
        |r: &clinic_shared::model::SyncRow| r.data.as_ref().unwrap()["quantity"].as_i64().unwrap();
    let (item, row) = items.iter().find(|(_, r)| quantity(r) >= 12).unwrap();
    let (item, start_quantity) = (*item, quantity(row));
    let draw = start_quantity / 6;
    let mut tasks = Vec::new();
    for (_, mut api) in apis.drain(..).filter(|(_, a)| a.user.username == "doctor") {
        tasks.push(tokio::spawn(async move {
            let mut applied = 0;
            for _ in 0..8 {
                let delta = -draw;
                match api
                    .push_one(Mutation::AdjustStock(AdjustStock {
                        id: item,
                        delta,
                        reason: None,
                    }))
                    .await
                {
                    MutationOutcome::Applied { .. } => applied += -delta,
                    MutationOutcome::Rejected { rejection } => {
                        assert_eq!(
                            rejection.code,
                            RejectCode::InsufficientStock,
                            "{rejection:?}"
                        )
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            (applied, api)
        }));
    }
    let mut taken = 0;
    let mut doctors = Vec::new();
    for t in tasks {
        let (applied, api) = t.await.unwrap();
        taken += applied;
        doctors.push(api);
    }
    let after = doctors[0].table(Table::InventoryItems).await[&item]
        .data
        .clone()
        .unwrap()["quantity"]
        .as_i64()
        .unwrap();
    assert!(after >= 0, "stock below zero: {after}");
    assert_eq!(
        after,
        start_quantity - taken,
        "every applied draw counted once"
    );
    assert!(
        taken > 0 && after < draw,
        "the draws ran the stock down: {after}"
    );

    // Exactly once across instances: a retry that lands on another instance
    // gets the stored result and writes nothing.
    let mut first = Api::login(&servers[0], "reception").await;
    let pending = first.number(vec![Mutation::CreatePatient(new_patient("Once"))]);
    let results = first.push_pending(pending.clone()).await;
    let seq = applied_seq(&results[0].outcome);
    let (count_before, ..) = sequence(&cluster, &url);
    for server in &servers[1..] {
        let mut retry = Api::login(server, "reception").await;
        retry.client_id = first.client_id;
        let again = retry.push_pending(pending.clone()).await;
        assert_eq!(again, results, "the same answer from another instance");
    }
    let (count_after, ..) = sequence(&cluster, &url);
    assert_eq!(count_before, count_after, "a retry writes nothing");
    let changes_of_it: i64 = cluster.with_client(&url, |c| {
        c.query_one(
            "SELECT COUNT(*) FROM changes WHERE client_id = $1 AND mutation_id = 1",
            &[&first.client_id],
        )
        .unwrap()
        .get(0)
    });
    assert_eq!(changes_of_it, 1);
    assert!(seq as i64 <= count_after);
    assert_gap_free(&cluster, &url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_on_one_instance_reaches_subscribers_on_the_others_in_milliseconds() {
    let (_cluster, _url, servers) = instances_without_polling(3);
    let mut writer = Api::login(&servers[0], "reception").await;
    let mut subscribers = Vec::new();
    for server in &servers[1..] {
        let api = Api::login(server, "doctor").await;
        let mut ws = Ws::hello(server, &api, 0).await;
        ws.until_caught_up().await;
        subscribers.push(ws);
    }
    let mut latencies = Vec::new();
    for i in 0..20 {
        let p = new_patient(&format!("Fan{i}"));
        let id = p.id;
        let sent = Instant::now();
        writer.push_one(Mutation::CreatePatient(p)).await;
        for ws in &mut subscribers {
            ws.until_row(|r| r.id == id).await;
            latencies.push(sent.elapsed());
        }
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let max = *latencies.last().unwrap();
    eprintln!(
        "cross-instance push→delivery: p50 {p50:?}, max {max:?} (includes the push round trip)"
    );
    // Polling here comes every 5 s (2.5 s on average): every delivery well
    // within that came by a wake-up. (Tens of ms on a quiet machine; the
    // bound is loose for a loaded one.)
    assert!(p50 < Duration::from_millis(500), "p50 {p50:?}");
    assert!(max < Duration::from_millis(2500), "max {max:?}");
}

/// Waits for a socket to be told it is over with one of `codes`; returns
/// how long it took.
async fn until_ended(ws: &mut Ws, codes: &[ErrorCode]) -> Duration {
    let started = Instant::now();
    loop {
        match ws.next().await {
            Some(ServerMessage::Error(e)) => {
                assert!(codes.contains(&e.code), "{e:?}");
                assert!(ws.next().await.is_none(), "closed after the error");
                return started.elapsed();
            }
            Some(_) => {}
            None => panic!("closed without saying why"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sign_out_and_disable_on_one_instance_close_sockets_on_the_others() {
    let (_cluster, _url, servers) = instances_without_polling(3);
    // Sign-out on instance 0 ends the same token's socket on instance 1.
    let doctor = Api::login(&servers[0], "doctor").await;
    let mut ws = Ws::hello(&servers[1], &doctor, 0).await;
    ws.until_caught_up().await;
    let started = Instant::now();
    assert_eq!(
        doctor.post("/v1/logout").send().await.unwrap().status(),
        204
    );
    until_ended(&mut ws, &[ErrorCode::Unauthorized]).await;
    let took = started.elapsed();
    eprintln!("sign-out on A closed the socket on B in {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");

    // A new account, disabled by an admin on instance 0: its sockets on 1 and 2 close.
    let mut admin = Api::login(&servers[0], "admin").await;
    let id = Uuid::now_v7();
    applied_seq(
        &admin
            .push_one(Mutation::CreateStaff(CreateStaff {
                id,
                username: "temp.nurse".into(),
                display_name: "Temp".into(),
                role: clinic_shared::model::Role::Assistant,
                password: "long-enough-password".into(),
            }))
            .await,
    );
    let mut sockets = Vec::new();
    for server in &servers[1..] {
        let login = login_raw(&server.base, "temp.nurse", "long-enough-password").await;
        assert_eq!(login.status(), 200);
        let login: clinic_shared::protocol::LoginResponse = login.json().await.unwrap();
        let api = Api {
            http: http(),
            base: server.base.clone(),
            token: login.token,
            user: login.user,
            client_id: Uuid::now_v7(),
            next_mutation: 1,
        };
        let mut ws = Ws::hello(server, &api, 0).await;
        ws.until_caught_up().await;
        sockets.push((ws, api));
    }
    let started = Instant::now();
    applied_seq(
        &admin
            .push_one(Mutation::SetStaffActive(SetStaffActive {
                id,
                active: false,
            }))
            .await,
    );
    for (ws, api) in &mut sockets {
        // Whichever arrives first closes it: the ended session ("signed
        // out") or the staff row in the feed ("account disabled").
        until_ended(ws, &[ErrorCode::SessionChanged, ErrorCode::Unauthorized]).await;
        assert_eq!(api.get("/v1/me").send().await.unwrap().status(), 401);
    }
    let took = started.elapsed();
    eprintln!("disable on A closed the sockets on B and C in {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");

    // `clinic-server user …` against the database, beside running instances.
    let out = servers[2].admin(
        &[
            "user",
            "add",
            "--username",
            "cli.made",
            "--display-name",
            "Made By CLI",
            "--role",
            "doctor",
        ],
        Some("long-enough-pw\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for server in &servers {
        assert_eq!(
            login_raw(&server.base, "cli.made", "long-enough-pw")
                .await
                .status(),
            200
        );
    }
    let cli_made = {
        let login: clinic_shared::protocol::LoginResponse =
            login_raw(&servers[0].base, "cli.made", "long-enough-pw")
                .await
                .json()
                .await
                .unwrap();
        Api {
            http: http(),
            base: servers[0].base.clone(),
            token: login.token,
            user: login.user,
            client_id: Uuid::now_v7(),
            next_mutation: 1,
        }
    };
    let mut ws = Ws::hello(&servers[0], &cli_made, 0).await;
    ws.until_caught_up().await;
    let started = Instant::now();
    let out = servers[2].admin(
        &["user", "set-password", "cli.made"],
        Some("another-long-pw\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    until_ended(&mut ws, &[ErrorCode::Unauthorized]).await;
    let took = started.elapsed();
    eprintln!(
        "set-password by the CLI closed the socket on A in {took:?} (includes the CLI's run)"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
}

/// Starts a long-poll of `api` at its current cursor and waits until the
/// instance counts it as waiting; returns its answer's `(when, status,
/// body)` once it comes.
async fn waiting_long_poll(
    server: &Server,
    api: &Api,
) -> tokio::task::JoinHandle<(Instant, u16, String)> {
    let cursor = api.pull(0, 0).await.cursor;
    let waiting_before = healthz(&server.base).await["waiting_pulls"]
        .as_u64()
        .unwrap();
    let poll = api
        .get(&format!(
            "/v1/pull?cursor={cursor}&wait=30&client_id={}",
            api.client_id
        ))
        .send();
    let poll = tokio::spawn(async move {
        let response = poll.await.unwrap();
        let at = Instant::now();
        let status = response.status().as_u16();
        (at, status, response.text().await.unwrap())
    });
    until_pulls_waiting(&server.base, waiting_before).await;
    poll
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_and_sign_in_throttling_are_shared_by_every_instance() {
    // Both polls every 5 s: what is faster came by the security wake-up.
    let (_cluster, _url, servers) = instances_with(
        3,
        &[
            "--external-poll-ms",
            "5000",
            "--security-poll-ms",
            "5000",
            "--signin-free-failures",
            "3",
            "--signin-backoff-ms",
            "3000",
        ],
    );
    // A role change made through instance 0 answers a long-poll waiting on
    // instance 1 at once, with the new role, and ends a socket on instance 2.
    let mut admin = Api::login(&servers[0], "admin").await;
    let doctor2 = staff_id(&admin, "doctor2").await;
    let on_1 = Api::login(&servers[1], "doctor2").await;
    let on_2 = Api::login(&servers[2], "doctor2").await;
    let mut ws = Ws::hello(&servers[2], &on_2, 0).await;
    ws.until_caught_up().await;
    let epoch_before = on_1.pull(0, 0).await.epoch;
    let poll = waiting_long_poll(&servers[1], &on_1).await;
    let started = Instant::now();
    applied_seq(
        &admin
            .push_one(Mutation::SetStaffRole(SetStaffRole {
                id: doctor2,
                role: clinic_shared::model::Role::Assistant,
            }))
            .await,
    );
    let (at, status, body) = tokio::time::timeout(WAIT, poll).await.unwrap().unwrap();
    assert_eq!(status, 200, "{body}");
    let page: clinic_shared::protocol::PullResponse = serde_json::from_str(&body).unwrap();
    assert_eq!(page.role, clinic_shared::model::Role::Assistant);
    assert!(page.epoch > epoch_before, "the epoch rose");
    let poll_took = at.saturating_duration_since(started);
    until_ended(&mut ws, &[ErrorCode::SessionChanged]).await;
    let ws_took = started.elapsed();
    eprintln!(
        "role change on A: long-poll on B answered in {poll_took:?}, socket on C told in {ws_took:?}"
    );
    assert!(poll_took < Duration::from_secs(1), "{poll_took:?}");
    assert!(ws_took < Duration::from_secs(1), "{ws_took:?}");

    // Signing out everywhere through instance 2 answers a long-poll of the
    // account waiting on instance 0 with 401.
    let elsewhere = Api::login(&servers[0], "doctor2").await;
    let poll = waiting_long_poll(&servers[0], &elsewhere).await;
    let started = Instant::now();
    let ended = on_2
        .post("/v1/logout?everywhere=true")
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 200);
    let (at, status, body) = tokio::time::timeout(WAIT, poll).await.unwrap().unwrap();
    let took = at.saturating_duration_since(started);
    eprintln!("sign-out everywhere on C: long-poll on A answered {status} in {took:?}");
    assert_eq!(status, 401, "{body}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    for api in [&elsewhere, &on_1, &on_2] {
        assert_eq!(api.get("/v1/me").send().await.unwrap().status(), 401);
    }

    // Failed sign-ins through different instances count together: three
    // are free, the fourth locks the username on every instance.
    for (i, server) in servers.iter().cycle().take(4).enumerate() {
        let r = login_raw(&server.base, "reception", "wrong-guess").await;
        assert_eq!(r.status(), 401, "failure {i} through instance {}", i % 3);
    }
    for server in &servers {
        let r = login_raw(&server.base, "reception", "demo").await;
        assert_eq!(r.status(), 429, "locked on {}", server.base);
    }
    let events = admin
        .get("/v1/audit/sign-ins?limit=20")
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let events: serde_json::Value = events.json().await.unwrap();
    let failures = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["username"] == "reception" && e["outcome"] == "failure")
        .count();
    assert_eq!(failures, 4, "one sign-in log for every instance: {events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_resume_anywhere_and_lose_nothing_when_an_instance_or_the_database_restarts() {
    let (mut cluster, url, mut servers) = instances(3);
    let mut api = Api::login(&servers[0], "reception").await;
    let (_, cursor) = api.pull_all(0).await;
    let mut made = Vec::new();
    for i in 0..10 {
        let p = new_patient(&format!("Kept{i}"));
        made.push(p.id);
        applied_seq(&api.push_one(Mutation::CreatePatient(p)).await);
    }
    // Instance 0 dies; the same client goes on with instance 1 from its cursor.
    servers[0].kill();
    api.rebase(&servers[1]);
    let (rows, cursor) = api.pull_all(cursor).await;
    for id in &made {
        assert!(
            rows.iter().any(|r| r.id == *id),
            "acknowledged {id} is there"
        );
    }
    let p = new_patient("After");
    made.push(p.id);
    applied_seq(&api.push_one(Mutation::CreatePatient(p)).await);

    // A subscriber on instance 2 stays live across a database restart.
    let watcher = Api::login(&servers[2], "doctor").await;
    let mut ws = Ws::hello(&servers[2], &watcher, cursor).await;
    ws.until_caught_up().await;
    let pg_restart = tokio::task::spawn_blocking(move || {
        cluster.restart("immediate");
        cluster
    });
    let cluster = pg_restart.await.unwrap();
    // Pushes while and after it restarts: retried until applied.
    let p = new_patient("DuringRestart");
    let id = p.id;
    let pending = api.number(vec![Mutation::CreatePatient(p)]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = api
            .post("/v1/push")
            .json(&clinic_shared::protocol::PushRequest {
                client_id: api.client_id,
                mutations: pending.clone(),
            })
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            let body: clinic_shared::protocol::PushResponse = response.json().await.unwrap();
            applied_seq(&body.results[0].outcome);
            break;
        }
        assert_eq!(response.status(), 503, "a database restart is retryable");
        assert!(
            Instant::now() < deadline,
            "the instance never got the database back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    made.push(id);
    let arrived = tokio::time::timeout(Duration::from_secs(10), ws.until_row(|r| r.id == id)).await;
    assert!(
        arrived.is_ok(),
        "the subscriber on instance 2 got the change after the restart"
    );

    // The killed instance comes back and serves what everyone did.
    servers[0].start_again();
    let again = Api::login(&servers[0], "reception").await;
    let patients = again.table(Table::Patients).await;
    for id in &made {
        assert!(patients.contains_key(id), "acknowledged {id} survived");
    }
    assert_gap_free(&cluster, &url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_copies_a_sqlite_clinic_so_desks_continue_without_a_resync() {
    let mut sqlite = Server::start();
    let mut api = Api::login(&sqlite, "doctor").await;
    for i in 0..5 {
        applied_seq(
            &api.push_one(Mutation::CreatePatient(new_patient(&format!("Moved{i}"))))
                .await,
        );
    }
    let (rows_before, cursor) = api.pull_all(0).await;
    let some_patient = rows_before
        .iter()
        .find(|r| r.table == Table::Patients)
        .unwrap()
        .id;
    let history_before: serde_json::Value = api
        .get(&format!("/v1/history/patients/{some_patient}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    sqlite.kill();

    let cluster = PgCluster::start();
    let url = cluster.create_database();
    let from = format!("sqlite:{}", sqlite.db_path().display());
    let out = run_with_stdin(
        std::process::Command::new(bin("clinic-server"))
            .args(["migrate", "--from", &from, "--to", &url]),
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["head"].as_u64(), Some(cursor));
    assert!(
        report["access_entries"].as_u64() > Some(0) && report["sign_in_events"].as_u64() > Some(0),
        "the logs came along: {report}"
    );
    // The hash chains, as `audit verify` sees them, are the same on both.
    let verify = |args: &[&str]| {
        let out = run_with_stdin(
            std::process::Command::new(bin("clinic-server")).args(args),
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let dir = sqlite.dir.path().to_string_lossy().into_owned();
    let on_sqlite = verify(&["--data-dir", &dir, "audit", "verify"]);
    let on_pg = verify(&[
        "--data-dir",
        &dir,
        "--database-url",
        &url,
        "audit",
        "verify",
    ]);
    assert_eq!(on_pg, on_sqlite);
    assert!(on_pg.contains("chain intact"), "{on_pg}");
    // Into a database that has data: refused, and says why.
    let out = run_with_stdin(
        std::process::Command::new(bin("clinic-server"))
            .args(["migrate", "--from", &from, "--to", &url]),
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds data"));

    let pg = Server::start_pg(&url, &[]);
    // The same token, client and cursor: nothing new to fetch, and the next
    // mutation id continues.
    api.rebase(&pg);
    let page = api.pull(cursor, 0).await;
    assert!(
        page.rows.is_empty() && page.cursor == cursor && !page.more,
        "{page:?}"
    );
    assert_eq!(page.last_mutation_id, Some(5));
    let (rows_after, _) = api.pull_all(0).await;
    assert_eq!(rows_after, rows_before);
    let history_after: serde_json::Value = api
        .get(&format!("/v1/history/patients/{some_patient}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history_after, history_before);
    let seq = applied_seq(
        &api.push_one(Mutation::CreatePatient(new_patient("AfterMove")))
            .await,
    );
    assert_eq!(seq, cursor + 1, "the sequence continues");
}

/// The value of the sample line `series value` (no labels) in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_postgresql_report_the_database_size_and_every_servers_sessions() {
    let (_cluster, _url, servers) = instances_with(
        2,
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--metrics-refresh-ms",
            "50",
        ],
    );
    // One sign-in on each instance: both count the two sessions in the database.
    let mut apis = Vec::new();
    for server in &servers {
        apis.push(Api::login(server, "reception").await);
    }
    applied_seq(
        &apis[0]
            .push_one(Mutation::CreatePatient(new_patient("Metric")))
            .await,
    );
    for server in &servers {
        let url = server.metrics_url.clone().unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            let text = http().get(&url).send().await.unwrap().text().await.unwrap();
            assert!(text.contains("backend=\"postgresql\""), "{text}");
            let size = sample(&text, "clinic_database_size_bytes");
            let sessions = sample(&text, "clinic_sessions_open");
            if size.is_some_and(|s| s > 0.0) && sessions == Some(2.0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "size {size:?}, sessions {sessions:?}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
