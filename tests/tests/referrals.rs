//! Referrals, end to end: a doctor's `clinic` writes one, reception's
//! `clinic` (its own encrypted mirror) sends it and follows it up without
//! ever receiving the clinical reason, and a step the flow does not allow is
//! refused by the server with the status named, the row left as it was.

#![allow(clippy::unwrap_used, missing_docs)]

use clinic_e2e::*;
use clinic_shared::model::Table;
use clinic_shared::mutation::*;
use uuid::Uuid;

const REASON: &str = "Exertional chest pain for 3 weeks, ECG borderline";

#[tokio::test]
async fn a_doctor_refers_reception_follows_up_without_the_reason_and_the_flow_is_enforced() {
    let server = Server::start_tls();
    let mut admin = Api::login(&server, "admin").await;
    let patient = Uuid::now_v7();
    admin
        .push_one(Mutation::CreatePatient(CreatePatient {
            id: patient,
            first_name: "Greta".into(),
            last_name: "Brandt".into(),
            date_of_birth: "1961-07-30".parse().unwrap(),
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
        .await;
    let dirs = tempfile::tempdir().unwrap();
    let doctor_dir = dirs.path().join("doctor");
    let reception_dir = dirs.path().join("reception");
    clinic_cli_sign_in(&server, &doctor_dir, "doctor");
    clinic_cli_sign_in(&server, &reception_dir, "reception");
    clinic_cli_ok(&doctor_dir, &["sync"]);
    clinic_cli_ok(&reception_dir, &["sync"]);

    // Reception may not write one (the desk does not offer it either).
    let refused = clinic_cli(
        &reception_dir,
        &[
            "referrals",
            "add",
            "--patient",
            &patient.to_string(),
            "--to",
            "Cardiology",
            "--reason",
            "x",
        ],
        None,
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("forbidden"), "{stderr}");

    // A referral with nobody to send it to is refused with the field named.
    let blank = clinic_cli(
        &doctor_dir,
        &[
            "referrals",
            "add",
            "--patient",
            &patient.to_string(),
            "--to",
            "  ",
            "--reason",
            REASON,
        ],
        None,
    );
    assert!(!blank.status.success());
    let stderr = String::from_utf8_lossy(&blank.stderr);
    assert!(stderr.contains("referred_to"), "{stderr}");

    let made = clinic_cli_ok(
        &doctor_dir,
        &[
            "referrals",
            "add",
            "--patient",
            &patient.to_string(),
            "--to",
            "Cardiology, Dr. Weber",
            "--reason",
            REASON,
            "--urgent",
        ],
    );
    let id: Uuid = made["id"].as_str().unwrap().parse().unwrap();

    // On the wire, reception's pull carries the referral without its reason.
    let reception_api = Api::login(&server, "reception").await;
    let rows = reception_api.table(Table::Referrals).await;
    let wire = rows[&id].data.as_ref().unwrap();
    assert!(wire.get("reason").is_none(), "{wire}");
    assert_eq!(wire["referred_to"], "Cardiology, Dr. Weber");
    assert_eq!(wire["status"], "draft");
    assert_eq!(wire["urgency"], "urgent");

    // Reception's own CLI: the referral, no reason, in its list of open ones.
    clinic_cli_ok(&reception_dir, &["sync"]);
    let listed = clinic_cli_ok(&reception_dir, &["referrals", "list", "--open"]);
    let mine = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.to_string())
        .unwrap()
        .clone();
    assert_eq!(mine["data"]["reason"], "", "{mine}");
    assert!(!listed.to_string().contains("chest pain"));

    // Reception sends it; the doctor sees it sent, with the reason.
    clinic_cli_ok(
        &reception_dir,
        &["referrals", "set-status", &id.to_string(), "sent"],
    );
    clinic_cli_ok(&doctor_dir, &["sync"]);
    let doctor_view = clinic_cli_ok(&doctor_dir, &["referrals", "list"]);
    let theirs = doctor_view
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.to_string())
        .unwrap()
        .clone();
    assert_eq!(theirs["data"]["status"], "sent");
    assert_eq!(theirs["data"]["reason"], REASON);

    // A step the flow does not allow (sent → completed skips accepted) is
    // refused by the server with both statuses named, and the row stays.
    let skip = admin
        .push_one(Mutation::SetReferralStatus(SetReferralStatus {
            id,
            status: clinic_shared::model::ReferralStatus::Completed,
        }))
        .await;
    let r = rejection(&skip);
    assert_eq!(
        serde_json::to_value(r).unwrap()["detail"],
        serde_json::json!({"kind": "transition", "table": "referrals", "from": "sent", "to": "completed"})
    );
    clinic_cli_ok(
        &reception_dir,
        &["referrals", "set-status", &id.to_string(), "accepted"],
    );
    clinic_cli_ok(&doctor_dir, &["sync"]);
    clinic_cli_ok(
        &doctor_dir,
        &["referrals", "set-status", &id.to_string(), "completed"],
    );
    // Seen: no longer open, and a finished referral cannot be withdrawn.
    clinic_cli_ok(&reception_dir, &["sync"]);
    let open = clinic_cli_ok(&reception_dir, &["referrals", "list", "--open"]);
    assert!(!open.to_string().contains(&id.to_string()), "{open}");
    let late = clinic_cli(
        &reception_dir,
        &["referrals", "set-status", &id.to_string(), "cancelled"],
        None,
    );
    assert!(!late.status.success());
    let stderr = String::from_utf8_lossy(&late.stderr);
    assert!(stderr.contains("invalid_transition"), "{stderr}");
    let rows = admin.table(Table::Referrals).await;
    assert_eq!(rows[&id].data.as_ref().unwrap()["status"], "completed");
}
