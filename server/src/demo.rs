//! The demo clinic: seeded on the first start of `clinic-server serve --demo`
//! so that a new user can sign in and see a working clinic at once.
//!
//! Staff `admin`, `doctor`, `doctor2`, `assistant`, `reception`, all with the
//! password `demo` (which is too short for real accounts: demo mode only),
//! about 200 patients, a week of appointments for both doctors, treatment
//! records for past visits, invoices with some payments, and stock. The data
//! is generated from a fixed seed, so every demo looks the same.

use crate::Clock;
use crate::admin::{ToolWrite, write_rows_into_empty};
use crate::auth;
use crate::storage::{Storage, StorageError};
use clinic_shared::model::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use uuid::Uuid;

/// The demo password of every demo account.
pub const DEMO_PASSWORD: &str = "demo";

/// What was seeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSummary {
    /// Usernames created.
    pub usernames: Vec<String>,
    /// Patients created.
    pub patients: usize,
    /// Appointments created.
    pub appointments: usize,
}

/// Seeding failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Hashing failed.
    #[error(transparent)]
    Hash(#[from] auth::HashError),
}

const FIRST: &[&str] = &[
    "Ana", "Ben", "Chloé", "Dmitri", "Elif", "Farah", "Goran", "Hana", "Ivan", "Jun", "Kofi",
    "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quentin", "Rosa", "Sven", "Tariq", "Uma", "Victor",
    "Wen", "Ximena", "Yusuf", "Zoe",
];
const LAST: &[&str] = &[
    "Almeida",
    "Baker",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "García",
    "Haddad",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Lindqvist",
    "Moreau",
    "Novak",
    "Okafor",
    "Petrov",
    "Quinn",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Urbina",
    "Vargas",
    "Weber",
    "Xu",
    "Yilmaz",
    "Zimmermann",
];
const REASONS: &[&str] = &[
    "Check-up",
    "Follow-up",
    "Vaccination",
    "Back pain",
    "Blood test",
    "Consultation",
];
const DIAGNOSES: &[&str] = &[
    "Seasonal allergy",
    "Lower back strain",
    "Hypertension, controlled",
    "Healthy",
    "Upper respiratory infection",
];
/// The demo clinic's price list: code, line text, price in cents, and the
/// visit length an entry bills (the 30-minute consultation is what the
/// demo's past invoices say).
const PRICE_LIST: &[(&str, &str, i64, Option<u32>)] = &[
    ("C15", "Short consultation", 4000, Some(15)),
    ("C30", "Consultation", 6500, Some(30)),
    ("C60", "Extended consultation", 11000, Some(60)),
    ("ECG", "Resting ECG", 3500, None),
    ("LAB", "Blood sample and lab referral", 2500, None),
    ("VAC", "Vaccination (administration)", 3000, None),
    ("CERT", "Medical certificate", 1500, None),
];

const STOCK: &[(&str, &str, i64, i64)] = &[
    ("Nitrile gloves (M)", "box", 40, 10),
    ("Syringes 5 ml", "pcs", 300, 100),
    ("Alcohol swabs", "box", 8, 10),
    ("Gauze pads", "pack", 25, 10),
    ("Influenza vaccine", "dose", 12, 20),
    ("Bandages", "roll", 60, 15),
    ("Paracetamol 500 mg", "pack", 30, 10),
    ("Blood collection tubes", "pcs", 150, 50),
];

fn json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// Seeds the demo clinic unless the database already has staff.
pub fn seed_if_empty(
    storage: &dyn Storage,
    clock: &Clock,
) -> Result<Option<DemoSummary>, DemoError> {
    if storage.staff_by_username("admin")?.is_some() || storage.head()? > 0 {
        return Ok(None);
    }
    let mut rng = StdRng::seed_from_u64(20261123);
    let mut rows = Vec::new();
    let mut passwords = Vec::new();
    let hash = auth::hash_password(DEMO_PASSWORD)?;
    let staff_list = [
        ("admin", "Alex Admin", Role::Admin),
        ("doctor", "Dr. Dana Doyle", Role::Doctor),
        ("doctor2", "Dr. Sam Sato", Role::Doctor),
        ("assistant", "Ari Assistant", Role::Assistant),
        ("reception", "Robin Reception", Role::Reception),
    ];
    let mut doctors = Vec::new();
    let mut reception = Uuid::nil();
    for (username, name, role) in staff_list {
        let staff = Staff {
            id: Uuid::now_v7(),
            username: username.into(),
            display_name: name.into(),
            role,
            active: true,
        };
        match role {
            Role::Doctor => doctors.push(staff.id),
            Role::Reception => reception = staff.id,
            _ => {}
        }
        passwords.push((staff.id, hash.clone()));
        rows.push(ToolWrite {
            table: Table::Staff,
            id: staff.id,
            data: json(&staff),
        });
    }
    let now = clock().as_datetime();
    const INSURERS: &[&str] = &[
        "Northwind Health",
        "Contoso Care",
        "Fabrikam Mutual",
        "Tailspin Insurance",
    ];
    let mut patients = Vec::new();
    for i in 0..200usize {
        let first = FIRST[rng.gen_range(0..FIRST.len())];
        let last = LAST[rng.gen_range(0..LAST.len())];
        let dob = chrono::NaiveDate::from_ymd_opt(
            rng.gen_range(1935..2022),
            rng.gen_range(1..=12),
            rng.gen_range(1..=28),
        )
        .unwrap_or_default();
        let p = Patient {
            id: Uuid::now_v7(),
            first_name: first.into(),
            last_name: last.into(),
            date_of_birth: dob,
            phone: Some(format!(
                "+1 555 {:03} {:04}",
                rng.gen_range(100..999),
                i * 37 % 10_000
            )),
            email: (i % 3 != 0).then(|| {
                format!(
                    "{}.{}{}@mail.example",
                    first.to_lowercase(),
                    last.to_lowercase(),
                    i
                )
                .replace(['é', 'í'], "e")
            }),
            address: None,
            // From the index, not the random stream: the rest of the demo
            // clinic stays as it was before these fields existed.
            sex: Some([Sex::Female, Sex::Male, Sex::Female, Sex::Male, Sex::Diverse][i % 5]),
            emergency_contact: (i % 4 == 0).then(|| "Partner".to_owned()),
            emergency_phone: (i % 4 == 0).then(|| format!("+1 555 010 {:04}", i * 53 % 10_000)),
            insurer: Some(INSURERS[i % INSURERS.len()].to_owned()),
            insurance_number: Some(format!("M{:09}", 100_000_000 + i * 7_919)),
            alerts: match i % 11 {
                0 => Some("Penicillin allergy".to_owned()),
                5 => Some("Latex allergy".to_owned()),
                _ => None,
            },
            archived_at: None,
        };
        patients.push(p.id);
        rows.push(ToolWrite {
            table: Table::Patients,
            id: p.id,
            data: json(&p),
        });
    }
    // A week of appointments: two days back to four days ahead, 9:00–17:00,
    // 30-minute slots, about two thirds of slots booked.
    let today = now.date_naive();
    let mut appointments = 0;
    for day in -2i64..5 {
        let date = today + chrono::Duration::days(day);
        for (d, doctor) in doctors.iter().enumerate() {
            for slot in 0..16 {
                if rng.gen_range(0..3) == 0 {
                    continue;
                }
                let Some(start) = date
                    .and_hms_opt(9, 0, 0)
                    .map(|t| t.and_utc() + chrono::Duration::minutes(30 * slot))
                else {
                    continue;
                };
                let start = Timestamp::from_datetime(start);
                let end = Timestamp::from_unix(start.unix() + 30 * 60).unwrap_or(start);
                let patient = patients[rng.gen_range(0..patients.len())];
                let status = if day < 0 {
                    if rng.gen_range(0..10) == 0 {
                        AppointmentStatus::NoShow
                    } else {
                        AppointmentStatus::Completed
                    }
                } else {
                    AppointmentStatus::Scheduled
                };
                let appt = Appointment {
                    id: Uuid::now_v7(),
                    patient_id: patient,
                    doctor_id: *doctor,
                    start,
                    end,
                    status,
                    reason: Some(REASONS[(slot as usize + d) % REASONS.len()].into()),
                    // Past visits took place: the patient arrived a few
                    // minutes early (not drawn from `rng`, so the rest of
                    // the demo stays as it was).
                    checked_in_at: (status == AppointmentStatus::Completed)
                        .then(|| Timestamp::from_unix(start.unix() - 60 * (2 + slot % 13)))
                        .flatten(),
                };
                appointments += 1;
                rows.push(ToolWrite {
                    table: Table::Appointments,
                    id: appt.id,
                    data: json(&appt),
                });
                if status == AppointmentStatus::Completed {
                    let record = TreatmentRecord {
                        id: Uuid::now_v7(),
                        patient_id: patient,
                        doctor_id: *doctor,
                        appointment_id: Some(appt.id),
                        notes: "Patient seen; vitals within normal limits. Advised follow-up if symptoms persist.".into(),
                        diagnosis: DIAGNOSES[rng.gen_range(0..DIAGNOSES.len())].into(),
                        procedures: vec!["Examination".into()],
                        recorded_at: end,
                    };
                    rows.push(ToolWrite {
                        table: Table::TreatmentRecords,
                        id: record.id,
                        data: json(&record),
                    });
                    let lines = vec![InvoiceLine {
                        description: "Consultation".into(),
                        quantity: 1,
                        unit_price_cents: 6500,
                    }];
                    let paid = rng.gen_range(0..2) == 0;
                    let invoice = Invoice {
                        id: Uuid::now_v7(),
                        patient_id: patient,
                        appointment_id: Some(appt.id),
                        total_cents: 6500,
                        paid_cents: if paid { 6500 } else { 0 },
                        status: if paid {
                            InvoiceStatus::Paid
                        } else {
                            InvoiceStatus::Open
                        },
                        lines,
                        issued_at: end,
                        void_reason: None,
                        voided_at: None,
                        refunded_cents: 0,
                    };
                    if paid {
                        let payment = Payment {
                            id: Uuid::now_v7(),
                            invoice_id: invoice.id,
                            amount_cents: 6500,
                            method: PaymentMethod::Card,
                            paid_at: end,
                            received_by: reception,
                            refund: false,
                            reason: None,
                        };
                        rows.push(ToolWrite {
                            table: Table::Payments,
                            id: payment.id,
                            data: json(&payment),
                        });
                    }
                    rows.push(ToolWrite {
                        table: Table::Invoices,
                        id: invoice.id,
                        data: json(&invoice),
                    });
                }
            }
        }
    }
    for (name, unit, quantity, reorder_level) in STOCK {
        let item = InventoryItem {
            id: Uuid::now_v7(),
            name: (*name).into(),
            unit: (*unit).into(),
            quantity: *quantity,
            reorder_level: *reorder_level,
        };
        rows.push(ToolWrite {
            table: Table::InventoryItems,
            id: item.id,
            data: json(&item),
        });
    }
    for (code, description, unit_price_cents, visit_minutes) in PRICE_LIST {
        let item = PriceItem {
            id: Uuid::now_v7(),
            code: (*code).into(),
            description: (*description).into(),
            unit_price_cents: *unit_price_cents,
            visit_minutes: *visit_minutes,
            retired: false,
        };
        rows.push(ToolWrite {
            table: Table::PriceItems,
            id: item.id,
            data: json(&item),
        });
    }
    if write_rows_into_empty(storage, "demo_seed", &rows, &passwords, clock)?.is_none() {
        // Another server on the same database seeded it meanwhile.
        return Ok(None);
    }
    Ok(Some(DemoSummary {
        usernames: staff_list.iter().map(|s| s.0.to_owned()).collect(),
        patients: patients.len(),
        appointments,
    }))
}
