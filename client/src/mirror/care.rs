//! Care on the desk (the rule is `clinic_shared::care`): a doctor's mirror
//! holds the clinical fields only of their own patients, as the server sends
//! them. When a chart shows records whose clinical fields were withheld, the
//! desk asks the server again (the patient may have come into the doctor's
//! care since, or the doctor breaks the glass): [`fill_in`] puts the answer
//! into the rows the mirror holds. A glass grant ends: [`enforce`] takes the
//! clinical fields out again unless the mirror itself shows the patient is
//! the doctor's (a visit, a record, a referral of theirs).

use super::meta::{self, CARE_CONFIRMED, GLASS_GRANTS, GlassGrants};
use super::outbox::{RowSet, event, immediate};
use super::rows::json;
use crate::error::ClientResult;
use crate::types::{ChangeOrigin, StoreEvent};
use clinic_shared::care;
use clinic_shared::model::{SyncRow, Table, Timestamp};
use rusqlite::{Connection, params};
use serde_json::Value;
use uuid::Uuid;

const STORES: [&str; 2] = ["confirmed", "visible"];

/// Puts the clinical fields of `rows` (the server's answer for one patient)
/// into the rows the mirror holds at the same version; rows it holds at
/// another version, or not at all, follow with sync. Remembers the grant's
/// end when there is one.
pub(crate) fn fill_in(
    conn: &mut Connection,
    patient: Uuid,
    rows: &[SyncRow],
    grant_expires_at: Option<Timestamp>,
    now: Timestamp,
) -> ClientResult<StoreEvent> {
    let tx = immediate(conn)?;
    let mut touched = RowSet::new();
    for row in rows {
        let Some(data) = &row.data else { continue };
        if clinic_shared::care::patient_of(data) != Some(patient) || !care::scoped(row.table) {
            continue; // not what was asked for: never trusted into the mirror
        }
        for store in STORES {
            let n = tx.execute(
                &format!(
                    "UPDATE {store} SET data = ?4 WHERE tbl = ?1 AND id = ?2 AND version = ?3"
                ),
                params![
                    row.table.as_str(),
                    row.id.to_string(),
                    super::rows::to_i64(row.version),
                    data.to_string()
                ],
            )?;
            if n > 0 {
                touched.insert((row.table, row.id));
            }
        }
    }
    let mut grants = meta::get(&tx, &GLASS_GRANTS)?.unwrap_or_default();
    match grant_expires_at {
        Some(end) => {
            grants.0.insert(patient, end);
        }
        None => {
            // In care for good, by the server's rows: kept, so that the
            // mirror does not take the text out again before sync brings
            // the visit that makes it so.
            grants.0.remove(&patient);
            let mut confirmed = meta::get(&tx, &CARE_CONFIRMED)?.unwrap_or_default();
            confirmed.0.insert(patient, now);
            meta::set(&tx, &CARE_CONFIRMED, &confirmed)?;
        }
    };
    meta::set(&tx, &GLASS_GRANTS, &grants)?;
    let cursor = meta::number(&tx, &meta::CURSOR)?;
    tx.commit()?;
    Ok(event(ChangeOrigin::Remote, &touched, cursor))
}

/// When the grant for `patient` ends, if this desk holds one in force.
pub(crate) fn grant_end(
    conn: &Connection,
    patient: Uuid,
    now: Timestamp,
) -> ClientResult<Option<Timestamp>> {
    let grants = meta::get(conn, &GLASS_GRANTS)?.unwrap_or_default();
    Ok(grants
        .0
        .get(&patient)
        .copied()
        .filter(|end| end.unix() > now.unix()))
}

/// Whether the mirror shows `patient` in `doctor`'s care by a row of theirs
/// (or the server said so).
fn in_care_here(conn: &Connection, doctor: Uuid, patient: Uuid) -> ClientResult<bool> {
    if meta::get(conn, &CARE_CONFIRMED)?.is_some_and(|c| c.0.contains_key(&patient)) {
        return Ok(true);
    }
    for table in [
        Table::Appointments,
        Table::TreatmentRecords,
        Table::Referrals,
    ] {
        let datas: Vec<String> = conn
            .prepare_cached(
                "SELECT data FROM visible WHERE tbl = ?1 AND deleted = 0
                 AND json_extract(data, '$.patient_id') = ?2",
            )?
            .query_map(params![table.as_str(), patient.to_string()], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for data in datas {
            let value: Value = json(&data)?;
            if care::establishes_care(doctor, table, &value) == Some(patient) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Before `doctor` reads `patient`'s chart: ends the grants past their
/// time, and takes the clinical fields of those patients, and of `patient`,
/// out of the mirror unless the patient is the doctor's own or under a grant
/// in force. (Rows that arrived before the server withheld by care, e.g. in
/// a mirror older than care, go this way too.) Returns the event when
/// something changed.
pub(crate) fn enforce(
    conn: &mut Connection,
    doctor: Uuid,
    patient: Uuid,
    now: Timestamp,
) -> ClientResult<Option<StoreEvent>> {
    let grants = meta::get(conn, &GLASS_GRANTS)?.unwrap_or_default();
    let ended: Vec<Uuid> = grants
        .0
        .iter()
        .filter(|(_, end)| end.unix() <= now.unix())
        .map(|(p, _)| *p)
        .collect();
    let granted = grants
        .0
        .get(&patient)
        .is_some_and(|end| end.unix() > now.unix());
    let mut review = ended.clone();
    if !granted && !review.contains(&patient) {
        review.push(patient);
    }
    let tx = immediate(conn)?;
    let mut touched = RowSet::new();
    for patient in &review {
        if in_care_here(&tx, doctor, *patient)? {
            continue;
        }
        for table in [Table::TreatmentRecords, Table::Referrals] {
            for store in STORES {
                let rows: Vec<(String, String)> = tx
                    .prepare(&format!(
                        "SELECT id, data FROM {store} WHERE tbl = ?1 AND data IS NOT NULL
                         AND json_extract(data, '$.patient_id') = ?2"
                    ))?
                    .query_map(params![table.as_str(), patient.to_string()], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?
                    .collect::<Result<_, _>>()?;
                for (id, data) in rows {
                    let mut value: Value = json(&data)?;
                    if care::withhold(table, &mut value) {
                        tx.execute(
                            &format!("UPDATE {store} SET data = ?3 WHERE tbl = ?1 AND id = ?2"),
                            params![table.as_str(), id, value.to_string()],
                        )?;
                        if let Ok(id) = Uuid::parse_str(&id) {
                            touched.insert((table, id));
                        }
                    }
                }
            }
        }
    }
    let kept = GlassGrants(
        grants
            .0
            .into_iter()
            .filter(|(p, _)| !ended.contains(p))
            .collect(),
    );
    if !ended.is_empty() {
        meta::set(&tx, &GLASS_GRANTS, &kept)?;
    }
    let cursor = meta::number(&tx, &meta::CURSOR)?;
    tx.commit()?;
    Ok((!touched.is_empty()).then(|| event(ChangeOrigin::Remote, &touched, cursor)))
}
