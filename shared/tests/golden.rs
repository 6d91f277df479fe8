//! Golden tests: freeze the exact JSON of every wire message.
//!
//! Each case builds a value with fixed ids and times, serializes it and
//! compares it (as a `serde_json::Value`) with `tests/golden/<case>.json`,
//! then decodes that file back through [`clinic_shared::codec::decode`] and
//! checks it equals the value it was built from.
//!
//! A deliberate wire change is one command:
//!
//! ```text
//! UPDATE_GOLDEN=1 cargo test -p clinic-shared --test golden
//! ```
//!
//! which rewrites the golden files (review the diff before committing).

use chrono::NaiveDate;
use clinic_shared::codec::decode;
use clinic_shared::model::{
    Appointment, AppointmentStatus, InventoryItem, Invoice, InvoiceLine, InvoiceStatus, Patient,
    Payment, PaymentMethod, Referral, ReferralStatus, Role, Sex, Staff, SyncRow, Table, Timestamp,
    TreatmentRecord, Urgency,
};
use clinic_shared::mutation::{
    AddTreatmentRecord, AdjustStock, ArchivePatient, BookAppointment, CreateInventoryItem,
    CreateInvoice, CreatePatient, CreateReferral, CreateStaff, DeletePatient,
    HandOverTreatmentRecord, InventoryItemPatch, Mutation, PatientPatch, PendingMutation,
    RecordPayment, RescheduleAppointment, RestorePatient, SetAppointmentStatus, SetReferralStatus,
    SetStaffActive, SetStaffRole, TreatmentRecordPatch, UpdateInventoryItem, UpdatePatient,
    UpdateTreatmentRecord, VoidInvoice,
};
use clinic_shared::protocol::{
    AccessKind, AccessLogEntry, AccessLogResponse, ClinicalRecords, GlassRequest,
    PasswordChangeRequest, PasswordChangeResponse, PasswordResetRequest, SessionsEnded,
    SignInEvent, SignInEventsResponse, SignInKind, SignInOutcome, ViewReport, ViewedRecord,
    ViewsRecorded,
};
use clinic_shared::protocol::{ClashWith, ReferenceProblem, RejectionDetail, Rule};
use clinic_shared::protocol::{
    ClientMessage, ErrorBody, ErrorCode, FieldConflict, HistoryEntry, HistoryResponse,
    LoginRequest, LoginResponse, MutationOutcome, MutationResult, PROTOCOL_VERSION, PullResponse,
    PushRequest, PushResponse, RejectCode, Rejection, ServerMessage,
};
use clinic_shared::validate::{FieldCode, FieldError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::fmt::Debug;
use std::io::Write;
use std::path::PathBuf;

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// How to regenerate the golden files.
const UPDATE_HINT: &str = "UPDATE_GOLDEN=1 cargo test -p clinic-shared --test golden";

/// Path of a case's golden file.
fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
        .join(format!("{name}.json"))
}

/// Whether this run rewrites the golden files instead of checking them.
fn updating() -> bool {
    std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1")
}

/// Checks `value` against the golden file `tests/golden/<name>.json`: its JSON
/// must equal the file's exactly, and the file must decode back to `value`.
/// With `UPDATE_GOLDEN=1`, (re)writes the file instead of comparing.
fn golden<T>(name: &str, value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let path = golden_path(name);
    let actual = serde_json::to_value(value)
        .unwrap_or_else(|e| panic!("{name}: cannot serialize the value: {e}"));
    // Written from `value` itself, not `actual`, to keep the field order of
    // the wire (`type` before `args`, `mutation_id` before `outcome`).
    let pretty = serde_json::to_string_pretty(value)
        .unwrap_or_else(|e| panic!("{name}: cannot serialize the value: {e}"))
        + "\n";

    let text = if updating() {
        let before = std::fs::read_to_string(&path).ok();
        let what = match &before {
            None => "created",
            Some(old) if *old == pretty => "unchanged",
            Some(_) => "rewrote",
        };
        if before.as_deref() != Some(pretty.as_str()) {
            let dir = path.parent().expect("golden files live in a directory");
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
            std::fs::write(&path, &pretty)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
        // Straight to stderr, past the test harness's output capture.
        let _ = writeln!(
            std::io::stderr(),
            "UPDATE_GOLDEN: {what} {}",
            path.display()
        );
        pretty
    } else {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "{name}: golden file {} is missing; create it with `{UPDATE_HINT}` \
                 and review it\nthe value serializes as:\n{pretty}",
                path.display()
            ),
            Err(e) => panic!("{name}: cannot read {}: {e}", path.display()),
        };
        let expected: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{name}: {} is not JSON: {e}", path.display()));
        assert!(
            actual == expected,
            "{name}: the JSON differs from golden file {}\n\
             --- golden\n{}\n--- actual\n{pretty}\n\
             if the wire change is deliberate, run `{UPDATE_HINT}` and review the diff",
            path.display(),
            text.trim_end(),
        );
        text
    };

    // Round trip through the decoder every server and client input goes through.
    let decoded: T = decode(text.as_bytes()).unwrap_or_else(|e| {
        panic!(
            "{name}: golden file {} does not decode: {e:?}",
            path.display()
        )
    });
    assert_eq!(
        &decoded, value,
        "{name}: decoding the golden file does not give back the value"
    );
}

/// [`golden`] for a mutation wrapped in a [`PendingMutation`]; also checks
/// that the case is named after [`Mutation::kind`] and that `kind` is the
/// serialized `type`.
fn golden_mutation(name: &str, mutation_id: u64, mutation: Mutation) {
    let kind = mutation.kind();
    assert!(
        Mutation::KINDS.contains(&kind),
        "{kind} is listed in Mutation::KINDS"
    );
    assert_eq!(
        name,
        format!("mutation_{kind}"),
        "case named after the kind"
    );
    let value = pending(mutation_id, mutation);
    let json = serde_json::to_value(&value).expect("mutations serialize");
    assert_eq!(json["mutation"]["type"], kind, "kind() is the wire name");
    golden(name, &value);
}

/// Decodes `json` as `T`, expecting failure, and returns the error.
fn decode_err<T: DeserializeOwned + Debug>(json: &str) -> ErrorBody {
    match decode::<T>(json.as_bytes()) {
        Ok(v) => panic!("decoded malformed input {json} as {v:?}"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------
// Fixtures: fixed ids, times and entities
// ---------------------------------------------------------------------------

fn id(s: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(s).unwrap_or_else(|e| panic!("bad fixture uuid {s}: {e}"))
}

fn ts(s: &str) -> Timestamp {
    s.parse::<Timestamp>()
        .unwrap_or_else(|e| panic!("bad fixture timestamp {s}: {e}"))
}

fn date(s: &str) -> NaiveDate {
    s.parse::<NaiveDate>()
        .unwrap_or_else(|e| panic!("bad fixture date {s}: {e}"))
}

const CLIENT: &str = "01936f3e-0000-7000-8000-00000000c001";
const ADMIN: &str = "01936f3e-1a00-7000-8000-000000000001";
const DOCTOR: &str = "01936f3e-1a00-7000-8000-000000000002";
const RECEPTION: &str = "01936f3e-1a00-7000-8000-000000000003";
const OTHER_DOCTOR: &str = "01936f3e-1a00-7000-8000-000000000005";
const NEW_STAFF: &str = "01936f3e-1a00-7000-8000-000000000004";
const PATIENT: &str = "01936f3e-2b00-7000-8000-000000000010";
const PATIENT_DELETED: &str = "01936f3e-2b00-7000-8000-000000000011";
const APPOINTMENT: &str = "01936f3e-3c00-7000-8000-000000000020";
const TREATMENT: &str = "01936f3e-4d00-7000-8000-000000000030";
const INVOICE: &str = "01936f3e-5e00-7000-8000-000000000040";
const PAYMENT: &str = "01936f3e-6f00-7000-8000-000000000050";
const ITEM: &str = "01936f3e-7a00-7000-8000-000000000060";
const REFERRAL: &str = "01936f3e-8b00-7000-8000-000000000070";

const TOKEN: &str = "3f9c2a7e5b1d48c6a0e2f4b6d8c0a2e4";

fn staff() -> Staff {
    Staff {
        id: id(DOCTOR),
        username: "dr.moreau".into(),
        display_name: "Dr. Claire Moreau".into(),
        role: Role::Doctor,
        active: true,
    }
}

fn patient() -> Patient {
    Patient {
        id: id(PATIENT),
        first_name: "Jonas".into(),
        last_name: "Lindqvist".into(),
        date_of_birth: date("1984-03-17"),
        phone: Some("+46 70 123 45 67".into()),
        email: Some("jonas.lindqvist@example.org".into()),
        address: None,
        sex: Some(Sex::Male),
        emergency_contact: Some("Maja Lindqvist (wife)".into()),
        emergency_phone: Some("+46 70 765 43 21".into()),
        insurer: Some("Northwind Health".into()),
        insurance_number: Some("M123456789".into()),
        alerts: Some("Penicillin allergy".into()),
        archived_at: None,
    }
}

fn appointment() -> Appointment {
    Appointment {
        id: id(APPOINTMENT),
        patient_id: id(PATIENT),
        doctor_id: id(DOCTOR),
        start: ts("2026-11-23T09:30:00Z"),
        end: ts("2026-11-23T10:00:00Z"),
        status: AppointmentStatus::CheckedIn,
        reason: Some("Persistent cough".into()),
        checked_in_at: Some(ts("2026-11-23T09:24:00Z")),
    }
}

fn treatment_record() -> TreatmentRecord {
    TreatmentRecord {
        id: id(TREATMENT),
        patient_id: id(PATIENT),
        doctor_id: id(DOCTOR),
        appointment_id: Some(id(APPOINTMENT)),
        notes: "Dry cough for three weeks.\nLungs clear on auscultation.".into(),
        diagnosis: "Acute bronchitis".into(),
        procedures: vec!["Auscultation".into(), "Peak flow test".into()],
        recorded_at: ts("2026-11-23T09:52:00Z"),
    }
}

fn invoice_lines() -> Vec<InvoiceLine> {
    vec![
        InvoiceLine {
            description: "Consultation".into(),
            quantity: 1,
            unit_price_cents: 6500,
        },
        InvoiceLine {
            description: "Peak flow test".into(),
            quantity: 2,
            unit_price_cents: 1250,
        },
    ]
}

fn invoice() -> Invoice {
    Invoice {
        id: id(INVOICE),
        patient_id: id(PATIENT),
        appointment_id: Some(id(APPOINTMENT)),
        lines: invoice_lines(),
        total_cents: 9000,
        paid_cents: 5000,
        status: InvoiceStatus::Open,
        issued_at: ts("2026-11-23T10:05:00Z"),
        void_reason: None,
        voided_at: None,
        refunded_cents: 0,
    }
}

fn payment() -> Payment {
    Payment {
        id: id(PAYMENT),
        invoice_id: id(INVOICE),
        amount_cents: 5000,
        method: PaymentMethod::Card,
        paid_at: ts("2026-11-23T10:07:00Z"),
        received_by: id(RECEPTION),
        refund: false,
        reason: None,
    }
}

fn inventory_item() -> InventoryItem {
    InventoryItem {
        id: id(ITEM),
        name: "Nitrile gloves (M)".into(),
        unit: "box".into(),
        quantity: 14,
        reorder_level: 5,
    }
}

fn referral() -> Referral {
    Referral {
        id: id(REFERRAL),
        patient_id: id(PATIENT),
        referring_doctor_id: id(DOCTOR),
        referred_to: "Pulmonology, City Hospital".into(),
        reason: "Cough not resolving after treatment".into(),
        urgency: Urgency::Routine,
        status: ReferralStatus::Sent,
        created_at: ts("2026-11-23T09:58:00Z"),
    }
}

fn pending(mutation_id: u64, mutation: Mutation) -> PendingMutation {
    PendingMutation {
        mutation_id,
        mutation,
    }
}

fn create_patient() -> Mutation {
    Mutation::CreatePatient(CreatePatient {
        id: id(PATIENT),
        first_name: "Jonas".into(),
        last_name: "Lindqvist".into(),
        date_of_birth: date("1984-03-17"),
        phone: Some("+46 70 123 45 67".into()),
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

fn book_appointment() -> Mutation {
    Mutation::BookAppointment(BookAppointment {
        id: id(APPOINTMENT),
        patient_id: id(PATIENT),
        doctor_id: id(DOCTOR),
        start: ts("2026-11-23T09:30:00Z"),
        end: ts("2026-11-23T10:00:00Z"),
        reason: Some("Persistent cough".into()),
        correction: false,
    })
}

/// A live row and a tombstone, as sent by pull and `changes`.
fn sync_rows() -> Vec<SyncRow> {
    vec![
        SyncRow {
            table: Table::Patients,
            id: id(PATIENT),
            version: 41,
            deleted: false,
            data: Some(serde_json::to_value(patient()).expect("entities serialize")),
        },
        SyncRow {
            table: Table::Patients,
            id: id(PATIENT_DELETED),
            version: 42,
            deleted: true,
            data: None,
        },
    ]
}

/// One result of each outcome: applied, conflict, validation, retry.
fn mutation_results() -> Vec<MutationResult> {
    vec![
        MutationResult {
            mutation_id: 1,
            outcome: MutationOutcome::Applied { seq: 42 },
        },
        MutationResult {
            mutation_id: 2,
            outcome: MutationOutcome::Rejected {
                rejection: Rejection {
                    code: RejectCode::Conflict,
                    message: "someone else changed notes, procedures of this treatment record \
                              since you opened it; review both versions"
                        .into(),
                    fields: vec![],
                    conflicts: vec![
                        FieldConflict {
                            field: "notes".into(),
                            yours: json!("Dry cough for three weeks."),
                            theirs: json!("Dry cough for three weeks, worse at night."),
                            clinical: true,
                            base: Some(json!("Dry cough.")),
                            changed_by: Some(id(DOCTOR)),
                            changed_at: Some(ts("2026-11-23T09:40:00Z")),
                        },
                        FieldConflict {
                            field: "procedures".into(),
                            yours: json!(["Auscultation"]),
                            theirs: json!(["Auscultation", "Peak flow test"]),
                            clinical: true,
                            base: Some(json!([])),
                            changed_by: Some(id(DOCTOR)),
                            changed_at: Some(ts("2026-11-23T09:40:00Z")),
                        },
                    ],
                    detail: None,
                },
            },
        },
        MutationResult {
            mutation_id: 3,
            outcome: MutationOutcome::Rejected {
                rejection: Rejection::validation(vec![
                    FieldError::new(
                        "lines.1.quantity",
                        FieldCode::OutOfRange,
                        "must be between 1 and 10000",
                    )
                    .bounds(Some(1), Some(10_000)),
                    FieldError::new("email", FieldCode::NotAnEmail, "is not an e-mail address"),
                ]),
            },
        },
        MutationResult {
            mutation_id: 4,
            outcome: MutationOutcome::Rejected {
                rejection: Rejection::new(
                    RejectCode::DoubleBooked,
                    "the doctor already has appointment 01936f3e-3c00-7000-8000-000000000020 between 2026-11-23T09:30:00Z and 2026-11-23T10:00:00Z",
                )
                .with_detail(RejectionDetail::Clash {
                    with: ClashWith::Doctor,
                    appointment_id: id(APPOINTMENT),
                    patient_id: id(PATIENT),
                    doctor_id: id(DOCTOR),
                    start: ts("2026-11-23T09:30:00Z"),
                    end: ts("2026-11-23T10:00:00Z"),
                }),
            },
        },
        MutationResult {
            mutation_id: 5,
            outcome: MutationOutcome::Retry {
                error: ErrorBody::new(
                    ErrorCode::OutOfOrder,
                    "expected mutation 4 before mutation 5",
                )
                .with_field("mutation_id"),
            },
        },
    ]
}

// ---------------------------------------------------------------------------
// WebSocket: client messages
// ---------------------------------------------------------------------------

#[test]
fn client_hello() {
    let msg = ClientMessage::Hello {
        token: TOKEN.into(),
        client_id: id(CLIENT),
        cursor: 40,
    };
    golden("client_hello", &msg);
}

#[test]
fn client_push() {
    let msg = ClientMessage::Push {
        request_id: 7,
        mutations: vec![pending(1, create_patient()), pending(2, book_appointment())],
    };
    golden("client_push", &msg);
}

#[test]
fn client_ping() {
    golden("client_ping", &ClientMessage::Ping { nonce: 123_456 });
}

// ---------------------------------------------------------------------------
// WebSocket: server messages
// ---------------------------------------------------------------------------

#[test]
fn server_welcome() {
    let msg = ServerMessage::Welcome {
        protocol: PROTOCOL_VERSION,
        user: staff(),
        head: 42,
        epoch: 3,
        server_epoch: "5f0c8e2a9b7d4c31a6e0f2b8d9c4a7e1".into(),
        time_zone: Some("Europe/Berlin".into()),
    };
    golden("server_welcome", &msg);
}

#[test]
fn server_changes() {
    let msg = ServerMessage::Changes {
        rows: sync_rows(),
        cursor: 42,
        last_mutation_id: Some(2),
    };
    golden("server_changes", &msg);
}

#[test]
fn server_changes_without_ack() {
    let msg = ServerMessage::Changes {
        rows: vec![],
        cursor: 43,
        last_mutation_id: None,
    };
    golden("server_changes_without_ack", &msg);
}

#[test]
fn server_caught_up() {
    golden("server_caught_up", &ServerMessage::CaughtUp { cursor: 42 });
}

#[test]
fn server_push_result() {
    let msg = ServerMessage::PushResult {
        request_id: 7,
        results: mutation_results(),
    };
    golden("server_push_result", &msg);
}

#[test]
fn server_pong() {
    golden("server_pong", &ServerMessage::Pong { nonce: 123_456 });
}

#[test]
fn server_error() {
    let msg = ServerMessage::Error(ErrorBody::new(
        ErrorCode::TokenExpired,
        "your session has expired; sign in again",
    ));
    golden("server_error", &msg);
}

// ---------------------------------------------------------------------------
// Mutations, each wrapped in a PendingMutation
// ---------------------------------------------------------------------------

#[test]
fn mutation_create_staff() {
    let m = Mutation::CreateStaff(CreateStaff {
        id: id(NEW_STAFF),
        username: "a.novak".into(),
        display_name: "Ana Novak".into(),
        role: Role::Assistant,
        password: "correct horse battery staple".into(),
    });
    golden_mutation("mutation_create_staff", 1, m);
}

#[test]
fn mutation_set_staff_role() {
    let m = Mutation::SetStaffRole(SetStaffRole {
        id: id(NEW_STAFF),
        role: Role::Reception,
    });
    golden_mutation("mutation_set_staff_role", 2, m);
}

#[test]
fn mutation_set_staff_active() {
    let m = Mutation::SetStaffActive(SetStaffActive {
        id: id(NEW_STAFF),
        active: false,
    });
    golden_mutation("mutation_set_staff_active", 3, m);
}

#[test]
fn mutation_create_patient() {
    golden_mutation("mutation_create_patient", 1, create_patient());
}

#[test]
fn mutation_update_patient() {
    // Sets the e-mail, clears the phone with `null`, leaves the rest absent.
    let m = Mutation::UpdatePatient(UpdatePatient {
        id: id(PATIENT),
        base_version: 41,
        fields: PatientPatch {
            email: Some(Some("j.lindqvist@example.org".into())),
            phone: Some(None),
            ..PatientPatch::default()
        },
    });
    golden_mutation("mutation_update_patient", 4, m);
}

#[test]
fn mutation_delete_patient() {
    let m = Mutation::DeletePatient(DeletePatient {
        id: id(PATIENT_DELETED),
        base_version: 17,
    });
    golden_mutation("mutation_delete_patient", 5, m);
}

#[test]
fn mutation_archive_patient() {
    let m = Mutation::ArchivePatient(ArchivePatient {
        id: id(PATIENT),
        cancel_future_appointments: true,
    });
    golden_mutation("mutation_archive_patient", 5, m);
}

#[test]
fn mutation_restore_patient() {
    let m = Mutation::RestorePatient(RestorePatient { id: id(PATIENT) });
    golden_mutation("mutation_restore_patient", 5, m);
}

/// Every other kind of refusal detail, frozen in one list.
#[test]
fn rejection_details() {
    let details = vec![
        RejectionDetail::Clash {
            with: ClashWith::Patient,
            appointment_id: id(APPOINTMENT),
            patient_id: id(PATIENT),
            doctor_id: id(DOCTOR),
            start: ts("2026-11-23T09:30:00Z"),
            end: ts("2026-11-23T10:00:00Z"),
        },
        RejectionDetail::FutureAppointments {
            count: 1,
            appointment_ids: vec![id(APPOINTMENT)],
        },
        RejectionDetail::Transition {
            table: Table::Appointments,
            from: "completed".into(),
            to: "cancelled".into(),
        },
        RejectionDetail::Stock {
            available: 2,
            requested: 3,
        },
        RejectionDetail::Outstanding {
            outstanding_cents: 4500,
        },
        RejectionDetail::Reference {
            table: Table::Patients,
            id: id(PATIENT),
            problem: ReferenceProblem::Archived,
        },
        RejectionDetail::Rule {
            rule: Rule::HasFutureAppointments,
        },
        RejectionDetail::RecordOwner {
            doctor_id: id(OTHER_DOCTOR),
        },
        RejectionDetail::WithheldField {
            table: Table::Referrals,
            field: "reason".into(),
        },
    ];
    golden("rejection_details", &details);
}

#[test]
fn mutation_book_appointment_correction() {
    let Mutation::BookAppointment(mut a) = book_appointment() else {
        unreachable!()
    };
    a.correction = true;
    let m = Mutation::BookAppointment(a);
    assert_eq!(m.audit_name(), "book_appointment_correction");
    golden("mutation_book_appointment_correction", &pending(6, m));
}

#[test]
fn mutation_book_appointment() {
    golden_mutation("mutation_book_appointment", 6, book_appointment());
}

#[test]
fn mutation_reschedule_appointment() {
    let m = Mutation::RescheduleAppointment(RescheduleAppointment {
        id: id(APPOINTMENT),
        base_version: 43,
        start: ts("2026-11-24T14:00:00Z"),
        end: ts("2026-11-24T14:30:00Z"),
        doctor_id: Some(id(OTHER_DOCTOR)),
        correction: false,
    });
    golden_mutation("mutation_reschedule_appointment", 7, m);
}

#[test]
fn mutation_set_appointment_status() {
    let m = Mutation::SetAppointmentStatus(SetAppointmentStatus {
        id: id(APPOINTMENT),
        status: AppointmentStatus::NoShow,
        at: None,
    });
    golden_mutation("mutation_set_appointment_status", 8, m);
}

#[test]
fn mutation_add_treatment_record() {
    let m = Mutation::AddTreatmentRecord(AddTreatmentRecord {
        id: id(TREATMENT),
        patient_id: id(PATIENT),
        appointment_id: Some(id(APPOINTMENT)),
        notes: "Dry cough for three weeks.\nLungs clear on auscultation.".into(),
        diagnosis: "Acute bronchitis".into(),
        procedures: vec!["Auscultation".into()],
        recorded_at: ts("2026-11-23T09:52:00Z"),
    });
    golden_mutation("mutation_add_treatment_record", 9, m);
}

#[test]
fn mutation_update_treatment_record() {
    let m = Mutation::UpdateTreatmentRecord(UpdateTreatmentRecord {
        id: id(TREATMENT),
        base_version: 44,
        fields: TreatmentRecordPatch {
            procedures: Some(vec!["Auscultation".into(), "Peak flow test".into()]),
            ..TreatmentRecordPatch::default()
        },
    });
    golden_mutation("mutation_update_treatment_record", 10, m);
}

#[test]
fn mutation_hand_over_treatment_record() {
    let m = Mutation::HandOverTreatmentRecord(HandOverTreatmentRecord {
        id: id(TREATMENT),
        doctor_id: id(OTHER_DOCTOR),
    });
    golden_mutation("mutation_hand_over_treatment_record", 10, m);
}

#[test]
fn mutation_create_invoice() {
    let m = Mutation::CreateInvoice(CreateInvoice {
        id: id(INVOICE),
        patient_id: id(PATIENT),
        appointment_id: None,
        lines: invoice_lines(),
        issued_at: ts("2026-11-23T10:05:00Z"),
        draft: false,
    });
    golden_mutation("mutation_create_invoice", 11, m);
}

#[test]
fn mutation_void_invoice() {
    let m = Mutation::VoidInvoice(VoidInvoice {
        id: id(INVOICE),
        reason: "Billed to the wrong patient".into(),
    });
    golden_mutation("mutation_void_invoice", 12, m);
}

#[test]
fn mutation_record_payment() {
    let m = Mutation::RecordPayment(RecordPayment {
        id: id(PAYMENT),
        invoice_id: id(INVOICE),
        amount_cents: 5000,
        method: PaymentMethod::Insurance,
        paid_at: ts("2026-11-23T10:07:00Z"),
    });
    golden_mutation("mutation_record_payment", 13, m);
}

#[test]
fn mutation_create_inventory_item() {
    let m = Mutation::CreateInventoryItem(CreateInventoryItem {
        id: id(ITEM),
        name: "Nitrile gloves (M)".into(),
        unit: "box".into(),
        quantity: 20,
        reorder_level: 5,
    });
    golden_mutation("mutation_create_inventory_item", 14, m);
}

#[test]
fn mutation_update_inventory_item() {
    let m = Mutation::UpdateInventoryItem(UpdateInventoryItem {
        id: id(ITEM),
        base_version: 45,
        fields: InventoryItemPatch {
            reorder_level: Some(8),
            ..InventoryItemPatch::default()
        },
    });
    golden_mutation("mutation_update_inventory_item", 15, m);
}

#[test]
fn mutation_adjust_stock() {
    let m = Mutation::AdjustStock(AdjustStock {
        id: id(ITEM),
        delta: -6,
        reason: Some("Used in clinic, week 48".into()),
    });
    golden_mutation("mutation_adjust_stock", 16, m);
}

#[test]
fn mutation_create_referral() {
    let m = Mutation::CreateReferral(CreateReferral {
        id: id(REFERRAL),
        patient_id: id(PATIENT),
        referred_to: "Pulmonology, City Hospital".into(),
        reason: "Cough not resolving after treatment".into(),
        urgency: Urgency::Urgent,
        created_at: ts("2026-11-23T09:58:00Z"),
    });
    golden_mutation("mutation_create_referral", 17, m);
}

#[test]
fn mutation_set_referral_status() {
    let m = Mutation::SetReferralStatus(SetReferralStatus {
        id: id(REFERRAL),
        status: ReferralStatus::Accepted,
    });
    golden_mutation("mutation_set_referral_status", 18, m);
}

// ---------------------------------------------------------------------------
// HTTP bodies
// ---------------------------------------------------------------------------

#[test]
fn push_request() {
    let body = PushRequest {
        client_id: id(CLIENT),
        mutations: vec![pending(1, create_patient()), pending(2, book_appointment())],
    };
    golden("push_request", &body);
}

#[test]
fn push_response() {
    let body = PushResponse {
        results: mutation_results(),
        server_epoch: "5f0c8e2a9b7d4c31a6e0f2b8d9c4a7e1".into(),
    };
    golden("push_response", &body);
}

#[test]
fn pull_response() {
    let body = PullResponse {
        rows: sync_rows(),
        cursor: 42,
        more: true,
        last_mutation_id: Some(2),
        role: Role::Doctor,
        epoch: 3,
        head: 57,
        server_epoch: "5f0c8e2a9b7d4c31a6e0f2b8d9c4a7e1".into(),
    };
    golden("pull_response", &body);
}

#[test]
fn login_request() {
    let body = LoginRequest {
        username: "dr.moreau".into(),
        password: "correct horse battery staple".into(),
    };
    golden("login_request", &body);
}

#[test]
fn login_response() {
    let body = LoginResponse {
        token: TOKEN.into(),
        expires_at: ts("2026-11-24T09:30:00Z"),
        user: staff(),
        time_zone: Some("Europe/Berlin".into()),
        must_change_password: false,
    };
    golden("login_response", &body);
}

#[test]
fn login_response_must_change_password() {
    let body = LoginResponse {
        token: TOKEN.into(),
        expires_at: ts("2026-11-24T09:30:00Z"),
        user: staff(),
        time_zone: None,
        must_change_password: true,
    };
    golden("login_response_must_change_password", &body);
}

#[test]
fn password_change_request() {
    let body = PasswordChangeRequest {
        current_password: "correct horse battery staple".into(),
        new_password: "rhubarb tractor lantern".into(),
    };
    golden("password_change_request", &body);
}

#[test]
fn password_change_response() {
    golden(
        "password_change_response",
        &PasswordChangeResponse {
            other_sessions_ended: 2,
            epoch: 4,
        },
    );
}

#[test]
fn password_reset_request() {
    golden(
        "password_reset_request",
        &PasswordResetRequest {
            new_password: "temporary passphrase 7".into(),
        },
    );
}

#[test]
fn sessions_ended() {
    golden(
        "sessions_ended",
        &SessionsEnded {
            sessions_ended: 3,
            epoch: 5,
        },
    );
}

#[test]
fn view_report() {
    let body = ViewReport {
        client_id: id(CLIENT),
        views: vec![
            ViewedRecord {
                table: Table::Patients,
                id: id(PATIENT),
            },
            ViewedRecord {
                table: Table::TreatmentRecords,
                id: id(TREATMENT),
            },
        ],
    };
    golden("view_report", &body);
    golden("views_recorded", &ViewsRecorded { recorded: 2 });
}

#[test]
fn access_log_response() {
    let body = AccessLogResponse {
        patient_id: id(PATIENT),
        entries: vec![
            AccessLogEntry {
                seq: 10,
                at: ts("2026-11-23T09:32:00Z"),
                user_id: id(DOCTOR),
                user_name: Some("Dr. Léa Moreau".into()),
                client_id: Some(id(CLIENT)),
                kind: AccessKind::BreakTheGlass,
                patient_id: Some(id(PATIENT)),
                table: Table::TreatmentRecords,
                row_ids: vec![],
                reason: Some("Collapsed in the waiting room; her doctor is away".into()),
            },
            AccessLogEntry {
                seq: 9,
                at: ts("2026-11-23T09:31:00Z"),
                user_id: id(DOCTOR),
                user_name: Some("Dr. Léa Moreau".into()),
                client_id: Some(id(CLIENT)),
                kind: AccessKind::View,
                patient_id: Some(id(PATIENT)),
                table: Table::TreatmentRecords,
                row_ids: vec![id(TREATMENT)],
                reason: None,
            },
            AccessLogEntry {
                seq: 4,
                at: ts("2026-11-23T09:30:00Z"),
                user_id: id(DOCTOR),
                user_name: Some("Dr. Léa Moreau".into()),
                client_id: Some(id(CLIENT)),
                kind: AccessKind::WsCatchUp,
                patient_id: Some(id(PATIENT)),
                table: Table::TreatmentRecords,
                row_ids: vec![id(TREATMENT)],
                reason: None,
            },
        ],
        next_before: Some(4),
    };
    golden("access_log_response", &body);
}

#[test]
fn glass_and_clinical_records() {
    golden(
        "glass_request",
        &GlassRequest {
            reason: "Collapsed in the waiting room; her doctor is away".into(),
            client_id: Some(id(CLIENT)),
        },
    );
    golden(
        "clinical_records",
        &ClinicalRecords {
            patient_id: id(PATIENT),
            rows: vec![SyncRow {
                table: Table::TreatmentRecords,
                id: id(TREATMENT),
                version: 41,
                deleted: false,
                data: Some(serde_json::json!({
                    "id": id(TREATMENT),
                    "patient_id": id(PATIENT),
                    "doctor_id": id(DOCTOR),
                    "appointment_id": null,
                    "notes": "Chest pain at rest",
                    "diagnosis": "Suspected angina",
                    "procedures": ["ECG"],
                    "recorded_at": "2026-11-23T09:30:00Z"
                })),
            }],
            grant_expires_at: Some(ts("2026-11-23T21:32:00Z")),
        },
    );
}

#[test]
fn sign_in_events_response() {
    let body = SignInEventsResponse {
        events: vec![
            SignInEvent {
                id: 7,
                at: ts("2026-11-23T09:30:00Z"),
                kind: SignInKind::SignIn,
                outcome: SignInOutcome::Locked,
                username: "dr.moreau".into(),
                user_id: Some(id(DOCTOR)),
                address: Some("192.0.2.10".into()),
                client_id: Some(id(CLIENT)),
                user_agent: Some("clinic-desktop/0.1".into()),
            },
            SignInEvent {
                id: 6,
                at: ts("2026-11-23T09:29:58Z"),
                kind: SignInKind::SignIn,
                outcome: SignInOutcome::Failure,
                username: "nobody".into(),
                user_id: None,
                address: Some("192.0.2.10".into()),
                client_id: None,
                user_agent: None,
            },
        ],
        next_before: None,
    };
    golden("sign_in_events_response", &body);
}

#[test]
fn history_response() {
    let created = json!({
        "id": ITEM,
        "name": "Nitrile gloves (M)",
        "unit": "box",
        "quantity": 20,
        "reorder_level": 5,
    });
    let adjusted = serde_json::to_value(inventory_item()).expect("entities serialize");
    let body = HistoryResponse {
        table: Table::InventoryItems,
        id: id(ITEM),
        entries: vec![
            HistoryEntry {
                seq: 12,
                at: ts("2026-11-20T08:00:00Z"),
                action: "create".into(),
                actor_id: Some(id(ADMIN)),
                actor_name: Some("Sam Okafor".into()),
                client_id: Some(id(CLIENT)),
                mutation_id: Some(14),
                mutation: "create_inventory_item".into(),
                before: None,
                after: Some(created.clone()),
            },
            HistoryEntry {
                seq: 45,
                at: ts("2026-11-23T09:30:00Z"),
                action: "update".into(),
                actor_id: None,
                actor_name: None,
                client_id: None,
                mutation_id: None,
                mutation: "import_stock".into(),
                before: Some(created),
                after: Some(adjusted),
            },
        ],
    };
    golden("history_response", &body);
}

#[test]
fn error_body() {
    let body = ErrorBody::new(ErrorCode::Unauthorized, "wrong username or password");
    golden("error_body", &body);
}

#[test]
fn error_body_with_field() {
    let body = ErrorBody::new(ErrorCode::InvalidField, "must be at most 5000").with_field("limit");
    golden("error_body_with_field", &body);
}

// ---------------------------------------------------------------------------
// Entities (the `data` of a synced row)
// ---------------------------------------------------------------------------

#[test]
fn entity_staff() {
    golden("entity_staff", &staff());
}

#[test]
fn entity_patient() {
    golden("entity_patient", &patient());
}

#[test]
fn entity_patient_archived() {
    let archived = Patient {
        archived_at: Some(ts("2026-11-30T16:00:00Z")),
        ..patient()
    };
    golden("entity_patient_archived", &archived);
    // An active patient's row reads exactly as before the field existed.
    assert!(
        serde_json::to_value(patient())
            .unwrap()
            .get("archived_at")
            .is_none()
    );
}

#[test]
fn entity_appointment() {
    golden("entity_appointment", &appointment());
}

#[test]
fn entity_treatment_record() {
    golden("entity_treatment_record", &treatment_record());
}

#[test]
fn entity_invoice() {
    golden("entity_invoice", &invoice());
}

#[test]
fn entity_payment() {
    golden("entity_payment", &payment());
}

#[test]
fn entity_inventory_item() {
    golden("entity_inventory_item", &inventory_item());
}

#[test]
fn entity_referral() {
    golden("entity_referral", &referral());
}

/// A referral as reception receives it: the clinical reason is absent
/// (clinic_shared::field_access), and the row still decodes as a referral.
#[test]
fn sync_row_referral_for_reception() {
    let mut data = serde_json::to_value(referral()).expect("serializes");
    assert!(clinic_shared::field_access::redact(
        Role::Reception,
        Table::Referrals,
        &mut data
    ));
    let decoded: Referral = serde_json::from_value(data.clone()).expect("decodes");
    assert_eq!(decoded.reason, "");
    let row = SyncRow {
        table: Table::Referrals,
        id: id(REFERRAL),
        version: 57,
        deleted: false,
        data: Some(data),
    };
    golden("sync_row_referral_for_reception", &row);
}

// ---------------------------------------------------------------------------
// Malformed input is rejected with an error that names the field
// ---------------------------------------------------------------------------

/// A push body holding one mutation, given as JSON text.
fn push_of(mutation: &str) -> String {
    format!(r#"{{"client_id":"{CLIENT}","mutations":[{{"mutation_id":1,"mutation":{mutation}}}]}}"#)
}

/// Asserts that `json` does not decode as `T`, with a non-retryable
/// `bad_request` naming `field` and saying `says`.
fn assert_rejected<T: DeserializeOwned + Debug>(json: &str, field: &str, says: &str) {
    let err = decode_err::<T>(json);
    assert_eq!(err.code, ErrorCode::BadRequest, "{err:?}");
    assert!(!err.retryable, "{err:?}");
    assert_eq!(err.field.as_deref(), Some(field), "{err:?}");
    assert!(err.message.contains(says), "{err:?}");
}

#[test]
fn rejects_unknown_field_in_mutation_args() {
    let body = push_of(&format!(
        r#"{{"type":"create_patient","args":{{"id":"{PATIENT}","first_name":"Jonas",
            "last_name":"Lindqvist","date_of_birth":"1984-03-17","nickname":"Jo"}}}}"#
    ));
    assert_rejected::<PushRequest>(
        &body,
        "mutations[0].mutation.args.nickname",
        "unknown field `nickname`",
    );
}

#[test]
fn rejects_unknown_field_in_mutation_envelope() {
    let body = push_of(&format!(
        r#"{{"type":"create_patient","args":{{"id":"{PATIENT}","first_name":"Jonas",
            "last_name":"Lindqvist","date_of_birth":"1984-03-17"}},"extra":42}}"#
    ));
    assert_rejected::<PushRequest>(
        &body,
        "mutations[0].mutation.extra",
        "invalid value: string \"extra\", expected \"type\" or \"args\"",
    );
}

#[test]
fn rejects_unknown_field_in_patch() {
    let body = push_of(&format!(
        r#"{{"type":"update_patient","args":{{"id":"{PATIENT}","base_version":41,
            "fields":{{"phone":null,"nickname":"Jo"}}}}}}"#
    ));
    assert_rejected::<PushRequest>(
        &body,
        "mutations[0].mutation.args.fields.nickname",
        "unknown field `nickname`",
    );
}

#[test]
fn rejects_wrong_type() {
    let body = push_of(&format!(
        r#"{{"type":"create_invoice","args":{{"id":"{INVOICE}","patient_id":"{PATIENT}",
            "lines":[{{"description":"Consultation","quantity":1,"unit_price_cents":6500}},
                     {{"description":"Peak flow test","quantity":"2","unit_price_cents":1250}}],
            "issued_at":"2026-11-23T10:05:00Z"}}}}"#
    ));
    assert_rejected::<PushRequest>(
        &body,
        "mutations[0].mutation.args.lines[1].quantity",
        "invalid type: string \"2\", expected u32",
    );

    let body = format!(
        r#"{{"client_id":"{CLIENT}","mutations":[{{"mutation_id":"1",
            "mutation":{{"type":"void_invoice","args":{{"id":"{INVOICE}"}}}}}}]}}"#
    );
    assert_rejected::<PushRequest>(&body, "mutations[0].mutation_id", "expected u64");
}

#[test]
fn rejects_unknown_message_type() {
    assert_rejected::<ClientMessage>(
        r#"{"type":"launch_rockets","nonce":1}"#,
        "type",
        "unknown variant `launch_rockets`",
    );
    assert_rejected::<PushRequest>(
        &push_of(r#"{"type":"launch_rockets","args":{}}"#),
        "mutations[0].mutation.type",
        "unknown variant `launch_rockets`",
    );
}

#[test]
fn rejects_bad_timestamp() {
    let body = push_of(&format!(
        r#"{{"type":"book_appointment","args":{{"id":"{APPOINTMENT}","patient_id":"{PATIENT}",
            "doctor_id":"{DOCTOR}","start":"2026-11-23 09:30","end":"2026-11-23T10:00:00Z"}}}}"#
    ));
    assert_rejected::<PushRequest>(
        &body,
        "mutations[0].mutation.args.start",
        "is not a date-time",
    );

    let body = format!(
        r#"{{"token":"{TOKEN}","expires_at":"tomorrow","user":{{"id":"{DOCTOR}",
            "username":"dr.moreau","display_name":"Dr. Claire Moreau","role":"doctor",
            "active":true}}}}"#
    );
    assert_rejected::<LoginResponse>(&body, "expires_at", "`tomorrow` is not a date-time");
}

#[test]
fn rejects_unknown_field_in_websocket_frame() {
    // The server decodes frames with `decode_client_message`, which reads
    // `type` first so the error keeps its path (plain serde would lose it
    // inside an internally tagged enum).
    let frame = format!(
        r#"{{"type":"hello","token":"{TOKEN}","client_id":"{CLIENT}","cursor":0,"resume":true}}"#
    );
    let err = clinic_shared::codec::decode_client_message(frame.as_bytes()).unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest, "{err:?}");
    assert_eq!(err.field.as_deref(), Some("resume"), "{err:?}");
    assert!(err.message.contains("unknown field `resume`"), "{err:?}");
}

#[test]
fn websocket_decoder_reads_every_golden_client_message() {
    for name in ["client_hello", "client_push", "client_ping"] {
        let path = format!("{}/tests/golden/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let by_ws = clinic_shared::codec::decode_client_message(text.as_bytes()).unwrap();
        let by_serde: ClientMessage = serde_json::from_str(&text).unwrap();
        assert_eq!(by_ws, by_serde, "{name}");
    }
}
