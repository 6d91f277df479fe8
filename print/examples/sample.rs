//! Writes a sample day sheet and receipt to the directory given (default
//! the current one), to look at the layout: `cargo run -p clinic-print
//! --example sample -- /tmp`.

use clinic_print::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    let row = |time: &str, patient: &str, visit: &str, status: &str| SheetRow {
        time: time.into(),
        patient: patient.into(),
        born: "2 Mar 1984".into(),
        phone: "+49 30 1234 5678".into(),
        visit: visit.into(),
        status: status.into(),
    };
    let sheet = DaySheet {
        title: "Schedule: whole clinic".into(),
        date: "Thursday 3 December 2026".into(),
        zone_note: "Times are in the clinic's time zone, Europe/Berlin.".into(),
        printed: "Printed 2 December 2026 at 18:05 by Rita Alvarez".into(),
        sections: vec![
            SheetSection {
                heading: "Dr Amara Okafor (3 appointments)".into(),
                rows: vec![
                    row("08:30–09:00", "Müller, Zoë", "Check-up", "Booked"),
                    row(
                        "09:00–09:45",
                        "Wolfeschlegelsteinhausenbergerdorff, Hubert Blaine",
                        "First visit with a long description",
                        "Checked in",
                    ),
                    row("10:00–10:30", "Ωμέγα, Ελένη", "Vaccination", "Cancelled"),
                ],
            },
            SheetSection {
                heading: "Dr Kenji Sato (no appointments)".into(),
                rows: vec![],
            },
        ],
    };
    std::fs::write(dir.join("sample-day-sheet.pdf"), day_sheet_pdf(&sheet)?)?;
    let receipt = Receipt {
        title: "Receipt".into(),
        number: "0193F3A2-F6A7".into(),
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
            amount_cents: 8_750,
        }],
        paid_cents: 8_750,
        status: "Paid in full. Thank you.".into(),
        zone_note: "Times are in the clinic's time zone, Europe/Berlin.".into(),
        printed: "Printed 2 December 2026 at 09:46 by Rita Alvarez".into(),
    };
    std::fs::write(dir.join("sample-receipt.pdf"), receipt_pdf(&receipt)?)?;
    Ok(())
}
