//! Care on the delivery paths (the rule is `clinic_shared::care`): a
//! doctor receives the clinical fields only of the patients in their care;
//! everyone's rows go through [`deliver`] after the field matrix.
//!
//! The care set is read from storage once per delivery (a pull answer, a
//! catch-up page, a live batch, a history read), and only when the rows
//! hold clinical content a doctor could receive, so a batch of bookings
//! costs nothing more. A break of the glass is an access entry; a grant
//! lasts [`crate::Config::glass_grant`] from it.

use crate::AppState;
use crate::blocking::blocking;
use clinic_shared::care;
use clinic_shared::model::{Staff, SyncRow, Table, Timestamp};
use clinic_shared::protocol::{ErrorBody, HistoryEntry};
use std::collections::HashSet;
use std::time::Duration;
use uuid::Uuid;

/// The earliest break of the glass still in force at `now`.
pub fn glass_since(now: Timestamp, grant: Duration) -> Timestamp {
    let secs = i64::try_from(grant.as_secs()).unwrap_or(i64::MAX);
    Timestamp::from_unix(now.unix().saturating_sub(secs)).unwrap_or(now)
}

/// The patients in `doctor`'s care now.
pub async fn care_set(state: &AppState, doctor: Uuid) -> Result<HashSet<Uuid>, ErrorBody> {
    let since = glass_since((state.config.clock)(), state.config.glass_grant);
    let storage = state.storage.clone();
    blocking(move || storage.care_patients(doctor, Some(since))).await
}

/// The patients in `doctor`'s care for a reason that does not expire (a
/// visit, a record, a referral: grants left out).
pub async fn lasting_care_set(state: &AppState, doctor: Uuid) -> Result<HashSet<Uuid>, ErrorBody> {
    let storage = state.storage.clone();
    blocking(move || storage.care_patients(doctor, None)).await
}

/// Whether any of `rows` holds clinical content that care would decide.
fn needs_care(user: &Staff, rows: &[SyncRow]) -> bool {
    care::applies(user.role)
        && rows
            .iter()
            .any(|r| care::scoped(r.table) && r.data.is_some())
}

/// Withholds, from rows already redacted for the role, the clinical fields
/// of patients outside `user`'s care.
pub async fn deliver(
    state: &AppState,
    user: &Staff,
    rows: &mut [SyncRow],
) -> Result<(), ErrorBody> {
    if !needs_care(user, rows) {
        return Ok(());
    }
    let patients = care_set(state, user.id).await?;
    withhold_rows(user, &patients, rows);
    Ok(())
}

/// [`deliver`] with the care set already read.
pub fn withhold_rows(user: &Staff, patients: &HashSet<Uuid>, rows: &mut [SyncRow]) {
    for row in rows {
        let table = row.table;
        if let Some(data) = row.data.as_mut()
            && !care::may_receive(user.role, table, data, |p| patients.contains(&p))
        {
            care::withhold(table, data);
        }
    }
}

/// [`deliver`] for a record's history: every before/after value of a
/// patient outside the reader's care loses its clinical fields.
pub async fn deliver_history(
    state: &AppState,
    user: &Staff,
    table: Table,
    patient: Option<Uuid>,
    entries: &mut [HistoryEntry],
) -> Result<(), ErrorBody> {
    if !care::applies(user.role) || !care::scoped(table) {
        return Ok(());
    }
    let in_care = match patient {
        Some(p) => care_set(state, user.id).await?.contains(&p),
        None => false,
    };
    if !in_care {
        for e in entries {
            for value in [e.before.as_mut(), e.after.as_mut()].into_iter().flatten() {
                care::withhold(table, value);
            }
        }
    }
    Ok(())
}
