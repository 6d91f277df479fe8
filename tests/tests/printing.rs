//! Printing for downtime, end to end: the real server (in a clinic zone
//! that is not UTC), the real `clinic` CLI syncing its encrypted mirror,
//! and the PDFs it writes read back with poppler's `pdftotext`.

#![allow(clippy::unwrap_used, missing_docs)]

use clinic_e2e::*;
use clinic_shared::model::{InvoiceLine, PaymentMethod};
use clinic_shared::mutation::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use uuid::Uuid;

fn pdf_text(file: &Path) -> String {
    let out = Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(file)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils; scripts/setup-deps.sh --test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn patient(first: &str, last: &str, phone: &str) -> CreatePatient {
    CreatePatient {
        id: Uuid::now_v7(),
        first_name: first.into(),
        last_name: last.into(),
        date_of_birth: "1984-03-02".parse().unwrap(),
        phone: Some(phone.into()),
        email: None,
        address: Some("Hauptstraße 5\n10115 Berlin".into()),
        sex: None,
        emergency_contact: None,
        emergency_phone: None,
        insurer: None,
        insurance_number: None,
        alerts: None,
    }
}

fn book(patient: Uuid, doctor: Uuid, start: &str, end: &str, reason: &str) -> BookAppointment {
    BookAppointment {
        id: Uuid::now_v7(),
        patient_id: patient,
        doctor_id: doctor,
        start: ts(start),
        end: ts(end),
        reason: Some(reason.into()),
        correction: false,
    }
}

#[tokio::test]
async fn the_cli_prints_a_day_sheet_and_a_receipt_in_the_clinic_zone_even_offline() {
    let server = Server::start_tls_with(&["--time-zone", "America/New_York"]);
    let mut reception = Api::login(&server, "reception").await;
    let doyle = staff_id(&reception, "doctor").await;
    let sato = staff_id(&reception, "doctor2").await;
    let names = reception.table(clinic_shared::model::Table::Staff).await;
    let display = |id: Uuid| {
        names[&id].data.as_ref().unwrap()["display_name"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (doyle_name, sato_name) = (display(doyle), display(sato));

    let zoe = patient("Zoë", "Müller", "+1 555 0101");
    let elena = patient("Ελένη", "Ωμέγα", "+1 555 0102");
    let (zoe_id, elena_id) = (zoe.id, elena.id);
    applied_seq(&reception.push_one(Mutation::CreatePatient(zoe)).await);
    applied_seq(&reception.push_one(Mutation::CreatePatient(elena)).await);
    // 14:00Z is 09:00 in New York in March 2031 (EST, before the switch on
    // 9 March); 23:30Z on the 3rd is 18:30 the same day there, not the 4th.
    let morning = book(
        zoe_id,
        doyle,
        "2031-03-03T14:00:00Z",
        "2031-03-03T14:30:00Z",
        "Check-up",
    );
    let evening = book(
        elena_id,
        sato,
        "2031-03-03T23:30:00Z",
        "2031-03-04T00:00:00Z",
        "Vaccination",
    );
    let next_day = book(
        zoe_id,
        doyle,
        "2031-03-04T14:00:00Z",
        "2031-03-04T14:30:00Z",
        "Follow-up",
    );
    let visit = morning.id;
    for b in [morning, evening, next_day] {
        applied_seq(&reception.push_one(Mutation::BookAppointment(b)).await);
    }
    let invoice = Uuid::now_v7();
    applied_seq(
        &reception
            .push_one(Mutation::CreateInvoice(CreateInvoice {
                id: invoice,
                patient_id: zoe_id,
                appointment_id: Some(visit),
                lines: vec![
                    InvoiceLine {
                        description: "Consultation".into(),
                        quantity: 1,
                        unit_price_cents: 8_000,
                    },
                    InvoiceLine {
                        description: "Bandage".into(),
                        quantity: 3,
                        unit_price_cents: 250,
                    },
                ],
                issued_at: ts("2031-03-03T14:41:00Z"),
                draft: false,
            }))
            .await,
    );
    let pay = |amount, at: &str| {
        Mutation::RecordPayment(RecordPayment {
            id: Uuid::now_v7(),
            invoice_id: invoice,
            amount_cents: amount,
            method: PaymentMethod::Card,
            paid_at: ts(at),
        })
    };
    applied_seq(&reception.push_one(pay(5_000, "2031-03-03T14:45:00Z")).await);

    let work = tempfile::tempdir().unwrap();
    let desk = work.path().join("desk");
    let login = clinic_cli(
        &desk,
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
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    clinic_cli_ok(&desk, &["sync"]);

    // The whole clinic's day: both doctors, local times, the zone named.
    let sheet = work.path().join("day.pdf");
    let sheet_arg = sheet.to_str().unwrap();
    clinic_cli_ok(
        &desk,
        &[
            "print",
            "day-sheet",
            "--date",
            "2031-03-03",
            "--out",
            sheet_arg,
        ],
    );
    let mode = std::fs::metadata(&sheet).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o600,
        "a printout names patients: readable by its user only"
    );
    let text = pdf_text(&sheet);
    for expected in [
        "Schedule: whole clinic",
        "Monday 3 March 2031",
        "America/New_York",
        &format!("{doyle_name} (1 appointment)"),
        &format!("{sato_name} (1 appointment)"),
        "09:00–09:30",
        "18:30–19:00",
        "Müller, Zoë",
        "Ωμέγα, Ελένη",
        "+1 555 0101",
        "Check-up",
        "Vaccination",
        "Booked",
        "Printed",
        "Page 1 of 1",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    assert!(!text.contains("14:00"), "a UTC time leaked:\n{text}");
    assert!(
        !text.contains("Follow-up"),
        "the next day's visit is not on this sheet"
    );

    // One doctor's sheet has only their patients.
    let doyle_sheet = work.path().join("doyle.pdf");
    clinic_cli_ok(
        &desk,
        &[
            "print",
            "day-sheet",
            "--date",
            "2031-03-03",
            "--doctor",
            "doctor",
            "--out",
            doyle_sheet.to_str().unwrap(),
        ],
    );
    let text = pdf_text(&doyle_sheet);
    assert!(text.contains(&format!("Day sheet: {doyle_name}")), "{text}");
    assert!(text.contains("Müller, Zoë"), "{text}");
    assert!(!text.contains("Ωμέγα"), "another doctor's patient:\n{text}");

    // The invoice while open, then the receipt once paid in full.
    let bill = work.path().join("invoice.pdf");
    let bill_arg = bill.to_str().unwrap();
    let invoice_arg = invoice.to_string();
    clinic_cli_ok(
        &desk,
        &["print", "invoice", &invoice_arg, "--out", bill_arg],
    );
    let text = pdf_text(&bill);
    for expected in [
        "Invoice ",
        "Issued 3 March 2031 at 09:41",
        "Zoë Müller",
        "Hauptstraße 5",
        "Consultation",
        "80.00",
        "7.50",
        "87.50",
        "3 March 2031 at 09:45",
        "Card",
        "50.00",
        "Open: 37.50 to pay",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    applied_seq(&reception.push_one(pay(3_750, "2031-03-03T14:50:00Z")).await);
    clinic_cli_ok(&desk, &["sync"]);

    // The server goes away: printing needs only what the desk holds.
    drop(server);
    clinic_cli_ok(
        &desk,
        &[
            "--no-sync",
            "print",
            "invoice",
            &invoice_arg,
            "--out",
            bill_arg,
        ],
    );
    let text = pdf_text(&bill);
    assert!(text.contains("Receipt "), "{text}");
    assert!(text.contains("Paid in full"), "{text}");
    assert!(text.contains("37.50") && text.contains("0.00"), "{text}");

    // The end of that day, offline too: by method, each payment at its
    // New York time, the invoice issued that day; nothing left open on it.
    let report = work.path().join("day-report.pdf");
    let report_arg = report.to_str().unwrap();
    clinic_cli_ok(
        &desk,
        &[
            "--no-sync",
            "print",
            "day-report",
            "--date",
            "2031-03-03",
            "--out",
            report_arg,
        ],
    );
    let text = pdf_text(&report);
    for expected in [
        "End of day: whole clinic",
        "Monday 3 March 2031",
        "America/New_York",
        "87.50 net from 2 payments and refunds",
        "1 invoices issued, 87.50",
        "09:45 Müller, Zoë: paid 50.00 card",
        "09:50 Müller, Zoë: paid 37.50 card",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from the day report:\n{text}"
        );
    }
    assert!(!text.contains("14:45"), "a UTC time leaked:\n{text}");
    assert!(!text.contains("Not counted"), "every row was read:\n{text}");
    // One person's takings: the receptionist took both; a doctor none.
    clinic_cli_ok(
        &desk,
        &[
            "--no-sync",
            "print",
            "day-report",
            "--date",
            "2031-03-03",
            "--staff",
            "doctor",
            "--out",
            report_arg,
        ],
    );
    let text = pdf_text(&report);
    assert!(
        text.contains("End of day: nothing taken by this staff member"),
        "{text}"
    );
    assert!(text.contains("0.00 net from 0 payments"), "{text}");

    // An invoice this desk does not have: a clear sentence, no file.
    let missing = work.path().join("missing.pdf");
    let out = clinic_cli(
        &desk,
        &[
            "--no-sync",
            "print",
            "invoice",
            &Uuid::now_v7().to_string(),
            "--out",
            missing.to_str().unwrap(),
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no such invoice on this computer"), "{err}");
    assert!(!missing.exists());
    let leftovers: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".clinic-print-")
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");
}

#[tokio::test]
async fn a_doctor_prints_a_patient_summary_which_is_in_the_access_log_and_reception_may_not() {
    use clinic_shared::protocol::{AccessKind, AccessLogResponse};
    let server = Server::start_tls_with(&["--time-zone", "Europe/Berlin"]);
    let mut reception = Api::login(&server, "reception").await;
    let mut doctor = Api::login(&server, "doctor").await;
    let admin = Api::login(&server, "admin").await;
    let doyle = staff_id(&reception, "doctor").await;
    let zoe = patient("Zoë", "Müller", "+49 30 1234");
    let zoe_id = zoe.id;
    applied_seq(&reception.push_one(Mutation::CreatePatient(zoe)).await);
    applied_seq(
        &reception
            .push_one(Mutation::BookAppointment(book(
                zoe_id,
                doyle,
                "2031-03-03T08:00:00Z",
                "2031-03-03T08:30:00Z",
                "Check-up",
            )))
            .await,
    );
    let notes = "Fell on ice two days ago. Swelling over the lateral malleolus, \
                 no bony tenderness (Ottawa rules negative), full weight bearing. \
                 Rest, ice, compression and elevation for a week; review in ten days \
                 or sooner if the pain gets worse.";
    applied_seq(
        &doctor
            .push_one(Mutation::AddTreatmentRecord(AddTreatmentRecord {
                id: Uuid::now_v7(),
                patient_id: zoe_id,
                appointment_id: None,
                notes: notes.into(),
                diagnosis: "Sprain of the left ankle".into(),
                procedures: vec!["Compression bandage".into()],
                recorded_at: ts("2031-03-03T08:20:00Z"),
            }))
            .await,
    );

    let work = tempfile::tempdir().unwrap();
    let login = |desk: &Path, user: &str| {
        let out = clinic_cli(
            desk,
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
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        clinic_cli_ok(desk, &["sync"]);
    };
    let doctor_desk = work.path().join("doctor");
    login(&doctor_desk, "doctor");
    let file = work.path().join("summary.pdf");
    let zoe_arg = zoe_id.to_string();
    clinic_cli_ok(
        &doctor_desk,
        &[
            "print",
            "summary",
            &zoe_arg,
            "--out",
            file.to_str().unwrap(),
        ],
    );
    let text = pdf_text(&file);
    for expected in [
        "Patient summary: Zoë Müller",
        "Born 2 March 1984",
        "Hauptstraße 5",
        "Treatment records",
        "3 March 2031 at 09:20",
        "Diagnosis: Sprain of the left ankle",
        "Procedures: Compression bandage",
        "Notes: Fell on ice",
        "if the pain gets worse.",
        "Visits",
        "09:00–09:30",
        "No referrals.",
        "Europe/Berlin",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    // The long notes are wrapped over several lines, every word kept.
    let words: String = text.split_whitespace().collect();
    let wanted: String = notes.split_whitespace().collect();
    assert!(words.contains(&wanted), "the notes are all there:\n{text}");

    // The print is on the record, as the doctor's view of the chart.
    let views = |log: &AccessLogResponse| {
        log.entries
            .iter()
            .filter(|e| e.kind == AccessKind::View && e.user_name.as_deref().is_some())
            .count()
    };
    let mut seen = 0;
    for _ in 0..200 {
        clinic_cli_ok(&doctor_desk, &["sync"]);
        let log: AccessLogResponse = admin
            .get(&format!("/v1/audit/access?patient={zoe_id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen = views(&log);
        if seen > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(seen, 1, "one view recorded for the printed summary");

    // Reception prints no clinical summary: a sentence, no file.
    let reception_desk = work.path().join("reception");
    login(&reception_desk, "reception");
    let refused = work.path().join("refused.pdf");
    let out = clinic_cli(
        &reception_desk,
        &[
            "print",
            "summary",
            &zoe_arg,
            "--out",
            refused.to_str().unwrap(),
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a doctor prints it"), "{err}");
    assert!(!refused.exists());
}
