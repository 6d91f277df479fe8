//! Care: whose clinical records a doctor receives.
//!
//! A doctor receives the clinical fields ([`Table::clinical_fields`]: the
//! notes, diagnosis and procedures of treatment records, the reason of
//! referrals) only of **their own patients**. A patient is in a doctor's
//! care when any of these holds:
//! - the patient has an appointment with the doctor (any status: a visit
//!   that was cancelled or missed still made them the doctor for it);
//! - the doctor is responsible for one of the patient's treatment records;
//! - the doctor wrote one of the patient's referrals;
//! - the doctor **broke the glass** for the patient (a typed reason,
//!   recorded in the access log and shown to admins) and the grant has not
//!   expired.
//!
//! Everyone else's clinical fields are withheld from doctors exactly as the
//! field matrix withholds them from reception ([`withhold`]): absent from
//! the row, on every delivery path (pull, WebSocket catch-up and live
//! batches, history). Admins are not limited by care (they answer for the
//! whole record); the other roles never receive clinical fields at all.
//!
//! The server decides care from its rows ([`establishes_care`] is the rule
//! its storage queries implement); the desk uses the same rule on its
//! mirror to tell whether a patient whose glass grant expired is still a
//! patient of the signed-in doctor before it forgets their clinical text.

use crate::model::{Role, Table};
use crate::validate::{FieldCode, FieldError};
use serde_json::Value;
use uuid::Uuid;

/// A break-the-glass reason has at least this many characters (trimmed):
/// "emergency" alone does not say why.
pub const GLASS_REASON_MIN: usize = 10;
/// And at most this many.
pub const GLASS_REASON_MAX: usize = 500;
/// How long a grant lasts unless the server is configured otherwise: a shift.
pub const DEFAULT_GLASS_GRANT_SECONDS: u64 = 12 * 3600;

/// Whether `role`'s deliveries are limited to the patients in its care.
pub fn applies(role: Role) -> bool {
    role == Role::Doctor
}

/// The tables whose rows carry clinical fields, the ones care limits.
pub fn scoped(table: Table) -> bool {
    !table.clinical_fields().is_empty()
}

fn uuid_field(data: &Value, field: &str) -> Option<Uuid> {
    data.get(field)
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
}

/// The patient of a row of a table with a `patient_id` field.
pub fn patient_of(data: &Value) -> Option<Uuid> {
    uuid_field(data, "patient_id")
}

/// The patient this row puts in `doctor`'s care, if it does: an
/// appointment with them, a treatment record they are responsible for, a
/// referral they wrote. (Grants are not rows; the server keeps them.)
pub fn establishes_care(doctor: Uuid, table: Table, data: &Value) -> Option<Uuid> {
    let by = match table {
        Table::Appointments | Table::TreatmentRecords => "doctor_id",
        Table::Referrals => "referring_doctor_id",
        _ => return None,
    };
    (uuid_field(data, by) == Some(doctor))
        .then(|| patient_of(data))
        .flatten()
}

/// Whether this row's clinical fields may go to a reader of `role` whose
/// care is `in_care` (called with the row's patient). Rows of other tables,
/// and readers care does not limit, always may.
pub fn may_receive(role: Role, table: Table, data: &Value, in_care: impl Fn(Uuid) -> bool) -> bool {
    if !applies(role) || !scoped(table) {
        return true;
    }
    patient_of(data).is_some_and(in_care)
}

/// Removes the clinical fields from a row's JSON (a patient outside the
/// reader's care). Returns whether anything was removed.
pub fn withhold(table: Table, data: &mut Value) -> bool {
    let Value::Object(map) = data else {
        return false;
    };
    let before = map.len();
    map.retain(|field, _| !table.clinical_fields().contains(&field.as_str()));
    map.len() != before
}

/// Whether a row's JSON lacks a clinical field that `role` reads: it was
/// withheld for care (the desk then asks the server again when the chart is
/// opened).
pub fn is_withheld(role: Role, table: Table, data: &Value) -> bool {
    let Value::Object(map) = data else {
        return false;
    };
    table
        .clinical_fields()
        .iter()
        .any(|f| crate::field_access::can_read_field(role, table, f) && !map.contains_key(*f))
}

/// The reason for breaking the glass, trimmed, or the field error.
pub fn check_reason(reason: &str) -> Result<String, FieldError> {
    let reason = reason.trim();
    let chars = reason.chars().count();
    if reason.is_empty() {
        return Err(FieldError::new(
            "reason",
            FieldCode::Required,
            "say why you need this patient's records",
        ));
    }
    if chars < GLASS_REASON_MIN {
        return Err(FieldError::new(
            "reason",
            FieldCode::TooShort,
            format!("the reason must be at least {GLASS_REASON_MIN} characters"),
        )
        .bounds(Some(GLASS_REASON_MIN as i64), Some(GLASS_REASON_MAX as i64)));
    }
    if chars > GLASS_REASON_MAX {
        return Err(FieldError::new(
            "reason",
            FieldCode::TooLong,
            format!("the reason must be at most {GLASS_REASON_MAX} characters"),
        )
        .bounds(Some(GLASS_REASON_MIN as i64), Some(GLASS_REASON_MAX as i64)));
    }
    if reason.chars().any(|c| c.is_control() && c != '\n') {
        return Err(FieldError::new(
            "reason",
            FieldCode::ControlCharacters,
            "the reason contains control characters",
        ));
    }
    Ok(reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn care_comes_from_appointments_records_and_referrals_of_the_doctor() {
        let (doctor, other, patient) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let appt = json!({"doctor_id": doctor, "patient_id": patient});
        assert_eq!(
            establishes_care(doctor, Table::Appointments, &appt),
            Some(patient)
        );
        assert_eq!(establishes_care(other, Table::Appointments, &appt), None);
        let record = json!({"doctor_id": doctor, "patient_id": patient, "notes": "x"});
        assert_eq!(
            establishes_care(doctor, Table::TreatmentRecords, &record),
            Some(patient)
        );
        let referral = json!({"referring_doctor_id": doctor, "patient_id": patient});
        assert_eq!(
            establishes_care(doctor, Table::Referrals, &referral),
            Some(patient)
        );
        // An invoice names a patient but no doctor: no care.
        assert_eq!(
            establishes_care(doctor, Table::Invoices, &json!({"patient_id": patient})),
            None
        );
    }

    #[test]
    fn only_doctors_are_limited_and_only_clinical_tables() {
        let patient = Uuid::now_v7();
        let record = json!({"patient_id": patient, "notes": "x"});
        assert!(!may_receive(
            Role::Doctor,
            Table::TreatmentRecords,
            &record,
            |_| false
        ));
        assert!(may_receive(
            Role::Doctor,
            Table::TreatmentRecords,
            &record,
            |p| p == patient
        ));
        assert!(may_receive(
            Role::Admin,
            Table::TreatmentRecords,
            &record,
            |_| false
        ));
        assert!(may_receive(
            Role::Doctor,
            Table::Appointments,
            &record,
            |_| false
        ));
    }

    #[test]
    fn withholding_removes_exactly_the_clinical_fields() {
        let mut record = json!({"id": "r", "patient_id": "p", "notes": "n", "diagnosis": "d", "procedures": [], "recorded_at": "t"});
        assert!(withhold(Table::TreatmentRecords, &mut record));
        assert_eq!(
            record,
            json!({"id": "r", "patient_id": "p", "recorded_at": "t"})
        );
        assert!(is_withheld(Role::Doctor, Table::TreatmentRecords, &record));
        // Reception never reads them: nothing is missing for it.
        assert!(!is_withheld(
            Role::Reception,
            Table::TreatmentRecords,
            &record
        ));
        let mut referral = json!({"reason": "r", "referred_to": "x"});
        assert!(withhold(Table::Referrals, &mut referral));
        assert_eq!(referral, json!({"referred_to": "x"}));
        assert!(!withhold(Table::Referrals, &mut referral));
    }

    #[test]
    fn a_reason_is_a_sentence_not_a_word() {
        assert_eq!(check_reason("").unwrap_err().code, FieldCode::Required);
        assert_eq!(
            check_reason("  urgent  ").unwrap_err().code,
            FieldCode::TooShort
        );
        assert_eq!(
            check_reason(&"x".repeat(501)).unwrap_err().code,
            FieldCode::TooLong
        );
        assert_eq!(
            check_reason("a\u{7}bcdefghijk").unwrap_err().code,
            FieldCode::ControlCharacters
        );
        assert_eq!(
            check_reason("  Unconscious in the waiting room  ").as_deref(),
            Ok("Unconscious in the waiting room")
        );
    }
}
