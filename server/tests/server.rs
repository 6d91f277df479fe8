//! End-to-end tests of the sync server: the real binary, a real SQLite
//! file, real HTTP and WebSocket clients.

#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic

use clinic_e2e::*;
use clinic_shared::model::{Table, Timestamp};
use clinic_shared::mutation::*;
use clinic_shared::protocol::{
    ClientMessage, ErrorBody, ErrorCode, HistoryResponse, MutationOutcome, RejectCode,
    ServerMessage, limits,
};
use serde_json::json;
use std::time::{Duration, Instant};
use uuid::Uuid;

fn new_patient(first: &str) -> CreatePatient {
    CreatePatient {
        id: Uuid::now_v7(),
        first_name: first.into(),
        last_name: "Tester".into(),
        date_of_birth: "1980-04-02".parse().unwrap(),
        phone: Some("+1 555 010 2030".into()),
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

fn book(patient: Uuid, doctor: Uuid, start: &str, end: &str) -> BookAppointment {
    BookAppointment {
        id: Uuid::now_v7(),
        patient_id: patient,
        doctor_id: doctor,
        start: ts(start),
        end: ts(end),
        reason: Some("Check-up".into()),
        correction: false,
    }
}

async fn create_patient(api: &mut Api, first: &str) -> (Uuid, u64) {
    let p = new_patient(first);
    let id = p.id;
    let seq = applied_seq(&api.push_one(Mutation::CreatePatient(p)).await);
    (id, seq)
}

async fn error_body(response: reqwest::Response) -> (u16, ErrorBody) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not an error body: {text}"));
    (status, body)
}

#[tokio::test]
async fn login_accepts_demo_staff_and_refuses_bad_credentials_without_a_hint() {
    let server = Server::start();
    let api = Api::login(&server, "reception").await;
    assert_eq!(api.user.username, "reception");
    let (status, wrong_password) =
        error_body(login_raw(&server.base, "reception", "nope").await).await;
    assert_eq!(status, 401);
    let (status, unknown_user) = error_body(login_raw(&server.base, "nobody", "demo").await).await;
    assert_eq!(status, 401);
    assert_eq!(wrong_password, unknown_user, "no hint which part was wrong");
    assert_eq!(wrong_password.code, ErrorCode::Unauthorized);
    // Malformed login body: named, not a crash.
    let response = http()
        .post(format!("{}/v1/login", server.base))
        .body("{\"username\":1}")
        .send()
        .await
        .unwrap();
    let (status, body) = error_body(response).await;
    assert_eq!(status, 400);
    assert_eq!(body.field.as_deref(), Some("username"));
}

#[tokio::test]
async fn every_endpoint_refuses_missing_unknown_and_expired_tokens() {
    let server = Server::start();
    let api = Api::login(&server, "admin").await;
    let patient = api.table(Table::Patients).await.into_keys().next().unwrap();
    let endpoints: Vec<(reqwest::Method, String)> = vec![
        (reqwest::Method::POST, "/v1/logout".into()),
        (reqwest::Method::GET, "/v1/me".into()),
        (reqwest::Method::POST, "/v1/push".into()),
        (reqwest::Method::GET, "/v1/pull?cursor=0".into()),
        (
            reqwest::Method::GET,
            format!("/v1/history/patients/{patient}"),
        ),
    ];
    let client = http();
    for (method, path) in &endpoints {
        let url = format!("{}{path}", server.base);
        let none = client.request(method.clone(), &url).send().await.unwrap();
        assert_eq!(none.status(), 401, "{path} without a token");
        assert!(none.headers().contains_key("www-authenticate"));
        let forged = client
            .request(method.clone(), &url)
            .bearer_auth("f".repeat(64))
            .send()
            .await
            .unwrap();
        let (status, body) = error_body(forged).await;
        assert_eq!(
            (status, body.code),
            (401, ErrorCode::Unauthorized),
            "{path} with a forged token"
        );
    }
    // Expire every session in the database, as time passing would.
    let db = rusqlite::Connection::open(server.db_path()).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute(
        "UPDATE sessions SET expires_at = '2000-01-01T00:00:00Z'",
        [],
    )
    .unwrap();
    for (method, path) in &endpoints {
        let url = format!("{}{path}", server.base);
        let expired = client
            .request(method.clone(), &url)
            .bearer_auth(&api.token)
            .send()
            .await
            .unwrap();
        let (status, body) = error_body(expired).await;
        assert_eq!(
            (status, body.code),
            (401, ErrorCode::TokenExpired),
            "{path} with an expired token"
        );
    }
    // The WebSocket refuses it too.
    let mut ws = Ws::connect(&server).await;
    ws.send(&ClientMessage::Hello {
        token: api.token.clone(),
        client_id: api.client_id,
        cursor: 0,
    })
    .await;
    match ws.next().await {
        Some(ServerMessage::Error(e)) => assert_eq!(e.code, ErrorCode::TokenExpired),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(ws.next().await.is_none(), "closed after refusing");
}

#[tokio::test]
async fn logout_ends_the_token_and_its_open_socket() {
    let server = Server::start();
    let api = Api::login(&server, "doctor").await;
    let mut ws = Ws::hello(&server, &api, 0).await;
    ws.until_caught_up().await;
    let response = api.post("/v1/logout").send().await.unwrap();
    assert_eq!(response.status(), 204);
    match ws.next().await {
        Some(ServerMessage::Error(e)) => assert_eq!(e.code, ErrorCode::Unauthorized),
        other => panic!("expected the socket to be told, got {other:?}"),
    }
    assert!(ws.next().await.is_none());
    assert_eq!(api.get("/v1/me").send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn push_then_pull_round_trip() {
    let server = Server::start();
    let mut api = Api::login(&server, "reception").await;
    let (_, cursor) = api.pull_all(0).await;
    let mut p = new_patient("Roundtrip");
    p.email = Some("rt@clinic.example".into());
    let id = p.id;
    let seq = applied_seq(&api.push_one(Mutation::CreatePatient(p)).await);
    assert!(seq > cursor);
    let page = api.pull(cursor, 0).await;
    assert_eq!(page.rows.len(), 1);
    let row = &page.rows[0];
    assert_eq!(
        (row.table, row.id, row.version, row.deleted),
        (Table::Patients, id, seq, false)
    );
    let data = row.data.as_ref().unwrap();
    assert_eq!(data["first_name"], "Roundtrip");
    assert_eq!(data["email"], "rt@clinic.example");
    assert_eq!(page.cursor, seq);
    assert_eq!(page.last_mutation_id, Some(1));
    // Delete: a tombstone without data.
    let del = DeletePatient {
        id,
        base_version: seq,
    };
    let del_seq = applied_seq(&api.push_one(Mutation::DeletePatient(del)).await);
    let page = api.pull(seq, 0).await;
    assert_eq!(page.rows.len(), 1);
    assert!(page.rows[0].deleted && page.rows[0].data.is_none());
    assert_eq!(page.rows[0].version, del_seq);
}

#[tokio::test]
async fn a_retried_push_is_applied_exactly_once() {
    let server = Server::start();
    let mut api = Api::login(&server, "assistant").await;
    let stock = api.table(Table::InventoryItems).await;
    let (item, row) = stock.iter().next().unwrap();
    let before = row.data.as_ref().unwrap()["quantity"].as_i64().unwrap();
    let pending = api.number(vec![
        Mutation::AdjustStock(AdjustStock {
            id: *item,
            delta: 5,
            reason: None,
        }),
        Mutation::AdjustStock(AdjustStock {
            id: *item,
            delta: -2,
            reason: Some("used".into()),
        }),
    ]);
    let first = api.push_pending(pending.clone()).await;
    // The acknowledgement was "lost": the client sends the same batch again, twice.
    let second = api.push_pending(pending.clone()).await;
    let third = api.push_pending(pending).await;
    assert_eq!(first, second);
    assert_eq!(first, third);
    let after = api.table(Table::InventoryItems).await[item]
        .data
        .as_ref()
        .unwrap()["quantity"]
        .as_i64()
        .unwrap();
    assert_eq!(after, before + 3, "applied once, not three times");
    // And the audit trail shows exactly two changes from this client.
    let doctor = Api::login(&server, "doctor").await;
    let history: HistoryResponse = doctor
        .get(&format!("/v1/history/inventory_items/{item}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mine = history
        .entries
        .iter()
        .filter(|e| e.client_id == Some(api.client_id))
        .count();
    assert_eq!(mine, 2);
}

#[tokio::test]
async fn a_mutation_id_reused_for_other_contents_is_refused_and_the_first_stands() {
    let server = Server::start();
    let mut api = Api::login(&server, "assistant").await;
    let stock = api.table(Table::InventoryItems).await;
    let (item, row) = stock.iter().next().unwrap();
    let before = row.data.as_ref().unwrap()["quantity"].as_i64().unwrap();
    let adjust = |delta| {
        Mutation::AdjustStock(AdjustStock {
            id: *item,
            delta,
            reason: None,
        })
    };
    let original = api.number(vec![adjust(5)]);
    let first = api.push_pending(original.clone()).await;
    assert!(
        matches!(first[0].outcome, MutationOutcome::Applied { .. }),
        "{first:?}"
    );
    // A client bug: the same id, another change.
    let mut reused = original.clone();
    reused[0].mutation = adjust(40);
    let refused = api.push_pending(reused).await;
    match &refused[0].outcome {
        MutationOutcome::Rejected { rejection } => {
            assert_eq!(
                rejection.code,
                RejectCode::MutationIdReused,
                "{rejection:?}"
            );
            assert!(
                rejection.message.contains("different contents"),
                "{rejection:?}"
            );
        }
        other => panic!("a reused id was answered {other:?}"),
    }
    // The true retry still gets the first answer; only the first applied.
    assert_eq!(api.push_pending(original).await, first);
    let after = api.table(Table::InventoryItems).await[item]
        .data
        .as_ref()
        .unwrap()["quantity"]
        .as_i64()
        .unwrap();
    assert_eq!(after, before + 5);
}

#[tokio::test]
async fn the_bearer_scheme_is_accepted_in_any_case() {
    let server = Server::start();
    let api = Api::login(&server, "reception").await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let status = api
            .http
            .get(format!("{}/v1/me", api.base))
            .header("Authorization", format!("{scheme}  {}", api.token))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{scheme}");
    }
    let status = api
        .http
        .get(format!("{}/v1/me", api.base))
        .header("Authorization", format!("Basic {}", api.token))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
}

#[tokio::test]
async fn mutations_apply_in_order_and_a_gap_is_deferred() {
    let server = Server::start();
    let mut api = Api::login(&server, "reception").await;
    let first = new_patient("First");
    let (first_id, second) = (first.id, new_patient("Second"));
    let pending = api.number(vec![
        Mutation::CreatePatient(first),
        Mutation::CreatePatient(second),
    ]);
    // Mutation 2 arrives alone, before 1.
    let results = api.push_pending(vec![pending[1].clone()]).await;
    match &results[0].outcome {
        MutationOutcome::Retry { error } => assert_eq!(error.code, ErrorCode::OutOfOrder),
        other => panic!("expected retry, got {other:?}"),
    }
    assert!(
        !api.table(Table::Patients)
            .await
            .values()
            .any(|r| r.data.as_ref().unwrap()["first_name"] == "Second")
    );
    // Then both, in order: both apply, 1 before 2.
    let results = api.push_pending(pending).await;
    let (s1, s2) = (
        applied_seq(&results[0].outcome),
        applied_seq(&results[1].outcome),
    );
    assert!(s1 < s2);
    assert!(api.table(Table::Patients).await.contains_key(&first_id));
}

#[tokio::test]
async fn a_bad_mutation_is_rejected_alone_and_writes_nothing() {
    let server = Server::start();
    let mut api = Api::login(&server, "reception").await;
    let (_, head) = api.pull_all(0).await;
    let mut bad = new_patient("");
    bad.email = Some("not-an-email".into());
    bad.phone = Some("call me maybe".into());
    let good = new_patient("Good");
    let results = api
        .push(vec![
            Mutation::CreatePatient(bad),
            Mutation::CreatePatient(good),
        ])
        .await;
    let r = rejection(&results[0].outcome);
    assert_eq!(r.code, RejectCode::Validation);
    let fields: Vec<&str> = r.fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, ["first_name", "phone", "email"]);
    let seq = applied_seq(&results[1].outcome);
    assert_eq!(
        seq,
        head + 1,
        "the rejected mutation consumed no sequence number"
    );
    let (rows, _) = api.pull_all(head).await;
    assert_eq!(rows.len(), 1, "only the good row was written");
}

#[tokio::test]
async fn clinic_rules_are_enforced_with_clear_reasons() {
    let server = Server::start();
    let mut reception = Api::login(&server, "reception").await;
    let mut doctor_api = Api::login(&server, "doctor").await;
    let mut assistant = Api::login(&server, "assistant").await;
    let doctor = staff_id(&reception, "doctor").await;
    let (patient, _) = create_patient(&mut reception, "Rules").await;
    let (other, _) = create_patient(&mut reception, "Other").await;

    // No double booking, even partly overlapping; back-to-back is fine.
    let a = book(
        patient,
        doctor,
        "2031-03-03T09:00:00Z",
        "2031-03-03T09:30:00Z",
    );
    applied_seq(&reception.push_one(Mutation::BookAppointment(a)).await);
    let clash = book(
        other,
        doctor,
        "2031-03-03T09:15:00Z",
        "2031-03-03T09:45:00Z",
    );
    let r = reception.push_one(Mutation::BookAppointment(clash)).await;
    assert_eq!(rejection(&r).code, RejectCode::DoubleBooked);
    assert!(rejection(&r).message.contains("already has appointment"));
    let next = book(
        other,
        doctor,
        "2031-03-03T09:30:00Z",
        "2031-03-03T10:00:00Z",
    );
    applied_seq(&reception.push_one(Mutation::BookAppointment(next)).await);
    // A non-doctor cannot be booked.
    let not_doctor = book(
        patient,
        reception.user.id,
        "2031-03-04T09:00:00Z",
        "2031-03-04T09:30:00Z",
    );
    assert_eq!(
        rejection(
            &reception
                .push_one(Mutation::BookAppointment(not_doctor))
                .await
        )
        .code,
        RejectCode::InvalidReference
    );

    // Stock never below zero; deltas commute.
    let item = assistant
        .table(Table::InventoryItems)
        .await
        .into_iter()
        .next()
        .unwrap();
    let qty = item.1.data.as_ref().unwrap()["quantity"].as_i64().unwrap();
    let over = AdjustStock {
        id: item.0,
        delta: -(qty + 1),
        reason: None,
    };
    let r = assistant.push_one(Mutation::AdjustStock(over)).await;
    assert_eq!(rejection(&r).code, RejectCode::InsufficientStock);
    let exact = AdjustStock {
        id: item.0,
        delta: -qty,
        reason: None,
    };
    applied_seq(&assistant.push_one(Mutation::AdjustStock(exact)).await);

    // No appointment or record for an unknown or deleted patient.
    let unknown = book(
        Uuid::now_v7(),
        doctor,
        "2031-03-05T09:00:00Z",
        "2031-03-05T09:30:00Z",
    );
    assert_eq!(
        rejection(&reception.push_one(Mutation::BookAppointment(unknown)).await).code,
        RejectCode::PatientUnavailable
    );
    let (gone, seq) = create_patient(&mut reception, "Gone").await;
    applied_seq(
        &reception
            .push_one(Mutation::DeletePatient(DeletePatient {
                id: gone,
                base_version: seq,
            }))
            .await,
    );
    let for_deleted = book(gone, doctor, "2031-03-05T10:00:00Z", "2031-03-05T10:30:00Z");
    let r = reception
        .push_one(Mutation::BookAppointment(for_deleted))
        .await;
    assert_eq!(rejection(&r).code, RejectCode::PatientUnavailable);
    assert!(rejection(&r).message.contains("deleted"));
    let record = AddTreatmentRecord {
        id: Uuid::now_v7(),
        patient_id: gone,
        appointment_id: None,
        notes: "n".into(),
        diagnosis: "d".into(),
        procedures: vec![],
        recorded_at: ts("2031-03-05T10:00:00Z"),
    };
    assert_eq!(
        rejection(
            &doctor_api
                .push_one(Mutation::AddTreatmentRecord(record))
                .await
        )
        .code,
        RejectCode::PatientUnavailable
    );

    // Status flow: scheduled → completed is not a step.
    let appt = book(
        patient,
        doctor,
        "2031-03-06T09:00:00Z",
        "2031-03-06T09:30:00Z",
    );
    let appt_id = appt.id;
    applied_seq(&reception.push_one(Mutation::BookAppointment(appt)).await);
    let skip = SetAppointmentStatus {
        id: appt_id,
        status: clinic_shared::model::AppointmentStatus::Completed,
        at: None,
    };
    assert_eq!(
        rejection(
            &reception
                .push_one(Mutation::SetAppointmentStatus(skip))
                .await
        )
        .code,
        RejectCode::InvalidTransition
    );

    // Roles: reception cannot write clinical records, assistants cannot book.
    let record = AddTreatmentRecord {
        id: Uuid::now_v7(),
        patient_id: patient,
        appointment_id: None,
        notes: "n".into(),
        diagnosis: "d".into(),
        procedures: vec![],
        recorded_at: ts("2031-03-05T10:00:00Z"),
    };
    assert_eq!(
        rejection(
            &reception
                .push_one(Mutation::AddTreatmentRecord(record))
                .await
        )
        .code,
        RejectCode::Forbidden
    );
    let by_assistant = book(
        patient,
        doctor,
        "2031-03-07T09:00:00Z",
        "2031-03-07T09:30:00Z",
    );
    assert_eq!(
        rejection(
            &assistant
                .push_one(Mutation::BookAppointment(by_assistant))
                .await
        )
        .code,
        RejectCode::Forbidden
    );
}

#[tokio::test]
async fn concurrent_edits_merge_by_field_and_conflicts_carry_both_values() {
    let server = Server::start();
    let mut a = Api::login(&server, "reception").await;
    let mut b = Api::login(&server, "admin").await;
    let (patient, v1) = create_patient(&mut a, "Conflict").await;

    // Different fields from the same base: both apply (merge).
    let phone = PatientPatch {
        phone: Some(Some("+1 555 999 0000".into())),
        ..Default::default()
    };
    applied_seq(
        &a.push_one(Mutation::UpdatePatient(UpdatePatient {
            id: patient,
            base_version: v1,
            fields: phone,
        }))
        .await,
    );
    let email = PatientPatch {
        email: Some(Some("merged@clinic.example".into())),
        ..Default::default()
    };
    let v3 = applied_seq(
        &b.push_one(Mutation::UpdatePatient(UpdatePatient {
            id: patient,
            base_version: v1,
            fields: email,
        }))
        .await,
    );
    let row = a.table(Table::Patients).await[&patient].clone();
    let data = row.data.unwrap();
    assert_eq!(
        (data["phone"].as_str(), data["email"].as_str()),
        (Some("+1 555 999 0000"), Some("merged@clinic.example"))
    );

    // The same field from a stale base: a conflict with both values.
    let mine = PatientPatch {
        phone: Some(Some("+1 555 111 1111".into())),
        ..Default::default()
    };
    let r = b
        .push_one(Mutation::UpdatePatient(UpdatePatient {
            id: patient,
            base_version: v1,
            fields: mine,
        }))
        .await;
    let r = rejection(&r);
    assert_eq!(r.code, RejectCode::Conflict);
    assert_eq!(r.conflicts.len(), 1);
    assert_eq!(r.conflicts[0].field, "phone");
    assert_eq!(r.conflicts[0].yours, json!("+1 555 111 1111"));
    assert_eq!(r.conflicts[0].theirs, json!("+1 555 999 0000"));
    assert!(!r.conflicts[0].clinical);
    // From the current version it applies.
    let mine = PatientPatch {
        phone: Some(Some("+1 555 111 1111".into())),
        ..Default::default()
    };
    let v4 = applied_seq(
        &b.push_one(Mutation::UpdatePatient(UpdatePatient {
            id: patient,
            base_version: v3,
            fields: mine,
        }))
        .await,
    );
    // A delete decided on a stale view is a conflict too; on the current one it applies.
    let stale = a
        .push_one(Mutation::DeletePatient(DeletePatient {
            id: patient,
            base_version: v3,
        }))
        .await;
    let stale = rejection(&stale);
    assert_eq!(stale.code, RejectCode::Conflict);
    assert_eq!(stale.conflicts[0].field, "phone");

    // Clinical content: the same note edited from two of its doctor's desks
    // (a doctor edits only their own records, so this is the conflict).
    let mut d1 = Api::login(&server, "doctor").await;
    let mut d2 = Api::login(&server, "doctor").await;
    let record = AddTreatmentRecord {
        id: Uuid::now_v7(),
        patient_id: patient,
        appointment_id: None,
        notes: "Initial note".into(),
        diagnosis: "Sprain".into(),
        procedures: vec!["Examination".into()],
        recorded_at: ts("2026-11-20T10:00:00Z"),
    };
    let record_id = record.id;
    let base = applied_seq(&d1.push_one(Mutation::AddTreatmentRecord(record)).await);
    let edit = |notes: &str| TreatmentRecordPatch {
        notes: Some(notes.into()),
        ..Default::default()
    };
    applied_seq(
        &d1.push_one(Mutation::UpdateTreatmentRecord(UpdateTreatmentRecord {
            id: record_id,
            base_version: base,
            fields: edit("Doctor one's note"),
        }))
        .await,
    );
    let r = d2
        .push_one(Mutation::UpdateTreatmentRecord(UpdateTreatmentRecord {
            id: record_id,
            base_version: base,
            fields: edit("Doctor two's note"),
        }))
        .await;
    let r = rejection(&r);
    assert_eq!(r.code, RejectCode::Conflict);
    assert_eq!(r.conflicts[0].field, "notes");
    assert_eq!(r.conflicts[0].yours, json!("Doctor two's note"));
    assert_eq!(r.conflicts[0].theirs, json!("Doctor one's note"));
    assert!(r.conflicts[0].clinical);
    // Nothing was overwritten.
    let rec = d2.table(Table::TreatmentRecords).await[&record_id]
        .data
        .clone()
        .unwrap();
    assert_eq!(rec["notes"], "Doctor one's note");
    // A client's own earlier edit never conflicts with its next one.
    let own = d1
        .push_one(Mutation::UpdateTreatmentRecord(UpdateTreatmentRecord {
            id: record_id,
            base_version: base,
            fields: edit("Doctor one, again"),
        }))
        .await;
    applied_seq(&own);
    applied_seq(
        &a.push_one(Mutation::DeletePatient(DeletePatient {
            id: patient,
            base_version: v4,
        }))
        .await,
    );
}

#[tokio::test]
async fn reception_never_receives_clinical_content_on_pull_or_websocket() {
    let server = Server::start();
    let reception = Api::login(&server, "reception").await;
    let mut doctor = Api::login(&server, "doctor").await;
    let (rows, cursor) = reception.pull_all(0).await;
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r.table != Table::TreatmentRecords));
    assert!(
        rows.iter().any(|r| r.table == Table::Invoices),
        "reception sees billing"
    );
    let (doctor_rows, _) = doctor.pull_all(0).await;
    assert!(
        doctor_rows
            .iter()
            .any(|r| r.table == Table::TreatmentRecords),
        "the demo has records"
    );
    assert!(
        doctor_rows.iter().all(|r| r.table != Table::Invoices),
        "doctors do not see billing"
    );

    let mut ws = Ws::hello(&server, &reception, 0).await;
    let (caught_up, _) = ws.until_caught_up().await;
    assert!(caught_up.iter().all(|r| r.table != Table::TreatmentRecords));
    let mut doctor_ws = Ws::hello(&server, &doctor, cursor).await;
    doctor_ws.until_caught_up().await;

    let patient = reception
        .table(Table::Patients)
        .await
        .into_keys()
        .next()
        .unwrap();
    let record = AddTreatmentRecord {
        id: Uuid::now_v7(),
        patient_id: patient,
        appointment_id: None,
        notes: "Confidential".into(),
        diagnosis: "Private".into(),
        procedures: vec![],
        recorded_at: ts("2026-11-20T10:00:00Z"),
    };
    let record_id = record.id;
    applied_seq(&doctor.push_one(Mutation::AddTreatmentRecord(record)).await);
    // Then something reception may see, so we know its stream moved past the record.
    let marker = new_patient("Marker");
    let marker_id = marker.id;
    doctor.push_one(Mutation::CreatePatient(marker)).await;
    let seen = doctor_ws.until_row(|r| r.id == record_id).await;
    assert_eq!(seen.table, Table::TreatmentRecords);
    loop {
        match ws.next().await {
            Some(ServerMessage::Changes { rows, .. }) => {
                assert!(
                    rows.iter().all(|r| r.table != Table::TreatmentRecords),
                    "clinical row leaked"
                );
                if rows.iter().any(|r| r.id == marker_id) {
                    break;
                }
            }
            Some(_) => {}
            None => panic!("socket closed"),
        }
    }
    // History of a clinical record is not for reception.
    let response = reception
        .get(&format!("/v1/history/treatment_records/{record_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn a_websocket_subscriber_receives_what_another_client_commits() {
    let server = Server::start();
    let mut writer = Api::login(&server, "reception").await;
    let reader = Api::login(&server, "doctor").await;
    let mut ws = Ws::hello(&server, &reader, 0).await;
    let (_, cursor) = ws.until_caught_up().await;
    // Over HTTP…
    let (id, seq) = create_patient(&mut writer, "Live").await;
    let row = ws.until_row(|r| r.id == id).await;
    assert_eq!(row.version, seq);
    assert!(seq > cursor);
    // …and over another WebSocket, whose push is acknowledged in the stream.
    let mut writer_ws = Ws::hello(&server, &writer, seq).await;
    writer_ws.until_caught_up().await;
    let p = new_patient("ViaSocket");
    let pid = p.id;
    let pending = writer.number(vec![Mutation::CreatePatient(p)]);
    let mutation_id = pending[0].mutation_id;
    writer_ws
        .send(&ClientMessage::Push {
            request_id: 7,
            mutations: pending,
        })
        .await;
    let mut got_result = false;
    let mut got_ack = false;
    while !(got_result && got_ack) {
        match writer_ws.next().await {
            Some(ServerMessage::PushResult {
                request_id,
                results,
            }) => {
                assert_eq!(request_id, 7);
                applied_seq(&results[0].outcome);
                got_result = true;
            }
            Some(ServerMessage::Changes {
                rows,
                last_mutation_id,
                ..
            }) => {
                if rows.iter().any(|r| r.id == pid) {
                    assert_eq!(
                        last_mutation_id,
                        Some(mutation_id),
                        "ack travels with the effects"
                    );
                    got_ack = true;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    ws.until_row(|r| r.id == pid).await;
    // Ping is answered.
    ws.send(&ClientMessage::Ping { nonce: 42 }).await;
    loop {
        match ws.next().await {
            Some(ServerMessage::Pong { nonce }) => {
                assert_eq!(nonce, 42);
                break;
            }
            Some(_) => {}
            None => panic!("closed"),
        }
    }
}

#[tokio::test]
async fn long_poll_returns_as_soon_as_a_change_commits() {
    let server = Server::start();
    let mut writer = Api::login(&server, "reception").await;
    let reader = Api::login(&server, "reception").await;
    let (_, cursor) = reader.pull_all(0).await;
    // Nothing to wait for: a short wait returns empty at its deadline.
    let empty = reader.pull(cursor, 1).await;
    assert!(empty.rows.is_empty());
    assert_eq!(empty.cursor, cursor);
    let started = Instant::now();
    let poll = tokio::spawn(async move { reader.pull(cursor, 60).await });
    // Let the poll reach the server before the write (if the write came first
    // the poll would return at once, which is also correct but not the point).
    tokio::task::yield_now().await;
    let (id, _) = create_patient(&mut writer, "Polled").await;
    let page = tokio::time::timeout(Duration::from_secs(30), poll)
        .await
        .expect("returned before its 60 s wait")
        .unwrap();
    assert!(page.rows.iter().any(|r| r.id == id));
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// A long-poll woken by a commit is answered from the feed's recent batches:
/// every change since its cursor in order (a row changed twice comes twice),
/// only the tables its role reads, and the acknowledgement of its own
/// client's mutations.
#[tokio::test]
async fn a_woken_long_poll_carries_each_change_its_role_reads_and_its_acknowledgement() {
    let server = Server::start();
    let mut reception = Api::login(&server, "reception").await;
    let mut doctor = Api::login(&server, "doctor").await;
    let (rows, cursor) = reception.pull_all(0).await;
    let patient = rows
        .iter()
        .find(|r| r.table == Table::Patients && !r.deleted)
        .unwrap()
        .clone();
    let poll_from = |api: &Api, cursor: u64| {
        let request = api
            .get(&format!(
                "/v1/pull?cursor={cursor}&wait=30&client_id={}",
                api.client_id
            ))
            .send();
        tokio::spawn(async move {
            let response = request.await.unwrap();
            assert_eq!(response.status(), 200);
            response
                .json::<clinic_shared::protocol::PullResponse>()
                .await
                .unwrap()
        })
    };

    // Two edits of one patient in one push, by the waiting desk's own client.
    let waiting = healthz(&server.base).await["waiting_pulls"]
        .as_u64()
        .unwrap();
    let poll = poll_from(&reception, cursor);
    until_pulls_waiting(&server.base, waiting).await;
    let edit = |fields: PatientPatch| {
        Mutation::UpdatePatient(UpdatePatient {
            id: patient.id,
            base_version: patient.version,
            fields,
        })
    };
    let results = reception
        .push(vec![
            edit(PatientPatch {
                phone: Some(Some("+1 555 010 9999".into())),
                ..PatientPatch::default()
            }),
            edit(PatientPatch {
                email: Some(Some("polled@example.org".into())),
                ..PatientPatch::default()
            }),
        ])
        .await;
    let seqs: Vec<u64> = results.iter().map(|r| applied_seq(&r.outcome)).collect();
    let page = poll.await.unwrap();
    let versions: Vec<u64> = page
        .rows
        .iter()
        .filter(|r| r.id == patient.id)
        .map(|r| r.version)
        .collect();
    assert_eq!(versions, seqs, "each change of the row, in order");
    let last = page.rows.iter().rfind(|r| r.id == patient.id).unwrap();
    let data = last.data.as_ref().unwrap();
    assert_eq!(data["phone"], "+1 555 010 9999");
    assert_eq!(data["email"], "polled@example.org");
    assert_eq!(page.cursor, seqs[1]);
    assert!(!page.more);
    assert_eq!(page.last_mutation_id, Some(reception.next_mutation - 1));

    // A clinical record reception may not read: the poll wakes, moves its
    // cursor past it and delivers nothing.
    let waiting = healthz(&server.base).await["waiting_pulls"]
        .as_u64()
        .unwrap();
    let poll = poll_from(&reception, page.cursor);
    until_pulls_waiting(&server.base, waiting).await;
    let record = AddTreatmentRecord {
        id: Uuid::now_v7(),
        patient_id: patient.id,
        appointment_id: None,
        notes: "Confidential".into(),
        diagnosis: "Private".into(),
        procedures: vec![],
        recorded_at: ts("2026-11-20T10:00:00Z"),
    };
    let seq = applied_seq(&doctor.push_one(Mutation::AddTreatmentRecord(record)).await);
    let page = poll.await.unwrap();
    assert!(
        page.rows.iter().all(|r| r.table != Table::TreatmentRecords),
        "clinical row leaked: {:?}",
        page.rows
    );
    assert_eq!(page.cursor, seq);
    assert_eq!(page.head, seq);
}

#[tokio::test]
async fn malformed_and_oversized_input_is_answered_and_the_server_keeps_serving() {
    let server = Server::start();
    let api = Api::login(&server, "reception").await;
    // (name, body, status, code, field named)
    type Case<'a> = (&'a str, Vec<u8>, u16, ErrorCode, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("not json", b"{{{".to_vec(), 400, ErrorCode::BadRequest, None),
        ("truncated", br#"{"client_id":"#.to_vec(), 400, ErrorCode::BadRequest, None),
        ("wrong type", br#"{"client_id":5,"mutations":[]}"#.to_vec(), 400, ErrorCode::BadRequest, Some("client_id")),
        (
            "unknown mutation",
            format!(r#"{{"client_id":"{}","mutations":[{{"mutation_id":1,"mutation":{{"type":"drop_tables","args":{{}}}}}}]}}"#, api.client_id).into_bytes(),
            400,
            ErrorCode::BadRequest,
            Some("mutations[0].mutation.type"),
        ),
        ("empty push", format!(r#"{{"client_id":"{}","mutations":[]}}"#, api.client_id).into_bytes(), 422, ErrorCode::InvalidField, Some("mutations")),
        ("invalid utf-8", vec![b'{', 0xff, 0xfe, b'}'], 400, ErrorCode::BadRequest, None),
        ("deep nesting", "[".repeat(50_000).into_bytes(), 400, ErrorCode::BadRequest, None),
        ("oversized", vec![b' '; 2 * 1024 * 1024], 413, ErrorCode::PayloadTooLarge, None),
    ];
    for (name, body, status, code, field) in cases {
        let response = api
            .post("/v1/push")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (got_status, got) = error_body(response).await;
        assert_eq!(
            (got_status, got.code),
            (status, code),
            "{name}: {}",
            got.message
        );
        if let Some(field) = field {
            assert_eq!(got.field.as_deref(), Some(field), "{name}");
        }
    }
    // Query parameters are named like body fields: a value that does not
    // fit its type (u64 cursor one past the maximum), a missing one, a
    // repeated one.
    for (query, field, says) in [
        ("cursor=minus-one", "cursor", "invalid digit"),
        ("cursor=18446744073709551616", "cursor", "too large"),
        ("cursor=0&limit=many", "limit", "invalid digit"),
        ("cursor=0&client_id=zz", "client_id", "UUID"),
        ("limit=5", "cursor", "is required"),
        ("cursor=1&cursor=2", "cursor", "more than once"),
    ] {
        let (status, body) =
            error_body(api.get(&format!("/v1/pull?{query}")).send().await.unwrap()).await;
        assert_eq!((status, body.code), (400, ErrorCode::BadRequest), "{query}");
        assert_eq!(body.field.as_deref(), Some(field), "{query}");
        assert!(body.message.contains(says), "{query}: {}", body.message);
    }
    // The largest cursor is a valid one (a desk's cursor above the head is
    // how a restore is noticed): answered, with the head.
    let top = api
        .get(&format!("/v1/pull?cursor={}&wait=0", u64::MAX))
        .send()
        .await
        .unwrap();
    assert_eq!(top.status(), 200);
    let (status, body) = error_body(api.get("/v1/nope").send().await.unwrap()).await;
    assert_eq!((status, body.code), (404, ErrorCode::NotFound));

    // WebSocket: bad frames are answered and the session lives on.
    let mut ws = Ws::hello(&server, &api, 0).await;
    ws.until_caught_up().await;
    for frame in [
        "nonsense",
        r#"{"type":"launch"}"#,
        r#"{"type":"ping","nonce":"x"}"#,
        r#"{"type":"ping"}"#,
    ] {
        ws.send_text(frame).await;
        match ws.next().await {
            Some(ServerMessage::Error(e)) => assert_eq!(e.code, ErrorCode::BadRequest, "{frame}"),
            other => panic!("{frame}: expected an error frame, got {other:?}"),
        }
    }
    ws.send(&ClientMessage::Ping { nonce: 1 }).await;
    assert_eq!(ws.next().await, Some(ServerMessage::Pong { nonce: 1 }));
    // An oversized frame ends that socket, not the server.
    // (The server may close while the frame is still being written: the send
    // itself can then fail with a broken pipe, which is the same answer.)
    let oversized =
        tokio_tungstenite::tungstenite::Message::Text("x".repeat(2 * 1024 * 1024).into());
    let _ = futures_util::SinkExt::send(&mut ws.stream, oversized).await;
    assert!(
        ws.next().await.is_none(),
        "oversized frame closes the socket"
    );
    // Hello must come first.
    let mut early = Ws::connect(&server).await;
    early.send(&ClientMessage::Ping { nonce: 1 }).await;
    match early.next().await {
        Some(ServerMessage::Error(e)) => assert_eq!(e.code, ErrorCode::BadRequest),
        other => panic!("expected an error, got {other:?}"),
    }
    // Nothing was written by any of it, and the server still serves.
    let health = http()
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let mut api = api;
    create_patient(&mut api, "StillServing").await;
}

#[tokio::test]
async fn a_subscriber_that_never_reads_does_not_grow_server_memory() {
    let server = Server::start_with(&["--feed-capacity", "8"]);
    let mut writer = Api::login(&server, "reception").await;
    let reader = Api::login(&server, "doctor").await;
    let mut stuck = Ws::hello(&server, &reader, 0).await;
    stuck.until_caught_up().await;
    // From here on the stuck client reads nothing.
    let address = "A".repeat(1900);
    let push_round = |writer: &mut Api| {
        let mutations: Vec<Mutation> = (0..400)
            .map(|i| {
                let mut p = new_patient(&format!("Bulk{i}"));
                p.address = Some(address.clone());
                Mutation::CreatePatient(p)
            })
            .collect();
        writer.number(mutations)
    };
    for _ in 0..5 {
        let pending = push_round(&mut writer);
        writer.push_pending(pending).await;
    }
    let baseline = server.rss_kib();
    let rounds = 60; // ~50 MB of changes
    for _ in 0..rounds {
        let pending = push_round(&mut writer);
        writer.push_pending(pending).await;
    }
    let grown = server.rss_kib().saturating_sub(baseline);
    eprintln!(
        "server RSS grew by {grown} KiB while ~{} KiB of changes went to a stuck subscriber",
        rounds * 400 * 2
    );
    assert!(grown < 32 * 1024, "server memory grew by {grown} KiB");
    // The server cuts it off rather than buffer for it: wait, without reading,
    // until the server reports no live session (bounded by the send timeout).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health: serde_json::Value = http()
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["ws_sessions"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stuck subscriber was never disconnected"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // What it does read now ends in a close, not in an endless stream.
    let mut frames = 0;
    loop {
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut stuck.stream))
            .await
            .expect("in time")
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) | Some(Err(_)) | None => {
                break;
            }
            Some(Ok(_)) => frames += 1,
        }
    }
    eprintln!("the stuck subscriber read {frames} buffered frames before the close");
}

#[tokio::test]
async fn acknowledged_changes_survive_a_server_kill() {
    let mut server = Server::start();
    let mut api = Api::login(&server, "reception").await;
    let mut acked = Vec::new();
    for i in 0..49 {
        let (id, seq) = create_patient(&mut api, &format!("Durable{i}")).await;
        acked.push((id, seq));
    }
    let last = new_patient("Durable49");
    let last_id = last.id;
    let last_pending = api.number(vec![Mutation::CreatePatient(last)]);
    let pushed = api.push_pending(last_pending.clone()).await;
    acked.push((last_id, applied_seq(&pushed[0].outcome)));
    server.kill_and_restart();
    api.rebase(&server);
    let patients = api.table(Table::Patients).await;
    for (id, seq) in &acked {
        assert_eq!(
            patients.get(id).map(|r| r.version),
            Some(*seq),
            "acknowledged patient {id} survived"
        );
    }
    // The client's mutation counter and fingerprints survived too: a retry
    // of the last one is recognised, other contents under its id are
    // refused, the next one applies.
    let replay = api.push_pending(last_pending.clone()).await;
    assert_eq!(applied_seq(&replay[0].outcome), acked.last().unwrap().1);
    let mut other = last_pending;
    other[0].mutation = Mutation::CreatePatient(new_patient("Other"));
    let refused = api.push_pending(other).await;
    assert_eq!(
        rejection(&refused[0].outcome).code,
        RejectCode::MutationIdReused
    );
    create_patient(&mut api, "AfterRestart").await;
    let db = rusqlite::Connection::open(server.db_path()).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

#[tokio::test]
async fn the_sequence_is_gap_free_and_versions_match_the_last_change() {
    let server = Server::start();
    let mut api = Api::login(&server, "reception").await;
    for i in 0..20 {
        let (id, seq) = create_patient(&mut api, &format!("Seq{i}")).await;
        let patch = PatientPatch {
            address: Some(Some("1 Main St".into())),
            ..Default::default()
        };
        api.push_one(Mutation::UpdatePatient(UpdatePatient {
            id,
            base_version: seq,
            fields: patch,
        }))
        .await;
    }
    let db = rusqlite::Connection::open(server.db_path()).unwrap();
    let (min, max, count): (i64, i64, i64) = db
        .query_row(
            "SELECT MIN(seq), MAX(seq), COUNT(*) FROM changes",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((min, count), (1, max), "no gaps");
    let mismatched: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM rows r WHERE r.version <> (SELECT MAX(seq) FROM changes c WHERE c.tbl = r.tbl AND c.row_id = r.id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(mismatched, 0);
}

#[tokio::test]
async fn history_shows_who_changed_what() {
    let server = Server::start();
    let mut reception = Api::login(&server, "reception").await;
    let doctor = Api::login(&server, "doctor").await;
    let (id, seq) = create_patient(&mut reception, "History").await;
    let patch = PatientPatch {
        phone: Some(None),
        ..Default::default()
    };
    reception
        .push_one(Mutation::UpdatePatient(UpdatePatient {
            id,
            base_version: seq,
            fields: patch,
        }))
        .await;
    let history: HistoryResponse = doctor
        .get(&format!("/v1/history/patients/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history.entries.len(), 2);
    let (created, updated) = (&history.entries[0], &history.entries[1]);
    assert_eq!(
        (created.action.as_str(), updated.action.as_str()),
        ("create", "update")
    );
    assert_eq!(updated.actor_id, Some(reception.user.id));
    assert_eq!(updated.actor_name.as_deref(), Some("Robin Reception"));
    assert_eq!(updated.client_id, Some(reception.client_id));
    assert_eq!(updated.mutation, "update_patient");
    assert_eq!(updated.before.as_ref().unwrap()["phone"], "+1 555 010 2030");
    assert!(updated.after.as_ref().unwrap()["phone"].is_null());
    assert_eq!(
        reception
            .get(&format!("/v1/history/patients/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        doctor
            .get(&format!("/v1/history/patients/{}", Uuid::now_v7()))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        doctor
            .get("/v1/history/bogus/x")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn another_users_client_id_is_refused() {
    let server = Server::start();
    let mut a = Api::login(&server, "reception").await;
    create_patient(&mut a, "Owner").await;
    let mut b = Api::login(&server, "admin").await;
    b.client_id = a.client_id;
    let request = clinic_shared::protocol::PushRequest {
        client_id: a.client_id,
        mutations: b.number(vec![Mutation::CreatePatient(new_patient("Forged"))]),
    };
    let response = b.post("/v1/push").json(&request).send().await.unwrap();
    let (status, body) = error_body(response).await;
    assert_eq!((status, body.code), (403, ErrorCode::Forbidden));
    let mut ws = Ws::connect(&server).await;
    ws.send(&ClientMessage::Hello {
        token: b.token.clone(),
        client_id: a.client_id,
        cursor: 0,
    })
    .await;
    match ws.next().await {
        Some(ServerMessage::Error(e)) => assert_eq!(e.code, ErrorCode::Forbidden),
        other => panic!("expected forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn admin_cli_changes_reach_open_sessions_at_once() {
    let server = Server::start();
    let out = server.admin(
        &[
            "user",
            "add",
            "--username",
            "nurse.kim",
            "--display-name",
            "Kim",
            "--role",
            "assistant",
        ],
        Some("long-enough-pw\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let login = login_raw(&server.base, "nurse.kim", "long-enough-pw").await;
    assert_eq!(login.status(), 200);
    let login: clinic_shared::protocol::LoginResponse = login.json().await.unwrap();
    let nurse = Api {
        http: http(),
        base: server.base.clone(),
        token: login.token,
        user: login.user,
        client_id: Uuid::now_v7(),
        next_mutation: 1,
    };
    // A too-short password is refused and names the field.
    let out = server.admin(
        &[
            "user",
            "add",
            "--username",
            "x.y",
            "--display-name",
            "X",
            "--role",
            "doctor",
        ],
        Some("short\n"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password"));

    // Role change: the open socket is told at once and closed; reconnecting gives the new role's view.
    let mut ws = Ws::hello(&server, &nurse, 0).await;
    let (rows, _) = ws.until_caught_up().await;
    assert!(rows.iter().any(|r| r.table == Table::InventoryItems));
    let out = server.admin(
        &["user", "set-role", "nurse.kim", "--role", "reception"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    loop {
        match ws.next().await {
            Some(ServerMessage::Error(e)) => {
                assert_eq!(e.code, ErrorCode::SessionChanged);
                break;
            }
            Some(_) => {}
            None => panic!("closed without saying why"),
        }
    }
    let mut ws = Ws::hello(&server, &nurse, 0).await;
    let (rows, _) = ws.until_caught_up().await;
    assert!(
        rows.iter().all(|r| r.table != Table::InventoryItems),
        "reception sees no stock"
    );
    // Disable: the session ends and the token stops working.
    let out = server.admin(&["user", "disable", "nurse.kim"], None);
    assert!(out.status.success());
    loop {
        match ws.next().await {
            Some(ServerMessage::Error(e)) => {
                assert_eq!(e.code, ErrorCode::SessionChanged);
                break;
            }
            Some(_) => {}
            None => panic!("closed without saying why"),
        }
    }
    assert_eq!(nurse.get("/v1/me").send().await.unwrap().status(), 401);
    assert_eq!(
        login_raw(&server.base, "nurse.kim", "long-enough-pw")
            .await
            .status(),
        403
    );
}

#[tokio::test]
async fn admins_manage_staff_through_mutations() {
    let server = Server::start();
    let mut admin = Api::login(&server, "admin").await;
    let create = CreateStaff {
        id: Uuid::now_v7(),
        username: "dr.new".into(),
        display_name: "Dr. New".into(),
        role: clinic_shared::model::Role::Doctor,
        password: "a-good-password".into(),
    };
    let id = create.id;
    applied_seq(&admin.push_one(Mutation::CreateStaff(create)).await);
    assert_eq!(
        login_raw(&server.base, "dr.new", "a-good-password")
            .await
            .status(),
        200
    );
    // The password never appears in the audit trail or the synced row.
    let history: HistoryResponse = admin
        .get(&format!("/v1/history/staff/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        !serde_json::to_string(&history)
            .unwrap()
            .contains("a-good-password")
    );
    // An admin cannot lock themselves out.
    let me = admin.user.id;
    let r = admin
        .push_one(Mutation::SetStaffActive(SetStaffActive {
            id: me,
            active: false,
        }))
        .await;
    assert_eq!(rejection(&r).code, RejectCode::RuleViolation);
    // Duplicate username.
    let dup = CreateStaff {
        id: Uuid::now_v7(),
        username: "dr.new".into(),
        display_name: "Again".into(),
        role: clinic_shared::model::Role::Doctor,
        password: "another-password".into(),
    };
    assert_eq!(
        rejection(&admin.push_one(Mutation::CreateStaff(dup)).await).code,
        RejectCode::AlreadyExists
    );
    // Non-admins cannot.
    let mut doctor = Api::login(&server, "doctor").await;
    let r = doctor
        .push_one(Mutation::SetStaffRole(SetStaffRole {
            id,
            role: clinic_shared::model::Role::Admin,
        }))
        .await;
    assert_eq!(rejection(&r).code, RejectCode::Forbidden);
}

#[tokio::test]
async fn billing_payments_update_the_invoice() {
    let server = Server::start();
    let mut reception = Api::login(&server, "reception").await;
    let (patient, _) = create_patient(&mut reception, "Billing").await;
    let invoice = CreateInvoice {
        id: Uuid::now_v7(),
        patient_id: patient,
        appointment_id: None,
        lines: vec![
            clinic_shared::model::InvoiceLine {
                description: "Consultation".into(),
                quantity: 1,
                unit_price_cents: 6000,
            },
            clinic_shared::model::InvoiceLine {
                description: "Bandage".into(),
                quantity: 2,
                unit_price_cents: 500,
            },
        ],
        issued_at: Timestamp::from_unix(1_800_000_000).unwrap(),
        draft: false,
    };
    let invoice_id = invoice.id;
    applied_seq(&reception.push_one(Mutation::CreateInvoice(invoice)).await);
    let pay = |amount| RecordPayment {
        id: Uuid::now_v7(),
        invoice_id,
        amount_cents: amount,
        method: clinic_shared::model::PaymentMethod::Card,
        paid_at: Timestamp::from_unix(1_800_000_100).unwrap(),
    };
    applied_seq(&reception.push_one(Mutation::RecordPayment(pay(4000))).await);
    let over = reception.push_one(Mutation::RecordPayment(pay(4000))).await;
    assert_eq!(rejection(&over).code, RejectCode::RuleViolation);
    assert_eq!(rejection(&over).fields[0].field, "amount_cents");
    applied_seq(&reception.push_one(Mutation::RecordPayment(pay(3000))).await);
    let inv = reception.table(Table::Invoices).await[&invoice_id]
        .data
        .clone()
        .unwrap();
    assert_eq!(
        (
            inv["total_cents"].as_i64(),
            inv["paid_cents"].as_i64(),
            inv["status"].as_str()
        ),
        (Some(7000), Some(7000), Some("paid"))
    );
}

#[tokio::test]
async fn shutdown_on_sigterm_is_graceful() {
    let mut server = Server::start();
    let mut api = Api::login(&server, "reception").await;
    let mut ws = Ws::hello(&server, &api, 0).await;
    ws.until_caught_up().await;
    create_patient(&mut api, "BeforeStop").await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The socket is closed by the server (code 1001), and the process exits cleanly.
    loop {
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut ws.stream))
            .await
            .expect("closed in time")
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => {
                assert_eq!(frame.map(|f| u16::from(f.code)), Some(1001));
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => panic!("socket dropped without a close frame"),
        }
    }
    let mut child = server.child.take().unwrap();
    let exit = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        (status, server)
    })
    .await
    .unwrap();
    assert!(exit.0.success(), "exit status {:?}", exit.0);
}

#[tokio::test]
async fn the_front_desk_rules_and_the_clinic_zone_hold_on_the_real_server() {
    use clinic_shared::protocol::{ClashWith, LoginResponse, RejectionDetail};
    // An unknown zone stops the server at start, saying what to use.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin("clinic-server"))
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--time-zone",
            "Mars/Olympus",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--time-zone")
            && err.contains("Mars/Olympus")
            && err.contains("Europe/Berlin"),
        "{err}"
    );

    let server = Server::start_with(&["--time-zone", "America/New_York"]);
    let login: LoginResponse = login_raw(&server.base, "reception", "demo")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(login.time_zone.as_deref(), Some("America/New_York"));
    let mut reception = Api::login(&server, "reception").await;
    let mut ws = Ws::connect(&server).await;
    ws.send(&ClientMessage::Hello {
        token: reception.token.clone(),
        client_id: Uuid::now_v7(),
        cursor: 0,
    })
    .await;
    match ws.next().await {
        Some(ServerMessage::Welcome { time_zone, .. }) => {
            assert_eq!(time_zone.as_deref(), Some("America/New_York"))
        }
        other => panic!("expected welcome, got {other:?}"),
    }

    let doyle = staff_id(&reception, "doctor").await;
    let sato = staff_id(&reception, "doctor2").await;
    let (anna, _) = create_patient(&mut reception, "Anna").await;
    let first = book(anna, doyle, "2031-03-03T15:30:00Z", "2031-03-03T16:00:00Z");
    let first_id = first.id;
    applied_seq(&reception.push_one(Mutation::BookAppointment(first)).await);
    // The same patient with another doctor at an overlapping time: refused, naming the appointment.
    let two_places = reception
        .push_one(Mutation::BookAppointment(book(
            anna,
            sato,
            "2031-03-03T15:45:00Z",
            "2031-03-03T16:15:00Z",
        )))
        .await;
    let r = rejection(&two_places);
    assert_eq!(r.code, RejectCode::DoubleBooked);
    assert!(
        matches!(r.detail.as_deref(), Some(RejectionDetail::Clash { with: ClashWith::Patient, appointment_id, doctor_id, .. })
            if *appointment_id == first_id && *doctor_id == doyle),
        "{r:?}"
    );
    // In the past: refused for reception, accepted as an admin's named correction.
    let past = book(anna, sato, "2020-01-06T09:00:00Z", "2020-01-06T09:30:00Z");
    let r = rejection(
        &reception
            .push_one(Mutation::BookAppointment(past.clone()))
            .await,
    )
    .clone();
    assert_eq!(
        (r.code, r.fields[0].field.as_str()),
        (RejectCode::Validation, "start")
    );
    let mut admin = Api::login(&server, "admin").await;
    let correction = BookAppointment {
        correction: true,
        ..past
    };
    applied_seq(
        &admin
            .push_one(Mutation::BookAppointment(correction.clone()))
            .await,
    );
    let history: HistoryResponse = admin
        .get(&format!("/v1/history/appointments/{}", correction.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history.entries[0].mutation, "book_appointment_correction");

    // Archive: refused with the count first, then archived with its future visit cancelled.
    let archive = |cancel| {
        Mutation::ArchivePatient(ArchivePatient {
            id: anna,
            cancel_future_appointments: cancel,
        })
    };
    let r = rejection(&reception.push_one(archive(false)).await).clone();
    assert!(
        matches!(
            r.detail.as_deref(),
            Some(RejectionDetail::FutureAppointments { count: 1, .. })
        ),
        "{r:?}"
    );
    applied_seq(&reception.push_one(archive(true)).await);
    let rows = reception.table(Table::Appointments).await;
    assert_eq!(
        rows[&first_id].data.as_ref().unwrap()["status"],
        "cancelled"
    );
    assert_eq!(
        rows[&correction.id].data.as_ref().unwrap()["status"],
        "scheduled",
        "the past visit is kept as it was"
    );
    let patients = reception.table(Table::Patients).await;
    assert!(patients[&anna].data.as_ref().unwrap()["archived_at"].is_string());
    assert_eq!(
        rejection(
            &reception
                .push_one(Mutation::BookAppointment(book(
                    anna,
                    sato,
                    "2031-04-01T09:00:00Z",
                    "2031-04-01T09:30:00Z"
                )))
                .await
        )
        .code,
        RejectCode::PatientUnavailable
    );
    // Undo: restore, and reinstate the cancelled visit (its slot is still free).
    applied_seq(
        &reception
            .push_one(Mutation::RestorePatient(RestorePatient { id: anna }))
            .await,
    );
    applied_seq(
        &reception
            .push_one(Mutation::SetAppointmentStatus(SetAppointmentStatus {
                id: first_id,
                status: clinic_shared::model::AppointmentStatus::Scheduled,
                at: None,
            }))
            .await,
    );
}

/// Every integer schema of `value`, with its JSON path.
fn integer_schemas<'a>(
    value: &'a serde_json::Value,
    path: String,
    out: &mut Vec<(String, &'a serde_json::Value)>,
) {
    match value {
        serde_json::Value::Object(map) => {
            if map.get("type").and_then(|t| t.as_str()) == Some("integer") {
                out.push((path.clone(), value));
            }
            for (k, v) in map {
                integer_schemas(v, format!("{path}/{k}"), out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                integer_schemas(v, format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn the_openapi_document_bounds_every_integer_and_describes_the_websocket_upgrade() {
    let server = Server::start();
    let doc: serde_json::Value = http()
        .get(format!("{}/v1/openapi.json", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let mut integers = Vec::new();
    integer_schemas(&doc, String::new(), &mut integers);
    assert!(integers.len() > 50, "found {} integers", integers.len());
    for (path, schema) in &integers {
        let bound =
            |v: &serde_json::Value| v.as_i64().map(i128::from).or(v.as_u64().map(i128::from));
        let min = bound(&schema["minimum"]);
        let max = bound(&schema["maximum"]);
        let (Some(min), Some(max)) = (min, max) else {
            panic!("{path}: an integer without minimum and maximum: {schema}");
        };
        assert!(min <= max, "{path}: {schema}");
        assert!(
            min >= i128::from(i64::MIN) && max <= i128::from(u64::MAX),
            "{path}: beyond what the server decodes: {schema}"
        );
    }
    // The bounds the server enforces are the ones published.
    let param = |path: &str, name: &str| -> serde_json::Value {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{path} has no parameter {name}"))["schema"]
            .clone()
    };
    assert_eq!(param("/v1/pull", "limit")["maximum"], limits::MAX_PAGE_ROWS);
    assert_eq!(
        param("/v1/pull", "wait")["maximum"],
        limits::MAX_WAIT_SECONDS
    );
    assert_eq!(param("/v1/pull", "cursor")["maximum"], u64::MAX);
    assert_eq!(
        param("/v1/audit/access", "limit")["maximum"],
        limits::MAX_AUDIT_PAGE
    );
    assert_eq!(
        doc["components"]["responses"]["RateLimited"]["headers"]["Retry-After"]["schema"]["maximum"],
        clinic_server::session::ThrottlePolicy::default()
            .cap
            .as_secs()
    );
    let mut api = Api::login(&server, "reception").await;
    let (status, _) = error_body(
        api.get(&format!(
            "/v1/pull?cursor=0&limit={}",
            limits::MAX_PAGE_ROWS + 1
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    create_patient(&mut api, "Bounded").await;

    // The WebSocket upgrade: the four request headers are declared, and a
    // handshake made of exactly those (raw, no WebSocket library) is
    // answered 101 with the declared answer headers; without the key it is
    // refused.
    let ws = &doc["paths"]["/v1/ws"]["get"];
    let declared: Vec<&str> = ws["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "header" && p["required"] == true)
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        declared,
        [
            "Connection",
            "Upgrade",
            "Sec-WebSocket-Version",
            "Sec-WebSocket-Key"
        ]
    );
    let handshake = |key: Option<&str>| {
        let mut request = format!(
            "GET /v1/ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
            server.addr()
        );
        if let Some(key) = key {
            request.push_str(&format!("Sec-WebSocket-Key: {key}\r\n"));
        }
        request.push_str("\r\n");
        request
    };
    let addr = server.addr();
    let answer_head = |request: String| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = tokio::time::timeout(WAIT, s.read(&mut byte))
                .await
                .expect("answered in time")
                .unwrap();
            assert_eq!(n, 1, "closed before the end of the answer head");
            head.push(byte[0]);
        }
        String::from_utf8(head).unwrap()
    };
    // The RFC 6455 §1.3 example key and its accept value.
    let head = answer_head(handshake(Some("dGhlIHNhbXBsZSBub25jZQ=="))).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: websocket"), "{head}");
    assert!(lower.contains("connection: upgrade"), "{head}");
    assert!(
        head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "accept derived from the key: {head}"
    );
    for declared in ws["responses"]["101"]["headers"]
        .as_object()
        .unwrap()
        .keys()
    {
        assert!(
            lower.contains(&format!("{}:", declared.to_ascii_lowercase())),
            "declared answer header {declared} missing: {head}"
        );
    }
    let head = answer_head(handshake(None)).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
}
