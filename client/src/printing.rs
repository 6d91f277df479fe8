//! Printing, for the downtime procedure: the facade's `print_*` methods
//! compose a document from what this desk holds (so it works offline), in
//! the clinic's words and time zone, and `clinic_print` lays it out as PDF.
//!
//! A day sheet carries the visit type (`appointments.reason`, which
//! reception reads too) and a receipt the invoice's lines: what the signed-in
//! person already sees. A patient summary carries clinical content: only a
//! role that reads treatment records prints one, it holds only what this
//! desk holds for that person (fields withheld from them are not on it),
//! and printing it is reported to the access log like opening the chart.

use crate::error::{ClientError, ClientResult};
use crate::facade::ClinicClient;
use crate::types::Entity;
use chrono::NaiveDate;
use clinic_print::{
    DaySheet, Receipt, ReceiptLine, ReceiptPayment, SheetRow, SheetSection, Summary, SummaryEntry,
    SummarySection,
};
use clinic_shared::model::{
    AppointmentStatus, Invoice, InvoiceStatus, Patient, Payment, PaymentMethod, ReferralStatus,
    Role, Sex, Staff, Table, Timestamp, Urgency,
};
use clinic_shared::time::ClinicZone;
use std::collections::HashMap;
use uuid::Uuid;

impl From<clinic_print::PrintError> for ClientError {
    fn from(e: clinic_print::PrintError) -> ClientError {
        ClientError::Print(e)
    }
}

/// How the desk names an appointment's state.
pub fn status_label(status: AppointmentStatus) -> &'static str {
    match status {
        AppointmentStatus::Scheduled => "Booked",
        AppointmentStatus::CheckedIn => "Checked in",
        AppointmentStatus::InProgress => "With doctor",
        AppointmentStatus::Completed => "Done",
        AppointmentStatus::Cancelled => "Cancelled",
        AppointmentStatus::NoShow => "No-show",
    }
}

fn method_label(method: PaymentMethod) -> &'static str {
    match method {
        PaymentMethod::Cash => "Cash",
        PaymentMethod::Card => "Card",
        PaymentMethod::Transfer => "Bank transfer",
        PaymentMethod::Insurance => "Insurance",
    }
}

/// "Thursday 3 December 2026".
fn long_date(date: NaiveDate) -> String {
    date.format("%A %-d %B %Y").to_string()
}

/// "3 December 2026 at 09:41" in the clinic's zone (UTC if the instant
/// cannot be placed, said so).
fn when(zone: &ClinicZone, t: Timestamp) -> String {
    match zone.local(t) {
        Ok((date, time)) => format!("{} at {}", date.format("%-d %B %Y"), time.format("%H:%M")),
        Err(_) => format!("{} UTC", t.as_datetime().format("%-d %B %Y at %H:%M")),
    }
}

fn clock_time(zone: &ClinicZone, t: Timestamp) -> String {
    zone.local(t)
        .map(|(_, time)| time.format("%H:%M").to_string())
        .unwrap_or_else(|_| t.as_datetime().format("%H:%M UTC").to_string())
}

fn patient_name(patient: Option<&Patient>) -> String {
    match patient {
        Some(p) => format!("{}, {}", p.last_name, p.first_name),
        // A row this desk does not hold (not yet synced): say so rather
        // than print an id.
        None => "(patient not on this computer yet)".to_owned(),
    }
}

fn zone_note(zone: &ClinicZone) -> String {
    format!("Times are in the clinic's time zone, {}.", zone.name())
}

impl ClinicClient {
    /// The time by this desk's clock (the injected one, in tests).
    async fn printed_line(&self, zone: &ClinicZone) -> ClientResult<String> {
        let who = self
            .identity()
            .await?
            .user
            .map(|u| format!(" by {}", u.display_name))
            .unwrap_or_default();
        Ok(format!("Printed {}{who}", when(zone, self.now())))
    }

    /// A day sheet as PDF: one doctor's appointments on `date` (in the
    /// clinic's zone), or with `doctor` `None` the whole clinic's, one
    /// section per doctor (every active doctor, so an empty day shows as
    /// empty rather than missing). Cancelled appointments are listed as
    /// such, since a patient may still turn up.
    pub async fn print_day_sheet(
        &self,
        date: NaiveDate,
        doctor: Option<Uuid>,
    ) -> ClientResult<Vec<u8>> {
        let zone = self.clinic_zone().await?;
        let appointments = self.day_schedule(date, doctor).await?;
        let staff: HashMap<Uuid, Staff> = self
            .staff()
            .await?
            .into_iter()
            .map(|e| (e.id, e.data))
            .collect();
        let patients: HashMap<Uuid, Patient> = self
            .patients()
            .await?
            .into_iter()
            .map(|e| (e.id, e.data))
            .collect();
        let doctor_name = |id: Uuid| {
            staff
                .get(&id)
                .map(|s| s.display_name.clone())
                .unwrap_or_else(|| "(a doctor not on this computer yet)".to_owned())
        };
        // Which doctors get a section, in name order.
        let mut doctors: Vec<Uuid> = match doctor {
            Some(d) => {
                if !staff.contains_key(&d) {
                    return Err(ClientError::Invalid(
                        "that doctor is not in this computer's staff list".into(),
                    ));
                }
                vec![d]
            }
            None => staff
                .iter()
                .filter(|(_, s)| s.role == Role::Doctor && s.active)
                .map(|(id, _)| *id)
                .collect(),
        };
        for a in &appointments {
            if !doctors.contains(&a.data.doctor_id) {
                doctors.push(a.data.doctor_id);
            }
        }
        doctors.sort_by_key(|id| doctor_name(*id));
        let sections = doctors
            .iter()
            .map(|&d| {
                let mut mine: Vec<_> = appointments
                    .iter()
                    .filter(|a| a.data.doctor_id == d)
                    .collect();
                mine.sort_by_key(|a| (a.data.start, a.data.end));
                let booked = mine
                    .iter()
                    .filter(|a| a.data.status != AppointmentStatus::Cancelled)
                    .count();
                let heading = match booked {
                    0 => format!("{} (no appointments)", doctor_name(d)),
                    1 => format!("{} (1 appointment)", doctor_name(d)),
                    n => format!("{} ({n} appointments)", doctor_name(d)),
                };
                let rows = mine
                    .iter()
                    .map(|a| {
                        let patient = patients.get(&a.data.patient_id);
                        SheetRow {
                            time: format!(
                                "{}–{}",
                                clock_time(&zone, a.data.start),
                                clock_time(&zone, a.data.end)
                            ),
                            patient: patient_name(patient),
                            born: patient
                                .map(|p| p.date_of_birth.format("%-d %b %Y").to_string())
                                .unwrap_or_default(),
                            phone: patient.and_then(|p| p.phone.clone()).unwrap_or_default(),
                            // Alerts go on paper too: on a downtime day
                            // the sheet is all the desk has.
                            visit: [
                                a.data.reason.clone().filter(|r| !r.trim().is_empty()),
                                patient
                                    .and_then(|p| p.alerts.clone())
                                    .filter(|v| !v.trim().is_empty())
                                    .map(|v| format!("Alert: {v}")),
                            ]
                            .into_iter()
                            .flatten()
                            .collect::<Vec<_>>()
                            .join(" · "),
                            status: status_label(a.data.status).to_owned(),
                        }
                    })
                    .collect();
                SheetSection { heading, rows }
            })
            .collect();
        let title = match doctor {
            Some(d) => format!("Day sheet: {}", doctor_name(d)),
            None => "Schedule: whole clinic".to_owned(),
        };
        let sheet = DaySheet {
            title,
            date: long_date(date),
            zone_note: zone_note(&zone),
            printed: self.printed_line(&zone).await?,
            sections,
        };
        Ok(clinic_print::day_sheet_pdf(&sheet)?)
    }

    /// An invoice as PDF, with the payments recorded against it: titled
    /// "Receipt" once paid in full, "Invoice" while open.
    pub async fn print_invoice(&self, invoice: Uuid) -> ClientResult<Vec<u8>> {
        let zone = self.clinic_zone().await?;
        let Some(Entity { data: inv, .. }) =
            self.entity::<Invoice>(Table::Invoices, invoice).await?
        else {
            return Err(ClientError::Invalid(
                "there is no such invoice on this computer".into(),
            ));
        };
        let patient = self
            .entity::<Patient>(Table::Patients, inv.patient_id)
            .await?
            .map(|e| e.data);
        let mut payments: Vec<Payment> = self
            .rows(Table::Payments)
            .await?
            .into_iter()
            .filter_map(|row| serde_json::from_value::<Payment>(row.data).ok())
            .filter(|p| p.invoice_id == invoice)
            .collect();
        payments.sort_by_key(|p| p.paid_at);
        // Refunds count against what was paid: the sheet's "paid" is what
        // the clinic kept.
        let paid: i64 = payments
            .iter()
            .map(|p| {
                if p.refund {
                    -p.amount_cents
                } else {
                    p.amount_cents
                }
            })
            .sum();
        let balance = inv.total_cents.saturating_sub(paid);
        let (title, status) = match inv.status {
            InvoiceStatus::Draft => (
                "Draft invoice",
                "Draft: not issued yet, nothing is to be paid on it".to_owned(),
            ),
            InvoiceStatus::Void => {
                let reason = inv
                    .void_reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                let refund = match inv.refund_due_cents() {
                    0 if inv.refunded_cents > 0 => {
                        format!(" {} was refunded.", clinic_print::money(inv.refunded_cents))
                    }
                    0 => String::new(),
                    due => format!(" {} is to be refunded.", clinic_print::money(due)),
                };
                (
                    "Invoice",
                    format!("Void{reason}: nothing is owed on this invoice.{refund}"),
                )
            }
            _ if balance <= 0 => ("Receipt", "Paid in full. Thank you.".to_owned()),
            _ => (
                "Invoice",
                format!("Open: {} to pay", clinic_print::money(balance)),
            ),
        };
        let receipt = Receipt {
            title: title.to_owned(),
            // The id's first and last groups: short enough to read out,
            // unique enough within a clinic to find it again.
            number: short_number(invoice),
            issued: match inv.status {
                InvoiceStatus::Draft => format!("Started {}", when(&zone, inv.issued_at)),
                _ => format!("Issued {}", when(&zone, inv.issued_at)),
            },
            patient: patient
                .as_ref()
                .map(|p| format!("{} {}", p.first_name, p.last_name))
                .unwrap_or_else(|| patient_name(None)),
            born: patient
                .as_ref()
                .map(|p| p.date_of_birth.format("%-d %B %Y").to_string())
                .unwrap_or_default(),
            address: patient.as_ref().and_then(|p| p.address.clone()),
            lines: inv
                .lines
                .iter()
                .map(|l| ReceiptLine {
                    description: l.description.clone(),
                    quantity: l.quantity,
                    unit_price_cents: l.unit_price_cents,
                })
                .collect(),
            total_cents: inv.total_cents,
            payments: payments
                .iter()
                .map(|p| ReceiptPayment {
                    when: when(&zone, p.paid_at),
                    method: if p.refund {
                        format!("Refund ({})", method_label(p.method).to_lowercase())
                    } else {
                        method_label(p.method).to_owned()
                    },
                    amount_cents: if p.refund {
                        -p.amount_cents
                    } else {
                        p.amount_cents
                    },
                })
                .collect(),
            paid_cents: paid,
            status,
            zone_note: zone_note(&zone),
            printed: self.printed_line(&zone).await?,
        };
        Ok(clinic_print::receipt_pdf(&receipt)?)
    }
    /// The end-of-day report as PDF ([`ClinicClient::day_report`]): totals
    /// by method and by staff member, every payment and refund, and what
    /// is still open, for the till and the books on a day without network.
    pub async fn print_day_report(
        &self,
        date: NaiveDate,
        staff: Option<Uuid>,
    ) -> ClientResult<Vec<u8>> {
        let zone = self.clinic_zone().await?;
        let report = self.day_report(date, staff).await?;
        let money = clinic_print::money;
        let whose = match (staff, report.by_staff.first()) {
            (Some(_), Some(s)) => format!(": {}", s.name),
            (Some(_), None) => ": nothing taken by this staff member".to_owned(),
            (None, _) => ": whole clinic".to_owned(),
        };
        let mut details: Vec<(String, String)> = report
            .by_method
            .iter()
            .filter_map(|t| {
                let m = t.method?;
                let refunds = if t.refunded_cents > 0 {
                    format!(
                        " (taken {}, refunded {})",
                        money(t.taken_cents),
                        money(t.refunded_cents)
                    )
                } else {
                    String::new()
                };
                Some((
                    method_label(m).to_owned(),
                    format!("{}{refunds}", money(t.net_cents)),
                ))
            })
            .collect();
        details.push((
            "Total".into(),
            format!(
                "{} net from {} payments and refunds",
                money(report.total.net_cents),
                report.total.count
            ),
        ));
        details.push((
            "Invoiced".into(),
            format!(
                "{} invoices issued, {}",
                report.issued_count,
                money(report.issued_cents)
            ),
        ));
        details.push((
            "Still open".into(),
            format!(
                "{} invoices, {} owed",
                report.open_invoices.len(),
                money(report.open_cents)
            ),
        ));
        if report.unreadable > 0 {
            details.push((
                "Not counted".into(),
                format!(
                    "{} billing records on this computer could not be read and are left out of these figures",
                    report.unreadable
                ),
            ));
        }
        let entry = |heading: String| SummaryEntry {
            heading,
            paragraphs: vec![],
        };
        let sections = vec![
            SummarySection {
                heading: "By staff member".into(),
                empty: "No money was taken.".into(),
                entries: report
                    .by_staff
                    .iter()
                    .map(|s| {
                        entry(format!(
                            "{}: taken {}, refunded {} ({} entries)",
                            s.name,
                            money(s.taken_cents),
                            money(s.refunded_cents),
                            s.count
                        ))
                    })
                    .collect(),
            },
            SummarySection {
                heading: "Payments and refunds".into(),
                empty: "None on this day.".into(),
                entries: report
                    .payments
                    .iter()
                    .map(|p| {
                        entry(format!(
                            "{} {}: {} {} {} (by {})",
                            clock_time(&zone, p.at),
                            p.patient,
                            if p.refund { "refund" } else { "paid" },
                            money(p.amount_cents),
                            method_label(p.method).to_lowercase(),
                            p.by
                        ))
                    })
                    .collect(),
            },
            SummarySection {
                heading: "Open invoices".into(),
                empty: "Nothing is owed.".into(),
                entries: report
                    .open_invoices
                    .iter()
                    .map(|i| {
                        entry(format!(
                            "{} {}: {} owed (issued {})",
                            short_number(i.id),
                            i.patient,
                            money(i.cents),
                            when(&zone, i.issued_at)
                        ))
                    })
                    .collect(),
            },
            SummarySection {
                heading: "Refunds due".into(),
                empty: "No refunds are due.".into(),
                entries: report
                    .refunds_due
                    .iter()
                    .map(|i| {
                        entry(format!(
                            "{} {}: {} to pay back",
                            short_number(i.id),
                            i.patient,
                            money(i.cents)
                        ))
                    })
                    .collect(),
            },
        ];
        let summary = Summary {
            title: format!("End of day{whose}"),
            subtitle: long_date(date),
            zone_note: zone_note(&zone),
            printed: self.printed_line(&zone).await?,
            details,
            sections,
        };
        Ok(clinic_print::summary_pdf(&summary)?)
    }

    /// A summary for the patient, printed by a doctor (or an admin): the
    /// patient's details, their visits, treatment records and referrals,
    /// newest first. Reported to the access log as a view of the chart
    /// (queued while offline, like every view).
    pub async fn print_patient_summary(&self, patient: Uuid) -> ClientResult<Vec<u8>> {
        let me = self
            .identity()
            .await?
            .user
            .ok_or(ClientError::NotSignedIn)?;
        if !clinic_shared::permissions::can_read(me.role, Table::TreatmentRecords) {
            return Err(ClientError::Invalid(
                "a patient summary holds treatment records: a doctor prints it".into(),
            ));
        }
        let zone = self.clinic_zone().await?;
        let Some(chart) = self.chart(patient).await? else {
            return Err(ClientError::Invalid(
                "there is no such patient on this computer".into(),
            ));
        };
        let staff: HashMap<Uuid, Staff> = self
            .staff()
            .await?
            .into_iter()
            .map(|e| (e.id, e.data))
            .collect();
        let name_of = |id: Uuid| {
            staff
                .get(&id)
                .map(|s| s.display_name.clone())
                .unwrap_or_else(|| "a doctor not on this computer yet".to_owned())
        };
        let p = &chart.patient.data;
        let mut details = Vec::new();
        let sex = p.sex.map(|s| {
            match s {
                Sex::Female => "Female",
                Sex::Male => "Male",
                Sex::Diverse => "Diverse",
            }
            .to_owned()
        });
        let emergency = [p.emergency_contact.clone(), p.emergency_phone.clone()]
            .into_iter()
            .flatten()
            .filter(|v| !v.trim().is_empty())
            .collect::<Vec<_>>();
        let insurance = match (&p.insurer, &p.insurance_number) {
            (None, None) => None,
            (insurer, number) => Some(format!(
                "{}{}",
                insurer.as_deref().unwrap_or("an insurer"),
                number
                    .as_deref()
                    .map(|n| format!(", no. {n}"))
                    .unwrap_or_default()
            )),
        };
        for (label, value) in [
            ("Allergies and alerts", p.alerts.clone()),
            ("Sex / gender", sex),
            ("Phone", p.phone.clone()),
            ("E-mail", p.email.clone()),
            ("Address", p.address.clone()),
            ("Insurance", insurance),
            (
                "In an emergency",
                (!emergency.is_empty()).then(|| emergency.join(", ")),
            ),
        ] {
            if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
                details.push((label.to_owned(), v));
            }
        }
        let visits = chart
            .appointments
            .iter()
            .map(|a| SummaryEntry {
                heading: format!(
                    "{}, {}–{} with {}: {}",
                    zone.local(a.data.start)
                        .map(|(d, _)| d.format("%-d %B %Y").to_string())
                        .unwrap_or_default(),
                    clock_time(&zone, a.data.start),
                    clock_time(&zone, a.data.end),
                    name_of(a.data.doctor_id),
                    status_label(a.data.status)
                ),
                paragraphs: a
                    .data
                    .reason
                    .iter()
                    .filter(|r| !r.trim().is_empty())
                    .map(|r| format!("Visit: {r}"))
                    .collect(),
            })
            .collect();
        let records = chart
            .treatment_records
            .iter()
            .map(|r| {
                let mut paragraphs = Vec::new();
                if !r.data.diagnosis.trim().is_empty() {
                    paragraphs.push(format!("Diagnosis: {}", r.data.diagnosis));
                }
                if !r.data.procedures.is_empty() {
                    paragraphs.push(format!("Procedures: {}", r.data.procedures.join("; ")));
                }
                if !r.data.notes.trim().is_empty() {
                    paragraphs.push(format!("Notes: {}", r.data.notes));
                }
                if paragraphs.is_empty() {
                    paragraphs.push("(Nothing written, or not shown to you.)".to_owned());
                }
                SummaryEntry {
                    heading: format!(
                        "{}, {}",
                        when(&zone, r.data.recorded_at),
                        name_of(r.data.doctor_id)
                    ),
                    paragraphs,
                }
            })
            .collect();
        let referrals = chart
            .referrals
            .iter()
            .map(|r| SummaryEntry {
                heading: format!(
                    "{}: to {} ({}, {})",
                    when(&zone, r.data.created_at),
                    r.data.referred_to,
                    match r.data.urgency {
                        Urgency::Routine => "routine",
                        Urgency::Urgent => "urgent",
                    },
                    match r.data.status {
                        ReferralStatus::Draft => "not sent yet",
                        ReferralStatus::Sent => "sent",
                        ReferralStatus::Accepted => "accepted",
                        ReferralStatus::Completed => "seen",
                        ReferralStatus::Cancelled => "withdrawn",
                    }
                ),
                paragraphs: [&r.data.reason]
                    .into_iter()
                    .filter(|t| !t.trim().is_empty())
                    .map(|t| format!("Reason: {t}"))
                    .collect(),
            })
            .collect();
        let summary = Summary {
            title: format!("Patient summary: {} {}", p.first_name, p.last_name),
            subtitle: format!("Born {}", p.date_of_birth.format("%-d %B %Y")),
            zone_note: zone_note(&zone),
            printed: self.printed_line(&zone).await?,
            details,
            sections: vec![
                SummarySection {
                    heading: "Treatment records".into(),
                    empty: "No treatment records.".into(),
                    entries: records,
                },
                SummarySection {
                    heading: "Referrals".into(),
                    empty: "No referrals.".into(),
                    entries: referrals,
                },
                SummarySection {
                    heading: "Visits".into(),
                    empty: "No visits.".into(),
                    entries: visits,
                },
            ],
        };
        let pdf = clinic_print::summary_pdf(&summary)?;
        // Printed is read: on the record before the file leaves the desk.
        self.report_view(Table::Patients, patient).await?;
        Ok(pdf)
    }
}

/// `0193f3a2-…-8c21d4e5f6a7` → `0193F3A2-F6A7`.
pub(crate) fn short_number(id: Uuid) -> String {
    let hex = id.simple().to_string().to_uppercase();
    format!("{}-{}", &hex[..8], &hex[hex.len() - 4..])
}

/// How long a printout stays in the user's folder.
const KEEP_PRINTOUTS: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Writes `pdf` as `dir/name` (private), after removing printouts there
/// older than [`KEEP_PRINTOUTS`].
pub(crate) fn save(
    dir: &std::path::Path,
    name: &str,
    pdf: &[u8],
) -> ClientResult<std::path::PathBuf> {
    // A name from the desk, not a path: nothing outside the folder.
    let safe = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.ends_with(".pdf")
        && !name.starts_with('.');
    if !safe {
        return Err(ClientError::Invalid(format!(
            "{name:?} is not a printout file name"
        )));
    }
    crate::files::private_dir(dir)?;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > KEEP_PRINTOUTS);
            if old {
                // Best effort: a file that cannot be removed now is tried
                // again at the next printout.
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let path = dir.join(name);
    crate::files::write_private(&path, pdf)?;
    Ok(path)
}
