//! The mirror's SQLite file: opening it, its versioned schema, and the WAL
//! checkpoint policy.

use crate::error::{ClientError, ClientResult};
use crate::session::keys::MirrorKey;
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;
use std::time::Duration;

/// The database file's name in a user's folder.
pub(crate) const FILE_NAME: &str = "clinic-client.db";

/// The database and the files SQLite keeps beside it.
pub(crate) fn files(dir: &Path) -> [std::path::PathBuf; 3] {
    [
        dir.join(FILE_NAME),
        dir.join(format!("{FILE_NAME}-wal")),
        dir.join(format!("{FILE_NAME}-shm")),
    ]
}

/// Versioned schema migrations of the local database; a released migration
/// never changes.
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
    r#"
    -- Payments by invoice, for a patient's chart.
    CREATE INDEX visible_payments_by_invoice ON visible (json_extract(data, '$.invoice_id'))
        WHERE tbl = 'payments';
"#,
    r#"
    -- Records the person opened, waiting to be reported to the server's
    -- access log (durable: a view made offline is reported on reconnect).
    CREATE TABLE views (n INTEGER PRIMARY KEY, tbl TEXT NOT NULL, id TEXT NOT NULL);
"#,
];

/// WAL size (pages) at which a commit checkpoints itself after all (the
/// SQLite default is 1000). Under a steady stream of writes (a first sync)
/// a passive checkpoint never catches the WAL's end, and the WAL only starts
/// over after a checkpoint made by the writer: this bounds the file (~40 MB)
/// while keeping such commits rare (about one live batch in a thousand).
const WAL_PAGES_BEFORE_COMMIT_CHECKPOINTS: i64 = 10_000;

/// How often the checkpointer copies the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Opens a connection with the mirror's settings: its SQLCipher key (first,
/// before anything reads the file), WAL, FULL sync, `secure_delete` (freed
/// pages are zeroed), busy timeout. `Busy` and `Corrupt` come back typed; a
/// wrong key shows as `Corrupt` ("not a database").
pub(crate) fn connect(path: &Path, key: &MirrorKey) -> ClientResult<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "key", key.pragma().as_str())?;
    // SQLCipher reports a wrong key on stderr by itself; the caller reports
    // it to the person instead.
    let _ = conn.pragma_update(None, "cipher_log_level", "NONE");
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// `PRAGMA quick_check` found damage (its first message).
#[derive(Debug, thiserror::Error)]
#[error("quick_check: {0}")]
pub(crate) struct CheckFailed(String);

/// Whether `e` (from [`open_writer`]) says the file is damaged: SQLite's
/// "database disk image is malformed" or "file is not a database" on open
/// or migration, or a failed `quick_check`. Not a locked file, a full disk,
/// or a file from a newer app. A wrong key looks the same as a damaged
/// first page: the caller tells them apart (see `super::salvage`).
pub(crate) fn is_damage(e: &ClientError) -> bool {
    let ClientError::Corrupt {
        source: Some(source),
        ..
    } = e
    else {
        return false;
    };
    if source.downcast_ref::<CheckFailed>().is_some() {
        return true;
    }
    source
        .downcast_ref::<rusqlite::Error>()
        .and_then(rusqlite::Error::sqlite_error_code)
        .is_some_and(|c| {
            matches!(
                c,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            )
        })
}

/// Opens the writer connection: checks the file, brings the schema up to
/// date, and makes sure a client id exists.
pub(crate) fn open_writer(
    path: &Path,
    new_client_id: uuid::Uuid,
    key: &MirrorKey,
) -> ClientResult<Connection> {
    let mut conn = connect(path, key)?;
    // `quick_check` reads every page of every table and index (so, on an
    // encrypted file, checks every page's HMAC) and the b-tree structure,
    // but not that each index matches its table: 4-9 s on a 650 000-row
    // mirror where `integrity_check` took 32 s (BENCHMARKS.md, "Opening a
    // mirror"). Paid at every start.
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(ClientError::Corrupt {
            detail: "the local database failed its check".into(),
            source: Some(Box::new(CheckFailed(check))),
        });
    }
    migrate(&mut conn)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if super::meta::get(&tx, &super::meta::CLIENT_ID)?.is_none() {
        super::meta::set(&tx, &super::meta::CLIENT_ID, &new_client_id)?;
    }
    tx.commit()?;
    Ok(conn)
}

pub(crate) fn migrate(conn: &mut Connection) -> ClientResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)",
    )?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if current > known {
        return Err(ClientError::corrupt(format!(
            "the local database is from a newer version of the app (schema {current} > {known})"
        )));
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES (?1)",
            [i64::try_from(i + 1).unwrap_or(0)],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Keeps WAL checkpoints off the commit path. By default the commit that
/// takes the WAL past 1000 pages also copies them into the database and
/// syncs it, while its caller (a local write, a live batch) waits: tens of
/// milliseconds, every hundred or so commits. Instead a thread with its own
/// connection runs a passive checkpoint every second, which never blocks a
/// commit, and leaves commits only the remainder, rarely (see
/// [`WAL_PAGES_BEFORE_COMMIT_CHECKPOINTS`]). It stops when dropped, and the
/// drop waits until its connection is closed.
pub(crate) struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread and raises the writer's auto-checkpoint threshold;
    /// `None` if its connection or thread cannot be had (commits then
    /// checkpoint as SQLite does by default).
    pub(crate) fn start(path: &Path, writer: &Connection, key: &MirrorKey) -> Option<Checkpointer> {
        let conn = connect(path, key).ok()?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
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
        writer
            .pragma_update(
                None,
                "wal_autocheckpoint",
                WAL_PAGES_BEFORE_COMMIT_CHECKPOINTS,
            )
            .ok()?;
        Some(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits until its connection is closed. Blocks
    /// for at most one checkpoint.
    pub(crate) fn finish(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Waits, like the last `DbThread` handle: a connection still
        // closing when the process exits races SQLCipher's exit handler.
        self.finish();
    }
}
