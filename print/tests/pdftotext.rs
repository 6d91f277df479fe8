//! The PDFs read back with poppler's `pdftotext` (what a person or a
//! script would get from them): every name, time and amount is there as
//! text, in reading order, on the right page.

#![allow(clippy::unwrap_used, missing_docs)]

use clinic_print::*;
use std::process::Command;

fn text_of(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doc.pdf");
    std::fs::write(&file, pdf).unwrap();
    let out = Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(&file)
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

fn row(time: &str, patient: &str) -> SheetRow {
    SheetRow {
        time: time.into(),
        patient: patient.into(),
        born: "1984-03-02".into(),
        phone: "+49 30 1234".into(),
        visit: "Check-up".into(),
        status: "Booked".into(),
    }
}

#[test]
fn a_day_sheet_reads_back_with_every_appointment_in_order() {
    let sheet = DaySheet {
        title: "Schedule: whole clinic".into(),
        date: "Thursday 3 December 2026".into(),
        zone_note: "Times are in Europe/Berlin.".into(),
        printed: "Printed 2 December 2026 at 18:05 by Rita Alvarez".into(),
        sections: vec![
            SheetSection {
                heading: "Dr Sato (2 appointments)".into(),
                rows: vec![
                    row("09:00–09:30", "Müller, Zoë"),
                    row("10:00–10:30", "Ωμέγα, Ελένη"),
                ],
            },
            SheetSection {
                heading: "Dr Okafor (no appointments)".into(),
                rows: vec![],
            },
        ],
    };
    let text = text_of(&day_sheet_pdf(&sheet).unwrap());
    for expected in [
        "Schedule: whole clinic",
        "Thursday 3 December 2026",
        "Times are in Europe/Berlin.",
        "Dr Sato (2 appointments)",
        "09:00–09:30",
        "Müller, Zoë",
        "Ωμέγα, Ελένη",
        "Check-up",
        "Dr Okafor (no appointments)",
        "No appointments.",
        "Printed 2 December 2026 at 18:05 by Rita Alvarez",
        "Page 1 of 1",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    let at = |s: &str| text.find(s).unwrap();
    assert!(at("Müller, Zoë") < at("Ωμέγα, Ελένη"));
    assert!(at("Ωμέγα, Ελένη") < at("Dr Okafor"));
}

#[test]
fn a_long_day_runs_over_pages_with_the_headers_repeated() {
    let rows = (0..130)
        .map(|i| {
            row(
                &format!("{:02}:{:02}", 7 + i / 12, (i % 12) * 5),
                &format!("Patient{i:03}"),
            )
        })
        .collect();
    let sheet = DaySheet {
        title: "Day sheet: Dr Sato".into(),
        date: "Thursday 3 December 2026".into(),
        sections: vec![SheetSection {
            heading: "Dr Sato".into(),
            rows,
        }],
        ..DaySheet::default()
    };
    let text = text_of(&day_sheet_pdf(&sheet).unwrap());
    let pages: Vec<&str> = text
        .split('\u{c}')
        .filter(|p| !p.trim().is_empty())
        .collect();
    assert!(pages.len() >= 3, "{} pages", pages.len());
    let last = pages.len();
    for (i, page) in pages.iter().enumerate() {
        assert!(
            page.contains(&format!("Page {} of {last}", i + 1)),
            "page {i}:\n{page}"
        );
        assert!(
            page.contains("Patient") && page.contains("Status"),
            "headers on page {i}"
        );
    }
    assert!(pages[1].contains("Dr Sato (continued)"));
    for i in 0..130 {
        assert_eq!(
            text.matches(&format!("Patient{i:03}")).count(),
            1,
            "Patient{i:03}"
        );
    }
}

#[test]
fn a_receipt_reads_back_with_lines_payments_and_balance() {
    let receipt = Receipt {
        title: "Receipt".into(),
        number: "0193-AB12".into(),
        issued: "Issued 2 December 2026 at 09:41".into(),
        patient: "Zoë Müller".into(),
        born: "2 March 1984".into(),
        address: Some("Hauptstraße 5\n10115 Berlin".into()),
        lines: vec![
            ReceiptLine {
                description: "Consultation".into(),
                quantity: 1,
                unit_price_cents: 8_000,
            },
            ReceiptLine {
                description: "Bandage".into(),
                quantity: 3,
                unit_price_cents: 250,
            },
        ],
        total_cents: 8_750,
        payments: vec![ReceiptPayment {
            when: "2 December 2026 at 09:45".into(),
            method: "Card".into(),
            amount_cents: 5_000,
        }],
        paid_cents: 5_000,
        status: "Open: 37.50 to pay".into(),
        zone_note: "Times are in Europe/Berlin.".into(),
        printed: "Printed by Rita Alvarez".into(),
    };
    let text = text_of(&receipt_pdf(&receipt).unwrap());
    for expected in [
        "Receipt 0193-AB12",
        "Zoë Müller",
        "Hauptstraße 5",
        "10115 Berlin",
        "Consultation",
        "80.00",
        "Bandage",
        "2.50",
        "7.50",
        "87.50",
        "Card",
        "50.00",
        "37.50",
        "Open: 37.50 to pay",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    let line_of = |s: &str| text.lines().find(|l| l.contains(s)).unwrap().to_owned();
    assert!(line_of("Total").contains("87.50"), "{}", line_of("Total"));
    assert!(
        line_of("Balance").contains("37.50"),
        "{}",
        line_of("Balance")
    );
}
