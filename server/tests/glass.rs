//! Care and breaking the glass against the real server binary (issue 11,
//! item 4): a doctor receives the clinical text of their own patients only,
//! on every path (pull, WebSocket catch-up and live, history, the clinical
//! endpoint); a typed reason opens one patient's records for the grant's
//! length, on record in the access log for admins; a visit makes the
//! patient theirs for good.

#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic

use clinic_e2e::*;
use clinic_shared::model::{Table, Timestamp, Urgency};
use clinic_shared::mutation::*;
use clinic_shared::protocol::{ClientMessage, ClinicalRecords};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const NOTES: &str = "Chest pain radiating to the left arm (g7k2q)";
const DIAGNOSIS: &str = "Suspected angina (g7k2q-d)";
const REASON: &str = "Referred from A&E, palpitations (g7k2q-r)";
const GLASS: &str = "Patient collapsed in the waiting room, Dr. Doyle is away";
/// The grant's length in these tests: long enough to use, short to outlive.
const GRANT_SECS: u64 = 4;

fn now() -> Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Timestamp::from_unix(secs as i64).unwrap()
}

async fn new_patient(api: &mut Api, last: &str) -> Uuid {
    let id = Uuid::now_v7();
    applied_seq(
        &api.push_one(Mutation::CreatePatient(CreatePatient {
            id,
            first_name: "Gita".into(),
            last_name: last.into(),
            date_of_birth: "1970-03-04".parse().unwrap(),
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
        .await,
    );
    id
}

/// Every raw pull page from cursor 0, joined.
async fn pulled_text(api: &Api) -> String {
    let mut cursor = 0;
    let mut text = String::new();
    loop {
        let r = api
            .get(&format!("/v1/pull?cursor={cursor}&limit=200"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let page = r.text().await.unwrap();
        let body: Value = serde_json::from_str(&page).unwrap();
        cursor = body["cursor"].as_u64().unwrap();
        let more = body["more"].as_bool().unwrap();
        text.push_str(&page);
        if !more {
            return text;
        }
    }
}

/// The raw frames of a WebSocket catch-up from 0, joined, and the socket.
async fn caught_up(server: &Server, api: &Api) -> (Ws, String) {
    let mut ws = Ws::connect(server).await;
    ws.send(&ClientMessage::Hello {
        token: api.token.clone(),
        client_id: api.client_id,
        cursor: 0,
    })
    .await;
    let mut all = String::new();
    loop {
        let text = next_text(&mut ws).await;
        let kind = serde_json::from_str::<Value>(&text).unwrap()["type"].clone();
        all.push_str(&text);
        if kind == "caught_up" {
            return (ws, all);
        }
    }
}

async fn next_text(ws: &mut Ws) -> String {
    loop {
        match tokio::time::timeout(WAIT, ws.stream.next())
            .await
            .expect("a frame in time")
        {
            Some(Ok(Message::Text(text))) => return text.to_string(),
            Some(Ok(_)) => continue,
            other => panic!("the socket ended: {other:?}"),
        }
    }
}

/// Reads frames until one carries row `id`; returns it raw.
async fn frame_with(ws: &mut Ws, id: Uuid) -> String {
    loop {
        let text = next_text(ws).await;
        if text.contains(&id.to_string()) {
            return text;
        }
    }
}

async fn clinical(api: &Api, patient: Uuid) -> reqwest::Response {
    api.get(&format!("/v1/patients/{patient}/clinical"))
        .send()
        .await
        .unwrap()
}

async fn glass(api: &Api, patient: Uuid, reason: &str) -> reqwest::Response {
    api.post(&format!("/v1/patients/{patient}/glass"))
        .json(&json!({ "reason": reason, "client_id": api.client_id }))
        .send()
        .await
        .unwrap()
}

async fn error_of(r: reqwest::Response) -> Value {
    r.json().await.unwrap()
}

#[tokio::test]
async fn a_doctor_reads_the_clinical_text_of_their_own_patients_only_until_they_break_the_glass() {
    let server = Server::start_with(&["--glass-grant-secs", &GRANT_SECS.to_string()]);
    let mut admin = Api::login(&server, "admin").await;
    let mut doctor = Api::login(&server, "doctor").await;
    let doctor2 = Api::login(&server, "doctor2").await;
    let reception = Api::login(&server, "reception").await;
    let patient = new_patient(&mut admin, "Glasswell").await;
    // Dr. Doyle's patient: her record and her referral.
    let record = Uuid::now_v7();
    applied_seq(
        &doctor
            .push_one(Mutation::AddTreatmentRecord(AddTreatmentRecord {
                id: record,
                patient_id: patient,
                appointment_id: None,
                notes: NOTES.into(),
                diagnosis: DIAGNOSIS.into(),
                procedures: vec!["ECG".into()],
                recorded_at: ts("2026-11-23T09:30:00Z"),
            }))
            .await,
    );
    let referral = Uuid::now_v7();
    applied_seq(
        &doctor
            .push_one(Mutation::CreateReferral(CreateReferral {
                id: referral,
                patient_id: patient,
                referred_to: "Cardiology, City Hospital".into(),
                reason: REASON.into(),
                urgency: Urgency::Urgent,
                created_at: ts("2026-11-23T09:40:00Z"),
            }))
            .await,
    );

    // Her own desk receives all of it.
    assert!(pulled_text(&doctor).await.contains(NOTES));
    let mine: ClinicalRecords = clinical(&doctor, patient).await.json().await.unwrap();
    assert_eq!(mine.rows.len(), 2);
    assert_eq!(
        mine.grant_expires_at, None,
        "her own patient: no grant to end"
    );

    // Dr. Sato is not treating Gita: the rows come, their clinical text does not.
    let pulled = pulled_text(&doctor2).await;
    for secret in [NOTES, DIAGNOSIS, REASON] {
        assert!(!pulled.contains(secret), "doctor2 pulled `{secret}`");
    }
    let rows = doctor2.table(Table::TreatmentRecords).await;
    let held = rows[&record].data.clone().unwrap();
    assert_eq!(
        held["patient_id"],
        patient.to_string(),
        "the record itself arrives"
    );
    for field in ["notes", "diagnosis", "procedures"] {
        assert!(held.get(field).is_none(), "{field} withheld: {held}");
    }
    let held = doctor2.table(Table::Referrals).await[&referral]
        .data
        .clone()
        .unwrap();
    assert_eq!(held["referred_to"], "Cardiology, City Hospital");
    assert!(held.get("reason").is_none());
    let (mut ws2, frames) = caught_up(&server, &doctor2).await;
    assert!(frames.contains(&record.to_string()));
    assert!(!frames.contains(NOTES) && !frames.contains(REASON));
    let r = doctor2
        .get(&format!("/v1/history/treatment_records/{record}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        !r.text().await.unwrap().contains(NOTES),
        "history withholds it too"
    );
    let r = clinical(&doctor2, patient).await;
    assert_eq!(r.status(), 403);
    assert_eq!(error_of(r).await["code"], "not_in_care");
    // Live: Dr. Doyle amends her note; Dr. Sato's socket gets the row without it.
    let amended = "Amended: pain settled with rest (g7k2q-a)";
    applied_seq(
        &doctor
            .push_one(Mutation::UpdateTreatmentRecord(UpdateTreatmentRecord {
                id: record,
                base_version: rows[&record].version,
                fields: TreatmentRecordPatch {
                    notes: Some(amended.into()),
                    ..Default::default()
                },
            }))
            .await,
    );
    let frame = frame_with(&mut ws2, record).await;
    assert!(
        !frame.contains(amended),
        "live batches withhold it: {frame}"
    );

    // Breaking the glass takes a reason, a doctor, a patient.
    let r = glass(&doctor2, patient, "urgent").await;
    assert_eq!(r.status(), 422);
    let e = error_of(r).await;
    assert_eq!(e["field"], "reason");
    assert!(
        e["message"].as_str().unwrap().contains("at least 10"),
        "{e}"
    );
    let r = glass(&doctor2, Uuid::now_v7(), GLASS).await;
    assert_eq!(r.status(), 404);
    for api in [&reception, &admin] {
        let r = glass(api, patient, GLASS).await;
        assert_eq!(r.status(), 403, "{}", api.user.username);
    }
    let r = doctor2
        .post(&format!("/v1/patients/{patient}/glass"))
        .json(&json!({ "reason": GLASS, "why": "extra" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "unknown fields are refused");
    // None of those is on record as a break of the glass.
    let log: Value = admin
        .get(&format!("/v1/audit/access?patient={patient}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        !log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "break_the_glass"),
        "{log}"
    );

    // Now with a reason: the records, at once, and until when.
    let before = now();
    let r = glass(&doctor2, patient, &format!("  {GLASS}  ")).await;
    assert_eq!(r.status(), 200);
    let opened: ClinicalRecords = r.json().await.unwrap();
    assert_eq!(opened.patient_id, patient);
    let text = serde_json::to_string(&opened.rows).unwrap();
    assert!(text.contains(amended) && text.contains(DIAGNOSIS) && text.contains(REASON));
    let ends = opened.grant_expires_at.expect("a grant ends");
    let length = ends.unix() - before.unix();
    assert!(
        (GRANT_SECS as i64 - 1..=GRANT_SECS as i64 + 1).contains(&length),
        "the grant lasts the configured {GRANT_SECS} s: {length}"
    );
    // Every path now carries it: pull, the clinical endpoint, live frames.
    assert!(pulled_text(&doctor2).await.contains(amended));
    let again: ClinicalRecords = clinical(&doctor2, patient).await.json().await.unwrap();
    assert!(again.grant_expires_at.is_some());
    let later = "Second amendment: troponin normal (g7k2q-b)";
    let version = doctor.table(Table::TreatmentRecords).await[&record].version;
    applied_seq(
        &doctor
            .push_one(Mutation::UpdateTreatmentRecord(UpdateTreatmentRecord {
                id: record,
                base_version: version,
                fields: TreatmentRecordPatch {
                    notes: Some(later.into()),
                    ..Default::default()
                },
            }))
            .await,
    );
    assert!(frame_with(&mut ws2, record).await.contains(later));

    // Admins see who broke the glass, when and why (the reason trimmed),
    // and what was then sent.
    let log: Value = admin
        .get(&format!("/v1/audit/access?patient={patient}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = log["entries"].as_array().unwrap();
    let broke = entries
        .iter()
        .find(|e| e["kind"] == "break_the_glass")
        .expect("the break is on record");
    assert_eq!(broke["user_id"], doctor2.user.id.to_string());
    assert_eq!(broke["user_name"], doctor2.user.display_name);
    assert_eq!(broke["reason"], GLASS);
    assert_eq!(broke["client_id"], doctor2.client_id.to_string());
    assert!(
        entries.iter().any(|e| e["kind"] == "clinical"
            && e["user_id"] == doctor2.user.id.to_string()
            && e["row_ids"]
                .as_array()
                .unwrap()
                .contains(&json!(record.to_string()))),
        "the records sent are on record: {log}"
    );
    // Reception's pulls of the referral carry no clinical text: not on record as such.
    pulled_text(&reception).await;
    let log: Value = admin
        .get(&format!("/v1/audit/access?patient={patient}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        !log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["user_id"] == reception.user.id.to_string()),
        "{log}"
    );

    // The grant ends by itself, when the server said it would: wait until
    // then (whole seconds), and every path withholds again.
    let until_end = u64::try_from(ends.unix() + 1 - now().unix()).unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(until_end)).await;
    let r = clinical(&doctor2, patient).await;
    assert_eq!(r.status(), 403, "the grant ended at {ends}");
    assert_eq!(error_of(r).await["code"], "not_in_care");
    let pulled = pulled_text(&doctor2).await;
    assert!(!pulled.contains(later) && !pulled.contains(REASON));

    // A visit with Dr. Sato makes Gita his patient, for good.
    let start = now().unix() + 86_400 * 30;
    applied_seq(
        &admin
            .push_one(Mutation::BookAppointment(BookAppointment {
                id: Uuid::now_v7(),
                patient_id: patient,
                doctor_id: doctor2.user.id,
                start: Timestamp::from_unix(start - start % 3600).unwrap(),
                end: Timestamp::from_unix(start - start % 3600 + 1800).unwrap(),
                reason: Some("follow-up".into()),
                correction: false,
            }))
            .await,
    );
    let r = clinical(&doctor2, patient).await;
    assert_eq!(r.status(), 200);
    let now_his: ClinicalRecords = r.json().await.unwrap();
    assert_eq!(now_his.grant_expires_at, None);
    assert!(pulled_text(&doctor2).await.contains(later));
}
