//! The SQLite backend: one database file in WAL mode, one writer connection
//! (every write transaction is `BEGIN IMMEDIATE`) and a small pool of reader
//! connections, so reads never wait for writes.
//!
//! Rows are stored as JSON in one `rows` table keyed by `(tbl, id)`, with
//! expression indexes for the queries the clinic rules need (a doctor's
//! appointments by time, staff by username). The `changes` table is both the
//! change sequence and the audit trail.

use super::transfer::{Chunk, StoredRow};
use super::{
    Change, ChangesPage, ClientRecord, LoggedChange, Session, Storage, StorageError, StorageResult,
    WriteTx, WriteWork,
};
use clinic_shared::apply::{Action, CurrentRow};
use clinic_shared::model::{Staff, SyncRow, Table, Timestamp};
use clinic_shared::protocol::{HistoryEntry, MutationOutcome};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use uuid::Uuid;

/// Versioned schema migrations, applied in order; a migration never changes
/// once released.
const MIGRATIONS: &[&str] = &[
    // 1: rows, change log / audit, credentials, sessions, clients, results.
    r#"
    CREATE TABLE rows (
        tbl TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        data TEXT NOT NULL,
        PRIMARY KEY (tbl, id)
    ) WITHOUT ROWID;
    CREATE INDEX rows_by_version ON rows (version);
    CREATE INDEX appointments_by_doctor ON rows (json_extract(data, '$.doctor_id'), json_extract(data, '$.start'))
        WHERE tbl = 'appointments';
    CREATE UNIQUE INDEX staff_by_username ON rows (json_extract(data, '$.username'))
        WHERE tbl = 'staff';
    CREATE TABLE changes (
        seq INTEGER PRIMARY KEY,
        tbl TEXT NOT NULL,
        row_id TEXT NOT NULL,
        action TEXT NOT NULL,
        actor_id TEXT,
        client_id TEXT,
        mutation_id INTEGER,
        mutation TEXT NOT NULL,
        at TEXT NOT NULL,
        before TEXT,
        after TEXT NOT NULL
    );
    CREATE INDEX changes_by_row ON changes (tbl, row_id, seq);
    CREATE TABLE credentials (
        user_id TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        expires_at TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_by_user ON sessions (user_id);
    CREATE TABLE clients (
        client_id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        last_mutation_id INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE mutation_results (
        client_id TEXT NOT NULL,
        mutation_id INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        PRIMARY KEY (client_id, mutation_id)
    ) WITHOUT ROWID;
    "#,
];

/// Connections kept open for reads.
const READER_POOL: usize = 4;

/// SQLite storage in one file.
pub struct SqliteStorage {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

fn db_err(e: rusqlite::Error) -> StorageError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked) => {
            StorageError::Busy(e.to_string())
        }
        Some(rusqlite::ErrorCode::DatabaseCorrupt) | Some(rusqlite::ErrorCode::NotADatabase) => {
            StorageError::Corrupt(e.to_string())
        }
        _ => StorageError::Database(e.to_string()),
    }
}

fn corrupt(what: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(what.to_string())
}

fn parse_uuid(s: &str) -> StorageResult<Uuid> {
    Uuid::parse_str(s).map_err(|e| corrupt(format!("bad uuid `{s}`: {e}")))
}

fn parse_table(s: &str) -> StorageResult<Table> {
    s.parse().map_err(corrupt)
}

fn parse_json(s: &str) -> StorageResult<serde_json::Value> {
    serde_json::from_str(s).map_err(|e| corrupt(format!("bad JSON in row: {e}")))
}

fn parse_time(s: &str) -> StorageResult<Timestamp> {
    s.parse()
        .map_err(|e| corrupt(format!("bad timestamp `{s}`: {e}")))
}

fn parse_action(s: &str) -> StorageResult<Action> {
    match s {
        "create" => Ok(Action::Create),
        "update" => Ok(Action::Update),
        "delete" => Ok(Action::Delete),
        other => Err(corrupt(format!("bad action `{other}`"))),
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn open_connection(path: &Path) -> StorageResult<Connection> {
    let conn = Connection::open(path).map_err(db_err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(db_err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db_err)?;
    // FULL: a commit the server acknowledged survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db_err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(db_err)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> StorageResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
    )
    .map_err(db_err)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let current: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if current > known {
        return Err(StorageError::Database(format!(
            "database schema version {current} is newer than this server ({known}); upgrade the server"
        )));
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        tx.execute_batch(sql).map_err(db_err)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![
                i64::try_from(i + 1).unwrap_or(i64::MAX),
                Timestamp::from_datetime(chrono::Utc::now()).to_string()
            ],
        )
        .map_err(db_err)?;
    }
    tx.commit().map_err(db_err)
}

impl SqliteStorage {
    /// Opens (creating if needed) the database at `path` and brings its
    /// schema up to date.
    pub fn open(path: impl AsRef<Path>) -> StorageResult<Self> {
        let path = path.as_ref().to_path_buf();
        let mut writer = open_connection(&path)?;
        migrate(&mut writer)?;
        let check: String = writer
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(db_err)?;
        if check != "ok" {
            return Err(StorageError::Corrupt(format!("quick_check: {check}")));
        }
        Ok(SqliteStorage {
            path,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a reader connection from the pool.
    fn read<T>(&self, f: impl FnOnce(&mut Connection) -> StorageResult<T>) -> StorageResult<T> {
        let pooled = self
            .readers
            .lock()
            .map_err(|_| corrupt("reader pool poisoned"))?
            .pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => open_connection(&self.path)?,
        };
        let result = f(&mut conn);
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < READER_POOL
        {
            pool.push(conn);
        }
        result
    }

    /// Reads everything, from one snapshot, handing `sink` at most `chunk`
    /// items at a time: for copying a clinic to another backend
    /// ([`super::transfer`]).
    pub fn export(
        &self,
        chunk: usize,
        sink: &mut dyn FnMut(Chunk) -> StorageResult<()>,
    ) -> StorageResult<()> {
        let chunk = chunk.max(1);
        self.read(|c| {
            let tx = c.transaction().map_err(db_err)?;
            stream(
                &tx,
                "SELECT tbl, id, version, deleted, data FROM rows ORDER BY tbl, id",
                chunk,
                sink,
                Chunk::Rows,
                |r| {
                    Ok(StoredRow {
                        table: parse_table(&r.get::<_, String>(0).map_err(db_err)?)?,
                        id: parse_uuid(&r.get::<_, String>(1).map_err(db_err)?)?,
                        version: to_u64(r.get(2).map_err(db_err)?),
                        deleted: r.get(3).map_err(db_err)?,
                        data: r.get(4).map_err(db_err)?,
                    })
                },
            )?;
            stream(
                &tx,
                "SELECT seq, tbl, row_id, action, actor_id, client_id, mutation_id, mutation, at, before, after
                 FROM changes ORDER BY seq",
                chunk,
                sink,
                Chunk::Changes,
                |r| change_from_columns(change_columns(r).map_err(db_err)?),
            )?;
            stream(
                &tx,
                "SELECT user_id, password_hash FROM credentials ORDER BY user_id",
                chunk,
                sink,
                Chunk::Credentials,
                |r| {
                    Ok((
                        parse_uuid(&r.get::<_, String>(0).map_err(db_err)?)?,
                        r.get(1).map_err(db_err)?,
                    ))
                },
            )?;
            stream(
                &tx,
                "SELECT token_hash, user_id, expires_at FROM sessions ORDER BY token_hash",
                chunk,
                sink,
                Chunk::Sessions,
                |r| {
                    Ok((
                        r.get(0).map_err(db_err)?,
                        Session {
                            user_id: parse_uuid(&r.get::<_, String>(1).map_err(db_err)?)?,
                            expires_at: parse_time(&r.get::<_, String>(2).map_err(db_err)?)?,
                        },
                    ))
                },
            )?;
            stream(
                &tx,
                "SELECT client_id, user_id, last_mutation_id FROM clients ORDER BY client_id",
                chunk,
                sink,
                Chunk::Clients,
                |r| {
                    Ok((
                        parse_uuid(&r.get::<_, String>(0).map_err(db_err)?)?,
                        ClientRecord {
                            user_id: parse_uuid(&r.get::<_, String>(1).map_err(db_err)?)?,
                            last_mutation_id: to_u64(r.get(2).map_err(db_err)?),
                        },
                    ))
                },
            )?;
            stream(
                &tx,
                "SELECT client_id, mutation_id, outcome FROM mutation_results ORDER BY client_id, mutation_id",
                chunk,
                sink,
                Chunk::Results,
                |r| {
                    Ok((
                        parse_uuid(&r.get::<_, String>(0).map_err(db_err)?)?,
                        to_u64(r.get(1).map_err(db_err)?),
                        r.get(2).map_err(db_err)?,
                    ))
                },
            )?;
            Ok(())
        })
    }

    /// Runs `PRAGMA integrity_check`; `Ok(())` when the file is sound.
    pub fn integrity_check(&self) -> StorageResult<()> {
        self.read(|c| {
            let r: String = c
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .map_err(db_err)?;
            if r == "ok" {
                Ok(())
            } else {
                Err(StorageError::Corrupt(r))
            }
        })
    }
}

/// Runs `sql` and hands its rows to `sink` in chunks of `chunk`.
fn stream<T>(
    conn: &Connection,
    sql: &str,
    chunk: usize,
    sink: &mut dyn FnMut(Chunk) -> StorageResult<()>,
    wrap: fn(Vec<T>) -> Chunk,
    map: impl Fn(&rusqlite::Row<'_>) -> StorageResult<T>,
) -> StorageResult<()> {
    let mut stmt = conn.prepare(sql).map_err(db_err)?;
    let mut rows = stmt.query([]).map_err(db_err)?;
    let mut buf = Vec::with_capacity(chunk);
    while let Some(row) = rows.next().map_err(db_err)? {
        buf.push(map(row)?);
        if buf.len() == chunk {
            sink(wrap(std::mem::replace(&mut buf, Vec::with_capacity(chunk))))?;
        }
    }
    if !buf.is_empty() {
        sink(wrap(buf))?;
    }
    Ok(())
}

/// A write transaction on the writer connection.
struct SqliteTx<'c> {
    tx: rusqlite::Transaction<'c>,
}

fn current_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, bool, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

impl WriteTx for SqliteTx<'_> {
    fn head(&mut self) -> StorageResult<u64> {
        let head: i64 = self
            .tx
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| {
                r.get(0)
            })
            .map_err(db_err)?;
        Ok(to_u64(head))
    }

    fn row(&mut self, table: Table, id: Uuid) -> StorageResult<Option<CurrentRow>> {
        let row = self
            .tx
            .prepare_cached("SELECT version, deleted, data FROM rows WHERE tbl = ?1 AND id = ?2")
            .map_err(db_err)?
            .query_row(params![table.as_str(), id.to_string()], current_row)
            .optional()
            .map_err(db_err)?;
        row.map(|(version, deleted, data)| {
            Ok(CurrentRow {
                version: to_u64(version),
                deleted,
                data: parse_json(&data)?,
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
    ) -> StorageResult<Vec<Uuid>> {
        // Appointments are at most 12 hours long (validation), so only those
        // starting in [start - 12h, end) can overlap; the index covers that.
        let earliest = Timestamp::from_unix(start.unix() - 12 * 3600).unwrap_or(start);
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT id FROM rows
                 WHERE tbl = 'appointments' AND deleted = 0
                   AND json_extract(data, '$.doctor_id') = ?1
                   AND json_extract(data, '$.start') >= ?2
                   AND json_extract(data, '$.start') < ?3
                   AND json_extract(data, '$.end') > ?4
                   AND json_extract(data, '$.status') NOT IN ('cancelled', 'no_show')
                   AND id <> ?5",
            )
            .map_err(db_err)?;
        let ids = stmt
            .query_map(
                params![
                    doctor_id.to_string(),
                    earliest.to_string(),
                    end.to_string(),
                    start.to_string(),
                    exclude.to_string()
                ],
                |r| r.get::<_, String>(0),
            )
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err)?;
        ids.iter().map(|s| parse_uuid(s)).collect()
    }

    fn staff_id_by_username(&mut self, username: &str) -> StorageResult<Option<Uuid>> {
        let id: Option<String> = self
            .tx
            .prepare_cached(
                "SELECT id FROM rows WHERE tbl = 'staff' AND json_extract(data, '$.username') = ?1",
            )
            .map_err(db_err)?
            .query_row([username], |r| r.get(0))
            .optional()
            .map_err(db_err)?;
        id.map(|s| parse_uuid(&s)).transpose()
    }

    fn put(&mut self, c: &Change) -> StorageResult<()> {
        let after = c.after.to_string();
        self.tx
            .prepare_cached(
                "INSERT INTO rows (tbl, id, version, deleted, data) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tbl, id) DO UPDATE SET version = excluded.version,
                     deleted = excluded.deleted, data = excluded.data",
            )
            .map_err(db_err)?
            .execute(params![
                c.table.as_str(),
                c.id.to_string(),
                to_i64(c.seq),
                c.action == Action::Delete,
                after
            ])
            .map_err(db_err)?;
        self.tx
            .prepare_cached(
                "INSERT INTO changes (seq, tbl, row_id, action, actor_id, client_id, mutation_id, mutation, at, before, after)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .map_err(db_err)?
            .execute(params![
                to_i64(c.seq),
                c.table.as_str(),
                c.id.to_string(),
                c.action.as_str(),
                c.actor_id.map(|u| u.to_string()),
                c.client_id.map(|u| u.to_string()),
                c.mutation_id.map(to_i64),
                c.mutation,
                c.at.to_string(),
                c.before.as_ref().map(|b| b.to_string()),
                after
            ])
            .map_err(db_err)?;
        Ok(())
    }

    fn changes_to_row_since(
        &mut self,
        table: Table,
        id: Uuid,
        after: u64,
    ) -> StorageResult<Vec<LoggedChange>> {
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT seq, client_id, before, after FROM changes
                 WHERE tbl = ?1 AND row_id = ?2 AND seq > ?3 ORDER BY seq",
            )
            .map_err(db_err)?;
        let raw = stmt
            .query_map(
                params![table.as_str(), id.to_string(), to_i64(after)],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                },
            )
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err)?;
        raw.into_iter()
            .map(|(seq, client, before, after)| {
                Ok(LoggedChange {
                    seq: to_u64(seq),
                    client_id: client.as_deref().map(parse_uuid).transpose()?,
                    before: before.as_deref().map(parse_json).transpose()?,
                    after: parse_json(&after)?,
                })
            })
            .collect()
    }

    fn client(&mut self, client_id: Uuid) -> StorageResult<Option<ClientRecord>> {
        client_record(&self.tx, client_id)
    }

    fn set_client(&mut self, client_id: Uuid, record: ClientRecord) -> StorageResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO clients (client_id, user_id, last_mutation_id) VALUES (?1, ?2, ?3)
                 ON CONFLICT (client_id) DO UPDATE SET last_mutation_id = excluded.last_mutation_id",
            )
            .map_err(db_err)?
            .execute(params![
                client_id.to_string(),
                record.user_id.to_string(),
                to_i64(record.last_mutation_id)
            ])
            .map_err(db_err)?;
        Ok(())
    }

    fn stored_outcome(
        &mut self,
        client_id: Uuid,
        mutation_id: u64,
    ) -> StorageResult<Option<MutationOutcome>> {
        let raw: Option<String> = self
            .tx
            .prepare_cached(
                "SELECT outcome FROM mutation_results WHERE client_id = ?1 AND mutation_id = ?2",
            )
            .map_err(db_err)?
            .query_row(params![client_id.to_string(), to_i64(mutation_id)], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db_err)?;
        raw.map(|s| serde_json::from_str(&s).map_err(|e| corrupt(format!("stored outcome: {e}"))))
            .transpose()
    }

    fn store_outcome(
        &mut self,
        client_id: Uuid,
        mutation_id: u64,
        outcome: &MutationOutcome,
    ) -> StorageResult<()> {
        let json =
            serde_json::to_string(outcome).map_err(|e| StorageError::Database(e.to_string()))?;
        self.tx
            .prepare_cached(
                "INSERT INTO mutation_results (client_id, mutation_id, outcome) VALUES (?1, ?2, ?3)",
            )
            .map_err(db_err)?
            .execute(params![client_id.to_string(), to_i64(mutation_id), json])
            .map_err(db_err)?;
        Ok(())
    }

    fn set_password_hash(&mut self, user_id: Uuid, hash: &str) -> StorageResult<()> {
        self.tx
            .execute(
                "INSERT INTO credentials (user_id, password_hash) VALUES (?1, ?2)
                 ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash",
                params![user_id.to_string(), hash],
            )
            .map_err(db_err)?;
        Ok(())
    }

    fn delete_sessions_of(&mut self, user_id: Uuid) -> StorageResult<()> {
        self.tx
            .execute(
                "DELETE FROM sessions WHERE user_id = ?1",
                [user_id.to_string()],
            )
            .map_err(db_err)?;
        Ok(())
    }

    fn savepoint(&mut self) -> StorageResult<()> {
        self.tx.execute_batch("SAVEPOINT mutation").map_err(db_err)
    }

    fn rollback_to_savepoint(&mut self) -> StorageResult<()> {
        self.tx
            .execute_batch("ROLLBACK TO mutation; RELEASE mutation")
            .map_err(db_err)
    }

    fn release_savepoint(&mut self) -> StorageResult<()> {
        self.tx.execute_batch("RELEASE mutation").map_err(db_err)
    }
}

fn client_record(conn: &Connection, client_id: Uuid) -> StorageResult<Option<ClientRecord>> {
    let raw: Option<(String, i64)> = conn
        .prepare_cached("SELECT user_id, last_mutation_id FROM clients WHERE client_id = ?1")
        .map_err(db_err)?
        .query_row([client_id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(db_err)?;
    raw.map(|(user, last)| {
        Ok(ClientRecord {
            user_id: parse_uuid(&user)?,
            last_mutation_id: to_u64(last),
        })
    })
    .transpose()
}

fn sync_row(
    table: &str,
    id: &str,
    version: i64,
    deleted: bool,
    data: &str,
) -> StorageResult<SyncRow> {
    Ok(SyncRow {
        table: parse_table(table)?,
        id: parse_uuid(id)?,
        version: to_u64(version),
        deleted,
        data: if deleted {
            None
        } else {
            Some(parse_json(data)?)
        },
    })
}

fn staff_from_json(data: &str) -> StorageResult<Staff> {
    serde_json::from_str(data).map_err(|e| corrupt(format!("staff row: {e}")))
}

impl Storage for SqliteStorage {
    fn write(&self, work: &mut WriteWork<'_>) -> StorageResult<()> {
        let mut conn = self
            .writer
            .lock()
            .map_err(|_| corrupt("writer connection poisoned"))?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let mut stx = SqliteTx { tx };
        work(&mut stx)?;
        stx.tx.commit().map_err(db_err)
    }

    fn head(&self) -> StorageResult<u64> {
        self.read(|c| {
            let head: i64 = c
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| {
                    r.get(0)
                })
                .map_err(db_err)?;
            Ok(to_u64(head))
        })
    }

    fn changes_page(
        &self,
        tables: &[Table],
        after: u64,
        limit: usize,
        client: Option<Uuid>,
    ) -> StorageResult<ChangesPage> {
        self.read(|c| {
            // One read transaction: head, rows and acknowledgement agree.
            let tx = c.transaction().map_err(db_err)?;
            let head: i64 = tx
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| {
                    r.get(0)
                })
                .map_err(db_err)?;
            let head = to_u64(head);
            let names: Vec<String> = tables.iter().map(|t| format!("'{}'", t.as_str())).collect();
            let sql = format!(
                "SELECT tbl, id, version, deleted, data FROM rows
                 WHERE version > ?1 AND version <= ?2 AND tbl IN ({})
                 ORDER BY version LIMIT ?3",
                if names.is_empty() {
                    "''".to_owned()
                } else {
                    names.join(",")
                }
            );
            let limit_plus_one = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
            let raw = tx
                .prepare_cached(&sql)
                .map_err(db_err)?
                .query_map(params![to_i64(after), to_i64(head), limit_plus_one], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, bool>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            let more = raw.len() > limit;
            let rows = raw
                .iter()
                .take(limit)
                .map(|(t, id, v, d, data)| sync_row(t, id, *v, *d, data))
                .collect::<StorageResult<Vec<_>>>()?;
            let cursor = if more {
                rows.last().map_or(after, |r| r.version)
            } else {
                head.max(after)
            };
            let last_mutation_id = match (more, client) {
                (false, Some(id)) => client_record(&tx, id)?.map(|r| r.last_mutation_id),
                _ => None,
            };
            Ok(ChangesPage {
                rows,
                cursor,
                more,
                last_mutation_id,
            })
        })
    }

    fn committed_between(&self, after: u64, upto: u64) -> StorageResult<Vec<Change>> {
        self.read(|c| {
            let raw = c
                .prepare_cached(
                    "SELECT seq, tbl, row_id, action, actor_id, client_id, mutation_id, mutation, at, before, after
                     FROM changes WHERE seq > ?1 AND seq <= ?2 ORDER BY seq",
                )
                .map_err(db_err)?
                .query_map(params![to_i64(after), to_i64(upto)], change_columns)
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            raw.into_iter().map(change_from_columns).collect()
        })
    }

    fn history(&self, table: Table, id: Uuid) -> StorageResult<Vec<HistoryEntry>> {
        self.read(|c| {
            let raw = c
                .prepare_cached(
                    "SELECT seq, tbl, row_id, action, actor_id, client_id, mutation_id, mutation, at, before, after
                     FROM changes WHERE tbl = ?1 AND row_id = ?2 ORDER BY seq",
                )
                .map_err(db_err)?
                .query_map(params![table.as_str(), id.to_string()], change_columns)
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            let mut entries = Vec::with_capacity(raw.len());
            for cols in raw {
                let change = change_from_columns(cols)?;
                let actor_name = match change.actor_id {
                    Some(actor) => c
                        .prepare_cached("SELECT json_extract(data, '$.display_name') FROM rows WHERE tbl = 'staff' AND id = ?1")
                        .map_err(db_err)?
                        .query_row([actor.to_string()], |r| r.get::<_, Option<String>>(0))
                        .optional()
                        .map_err(db_err)?
                        .flatten(),
                    None => None,
                };
                let deleted = change.action == Action::Delete;
                entries.push(HistoryEntry {
                    seq: change.seq,
                    at: change.at,
                    action: change.action.as_str().to_owned(),
                    actor_id: change.actor_id,
                    actor_name,
                    client_id: change.client_id,
                    mutation_id: change.mutation_id,
                    mutation: change.mutation,
                    before: change.before,
                    after: if deleted { None } else { Some(change.after) },
                });
            }
            Ok(entries)
        })
    }

    fn staff_by_username(&self, username: &str) -> StorageResult<Option<(Staff, Option<String>)>> {
        self.read(|c| {
            let raw: Option<(String, Option<String>)> = c
                .prepare_cached(
                    "SELECT r.data, cr.password_hash FROM rows r
                     LEFT JOIN credentials cr ON cr.user_id = r.id
                     WHERE r.tbl = 'staff' AND r.deleted = 0 AND json_extract(r.data, '$.username') = ?1",
                )
                .map_err(db_err)?
                .query_row([username], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(db_err)?;
            raw.map(|(data, hash)| Ok((staff_from_json(&data)?, hash))).transpose()
        })
    }

    fn staff(&self, id: Uuid) -> StorageResult<Option<Staff>> {
        self.read(|c| {
            let raw: Option<String> = c
                .prepare_cached(
                    "SELECT data FROM rows WHERE tbl = 'staff' AND id = ?1 AND deleted = 0",
                )
                .map_err(db_err)?
                .query_row([id.to_string()], |r| r.get(0))
                .optional()
                .map_err(db_err)?;
            raw.map(|d| staff_from_json(&d)).transpose()
        })
    }

    fn client(&self, client_id: Uuid) -> StorageResult<Option<ClientRecord>> {
        self.read(|c| client_record(c, client_id))
    }

    fn create_session(&self, token_hash: &str, session: &Session) -> StorageResult<()> {
        let conn = self
            .writer
            .lock()
            .map_err(|_| corrupt("writer connection poisoned"))?;
        conn.execute(
            "INSERT INTO sessions (token_hash, user_id, expires_at) VALUES (?1, ?2, ?3)",
            params![
                token_hash,
                session.user_id.to_string(),
                session.expires_at.to_string()
            ],
        )
        .map_err(db_err)?;
        Ok(())
    }

    fn session(&self, token_hash: &str) -> StorageResult<Option<Session>> {
        self.read(|c| {
            let raw: Option<(String, String)> = c
                .prepare_cached("SELECT user_id, expires_at FROM sessions WHERE token_hash = ?1")
                .map_err(db_err)?
                .query_row([token_hash], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(db_err)?;
            raw.map(|(u, e)| {
                Ok(Session {
                    user_id: parse_uuid(&u)?,
                    expires_at: parse_time(&e)?,
                })
            })
            .transpose()
        })
    }

    fn delete_session(&self, token_hash: &str) -> StorageResult<()> {
        let conn = self
            .writer
            .lock()
            .map_err(|_| corrupt("writer connection poisoned"))?;
        conn.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash])
            .map_err(db_err)?;
        Ok(())
    }

    fn purge_expired_sessions(&self, now: Timestamp) -> StorageResult<usize> {
        let conn = self
            .writer
            .lock()
            .map_err(|_| corrupt("writer connection poisoned"))?;
        conn.execute(
            "DELETE FROM sessions WHERE expires_at <= ?1",
            [now.to_string()],
        )
        .map_err(db_err)
    }

    fn existing_sessions(&self, token_hashes: &[String]) -> StorageResult<Vec<String>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT 1 FROM sessions WHERE token_hash = ?1")
                .map_err(db_err)?;
            let mut found = Vec::new();
            for hash in token_hashes {
                if stmt.exists([hash]).map_err(db_err)? {
                    found.push(hash.clone());
                }
            }
            Ok(found)
        })
    }
}

type ChangeColumns = (
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    String,
    String,
    Option<String>,
    String,
);

fn change_columns(r: &rusqlite::Row<'_>) -> rusqlite::Result<ChangeColumns> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
    ))
}

fn change_from_columns(c: ChangeColumns) -> StorageResult<Change> {
    let (seq, tbl, row_id, action, actor, client, mutation_id, mutation, at, before, after) = c;
    Ok(Change {
        seq: to_u64(seq),
        table: parse_table(&tbl)?,
        id: parse_uuid(&row_id)?,
        action: parse_action(&action)?,
        before: before.as_deref().map(parse_json).transpose()?,
        after: parse_json(&after)?,
        actor_id: actor.as_deref().map(parse_uuid).transpose()?,
        client_id: client.as_deref().map(parse_uuid).transpose()?,
        mutation_id: mutation_id.map(to_u64),
        mutation,
        at: parse_time(&at)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_storage_meets_the_storage_contract() {
        let dir = tempfile::tempdir().unwrap();
        let counter = std::sync::atomic::AtomicUsize::new(0);
        let fresh = || -> Box<dyn Storage> {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::new(SqliteStorage::open(dir.path().join(format!("c{n}.db"))).unwrap())
        };
        if let Err(failed) = crate::storage::conformance::run_all(&fresh) {
            panic!("{}", failed.0);
        }
    }

    #[test]
    fn sqlite_handles_on_one_file_meet_the_shared_contract() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.db");
        let open = || -> Box<dyn Storage> { Box::new(SqliteStorage::open(&path).unwrap()) };
        if let Err(failed) = crate::storage::conformance::run_shared(&open) {
            panic!("{}", failed.0);
        }
    }

    #[test]
    fn reopening_keeps_data_and_refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        {
            let s = SqliteStorage::open(&path).unwrap();
            s.create_session(
                "h",
                &Session {
                    user_id: Uuid::nil(),
                    expires_at: "2100-01-01T00:00:00Z".parse().unwrap(),
                },
            )
            .unwrap();
        }
        let s = SqliteStorage::open(&path).unwrap();
        assert!(s.session("h").unwrap().is_some());
        s.integrity_check().unwrap();
        drop(s);
        let c = Connection::open(&path).unwrap();
        c.execute("INSERT INTO schema_migrations VALUES (99, 'x')", [])
            .unwrap();
        drop(c);
        let err = SqliteStorage::open(&path).err().unwrap();
        assert!(err.to_string().contains("newer than this server"));
    }

    #[test]
    fn a_file_that_is_not_a_database_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.db");
        std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
        assert!(SqliteStorage::open(&path).is_err());
    }
}
