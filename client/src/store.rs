//! The local store: one SQLite file holding the mirror of what the server
//! said, the outbox of changes not yet confirmed, and the rows the user sees.
//!
//! Terms:
//! - **confirmed rows**: the server's rows as last received (`confirmed`).
//! - **outbox**: the user's mutations in the order made, durable, each with
//!   the rows it touches (`outbox`, `outbox_rows`). A mutation leaves the
//!   outbox when the server has rejected it, or applied it and the mirror's
//!   cursor has reached the sequence number of its effects, so that a pending
//!   row never flickers back to its old value.
//! - **visible rows**: confirmed rows with the pending mutations replayed on
//!   top (`visible`), what every query reads. Only rows touched by a change
//!   are re-derived.
//! - **cursor**: the highest server sequence number applied to the mirror.
//!
//! Every write is one IMMEDIATE transaction: a local mutation and its outbox
//! entry; a server batch, its cursor and the mutations it acknowledges. The
//! store sends a [`StoreEvent`] after each commit so a UI re-reads only what
//! changed.

use crate::error::{ClientError, ClientResult};
use clinic_shared::apply::{self, Action, CurrentRow, PlanError, RowSource, RowWrite};
use clinic_shared::model::{Role, Staff, SyncRow, Table, Timestamp};
use clinic_shared::mutation::{Mutation, PendingMutation};
use clinic_shared::permissions;
use clinic_shared::protocol::{Actor, MutationOutcome, MutationResult, Rejection};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::broadcast;
use uuid::Uuid;

/// Versioned schema migrations of the local database.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE confirmed (
        tbl TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
        deleted INTEGER NOT NULL, data TEXT,
        PRIMARY KEY (tbl, id)
    ) WITHOUT ROWID;
    CREATE TABLE visible (
        tbl TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
        deleted INTEGER NOT NULL, data TEXT NOT NULL, pending INTEGER NOT NULL,
        PRIMARY KEY (tbl, id)
    ) WITHOUT ROWID;
    CREATE INDEX visible_appointments_by_doctor ON visible (json_extract(data, '$.doctor_id'), json_extract(data, '$.start'))
        WHERE tbl = 'appointments';
    CREATE INDEX visible_appointments_by_patient ON visible (json_extract(data, '$.patient_id'))
        WHERE tbl = 'appointments';
    CREATE INDEX visible_records_by_patient ON visible (json_extract(data, '$.patient_id'))
        WHERE tbl IN ('treatment_records', 'invoices', 'referrals');
    CREATE TABLE outbox (
        mutation_id INTEGER PRIMARY KEY,
        mutation TEXT NOT NULL,
        created_at TEXT NOT NULL,
        applied_seq INTEGER
    );
    CREATE TABLE outbox_rows (
        mutation_id INTEGER NOT NULL, tbl TEXT NOT NULL, id TEXT NOT NULL,
        PRIMARY KEY (mutation_id, tbl, id)
    ) WITHOUT ROWID;
    CREATE INDEX outbox_rows_by_row ON outbox_rows (tbl, id);
    CREATE TABLE rejected (
        mutation_id INTEGER PRIMARY KEY,
        mutation TEXT NOT NULL,
        rejection TEXT NOT NULL,
        rejected_at TEXT NOT NULL
    );
    CREATE VIRTUAL TABLE patient_search USING fts5(
        id UNINDEXED, name, phone, dob, tokenize = 'unicode61 remove_diacritics 2'
    );
"#,
    r#"
    -- Which search entry (FTS rowid) holds which patient: finding a
    -- patient's entry by its UNINDEXED id column scanned the whole index on
    -- every patient write.
    DELETE FROM patient_search WHERE rowid NOT IN (SELECT MIN(rowid) FROM patient_search GROUP BY id);
    CREATE TABLE patient_search_ids (docid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE);
    INSERT INTO patient_search_ids (docid, id) SELECT rowid, id FROM patient_search;
"#,
];

/// Where a change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOrigin {
    /// This user's own mutation, applied locally.
    Local,
    /// Rows received from the server.
    Remote,
    /// The server refused a mutation; its effects were rolled back.
    Rejection,
    /// The session changed (sign-in, sign-out, role change).
    Session,
}

/// "These rows changed": sent after every commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct StoreEvent {
    /// What caused it.
    pub origin: ChangeOrigin,
    /// Tables with changed visible rows.
    pub tables: Vec<Table>,
    /// The changed rows (capped; a large batch lists only its tables).
    pub rows: Vec<(Table, Uuid)>,
    /// The mirror's cursor after the commit.
    pub cursor: u64,
}

/// At most this many row ids are listed in one event.
const EVENT_ROWS: usize = 500;

/// A visible row as queries return it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct Row {
    /// Table.
    pub table: Table,
    /// Id.
    pub id: Uuid,
    /// Version of the confirmed row underneath (0 if created locally).
    pub version: u64,
    /// Whether a pending local change shapes this row.
    pub pending: bool,
    /// The entity (a JSON object of the table's entity type).
    #[ts(type = "Record<string, any>")]
    pub data: Value,
}

/// A mutation waiting for the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct PendingEntry {
    /// Its id.
    pub mutation_id: u64,
    /// The intent.
    pub mutation: Mutation,
    /// When it was made (local clock).
    pub created_at: Timestamp,
    /// The server applied it at this sequence number; waiting for the mirror
    /// to catch up to it.
    pub applied_seq: Option<u64>,
}

/// A mutation the server refused, kept until the user dismisses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct RejectedEntry {
    /// Its id.
    pub mutation_id: u64,
    /// The intent, so it can be edited and retried.
    pub mutation: Mutation,
    /// Why.
    pub rejection: Rejection,
    /// When the answer arrived.
    pub rejected_at: Timestamp,
}

/// Who this installation is and whom it serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct Identity {
    /// This installation's client id (new for every user who signs in here).
    pub client_id: Uuid,
    /// The server's base URL.
    pub server_url: Option<String>,
    /// The signed-in user, if any (kept while the token is dropped).
    pub user: Option<Staff>,
    /// Whether a token is held.
    pub signed_in: bool,
}

/// Counts for the status line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct QueueStats {
    /// Mutations not yet confirmed.
    pub pending: u64,
    /// Creation time of the oldest of them.
    pub oldest_pending: Option<Timestamp>,
    /// Rejections not yet dismissed.
    pub rejected: u64,
    /// The mirror's cursor.
    pub cursor: u64,
}

/// The local store.
pub struct Store {
    conn: Mutex<Connection>,
    events: broadcast::Sender<StoreEvent>,
    path: PathBuf,
    _checkpointer: Option<Checkpointer>,
}

/// How often the checkpointer copies the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// WAL size (pages) at which a commit checkpoints itself after all (the
/// SQLite default is 1000). Under a steady stream of writes (a first sync)
/// a passive checkpoint never catches the WAL's end, and the WAL only starts
/// over after a checkpoint made by the writer: this bounds the file (~40 MB)
/// while keeping such commits rare (about one live batch in a thousand).
const WAL_PAGES_BEFORE_COMMIT_CHECKPOINTS: i64 = 10_000;

/// Keeps WAL checkpoints off the commit path. By default the commit that
/// takes the WAL past 1000 pages also copies them into the database and
/// syncs it, while its caller (a local write, a live batch) waits: tens of
/// milliseconds, every hundred or so commits. Instead a thread with its own
/// connection runs a passive checkpoint every second, which never blocks a
/// commit, and leaves commits only the remainder, rarely (see
/// [`WAL_PAGES_BEFORE_COMMIT_CHECKPOINTS`]). It stops when the store is
/// dropped.
struct Checkpointer {
    _stop: std::sync::mpsc::Sender<()>,
}

impl Checkpointer {
    /// `None` if its connection or thread cannot be had (commits then
    /// checkpoint as SQLite does by default).
    fn start(path: &Path) -> Option<Checkpointer> {
        let conn = Connection::open(path).ok()?;
        conn.pragma_update(None, "synchronous", "FULL").ok()?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("clinic-checkpoint".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_EVERY)
                {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                }
            })
            .ok()?;
        Some(Checkpointer { _stop: stop })
    }
}

fn db(e: rusqlite::Error) -> ClientError {
    ClientError::from_sqlite(e)
}

fn corrupt(msg: impl std::fmt::Display) -> ClientError {
    ClientError::Corrupt(msg.to_string())
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn now() -> Timestamp {
    Timestamp::from_datetime(chrono::Utc::now())
}

fn parse_uuid(s: &str) -> ClientResult<Uuid> {
    Uuid::parse_str(s).map_err(|e| corrupt(format!("bad id `{s}`: {e}")))
}

fn parse_table(s: &str) -> ClientResult<Table> {
    s.parse().map_err(corrupt)
}

fn json<T: serde::de::DeserializeOwned>(s: &str) -> ClientResult<T> {
    serde_json::from_str(s).map_err(|e| corrupt(format!("bad JSON in the local database: {e}")))
}

fn to_json<T: Serialize>(v: &T) -> ClientResult<String> {
    serde_json::to_string(v).map_err(corrupt)
}

fn get_meta(conn: &Connection, key: &str) -> ClientResult<Option<String>> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")
        .map_err(db)?
        .query_row([key], |r| r.get(0))
        .optional()
        .map_err(db)
}

fn set_meta(conn: &Connection, key: &str, value: &str) -> ClientResult<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .map_err(db)?
    .execute(params![key, value])
    .map_err(db)?;
    Ok(())
}

fn delete_meta(conn: &Connection, key: &str) -> ClientResult<()> {
    conn.execute("DELETE FROM meta WHERE key = ?1", [key])
        .map_err(db)?;
    Ok(())
}

/// A numeric meta value, 0 when unset.
fn meta_u64(conn: &Connection, key: &str) -> ClientResult<u64> {
    Ok(get_meta(conn, key)?
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

fn cursor_of(conn: &Connection) -> ClientResult<u64> {
    meta_u64(conn, "cursor")
}

/// Meta keys that belong to one client id's sync session with the server.
const SESSION_KEYS: [&str; 6] = [
    "cursor",
    "next_mutation_id",
    "last_synced_at",
    "synced_once",
    "server_ack",
    "settled",
];

/// The highest mutation id the server said it has processed: mutations up
/// to it are not replayed (their effects, if any, are in the confirmed rows).
fn server_ack_of(conn: &Connection) -> ClientResult<u64> {
    meta_u64(conn, "server_ack")
}

/// The cursor up to which the mirror holds every change (not just a page of
/// them): an applied mutation leaves the outbox only when its sequence
/// number is at or below this, so a pending row never flickers back.
fn settled_of(conn: &Connection) -> ClientResult<u64> {
    meta_u64(conn, "settled")
}

fn all_outbox_rows(conn: &Connection) -> ClientResult<BTreeSet<(Table, Uuid)>> {
    let raw: Vec<(String, String)> = conn
        .prepare_cached("SELECT DISTINCT tbl, id FROM outbox_rows")
        .map_err(db)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)?;
    raw.iter()
        .map(|(t, i)| Ok((parse_table(t)?, parse_uuid(i)?)))
        .collect()
}

/// Reads visible rows as the shared planner needs them.
struct VisibleSource<'a>(&'a Connection);

impl RowSource for VisibleSource<'_> {
    type Error = ClientError;

    fn row(&mut self, table: Table, id: Uuid) -> ClientResult<Option<CurrentRow>> {
        let raw: Option<(i64, bool, String)> = self
            .0
            .prepare_cached("SELECT version, deleted, data FROM visible WHERE tbl = ?1 AND id = ?2")
            .map_err(db)?
            .query_row(params![table.as_str(), id.to_string()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
            .map_err(db)?;
        raw.map(|(version, deleted, data)| {
            Ok(CurrentRow {
                version: to_u64(version),
                deleted,
                data: json(&data)?,
            })
        })
        .transpose()
    }

    fn overlapping_appointments(
        &mut self,
        doctor_id: Uuid,
        start: Timestamp,
        end: Timestamp,
        exclude: Uuid,
    ) -> ClientResult<Vec<Uuid>> {
        let earliest = Timestamp::from_unix(start.unix() - 12 * 3600).unwrap_or(start);
        let ids: Vec<String> = self
            .0
            .prepare_cached(
                "SELECT id FROM visible
                 WHERE tbl = 'appointments' AND deleted = 0
                   AND json_extract(data, '$.doctor_id') = ?1
                   AND json_extract(data, '$.start') >= ?2
                   AND json_extract(data, '$.start') < ?3
                   AND json_extract(data, '$.end') > ?4
                   AND json_extract(data, '$.status') NOT IN ('cancelled', 'no_show')
                   AND id <> ?5",
            )
            .map_err(db)?
            .query_map(
                params![
                    doctor_id.to_string(),
                    earliest.to_string(),
                    end.to_string(),
                    start.to_string(),
                    exclude.to_string()
                ],
                |r| r.get(0),
            )
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        ids.iter().map(|s| parse_uuid(s)).collect()
    }

    fn staff_id_by_username(&mut self, username: &str) -> ClientResult<Option<Uuid>> {
        let id: Option<String> = self
            .0
            .prepare_cached(
                "SELECT id FROM visible WHERE tbl = 'staff' AND json_extract(data, '$.username') = ?1",
            )
            .map_err(db)?
            .query_row([username], |r| r.get(0))
            .optional()
            .map_err(db)?;
        id.map(|s| parse_uuid(&s)).transpose()
    }
}

/// Keeps the patient search index in step with a visible patient row.
fn index_patient(conn: &Connection, id: Uuid, data: Option<&Value>) -> ClientResult<()> {
    let id_text = id.to_string();
    let docid: Option<i64> = conn
        .prepare_cached("SELECT docid FROM patient_search_ids WHERE id = ?1")
        .map_err(db)?
        .query_row([&id_text], |r| r.get(0))
        .optional()
        .map_err(db)?;
    if let Some(docid) = docid {
        conn.prepare_cached("DELETE FROM patient_search WHERE rowid = ?1")
            .map_err(db)?
            .execute([docid])
            .map_err(db)?;
    }
    let Some(p) = data else {
        if let Some(docid) = docid {
            conn.prepare_cached("DELETE FROM patient_search_ids WHERE docid = ?1")
                .map_err(db)?
                .execute([docid])
                .map_err(db)?;
        }
        return Ok(());
    };
    let docid = match docid {
        Some(d) => d,
        None => conn
            .prepare_cached("INSERT INTO patient_search_ids (id) VALUES (?1) RETURNING docid")
            .map_err(db)?
            .query_row([&id_text], |r| r.get(0))
            .map_err(db)?,
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
    )
    .map_err(db)?
    .execute(params![
        docid,
        id_text,
        name,
        format!("{phone_raw} {}", suffixes.join(" ")),
        dob
    ])
    .map_err(db)?;
    Ok(())
}

/// Writes one visible row (and its search entry).
fn put_visible(
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
    )
    .map_err(db)?
    .execute(params![table.as_str(), id.to_string(), to_i64(version), deleted, data.to_string(), pending])
    .map_err(db)?;
    if table == Table::Patients {
        index_patient(conn, id, (!deleted).then_some(data))?;
    }
    Ok(())
}

fn remove_visible(conn: &Connection, table: Table, id: Uuid) -> ClientResult<()> {
    conn.prepare_cached("DELETE FROM visible WHERE tbl = ?1 AND id = ?2")
        .map_err(db)?
        .execute(params![table.as_str(), id.to_string()])
        .map_err(db)?;
    if table == Table::Patients {
        index_patient(conn, id, None)?;
    }
    Ok(())
}

/// Applies a planned mutation's writes to the visible rows.
fn write_visible(conn: &Connection, writes: &[RowWrite]) -> ClientResult<()> {
    for w in writes {
        let version: u64 = conn
            .prepare_cached("SELECT version FROM visible WHERE tbl = ?1 AND id = ?2")
            .map_err(db)?
            .query_row(params![w.table.as_str(), w.id.to_string()], |r| {
                r.get::<_, i64>(0)
            })
            .optional()
            .map_err(db)?
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

fn planned(
    conn: &Connection,
    mutation: &Mutation,
    actor: &Actor,
) -> ClientResult<Result<Vec<RowWrite>, Rejection>> {
    match apply::plan(mutation, actor, &mut VisibleSource(conn)) {
        Ok(writes) => Ok(Ok(writes)),
        Err(PlanError::Rejected(r)) => Ok(Err(r)),
        Err(PlanError::Source(e)) => Err(e),
    }
}

/// One outbox entry.
struct OutboxItem {
    mutation_id: u64,
    mutation: Mutation,
}

fn load_outbox(conn: &Connection) -> ClientResult<Vec<OutboxItem>> {
    let raw: Vec<(i64, String)> = conn
        .prepare_cached("SELECT mutation_id, mutation FROM outbox ORDER BY mutation_id")
        .map_err(db)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)?;
    raw.into_iter()
        .map(|(id, m)| {
            Ok(OutboxItem {
                mutation_id: to_u64(id),
                mutation: json(&m)?,
            })
        })
        .collect()
}

fn copy_confirmed_to_visible(conn: &Connection, table: Table, id: Uuid) -> ClientResult<()> {
    let confirmed: Option<(i64, bool, Option<String>)> = conn
        .prepare_cached("SELECT version, deleted, data FROM confirmed WHERE tbl = ?1 AND id = ?2")
        .map_err(db)?
        .query_row(params![table.as_str(), id.to_string()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()
        .map_err(db)?;
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

/// Re-derives the visible rows: the rows in `extra` and every row the outbox
/// writes go back to their confirmed state, then every pending mutation not
/// yet acknowledged by the server is replayed in order. All of them, not only
/// those writing a changed row: a mutation also reads rows (the patient of an
/// invoice, a doctor's other appointments), and a change to what it read can
/// change or cancel its effect. A pending mutation that no longer plans shows
/// no effect; the server will answer it. Returns the rows re-derived.
fn rederive(
    conn: &Connection,
    actor: Option<&Actor>,
    extra: &BTreeSet<(Table, Uuid)>,
) -> ClientResult<BTreeSet<(Table, Uuid)>> {
    let mut rows = extra.clone();
    rows.extend(all_outbox_rows(conn)?);
    for (table, id) in &rows {
        copy_confirmed_to_visible(conn, *table, *id)?;
    }
    if let Some(actor) = actor {
        let acknowledged = server_ack_of(conn)?;
        for item in load_outbox(conn)?
            .iter()
            .filter(|i| i.mutation_id > acknowledged)
        {
            if let Ok(writes) = planned(conn, &item.mutation, actor)? {
                write_visible(conn, &writes)?;
            }
        }
    }
    Ok(rows)
}

fn stored_actor(conn: &Connection) -> ClientResult<Option<Actor>> {
    let user: Option<Staff> = get_meta(conn, "user")?.map(|u| json(&u)).transpose()?;
    Ok(user.map(|u| Actor {
        user_id: u.id,
        role: u.role,
    }))
}

fn immediate(conn: &mut Connection) -> ClientResult<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)
}

fn event(origin: ChangeOrigin, rows: &BTreeSet<(Table, Uuid)>, cursor: u64) -> StoreEvent {
    let tables: BTreeSet<Table> = rows.iter().map(|(t, _)| *t).collect();
    StoreEvent {
        origin,
        tables: tables.into_iter().collect(),
        rows: if rows.len() <= EVENT_ROWS {
            rows.iter().copied().collect()
        } else {
            Vec::new()
        },
        cursor,
    }
}

/// What a local mutation did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct Receipt {
    /// The mutation's id.
    pub mutation_id: u64,
    /// The rows it changed locally.
    pub rows: Vec<(Table, Uuid)>,
}

impl Store {
    /// Opens (creating) the store in `dir/clinic-client.db`, migrating its
    /// schema and checking it. A locked or corrupt database is an error.
    pub fn open(dir: &Path) -> ClientResult<Store> {
        std::fs::create_dir_all(dir)
            .map_err(|e| ClientError::Io(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join("clinic-client.db");
        let mut conn = Connection::open(&path).map_err(db)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(db)?;
        if check != "ok" {
            return Err(ClientError::Corrupt(format!(
                "the local database failed its check: {check}"
            )));
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)",
        )
        .map_err(db)?;
        let tx = immediate(&mut conn)?;
        let current: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )
            .map_err(db)?;
        let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if current > known {
            return Err(ClientError::Corrupt(format!(
                "the local database is from a newer version of the app (schema {current} > {known})"
            )));
        }
        for (i, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(current).unwrap_or(0))
        {
            tx.execute_batch(sql).map_err(db)?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES (?1)",
                [i64::try_from(i + 1).unwrap_or(0)],
            )
            .map_err(db)?;
        }
        if get_meta(&tx, "client_id")?.is_none() {
            set_meta(&tx, "client_id", &Uuid::now_v7().to_string())?;
        }
        tx.commit().map_err(db)?;
        let checkpointer = Checkpointer::start(&path);
        if checkpointer.is_some() {
            conn.pragma_update(
                None,
                "wal_autocheckpoint",
                WAL_PAGES_BEFORE_COMMIT_CHECKPOINTS,
            )
            .map_err(db)?;
        }
        let (events, _) = broadcast::channel(1024);
        Ok(Store {
            conn: Mutex::new(conn),
            events,
            path,
            _checkpointer: checkpointer,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> ClientResult<std::sync::MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| ClientError::Corrupt("the store's connection was poisoned".into()))
    }

    fn emit(&self, event: StoreEvent) {
        if !event.tables.is_empty() || event.origin == ChangeOrigin::Session {
            let _ = self.events.send(event);
        }
    }

    /// Receives an event after every commit that changes visible rows.
    pub fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }

    /// This installation's identity.
    pub fn identity(&self) -> ClientResult<Identity> {
        let conn = self.lock()?;
        let client_id = parse_uuid(&get_meta(&conn, "client_id")?.unwrap_or_default())?;
        Ok(Identity {
            client_id,
            server_url: get_meta(&conn, "server_url")?,
            user: get_meta(&conn, "user")?.map(|u| json(&u)).transpose()?,
            signed_in: get_meta(&conn, "token")?.is_some(),
        })
    }

    /// The bearer token, if signed in.
    pub fn token(&self) -> ClientResult<Option<String>> {
        get_meta(&*self.lock()?, "token")
    }

    /// Records a sign-in. A different user than the one this mirror belongs
    /// to starts from an empty mirror with a new client id (a client id is
    /// bound to one user on the server); the previous user's unsent changes
    /// are refused rather than silently dropped.
    pub fn sign_in(&self, server_url: &str, token: &str, user: &Staff) -> ClientResult<()> {
        let mut conn = self.lock()?;
        let tx = immediate(&mut conn)?;
        let previous: Option<Staff> = get_meta(&tx, "user")?.map(|u| json(&u)).transpose()?;
        let same_server = get_meta(&tx, "server_url")?.as_deref() == Some(server_url);
        let switching = previous.as_ref().is_some_and(|p| p.id != user.id)
            || (previous.is_some() && !same_server);
        if switching {
            let pending: i64 = tx
                .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
                .map_err(db)?;
            if pending > 0 {
                return Err(ClientError::PendingChangesOfAnotherUser(to_u64(pending)));
            }
            tx.execute_batch(
                "DELETE FROM confirmed; DELETE FROM visible; DELETE FROM rejected; DELETE FROM patient_search; DELETE FROM patient_search_ids;
                 DELETE FROM outbox_rows; DELETE FROM outbox;",
            )
            .map_err(db)?;
            // Everything bound to the old client id goes with it: a stale
            // acknowledgement would hide the new client's first mutations.
            for key in SESSION_KEYS.iter().chain(&["offline_verifier"]) {
                delete_meta(&tx, key)?;
            }
            set_meta(&tx, "client_id", &Uuid::now_v7().to_string())?;
        }
        set_meta(&tx, "server_url", server_url)?;
        set_meta(&tx, "token", token)?;
        set_meta(&tx, "user", &to_json(user)?)?;
        tx.commit().map_err(db)?;
        drop(conn);
        if switching {
            self.emit(StoreEvent {
                origin: ChangeOrigin::Session,
                tables: Table::ALL.to_vec(),
                rows: vec![],
                cursor: 0,
            });
        }
        Ok(())
    }

    /// Remembers an Argon2id hash of the password the signed-in user just
    /// signed in with, so that the same user can sign in on this machine
    /// while the server cannot be reached. Never the password itself.
    pub fn set_offline_verifier(&self, username: &str, hash: &str) -> ClientResult<()> {
        let value = serde_json::json!({ "username": username, "hash": hash });
        set_meta(&*self.lock()?, "offline_verifier", &value.to_string())
    }

    /// The signed-in (or last signed-in) user with the stored password hash
    /// for offline sign-in, if `username` is that user.
    pub fn offline_verifier(&self, username: &str) -> ClientResult<Option<(Staff, String)>> {
        let conn = self.lock()?;
        let Some(raw) = get_meta(&conn, "offline_verifier")? else {
            return Ok(None);
        };
        let value: serde_json::Value = json(&raw)?;
        let user: Option<Staff> = get_meta(&conn, "user")?.map(|u| json(&u)).transpose()?;
        let matches = |v: &serde_json::Value| {
            v.as_str()
                .is_some_and(|stored| stored.eq_ignore_ascii_case(username.trim()))
        };
        Ok(match (user, value["hash"].as_str()) {
            (Some(user), Some(hash)) if matches(&value["username"]) => {
                Some((user, hash.to_owned()))
            }
            _ => None,
        })
    }

    /// Forgets the token (sign-out or expiry). Unsent changes stay queued
    /// for when the same user signs in again.
    pub fn drop_token(&self) -> ClientResult<()> {
        delete_meta(&*self.lock()?, "token")
    }

    /// Signs out and removes the mirror from this machine; refused while
    /// changes are unsent unless `discard_pending`.
    pub fn sign_out_and_wipe(&self, discard_pending: bool) -> ClientResult<()> {
        let mut conn = self.lock()?;
        let tx = immediate(&mut conn)?;
        let pending: i64 = tx
            .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
            .map_err(db)?;
        if pending > 0 && !discard_pending {
            return Err(ClientError::PendingChangesOfAnotherUser(to_u64(pending)));
        }
        tx.execute_batch(
            "DELETE FROM confirmed; DELETE FROM visible; DELETE FROM rejected; DELETE FROM patient_search; DELETE FROM patient_search_ids;
             DELETE FROM outbox_rows; DELETE FROM outbox;",
        )
        .map_err(db)?;
        for key in SESSION_KEYS
            .iter()
            .chain(&["token", "user", "offline_verifier"])
        {
            delete_meta(&tx, key)?;
        }
        set_meta(&tx, "client_id", &Uuid::now_v7().to_string())?;
        tx.commit().map_err(db)?;
        drop(conn);
        self.emit(StoreEvent {
            origin: ChangeOrigin::Session,
            tables: Table::ALL.to_vec(),
            rows: vec![],
            cursor: 0,
        });
        Ok(())
    }

    /// The user's role changed: rows the new role may not read are removed,
    /// and the mirror re-syncs from the start (the new role may see more).
    pub fn change_role(&self, user: &Staff) -> ClientResult<()> {
        let mut conn = self.lock()?;
        let tx = immediate(&mut conn)?;
        for table in Table::ALL
            .into_iter()
            .filter(|t| !permissions::can_read(user.role, *t))
        {
            tx.execute("DELETE FROM confirmed WHERE tbl = ?1", [table.as_str()])
                .map_err(db)?;
            tx.execute("DELETE FROM visible WHERE tbl = ?1", [table.as_str()])
                .map_err(db)?;
            if table == Table::Patients {
                tx.execute_batch("DELETE FROM patient_search; DELETE FROM patient_search_ids;")
                    .map_err(db)?;
            }
        }
        set_meta(&tx, "user", &to_json(user)?)?;
        set_meta(&tx, "cursor", "0")?;
        set_meta(&tx, "settled", "0")?;
        delete_meta(&tx, "synced_once")?;
        tx.commit().map_err(db)?;
        drop(conn);
        self.emit(StoreEvent {
            origin: ChangeOrigin::Session,
            tables: Table::ALL.to_vec(),
            rows: vec![],
            cursor: 0,
        });
        Ok(())
    }

    /// Validates and plans `mutation` against the visible rows, then writes
    /// it to the outbox and applies it to the visible rows in one
    /// transaction. Returns once that has committed. A mutation the local
    /// rules already refuse is returned as [`ClientError::Rejected`] and
    /// nothing is queued.
    pub fn mutate(&self, mutation: Mutation) -> ClientResult<Receipt> {
        let mut conn = self.lock()?;
        let tx = immediate(&mut conn)?;
        let actor = stored_actor(&tx)?.ok_or(ClientError::NotSignedIn)?;
        let writes = match planned(&tx, &mutation, &actor)? {
            Ok(w) => w,
            Err(rejection) => return Err(ClientError::Rejected(Box::new(rejection))),
        };
        let mutation_id = get_meta(&tx, "next_mutation_id")?
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(1);
        set_meta(&tx, "next_mutation_id", &(mutation_id + 1).to_string())?;
        tx.prepare_cached(
            "INSERT INTO outbox (mutation_id, mutation, created_at) VALUES (?1, ?2, ?3)",
        )
        .map_err(db)?
        .execute(params![
            to_i64(mutation_id),
            to_json(&mutation)?,
            now().to_string()
        ])
        .map_err(db)?;
        let mut rows = BTreeSet::new();
        for w in &writes {
            rows.insert((w.table, w.id));
        }
        for (table, id) in &rows {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO outbox_rows (mutation_id, tbl, id) VALUES (?1, ?2, ?3)",
            )
            .map_err(db)?
            .execute(params![to_i64(mutation_id), table.as_str(), id.to_string()])
            .map_err(db)?;
        }
        write_visible(&tx, &writes)?;
        let cursor = cursor_of(&tx)?;
        tx.commit().map_err(db)?;
        drop(conn);
        tracing::debug!(mutation_id, kind = mutation.kind(), "local mutation queued");
        self.emit(event(ChangeOrigin::Local, &rows, cursor));
        Ok(Receipt {
            mutation_id,
            rows: rows.into_iter().collect(),
        })
    }

    /// Applies a batch of server rows and the cursor after them, in one
    /// transaction. `ack` is the server's `last_mutation_id` sent with these
    /// rows: mutations up to it are processed, so they are no longer
    /// replayed (their effects are in the rows). `complete` says the mirror
    /// now holds every change up to `cursor` (a last pull page, a live
    /// batch), not just a page of them: only then do applied mutations whose
    /// effects the cursor covers leave the outbox. Pending mutations are then
    /// re-planned on the new rows.
    pub fn apply_remote(
        &self,
        rows: &[SyncRow],
        cursor: u64,
        ack: Option<u64>,
        complete: bool,
    ) -> ClientResult<StoreEvent> {
        let mut conn = self.lock()?;
        // Server rows commit with `synchronous=NORMAL`: they and the cursor
        // after them commit together and can always be fetched again, so
        // they need not reach the disk before the call returns (one fsync
        // per live batch per desk otherwise). The WAL is written in order,
        // and the next FULL commit (a local write, a push result) syncs it
        // whole: a crash can lose only the latest remote batches, with their
        // cursor, never a local write.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db)?;
        let applied = self.apply_remote_in(&mut conn, rows, cursor, ack, complete);
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        let (touched, cursor) = applied?;
        drop(conn);
        let ev = event(ChangeOrigin::Remote, &touched, cursor);
        self.emit(ev.clone());
        Ok(ev)
    }

    fn apply_remote_in(
        &self,
        conn: &mut Connection,
        rows: &[SyncRow],
        cursor: u64,
        ack: Option<u64>,
        complete: bool,
    ) -> ClientResult<(BTreeSet<(Table, Uuid)>, u64)> {
        let tx = immediate(conn)?;
        let actor = stored_actor(&tx)?;
        let has_outbox: bool = tx
            .query_row("SELECT EXISTS (SELECT 1 FROM outbox)", [], |r| r.get(0))
            .map_err(db)?;
        let mut touched = BTreeSet::new();
        for row in rows {
            tx.prepare_cached(
                "INSERT INTO confirmed (tbl, id, version, deleted, data) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tbl, id) DO UPDATE SET version = excluded.version, deleted = excluded.deleted,
                     data = excluded.data
                 WHERE excluded.version >= confirmed.version",
            )
            .map_err(db)?
            .execute(params![
                row.table.as_str(),
                row.id.to_string(),
                to_i64(row.version),
                row.deleted,
                row.data.as_ref().map(Value::to_string)
            ])
            .map_err(db)?;
            touched.insert((row.table, row.id));
            copy_confirmed_to_visible(&tx, row.table, row.id)?;
        }
        // A late answer (a long-poll overtaken by a WebSocket batch) never
        // moves the cursor, the acknowledgement or the settled point back.
        let incoming = cursor;
        let cursor = incoming.max(cursor_of(&tx)?);
        set_meta(&tx, "cursor", &cursor.to_string())?;
        set_meta(&tx, "last_synced_at", &now().to_string())?;
        let previous_ack = server_ack_of(&tx)?;
        let ack_moved = ack.is_some_and(|a| a > previous_ack);
        if let Some(ack) = ack.filter(|_| ack_moved) {
            set_meta(&tx, "server_ack", &ack.to_string())?;
        }
        if complete && incoming > settled_of(&tx)? {
            set_meta(&tx, "settled", &incoming.to_string())?;
        }
        if has_outbox {
            // Mutations whose effects the mirror now fully holds leave the outbox.
            let done: Vec<i64> = tx
                .prepare_cached(
                    "SELECT mutation_id FROM outbox WHERE applied_seq IS NOT NULL AND applied_seq <= ?1",
                )
                .map_err(db)?
                .query_map([to_i64(settled_of(&tx)?)], |r| r.get(0))
                .map_err(db)?
                .collect::<Result<_, _>>()
                .map_err(db)?;
            let mut released = BTreeSet::new();
            for id in done {
                released.extend(self.remove_from_outbox(&tx, id)?);
            }
            // Nothing a pending mutation reads or replays changed: an empty
            // batch (rows this role cannot see) replays nothing.
            if !rows.is_empty() || !released.is_empty() || ack_moved {
                touched.extend(rederive(&tx, actor.as_ref(), &released)?);
            }
        }
        tx.commit().map_err(db)?;
        Ok((touched, cursor))
    }

    fn remove_from_outbox(
        &self,
        tx: &Connection,
        mutation_id: i64,
    ) -> ClientResult<BTreeSet<(Table, Uuid)>> {
        let rows: Vec<(String, String)> = tx
            .prepare_cached("SELECT tbl, id FROM outbox_rows WHERE mutation_id = ?1")
            .map_err(db)?
            .query_map([mutation_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        tx.execute(
            "DELETE FROM outbox_rows WHERE mutation_id = ?1",
            [mutation_id],
        )
        .map_err(db)?;
        tx.execute("DELETE FROM outbox WHERE mutation_id = ?1", [mutation_id])
            .map_err(db)?;
        rows.iter()
            .map(|(t, i)| Ok((parse_table(t)?, parse_uuid(i)?)))
            .collect()
    }

    /// Records the server's answers to pushed mutations: a rejection removes
    /// the mutation and rolls its rows back (keeping the reason for the
    /// user); an application is remembered until the mirror catches up with
    /// it. Returns the event for the rows that changed.
    pub fn apply_results(&self, results: &[MutationResult]) -> ClientResult<Option<StoreEvent>> {
        let mut conn = self.lock()?;
        let tx = immediate(&mut conn)?;
        let actor = stored_actor(&tx)?;
        let cursor = cursor_of(&tx)?;
        let settled = settled_of(&tx)?;
        let mut rolled_back = BTreeSet::new();
        let mut rejected_any = false;
        for result in results {
            let id = to_i64(result.mutation_id);
            let mutation: Option<String> = tx
                .prepare_cached("SELECT mutation FROM outbox WHERE mutation_id = ?1")
                .map_err(db)?
                .query_row([id], |r| r.get(0))
                .optional()
                .map_err(db)?;
            let Some(mutation) = mutation else { continue };
            match &result.outcome {
                MutationOutcome::Applied { seq } if *seq <= settled => {
                    rolled_back.extend(self.remove_from_outbox(&tx, id)?);
                }
                MutationOutcome::Applied { seq } => {
                    tx.execute(
                        "UPDATE outbox SET applied_seq = ?2 WHERE mutation_id = ?1",
                        params![id, to_i64(*seq)],
                    )
                    .map_err(db)?;
                }
                MutationOutcome::Rejected { rejection } => {
                    tracing::info!(mutation_id = result.mutation_id, code = ?rejection.code, "mutation rejected by the server");
                    tx.execute(
                        "INSERT OR REPLACE INTO rejected (mutation_id, mutation, rejection, rejected_at) VALUES (?1, ?2, ?3, ?4)",
                        params![id, mutation, to_json(rejection)?, now().to_string()],
                    )
                    .map_err(db)?;
                    rolled_back.extend(self.remove_from_outbox(&tx, id)?);
                    rejected_any = true;
                }
                MutationOutcome::Retry { .. } => {}
            }
        }
        let touched = if rolled_back.is_empty() {
            rolled_back
        } else {
            rederive(&tx, actor.as_ref(), &rolled_back)?
        };
        tx.commit().map_err(db)?;
        drop(conn);
        if touched.is_empty() && !rejected_any {
            return Ok(None);
        }
        let origin = if rejected_any {
            ChangeOrigin::Rejection
        } else {
            ChangeOrigin::Remote
        };
        let ev = event(origin, &touched, cursor);
        self.emit(ev.clone());
        Ok(Some(ev))
    }

    /// Pending mutations not yet answered, oldest first, at most `limit`.
    pub fn unsent(&self, limit: usize) -> ClientResult<Vec<PendingMutation>> {
        let conn = self.lock()?;
        let raw: Vec<(i64, String)> = conn
            .prepare_cached("SELECT mutation_id, mutation FROM outbox WHERE applied_seq IS NULL ORDER BY mutation_id LIMIT ?1")
            .map_err(db)?
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        raw.into_iter()
            .map(|(id, m)| {
                Ok(PendingMutation {
                    mutation_id: to_u64(id),
                    mutation: json(&m)?,
                })
            })
            .collect()
    }

    /// Every mutation in the outbox, oldest first.
    pub fn pending(&self) -> ClientResult<Vec<PendingEntry>> {
        let conn = self.lock()?;
        let raw: Vec<(i64, String, String, Option<i64>)> = conn
            .prepare_cached("SELECT mutation_id, mutation, created_at, applied_seq FROM outbox ORDER BY mutation_id")
            .map_err(db)?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        raw.into_iter()
            .map(|(id, m, at, seq)| {
                Ok(PendingEntry {
                    mutation_id: to_u64(id),
                    mutation: json(&m)?,
                    created_at: at.parse().map_err(|_| corrupt("bad timestamp in outbox"))?,
                    applied_seq: seq.map(to_u64),
                })
            })
            .collect()
    }

    /// Rejections the user has not dismissed, oldest first.
    pub fn rejected(&self) -> ClientResult<Vec<RejectedEntry>> {
        let conn = self.lock()?;
        let raw: Vec<(i64, String, String, String)> = conn
            .prepare_cached("SELECT mutation_id, mutation, rejection, rejected_at FROM rejected ORDER BY mutation_id")
            .map_err(db)?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        raw.into_iter()
            .map(|(id, m, r, at)| {
                Ok(RejectedEntry {
                    mutation_id: to_u64(id),
                    mutation: json(&m)?,
                    rejection: json(&r)?,
                    rejected_at: at
                        .parse()
                        .map_err(|_| corrupt("bad timestamp in rejected"))?,
                })
            })
            .collect()
    }

    /// Dismisses a rejection (the user has seen it).
    pub fn dismiss_rejected(&self, mutation_id: u64) -> ClientResult<bool> {
        let conn = self.lock()?;
        let n = conn
            .execute(
                "DELETE FROM rejected WHERE mutation_id = ?1",
                [to_i64(mutation_id)],
            )
            .map_err(db)?;
        Ok(n > 0)
    }

    /// Queue counts and cursor.
    pub fn stats(&self) -> ClientResult<QueueStats> {
        let conn = self.lock()?;
        let (pending, oldest): (i64, Option<String>) = conn
            .query_row("SELECT COUNT(*), MIN(created_at) FROM outbox", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(db)?;
        let rejected: i64 = conn
            .query_row("SELECT COUNT(*) FROM rejected", [], |r| r.get(0))
            .map_err(db)?;
        Ok(QueueStats {
            pending: to_u64(pending),
            oldest_pending: oldest.and_then(|o| o.parse().ok()),
            rejected: to_u64(rejected),
            cursor: cursor_of(&conn)?,
        })
    }

    /// The highest mutation id the server has acknowledged as processed.
    pub fn server_ack(&self) -> ClientResult<u64> {
        server_ack_of(&*self.lock()?)
    }

    /// The mirror's cursor.
    pub fn cursor(&self) -> ClientResult<u64> {
        cursor_of(&*self.lock()?)
    }

    /// When the mirror last received anything from the server.
    pub fn last_synced_at(&self) -> ClientResult<Option<Timestamp>> {
        Ok(get_meta(&*self.lock()?, "last_synced_at")?.and_then(|t| t.parse().ok()))
    }

    /// Marks the first full catch-up as done.
    pub fn mark_synced_once(&self) -> ClientResult<()> {
        set_meta(&*self.lock()?, "synced_once", "1")
    }

    /// Whether a full catch-up has completed since the mirror was (re)started.
    pub fn synced_once(&self) -> ClientResult<bool> {
        Ok(get_meta(&*self.lock()?, "synced_once")?.is_some())
    }

    // ---- queries: all local ----

    fn rows_where(&self, sql_tail: &str, args: &[&dyn rusqlite::ToSql]) -> ClientResult<Vec<Row>> {
        let conn = self.lock()?;
        let sql = format!(
            "SELECT tbl, id, version, pending, data FROM visible WHERE deleted = 0 AND {sql_tail}"
        );
        let raw: Vec<(String, String, i64, bool, String)> = conn
            .prepare_cached(&sql)
            .map_err(db)?
            .query_map(args, |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        raw.into_iter()
            .map(|(t, id, v, p, d)| {
                Ok(Row {
                    table: parse_table(&t)?,
                    id: parse_uuid(&id)?,
                    version: to_u64(v),
                    pending: p,
                    data: json(&d)?,
                })
            })
            .collect()
    }

    /// One visible row (not deleted).
    pub fn get(&self, table: Table, id: Uuid) -> ClientResult<Option<Row>> {
        let id = id.to_string();
        Ok(self
            .rows_where("tbl = ?1 AND id = ?2", &[&table.as_str(), &id])?
            .into_iter()
            .next())
    }

    /// Every visible row of a table, by id.
    pub fn list(&self, table: Table) -> ClientResult<Vec<Row>> {
        self.rows_where("tbl = ?1 ORDER BY id", &[&table.as_str()])
    }

    /// Patients matching every word of `query` (name, phone digits or date
    /// of birth, by prefix), best matches first.
    pub fn search_patients(&self, query: &str, limit: usize) -> ClientResult<Vec<Row>> {
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
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let fts = terms.join(" AND ");
        let limit = i64::try_from(limit).unwrap_or(100);
        self.rows_where(
            "tbl = 'patients' AND id IN (SELECT id FROM patient_search WHERE patient_search MATCH ?1 ORDER BY rank LIMIT ?2)
             ORDER BY json_extract(data, '$.last_name'), json_extract(data, '$.first_name')",
            &[&fts, &limit],
        )
    }

    /// Appointments starting on `date` (UTC), for one doctor or all, by start.
    pub fn day_schedule(
        &self,
        date: chrono::NaiveDate,
        doctor: Option<Uuid>,
    ) -> ClientResult<Vec<Row>> {
        let from = format!("{date}T00:00:00Z");
        let to = format!("{}T00:00:00Z", date.succ_opt().unwrap_or(date));
        match doctor {
            Some(d) => {
                let d = d.to_string();
                self.rows_where(
                    "tbl = 'appointments' AND json_extract(data, '$.doctor_id') = ?1
                     AND json_extract(data, '$.start') >= ?2 AND json_extract(data, '$.start') < ?3
                     ORDER BY json_extract(data, '$.start')",
                    &[&d, &from, &to],
                )
            }
            None => self.rows_where(
                "tbl = 'appointments' AND json_extract(data, '$.start') >= ?1 AND json_extract(data, '$.start') < ?2
                 ORDER BY json_extract(data, '$.start'), json_extract(data, '$.doctor_id')",
                &[&from, &to],
            ),
        }
    }

    /// A patient's chart: appointments, treatment records, invoices and
    /// referrals the user may see, each newest first.
    pub fn patient_chart(&self, patient: Uuid) -> ClientResult<Option<Chart>> {
        let Some(patient_row) = self.get(Table::Patients, patient)? else {
            return Ok(None);
        };
        let id = patient.to_string();
        let of = |table: &str, order: &str| {
            self.rows_where(
                &format!("tbl = '{table}' AND json_extract(data, '$.patient_id') = ?1 ORDER BY json_extract(data, '$.{order}') DESC"),
                &[&id],
            )
        };
        Ok(Some(Chart {
            patient: patient_row,
            appointments: of("appointments", "start")?,
            treatment_records: of("treatment_records", "recorded_at")?,
            invoices: of("invoices", "issued_at")?,
            referrals: of("referrals", "created_at")?,
        }))
    }

    /// Inventory items at or below their reorder level.
    pub fn low_stock(&self) -> ClientResult<Vec<Row>> {
        self.rows_where(
            "tbl = 'inventory_items' AND json_extract(data, '$.quantity') <= json_extract(data, '$.reorder_level')
             ORDER BY json_extract(data, '$.name')",
            &[],
        )
    }

    /// Number of visible rows per table.
    pub fn counts(&self) -> ClientResult<Vec<(Table, u64)>> {
        let conn = self.lock()?;
        let raw: Vec<(String, i64)> = conn
            .prepare_cached(
                "SELECT tbl, COUNT(*) FROM visible WHERE deleted = 0 GROUP BY tbl ORDER BY tbl",
            )
            .map_err(db)?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        raw.into_iter()
            .map(|(t, n)| Ok((parse_table(&t)?, to_u64(n))))
            .collect()
    }

    /// Confirmed and visible rows, for consistency checks: `(table, id,
    /// version, deleted, data)` sorted.
    pub fn dump(&self, visible: bool) -> ClientResult<Vec<DumpRow>> {
        let conn = self.lock()?;
        let sql = if visible {
            "SELECT tbl, id, version, deleted, data FROM visible ORDER BY tbl, id"
        } else {
            "SELECT tbl, id, version, deleted, data FROM confirmed ORDER BY tbl, id"
        };
        let raw: Vec<(String, String, i64, bool, Option<String>)> = conn
            .prepare(sql)
            .map_err(db)?
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        raw.into_iter()
            .map(|(t, id, v, d, data)| {
                let data = data
                    .map(|s| json::<Value>(&s))
                    .transpose()?
                    .filter(|v| !v.is_null());
                Ok((parse_table(&t)?, parse_uuid(&id)?, to_u64(v), d, data))
            })
            .collect()
    }

    /// `PRAGMA integrity_check` of the local database.
    pub fn integrity_check(&self) -> ClientResult<()> {
        let r: String = self
            .lock()?
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(db)?;
        if r == "ok" {
            Ok(())
        } else {
            Err(ClientError::Corrupt(r))
        }
    }

    /// The role of the signed-in user.
    pub fn role(&self) -> ClientResult<Option<Role>> {
        Ok(stored_actor(&*self.lock()?)?.map(|a| a.role))
    }

    /// The ids of the rows a set of tables holds, for tests and tools.
    pub fn ids(&self, table: Table) -> ClientResult<HashSet<Uuid>> {
        Ok(self.list(table)?.into_iter().map(|r| r.id).collect())
    }
}

/// One row of [`Store::dump`]: table, id, version, deleted, data.
pub type DumpRow = (Table, Uuid, u64, bool, Option<Value>);

/// A patient's chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct Chart {
    /// The patient.
    pub patient: Row,
    /// Appointments, newest first.
    pub appointments: Vec<Row>,
    /// Treatment records (doctors and admins only), newest first.
    pub treatment_records: Vec<Row>,
    /// Invoices (reception and admins only), newest first.
    pub invoices: Vec<Row>,
    /// Referrals, newest first.
    pub referrals: Vec<Row>,
}
