//! The facade driven deterministically: the real server (its router, engine,
//! writer and SQLite storage) in this process behind an in-memory transport
//! (no sockets), a manual clock on both sides, and sync rounds driven
//! explicitly (no background loop, no timers, no sleeps).
//!
//! Covered: work goes on offline and queues; on reconnect the queue is
//! pushed and the pending change is rebased on what others changed
//! meanwhile; a refused change rolls back with the server's reason; a role
//! change seen on a pull purges what the new role may not read.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test that cannot proceed should panic

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use clinic_client::{
    ClientConfig, ClientError, ClientResult, ClinicClient, LiveLink, ManualClock, PullQuery,
    SyncConfig, Transport,
};
use clinic_shared::model::{Role, Staff, Table, Timestamp};
use clinic_shared::mutation::*;
use clinic_shared::protocol::{
    AccessLogResponse, ClinicalRecords, ErrorBody, ErrorCode, GlassRequest, HistoryResponse,
    LoginRequest, LoginResponse, PasswordChangeRequest, PasswordChangeResponse, PullResponse,
    PushRequest, PushResponse, RejectCode, ViewReport, ViewsRecorded,
};
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tower::ServiceExt;
use uuid::Uuid;

/// The real server's router, called in process. `offline` makes every
/// call fail as an unreachable server would.
struct InProcess {
    router: axum::Router,
    offline: AtomicBool,
}

impl InProcess {
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        uri: String,
        token: Option<&str>,
        body: Option<String>,
    ) -> ClientResult<T> {
        if self.offline.load(Ordering::SeqCst) {
            return Err(ClientError::offline("the network is down (test)"));
        }
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let mut request = request
            .body(body.map_or_else(Body::empty, Body::from))
            .unwrap();
        // The socket layer would add the peer address (sign-in throttling).
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                40000,
            ))));
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        if status == StatusCode::NO_CONTENT {
            return serde_json::from_str("null").map_err(|e| ClientError::Protocol(e.to_string()));
        }
        if !status.is_success() {
            let body: ErrorBody = serde_json::from_slice(&bytes).unwrap();
            return Err(match body.code {
                ErrorCode::Unauthorized | ErrorCode::TokenExpired => {
                    ClientError::Auth(body.message)
                }
                _ => ClientError::Server(body),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }
}

impl Transport for InProcess {
    fn login<'a>(
        &'a self,
        _server: &'a str,
        request: &'a LoginRequest,
    ) -> BoxFuture<'a, ClientResult<LoginResponse>> {
        let body = serde_json::to_string(request).unwrap();
        Box::pin(self.call(Method::POST, "/v1/login".into(), None, Some(body)))
    }
    fn logout<'a>(&'a self, _server: &'a str, token: &'a str) -> BoxFuture<'a, ClientResult<()>> {
        Box::pin(self.call(Method::POST, "/v1/logout".into(), Some(token), None))
    }
    fn me<'a>(&'a self, _server: &'a str, token: &'a str) -> BoxFuture<'a, ClientResult<Staff>> {
        Box::pin(self.call(Method::GET, "/v1/me".into(), Some(token), None))
    }
    fn history<'a>(
        &'a self,
        _server: &'a str,
        token: &'a str,
        table: Table,
        id: Uuid,
    ) -> BoxFuture<'a, ClientResult<HistoryResponse>> {
        let uri = format!("/v1/history/{table}/{id}");
        Box::pin(self.call(Method::GET, uri, Some(token), None))
    }
    fn push<'a>(
        &'a self,
        _server: &'a str,
        token: &'a str,
        request: &'a PushRequest,
    ) -> BoxFuture<'a, ClientResult<PushResponse>> {
        let body = serde_json::to_string(request).unwrap();
        Box::pin(self.call(Method::POST, "/v1/push".into(), Some(token), Some(body)))
    }
    fn pull<'a>(
        &'a self,
        _server: &'a str,
        token: &'a str,
        q: PullQuery,
    ) -> BoxFuture<'a, ClientResult<PullResponse>> {
        let uri = format!(
            "/v1/pull?cursor={}&wait={}&client_id={}",
            q.cursor, q.wait_secs, q.client_id
        );
        Box::pin(self.call(Method::GET, uri, Some(token), None))
    }
    fn open_live<'a>(&'a self, _server: &'a str) -> BoxFuture<'a, ClientResult<Box<dyn LiveLink>>> {
        Box::pin(async { Err(ClientError::offline("no live link in process")) })
    }
    fn change_password<'a>(
        &'a self,
        _server: &'a str,
        token: &'a str,
        request: &'a PasswordChangeRequest,
    ) -> BoxFuture<'a, ClientResult<PasswordChangeResponse>> {
        let body = serde_json::to_string(request).unwrap();
        Box::pin(self.call(Method::POST, "/v1/password".into(), Some(token), Some(body)))
    }
    fn report_views<'a>(
        &'a self,
        _server: &'a str,
        token: &'a str,
        report: &'a ViewReport,
    ) -> BoxFuture<'a, ClientResult<ViewsRecorded>> {
        let body = serde_json::to_string(report).unwrap();
        Box::pin(self.call(
            Method::POST,
            "/v1/audit/views".into(),
            Some(token),
            Some(body),
        ))
    }
    fn access_log<'a>(
        &'a self,
        _server: &'a str,
        token: &'a str,
        patient: Uuid,
    ) -> BoxFuture<'a, ClientResult<AccessLogResponse>> {
        let uri = format!("/v1/audit/access?patient={patient}");
        Box::pin(self.call(Method::GET, uri, Some(token), None))
    }
    fn clinical<'a>(
        &'a self,
        _server: &'a str,
        token: &'a str,
        patient: Uuid,
        client_id: Uuid,
    ) -> BoxFuture<'a, ClientResult<ClinicalRecords>> {
        let uri = format!("/v1/patients/{patient}/clinical?client_id={client_id}");
        Box::pin(self.call(Method::GET, uri, Some(token), None))
    }
    fn break_glass<'a>(
        &'a self,
        _server: &'a str,
        token: &'a str,
        patient: Uuid,
        request: &'a GlassRequest,
    ) -> BoxFuture<'a, ClientResult<ClinicalRecords>> {
        let body = serde_json::to_string(request).unwrap();
        let uri = format!("/v1/patients/{patient}/glass");
        Box::pin(self.call(Method::POST, uri, Some(token), Some(body)))
    }
}

/// The server in process, on a SQLite file with the demo clinic, with the
/// same manual clock as the clients.
struct World {
    _dir: tempfile::TempDir,
    storage: Arc<clinic_server::storage::sqlite::SqliteStorage>,
    app: Option<clinic_server::App>,
    clock: Arc<ManualClock>,
    server_clock: clinic_server::Clock,
}

impl World {
    fn new() -> World {
        World::in_zone(None)
    }

    /// A world whose server is set to the clinic zone `zone`.
    fn in_zone(zone: Option<&str>) -> World {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(
            clinic_server::storage::sqlite::SqliteStorage::open(dir.path().join("clinic.db"))
                .unwrap(),
        );
        let clock = ManualClock::new("2026-12-01T08:00:00Z".parse().unwrap());
        let c = clock.clone();
        let server_clock: clinic_server::Clock =
            Arc::new(move || clinic_client::Clock::now(c.as_ref()));
        clinic_server::demo::seed_if_empty(storage.as_ref(), &server_clock).unwrap();
        let mut config = clinic_server::Config {
            clock: server_clock.clone(),
            demo: true,
            ..clinic_server::Config::default()
        };
        if let Some(zone) = zone {
            config.time_zone = zone.to_owned();
        }
        let app = clinic_server::App::start(storage.clone(), config).unwrap();
        World {
            _dir: dir,
            storage,
            app: Some(app),
            clock,
            server_clock,
        }
    }

    /// A desk signed in as `user`, with its own data directory and link.
    async fn desk(&self, user: &str) -> Desk {
        let app = self.app.as_ref().unwrap();
        let link = Arc::new(InProcess {
            router: app.router(),
            offline: AtomicBool::new(false),
        });
        let dir = tempfile::tempdir().unwrap();
        let config = ClientConfig::new(dir.path())
            .with_sync(SyncConfig {
                websocket: false,
                ..SyncConfig::default()
            })
            .with_transport(link.clone())
            .with_clock(self.clock.clone());
        let client = ClinicClient::open(config).await.unwrap();
        let signed_in = client
            .sign_in("http://in-process", user, "demo")
            .await
            .unwrap();
        assert!(!signed_in.offline);
        client.sync_once().await.unwrap();
        Desk {
            _dir: dir,
            client,
            link,
        }
    }

    async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
    }
}

struct Desk {
    _dir: tempfile::TempDir,
    client: ClinicClient,
    link: Arc<InProcess>,
}

impl Desk {
    fn set_offline(&self, offline: bool) {
        self.link.offline.store(offline, Ordering::SeqCst);
    }

    async fn patient(
        &self,
        id: Uuid,
    ) -> Option<clinic_client::Entity<clinic_shared::model::Patient>> {
        self.client.entity(Table::Patients, id).await.unwrap()
    }
}

fn doctor_id(staff: &[clinic_client::Entity<Staff>], username: &str) -> Uuid {
    staff
        .iter()
        .find(|s| s.data.username == username)
        .map(|s| s.id)
        .unwrap()
}

#[tokio::test]
async fn offline_work_queues_then_rebases_on_reconnect() {
    let world = World::new();
    let a = world.desk("reception").await;
    let b = world.desk("admin").await;
    let patient = a.client.patients().await.unwrap()[0].clone();

    // A loses the network and keeps working.
    a.set_offline(true);
    world.clock.advance(60);
    let address = UpdatePatient {
        id: patient.id,
        base_version: patient.version,
        fields: PatientPatch {
            address: Some(Some("7 Quay Street".into())),
            ..Default::default()
        },
    };
    a.client
        .mutate(Mutation::UpdatePatient(address))
        .await
        .unwrap();
    let new_id = a.client.new_id();
    a.client
        .mutate(Mutation::CreatePatient(CreatePatient {
            id: new_id,
            first_name: "Offline".into(),
            last_name: "Walkin".into(),
            date_of_birth: "1990-05-06".parse().unwrap(),
            phone: None,
            email: None,
            address: None,
            sex: None,
            emergency_contact: None,
            emergency_phone: None,
            insurer: None,
            insurance_number: None,
            alerts: None,
        }))
        .await
        .unwrap();
    let failed = a.client.sync_once().await;
    assert!(
        matches!(failed, Err(ClientError::Offline { .. })),
        "{failed:?}"
    );
    let pending = a.client.pending().await.unwrap();
    assert_eq!(pending.len(), 2, "both changes queued");
    assert_eq!(pending[0].created_at, world.clock_now());
    assert!(
        a.patient(new_id).await.unwrap().pending,
        "shown at once, pending"
    );

    // Meanwhile B changes another field of the same patient.
    let phone = UpdatePatient {
        id: patient.id,
        base_version: patient.version,
        fields: PatientPatch {
            phone: Some(Some("+44 20 7946 0000".into())),
            ..Default::default()
        },
    };
    b.client
        .mutate(Mutation::UpdatePatient(phone))
        .await
        .unwrap();
    b.client.sync_once().await.unwrap();

    // A reconnects: its queue goes out and its edit is rebased on B's.
    a.set_offline(false);
    let report = a.client.sync_once().await.unwrap();
    assert_eq!((report.applied, report.rejected, report.pending), (2, 0, 0));
    let merged = a.patient(patient.id).await.unwrap();
    assert_eq!(merged.data.address.as_deref(), Some("7 Quay Street"));
    assert_eq!(merged.data.phone.as_deref(), Some("+44 20 7946 0000"));
    assert!(!merged.pending);
    assert!(!a.patient(new_id).await.unwrap().pending, "confirmed");
    assert_eq!(
        a.client.last_synced_at().await.unwrap(),
        Some(world.clock_now())
    );
    b.client.sync_once().await.unwrap();
    assert_eq!(
        b.patient(patient.id).await.unwrap().data.address.as_deref(),
        Some("7 Quay Street")
    );
    world.stop().await;
}

#[tokio::test]
async fn a_refused_change_rolls_back_with_the_servers_reason() {
    let world = World::new();
    let a = world.desk("reception").await;
    let b = world.desk("reception").await;
    let staff = a.client.staff().await.unwrap();
    let doctor = doctor_id(&staff, "doctor");
    let patient = a.client.patients().await.unwrap()[0].id;
    let slot = |id| BookAppointment {
        id,
        patient_id: patient,
        doctor_id: doctor,
        start: Timestamp::from_unix(1_900_000_000).unwrap(),
        end: Timestamp::from_unix(1_900_001_800).unwrap(),
        reason: None,
        correction: false,
    };
    // A books offline; B takes the same slot first.
    a.set_offline(true);
    let mine = a.client.new_id();
    a.client
        .mutate(Mutation::BookAppointment(slot(mine)))
        .await
        .unwrap();
    assert!(
        a.client
            .row(Table::Appointments, mine)
            .await
            .unwrap()
            .is_some()
    );
    let theirs = b.client.new_id();
    b.client
        .mutate(Mutation::BookAppointment(slot(theirs)))
        .await
        .unwrap();
    b.client.sync_once().await.unwrap();

    world.clock.advance(30);
    a.set_offline(false);
    let mut events = a.client.subscribe();
    let report = a.client.sync_once().await.unwrap();
    assert_eq!(report.rejected, 1);
    assert!(
        a.client
            .row(Table::Appointments, mine)
            .await
            .unwrap()
            .is_none(),
        "the refused booking is gone"
    );
    assert!(
        a.client
            .row(Table::Appointments, theirs)
            .await
            .unwrap()
            .is_some(),
        "the slot shows the other booking"
    );
    let refused = a.client.rejected().await.unwrap();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].rejection.code, RejectCode::DoubleBooked);
    assert_eq!(refused[0].rejected_at, world.clock_now());
    assert!(a.client.pending().await.unwrap().is_empty());
    let mut saw_rejection = false;
    while let Ok(ev) = events.try_recv() {
        saw_rejection |= ev.origin == clinic_client::ChangeOrigin::Rejection
            && ev.rows.contains(&(Table::Appointments, mine));
    }
    assert!(saw_rejection, "the UI was told which row rolled back");
    world.stop().await;
}

#[tokio::test]
async fn a_role_change_seen_on_a_pull_purges_what_the_role_may_not_read() {
    let world = World::new();
    let desk = world.desk("reception").await;
    assert!(
        !desk.client.invoices().await.unwrap().is_empty(),
        "reception sees billing"
    );
    clinic_server::admin::set_role(
        world.storage.as_ref(),
        "reception",
        Role::Assistant,
        &world.server_clock,
    )
    .unwrap();
    desk.client.sync_once().await.unwrap();
    let who = desk.client.identity().await.unwrap().user.unwrap();
    assert_eq!(who.role, Role::Assistant);
    assert!(
        desk.client.invoices().await.unwrap().is_empty(),
        "billing purged"
    );
    assert!(desk.client.rows(Table::Payments).await.unwrap().is_empty());
    assert!(
        !desk.client.inventory().await.unwrap().is_empty(),
        "and the assistant's inventory synced from the start"
    );
    world.stop().await;
}

impl World {
    fn clock_now(&self) -> Timestamp {
        clinic_client::Clock::now(self.clock.as_ref())
    }
}

#[tokio::test]
async fn the_desk_works_in_the_clinic_zone_and_checks_before_queuing() {
    use clinic_client::{Delivery, SlotQuery};
    use clinic_shared::protocol::{ClashWith, RejectionDetail};
    use clinic_shared::time::LocalTimeKind;
    let world = World::in_zone(Some("America/New_York"));
    let a = world.desk("reception").await;
    let b = world.desk("reception").await;
    // The zone came with the sign-in; "today" is New York's (08:00Z is 03:00 there).
    assert_eq!(
        a.client.session_info().await.unwrap().time_zone,
        "America/New_York"
    );
    assert_eq!(a.client.today().await.unwrap().to_string(), "2026-12-01");
    let staff = a.client.staff().await.unwrap();
    let (doyle, lee) = (doctor_id(&staff, "doctor"), doctor_id(&staff, "doctor2"));
    let patients = a.client.patients().await.unwrap();
    let (anna, ben) = (patients[0].id, patients[1].id);
    let date = |s: &str| s.parse::<chrono::NaiveDate>().unwrap();
    let time = |s: &str| chrono::NaiveTime::parse_from_str(s, "%H:%M").unwrap();
    let at = |d: &str, t: &str| {
        let (a, d, t) = (a.client.clone(), date(d), time(t));
        async move { a.local_instant(d, t).await.unwrap() }
    };
    let book = |id, patient, doctor, start: Timestamp, minutes: i64| {
        Mutation::BookAppointment(BookAppointment {
            id,
            patient_id: patient,
            doctor_id: doctor,
            start,
            end: Timestamp::from_unix(start.unix() + minutes * 60).unwrap(),
            reason: None,
            correction: false,
        })
    };
    // 14 March 2027 is the spring-forward Sunday: 01:30 is EST, 03:30 EDT, 02:30 does not exist.
    let early = at("2027-03-14", "01:30").await;
    let late = at("2027-03-14", "03:30").await;
    let skipped = at("2027-03-14", "02:30").await;
    let evening_before = at("2027-03-13", "23:30").await;
    assert_eq!(early.instant.to_string(), "2027-03-14T06:30:00Z");
    assert_eq!(late.instant.to_string(), "2027-03-14T07:30:00Z");
    assert_eq!(skipped.kind, LocalTimeKind::Skipped);
    for (start, doctor) in [
        (early.instant, doyle),
        (late.instant, doyle),
        (evening_before.instant, lee),
    ] {
        a.client
            .mutate(book(a.client.new_id(), anna, doctor, start, 30))
            .await
            .unwrap();
    }
    let day = a
        .client
        .day_schedule(date("2027-03-14"), None)
        .await
        .unwrap();
    let starts: Vec<String> = day.iter().map(|e| e.data.start.to_string()).collect();
    assert_eq!(
        starts,
        ["2027-03-14T06:30:00Z", "2027-03-14T07:30:00Z"],
        "the local day, not the UTC one (23:30 the evening before is 04:30Z on the 14th)"
    );
    a.client.sync_once().await.unwrap();

    // A check before queuing: the patient is already with Dr Doyle at 01:30.
    let clash = book(a.client.new_id(), anna, lee, early.instant, 30);
    let refusal = a
        .client
        .check(clash.clone())
        .await
        .unwrap()
        .expect("refused");
    assert!(
        matches!(refusal.detail.as_deref(), Some(RejectionDetail::Clash { with: ClashWith::Patient, doctor_id, .. }) if *doctor_id == doyle),
        "{refusal:?}"
    );
    assert!(
        a.client.pending().await.unwrap().is_empty(),
        "a check queues nothing"
    );
    assert!(
        a.client
            .check(book(a.client.new_id(), ben, lee, early.instant, 30))
            .await
            .unwrap()
            .is_none()
    );

    // Free slots for Anna with Dr Lee around 09:00 on 15 March: 09:00 is free for both.
    world.clock.advance(60);
    let nine = at("2027-03-15", "09:00").await.instant;
    a.client
        .mutate(book(a.client.new_id(), anna, doyle, nine, 30))
        .await
        .unwrap();
    let slots = a
        .client
        .free_slots(SlotQuery {
            doctor_id: lee,
            patient_id: anna,
            start: nine,
            minutes: 30,
            count: 3,
            moving: None,
            from_start: None,
        })
        .await
        .unwrap();
    let starts: Vec<String> = slots.iter().map(|s| s.start.to_string()).collect();
    // Anna is with Dr Doyle 09:00–09:30, so the nearest are 08:30 and 09:30, then 08:15.
    assert_eq!(
        starts,
        [
            "2027-03-15T12:30:00Z",
            "2027-03-15T13:30:00Z",
            "2027-03-15T12:15:00Z"
        ]
    );
    // "The next free half hour from 09:00": never before it, earliest first.
    let next = a
        .client
        .free_slots(SlotQuery {
            doctor_id: lee,
            patient_id: anna,
            start: nine,
            minutes: 30,
            count: 2,
            moving: None,
            from_start: Some(true),
        })
        .await
        .unwrap();
    let starts: Vec<String> = next.iter().map(|s| s.start.to_string()).collect();
    assert_eq!(starts, ["2027-03-15T13:30:00Z", "2027-03-15T13:45:00Z"]);

    // What became of a change, without the network: queued, confirmed, refused.
    let mine = a.client.new_id();
    let receipt = a
        .client
        .mutate(book(
            mine,
            ben,
            doyle,
            at("2027-03-16", "10:00").await.instant,
            30,
        ))
        .await
        .unwrap();
    assert!(matches!(
        a.client.mutation_state(receipt.mutation_id).await.unwrap(),
        Delivery::Queued { .. }
    ));
    b.client.sync_once().await.unwrap();
    let theirs = b.client.new_id();
    b.client
        .mutate(book(
            theirs,
            anna,
            doyle,
            at("2027-03-16", "10:15").await.instant,
            30,
        ))
        .await
        .unwrap();
    b.client.sync_once().await.unwrap();
    a.client.sync_once().await.unwrap();
    let state = a.client.mutation_state(receipt.mutation_id).await.unwrap();
    let Delivery::Rejected { rejection } = state else {
        panic!("{state:?}")
    };
    assert!(
        matches!(rejection.detail.as_deref(), Some(RejectionDetail::Clash { with: ClashWith::Doctor, appointment_id, .. }) if *appointment_id == theirs)
    );
    let first = a.client.mutation_state(1).await.unwrap();
    assert_eq!(first, Delivery::Confirmed);
    assert!(a.client.mutation_state(999).await.is_err());
    world.stop().await;
}

#[tokio::test]
async fn an_administrators_reset_holds_the_desk_until_the_person_chooses_a_password() {
    let world = World::new();
    let desk = world.desk("reception").await;
    let anna = desk.client.patients().await.unwrap()[0].id;
    clinic_server::admin::set_password(
        world.storage.as_ref(),
        "reception",
        "temporary pass 4711",
        &world.server_clock,
    )
    .unwrap();
    // The reset ended the desk's session: the next round finds out, the
    // change made meanwhile stays queued.
    desk.client
        .mutate(Mutation::UpdatePatient(UpdatePatient {
            id: anna,
            base_version: desk.patient(anna).await.unwrap().version,
            fields: PatientPatch {
                phone: Some(Some("+49 30 5550 1000".into())),
                ..PatientPatch::default()
            },
        }))
        .await
        .unwrap();
    let _ = desk.client.sync_once().await;
    assert_eq!(desk.client.pending().await.unwrap().len(), 1);
    let again = desk
        .client
        .sign_in("http://in-process", "reception", "temporary pass 4711")
        .await
        .unwrap();
    assert!(again.must_change_password, "the server asks for a new one");
    assert!(desk.client.identity().await.unwrap().must_change_password);
    // Nothing syncs until then: the queued change waits, it is not lost.
    let _ = desk.client.sync_once().await;
    assert_eq!(desk.client.pending().await.unwrap().len(), 1);
    // Too short: refused here, in words, before the server is asked.
    match desk
        .client
        .change_password("temporary pass 4711", "short")
        .await
    {
        Err(ClientError::Invalid(m)) => assert!(m.contains("12"), "{m}"),
        other => panic!("a short password must be refused: {other:?}"),
    }
    // The wrong current password: the server refuses, the sentence says which.
    match desk
        .client
        .change_password("not the temporary one", "a much better passphrase")
        .await
    {
        Err(e) => assert!(
            e.to_string().to_lowercase().contains("current password"),
            "{e}"
        ),
        Ok(_) => panic!("the wrong current password must be refused"),
    }
    desk.client
        .change_password("temporary pass 4711", "a much better passphrase")
        .await
        .unwrap();
    assert!(!desk.client.identity().await.unwrap().must_change_password);
    desk.client.sync_once().await.unwrap();
    assert!(
        desk.client.pending().await.unwrap().is_empty(),
        "the queued change went out under the new password"
    );
    // The new password opens this computer's copy offline (the key file was
    // re-wrapped); the old one does not.
    desk.client.lock();
    desk.set_offline(true);
    assert!(desk.client.unlock("temporary pass 4711").await.is_err());
    desk.client
        .unlock("a much better passphrase")
        .await
        .unwrap();
    desk.set_offline(false);
    world.stop().await;
}

#[tokio::test]
async fn chart_views_reach_the_access_log_also_when_opened_offline() {
    use clinic_shared::protocol::AccessKind;
    let world = World::new();
    let reception = world.desk("reception").await;
    let admin = world.desk("admin").await;
    let anna = reception.client.patients().await.unwrap()[0].id;
    // Opened offline: kept on the desk, reported when the server answers.
    reception.set_offline(true);
    reception.client.chart(anna).await.unwrap().unwrap();
    reception
        .client
        .report_view(Table::Patients, anna)
        .await
        .unwrap();
    assert!(
        matches!(
            reception.client.send_views().await,
            Err(ClientError::Offline { .. })
        ),
        "the view stays queued while the server cannot be reached"
    );
    let views = |log: &AccessLogResponse| {
        log.entries
            .iter()
            .filter(|e| {
                e.kind == AccessKind::View && e.user_name.as_deref() == Some("Robin Reception")
            })
            .count()
    };
    let before = admin.client.access_log(anna).await.unwrap();
    assert_eq!(
        views(&before),
        0,
        "nothing reached the server while offline"
    );
    reception.set_offline(false);
    reception.client.sync_once().await.unwrap();
    let after = admin.client.access_log(anna).await.unwrap();
    assert_eq!(
        views(&after),
        1,
        "the offline view was reported once: {after:?}"
    );
    // Only administrators read the access log.
    match reception.client.access_log(anna).await {
        Err(ClientError::Server(body)) => assert_eq!(body.code, ErrorCode::Forbidden),
        other => panic!("reception must not read the access log: {other:?}"),
    }
    world.stop().await;
}

/// Care through the facade (clinic_shared::care): a doctor's chart of
/// someone else's patient says its text is withheld; asking the server
/// says why; breaking the glass needs a reason, fills the mirror in and
/// says until when; at its end the text leaves the mirror again.
#[tokio::test]
async fn a_doctor_breaks_the_glass_for_someone_elses_patient_and_the_grant_ends() {
    let world = World::new();
    let doyle = world.desk("doctor").await;
    let sato = world.desk("doctor2").await;
    let patient = doyle.client.new_id();
    doyle
        .client
        .mutate(Mutation::CreatePatient(CreatePatient {
            id: patient,
            first_name: "Ines".into(),
            last_name: "Glas".into(),
            date_of_birth: "1975-07-07".parse().unwrap(),
            phone: None,
            email: None,
            address: None,
            sex: None,
            emergency_contact: None,
            emergency_phone: None,
            insurer: None,
            insurance_number: None,
            alerts: None,
        }))
        .await
        .unwrap();
    let record = doyle.client.new_id();
    doyle
        .client
        .mutate(Mutation::AddTreatmentRecord(AddTreatmentRecord {
            id: record,
            patient_id: patient,
            appointment_id: None,
            notes: "Night sweats, weight loss".into(),
            diagnosis: "Under investigation".into(),
            procedures: vec![],
            recorded_at: "2026-12-01T08:00:00Z".parse().unwrap(),
        }))
        .await
        .unwrap();
    doyle.client.sync_once().await.unwrap();
    sato.client.sync_once().await.unwrap();

    let own = doyle.client.chart(patient).await.unwrap().unwrap();
    assert!(!own.care.withheld, "her own patient");
    let chart = sato.client.chart(patient).await.unwrap().unwrap();
    assert!(chart.care.withheld);
    assert_eq!(chart.treatment_records.len(), 1, "the record is listed");
    assert_eq!(
        chart.treatment_records[0].data.notes, "",
        "its text is not here"
    );
    let asked = sato.client.clinical_records(patient).await.unwrap_err();
    assert_eq!(asked.code(), "not_in_care");
    // A word is not a reason: refused here, naming the field, nothing sent.
    let short = sato
        .client
        .break_the_glass(patient, "urgent")
        .await
        .unwrap_err();
    let ClientError::Rejected(r) = &short else {
        panic!("{short:?}")
    };
    assert_eq!(r.fields[0].field, "reason");
    assert!(
        sato.client
            .chart(patient)
            .await
            .unwrap()
            .unwrap()
            .care
            .withheld
    );

    let granted = sato
        .client
        .break_the_glass(patient, "Seen in Dr. Doyle's absence, results due")
        .await
        .unwrap();
    let ends = granted.grant_ends_at.expect("a grant ends");
    let now = clinic_client::Clock::now(world.clock.as_ref());
    assert_eq!(ends.unix() - now.unix(), 12 * 3600, "a shift");
    let open = sato.client.chart(patient).await.unwrap().unwrap();
    assert!(!open.care.withheld);
    assert_eq!(open.care.grant_ends_at, Some(ends));
    assert_eq!(
        open.treatment_records[0].data.notes,
        "Night sweats, weight loss"
    );

    // The shift is over: the text leaves this desk, and the server withholds it again.
    world.clock.advance(12 * 3600 + 1);
    let after = sato.client.chart(patient).await.unwrap().unwrap();
    assert!(after.care.withheld);
    assert_eq!(after.care.grant_ends_at, None);
    assert_eq!(after.treatment_records[0].data.notes, "");
    assert_eq!(
        sato.client
            .clinical_records(patient)
            .await
            .unwrap_err()
            .code(),
        "not_in_care"
    );
    world.stop().await;
}

#[tokio::test]
async fn a_visit_is_billed_from_the_price_list_and_the_day_is_reported() {
    use clinic_shared::model::{Invoice, InvoiceLine, InvoiceStatus, PaymentMethod};
    let world = World::in_zone(Some("Europe/Berlin"));
    let admin = world.desk("admin").await;
    let desk = world.desk("reception").await;
    // The demo clinic's price list, entries on offer by code; an admin's
    // retired entry goes to the end.
    let list = admin.client.price_list().await.unwrap();
    let ecg = list.iter().find(|p| p.data.code == "ECG").unwrap();
    admin
        .client
        .mutate(Mutation::UpdatePriceItem(UpdatePriceItem {
            id: ecg.id,
            base_version: ecg.version,
            fields: PriceItemPatch {
                retired: Some(true),
                ..PriceItemPatch::default()
            },
        }))
        .await
        .unwrap();
    admin.client.sync_once().await.unwrap();
    desk.client.sync_once().await.unwrap();
    let codes: Vec<String> = desk
        .client
        .price_list()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.data.code)
        .collect();
    assert_eq!(codes, ["C15", "C30", "C60", "CERT", "LAB", "VAC", "ECG"]);

    // A 30-minute visit today; its draft gets the 30-minute entry only.
    let staff = desk.client.staff().await.unwrap();
    let doyle = doctor_id(&staff, "doctor");
    let anna = desk.client.patients().await.unwrap()[0].id;
    let today = desk.client.today().await.unwrap();
    let three = chrono::NaiveTime::from_hms_opt(15, 0, 0).unwrap();
    let start = desk
        .client
        .local_instant(today, three)
        .await
        .unwrap()
        .instant;
    let visit = desk.client.new_id();
    desk.client
        .mutate(Mutation::BookAppointment(BookAppointment {
            id: visit,
            patient_id: anna,
            doctor_id: doyle,
            start,
            end: Timestamp::from_unix(start.unix() + 1800).unwrap(),
            reason: None,
            correction: false,
        }))
        .await
        .unwrap();
    let (draft, _) = desk.client.draft_invoice_for_visit(visit).await.unwrap();
    let inv = desk
        .client
        .entity::<Invoice>(Table::Invoices, draft)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inv.data.status, InvoiceStatus::Draft);
    assert_eq!(inv.data.appointment_id, Some(visit));
    assert_eq!(
        inv.data.lines,
        [InvoiceLine {
            description: "Consultation".into(),
            quantity: 1,
            unit_price_cents: 6500,
        }]
    );
    // A visit is billed once.
    let again = desk
        .client
        .draft_invoice_for_visit(visit)
        .await
        .unwrap_err();
    assert!(
        again.to_string().contains("already has an invoice"),
        "{again}"
    );

    // Issued, then paid in two parts; the report adds it up by method.
    desk.client.sync_once().await.unwrap();
    let inv = desk
        .client
        .entity::<Invoice>(Table::Invoices, draft)
        .await
        .unwrap()
        .unwrap();
    desk.client
        .mutate(Mutation::IssueInvoice(IssueInvoice {
            id: draft,
            base_version: inv.version,
            issued_at: desk.client.now(),
        }))
        .await
        .unwrap();
    for (cents, method) in [(4000, PaymentMethod::Cash), (2500, PaymentMethod::Card)] {
        desk.client
            .mutate(Mutation::RecordPayment(RecordPayment {
                id: desk.client.new_id(),
                invoice_id: draft,
                amount_cents: cents,
                method,
                paid_at: desk.client.now(),
            }))
            .await
            .unwrap();
    }
    desk.client.sync_once().await.unwrap();
    let paid = desk
        .client
        .entity::<Invoice>(Table::Invoices, draft)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(paid.data.status, InvoiceStatus::Paid);
    let report = desk.client.day_report(today, None).await.unwrap();
    let net = |m: PaymentMethod| {
        report
            .by_method
            .iter()
            .find(|t| t.method == Some(m))
            .map(|t| t.net_cents)
    };
    assert_eq!(net(PaymentMethod::Cash), Some(4000));
    assert_eq!(net(PaymentMethod::Card), Some(2500));
    assert_eq!(net(PaymentMethod::Transfer), Some(0));
    assert_eq!((report.total.net_cents, report.total.count), (6500, 2));
    assert_eq!((report.issued_count, report.issued_cents), (1, 6500));
    assert_eq!(report.by_staff.len(), 1);
    assert_eq!(report.by_staff[0].taken_cents, 6500);
    assert!(report.open_invoices.iter().all(|i| i.id != draft));
    // Narrowed to someone who took nothing: empty, the clinic's open
    // invoices still listed.
    let nobody = desk.client.day_report(today, Some(doyle)).await.unwrap();
    assert_eq!(nobody.total.count, 0);
    let pdf = desk.client.print_day_report(today, None).await.unwrap();
    assert!(pdf.starts_with(b"%PDF"));
}
