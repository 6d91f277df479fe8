//! Generated clinic data: deterministic from a number, plausible in shape
//! and size (names drawn from thousands of family names, phone numbers,
//! addresses, clinical notes of a few hundred characters).

use clinic_server::admin::ToolWrite;
use clinic_shared::model::{
    Appointment, AppointmentStatus, Patient, Table, Timestamp, TreatmentRecord,
};
use uuid::Uuid;

/// A fast, deterministic mix of `n` (splitmix64).
pub(crate) fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const FIRST: &[&str] = &[
    "Ana", "Ben", "Chloe", "Dmitri", "Elif", "Farah", "Goran", "Hana", "Ivan", "Jun", "Kofi",
    "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quentin", "Rosa", "Sven", "Tariq", "Uma", "Victor",
    "Wen", "Ximena", "Yusuf", "Zoe", "Amir", "Bea", "Carlos", "Dara", "Emil", "Freya", "Gita",
    "Hugo", "Ines", "Jonas", "Kira", "Luca", "Mira", "Nils",
];
const SYLLABLES: &[&str] = &[
    "an", "bel", "cor", "da", "el", "fin", "gor", "ha", "is", "jo", "ka", "lu", "mar", "no", "ol",
    "pe", "quin", "ro", "sa", "ta", "ul", "ve", "wen", "xa", "yo", "zu",
];

/// The family name number `k` (17 576 distinct).
pub(crate) fn last_name(k: u64) -> String {
    let s = |i: u64| SYLLABLES[(i % SYLLABLES.len() as u64) as usize];
    let n = SYLLABLES.len() as u64;
    let mut name = format!("{}{}{}", s(k), s(k / n), s(k / n / n));
    if let Some(first) = name.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    name
}

/// Patient number `n`.
pub(crate) fn patient(id: Uuid, n: u64) -> Patient {
    let r = mix(n);
    let first = FIRST[(r % FIRST.len() as u64) as usize];
    let last = last_name((r >> 8) % 17_576);
    let days = ((r >> 24) % 32_000) as i64; // born 1935..2022
    let dob = chrono::NaiveDate::from_ymd_opt(1935, 1, 1)
        .and_then(|d| d.checked_add_signed(chrono::Duration::days(days)))
        .unwrap_or_default();
    let phone = format!("+1 555 {:03} {:04}", (r >> 40) % 1000, (mix(r) % 10_000));
    Patient {
        id,
        first_name: first.to_owned(),
        last_name: last.clone(),
        date_of_birth: dob,
        phone: Some(phone),
        email: Some(format!(
            "{}.{}{}@example.org",
            first.to_lowercase(),
            last.to_lowercase(),
            n % 100
        )),
        address: Some(format!(
            "{} Harbour Street, Flat {}, Springfield",
            n % 400 + 1,
            n % 30 + 1
        )),
        // Left out: the benchmark's rows stay the size they were measured at.
        sex: None,
        emergency_contact: None,
        emergency_phone: None,
        insurer: None,
        insurance_number: None,
        alerts: None,
        archived_at: None,
    }
}

/// A search a receptionist would type for patient `n`: a family-name
/// prefix, a full name, the last digits of the phone, or the date of birth.
pub(crate) fn search_query(n: u64, kind: u64) -> String {
    let p = patient(Uuid::nil(), n);
    match kind % 4 {
        0 => p.last_name.chars().take(4).collect(),
        1 => format!("{} {}", p.first_name, p.last_name),
        2 => p
            .phone
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_digit)
            .rev()
            .take(6)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect(),
        _ => p.date_of_birth.to_string(),
    }
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_unix(secs).unwrap_or_else(|| Timestamp::from_datetime(chrono::Utc::now()))
}

/// Writes `patients` patients, `appointments` appointments (spread over the
/// doctors, 30-minute slots, never double-booked) and `records` treatment
/// records straight into the server's database through its storage code
/// (`admin::write_rows`, the path of the demo seeder), in transactions of
/// `chunk` rows.
pub(crate) fn seed_clinic(
    storage: &dyn clinic_server::storage::Storage,
    doctors: &[Uuid],
    patients: usize,
    appointments: usize,
    records: usize,
) -> anyhow::Result<()> {
    const CHUNK: usize = 20_000;
    let clock = clinic_server::system_clock();
    let mut batch: Vec<ToolWrite> = Vec::with_capacity(CHUNK);
    let flush = |batch: &mut Vec<ToolWrite>| -> anyhow::Result<()> {
        if !batch.is_empty() {
            clinic_server::admin::write_rows(storage, "bench_seed", batch, &[], &clock)?;
            batch.clear();
        }
        Ok(())
    };
    let mut ids = Vec::with_capacity(patients);
    for n in 0..patients {
        let id = Uuid::now_v7();
        ids.push(id);
        batch.push(ToolWrite {
            table: Table::Patients,
            id,
            data: serde_json::to_value(patient(id, n as u64))?,
        });
        if batch.len() == CHUNK {
            flush(&mut batch)?;
        }
    }
    let base = chrono::Utc::now().timestamp() / 86_400 * 86_400 - 365 * 86_400;
    let doctors_n = doctors.len().max(1);
    for i in 0..appointments {
        let Some(&doctor) = doctors.get(i % doctors_n) else {
            break;
        };
        let slot = (i / doctors_n) as i64;
        // 20 half-hour slots a day from 08:00.
        let start = base + (slot / 20) * 86_400 + 8 * 3600 + (slot % 20) * 1800;
        let r = mix(i as u64 ^ 0xA11);
        let patient_id = ids
            .get((r % ids.len().max(1) as u64) as usize)
            .copied()
            .unwrap_or_else(Uuid::now_v7);
        let id = Uuid::now_v7();
        let a = Appointment {
            id,
            patient_id,
            doctor_id: doctor,
            start: at(start),
            end: at(start + 1800),
            status: if start < chrono::Utc::now().timestamp() {
                AppointmentStatus::Completed
            } else {
                AppointmentStatus::Scheduled
            },
            reason: Some(
                ["Check-up", "Follow-up", "Vaccination", "Blood test"][(r % 4) as usize].into(),
            ),
            checked_in_at: None,
        };
        batch.push(ToolWrite {
            table: Table::Appointments,
            id,
            data: serde_json::to_value(a)?,
        });
        if batch.len() == CHUNK {
            flush(&mut batch)?;
        }
    }
    for i in 0..records {
        let r = mix(i as u64 ^ 0x7EC);
        let patient_id = ids
            .get((r % ids.len().max(1) as u64) as usize)
            .copied()
            .unwrap_or_else(Uuid::now_v7);
        let id = Uuid::now_v7();
        let t = TreatmentRecord {
            id,
            patient_id,
            doctor_id: doctors.get(i % doctors_n).copied().unwrap_or_default(),
            appointment_id: None,
            notes: format!(
                "Patient reports intermittent symptoms for {} days. Examination unremarkable apart from mild tenderness. \
                 Advised rest, fluids and review in two weeks if not improving. Discussed warning signs. Visit {i}.",
                r % 30 + 1
            ),
            diagnosis: [
                "Seasonal allergy",
                "Lower back strain",
                "Hypertension, controlled",
                "Upper respiratory infection",
            ][(r % 4) as usize]
                .into(),
            procedures: vec!["Blood pressure measurement".into()],
            recorded_at: at(base + (i as i64 % 365) * 86_400 + 10 * 3600),
        };
        batch.push(ToolWrite {
            table: Table::TreatmentRecords,
            id,
            data: serde_json::to_value(t)?,
        });
        if batch.len() == CHUNK {
            flush(&mut batch)?;
        }
    }
    flush(&mut batch)
}
