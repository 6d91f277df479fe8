//! Least privilege against the real server binary (issue 11, item 4): the
//! field matrix (`clinic_shared::field_access`) checked on the wire — the raw
//! JSON of pull answers, WebSocket catch-up and live frames, history and push
//! results — for every field it withholds from reception, while doctors and
//! admins receive them; and a doctor editing only their own treatment
//! records, with the admin's hand-over as the one grant.

#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic

use clinic_e2e::*;
use clinic_shared::field_access;
use clinic_shared::model::{ReferralStatus, Role, Table, Urgency};
use clinic_shared::mutation::*;
use clinic_shared::protocol::{ClientMessage, PushRequest, RejectCode, RejectionDetail};
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// Asserts that one raw answer or frame carries no field `role` may not
/// read in any of its rows, and none of the `secrets` anywhere in its text.
/// Returns the rows it found, as JSON.
fn assert_clean(role: Role, text: &str, secrets: &[&str]) -> Vec<Value> {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "{role} received withheld text `{secret}` in: {}…",
            text.chars().take(300).collect::<String>()
        );
    }
    let body: Value = serde_json::from_str(text).unwrap();
    let rows = body["rows"].as_array().cloned().unwrap_or_default();
    for row in &rows {
        let table: Table = serde_json::from_value(row["table"].clone()).unwrap();
        let Some(data) = row["data"].as_object() else {
            continue; // a tombstone
        };
        for field in field_access::withheld_fields(role, table) {
            assert!(
                !data.contains_key(field),
                "{role} received {table}.{field}: {row}"
            );
        }
        for field in data.keys() {
            assert!(
                field_access::can_read_field(role, table, field),
                "{role} received {table}.{field}, which it may not read"
            );
        }
    }
    rows
}

/// The next text frame of a WebSocket, raw; `None` when it closes.
async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.stream.next())
            .await
            .expect("a ws message in time");
        match frame {
            Some(Ok(Message::Text(text))) => return Some(text.to_string()),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// Says hello and returns every raw frame up to and including `caught_up`.
async fn caught_up_frames(server: &Server, api: &Api) -> (Ws, Vec<String>) {
    let mut ws = Ws::connect(server).await;
    ws.send(&ClientMessage::Hello {
        token: api.token.clone(),
        client_id: api.client_id,
        cursor: 0,
    })
    .await;
    let mut frames = Vec::new();
    loop {
        let text = next_text(&mut ws).await.expect("socket open");
        let kind = serde_json::from_str::<Value>(&text).unwrap()["type"].clone();
        frames.push(text);
        if kind == "caught_up" {
            return (ws, frames);
        }
        assert!(kind == "welcome" || kind == "changes", "{kind}");
    }
}

/// Reads raw frames until one has a row with `id`; returns that frame.
async fn frame_with_row(ws: &mut Ws, id: Uuid) -> String {
    loop {
        let text = next_text(ws).await.expect("socket open");
        let body: Value = serde_json::from_str(&text).unwrap();
        let has = body["rows"]
            .as_array()
            .is_some_and(|rows| rows.iter().any(|r| r["id"] == id.to_string()));
        if has {
            return text;
        }
    }
}

/// Every raw pull page from cursor 0.
async fn pull_pages(api: &Api) -> Vec<String> {
    let mut cursor = 0;
    let mut pages = Vec::new();
    loop {
        let r = api
            .get(&format!(
                "/v1/pull?cursor={cursor}&limit=50&client_id={}",
                api.client_id
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap();
        cursor = body["cursor"].as_u64().unwrap();
        let more = body["more"].as_bool().unwrap();
        pages.push(text);
        if !more {
            return pages;
        }
    }
}

fn referral(patient: Uuid, reason: &str) -> CreateReferral {
    CreateReferral {
        id: Uuid::now_v7(),
        patient_id: patient,
        referred_to: "Pulmonology, City Hospital".into(),
        reason: reason.into(),
        urgency: Urgency::Urgent,
        created_at: ts("2026-11-23T09:58:00Z"),
    }
}

#[tokio::test]
async fn reception_receives_no_withheld_field_on_any_path_and_clinicians_do() {
    const REASON: &str = "Haemoptysis for three weeks, rule out TB (x7f3a)";
    const LIVE_REASON: &str = "Suspected melanoma on left shoulder (q19c2)";
    let server = Server::start();
    let admin = Api::login(&server, "admin").await;
    let mut doctor = Api::login(&server, "doctor").await;
    let mut reception = Api::login(&server, "reception").await;
    // The matrix withholds something from reception, or this proves nothing.
    let withheld: Vec<(Table, &str)> = Table::ALL
        .into_iter()
        .flat_map(|t| {
            field_access::withheld_fields(Role::Reception, t)
                .into_iter()
                .map(move |f| (t, f))
        })
        .collect();
    assert_eq!(withheld, [(Table::Referrals, "reason")]);

    let patient = admin
        .table(Table::Patients)
        .await
        .into_keys()
        .next()
        .unwrap();
    let first = referral(patient, REASON);
    let first_id = first.id;
    applied_seq(&doctor.push_one(Mutation::CreateReferral(first)).await);

    // Pull: every page, raw.
    let pages = pull_pages(&reception).await;
    let mut rows = Vec::new();
    for page in &pages {
        rows.extend(assert_clean(Role::Reception, page, &[REASON]));
    }
    let mine = rows
        .iter()
        .find(|r| r["id"] == first_id.to_string())
        .expect("reception receives the referral itself");
    assert_eq!(mine["data"]["referred_to"], "Pulmonology, City Hospital");
    assert_eq!(mine["data"]["status"], "draft");
    assert_eq!(mine["data"]["urgency"], "urgent");
    // A doctor and an admin receive the reason on the same path.
    for api in [&doctor, &admin] {
        let pages = pull_pages(api).await;
        assert!(
            pages.iter().any(|p| p.contains(REASON)),
            "{} receives the reason",
            api.user.username
        );
    }

    // WebSocket catch-up, raw frames.
    let (mut ws, frames) = caught_up_frames(&server, &reception).await;
    let caught: Vec<Value> = frames
        .iter()
        .flat_map(|f| assert_clean(Role::Reception, f, &[REASON]))
        .collect();
    assert!(caught.iter().any(|r| r["id"] == first_id.to_string()));
    let (mut doctor_ws, doctor_frames) = caught_up_frames(&server, &doctor).await;
    assert!(doctor_frames.iter().any(|f| f.contains(REASON)));

    // Live push: a new referral reaches reception without its reason, the
    // doctor's socket with it.
    let live = referral(patient, LIVE_REASON);
    let live_id = live.id;
    applied_seq(&doctor.push_one(Mutation::CreateReferral(live)).await);
    let frame = frame_with_row(&mut ws, live_id).await;
    let rows = assert_clean(Role::Reception, &frame, &[REASON, LIVE_REASON]);
    assert!(rows.iter().any(|r| r["id"] == live_id.to_string()));
    assert!(
        frame_with_row(&mut doctor_ws, live_id)
            .await
            .contains(LIVE_REASON)
    );

    // Reception moves the referral along (its job): allowed, its result
    // carries no row content, and the reason survives on the server.
    let r = reception
        .post("/v1/push")
        .json(&PushRequest {
            client_id: reception.client_id,
            mutations: reception.number(vec![Mutation::SetReferralStatus(SetReferralStatus {
                id: first_id,
                status: ReferralStatus::Sent,
            })]),
        })
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("\"applied\""), "{text}");
    assert!(!text.contains(REASON));
    let frame = frame_with_row(&mut ws, first_id).await;
    let rows = assert_clean(Role::Reception, &frame, &[REASON, LIVE_REASON]);
    let sent = rows
        .iter()
        .find(|r| r["id"] == first_id.to_string())
        .unwrap();
    assert_eq!(sent["data"]["status"], "sent");
    let kept = doctor.table(Table::Referrals).await[&first_id]
        .data
        .clone()
        .unwrap();
    assert_eq!(kept["reason"], REASON, "a status change leaves the reason");
    assert_eq!(kept["status"], "sent");

    // History: reception reads none (so none of its before/after values);
    // a doctor's history carries the reason before and after.
    let r = reception
        .get(&format!("/v1/history/referrals/{first_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(!r.text().await.unwrap().contains(REASON));
    let r = doctor
        .get(&format!("/v1/history/referrals/{first_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let history: Value = r.json().await.unwrap();
    let entries = history["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "created, then sent");
    assert_eq!(entries[0]["after"]["reason"], REASON);
    assert_eq!(entries[1]["before"]["reason"], REASON);
    assert_eq!(entries[1]["mutation"], "set_referral_status");
    assert_eq!(
        entries[1]["actor_id"],
        reception.user.id.to_string(),
        "the desk's change is on record"
    );
}

#[tokio::test]
async fn a_doctor_edits_only_their_own_records_unless_an_admin_hands_one_over() {
    let server = Server::start();
    let mut admin = Api::login(&server, "admin").await;
    let mut doctor = Api::login(&server, "doctor").await;
    let mut doctor2 = Api::login(&server, "doctor2").await;
    // A new patient: nobody's yet (no visit with the demo clinic's doctors).
    let patient = Uuid::now_v7();
    applied_seq(
        &admin
            .push_one(Mutation::CreatePatient(CreatePatient {
                id: patient,
                first_name: "Hana".into(),
                last_name: "Over".into(),
                date_of_birth: "1980-01-02".parse().unwrap(),
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
    let add = AddTreatmentRecord {
        id: Uuid::now_v7(),
        patient_id: patient,
        appointment_id: None,
        notes: "Initial note".into(),
        diagnosis: "Sprain".into(),
        procedures: vec![],
        recorded_at: ts("2026-11-23T09:30:00Z"),
    };
    let record = add.id;
    let created = applied_seq(&doctor.push_one(Mutation::AddTreatmentRecord(add)).await);
    let edit = |base: u64, notes: &str| {
        Mutation::UpdateTreatmentRecord(UpdateTreatmentRecord {
            id: record,
            base_version: base,
            fields: TreatmentRecordPatch {
                notes: Some(notes.into()),
                ..Default::default()
            },
        })
    };

    // Another doctor is refused, told whose record it is; nothing changes.
    let outcome = doctor2.push_one(edit(created, "Not mine")).await;
    let refused = rejection(&outcome);
    assert_eq!(refused.code, RejectCode::Forbidden);
    assert_eq!(
        refused.detail.as_deref(),
        Some(&RejectionDetail::RecordOwner {
            doctor_id: doctor.user.id
        })
    );
    assert!(
        refused.message.contains(&doctor.user.display_name),
        "names who wrote it: {}",
        refused.message
    );
    let row = doctor2.table(Table::TreatmentRecords).await[&record].clone();
    assert_eq!(row.version, created, "no change");
    // Not doctor2's patient: the record without its clinical text (care).
    assert!(row.data.unwrap().get("notes").is_none());
    // The author may.
    let mine = applied_seq(&doctor.push_one(edit(created, "Amended by author")).await);

    // Only an admin hands a record over.
    let hand_over = Mutation::HandOverTreatmentRecord(HandOverTreatmentRecord {
        id: record,
        doctor_id: doctor2.user.id,
    });
    let r = doctor2.push_one(hand_over.clone()).await;
    assert_eq!(rejection(&r).code, RejectCode::Forbidden);
    let not_a_doctor = admin
        .push_one(Mutation::HandOverTreatmentRecord(HandOverTreatmentRecord {
            id: record,
            doctor_id: admin.user.id,
        }))
        .await;
    assert_eq!(rejection(&not_a_doctor).code, RejectCode::InvalidReference);
    let handed = applied_seq(&admin.push_one(hand_over).await);
    assert!(handed > mine);

    // Now the other doctor may edit it, and the author no longer.
    applied_seq(
        &doctor2
            .push_one(edit(handed, "Amended after hand-over"))
            .await,
    );
    let outcome = doctor.push_one(edit(handed, "Mine again?")).await;
    let refused = rejection(&outcome);
    assert_eq!(
        refused.detail.as_deref(),
        Some(&RejectionDetail::RecordOwner {
            doctor_id: doctor2.user.id
        })
    );
    assert!(refused.message.contains(&doctor2.user.display_name));
    // Responsible now, so the patient is doctor2's: the text arrives.
    let row = doctor2.table(Table::TreatmentRecords).await[&record].clone();
    assert_eq!(row.data.unwrap()["notes"], "Amended after hand-over");

    // The change log has it all: the author's create, the admin's hand-over.
    let r = admin
        .get(&format!("/v1/history/treatment_records/{record}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let history: Value = r.json().await.unwrap();
    let entries = history["entries"].as_array().unwrap();
    let by = |m: &str| {
        entries
            .iter()
            .find(|e| e["mutation"] == m)
            .unwrap_or_else(|| panic!("{m} in {entries:?}"))
    };
    assert_eq!(
        by("add_treatment_record")["actor_id"],
        doctor.user.id.to_string()
    );
    let h = by("hand_over_treatment_record");
    assert_eq!(h["actor_id"], admin.user.id.to_string());
    assert_eq!(h["before"]["doctor_id"], doctor.user.id.to_string());
    assert_eq!(h["after"]["doctor_id"], doctor2.user.id.to_string());
    assert_eq!(
        h["after"]["notes"], "Amended by author",
        "content untouched"
    );
}
