//! Confirmed and visible rows: writing them, keeping the patient search
//! index in step, and reading them as the shared planner needs.

use crate::error::{ClientError, ClientResult};
use clinic_shared::apply::{Action, CurrentRow, RowSource, RowWrite, SlotCandidate};
use clinic_shared::field_access;
use clinic_shared::model::{Role, Table, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use uuid::Uuid;

pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

pub(crate) fn parse_uuid(s: &str) -> ClientResult<Uuid> {
    Uuid::parse_str(s).map_err(|_| ClientError::corrupt(format!("bad id `{s}` in the mirror")))
}

pub(crate) fn parse_table(s: &str) -> ClientResult<Table> {
    s.parse()
        .map_err(|_| ClientError::corrupt(format!("unknown table `{s}` in the mirror")))
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(s: &str) -> ClientResult<T> {
    Ok(serde_json::from_str(s)?)
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> ClientResult<String> {
    Ok(serde_json::to_string(v)?)
}

/// Reads visible rows as the shared planner needs them.
pub(crate) struct VisibleSource<'a>(pub &'a Connection);

impl RowSource for VisibleSource<'_> {
    type Error = ClientError;

    fn row(&mut self, table: Table, id: Uuid) -> ClientResult<Option<CurrentRow>> {
        let raw: Option<(i64, bool, String)> = self
            .0
            .prepare_cached(
                "SELECT version, deleted, data FROM visible WHERE tbl = ?1 AND id = ?2",
            )?
            .query_row(params![table.as_str(), id.to_string()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        raw.map(|(version, deleted, data)| {
            Ok(CurrentRow {
                version: to_u64(version),
                deleted,
                data: json(&data)?,
            })
        })
        .transpose()
    }

    fn appointments_starting_between(
        &mut self,
        doctor_id: Uuid,
        from: Timestamp,
        until: Timestamp,
    ) -> ClientResult<Vec<SlotCandidate>> {
        let raw: Vec<(String, String)> = self
            .0
            .prepare_cached(
                "SELECT id, data FROM visible
                 WHERE tbl = 'appointments' AND deleted = 0
                   AND json_extract(data, '$.doctor_id') = ?1
                   AND json_extract(data, '$.start') >= ?2
                   AND json_extract(data, '$.start') < ?3",
            )?
            .query_map(
                params![doctor_id.to_string(), from.to_string(), until.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .collect::<Result<_, _>>()?;
        raw.iter()
            .map(|(id, data)| {
                Ok(SlotCandidate {
                    id: parse_uuid(id)?,
                    data: json(data)?,
                })
            })
            .collect()
    }

    fn patient_appointments_starting_between(
        &mut self,
        patient_id: Uuid,
        from: Timestamp,
        until: Timestamp,
    ) -> ClientResult<Vec<SlotCandidate>> {
        // The mirror's index on the patient id narrows this to one
        // patient's appointments; the time range is filtered after it.
        let raw: Vec<(String, String)> = self
            .0
            .prepare_cached(
                "SELECT id, data FROM visible
                 WHERE tbl = 'appointments' AND deleted = 0
                   AND json_extract(data, '$.patient_id') = ?1
                   AND json_extract(data, '$.start') >= ?2
                   AND json_extract(data, '$.start') < ?3",
            )?
            .query_map(
                params![patient_id.to_string(), from.to_string(), until.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .collect::<Result<_, _>>()?;
        raw.iter()
            .map(|(id, data)| {
                Ok(SlotCandidate {
                    id: parse_uuid(id)?,
                    data: json(data)?,
                })
            })
            .collect()
    }

    fn staff_id_by_username(&mut self, username: &str) -> ClientResult<Option<Uuid>> {
        let id: Option<String> = self
            .0
            .prepare_cached(
                "SELECT id FROM visible WHERE tbl = 'staff' AND json_extract(data, '$.username') = ?1",
            )?
            .query_row([username], |r| r.get(0))
            .optional()?;
        id.map(|s| parse_uuid(&s)).transpose()
    }
}

/// Keeps the patient search index in step with a visible patient row.
fn index_patient(conn: &Connection, id: Uuid, data: Option<&Value>) -> ClientResult<()> {
    let id_text = id.to_string();
    let docid: Option<i64> = conn
        .prepare_cached("SELECT docid FROM patient_search_ids WHERE id = ?1")?
        .query_row([&id_text], |r| r.get(0))
        .optional()?;
    if let Some(docid) = docid {
        conn.prepare_cached("DELETE FROM patient_search WHERE rowid = ?1")?
            .execute([docid])?;
    }
    let Some(p) = data else {
        if let Some(docid) = docid {
            conn.prepare_cached("DELETE FROM patient_search_ids WHERE docid = ?1")?
                .execute([docid])?;
        }
        return Ok(());
    };
    let docid = match docid {
        Some(d) => d,
        None => conn
            .prepare_cached("INSERT INTO patient_search_ids (id) VALUES (?1) RETURNING docid")?
            .query_row([&id_text], |r| r.get(0))?,
    };
    let text = |k: &str| {
        p.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let name = format!("{} {}", text("first_name"), text("last_name"));
    let phone_raw = text("phone");
    let digits: String = phone_raw.chars().filter(char::is_ascii_digit).collect();
    // Every digit suffix of 4 or more, so "2003000" or "5552003000" find
    // "+1 555 200 3000" (staff search by the last digits or without the
    // country code).
    let suffixes: Vec<&str> = (0..digits.len().saturating_sub(3))
        .map(|i| &digits[i..])
        .collect();
    let dob = text("date_of_birth");
    conn.prepare_cached(
        "INSERT INTO patient_search (rowid, id, name, phone, dob) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        docid,
        id_text,
        name,
        format!("{phone_raw} {}", suffixes.join(" ")),
        dob
    ])?;
    Ok(())
}

/// Empties the search index (a wipe, a role that may not read patients).
pub(crate) fn clear_search(conn: &Connection) -> ClientResult<()> {
    conn.execute_batch("DELETE FROM patient_search; DELETE FROM patient_search_ids;")?;
    Ok(())
}

/// Writes one visible row (and its search entry).
pub(crate) fn put_visible(
    conn: &Connection,
    table: Table,
    id: Uuid,
    version: u64,
    deleted: bool,
    data: &Value,
    pending: bool,
) -> ClientResult<()> {
    conn.prepare_cached(
        "INSERT INTO visible (tbl, id, version, deleted, data, pending) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (tbl, id) DO UPDATE SET version = excluded.version, deleted = excluded.deleted,
             data = excluded.data, pending = excluded.pending",
    )?
    .execute(params![table.as_str(), id.to_string(), to_i64(version), deleted, data.to_string(), pending])?;
    if table == Table::Patients {
        index_patient(conn, id, (!deleted).then_some(data))?;
    }
    Ok(())
}

fn remove_visible(conn: &Connection, table: Table, id: Uuid) -> ClientResult<()> {
    conn.prepare_cached("DELETE FROM visible WHERE tbl = ?1 AND id = ?2")?
        .execute(params![table.as_str(), id.to_string()])?;
    if table == Table::Patients {
        index_patient(conn, id, None)?;
    }
    Ok(())
}

/// Applies a planned mutation's writes to the visible rows (as pending).
pub(crate) fn write_visible(conn: &Connection, writes: &[RowWrite]) -> ClientResult<()> {
    for w in writes {
        let version: u64 = conn
            .prepare_cached("SELECT version FROM visible WHERE tbl = ?1 AND id = ?2")?
            .query_row(params![w.table.as_str(), w.id.to_string()], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .map_or(0, to_u64);
        put_visible(
            conn,
            w.table,
            w.id,
            version,
            w.action == Action::Delete,
            &w.after,
            true,
        )?;
    }
    Ok(())
}

/// Writes a server row to the confirmed rows (never moving a row back to an
/// older version).
pub(crate) fn put_confirmed(
    conn: &Connection,
    table: Table,
    id: Uuid,
    version: u64,
    deleted: bool,
    data: Option<&Value>,
) -> ClientResult<()> {
    conn.prepare_cached(
        "INSERT INTO confirmed (tbl, id, version, deleted, data) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (tbl, id) DO UPDATE SET version = excluded.version, deleted = excluded.deleted,
             data = excluded.data
         WHERE excluded.version >= confirmed.version",
    )?
    .execute(params![
        table.as_str(),
        id.to_string(),
        to_i64(version),
        deleted,
        data.map(Value::to_string)
    ])?;
    Ok(())
}

/// Makes the visible row what the server said (or removes it).
pub(crate) fn copy_confirmed_to_visible(
    conn: &Connection,
    table: Table,
    id: Uuid,
) -> ClientResult<()> {
    let confirmed: Option<(i64, bool, Option<String>)> = conn
        .prepare_cached("SELECT version, deleted, data FROM confirmed WHERE tbl = ?1 AND id = ?2")?
        .query_row(params![table.as_str(), id.to_string()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    match confirmed {
        Some((version, false, Some(data))) => put_visible(
            conn,
            table,
            id,
            to_u64(version),
            false,
            &json(&data)?,
            false,
        ),
        Some((version, _, _)) => {
            // A tombstone: keep it visible as deleted, so a pending mutation
            // replayed on top sees "deleted", not "unknown".
            put_visible(conn, table, id, to_u64(version), true, &Value::Null, false)
        }
        None => remove_visible(conn, table, id),
    }
}

/// Removes every row of `table` (a role that may no longer read it).
pub(crate) fn drop_table(conn: &Connection, table: Table) -> ClientResult<()> {
    conn.execute("DELETE FROM confirmed WHERE tbl = ?1", [table.as_str()])?;
    conn.execute("DELETE FROM visible WHERE tbl = ?1", [table.as_str()])?;
    if table == Table::Patients {
        clear_search(conn)?;
    }
    Ok(())
}

/// Removes from every confirmed and visible row of `table` the fields
/// `role` may not read ([`field_access::redact`]; a role change).
pub(crate) fn redact_table(conn: &Connection, role: Role, table: Table) -> ClientResult<()> {
    for store in ["confirmed", "visible"] {
        let rows: Vec<(String, String)> = conn
            .prepare(&format!(
                "SELECT id, data FROM {store} WHERE tbl = ?1 AND data IS NOT NULL"
            ))?
            .query_map([table.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut update = conn.prepare(&format!(
            "UPDATE {store} SET data = ?3 WHERE tbl = ?1 AND id = ?2"
        ))?;
        for (id, data) in rows {
            let mut value: Value = json(&data)?;
            if field_access::redact(role, table, &mut value) {
                update.execute(params![table.as_str(), id, value.to_string()])?;
            }
        }
    }
    Ok(())
}
