//! The SQLite backend: one database file in WAL mode, one writer connection
//! (every write transaction is `BEGIN IMMEDIATE`) and a small pool of reader
//! connections, so reads never wait for writes.
//!
//! Rows are stored as JSON in one `rows` table keyed by `(tbl, id)`, with
//! expression indexes for the queries the clinic rules need (a doctor's
//! appointments by time, staff by username). The `changes` table is both the
//! change sequence and the audit trail.
//!
//! Access control lives in `account_security` (epoch, forced password
//! change), `security_events` (polled by every server process),
//! `sign_in_throttle` and `sign_in_events`; reads of clinical content in
//! `access_log`. `changes` and `access_log` carry a hash chain
//! ([`super::chain`]); triggers refuse UPDATE and DELETE on them and on
//! `sign_in_events`.

use super::transfer::{Chunk, StoredRow};
use super::{
    AccessRecord, AccountSecurity, ChainLink, Change, ChangesPage, ClientRecord, LoggedChange,
    NewAccess, NewSignInEvent, SecurityEvent, SecurityKind, Session, SessionAccount, Storage,
    StorageError, StorageResult, StoredOutcome, Throttle, WriteTx, WriteWork, chain,
};
use clinic_shared::apply::{Action, CurrentRow, SlotCandidate};
use clinic_shared::model::{Staff, SyncRow, Table, Timestamp};
use clinic_shared::protocol::{
    AccessLogEntry, HistoryEntry, MutationOutcome, SignInEvent, SignInKind, SignInOutcome,
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// One schema migration: SQL, or Rust code for what SQL cannot do (SQLite
/// has no SHA-256).
enum Migration {
    Sql(&'static str),
    Code(fn(&rusqlite::Transaction<'_>) -> StorageResult<()>),
}

/// Versioned schema migrations, applied in order in one transaction; a
/// migration never changes once released.
const MIGRATIONS: &[Migration] = &[
    // 1: rows, change log / audit, credentials, sessions, clients, results.
    Migration::Sql(
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
    ),
    // 2: access control: account epochs, security events, sign-in
    // throttling and log, the access log; the change log's hash column.
    Migration::Sql(
        r#"
    CREATE TABLE account_security (
        user_id TEXT PRIMARY KEY,
        epoch INTEGER NOT NULL DEFAULT 0,
        must_change_password INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE TABLE security_events (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        user_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        token_hash TEXT,
        epoch INTEGER NOT NULL
    );
    CREATE TABLE sign_in_throttle (
        key TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        last_failure_ms INTEGER NOT NULL,
        locked_until_ms INTEGER NOT NULL,
        lock_reported INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE sign_in_events (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        outcome TEXT NOT NULL,
        username TEXT NOT NULL,
        user_id TEXT,
        address TEXT,
        client_id TEXT,
        user_agent TEXT
    );
    CREATE TABLE access_log (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        user_id TEXT NOT NULL,
        client_id TEXT,
        kind TEXT NOT NULL,
        patient_id TEXT,
        tbl TEXT NOT NULL,
        row_ids TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX access_by_patient ON access_log (patient_id, seq);
    ALTER TABLE changes ADD COLUMN hash TEXT;
    "#,
    ),
    // 3: the hash chain over the change log's existing entries.
    Migration::Code(backfill_change_hashes),
    // 4: the logs are append-only.
    Migration::Sql(
        r#"
    CREATE TRIGGER changes_no_update BEFORE UPDATE ON changes
        BEGIN SELECT RAISE(ABORT, 'the change log is append-only'); END;
    CREATE TRIGGER changes_no_delete BEFORE DELETE ON changes
        BEGIN SELECT RAISE(ABORT, 'the change log is append-only'); END;
    CREATE TRIGGER access_log_no_update BEFORE UPDATE ON access_log
        BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
    CREATE TRIGGER access_log_no_delete BEFORE DELETE ON access_log
        BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
    CREATE TRIGGER sign_in_events_no_update BEFORE UPDATE ON sign_in_events
        BEGIN SELECT RAISE(ABORT, 'the sign-in log is append-only'); END;
    CREATE TRIGGER sign_in_events_no_delete BEFORE DELETE ON sign_in_events
        BEGIN SELECT RAISE(ABORT, 'the sign-in log is append-only'); END;
    "#,
    ),
    // 5: a patient's appointments by time (a patient cannot be in two
    // places at once; archiving finds the future ones).
    Migration::Sql(
        r#"
    CREATE INDEX appointments_by_patient ON rows (json_extract(data, '$.patient_id'), json_extract(data, '$.start'))
        WHERE tbl = 'appointments';
    "#,
    ),
    // 6: the fingerprint of each processed mutation (a reused id with other
    // contents is refused); results stored before it have none.
    Migration::Sql(
        r#"
    ALTER TABLE mutation_results ADD COLUMN fingerprint TEXT;
    "#,
    ),
    // 7: the server epoch (new on restore) and the clients that have pushed
    // since the last restore.
    Migration::Sql(
        r#"
    CREATE TABLE server_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO server_meta (key, value) VALUES ('epoch', lower(hex(randomblob(16))));
    CREATE TABLE resumed_clients (
        client_id TEXT PRIMARY KEY
    ) WITHOUT ROWID;
    "#,
    ),
    // 8: care (clinic_shared::care): a break of the glass is an access
    // entry with the doctor's reason (chained with it); the grants of a
    // doctor and the records that make a patient theirs are found by index.
    Migration::Sql(
        r#"
    ALTER TABLE access_log ADD COLUMN reason TEXT;
    CREATE INDEX access_glass ON access_log (user_id, at) WHERE kind = 'break_the_glass';
    CREATE INDEX records_by_doctor ON rows (json_extract(data, '$.doctor_id'))
        WHERE tbl = 'treatment_records';
    CREATE INDEX referrals_by_doctor ON rows (json_extract(data, '$.referring_doctor_id'))
        WHERE tbl = 'referrals';
    CREATE INDEX clinical_by_patient ON rows (json_extract(data, '$.patient_id'))
        WHERE tbl IN ('treatment_records', 'referrals');
    "#,
    ),
];

/// Computes the hash chain of change-log entries written before the chain
/// existed, in `seq` order, a page at a time.
fn backfill_change_hashes(tx: &rusqlite::Transaction<'_>) -> StorageResult<()> {
    let mut previous = chain::GENESIS.to_owned();
    let mut after = 0i64;
    loop {
        let page = tx
            .prepare(&format!(
                "SELECT {CHANGE_COLUMNS} FROM changes WHERE seq > ?1 ORDER BY seq LIMIT 1000"
            ))?
            .query_map([after], change_columns)?
            .collect::<Result<Vec<_>, _>>()?;
        if page.is_empty() {
            return Ok(());
        }
        for cols in page {
            let change = change_from_columns(cols)?;
            let hash = chain::change_hash(&previous, &change);
            tx.execute(
                "UPDATE changes SET hash = ?1 WHERE seq = ?2",
                params![hash, to_i64(change.seq)],
            )?;
            after = to_i64(change.seq);
            previous = hash;
        }
    }
}

/// Read connections open at most. A read finding all of them busy waits
/// for one: opening more costs a schema parse each, and a burst of reads
/// (a hundred long-polls woken by one commit) would otherwise open and
/// close a connection per read, spending more on that than on the reads.
const READERS: usize = 6;

/// A session with its account: one statement, so session, staff row and
/// security state agree. Run on every request.
const SESSION_ACCOUNT_SQL: &str =
    "SELECT s.user_id, s.expires_at, r.data, a.epoch, a.must_change_password
     FROM sessions s
     LEFT JOIN rows r ON r.tbl = 'staff' AND r.id = s.user_id AND r.deleted = 0
     LEFT JOIN account_security a ON a.user_id = s.user_id
     WHERE s.token_hash = ?1";

/// SQLite storage in one file.
pub struct SqliteStorage {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Readers>,
    /// Signalled when a read connection is handed back or given up.
    reader_freed: Condvar,
}

/// The read connections: idle ones, and how many exist in all.
struct Readers {
    idle: Vec<Connection>,
    open: usize,
}

/// A read connection lent out; handed back when dropped, also if the read
/// panicked (a connection mid-transaction is closed instead, which rolls
/// the transaction back).
struct ReaderLease<'a> {
    storage: &'a SqliteStorage,
    /// Always `Some` until dropped.
    conn: Option<Connection>,
}

impl Drop for ReaderLease<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take().filter(Connection::is_autocommit) else {
            // Left inside a transaction (a panic): not reusable.
            self.storage.give_up_reader();
            return;
        };
        let mut readers = self
            .storage
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        readers.idle.push(conn);
        drop(readers);
        self.storage.reader_freed.notify_one();
    }
}

/// SQLite's errors, classified: busy and locked are worth a retry, a
/// corrupt file or one that is not a database is reported as corruption.
impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked) => {
                StorageError::Busy(e.to_string())
            }
            Some(rusqlite::ErrorCode::DatabaseCorrupt)
            | Some(rusqlite::ErrorCode::NotADatabase) => StorageError::Corrupt(e.to_string()),
            // A full disk or a failing one: nothing was written, and the
            // same write can succeed once space returns.
            Some(rusqlite::ErrorCode::DiskFull) | Some(rusqlite::ErrorCode::SystemIoFailure) => {
                StorageError::Unavailable(e.to_string())
            }
            _ => StorageError::Database(e.to_string()),
        }
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
    serde_json::from_str(s).map_err(|e| corrupt(format!("bad JSON in row: {}", json_error(&e))))
}

/// A JSON decoding error without the value that failed: serde's message
/// can quote it (`invalid type: string "…"`), and a row's values are
/// patient data that must not reach a log.
fn json_error(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
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
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit the server acknowledged survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // A stable planner: without it a statement whose plan could depend on a
    // bound value (a partial index's condition) is prepared again on every
    // use from the statement cache, which costs more than the query (every
    // partial index here names its table as a literal, so no query loses
    // one).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> StorageResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
    )?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if current > known {
        return Err(StorageError::Database(format!(
            "database schema version {current} is newer than this server ({known}); upgrade the server"
        )));
    }
    for (i, migration) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        match migration {
            Migration::Sql(sql) => tx.execute_batch(sql)?,
            Migration::Code(step) => step(&tx)?,
        }
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![
                i64::try_from(i + 1).unwrap_or(i64::MAX),
                Timestamp::from_datetime(chrono::Utc::now()).to_string()
            ],
        )?;
    }
    Ok(tx.commit()?)
}

/// `FILE.partial`: where a copy is written before it is renamed into place.
fn partial_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    std::path::PathBuf::from(name)
}

/// Checks that `path` is a whole clinic database (integrity check, the
/// change log present); returns its head.
fn check_copy(path: &Path) -> StorageResult<u64> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(StorageError::Corrupt(format!(
            "{} fails its integrity check: {check}",
            path.display()
        )));
    }
    let head: Option<i64> = conn
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|_| {
            StorageError::Corrupt(format!("{} is not a Clinic Sync database", path.display()))
        })?;
    Ok(to_u64(head.unwrap_or(0)))
}

/// What [`restore_from`] did.
#[derive(Debug, Clone)]
pub struct Restored {
    /// Where the database that was replaced now is (kept, not deleted).
    pub previous: Option<std::path::PathBuf>,
    /// The restored database's head.
    pub head: u64,
    /// Its new server epoch.
    pub epoch: String,
}

/// Replaces the database at `db` with the backup `backup` (run with the
/// server stopped): the backup is checked first, the current database and
/// its WAL are moved aside to `<db>.before-restore-<time>` (nothing is
/// deleted), the copy is renamed into place, its schema brought up to date,
/// and it gets a new server epoch, so desks notice and re-sync.
pub fn restore_from(backup: &Path, db: &Path, at: Timestamp) -> StorageResult<Restored> {
    check_copy(backup)?;
    let io = |what: &str, e: std::io::Error| StorageError::Database(format!("{what}: {e}"));
    let partial = partial_path(db);
    std::fs::copy(backup, &partial).map_err(|e| io("copying the backup", e))?;
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(|e| io("copying the backup", e))?;
    let previous = if db.exists() {
        let stamp = at.to_string().replace([':', '-'], "");
        let mut aside = db.as_os_str().to_owned();
        aside.push(format!(".before-restore-{stamp}"));
        let aside = std::path::PathBuf::from(aside);
        for suffix in ["", "-wal", "-shm"] {
            let mut from = db.as_os_str().to_owned();
            from.push(suffix);
            let mut to = aside.as_os_str().to_owned();
            to.push(suffix);
            if Path::new(&from).exists() {
                std::fs::rename(&from, &to)
                    .map_err(|e| io("moving the current database aside", e))?;
            }
        }
        Some(aside)
    } else {
        None
    };
    std::fs::rename(&partial, db).map_err(|e| io("putting the backup in place", e))?;
    let storage = SqliteStorage::open(db)?;
    let epoch = storage.start_new_epoch(at)?;
    let head = storage.head()?;
    Ok(Restored {
        previous,
        head,
        epoch,
    })
}

impl SqliteStorage {
    /// Opens (creating if needed) the database at `path` and brings its
    /// schema up to date.
    pub fn open(path: impl AsRef<Path>) -> StorageResult<Self> {
        let path = path.as_ref().to_path_buf();
        let mut writer = open_connection(&path)?;
        migrate(&mut writer)?;
        let check: String = writer.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(StorageError::Corrupt(format!("quick_check: {check}")));
        }
        Ok(SqliteStorage {
            path,
            writer: Mutex::new(writer),
            readers: Mutex::new(Readers {
                idle: Vec::new(),
                open: 0,
            }),
            reader_freed: Condvar::new(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a consistent copy of the database to `out` while it serves
    /// (`VACUUM INTO` reads one snapshot; writers go on meanwhile), checks
    /// the copy, and returns its head. The copy is written beside `out` and
    /// renamed into place, so `out` is either whole or absent.
    pub fn backup_to(&self, out: &Path) -> StorageResult<u64> {
        if out.exists() {
            return Err(StorageError::Database(format!(
                "{} already exists; choose a new file name",
                out.display()
            )));
        }
        let partial = partial_path(out);
        let _ = std::fs::remove_file(&partial);
        let target = partial.to_string_lossy().into_owned();
        if let Err(e) = self.read(|c| {
            c.execute("VACUUM INTO ?1", [&target])?;
            Ok(())
        }) {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        let head = match check_copy(&partial) {
            Ok(head) => head,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        };
        std::fs::File::open(&partial)
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::rename(&partial, out))
            .map_err(|e| StorageError::Database(format!("writing {}: {e}", out.display())))?;
        Ok(head)
    }

    /// Runs `f` on a reader connection from the pool.
    fn read<T>(&self, f: impl FnOnce(&mut Connection) -> StorageResult<T>) -> StorageResult<T> {
        let mut lease = self.take_reader()?;
        let Some(conn) = lease.conn.as_mut() else {
            return Err(corrupt("a read connection was lent out empty"));
        };
        f(conn)
    }

    /// An idle read connection, a new one while fewer than [`READERS`]
    /// exist, or else the next one handed back.
    fn take_reader(&self) -> StorageResult<ReaderLease<'_>> {
        let poisoned = |_| corrupt("reader pool poisoned");
        let mut readers = self.readers.lock().map_err(poisoned)?;
        loop {
            if let Some(conn) = readers.idle.pop() {
                return Ok(ReaderLease {
                    storage: self,
                    conn: Some(conn),
                });
            }
            if readers.open < READERS {
                readers.open += 1;
                drop(readers);
                return match open_connection(&self.path) {
                    Ok(conn) => Ok(ReaderLease {
                        storage: self,
                        conn: Some(conn),
                    }),
                    Err(e) => {
                        self.give_up_reader();
                        Err(e)
                    }
                };
            }
            readers = self.reader_freed.wait(readers).map_err(poisoned)?;
        }
    }

    /// A read connection is gone (it failed to open): another may be opened.
    fn give_up_reader(&self) {
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        readers.open = readers.open.saturating_sub(1);
        drop(readers);
        self.reader_freed.notify_one();
    }

    /// Reads everything, from one snapshot, handing `sink` at most `chunk`
    /// items at a time: for copying a clinic to another backend
    /// ([`super::transfer`]). Hash-chained logs come with their stored
    /// hashes, so the copy carries the chains as they are.
    pub fn export(
        &self,
        chunk: usize,
        sink: &mut dyn FnMut(Chunk) -> StorageResult<()>,
    ) -> StorageResult<()> {
        let chunk = chunk.max(1);
        self.read(|c| {
            // One read transaction: every table from the same snapshot.
            let tx = c.transaction()?;
            stream(
                &tx,
                "SELECT tbl, id, version, deleted, data FROM rows ORDER BY tbl, id",
                chunk,
                sink,
                Chunk::Rows,
                |r| {
                    Ok(StoredRow {
                        table: parse_table(&r.get::<_, String>(0)?)?,
                        id: parse_uuid(&r.get::<_, String>(1)?)?,
                        version: to_u64(r.get(2)?),
                        deleted: r.get(3)?,
                        data: r.get(4)?,
                    })
                },
            )?;
            stream(
                &tx,
                &format!("SELECT {CHANGE_COLUMNS}, hash FROM changes ORDER BY seq"),
                chunk,
                sink,
                Chunk::Changes,
                |r| {
                    Ok(ChainLink {
                        entry: change_from_columns(change_columns(r)?)?,
                        hash: r.get(11)?,
                    })
                },
            )?;
            stream(
                &tx,
                "SELECT user_id, password_hash FROM credentials ORDER BY user_id",
                chunk,
                sink,
                Chunk::Credentials,
                |r| Ok((parse_uuid(&r.get::<_, String>(0)?)?, r.get(1)?)),
            )?;
            stream(
                &tx,
                "SELECT token_hash, user_id, expires_at FROM sessions ORDER BY token_hash",
                chunk,
                sink,
                Chunk::Sessions,
                |r| {
                    Ok((
                        r.get(0)?,
                        Session {
                            user_id: parse_uuid(&r.get::<_, String>(1)?)?,
                            expires_at: parse_time(&r.get::<_, String>(2)?)?,
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
                        parse_uuid(&r.get::<_, String>(0)?)?,
                        ClientRecord {
                            user_id: parse_uuid(&r.get::<_, String>(1)?)?,
                            last_mutation_id: to_u64(r.get(2)?),
                        },
                    ))
                },
            )?;
            stream(
                &tx,
                "SELECT client_id, mutation_id, outcome, fingerprint FROM mutation_results
                 ORDER BY client_id, mutation_id",
                chunk,
                sink,
                Chunk::Results,
                |r| {
                    Ok((
                        parse_uuid(&r.get::<_, String>(0)?)?,
                        to_u64(r.get(1)?),
                        r.get(2)?,
                        r.get(3)?,
                    ))
                },
            )?;
            stream(
                &tx,
                "SELECT user_id, epoch, must_change_password FROM account_security ORDER BY user_id",
                chunk,
                sink,
                Chunk::AccountSecurity,
                |r| {
                    Ok((
                        parse_uuid(&r.get::<_, String>(0)?)?,
                        AccountSecurity {
                            epoch: to_u64(r.get(1)?),
                            must_change_password: r.get(2)?,
                        },
                    ))
                },
            )?;
            stream(
                &tx,
                "SELECT id, at, user_id, kind, token_hash, epoch FROM security_events ORDER BY id",
                chunk,
                sink,
                Chunk::SecurityEvents,
                |r| {
                    security_event_from((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )?;
            stream(
                &tx,
                "SELECT key, failures, last_failure_ms, locked_until_ms, lock_reported
                 FROM sign_in_throttle ORDER BY key",
                chunk,
                sink,
                Chunk::Throttles,
                |r| {
                    Ok((
                        r.get(0)?,
                        Throttle {
                            failures: r.get(1)?,
                            last_failure_ms: r.get(2)?,
                            locked_until_ms: r.get(3)?,
                            lock_reported: r.get(4)?,
                        },
                    ))
                },
            )?;
            stream(
                &tx,
                "SELECT id, at, kind, outcome, username, user_id, address, client_id, user_agent
                 FROM sign_in_events ORDER BY id",
                chunk,
                sink,
                Chunk::SignInEvents,
                |r| {
                    Ok(SignInEvent {
                        id: to_u64(r.get(0)?),
                        at: parse_time(&r.get::<_, String>(1)?)?,
                        kind: parse_sign_in_kind(&r.get::<_, String>(2)?)?,
                        outcome: parse_sign_in_outcome(&r.get::<_, String>(3)?)?,
                        username: r.get(4)?,
                        user_id: opt_uuid(r.get(5)?)?,
                        address: r.get(6)?,
                        client_id: opt_uuid(r.get(7)?)?,
                        user_agent: r.get(8)?,
                    })
                },
            )?;
            stream(
                &tx,
                &format!("SELECT {ACCESS_COLUMNS} FROM access_log ORDER BY seq"),
                chunk,
                sink,
                Chunk::Access,
                |r| access_from_columns(access_columns(r)?),
            )?;
            Ok(())
        })
    }

    /// Runs `PRAGMA integrity_check`; `Ok(())` when the file is sound.
    pub fn integrity_check(&self) -> StorageResult<()> {
        self.read(|c| {
            let r: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
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
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query([])?;
    let mut buf = Vec::with_capacity(chunk);
    while let Some(row) = rows.next()? {
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
        let head: i64 =
            self.tx
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| {
                    r.get(0)
                })?;
        Ok(to_u64(head))
    }

    fn row(&mut self, table: Table, id: Uuid) -> StorageResult<Option<CurrentRow>> {
        let row = self
            .tx
            .prepare_cached("SELECT version, deleted, data FROM rows WHERE tbl = ?1 AND id = ?2")?
            .query_row(params![table.as_str(), id.to_string()], current_row)
            .optional()?;
        row.map(|(version, deleted, data)| {
            Ok(CurrentRow {
                version: to_u64(version),
                deleted,
                data: parse_json(&data)?,
            })
        })
        .transpose()
    }

    fn appointments_starting_between(
        &mut self,
        doctor_id: Uuid,
        from: Timestamp,
        until: Timestamp,
    ) -> StorageResult<Vec<SlotCandidate>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT id, data FROM rows
                 WHERE tbl = 'appointments' AND deleted = 0
                   AND json_extract(data, '$.doctor_id') = ?1
                   AND json_extract(data, '$.start') >= ?2
                   AND json_extract(data, '$.start') < ?3",
        )?;
        let raw = stmt
            .query_map(
                params![doctor_id.to_string(), from.to_string(), until.to_string()],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )?
            .collect::<Result<Vec<_>, _>>()?;
        raw.iter()
            .map(|(id, data)| {
                Ok(SlotCandidate {
                    id: parse_uuid(id)?,
                    data: parse_json(data)?,
                })
            })
            .collect()
    }

    fn patient_appointments_starting_between(
        &mut self,
        patient_id: Uuid,
        from: Timestamp,
        until: Timestamp,
    ) -> StorageResult<Vec<SlotCandidate>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT id, data FROM rows
                 WHERE tbl = 'appointments' AND deleted = 0
                   AND json_extract(data, '$.patient_id') = ?1
                   AND json_extract(data, '$.start') >= ?2
                   AND json_extract(data, '$.start') < ?3",
        )?;
        let raw = stmt
            .query_map(
                params![patient_id.to_string(), from.to_string(), until.to_string()],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )?
            .collect::<Result<Vec<_>, _>>()?;
        raw.iter()
            .map(|(id, data)| {
                Ok(SlotCandidate {
                    id: parse_uuid(id)?,
                    data: parse_json(data)?,
                })
            })
            .collect()
    }

    fn staff_id_by_username(&mut self, username: &str) -> StorageResult<Option<Uuid>> {
        let id: Option<String> = self
            .tx
            .prepare_cached(
                "SELECT id FROM rows WHERE tbl = 'staff' AND json_extract(data, '$.username') = ?1",
            )?
            .query_row([username], |r| r.get(0))
            .optional()?;
        id.map(|s| parse_uuid(&s)).transpose()
    }

    fn put(&mut self, c: &Change) -> StorageResult<()> {
        let after = c.after.to_string();
        self.tx
            .prepare_cached(
                "INSERT INTO rows (tbl, id, version, deleted, data) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tbl, id) DO UPDATE SET version = excluded.version,
                     deleted = excluded.deleted, data = excluded.data",
            )?
            .execute(params![
                c.table.as_str(),
                c.id.to_string(),
                to_i64(c.seq),
                c.action == Action::Delete,
                after
            ])?;
        // The chain link: the previous entry by seq, read in this
        // transaction (savepoint rollbacks make a cache here wrong).
        let previous: Option<Option<String>> = self
            .tx
            .prepare_cached("SELECT hash FROM changes WHERE seq < ?1 ORDER BY seq DESC LIMIT 1")?
            .query_row([to_i64(c.seq)], |r| r.get(0))
            .optional()?;
        let previous = match previous {
            None => chain::GENESIS.to_owned(),
            Some(Some(h)) => h,
            Some(None) => {
                return Err(corrupt(format!(
                    "change log entry before seq {} has no hash",
                    c.seq
                )));
            }
        };
        let hash = chain::change_hash(&previous, c);
        self.tx
            .prepare_cached(
                "INSERT INTO changes (seq, tbl, row_id, action, actor_id, client_id, mutation_id, mutation, at, before, after, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?
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
                after,
                hash
            ])?;
        Ok(())
    }

    fn changes_to_row_since(
        &mut self,
        table: Table,
        id: Uuid,
        after: u64,
    ) -> StorageResult<Vec<LoggedChange>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT seq, client_id, before, after, actor_id, at FROM changes
                 WHERE tbl = ?1 AND row_id = ?2 AND seq > ?3 ORDER BY seq",
        )?;
        type Raw = (
            i64,
            Option<String>,
            Option<String>,
            String,
            Option<String>,
            String,
        );
        let raw = stmt
            .query_map(
                params![table.as_str(), id.to_string(), to_i64(after)],
                |r| -> rusqlite::Result<Raw> {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        raw.into_iter()
            .map(|(seq, client, before, after, actor, at)| {
                Ok(LoggedChange {
                    seq: to_u64(seq),
                    client_id: client.as_deref().map(parse_uuid).transpose()?,
                    actor_id: actor.as_deref().map(parse_uuid).transpose()?,
                    at: Some(
                        at.parse()
                            .map_err(|_| corrupt(format!("bad time `{at}` in the change log")))?,
                    ),
                    before: before.as_deref().map(parse_json).transpose()?,
                    after: parse_json(&after)?,
                })
            })
            .collect()
    }

    fn client(&mut self, client_id: Uuid) -> StorageResult<Option<ClientRecord>> {
        client_record(&self.tx, client_id)
    }

    fn resume_after_restore(&mut self, client_id: Uuid) -> StorageResult<bool> {
        let restored: bool = self.tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM server_meta WHERE key = 'restored_at')",
            [],
            |r| r.get(0),
        )?;
        if !restored {
            return Ok(false);
        }
        let first = self.tx.execute(
            "INSERT INTO resumed_clients (client_id) VALUES (?1) ON CONFLICT DO NOTHING",
            [client_id.to_string()],
        )?;
        Ok(first == 1)
    }

    fn set_client(&mut self, client_id: Uuid, record: ClientRecord) -> StorageResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO clients (client_id, user_id, last_mutation_id) VALUES (?1, ?2, ?3)
                 ON CONFLICT (client_id) DO UPDATE SET last_mutation_id = excluded.last_mutation_id",
            )?
            .execute(params![
                client_id.to_string(),
                record.user_id.to_string(),
                to_i64(record.last_mutation_id)
            ])?;
        Ok(())
    }

    fn stored_outcome(
        &mut self,
        client_id: Uuid,
        mutation_id: u64,
    ) -> StorageResult<Option<StoredOutcome>> {
        let raw: Option<(String, Option<String>)> = self
            .tx
            .prepare_cached(
                "SELECT outcome, fingerprint FROM mutation_results
                 WHERE client_id = ?1 AND mutation_id = ?2",
            )?
            .query_row(params![client_id.to_string(), to_i64(mutation_id)], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        raw.map(|(s, fingerprint)| {
            let outcome = serde_json::from_str(&s)
                .map_err(|e| corrupt(format!("stored outcome: {}", json_error(&e))))?;
            Ok(StoredOutcome {
                outcome,
                fingerprint,
            })
        })
        .transpose()
    }

    fn store_outcome(
        &mut self,
        client_id: Uuid,
        mutation_id: u64,
        outcome: &MutationOutcome,
        fingerprint: &str,
    ) -> StorageResult<()> {
        let json =
            serde_json::to_string(outcome).map_err(|e| StorageError::Database(e.to_string()))?;
        self.tx
            .prepare_cached(
                "INSERT INTO mutation_results (client_id, mutation_id, outcome, fingerprint)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                client_id.to_string(),
                to_i64(mutation_id),
                json,
                fingerprint
            ])?;
        Ok(())
    }

    fn set_password_hash(&mut self, user_id: Uuid, hash: &str) -> StorageResult<()> {
        self.tx.execute(
            "INSERT INTO credentials (user_id, password_hash) VALUES (?1, ?2)
                 ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash",
            params![user_id.to_string(), hash],
        )?;
        Ok(())
    }

    fn delete_sessions_of(&mut self, user_id: Uuid) -> StorageResult<()> {
        self.tx.execute(
            "DELETE FROM sessions WHERE user_id = ?1",
            [user_id.to_string()],
        )?;
        Ok(())
    }

    fn delete_other_sessions(&mut self, user_id: Uuid, keep: &str) -> StorageResult<u64> {
        let n = self.tx.execute(
            "DELETE FROM sessions WHERE user_id = ?1 AND token_hash <> ?2",
            params![user_id.to_string(), keep],
        )?;
        Ok(n as u64)
    }

    fn delete_session(&mut self, token_hash: &str) -> StorageResult<bool> {
        let n = self
            .tx
            .execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash])?;
        Ok(n > 0)
    }

    fn count_sessions_of(&mut self, user_id: Uuid) -> StorageResult<u64> {
        let n: i64 = self.tx.query_row(
            "SELECT COUNT(*) FROM sessions WHERE user_id = ?1",
            [user_id.to_string()],
            |r| r.get(0),
        )?;
        Ok(to_u64(n))
    }

    fn record_security_event(
        &mut self,
        user_id: Uuid,
        kind: SecurityKind,
        token_hash: Option<&str>,
        at: Timestamp,
    ) -> StorageResult<SecurityEvent> {
        let user = user_id.to_string();
        if kind.bumps_epoch() {
            self.tx.execute(
                "INSERT INTO account_security (user_id, epoch) VALUES (?1, 1)
                 ON CONFLICT (user_id) DO UPDATE SET epoch = epoch + 1",
                [&user],
            )?;
        }
        let epoch = account_security(&self.tx, user_id)?.epoch;
        self.tx.execute(
            "INSERT INTO security_events (at, user_id, kind, token_hash, epoch) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![at.to_string(), user, kind.as_str(), token_hash, to_i64(epoch)],
        )?;
        Ok(SecurityEvent {
            id: to_u64(self.tx.last_insert_rowid()),
            at,
            user_id,
            kind,
            token_hash: token_hash.map(str::to_owned),
            epoch,
        })
    }

    fn set_must_change_password(&mut self, user_id: Uuid, must: bool) -> StorageResult<()> {
        self.tx.execute(
            "INSERT INTO account_security (user_id, must_change_password) VALUES (?1, ?2)
             ON CONFLICT (user_id) DO UPDATE SET must_change_password = excluded.must_change_password",
            params![user_id.to_string(), must],
        )?;
        Ok(())
    }

    fn throttle(&mut self, key: &str) -> StorageResult<Option<Throttle>> {
        throttle(&self.tx, key)
    }

    fn set_throttle(&mut self, key: &str, throttle: Option<&Throttle>) -> StorageResult<()> {
        match throttle {
            None => {
                self.tx
                    .execute("DELETE FROM sign_in_throttle WHERE key = ?1", [key])?;
            }
            Some(t) => {
                self.tx.execute(
                    "INSERT INTO sign_in_throttle (key, failures, last_failure_ms, locked_until_ms, lock_reported)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (key) DO UPDATE SET failures = excluded.failures,
                         last_failure_ms = excluded.last_failure_ms,
                         locked_until_ms = excluded.locked_until_ms,
                         lock_reported = excluded.lock_reported",
                    params![key, t.failures, t.last_failure_ms, t.locked_until_ms, t.lock_reported],
                )?;
            }
        }
        Ok(())
    }

    fn append_sign_in_event(&mut self, e: &NewSignInEvent) -> StorageResult<u64> {
        self.tx.execute(
            "INSERT INTO sign_in_events (at, kind, outcome, username, user_id, address, client_id, user_agent)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                e.at.to_string(),
                sign_in_kind_str(e.kind),
                sign_in_outcome_str(e.outcome),
                e.username,
                e.user_id.map(|u| u.to_string()),
                e.address,
                e.client_id.map(|u| u.to_string()),
                e.user_agent
            ],
        )?;
        Ok(to_u64(self.tx.last_insert_rowid()))
    }

    fn append_access(&mut self, entries: &[NewAccess]) -> StorageResult<u64> {
        let last: Option<(i64, String)> = self
            .tx
            .query_row(
                "SELECT seq, hash FROM access_log ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (mut seq, mut previous) = match last {
            Some((seq, hash)) => (to_u64(seq), hash),
            None => (0, chain::GENESIS.to_owned()),
        };
        let mut insert = self.tx.prepare_cached(
            "INSERT INTO access_log (seq, at, user_id, client_id, kind, patient_id, tbl, row_ids, hash, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for entry in entries {
            seq += 1;
            let hash = chain::access_hash(&previous, seq, entry);
            let row_ids = serde_json::to_string(&entry.row_ids)
                .map_err(|e| StorageError::Database(e.to_string()))?;
            insert.execute(params![
                to_i64(seq),
                entry.at.to_string(),
                entry.user_id.to_string(),
                entry.client_id.map(|u| u.to_string()),
                entry.kind.as_str(),
                entry.patient_id.map(|u| u.to_string()),
                entry.table.as_str(),
                row_ids,
                hash,
                entry.reason
            ])?;
            previous = hash;
        }
        Ok(seq)
    }

    fn savepoint(&mut self) -> StorageResult<()> {
        Ok(self.tx.execute_batch("SAVEPOINT mutation")?)
    }

    fn rollback_to_savepoint(&mut self) -> StorageResult<()> {
        Ok(self
            .tx
            .execute_batch("ROLLBACK TO mutation; RELEASE mutation")?)
    }

    fn release_savepoint(&mut self) -> StorageResult<()> {
        Ok(self.tx.execute_batch("RELEASE mutation")?)
    }
}

fn client_record(conn: &Connection, client_id: Uuid) -> StorageResult<Option<ClientRecord>> {
    let raw: Option<(String, i64)> = conn
        .prepare_cached("SELECT user_id, last_mutation_id FROM clients WHERE client_id = ?1")?
        .query_row([client_id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    raw.map(|(user, last)| {
        Ok(ClientRecord {
            user_id: parse_uuid(&user)?,
            last_mutation_id: to_u64(last),
        })
    })
    .transpose()
}

fn account_security(conn: &Connection, user_id: Uuid) -> StorageResult<AccountSecurity> {
    let raw: Option<(i64, bool)> = conn
        .prepare_cached(
            "SELECT epoch, must_change_password FROM account_security WHERE user_id = ?1",
        )?
        .query_row([user_id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(raw
        .map(|(epoch, must)| AccountSecurity {
            epoch: to_u64(epoch),
            must_change_password: must,
        })
        .unwrap_or_default())
}

fn throttle(conn: &Connection, key: &str) -> StorageResult<Option<Throttle>> {
    Ok(conn
        .prepare_cached(
            "SELECT failures, last_failure_ms, locked_until_ms, lock_reported FROM sign_in_throttle WHERE key = ?1",
        )?
        .query_row([key], |r| {
            Ok(Throttle {
                failures: r.get(0)?,
                last_failure_ms: r.get(1)?,
                locked_until_ms: r.get(2)?,
                lock_reported: r.get(3)?,
            })
        })
        .optional()?)
}

fn sign_in_kind_str(k: SignInKind) -> &'static str {
    match k {
        SignInKind::SignIn => "sign_in",
        SignInKind::PasswordChange => "password_change",
    }
}

fn parse_sign_in_kind(s: &str) -> StorageResult<SignInKind> {
    match s {
        "sign_in" => Ok(SignInKind::SignIn),
        "password_change" => Ok(SignInKind::PasswordChange),
        other => Err(corrupt(format!("bad sign-in kind `{other}`"))),
    }
}

fn sign_in_outcome_str(o: SignInOutcome) -> &'static str {
    match o {
        SignInOutcome::Success => "success",
        SignInOutcome::Failure => "failure",
        SignInOutcome::Locked => "locked",
        SignInOutcome::Disabled => "disabled",
    }
}

fn parse_sign_in_outcome(s: &str) -> StorageResult<SignInOutcome> {
    match s {
        "success" => Ok(SignInOutcome::Success),
        "failure" => Ok(SignInOutcome::Failure),
        "locked" => Ok(SignInOutcome::Locked),
        "disabled" => Ok(SignInOutcome::Disabled),
        other => Err(corrupt(format!("bad sign-in outcome `{other}`"))),
    }
}

fn opt_uuid(s: Option<String>) -> StorageResult<Option<Uuid>> {
    s.as_deref().map(parse_uuid).transpose()
}

/// Columns of `access_log` read by [`access_columns`], in order.
const ACCESS_COLUMNS: &str =
    "seq, at, user_id, client_id, kind, patient_id, tbl, row_ids, hash, reason";

type AccessColumns = (
    i64,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
);

fn access_columns(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccessColumns> {
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
    ))
}

fn access_from_columns(c: AccessColumns) -> StorageResult<ChainLink<AccessRecord>> {
    let (seq, at, user, client, kind, patient, tbl, row_ids, hash, reason) = c;
    let row_ids: Vec<Uuid> =
        serde_json::from_str(&row_ids).map_err(|e| corrupt(format!("access row ids: {e}")))?;
    Ok(ChainLink {
        entry: AccessRecord {
            seq: to_u64(seq),
            entry: NewAccess {
                at: parse_time(&at)?,
                user_id: parse_uuid(&user)?,
                client_id: opt_uuid(client)?,
                kind: kind.parse().map_err(corrupt)?,
                patient_id: opt_uuid(patient)?,
                table: parse_table(&tbl)?,
                row_ids,
                reason,
            },
        },
        hash,
    })
}

fn security_event_from(
    (id, at, user, kind, token, epoch): (i64, String, String, String, Option<String>, i64),
) -> StorageResult<SecurityEvent> {
    Ok(SecurityEvent {
        id: to_u64(id),
        at: parse_time(&at)?,
        user_id: parse_uuid(&user)?,
        kind: SecurityKind::parse(&kind)
            .ok_or_else(|| corrupt(format!("bad security event kind `{kind}`")))?,
        token_hash: token,
        epoch: to_u64(epoch),
    })
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
    serde_json::from_str(data).map_err(|e| corrupt(format!("staff row: {}", json_error(&e))))
}

impl Storage for SqliteStorage {
    fn write(&self, work: &mut WriteWork<'_>) -> StorageResult<()> {
        let mut conn = self
            .writer
            .lock()
            .map_err(|_| corrupt("writer connection poisoned"))?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut stx = SqliteTx { tx };
        work(&mut stx)?;
        Ok(stx.tx.commit()?)
    }

    fn head(&self) -> StorageResult<u64> {
        self.read(|c| {
            let head: i64 = c.query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| {
                r.get(0)
            })?;
            Ok(to_u64(head))
        })
    }

    fn server_epoch(&self) -> StorageResult<String> {
        self.read(|c| {
            c.query_row(
                "SELECT value FROM server_meta WHERE key = 'epoch'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| corrupt("the database has no server epoch".to_owned()))
        })
    }

    fn start_new_epoch(&self, at: Timestamp) -> StorageResult<String> {
        let mut conn = self
            .writer
            .lock()
            .map_err(|_| corrupt("writer connection poisoned"))?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let epoch: String = tx.query_row("SELECT lower(hex(randomblob(16)))", [], |r| r.get(0))?;
        tx.execute(
            "INSERT INTO server_meta (key, value) VALUES ('epoch', ?1), ('restored_at', ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![epoch, at.to_string()],
        )?;
        tx.execute("DELETE FROM resumed_clients", [])?;
        tx.commit()?;
        Ok(epoch)
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
            let tx = c.transaction()?;
            let head: i64 = tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| {
                r.get(0)
            })?;
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
                .prepare_cached(&sql)?
                .query_map(params![to_i64(after), to_i64(head), limit_plus_one], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, bool>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
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
                head,
                more,
                last_mutation_id,
            })
        })
    }

    fn committed_between(&self, after: u64, upto: u64) -> StorageResult<Vec<Change>> {
        self.read(|c| {
            let raw = c
                .prepare_cached(&format!(
                    "SELECT {CHANGE_COLUMNS} FROM changes WHERE seq > ?1 AND seq <= ?2 ORDER BY seq"
                ))?
                .query_map(params![to_i64(after), to_i64(upto)], change_columns)?
                .collect::<Result<Vec<_>, _>>()?;
            raw.into_iter().map(change_from_columns).collect()
        })
    }

    fn history(&self, table: Table, id: Uuid) -> StorageResult<Vec<HistoryEntry>> {
        self.read(|c| {
            let raw = c
                .prepare_cached(
                    &format!("SELECT {CHANGE_COLUMNS} FROM changes WHERE tbl = ?1 AND row_id = ?2 ORDER BY seq"),
                )?
                .query_map(params![table.as_str(), id.to_string()], change_columns)?
                .collect::<Result<Vec<_>, _>>()?;
            let mut entries = Vec::with_capacity(raw.len());
            for cols in raw {
                let change = change_from_columns(cols)?;
                let actor_name = match change.actor_id {
                    Some(actor) => c
                        .prepare_cached("SELECT json_extract(data, '$.display_name') FROM rows WHERE tbl = 'staff' AND id = ?1")?
                        .query_row([actor.to_string()], |r| r.get::<_, Option<String>>(0))
                        .optional()?
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
                )?
                .query_row([username], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            raw.map(|(data, hash)| Ok((staff_from_json(&data)?, hash))).transpose()
        })
    }

    fn staff(&self, id: Uuid) -> StorageResult<Option<Staff>> {
        self.read(|c| {
            let raw: Option<String> = c
                .prepare_cached(
                    "SELECT data FROM rows WHERE tbl = 'staff' AND id = ?1 AND deleted = 0",
                )?
                .query_row([id.to_string()], |r| r.get(0))
                .optional()?;
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
        )?;
        Ok(())
    }

    fn session(&self, token_hash: &str) -> StorageResult<Option<Session>> {
        self.read(|c| {
            let raw: Option<(String, String)> = c
                .prepare_cached("SELECT user_id, expires_at FROM sessions WHERE token_hash = ?1")?
                .query_row([token_hash], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
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
        conn.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash])?;
        Ok(())
    }

    fn purge_expired_sessions(&self, now: Timestamp) -> StorageResult<usize> {
        let conn = self
            .writer
            .lock()
            .map_err(|_| corrupt("writer connection poisoned"))?;
        Ok(conn.execute(
            "DELETE FROM sessions WHERE expires_at <= ?1",
            [now.to_string()],
        )?)
    }

    fn count_open_sessions(&self, now: Timestamp) -> StorageResult<u64> {
        self.read(|c| {
            let n: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM sessions WHERE expires_at > ?1")?
                .query_row([now.to_string()], |r| r.get(0))?;
            Ok(to_u64(n))
        })
    }

    fn database_size(&self) -> StorageResult<u64> {
        let size_of = |path: &Path| match std::fs::metadata(path) {
            Ok(m) => Ok(m.len()),
            Err(e) => Err(StorageError::Database(format!(
                "reading the size of {}: {e}",
                path.display()
            ))),
        };
        let main = size_of(&self.path)?;
        // No WAL file is a WAL of nothing (between a checkpoint that
        // removed it and the next write).
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let wal = if wal.exists() { size_of(&wal)? } else { 0 };
        Ok(main + wal)
    }

    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    fn session_account(&self, token_hash: &str) -> StorageResult<Option<SessionAccount>> {
        self.read(|c| {
            // One statement: session, staff row and security state agree.
            type Raw = (String, String, Option<String>, Option<i64>, Option<bool>);
            let raw: Option<Raw> = c
                .prepare_cached(SESSION_ACCOUNT_SQL)?
                .query_row([token_hash], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .optional()?;
            raw.map(|(user, expires, data, epoch, must)| {
                Ok(SessionAccount {
                    session: Session {
                        user_id: parse_uuid(&user)?,
                        expires_at: parse_time(&expires)?,
                    },
                    user: data.as_deref().map(staff_from_json).transpose()?,
                    security: AccountSecurity {
                        epoch: epoch.map_or(0, to_u64),
                        must_change_password: must.unwrap_or(false),
                    },
                })
            })
            .transpose()
        })
    }

    fn account_security(&self, user_id: Uuid) -> StorageResult<AccountSecurity> {
        self.read(|c| account_security(c, user_id))
    }

    fn current_row(&self, table: Table, id: Uuid) -> StorageResult<Option<CurrentRow>> {
        self.read(|c| {
            let row = c
                .prepare_cached(
                    "SELECT version, deleted, data FROM rows WHERE tbl = ?1 AND id = ?2",
                )?
                .query_row(params![table.as_str(), id.to_string()], current_row)
                .optional()?;
            row.map(|(version, deleted, data)| {
                Ok(CurrentRow {
                    version: to_u64(version),
                    deleted,
                    data: parse_json(&data)?,
                })
            })
            .transpose()
        })
    }

    fn security_head(&self) -> StorageResult<u64> {
        self.read(|c| {
            let head: i64 = c.query_row(
                "SELECT COALESCE(MAX(id), 0) FROM security_events",
                [],
                |r| r.get(0),
            )?;
            Ok(to_u64(head))
        })
    }

    fn security_events_after(&self, after: u64, limit: usize) -> StorageResult<Vec<SecurityEvent>> {
        self.read(|c| {
            let raw = c
                .prepare_cached(
                    "SELECT id, at, user_id, kind, token_hash, epoch FROM security_events
                     WHERE id > ?1 ORDER BY id LIMIT ?2",
                )?
                .query_map(params![to_i64(after), to_i64(limit as u64)], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            raw.into_iter().map(security_event_from).collect()
        })
    }

    fn throttle(&self, key: &str) -> StorageResult<Option<Throttle>> {
        self.read(|c| throttle(c, key))
    }

    fn sign_in_events(&self, before: Option<u64>, limit: usize) -> StorageResult<Vec<SignInEvent>> {
        self.read(|c| {
            type Raw = (
                i64,
                String,
                String,
                String,
                String,
                Option<String>,
                Option<String>,
                Option<String>,
                Option<String>,
            );
            let raw: Vec<Raw> = c
                .prepare_cached(
                    "SELECT id, at, kind, outcome, username, user_id, address, client_id, user_agent
                     FROM sign_in_events WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
                )?
                .query_map(
                    params![before.map_or(i64::MAX, to_i64), to_i64(limit as u64)],
                    |r| {
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
                        ))
                    },
                )?
                .collect::<Result<Vec<_>, _>>()?;
            raw.into_iter()
                .map(
                    |(id, at, kind, outcome, username, user, address, client, agent)| {
                        Ok(SignInEvent {
                            id: to_u64(id),
                            at: parse_time(&at)?,
                            kind: parse_sign_in_kind(&kind)?,
                            outcome: parse_sign_in_outcome(&outcome)?,
                            username,
                            user_id: opt_uuid(user)?,
                            address,
                            client_id: opt_uuid(client)?,
                            user_agent: agent,
                        })
                    },
                )
                .collect()
        })
    }

    fn access_log(
        &self,
        patient: Uuid,
        before: Option<u64>,
        limit: usize,
    ) -> StorageResult<Vec<AccessLogEntry>> {
        self.read(|c| {
            let raw = c
                .prepare_cached(&format!(
                    "SELECT {ACCESS_COLUMNS}, (SELECT json_extract(r.data, '$.display_name') FROM rows r
                         WHERE r.tbl = 'staff' AND r.id = access_log.user_id)
                     FROM access_log
                     WHERE patient_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
                ))?
                .query_map(
                    params![
                        patient.to_string(),
                        before.map_or(i64::MAX, to_i64),
                        to_i64(limit as u64)
                    ],
                    |r| Ok((access_columns(r)?, r.get::<_, Option<String>>(10)?)),
                )?
                .collect::<Result<Vec<_>, _>>()?;
            raw.into_iter()
                .map(|(cols, name)| Ok(access_from_columns(cols)?.entry.to_wire(name)))
                .collect()
        })
    }

    fn care_patients(
        &self,
        doctor: Uuid,
        glass_since: Option<Timestamp>,
    ) -> StorageResult<HashSet<Uuid>> {
        self.read(|c| {
            // Each part by its index (see migrations 1, 5 and 8).
            let ids = c
                .prepare_cached(
                    "SELECT json_extract(data, '$.patient_id') FROM rows
                         WHERE tbl = 'appointments' AND json_extract(data, '$.doctor_id') = ?1 AND deleted = 0
                     UNION SELECT json_extract(data, '$.patient_id') FROM rows
                         WHERE tbl = 'treatment_records' AND json_extract(data, '$.doctor_id') = ?1 AND deleted = 0
                     UNION SELECT json_extract(data, '$.patient_id') FROM rows
                         WHERE tbl = 'referrals' AND json_extract(data, '$.referring_doctor_id') = ?1 AND deleted = 0
                     UNION SELECT patient_id FROM access_log
                         WHERE kind = 'break_the_glass' AND user_id = ?1 AND at >= ?2",
                )?
                // A NULL bound matches no grant.
                .query_map(params![doctor.to_string(), glass_since.map(|t| t.to_string())], |r| {
                    r.get::<_, Option<String>>(0)
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ids
                .into_iter()
                .flatten()
                .filter_map(|id| Uuid::parse_str(&id).ok())
                .collect())
        })
    }

    fn last_glass(&self, doctor: Uuid, patient: Uuid) -> StorageResult<Option<Timestamp>> {
        self.read(|c| {
            let at: Option<String> = c
                .prepare_cached(
                    "SELECT MAX(at) FROM access_log
                     WHERE kind = 'break_the_glass' AND user_id = ?1 AND patient_id = ?2",
                )?
                .query_row(params![doctor.to_string(), patient.to_string()], |r| {
                    r.get(0)
                })?;
            at.as_deref().map(parse_time).transpose()
        })
    }

    fn clinical_rows(&self, patient: Uuid) -> StorageResult<Vec<SyncRow>> {
        self.read(|c| {
            let raw = c
                .prepare_cached(
                    "SELECT tbl, id, version, deleted, data FROM rows
                     WHERE tbl IN ('treatment_records', 'referrals')
                       AND json_extract(data, '$.patient_id') = ?1 AND deleted = 0
                     ORDER BY version",
                )?
                .query_map(params![patient.to_string()], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, bool>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            raw.iter()
                .map(|(t, id, v, d, data)| sync_row(t, id, *v, *d, data))
                .collect()
        })
    }

    fn change_chain(&self, after: u64, limit: usize) -> StorageResult<Vec<ChainLink<Change>>> {
        self.read(|c| {
            let raw = c
                .prepare_cached(&format!(
                    "SELECT {CHANGE_COLUMNS}, hash FROM changes WHERE seq > ?1 ORDER BY seq LIMIT ?2"
                ))?
                .query_map(params![to_i64(after), to_i64(limit as u64)], |r| {
                    Ok((change_columns(r)?, r.get::<_, Option<String>>(11)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            raw.into_iter()
                .map(|(cols, hash)| {
                    Ok(ChainLink {
                        entry: change_from_columns(cols)?,
                        hash,
                    })
                })
                .collect()
        })
    }

    fn access_chain(
        &self,
        after: u64,
        limit: usize,
    ) -> StorageResult<Vec<ChainLink<AccessRecord>>> {
        self.read(|c| {
            let raw = c
                .prepare_cached(&format!(
                    "SELECT {ACCESS_COLUMNS} FROM access_log WHERE seq > ?1 ORDER BY seq LIMIT ?2"
                ))?
                .query_map(params![to_i64(after), to_i64(limit as u64)], access_columns)?
                .collect::<Result<Vec<_>, _>>()?;
            raw.into_iter().map(access_from_columns).collect()
        })
    }
}

/// Columns of `changes` read by [`change_columns`], in order.
const CHANGE_COLUMNS: &str =
    "seq, tbl, row_id, action, actor_id, client_id, mutation_id, mutation, at, before, after";

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

    /// SQLite's planner may make a statement depend on the values bound to
    /// it (whether a partial index applies, for one); such a statement is
    /// prepared again whenever its parameters are cleared, which the
    /// statement cache does on every use: a parse per run. Connections keep
    /// the planner stable (QPSG) so cached statements stay prepared.
    #[test]
    fn cached_statements_are_not_prepared_again_on_each_run() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(dir.path().join("hot.db")).unwrap();
        let reprepared = |sql: &str| {
            storage
                .read(|c| {
                    let stmt = c.prepare_cached(sql)?;
                    Ok(stmt.get_status(rusqlite::StatementStatus::RePrepare))
                })
                .unwrap()
        };
        for token in ["a", "b", "c"] {
            storage.session_account(token).unwrap();
            storage.client(Uuid::now_v7()).unwrap();
            storage.head().unwrap();
        }
        assert_eq!(
            reprepared(SESSION_ACCOUNT_SQL),
            0,
            "the session lookup run on every request was prepared again"
        );
    }

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
    fn the_logs_refuse_updates_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let s = SqliteStorage::open(&path).unwrap();
        let c = Change {
            seq: 1,
            table: Table::Patients,
            id: Uuid::now_v7(),
            action: Action::Create,
            before: None,
            after: serde_json::json!({}),
            actor_id: None,
            client_id: None,
            mutation_id: None,
            mutation: "t".into(),
            at: "2026-01-01T00:00:00Z".parse().unwrap(),
        };
        s.write(&mut |tx| {
            tx.put(&c)?;
            tx.append_access(&[NewAccess {
                at: c.at,
                user_id: Uuid::nil(),
                client_id: None,
                kind: clinic_shared::protocol::AccessKind::View,
                patient_id: Some(c.id),
                table: Table::Patients,
                row_ids: vec![c.id],
                reason: None,
            }])
            .map(|_| ())
        })
        .unwrap();
        s.write(&mut |tx| {
            tx.append_sign_in_event(&NewSignInEvent {
                at: c.at,
                kind: SignInKind::SignIn,
                outcome: SignInOutcome::Failure,
                username: "x".into(),
                user_id: None,
                address: None,
                client_id: None,
                user_agent: None,
            })
            .map(|_| ())
        })
        .unwrap();
        let raw = Connection::open(&path).unwrap();
        for sql in [
            "UPDATE changes SET after = '{\"x\":1}'",
            "DELETE FROM changes",
            "UPDATE access_log SET user_id = 'someone'",
            "DELETE FROM access_log",
            "UPDATE sign_in_events SET outcome = 'success'",
            "DELETE FROM sign_in_events",
        ] {
            let err = raw.execute(sql, []).err();
            assert!(
                err.as_ref()
                    .is_some_and(|e| e.to_string().contains("append-only")),
                "{sql}: {err:?}"
            );
        }
    }

    #[test]
    fn opening_an_old_database_computes_the_chain_of_its_change_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            // A database as the first release left it: schema 1, changes
            // without hashes.
            let c = Connection::open(&path).unwrap();
            let Migration::Sql(v1) = &MIGRATIONS[0] else {
                panic!("migration 1 is SQL")
            };
            c.execute_batch(v1).unwrap();
            c.execute_batch(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL);
                 INSERT INTO schema_migrations VALUES (1, '2026-01-01T00:00:00Z');",
            )
            .unwrap();
            c.execute_batch("BEGIN").unwrap();
            for seq in 1..=2500 {
                c.execute(
                    "INSERT INTO changes (seq, tbl, row_id, action, mutation, at, after)
                     VALUES (?1, 'patients', ?2, 'create', 'old', '2026-01-01T00:00:00Z', '{\"n\":1}')",
                    params![seq, Uuid::now_v7().to_string()],
                )
                .unwrap();
            }
            c.execute_batch("COMMIT").unwrap();
        }
        let s = SqliteStorage::open(&path).unwrap();
        let verified = crate::audit::verify_changes(&s).unwrap();
        assert_eq!(verified.entries, 2500);
        // New changes continue the chain.
        s.write(&mut |tx| {
            let mut c = change_from_columns((
                2501,
                "patients".into(),
                Uuid::now_v7().to_string(),
                "create".into(),
                None,
                None,
                None,
                "new".into(),
                "2026-01-02T00:00:00Z".into(),
                None,
                "{}".into(),
            ))?;
            c.mutation = "new".into();
            tx.put(&c)
        })
        .unwrap();
        assert_eq!(crate::audit::verify_changes(&s).unwrap().entries, 2501);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.db");
        std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
        assert!(SqliteStorage::open(&path).is_err());
    }
}
