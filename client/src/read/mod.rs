//! Reads: the queries screens and the CLI make, answered from the visible
//! rows on a connection and thread of their own (WAL lets them run while
//! the mirror writes), each returning typed entities.
//!
//! A new screen's query goes here: a function over `&Connection` returning
//! [`Entity`]s, plus a one-line method on [`Reader`].

use crate::db::DbThread;
use crate::error::{ClientError, ClientResult};
use crate::mirror::outbox::{planned, stored_actor};
use crate::mirror::rows::{VisibleSource, json, parse_table, parse_uuid, to_u64};
use crate::mirror::schema;
use crate::types::{Chart, Entity, FreeSlot, Row, SlotQuery};
use clinic_shared::apply::{self, PlanError};
use clinic_shared::model::{
    Appointment, AppointmentStatus, InventoryItem, Patient, Staff, Table, Timestamp,
};
use clinic_shared::mutation::Mutation;
use clinic_shared::protocol::Rejection;
use clinic_shared::time::ClinicZone;
use rusqlite::Connection;
use serde::de::DeserializeOwned;
use std::path::Path;
use uuid::Uuid;

/// The read side: a thread with its own connection to the mirror's file.
pub(crate) struct Reader {
    db: DbThread,
}

type Raw = (String, String, i64, bool, String);

fn raw_rows(
    conn: &Connection,
    sql_tail: &str,
    args: &[&dyn rusqlite::ToSql],
) -> ClientResult<Vec<Raw>> {
    let sql = format!(
        "SELECT tbl, id, version, pending, data FROM visible WHERE deleted = 0 AND {sql_tail}"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_map(args, |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?)
}

fn to_row((t, id, v, p, d): Raw) -> ClientResult<Row> {
    Ok(Row {
        table: parse_table(&t)?,
        id: parse_uuid(&id)?,
        version: to_u64(v),
        pending: p,
        data: json(&d)?,
    })
}

fn to_entity<T: DeserializeOwned>((t, id, v, p, d): Raw) -> ClientResult<Entity<T>> {
    let data: T = serde_json::from_str(&d).map_err(|e| ClientError::Corrupt {
        detail: format!("a {t} record in the local database is unreadable"),
        source: Some(Box::new(e)),
    })?;
    Ok(Entity {
        id: parse_uuid(&id)?,
        version: to_u64(v),
        pending: p,
        data,
    })
}

fn entities<T: DeserializeOwned>(
    conn: &Connection,
    sql_tail: &str,
    args: &[&dyn rusqlite::ToSql],
) -> ClientResult<Vec<Entity<T>>> {
    raw_rows(conn, sql_tail, args)?
        .into_iter()
        .map(to_entity)
        .collect()
}

fn search_terms(query: &str) -> Option<String> {
    let terms: Vec<String> = query
        .split(|c: char| c.is_whitespace() || c == '-' || c == '/' || c == ',')
        .map(|t| {
            t.chars()
                .filter(|c| c.is_alphanumeric())
                .collect::<String>()
        })
        .filter(|t| !t.is_empty())
        .map(|t| format!("\"{t}\"*"))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" AND "))
}

/// Patients matching every word of `query` (name, phone digits or date of
/// birth, by prefix), by name.
fn search_patients(
    conn: &Connection,
    query: &str,
    limit: usize,
) -> ClientResult<Vec<Entity<Patient>>> {
    let Some(fts) = search_terms(query) else {
        return Ok(Vec::new());
    };
    let limit = i64::try_from(limit).unwrap_or(100);
    entities(
        conn,
        "tbl = 'patients' AND id IN (SELECT id FROM patient_search WHERE patient_search MATCH ?1 ORDER BY rank LIMIT ?2)
         ORDER BY json_extract(data, '$.last_name'), json_extract(data, '$.first_name')",
        &[&fts, &limit],
    )
}

/// Appointments starting in `[from, until)`, for one doctor or all, by start.
pub(crate) fn schedule(
    conn: &Connection,
    from: Timestamp,
    until: Timestamp,
    doctor: Option<Uuid>,
) -> ClientResult<Vec<Entity<Appointment>>> {
    let (from, until) = (from.to_string(), until.to_string());
    match doctor {
        Some(d) => {
            let d = d.to_string();
            entities(
                conn,
                "tbl = 'appointments' AND json_extract(data, '$.doctor_id') = ?1
                 AND json_extract(data, '$.start') >= ?2 AND json_extract(data, '$.start') < ?3
                 ORDER BY json_extract(data, '$.start')",
                &[&d, &from, &until],
            )
        }
        None => entities(
            conn,
            "tbl = 'appointments' AND json_extract(data, '$.start') >= ?1 AND json_extract(data, '$.start') < ?2
             ORDER BY json_extract(data, '$.start'), json_extract(data, '$.doctor_id')",
            &[&from, &until],
        ),
    }
}

/// Whether `mutation` would be accepted on the visible rows now, without
/// queuing it: the same planner and rules as a real change, so a form can
/// show every problem (fields and clinic rules) in one round, as the user
/// types. `None` when it would be accepted.
pub(crate) fn check(
    conn: &Connection,
    mutation: &Mutation,
    now: Timestamp,
) -> ClientResult<Option<Rejection>> {
    let actor = stored_actor(conn)?.ok_or(ClientError::NotSignedIn)?;
    Ok(planned(conn, mutation, &actor, now)?.err())
}

/// Where the desk looks for free slots: opening hours in the clinic zone.
/// A suggestion window, not a rule (bookings outside it are allowed).
const OPENS: (u32, u32) = (8, 0);
const CLOSES: (u32, u32) = (18, 0);
/// Suggestions are on a quarter-hour grid.
const SLOT_STEP_SECS: i64 = 15 * 60;
/// How many days ahead suggestions may go.
const SLOT_DAYS: u64 = 14;

/// Free slots of `query.minutes` for the patient with the doctor, nearest
/// to the wanted start on its local day first (or, with `from_start`, the
/// earliest at or after it), then on the following days in order; never
/// before `now`. Free means what the rules check: neither
/// the doctor nor the patient has an overlapping appointment.
pub(crate) fn free_slots(
    conn: &Connection,
    query: &SlotQuery,
    zone: &ClinicZone,
    now: Timestamp,
) -> ClientResult<Vec<FreeSlot>> {
    let len = i64::from(query.minutes.clamp(5, 12 * 60)) * 60;
    let want = query.start.unix();
    let zone_err = |e: clinic_shared::time::ZoneError| ClientError::Invalid(e.to_string());
    let first_day = zone.date_of(query.start).map_err(zone_err)?;
    let mut out = Vec::new();
    for day in first_day
        .iter_days()
        .take(usize::try_from(SLOT_DAYS).unwrap_or(14))
    {
        let at = |(h, m): (u32, u32)| -> ClientResult<i64> {
            let time = chrono::NaiveTime::from_hms_opt(h, m, 0)
                .ok_or_else(|| ClientError::Invalid("bad opening hours".into()))?;
            Ok(zone.instant(day, time).map_err(zone_err)?.instant.unix())
        };
        let (opens, closes) = (at(OPENS)?, at(CLOSES)?);
        let from_start = query.from_start.unwrap_or(false);
        let mut starts: Vec<i64> = (0..)
            .map(|i| opens + i * SLOT_STEP_SECS)
            .take_while(|s| s + len <= closes)
            .filter(|s| *s >= now.unix() && (!from_start || *s >= want))
            .collect();
        if day == first_day && !from_start {
            starts.sort_by_key(|s| ((s - want).abs(), *s));
        }
        for start in starts {
            if out.len() >= usize::try_from(query.count).unwrap_or(3) {
                return Ok(out);
            }
            let (Some(s), Some(e)) = (
                Timestamp::from_unix(start),
                Timestamp::from_unix(start + len),
            ) else {
                continue;
            };
            let candidate = Appointment {
                id: query.moving.unwrap_or(Uuid::nil()),
                patient_id: query.patient_id,
                doctor_id: query.doctor_id,
                start: s,
                end: e,
                status: AppointmentStatus::Scheduled,
                reason: None,
                checked_in_at: None,
            };
            let mut src = VisibleSource(conn);
            let taken = |r: Result<Vec<Uuid>, PlanError<ClientError>>| match r {
                Ok(ids) => Ok(!ids.is_empty()),
                Err(PlanError::Source(e)) => Err(e),
                // An unreadable stored appointment: do not suggest around it.
                Err(PlanError::Rejected(_)) => Ok(true),
            };
            if !taken(apply::clashing_appointments(&mut src, &candidate))?
                && !taken(apply::patient_clashes(&mut src, &candidate))?
            {
                out.push(FreeSlot { start: s, end: e });
            }
        }
    }
    Ok(out)
}

/// A patient's chart: what the user may see about them, each newest first.
fn chart(conn: &Connection, patient: Uuid) -> ClientResult<Option<Chart>> {
    let id = patient.to_string();
    let Some(patient) = entities::<Patient>(conn, "tbl = 'patients' AND id = ?1", &[&id])?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let of = |table: &str, order: &str| -> String {
        format!(
            "tbl = '{table}' AND json_extract(data, '$.patient_id') = ?1 ORDER BY json_extract(data, '$.{order}') DESC"
        )
    };
    Ok(Some(Chart {
        patient,
        appointments: entities(conn, &of("appointments", "start"), &[&id])?,
        treatment_records: entities(conn, &of("treatment_records", "recorded_at"), &[&id])?,
        invoices: entities(conn, &of("invoices", "issued_at"), &[&id])?,
        payments: entities(
            conn,
            "tbl = 'payments' AND json_extract(data, '$.invoice_id') IN
                (SELECT id FROM visible WHERE tbl = 'invoices' AND deleted = 0 AND json_extract(data, '$.patient_id') = ?1)
             ORDER BY json_extract(data, '$.paid_at') DESC",
            &[&id],
        )?,
        referrals: entities(conn, &of("referrals", "created_at"), &[&id])?,
        care: crate::types::ChartCare {
            withheld: clinical_missing(conn, &id)?,
            grant_ends_at: None,
        },
    }))
}

/// Whether a treatment record or referral of the patient lacks one of its
/// clinical fields in the mirror (withheld by the server; the facade
/// decides whether the role would read it). `procedures` is left out: rows
/// written before it existed lack it without anything being withheld.
fn clinical_missing(conn: &Connection, patient: &str) -> ClientResult<bool> {
    let missing: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM visible WHERE deleted = 0
                AND json_extract(data, '$.patient_id') = ?1
                AND ((tbl = 'treatment_records' AND (json_type(data, '$.notes') IS NULL
                        OR json_type(data, '$.diagnosis') IS NULL))
                  OR (tbl = 'referrals' AND json_type(data, '$.reason') IS NULL)))",
        )?
        .query_row([patient], |r| r.get(0))?;
    Ok(missing)
}

/// One visible row of any table (not deleted).
pub(crate) fn row(conn: &Connection, table: Table, id: Uuid) -> ClientResult<Option<Row>> {
    let id = id.to_string();
    raw_rows(conn, "tbl = ?1 AND id = ?2", &[&table.as_str(), &id])?
        .into_iter()
        .next()
        .map(to_row)
        .transpose()
}

impl Reader {
    /// Opens a reading connection to the mirror at `dir` (which the mirror
    /// has already created and migrated).
    pub(crate) fn open(dir: &Path, key: &crate::session::keys::MirrorKey) -> ClientResult<Reader> {
        let conn = schema::connect(&dir.join(schema::FILE_NAME), key)?;
        Ok(Reader {
            db: DbThread::spawn("clinic-reads", conn)?,
        })
    }

    /// Closes the reading connection and waits for it.
    pub(crate) async fn close(&self) {
        self.db.close().await;
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> ClientResult<T> + Send + 'static,
    ) -> ClientResult<T> {
        self.db.call(move |c| f(c)).await
    }

    /// One visible row of any table (not deleted).
    pub(crate) async fn row(&self, table: Table, id: Uuid) -> ClientResult<Option<Row>> {
        self.run(move |c| row(c, table, id)).await
    }

    /// Every visible row of a table, by id.
    pub(crate) async fn rows(&self, table: Table) -> ClientResult<Vec<Row>> {
        self.run(move |c| {
            raw_rows(c, "tbl = ?1 ORDER BY id", &[&table.as_str()])?
                .into_iter()
                .map(to_row)
                .collect()
        })
        .await
    }

    /// Every visible entity of a table, typed, by id.
    pub(crate) async fn all<T: DeserializeOwned + Send + 'static>(
        &self,
        table: Table,
    ) -> ClientResult<Vec<Entity<T>>> {
        self.run(move |c| entities(c, "tbl = ?1 ORDER BY id", &[&table.as_str()]))
            .await
    }

    /// One visible entity, typed.
    pub(crate) async fn one<T: DeserializeOwned + Send + 'static>(
        &self,
        table: Table,
        id: Uuid,
    ) -> ClientResult<Option<Entity<T>>> {
        self.run(move |c| {
            let id = id.to_string();
            Ok(
                entities(c, "tbl = ?1 AND id = ?2", &[&table.as_str(), &id])?
                    .into_iter()
                    .next(),
            )
        })
        .await
    }

    /// Patient search (see [`search_patients`]).
    pub(crate) async fn search_patients(
        &self,
        query: String,
        limit: usize,
    ) -> ClientResult<Vec<Entity<Patient>>> {
        self.run(move |c| search_patients(c, &query, limit)).await
    }

    /// Whether a mutation would be accepted now (see [`check`]).
    pub(crate) async fn check(
        &self,
        mutation: Mutation,
        now: Timestamp,
    ) -> ClientResult<Option<Rejection>> {
        self.run(move |c| check(c, &mutation, now)).await
    }

    /// Free slots near a wanted time (see [`free_slots`]).
    pub(crate) async fn free_slots(
        &self,
        query: SlotQuery,
        zone: ClinicZone,
        now: Timestamp,
    ) -> ClientResult<Vec<FreeSlot>> {
        self.run(move |c| free_slots(c, &query, &zone, now)).await
    }

    /// Appointments starting in `[from, until)`.
    pub(crate) async fn schedule(
        &self,
        from: Timestamp,
        until: Timestamp,
        doctor: Option<Uuid>,
    ) -> ClientResult<Vec<Entity<Appointment>>> {
        self.run(move |c| schedule(c, from, until, doctor)).await
    }

    /// A patient's chart.
    pub(crate) async fn chart(&self, patient: Uuid) -> ClientResult<Option<Chart>> {
        self.run(move |c| chart(c, patient)).await
    }

    /// Inventory items at or below their reorder level, by name.
    pub(crate) async fn low_stock(&self) -> ClientResult<Vec<Entity<InventoryItem>>> {
        self.run(|c| {
            entities(
                c,
                "tbl = 'inventory_items' AND json_extract(data, '$.quantity') <= json_extract(data, '$.reorder_level')
                 ORDER BY json_extract(data, '$.name')",
                &[],
            )
        })
        .await
    }

    /// A staff member by username.
    pub(crate) async fn staff_by_username(
        &self,
        username: String,
    ) -> ClientResult<Option<Entity<Staff>>> {
        self.run(move |c| {
            Ok(entities(
                c,
                "tbl = 'staff' AND json_extract(data, '$.username') = ?1",
                &[&username],
            )?
            .into_iter()
            .next())
        })
        .await
    }

    /// Number of visible rows per table.
    pub(crate) async fn counts(&self) -> ClientResult<Vec<(Table, u64)>> {
        self.run(|c| {
            let raw: Vec<(String, i64)> = c
                .prepare_cached(
                    "SELECT tbl, COUNT(*) FROM visible WHERE deleted = 0 GROUP BY tbl ORDER BY tbl",
                )?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            raw.into_iter()
                .map(|(t, n)| Ok((parse_table(&t)?, to_u64(n))))
                .collect()
        })
        .await
    }
}
