//! The patient record's fields beyond contact (issue 13, item 6) against
//! the real server binary: sex, emergency contact, insurer and number,
//! allergies and alerts — stored, sent to every role that reads patients,
//! checked field by field, cleared with `null`; a patient without them
//! reads exactly as before they existed.

#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic

use clinic_e2e::*;
use clinic_shared::model::{Sex, Table};
use clinic_shared::mutation::*;
use clinic_shared::protocol::RejectCode;
use uuid::Uuid;

fn full(id: Uuid) -> CreatePatient {
    CreatePatient {
        id,
        first_name: "Maja".into(),
        last_name: "Lindqvist".into(),
        date_of_birth: "1982-04-05".parse().unwrap(),
        phone: Some("+46 70 123 45 67".into()),
        email: None,
        address: None,
        sex: Some(Sex::Female),
        emergency_contact: Some("Jonas Lindqvist (husband)".into()),
        emergency_phone: Some("+46 70 765 43 21".into()),
        insurer: Some("Northwind Health".into()),
        insurance_number: Some("M123456789".into()),
        alerts: Some("Penicillin allergy; latex".into()),
    }
}

#[tokio::test]
async fn the_record_fields_are_kept_checked_and_cleared_and_old_rows_read_as_before() {
    let server = Server::start();
    let mut reception = Api::login(&server, "reception").await;
    let assistant = Api::login(&server, "assistant").await;

    // Registered with every field; each role that reads patients gets them
    // (the assistant prepares the room with the latex allergy in mind).
    let id = Uuid::now_v7();
    applied_seq(&reception.push_one(Mutation::CreatePatient(full(id))).await);
    for api in [&reception, &assistant] {
        let row = api.table(Table::Patients).await[&id].data.clone().unwrap();
        assert_eq!(row["sex"], "female");
        assert_eq!(row["emergency_contact"], "Jonas Lindqvist (husband)");
        assert_eq!(row["emergency_phone"], "+46 70 765 43 21");
        assert_eq!(row["insurer"], "Northwind Health");
        assert_eq!(row["insurance_number"], "M123456789");
        assert_eq!(
            row["alerts"], "Penicillin allergy; latex",
            "{}",
            api.user.username
        );
    }

    // Each bad field is named, all in one refusal, and nothing is written.
    let bad = Uuid::now_v7();
    let outcome = reception
        .push_one(Mutation::CreatePatient(CreatePatient {
            emergency_phone: Some("call Jonas".into()),
            insurance_number: Some("9".repeat(41)),
            alerts: Some("x".repeat(501)),
            ..full(bad)
        }))
        .await;
    let refused = rejection(&outcome);
    assert_eq!(refused.code, RejectCode::Validation);
    let mut named: Vec<&str> = refused.fields.iter().map(|f| f.field.as_str()).collect();
    named.sort_unstable();
    assert_eq!(named, ["alerts", "emergency_phone", "insurance_number"]);
    assert!(!reception.table(Table::Patients).await.contains_key(&bad));
    // An unknown sex is a decoding error naming the field.
    let r = reception
        .post("/v1/push")
        .json(&serde_json::json!({
            "client_id": reception.client_id,
            "mutations": [{"mutation_id": 99, "mutation": {"type": "create_patient", "args": {
                "id": Uuid::now_v7(), "first_name": "A", "last_name": "B",
                "date_of_birth": "1990-01-01", "sex": "unknown"}}}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["field"], "mutations[0].mutation.args.sex", "{body}");

    // `null` clears a field; the others stay.
    let version = reception.table(Table::Patients).await[&id].version;
    applied_seq(
        &reception
            .push_one(Mutation::UpdatePatient(UpdatePatient {
                id,
                base_version: version,
                fields: PatientPatch {
                    alerts: Some(None),
                    sex: Some(Some(Sex::Diverse)),
                    ..Default::default()
                },
            }))
            .await,
    );
    let row = reception.table(Table::Patients).await[&id]
        .data
        .clone()
        .unwrap();
    assert!(row.get("alerts").is_none(), "cleared, so absent: {row}");
    assert_eq!(row["sex"], "diverse");
    assert_eq!(row["insurer"], "Northwind Health");

    // A patient registered without them reads as before they existed: the
    // row has none of the new keys at all.
    let plain = Uuid::now_v7();
    applied_seq(
        &reception
            .push_one(Mutation::CreatePatient(CreatePatient {
                sex: None,
                emergency_contact: None,
                emergency_phone: None,
                insurer: None,
                insurance_number: None,
                alerts: None,
                ..full(plain)
            }))
            .await,
    );
    let row = reception.table(Table::Patients).await[&plain]
        .data
        .clone()
        .unwrap();
    let mut keys: Vec<&String> = row.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "address",
            "date_of_birth",
            "email",
            "first_name",
            "id",
            "last_name",
            "phone"
        ]
    );
}
