//! The PostgreSQL backend: any number of identical server instances on one
//! database, each a [`PgStorage`] with a small pool of connections.
//!
//! **The sequence across processes.** Every write transaction first locks
//! the one row of `sequence_head` (`SELECT … FOR UPDATE`) and holds it to
//! its commit, then numbers its changes from that head and moves the head in
//! the same transaction. So write transactions of every instance run one
//! after another, commit order is sequence order, and numbers are gap-free
//! (an abandoned transaction hands its numbers back by never moving the
//! head). Readers read `sequence_head.head` and the rows in one statement
//! (one snapshot), so a reader that sees head `h` sees every change up to
//! `h` and nothing later can appear below it. The same lock serializes the
//! clinic rules (double booking, stock ≥ 0, exactly-once per client and
//! mutation): every check reads the state left by the previous writer. The
//! cost: writes do not run in parallel across instances; each instance's
//! writer thread batches many pushes into one transaction (group commit),
//! so the lock is taken once per batch, not per mutation. Reads (catch-up,
//! pulls, history, sign-in) run in parallel on every instance.
//!
//! **One round trip per read, a few per commit.** Inside a write
//! transaction, reads go to the database (they see the last writer's
//! commit) and writes are kept in memory ([`Overlay`]) until commit, where
//! each kind goes out as one multi-row statement. Savepoints are therefore
//! in-memory too: no subtransactions, which PostgreSQL handles poorly in
//! the hundreds.
//!
//! **Wake-ups.** A commit that moved the head sends a payload-less
//! `NOTIFY clinic_changes`; ending sessions sends `NOTIFY clinic_sessions`.
//! [`Storage::watch`] keeps one extra connection per instance LISTENing and
//! reconnects with backoff when it drops; the server polls meanwhile.
//!
//! **Connections.** Each connection sets `idle_in_transaction_session_timeout`
//! (a process that dies or hangs inside a transaction cannot hold the
//! sequence lock for long), `lock_timeout` and `statement_timeout`. A
//! connection found broken is dropped; a read or a write that failed on a
//! stale connection before anything was committed is tried once more on a
//! fresh one, so a restarted PostgreSQL costs callers nothing but the wait.
//!
//! Rows and change data are `json` (kept exactly as written, parsed by
//! PostgreSQL for the expression indexes); ids are `uuid`; instants
//! `timestamptz`. Comparisons of ISO-8601 times stored in JSON use
//! `COLLATE "C"`, so they order as the bytes do whatever the database's
//! locale.

use super::transfer::{Chunk, CopyReport};
use super::{
    Change, ChangesPage, ClientRecord, LoggedChange, Session, Signal, Storage, StorageError,
    StorageResult, Wake, Watching, WriteTx, WriteWork,
};
use chrono::{DateTime, Utc};
use clinic_shared::apply::{Action, CurrentRow};
use clinic_shared::model::{Staff, SyncRow, Table, Timestamp};
use clinic_shared::protocol::{HistoryEntry, MutationOutcome};
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls, Statement};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Versioned schema migrations, applied in order; a migration never changes
/// once released.
const MIGRATIONS: &[&str] = &[
    // 1: the sequence head, rows, change log / audit, credentials, sessions,
    // clients, results.
    r#"
    CREATE TABLE sequence_head (
        only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
        head bigint NOT NULL
    );
    INSERT INTO sequence_head (only_row, head) VALUES (true, 0);
    CREATE TABLE rows (
        tbl text NOT NULL,
        id uuid NOT NULL,
        version bigint NOT NULL,
        deleted boolean NOT NULL DEFAULT false,
        data json NOT NULL,
        PRIMARY KEY (tbl, id)
    );
    CREATE INDEX rows_by_version ON rows (version);
    CREATE INDEX appointments_by_doctor ON rows ((data->>'doctor_id'), ((data->>'start') COLLATE "C"))
        WHERE tbl = 'appointments';
    CREATE UNIQUE INDEX staff_by_username ON rows ((data->>'username')) WHERE tbl = 'staff';
    CREATE TABLE changes (
        seq bigint PRIMARY KEY,
        tbl text NOT NULL,
        row_id uuid NOT NULL,
        action text NOT NULL,
        actor_id uuid,
        client_id uuid,
        mutation_id bigint,
        mutation text NOT NULL,
        at timestamptz NOT NULL,
        before json,
        after json NOT NULL
    );
    CREATE INDEX changes_by_row ON changes (tbl, row_id, seq);
    CREATE TABLE credentials (
        user_id uuid PRIMARY KEY,
        password_hash text NOT NULL
    );
    CREATE TABLE sessions (
        token_hash text PRIMARY KEY,
        user_id uuid NOT NULL,
        expires_at timestamptz NOT NULL
    );
    CREATE INDEX sessions_by_user ON sessions (user_id);
    CREATE TABLE clients (
        client_id uuid PRIMARY KEY,
        user_id uuid NOT NULL,
        last_mutation_id bigint NOT NULL
    );
    CREATE TABLE mutation_results (
        client_id uuid NOT NULL,
        mutation_id bigint NOT NULL,
        outcome json NOT NULL,
        PRIMARY KEY (client_id, mutation_id)
    );
    "#,
];

/// Taken by every process that migrates, so that instances starting at once
/// do not race (`pg_advisory_xact_lock`; the number is arbitrary but fixed).
const MIGRATION_LOCK: i64 = 0x636c_696e_6963; // "clinic"

/// Channel of commit wake-ups.
const CHANGES_CHANNEL: &str = "clinic_changes";
/// Channel of ended-session wake-ups.
const SESSIONS_CHANNEL: &str = "clinic_sessions";

/// Connections a [`PgStorage`] keeps at most unless told otherwise (the
/// LISTEN connection comes on top).
pub const DEFAULT_POOL_SIZE: usize = 8;

/// How long a caller waits for a free pooled connection before `Busy`.
const POOL_WAIT: Duration = Duration::from_secs(10);

/// Session settings of every connection. The idle-in-transaction limit
/// frees the sequence lock if a server hangs inside a transaction (a killed
/// one frees it at once: its socket closes); the lock timeout bounds how
/// long a writer waits for it.
const SESSION_SETTINGS: &str = "SET idle_in_transaction_session_timeout = '15s';
     SET lock_timeout = '15s';
     SET statement_timeout = '60s'";

/// A storage failure from a PostgreSQL error. Connection loss, timeouts,
/// serialization failures, lock waits, shutdowns and resource limits may
/// pass: `Busy`. The message carries the server's short message and code,
/// never its DETAIL (which can quote values).
fn db_err(e: postgres::Error) -> StorageError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let text = format!("{} ({})", db.message(), code.code());
        let class = &code.code()[..2];
        return if class == "08"
            || class == "53"
            || class == "57"
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::LOCK_NOT_AVAILABLE
            || *code == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
        {
            StorageError::Busy(text)
        } else if class == "XX" {
            StorageError::Corrupt(text)
        } else {
            StorageError::Database(text)
        };
    }
    if e.is_closed() || e.code().is_none() {
        // No answer from the server: connection refused, reset, closed.
        return StorageError::Busy(format!("database unreachable: {e}"));
    }
    StorageError::Database(e.to_string())
}

fn corrupt(what: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(what.to_string())
}

fn parse_table(s: &str) -> StorageResult<Table> {
    s.parse().map_err(corrupt)
}

fn parse_json(s: &str) -> StorageResult<serde_json::Value> {
    serde_json::from_str(s).map_err(|e| corrupt(format!("bad JSON in row: {e}")))
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

fn to_time(t: DateTime<Utc>) -> Timestamp {
    Timestamp::from_datetime(t)
}

/// Prepared statements of one connection, by their SQL.
#[derive(Default)]
struct Statements(HashMap<&'static str, Statement>);

impl Statements {
    fn get(
        &mut self,
        client: &mut impl GenericClient,
        sql: &'static str,
    ) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.0.get(sql) {
            return Ok(s.clone());
        }
        let s = client.prepare(sql)?;
        self.0.insert(sql, s.clone());
        Ok(s)
    }
}

/// One pooled connection and its prepared statements.
struct PgConn {
    client: Client,
    stmts: Statements,
}

impl PgConn {
    fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, postgres::Error> {
        let stmt = self.stmts.get(&mut self.client, sql)?;
        self.client.query(&stmt, params)
    }

    fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let stmt = self.stmts.get(&mut self.client, sql)?;
        self.client.execute(&stmt, params)
    }
}

/// A bounded pool of connections, opened on demand.
struct Pool {
    config: postgres::Config,
    max: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<PgConn>,
    open: usize,
}

impl Pool {
    fn connect(config: &postgres::Config) -> StorageResult<Client> {
        let mut client = config.connect(NoTls).map_err(db_err)?;
        client.batch_execute(SESSION_SETTINGS).map_err(db_err)?;
        Ok(client)
    }

    /// A connection, waiting at most [`POOL_WAIT`] for one to be free.
    fn get(&self) -> StorageResult<Pooled<'_>> {
        let deadline = Instant::now() + POOL_WAIT;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            while let Some(conn) = state.idle.pop() {
                if conn.client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(Pooled {
                    pool: self,
                    conn: Some(conn),
                });
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match Self::connect(&self.config) {
                    Ok(client) => Ok(Pooled {
                        pool: self,
                        conn: Some(PgConn {
                            client,
                            stmts: Statements::default(),
                        }),
                    }),
                    Err(e) => {
                        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                        state.open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StorageError::Busy(format!(
                    "all {} database connections are busy",
                    self.max
                )));
            }
            state = self
                .freed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Closes every idle connection (the next calls open new ones).
    fn clear(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let n = state.idle.len();
        state.idle.clear();
        state.open -= n;
    }
}

/// A connection on loan; back to the pool on drop unless it broke.
struct Pooled<'p> {
    pool: &'p Pool,
    conn: Option<PgConn>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = PgConn;
    fn deref(&self) -> &PgConn {
        self.conn.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut PgConn {
        self.conn.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let mut state = self.pool.state.lock().unwrap_or_else(|p| p.into_inner());
        match self.conn.take() {
            Some(conn) if !conn.client.is_closed() => state.idle.push(conn),
            _ => state.open -= 1,
        }
        self.pool.freed.notify_one();
    }
}

/// PostgreSQL storage.
pub struct PgStorage {
    pool: Pool,
    /// The URL without its password, for messages.
    display: String,
}

/// The URL as it may be shown: the password replaced.
pub fn redact_url(url: &str) -> String {
    // postgres://user:password@host/... → postgres://user:***@host/...
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((auth, host)) = rest.split_once('@')
        && let Some((user, _)) = auth.split_once(':')
    {
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_owned()
}

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl PgStorage {
    /// Connects to the database at `url` (`postgres://user@host:port/db`,
    /// libpq's URL and key=value forms), brings its schema up to date, and
    /// keeps at most `pool_size` connections.
    pub fn open(url: &str, pool_size: usize) -> StorageResult<Self> {
        let mut config = postgres::Config::from_str(url)
            .map_err(|e| StorageError::Database(format!("bad database URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("clinic-server");
        }
        // A database host that vanished is noticed in ~20 s, not hours.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        let storage = PgStorage {
            pool: Pool {
                config,
                max: pool_size.max(1),
                state: Mutex::new(PoolState {
                    idle: Vec::new(),
                    open: 0,
                }),
                freed: Condvar::new(),
            },
            display: redact_url(url),
        };
        storage.migrate()?;
        Ok(storage)
    }

    /// The database, as it may be shown (no password).
    pub fn display_url(&self) -> &str {
        &self.display
    }

    fn migrate(&self) -> StorageResult<()> {
        let mut conn = self.pool.get()?;
        let mut tx = conn.client.transaction().map_err(db_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(db_err)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL)",
        )
        .map_err(db_err)?;
        let current: i32 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )
            .map_err(db_err)?
            .get(0);
        let known = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
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
            tx.batch_execute(sql).map_err(db_err)?;
            let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())",
                &[&version],
            )
            .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// Runs `f` on a pooled connection; once more on a fresh connection if
    /// the first one turned out to be broken (a restarted database). Only
    /// for work that is safe to repeat.
    fn read<T>(&self, mut f: impl FnMut(&mut PgConn) -> StorageResult<T>) -> StorageResult<T> {
        let mut conn = self.pool.get()?;
        match f(&mut conn) {
            Err(e) if conn.client.is_closed() => {
                drop(conn);
                // Every idle connection is likely as stale as this one.
                self.pool.clear();
                tracing::info!(error = %e, "database connection lost; retrying on a new one");
                let mut conn = self.pool.get()?;
                f(&mut conn)
            }
            other => other,
        }
    }

    /// Whether the database has any data (a migration target must not).
    pub fn is_empty(&self) -> StorageResult<bool> {
        self.read(|c| {
            let rows = c
                .query(
                    "SELECT (SELECT head FROM sequence_head) = 0
                        AND NOT EXISTS (SELECT 1 FROM rows)
                        AND NOT EXISTS (SELECT 1 FROM credentials)
                        AND NOT EXISTS (SELECT 1 FROM sessions)
                        AND NOT EXISTS (SELECT 1 FROM clients)",
                    &[],
                )
                .map_err(db_err)?;
            Ok(rows.first().is_some_and(|r| r.get::<_, bool>(0)))
        })
    }

    /// Runs `f` in one transaction on a dedicated connection without the
    /// sequence lock and without timeouts: bulk loading (`migrate`).
    pub(crate) fn bulk<T>(
        &self,
        f: impl FnOnce(&mut postgres::Transaction<'_>) -> StorageResult<T>,
    ) -> StorageResult<T> {
        let mut conn = self.pool.get()?;
        conn.client
            .batch_execute("SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0")
            .map_err(db_err)?;
        let result = (|| {
            let mut tx = conn.client.transaction().map_err(db_err)?;
            tx.execute("SELECT head FROM sequence_head FOR UPDATE", &[])
                .map_err(db_err)?;
            let out = f(&mut tx)?;
            tx.commit().map_err(db_err)?;
            Ok(out)
        })();
        // Back to the usual limits before the connection returns to the pool.
        let _ = conn.client.batch_execute(SESSION_SETTINGS);
        result
    }

    /// One try of a write transaction. On failure, also says whether
    /// COMMIT had been sent (then whether it took effect is unknown).
    fn try_write(
        &self,
        conn: &mut PgConn,
        work: &mut WriteWork<'_>,
    ) -> Result<(), (StorageError, bool)> {
        let PgConn { client, stmts } = conn;
        let before = |e| (e, false);
        let mut tx = client.transaction().map_err(db_err).map_err(before)?;
        let lock = stmts
            .get(&mut tx, "SELECT head FROM sequence_head FOR UPDATE")
            .map_err(db_err)
            .map_err(before)?;
        let head: i64 = tx
            .query_one(&lock, &[])
            .map_err(db_err)
            .map_err(before)?
            .get(0);
        let mut ptx = PgTx {
            tx,
            stmts,
            head: to_u64(head),
            overlay: Overlay::default(),
            db_clients: HashMap::new(),
        };
        work(&mut ptx).map_err(before)?;
        ptx.flush().map_err(before)?;
        ptx.tx.commit().map_err(|e| (db_err(e), true))
    }
}

/// Multi-row writes, one statement each (arrays in, `unnest` out).
const UPSERT_ROWS: &str = "INSERT INTO rows (tbl, id, version, deleted, data)
                 SELECT t, i, v, d, x::json
                 FROM unnest($1::text[], $2::uuid[], $3::int8[], $4::bool[], $5::text[]) AS u(t, i, v, d, x)
                 ON CONFLICT (tbl, id) DO UPDATE SET version = excluded.version,
                     deleted = excluded.deleted, data = excluded.data";
const INSERT_CHANGES: &str = "INSERT INTO changes (seq, tbl, row_id, action, actor_id, client_id, mutation_id, mutation, at, before, after)
                 SELECT s, t, r, a, ac, cl, m, mu, w, b::json, af::json
                 FROM unnest($1::int8[], $2::text[], $3::uuid[], $4::text[], $5::uuid[], $6::uuid[],
                             $7::int8[], $8::text[], $9::timestamptz[], $10::text[], $11::text[])
                      AS u(s, t, r, a, ac, cl, m, mu, w, b, af)";
const INSERT_RESULTS: &str = "INSERT INTO mutation_results (client_id, mutation_id, outcome)
                 SELECT c, m, o::json FROM unnest($1::uuid[], $2::int8[], $3::text[]) AS u(c, m, o)";
const UPSERT_CLIENTS: &str = "INSERT INTO clients (client_id, user_id, last_mutation_id)
                 SELECT c, u, l FROM unnest($1::uuid[], $2::uuid[], $3::int8[]) AS x(c, u, l)
                 ON CONFLICT (client_id) DO UPDATE SET last_mutation_id = excluded.last_mutation_id";
const UPSERT_CREDENTIALS: &str = "INSERT INTO credentials (user_id, password_hash)
                 SELECT u, h FROM unnest($1::uuid[], $2::text[]) AS x(u, h)
                 ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash";
const INSERT_SESSIONS: &str = "INSERT INTO sessions (token_hash, user_id, expires_at)
     SELECT h, u, e FROM unnest($1::text[], $2::uuid[], $3::timestamptz[]) AS x(h, u, e)";

/// Writes of one transaction, held until commit.
#[derive(Default)]
struct Overlay {
    rows: HashMap<(Table, Uuid), CurrentRow>,
    changes: Vec<Change>,
    clients: HashMap<Uuid, ClientRecord>,
    outcomes: HashMap<(Uuid, u64), MutationOutcome>,
    passwords: HashMap<Uuid, String>,
    ended_users: Vec<Uuid>,
    undo: Vec<Undo>,
    marks: Vec<(usize, usize)>,
}

/// How to take back one overlay write.
enum Undo {
    Row((Table, Uuid), Option<CurrentRow>),
    Client(Uuid, Option<ClientRecord>),
    Outcome((Uuid, u64)),
    Password(Uuid, Option<String>),
    EndedUser,
}

impl Overlay {
    fn rollback_to(&mut self, (undo, changes): (usize, usize)) {
        while self.undo.len() > undo {
            match self.undo.pop() {
                Some(Undo::Row(key, Some(prev))) => {
                    self.rows.insert(key, prev);
                }
                Some(Undo::Row(key, None)) => {
                    self.rows.remove(&key);
                }
                Some(Undo::Client(id, Some(prev))) => {
                    self.clients.insert(id, prev);
                }
                Some(Undo::Client(id, None)) => {
                    self.clients.remove(&id);
                }
                Some(Undo::Outcome(key)) => {
                    self.outcomes.remove(&key);
                }
                Some(Undo::Password(id, Some(prev))) => {
                    self.passwords.insert(id, prev);
                }
                Some(Undo::Password(id, None)) => {
                    self.passwords.remove(&id);
                }
                Some(Undo::EndedUser) => {
                    self.ended_users.pop();
                }
                None => break,
            }
        }
        self.changes.truncate(changes);
    }
}

/// A write transaction holding the sequence lock.
struct PgTx<'c> {
    tx: postgres::Transaction<'c>,
    stmts: &'c mut Statements,
    /// The committed head when the lock was taken.
    head: u64,
    overlay: Overlay,
    /// Client records read from the database in this transaction.
    db_clients: HashMap<Uuid, Option<ClientRecord>>,
}

impl PgTx<'_> {
    fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> StorageResult<Vec<postgres::Row>> {
        let stmt = self.stmts.get(&mut self.tx, sql).map_err(db_err)?;
        self.tx.query(&stmt, params).map_err(db_err)
    }

    fn execute(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> StorageResult<u64> {
        let stmt = self.stmts.get(&mut self.tx, sql).map_err(db_err)?;
        self.tx.execute(&stmt, params).map_err(db_err)
    }

    fn db_client(&mut self, client_id: Uuid) -> StorageResult<Option<ClientRecord>> {
        if let Some(known) = self.db_clients.get(&client_id) {
            return Ok(*known);
        }
        let rows = self.query(
            "SELECT user_id, last_mutation_id FROM clients WHERE client_id = $1",
            &[&client_id],
        )?;
        let record = rows.first().map(|r| ClientRecord {
            user_id: r.get(0),
            last_mutation_id: to_u64(r.get(1)),
        });
        self.db_clients.insert(client_id, record);
        Ok(record)
    }

    /// Sends every held write, moves the head and wakes the other instances.
    fn flush(&mut self) -> StorageResult<()> {
        let overlay = std::mem::take(&mut self.overlay);
        if !overlay.rows.is_empty() {
            let mut tbl = Vec::with_capacity(overlay.rows.len());
            let mut id = Vec::with_capacity(overlay.rows.len());
            let mut version = Vec::with_capacity(overlay.rows.len());
            let mut deleted = Vec::with_capacity(overlay.rows.len());
            let mut data = Vec::with_capacity(overlay.rows.len());
            for ((t, i), row) in &overlay.rows {
                tbl.push(t.as_str());
                id.push(*i);
                version.push(to_i64(row.version));
                deleted.push(row.deleted);
                data.push(row.data.to_string());
            }
            self.execute(UPSERT_ROWS, &[&tbl, &id, &version, &deleted, &data])?;
        }
        if !overlay.changes.is_empty() {
            insert_changes(&mut self.tx, self.stmts, &overlay.changes)?;
        }
        if !overlay.outcomes.is_empty() {
            let mut client = Vec::with_capacity(overlay.outcomes.len());
            let mut mutation = Vec::with_capacity(overlay.outcomes.len());
            let mut outcome = Vec::with_capacity(overlay.outcomes.len());
            for ((c, m), o) in &overlay.outcomes {
                client.push(*c);
                mutation.push(to_i64(*m));
                outcome.push(
                    serde_json::to_string(o).map_err(|e| StorageError::Database(e.to_string()))?,
                );
            }
            self.execute(INSERT_RESULTS, &[&client, &mutation, &outcome])?;
        }
        if !overlay.clients.is_empty() {
            let mut client = Vec::with_capacity(overlay.clients.len());
            let mut user = Vec::with_capacity(overlay.clients.len());
            let mut last = Vec::with_capacity(overlay.clients.len());
            for (c, r) in &overlay.clients {
                client.push(*c);
                user.push(r.user_id);
                last.push(to_i64(r.last_mutation_id));
            }
            self.execute(UPSERT_CLIENTS, &[&client, &user, &last])?;
        }
        if !overlay.passwords.is_empty() {
            let (users, hashes): (Vec<Uuid>, Vec<String>) = overlay.passwords.into_iter().unzip();
            self.execute(UPSERT_CREDENTIALS, &[&users, &hashes])?;
        }
        if !overlay.ended_users.is_empty() {
            self.execute(
                "DELETE FROM sessions WHERE user_id = ANY($1::uuid[])",
                &[&overlay.ended_users],
            )?;
            self.execute("SELECT pg_notify($1, '')", &[&SESSIONS_CHANNEL])?;
        }
        if let Some(last) = overlay.changes.last() {
            self.execute(
                "UPDATE sequence_head SET head = $1",
                &[&to_i64(last.seq.max(self.head))],
            )?;
            self.execute("SELECT pg_notify($1, '')", &[&CHANGES_CHANNEL])?;
        }
        Ok(())
    }
}

/// Appends change log entries in one statement.
fn insert_changes(
    tx: &mut postgres::Transaction<'_>,
    stmts: &mut Statements,
    changes: &[Change],
) -> StorageResult<()> {
    let n = changes.len();
    let mut seq = Vec::with_capacity(n);
    let mut tbl = Vec::with_capacity(n);
    let mut row_id = Vec::with_capacity(n);
    let mut action = Vec::with_capacity(n);
    let mut actor = Vec::with_capacity(n);
    let mut client = Vec::with_capacity(n);
    let mut mutation_id = Vec::with_capacity(n);
    let mut mutation = Vec::with_capacity(n);
    let mut at = Vec::with_capacity(n);
    let mut before = Vec::with_capacity(n);
    let mut after = Vec::with_capacity(n);
    for c in changes {
        seq.push(to_i64(c.seq));
        tbl.push(c.table.as_str());
        row_id.push(c.id);
        action.push(c.action.as_str());
        actor.push(c.actor_id);
        client.push(c.client_id);
        mutation_id.push(c.mutation_id.map(to_i64));
        mutation.push(c.mutation.as_str());
        at.push(c.at.as_datetime());
        before.push(c.before.as_ref().map(|b| b.to_string()));
        after.push(c.after.to_string());
    }
    let stmt = stmts.get(tx, INSERT_CHANGES).map_err(db_err)?;
    tx.execute(
        &stmt,
        &[
            &seq,
            &tbl,
            &row_id,
            &action,
            &actor,
            &client,
            &mutation_id,
            &mutation,
            &at,
            &before,
            &after,
        ],
    )
    .map_err(db_err)?;
    Ok(())
}

/// Writes one chunk of a copied clinic ([`super::transfer`]).
pub(crate) fn import_chunk(tx: &mut postgres::Transaction<'_>, chunk: &Chunk) -> StorageResult<()> {
    let mut stmts = Statements::default();
    let run = |tx: &mut postgres::Transaction<'_>,
               sql: &'static str,
               params: &[&(dyn ToSql + Sync)]|
     -> StorageResult<()> {
        tx.execute(sql, params).map_err(db_err)?;
        Ok(())
    };
    match chunk {
        Chunk::Rows(rows) => {
            let tbl: Vec<&str> = rows.iter().map(|r| r.table.as_str()).collect();
            let id: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
            let version: Vec<i64> = rows.iter().map(|r| to_i64(r.version)).collect();
            let deleted: Vec<bool> = rows.iter().map(|r| r.deleted).collect();
            let data: Vec<&str> = rows.iter().map(|r| r.data.as_str()).collect();
            run(tx, UPSERT_ROWS, &[&tbl, &id, &version, &deleted, &data])
        }
        Chunk::Changes(changes) => insert_changes(tx, &mut stmts, changes),
        Chunk::Credentials(creds) => {
            let users: Vec<Uuid> = creds.iter().map(|c| c.0).collect();
            let hashes: Vec<&str> = creds.iter().map(|c| c.1.as_str()).collect();
            run(tx, UPSERT_CREDENTIALS, &[&users, &hashes])
        }
        Chunk::Sessions(sessions) => {
            let hashes: Vec<&str> = sessions.iter().map(|s| s.0.as_str()).collect();
            let users: Vec<Uuid> = sessions.iter().map(|s| s.1.user_id).collect();
            let expires: Vec<DateTime<Utc>> = sessions
                .iter()
                .map(|s| s.1.expires_at.as_datetime())
                .collect();
            run(tx, INSERT_SESSIONS, &[&hashes, &users, &expires])
        }
        Chunk::Clients(clients) => {
            let ids: Vec<Uuid> = clients.iter().map(|c| c.0).collect();
            let users: Vec<Uuid> = clients.iter().map(|c| c.1.user_id).collect();
            let last: Vec<i64> = clients
                .iter()
                .map(|c| to_i64(c.1.last_mutation_id))
                .collect();
            run(tx, UPSERT_CLIENTS, &[&ids, &users, &last])
        }
        Chunk::Results(results) => {
            let clients: Vec<Uuid> = results.iter().map(|r| r.0).collect();
            let ids: Vec<i64> = results.iter().map(|r| to_i64(r.1)).collect();
            let outcomes: Vec<&str> = results.iter().map(|r| r.2.as_str()).collect();
            run(tx, INSERT_RESULTS, &[&clients, &ids, &outcomes])
        }
    }
}

/// Sets the sequence head (after a copy).
pub(crate) fn set_head(tx: &mut postgres::Transaction<'_>, head: u64) -> StorageResult<()> {
    tx.execute("UPDATE sequence_head SET head = $1", &[&to_i64(head)])
        .map_err(db_err)?;
    Ok(())
}

/// How many of each kind of record the database holds, and its head.
pub(crate) fn count_all(tx: &mut postgres::Transaction<'_>) -> StorageResult<CopyReport> {
    let r = tx
        .query_one(
            "SELECT (SELECT COUNT(*) FROM rows), (SELECT COUNT(*) FROM changes),
                    (SELECT head FROM sequence_head), (SELECT COUNT(*) FROM credentials),
                    (SELECT COUNT(*) FROM sessions), (SELECT COUNT(*) FROM clients),
                    (SELECT COUNT(*) FROM mutation_results)",
            &[],
        )
        .map_err(db_err)?;
    let n = |i: usize| to_u64(r.get::<_, i64>(i));
    Ok(CopyReport {
        rows: n(0),
        changes: n(1),
        head: n(2),
        credentials: n(3),
        sessions: n(4),
        clients: n(5),
        results: n(6),
    })
}

fn overlaps(
    data: &serde_json::Value,
    doctor: &str,
    earliest: &str,
    start: &str,
    end: &str,
) -> bool {
    let field = |name: &str| data.get(name).and_then(|v| v.as_str()).unwrap_or("");
    let a_start = field("start");
    field("doctor_id") == doctor
        && a_start >= earliest
        && a_start < end
        && field("end") > start
        && !matches!(field("status"), "cancelled" | "no_show")
}

impl WriteTx for PgTx<'_> {
    fn head(&mut self) -> StorageResult<u64> {
        Ok(self
            .overlay
            .changes
            .last()
            .map_or(self.head, |c| c.seq.max(self.head)))
    }

    fn row(&mut self, table: Table, id: Uuid) -> StorageResult<Option<CurrentRow>> {
        if let Some(row) = self.overlay.rows.get(&(table, id)) {
            return Ok(Some(row.clone()));
        }
        let rows = self.query(
            "SELECT version, deleted, data::text FROM rows WHERE tbl = $1 AND id = $2",
            &[&table.as_str(), &id],
        )?;
        rows.first()
            .map(|r| {
                Ok(CurrentRow {
                    version: to_u64(r.get(0)),
                    deleted: r.get(1),
                    data: parse_json(r.get(2))?,
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
        let (doctor, earliest, start, end) = (
            doctor_id.to_string(),
            earliest.to_string(),
            start.to_string(),
            end.to_string(),
        );
        let rows = self.query(
            "SELECT id FROM rows
             WHERE tbl = 'appointments' AND deleted = false
               AND data->>'doctor_id' = $1
               AND (data->>'start') COLLATE \"C\" >= $2
               AND (data->>'start') COLLATE \"C\" < $3
               AND (data->>'end') COLLATE \"C\" > $4
               AND data->>'status' NOT IN ('cancelled', 'no_show')
               AND id <> $5",
            &[&doctor, &earliest, &end, &start, &exclude],
        )?;
        let mut ids: Vec<Uuid> = rows
            .iter()
            .map(|r| r.get::<_, Uuid>(0))
            // Rows written in this transaction are judged by their new state.
            .filter(|id| !self.overlay.rows.contains_key(&(Table::Appointments, *id)))
            .collect();
        for ((table, id), row) in &self.overlay.rows {
            if *table == Table::Appointments
                && *id != exclude
                && !row.deleted
                && overlaps(&row.data, &doctor, &earliest, &start, &end)
            {
                ids.push(*id);
            }
        }
        Ok(ids)
    }

    fn staff_id_by_username(&mut self, username: &str) -> StorageResult<Option<Uuid>> {
        for ((table, id), row) in &self.overlay.rows {
            if *table == Table::Staff
                && row.data.get("username").and_then(|u| u.as_str()) == Some(username)
            {
                return Ok(Some(*id));
            }
        }
        let rows = self.query(
            "SELECT id FROM rows WHERE tbl = 'staff' AND data->>'username' = $1",
            &[&username],
        )?;
        Ok(rows
            .first()
            .map(|r| r.get::<_, Uuid>(0))
            // Renamed in this transaction: no longer that username.
            .filter(|id| !self.overlay.rows.contains_key(&(Table::Staff, *id))))
    }

    fn put(&mut self, c: &Change) -> StorageResult<()> {
        let key = (c.table, c.id);
        let previous = self.overlay.rows.insert(
            key,
            CurrentRow {
                version: c.seq,
                deleted: c.action == Action::Delete,
                data: c.after.clone(),
            },
        );
        self.overlay.undo.push(Undo::Row(key, previous));
        self.overlay.changes.push(c.clone());
        Ok(())
    }

    fn changes_to_row_since(
        &mut self,
        table: Table,
        id: Uuid,
        after: u64,
    ) -> StorageResult<Vec<LoggedChange>> {
        let rows = self.query(
            "SELECT seq, client_id, before::text, after::text FROM changes
             WHERE tbl = $1 AND row_id = $2 AND seq > $3 ORDER BY seq",
            &[&table.as_str(), &id, &to_i64(after)],
        )?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(LoggedChange {
                    seq: to_u64(r.get(0)),
                    client_id: r.get(1),
                    before: r.get::<_, Option<&str>>(2).map(parse_json).transpose()?,
                    after: parse_json(r.get(3))?,
                })
            })
            .collect::<StorageResult<Vec<_>>>()?;
        out.extend(
            self.overlay
                .changes
                .iter()
                .filter(|c| c.table == table && c.id == id && c.seq > after)
                .map(|c| LoggedChange {
                    seq: c.seq,
                    client_id: c.client_id,
                    before: c.before.clone(),
                    after: c.after.clone(),
                }),
        );
        Ok(out)
    }

    fn client(&mut self, client_id: Uuid) -> StorageResult<Option<ClientRecord>> {
        if let Some(r) = self.overlay.clients.get(&client_id) {
            return Ok(Some(*r));
        }
        self.db_client(client_id)
    }

    fn set_client(&mut self, client_id: Uuid, record: ClientRecord) -> StorageResult<()> {
        // As an upsert that keeps the user a client is bound to.
        let user_id = match self.client(client_id)? {
            Some(existing) => existing.user_id,
            None => record.user_id,
        };
        let previous = self.overlay.clients.insert(
            client_id,
            ClientRecord {
                user_id,
                last_mutation_id: record.last_mutation_id,
            },
        );
        self.overlay.undo.push(Undo::Client(client_id, previous));
        Ok(())
    }

    fn stored_outcome(
        &mut self,
        client_id: Uuid,
        mutation_id: u64,
    ) -> StorageResult<Option<MutationOutcome>> {
        if let Some(o) = self.overlay.outcomes.get(&(client_id, mutation_id)) {
            return Ok(Some(o.clone()));
        }
        let rows = self.query(
            "SELECT outcome::text FROM mutation_results WHERE client_id = $1 AND mutation_id = $2",
            &[&client_id, &to_i64(mutation_id)],
        )?;
        rows.first()
            .map(|r| {
                serde_json::from_str(r.get(0))
                    .map_err(|e| corrupt(format!("bad stored outcome: {e}")))
            })
            .transpose()
    }

    fn store_outcome(
        &mut self,
        client_id: Uuid,
        mutation_id: u64,
        outcome: &MutationOutcome,
    ) -> StorageResult<()> {
        let key = (client_id, mutation_id);
        if self.overlay.outcomes.contains_key(&key) {
            return Err(StorageError::Database(format!(
                "outcome of mutation {mutation_id} of client {client_id} stored twice"
            )));
        }
        self.overlay.outcomes.insert(key, outcome.clone());
        self.overlay.undo.push(Undo::Outcome(key));
        Ok(())
    }

    fn set_password_hash(&mut self, user_id: Uuid, hash: &str) -> StorageResult<()> {
        let previous = self.overlay.passwords.insert(user_id, hash.to_owned());
        self.overlay.undo.push(Undo::Password(user_id, previous));
        Ok(())
    }

    fn delete_sessions_of(&mut self, user_id: Uuid) -> StorageResult<()> {
        self.overlay.ended_users.push(user_id);
        self.overlay.undo.push(Undo::EndedUser);
        Ok(())
    }

    fn savepoint(&mut self) -> StorageResult<()> {
        self.overlay
            .marks
            .push((self.overlay.undo.len(), self.overlay.changes.len()));
        Ok(())
    }

    fn rollback_to_savepoint(&mut self) -> StorageResult<()> {
        let mark = self
            .overlay
            .marks
            .pop()
            .ok_or_else(|| StorageError::Database("no savepoint to roll back to".into()))?;
        self.overlay.rollback_to(mark);
        Ok(())
    }

    fn release_savepoint(&mut self) -> StorageResult<()> {
        self.overlay
            .marks
            .pop()
            .map(|_| ())
            .ok_or_else(|| StorageError::Database("no savepoint to release".into()))
    }
}

fn staff_from_json(data: &str) -> StorageResult<Staff> {
    serde_json::from_str(data).map_err(|e| corrupt(format!("staff row: {e}")))
}

/// The columns of `changes` in [`change_from_row`]'s order.
macro_rules! change_columns {
    () => {
        "c.seq, c.tbl, c.row_id, c.action, c.actor_id, c.client_id, c.mutation_id, c.mutation, c.at, c.before::text, c.after::text"
    };
}

fn change_from_row(r: &postgres::Row) -> StorageResult<Change> {
    Ok(Change {
        seq: to_u64(r.get(0)),
        table: parse_table(r.get(1))?,
        id: r.get(2),
        action: parse_action(r.get(3))?,
        actor_id: r.get(4),
        client_id: r.get(5),
        mutation_id: r.get::<_, Option<i64>>(6).map(to_u64),
        mutation: r.get(7),
        at: to_time(r.get(8)),
        before: r.get::<_, Option<&str>>(9).map(parse_json).transpose()?,
        after: parse_json(r.get(10))?,
    })
}

impl Storage for PgStorage {
    fn write(&self, work: &mut WriteWork<'_>) -> StorageResult<()> {
        let mut conn = self.pool.get()?;
        match self.try_write(&mut conn, work) {
            Ok(()) => Ok(()),
            // The connection was stale (the database restarted since it was
            // last used) and COMMIT was never sent, so nothing took effect:
            // once more on a fresh connection.
            Err((e, false)) if conn.client.is_closed() => {
                drop(conn);
                self.pool.clear();
                tracing::info!(error = %e, "database connection lost; retrying the write on a new one");
                let mut conn = self.pool.get()?;
                self.try_write(&mut conn, work).map_err(|(e, _)| e)
            }
            Err((e, _)) => Err(e),
        }
    }

    fn head(&self) -> StorageResult<u64> {
        self.read(|c| {
            let rows = c
                .query("SELECT head FROM sequence_head", &[])
                .map_err(db_err)?;
            Ok(rows.first().map_or(0, |r| to_u64(r.get(0))))
        })
    }

    fn changes_page(
        &self,
        tables: &[Table],
        after: u64,
        limit: usize,
        client: Option<Uuid>,
    ) -> StorageResult<ChangesPage> {
        let names: Vec<&str> = tables.iter().map(|t| t.as_str()).collect();
        let limit_plus_one = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        self.read(|c| {
            // One statement, one snapshot: head, rows and acknowledgement agree.
            let raw = c
                .query(
                    "SELECT h.head, r.tbl, r.id, r.version, r.deleted, r.data::text,
                            (SELECT last_mutation_id FROM clients WHERE client_id = $4)
                     FROM sequence_head h
                     LEFT JOIN LATERAL (
                         SELECT tbl, id, version, deleted, data FROM rows
                         WHERE version > $1 AND version <= h.head AND tbl = ANY($2)
                         ORDER BY version LIMIT $3
                     ) r ON true
                     ORDER BY r.version",
                    &[&to_i64(after), &names, &limit_plus_one, &client],
                )
                .map_err(db_err)?;
            let head = raw.first().map_or(0, |r| to_u64(r.get(0)));
            let ack: Option<u64> = raw
                .first()
                .and_then(|r| r.get::<_, Option<i64>>(6))
                .map(to_u64);
            let mut rows = Vec::with_capacity(raw.len());
            for r in &raw {
                let Some(tbl) = r.get::<_, Option<&str>>(1) else {
                    continue;
                };
                let deleted: bool = r.get(4);
                rows.push(SyncRow {
                    table: parse_table(tbl)?,
                    id: r.get(2),
                    version: to_u64(r.get(3)),
                    deleted,
                    data: if deleted {
                        None
                    } else {
                        Some(parse_json(r.get(5))?)
                    },
                });
            }
            let more = rows.len() > limit;
            rows.truncate(limit);
            let cursor = if more {
                rows.last().map_or(after, |r| r.version)
            } else {
                head.max(after)
            };
            Ok(ChangesPage {
                rows,
                cursor,
                more,
                last_mutation_id: if more || client.is_none() { None } else { ack },
            })
        })
    }

    fn committed_between(&self, after: u64, upto: u64) -> StorageResult<Vec<Change>> {
        self.read(|c| {
            let rows = c
                .query(
                    concat!(
                        "SELECT ",
                        change_columns!(),
                        " FROM changes c WHERE c.seq > $1 AND c.seq <= $2 ORDER BY c.seq"
                    ),
                    &[&to_i64(after), &to_i64(upto)],
                )
                .map_err(db_err)?;
            rows.iter().map(change_from_row).collect()
        })
    }

    fn history(&self, table: Table, id: Uuid) -> StorageResult<Vec<HistoryEntry>> {
        self.read(|c| {
            let rows = c
                .query(
                    concat!(
                        "SELECT ",
                        change_columns!(),
                        ", s.data->>'display_name' FROM changes c
                         LEFT JOIN rows s ON s.tbl = 'staff' AND s.id = c.actor_id
                         WHERE c.tbl = $1 AND c.row_id = $2 ORDER BY c.seq"
                    ),
                    &[&table.as_str(), &id],
                )
                .map_err(db_err)?;
            rows.iter()
                .map(|r| {
                    let change = change_from_row(r)?;
                    let deleted = change.action == Action::Delete;
                    Ok(HistoryEntry {
                        seq: change.seq,
                        at: change.at,
                        action: change.action.as_str().to_owned(),
                        actor_id: change.actor_id,
                        actor_name: if change.actor_id.is_some() {
                            r.get(11)
                        } else {
                            None
                        },
                        client_id: change.client_id,
                        mutation_id: change.mutation_id,
                        mutation: change.mutation,
                        before: change.before,
                        after: if deleted { None } else { Some(change.after) },
                    })
                })
                .collect()
        })
    }

    fn staff_by_username(&self, username: &str) -> StorageResult<Option<(Staff, Option<String>)>> {
        self.read(|c| {
            let rows = c
                .query(
                    "SELECT r.data::text, cr.password_hash FROM rows r
                     LEFT JOIN credentials cr ON cr.user_id = r.id
                     WHERE r.tbl = 'staff' AND r.deleted = false AND r.data->>'username' = $1",
                    &[&username],
                )
                .map_err(db_err)?;
            rows.first()
                .map(|r| Ok((staff_from_json(r.get(0))?, r.get(1))))
                .transpose()
        })
    }

    fn staff(&self, id: Uuid) -> StorageResult<Option<Staff>> {
        self.read(|c| {
            let rows = c
                .query(
                    "SELECT data::text FROM rows WHERE tbl = 'staff' AND id = $1 AND deleted = false",
                    &[&id],
                )
                .map_err(db_err)?;
            rows.first().map(|r| staff_from_json(r.get(0))).transpose()
        })
    }

    fn client(&self, client_id: Uuid) -> StorageResult<Option<ClientRecord>> {
        self.read(|c| {
            let rows = c
                .query(
                    "SELECT user_id, last_mutation_id FROM clients WHERE client_id = $1",
                    &[&client_id],
                )
                .map_err(db_err)?;
            Ok(rows.first().map(|r| ClientRecord {
                user_id: r.get(0),
                last_mutation_id: to_u64(r.get(1)),
            }))
        })
    }

    fn create_session(&self, token_hash: &str, session: &Session) -> StorageResult<()> {
        let expires = session.expires_at.as_datetime();
        // Not repeated on a stale connection: a lost answer after a commit
        // would make the retry fail on the duplicate; the caller retries.
        let mut conn = self.pool.get()?;
        conn.execute(
            "INSERT INTO sessions (token_hash, user_id, expires_at) VALUES ($1, $2, $3)",
            &[&token_hash, &session.user_id, &expires],
        )
        .map_err(db_err)?;
        Ok(())
    }

    fn session(&self, token_hash: &str) -> StorageResult<Option<Session>> {
        self.read(|c| {
            let rows = c
                .query(
                    "SELECT user_id, expires_at FROM sessions WHERE token_hash = $1",
                    &[&token_hash],
                )
                .map_err(db_err)?;
            Ok(rows.first().map(|r| Session {
                user_id: r.get(0),
                expires_at: to_time(r.get(1)),
            }))
        })
    }

    fn delete_session(&self, token_hash: &str) -> StorageResult<()> {
        self.read(|c| {
            // The wake-up goes out only if a session was deleted, at commit.
            c.execute(
                "WITH gone AS (DELETE FROM sessions WHERE token_hash = $1 RETURNING 1)
                 SELECT pg_notify($2, '') FROM gone",
                &[&token_hash, &SESSIONS_CHANNEL],
            )
            .map_err(db_err)?;
            Ok(())
        })
    }

    fn purge_expired_sessions(&self, now: Timestamp) -> StorageResult<usize> {
        let now = now.as_datetime();
        self.read(|c| {
            let n = c
                .execute("DELETE FROM sessions WHERE expires_at <= $1", &[&now])
                .map_err(db_err)?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    fn existing_sessions(&self, token_hashes: &[String]) -> StorageResult<Vec<String>> {
        if token_hashes.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|c| {
            let rows = c
                .query(
                    "SELECT token_hash FROM sessions WHERE token_hash = ANY($1)",
                    &[&token_hashes],
                )
                .map_err(db_err)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn watch(&self, wake: Wake) -> StorageResult<Option<Watching>> {
        let stop = Arc::new(AtomicBool::new(false));
        let connected = Arc::new(AtomicBool::new(false));
        let config = self.pool.config.clone();
        let (s, c) = (stop.clone(), connected.clone());
        std::thread::Builder::new()
            .name("clinic-pg-listen".into())
            .spawn(move || listen(config, wake, s, c))
            .map_err(|e| StorageError::Database(format!("could not start the listener: {e}")))?;
        Ok(Some(Watching::new(stop, connected)))
    }
}

/// The LISTEN loop: one connection, reconnected with backoff; every
/// notification becomes a wake-up. After each (re)connection it wakes for
/// both signals, since notifications sent while it was away are lost.
fn listen(config: postgres::Config, wake: Wake, stop: Arc<AtomicBool>, connected: Arc<AtomicBool>) {
    let mut backoff = Duration::from_millis(50);
    let mut reported = false;
    while !stop.load(Ordering::SeqCst) {
        let client = Pool::connect(&config).and_then(|mut client| {
            client
                .batch_execute(&format!(
                    "LISTEN {CHANGES_CHANNEL}; LISTEN {SESSIONS_CHANNEL}"
                ))
                .map_err(db_err)?;
            Ok(client)
        });
        let mut client = match client {
            Ok(c) => c,
            Err(e) => {
                if !reported {
                    tracing::warn!(error = %e, "cannot listen for other instances' commits; polling until the database is back");
                    reported = true;
                }
                sleep_unless(&stop, backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        if reported {
            tracing::info!("listening for other instances' commits again");
        }
        reported = false;
        backoff = Duration::from_millis(50);
        connected.store(true, Ordering::SeqCst);
        wake(Signal::Commits);
        wake(Signal::Sessions);
        let mut silent_since = Instant::now();
        loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let mut notifications = client.notifications();
            let mut iter = notifications.timeout_iter(Duration::from_millis(250));
            match iter.next() {
                Ok(Some(n)) => {
                    silent_since = Instant::now();
                    if n.channel() == SESSIONS_CHANNEL {
                        wake(Signal::Sessions);
                    } else {
                        wake(Signal::Commits);
                    }
                }
                Ok(None) => {
                    drop(iter);
                    drop(notifications);
                    // A quiet connection may be a dead one: ask now and then.
                    if silent_since.elapsed() > Duration::from_secs(5) {
                        silent_since = Instant::now();
                        if client.batch_execute("").is_err() {
                            break;
                        }
                    }
                    if client.is_closed() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the notification connection dropped; polling until it is back");
                    break;
                }
            }
        }
        connected.store(false, Ordering::SeqCst);
    }
}

fn sleep_unless(stop: &AtomicBool, total: Duration) {
    let end = Instant::now() + total;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= end {
            return;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::conformance;
    use clinic_e2e::pg::PgCluster;

    #[test]
    fn postgres_storage_meets_the_storage_contract() {
        let cluster = PgCluster::start();
        let fresh = || -> Box<dyn Storage> {
            Box::new(PgStorage::open(&cluster.create_database(), 4).unwrap())
        };
        if let Err(failed) = conformance::run_all(&fresh) {
            panic!("{}", failed.0);
        }
    }

    #[test]
    fn postgres_handles_on_one_database_meet_the_shared_contract() {
        let cluster = PgCluster::start();
        let url = cluster.create_database();
        let open = || -> Box<dyn Storage> { Box::new(PgStorage::open(&url, 4).unwrap()) };
        if let Err(failed) = conformance::run_shared(&open) {
            panic!("{}", failed.0);
        }
    }

    #[test]
    fn reopening_keeps_data_refuses_a_newer_schema_and_survives_a_database_restart() {
        let mut cluster = PgCluster::start();
        let url = cluster.create_database();
        let session = Session {
            user_id: Uuid::now_v7(),
            expires_at: "2100-01-01T00:00:00Z".parse().unwrap(),
        };
        {
            let s = PgStorage::open(&url, 2).unwrap();
            s.create_session("h", &session).unwrap();
        }
        let s = PgStorage::open(&url, 2).unwrap();
        assert_eq!(s.session("h").unwrap(), Some(session.clone()));
        assert!(!s.is_empty().unwrap());
        // Pooled connections go stale with a restart; callers do not notice.
        cluster.restart("immediate");
        assert_eq!(s.session("h").unwrap(), Some(session));
        cluster.restart("fast");
        let id = Uuid::now_v7();
        s.write(&mut |tx| {
            let head = tx.head()?;
            tx.put(&Change {
                seq: head + 1,
                table: Table::Patients,
                id,
                action: Action::Create,
                before: None,
                after: serde_json::json!({"n": 1}),
                actor_id: None,
                client_id: None,
                mutation_id: None,
                mutation: "test".into(),
                at: "2030-01-01T00:00:00Z".parse().unwrap(),
            })
        })
        .unwrap();
        assert_eq!(s.head().unwrap(), 1);
        drop(s);
        cluster.with_client(&url, |c| {
            c.execute("INSERT INTO schema_migrations VALUES (99, now())", &[])
                .unwrap();
        });
        let err = PgStorage::open(&url, 1).err().unwrap();
        assert!(err.to_string().contains("newer than this server"), "{err}");
    }

    #[test]
    fn an_unreachable_database_is_busy_and_retryable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = PgStorage::open(&format!("postgres://clinic@127.0.0.1:{port}/x"), 1)
            .err()
            .unwrap();
        assert!(err.retryable(), "{err}");
        assert!(err.to_string().contains("unreachable"), "{err}");
        let bad = PgStorage::open("postgres://[nope", 1).err().unwrap();
        assert!(bad.to_string().contains("bad database URL"), "{bad}");
    }

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            redact_url("postgres://clinic:s3cret@db:5432/clinic"),
            "postgres://clinic:***@db:5432/clinic"
        );
        assert_eq!(
            redact_url("postgres://clinic@db/x"),
            "postgres://clinic@db/x"
        );
        assert!(is_postgres_url("postgresql://x/y") && !is_postgres_url("sqlite:x.db"));
    }
}
