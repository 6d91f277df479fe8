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
//! mutation) and the security state (throttles, epochs, the security-event
//! and sign-in logs, whose ids are taken as the next after the highest
//! under the lock, so a reader tailing them by id never skips one): every
//! check reads the state left by the previous writer. The cost: writes do
//! not run in parallel across instances; each instance's writer thread
//! batches many pushes into one transaction (group commit), so the lock is
//! taken once per batch, not per mutation. Reads (catch-up, pulls, history,
//! sign-in) run in parallel on every instance.
//!
//! **Hash chains.** The change log's chain head (the hash of the entry at
//! the sequence head) is kept in `sequence_head` and read with the lock, so
//! a commit hashes its changes in `seq` order from it ([`super::chain`])
//! and moves both in one statement: the chain is well defined whichever
//! instance writes. The access log has its own chain, position and lock row
//! (`access_head`): the audit thread's appends
//! ([`Storage::append_access`]) take only that lock, so the read audit of
//! every instance never queues behind mutation commits. Triggers refuse
//! UPDATE, DELETE and TRUNCATE on the change log, the access log and the
//! sign-in log.
//!
//! **One round trip per read, a few per commit.** Inside a write
//! transaction, reads go to the database (they see the last writer's
//! commit) and row, change, client, result and password writes are kept in
//! memory ([`tx::Overlay`]) until commit, where each kind goes out as one
//! multi-row statement. Savepoints around them are therefore in-memory too:
//! no subtransactions, which PostgreSQL handles poorly in the hundreds.
//! Security state (sessions ended, epochs, security events, throttles, the
//! sign-in and access logs) is written straight away instead: such writes
//! are rare and their answers (how many sessions ended, an event's id and
//! epoch) come from the database. A savepoint open around one becomes a
//! real `SAVEPOINT` just before it, so rolling the savepoint back undoes it.
//!
//! **Wake-ups.** A commit that moved the head sends a payload-less
//! `NOTIFY clinic_changes`; recording a security event sends `NOTIFY
//! clinic_security` (delivered at commit, dropped with a rolled-back
//! savepoint). [`Storage::watch`] keeps one extra connection per instance
//! LISTENing and reconnects with backoff when it drops; the server polls
//! meanwhile.
//!
//! **Connections.** Each connection sets `idle_in_transaction_session_timeout`
//! (a process that dies or hangs inside a transaction cannot hold the
//! sequence lock for long), `lock_timeout` and `statement_timeout`. A
//! connection found broken is dropped; a read or a write that failed on a
//! stale connection before anything was committed is tried once more on a
//! fresh one, so a restarted PostgreSQL costs callers nothing but the wait.
//! A full disk (`disk_full`) or a failing one (`io_error`) is
//! [`StorageError::Unavailable`]: nothing was written, and the same write
//! succeeds once space returns.
//!
//! Rows and change data are `json` (kept exactly as written, parsed by
//! PostgreSQL for the expression indexes); ids are `uuid`; instants
//! `timestamptz`. Comparisons of ISO-8601 times stored in JSON use
//! `COLLATE "C"`, so they order as the bytes do whatever the database's
//! locale.

/// The columns of `changes` in [`change_from_row`]'s order (a macro, so
/// that queries built with it stay `&'static str`).
macro_rules! change_columns {
    () => {
        "c.seq, c.tbl, c.row_id, c.action, c.actor_id, c.client_id, c.mutation_id, c.mutation, c.at, c.before::text, c.after::text"
    };
}

/// The columns of `access_log` in [`access_from_row`]'s order.
macro_rules! access_columns {
    () => {
        "a.seq, a.at, a.user_id, a.client_id, a.kind, a.patient_id, a.tbl, a.row_ids, a.hash, a.reason"
    };
}

mod copy;
mod listen;
mod pool;
mod schema;
mod tx;

pub(crate) use copy::{count_all, import_chunk, set_heads};

use super::{
    AccessRecord, AccountSecurity, ChainLink, Change, ChangesPage, ClientRecord, NewAccess,
    SecurityEvent, SecurityKind, Session, SessionAccount, Storage, StorageError, StorageResult,
    Throttle, Wake, Watching, WriteWork,
};
use chrono::{DateTime, Utc};
use clinic_shared::apply::{Action, CurrentRow};
use clinic_shared::model::{Staff, SyncRow, Table, Timestamp};
use clinic_shared::protocol::{
    AccessLogEntry, HistoryEntry, SignInEvent, SignInKind, SignInOutcome,
};
use pool::{PgConn, Pool};
use postgres::error::SqlState;
use schema::{MIGRATION_LOCK, MIGRATIONS, Migration};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tx::{Overlay, PgTx};
use uuid::Uuid;

/// Channel of commit wake-ups.
const CHANGES_CHANNEL: &str = "clinic_changes";
/// Channel of security-event wake-ups.
const SECURITY_CHANNEL: &str = "clinic_security";

/// Connections a [`PgStorage`] keeps at most unless told otherwise (the
/// LISTEN connection comes on top).
pub const DEFAULT_POOL_SIZE: usize = 8;

/// Session settings of every connection. The idle-in-transaction limit
/// frees the sequence lock if a server hangs inside a transaction (a killed
/// one frees it at once: its socket closes); the lock timeout bounds how
/// long a writer waits for it.
const SESSION_SETTINGS: &str = "SET idle_in_transaction_session_timeout = '15s';
     SET lock_timeout = '15s';
     SET statement_timeout = '60s'";

/// A storage failure from a PostgreSQL error. A full or failing disk is
/// `Unavailable` (nothing written; the same write succeeds once space
/// returns). Connection loss, timeouts, serialization failures, lock waits,
/// shutdowns and other resource limits may pass: `Busy`. The message
/// carries the server's short message and code, never its DETAIL (which can
/// quote values).
fn db_err(e: postgres::Error) -> StorageError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let text = format!("{} ({})", db.message(), code.code());
        let class = &code.code()[..2];
        return if *code == SqlState::DISK_FULL || *code == SqlState::IO_ERROR {
            StorageError::Unavailable(text)
        } else if class == "08"
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

/// A JSON decoding error without the value that failed: serde's message
/// can quote it, and a row's values are patient data that must not reach a
/// log.
fn json_error(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

fn parse_json(s: &str) -> StorageResult<serde_json::Value> {
    serde_json::from_str(s).map_err(|e| corrupt(format!("bad JSON in row: {}", json_error(&e))))
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

/// PostgreSQL storage.
pub struct PgStorage {
    pool: Pool,
    /// The URL without its password, for messages.
    display: String,
}

/// The URL as it may be shown: the password replaced, in the URL's user
/// part, a `password=` query parameter or a libpq `password=` keyword.
pub fn redact_url(url: &str) -> String {
    let mut shown = url.to_owned();
    // postgres://user:password@host/... → postgres://user:***@host/...
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((auth, host)) = rest.split_once('@')
        && let Some((user, _)) = auth.split_once(':')
    {
        shown = format!("{scheme}://{user}:***@{host}");
    }
    // ...?password=x&... and host=... password=x ...
    let mut out = String::with_capacity(shown.len());
    let mut rest = shown.as_str();
    while let Some(at) = rest.find("password=") {
        let value = at + "password=".len();
        out.push_str(&rest[..value]);
        out.push_str("***");
        let end = rest[value..]
            .find(['&', ' '])
            .map_or(rest.len(), |n| value + n);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
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
            pool: Pool::new(config, pool_size),
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
        for (i, migration) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(current).unwrap_or(0))
        {
            match migration {
                Migration::Sql(sql) => tx.batch_execute(sql).map_err(db_err)?,
                Migration::Code(step) => step(&mut tx)?,
            }
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
                        AND (SELECT seq FROM access_head) = 0
                        AND NOT EXISTS (SELECT 1 FROM rows)
                        AND NOT EXISTS (SELECT 1 FROM credentials)
                        AND NOT EXISTS (SELECT 1 FROM sessions)
                        AND NOT EXISTS (SELECT 1 FROM clients)
                        AND NOT EXISTS (SELECT 1 FROM account_security)
                        AND NOT EXISTS (SELECT 1 FROM security_events)
                        AND NOT EXISTS (SELECT 1 FROM sign_in_throttle)
                        AND NOT EXISTS (SELECT 1 FROM sign_in_events)",
                    &[],
                )
                .map_err(db_err)?;
            Ok(rows.first().is_some_and(|r| r.get::<_, bool>(0)))
        })
    }

    /// Runs `f` in one transaction on a dedicated connection, holding the
    /// sequence and access-log locks, without timeouts: bulk loading
    /// (`migrate`).
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
            tx.execute("SELECT seq FROM access_head FOR UPDATE", &[])
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
            .get(&mut tx, "SELECT head, hash FROM sequence_head FOR UPDATE")
            .map_err(db_err)
            .map_err(before)?;
        let locked = tx.query_one(&lock, &[]).map_err(db_err).map_err(before)?;
        let head: i64 = locked.get(0);
        let Some(chain_head) = locked.get::<_, Option<String>>(1) else {
            return Err(before(corrupt("the change log's chain head is missing")));
        };
        let mut ptx = PgTx {
            tx,
            stmts,
            head: to_u64(head),
            chain_head,
            overlay: Overlay::default(),
            db_clients: HashMap::new(),
            db_rows: HashMap::new(),
        };
        work(&mut ptx).map_err(before)?;
        ptx.flush().map_err(before)?;
        ptx.tx.commit().map_err(|e| (db_err(e), true))
    }

    /// One try of [`Storage::append_access`]: its own transaction, under
    /// the access log's lock only.
    fn try_append_access(
        &self,
        conn: &mut PgConn,
        entries: &[NewAccess],
    ) -> Result<u64, (StorageError, bool)> {
        let PgConn { client, stmts } = conn;
        let before = |e| (e, false);
        let mut tx = client.transaction().map_err(db_err).map_err(before)?;
        let last = tx::append_access(&mut tx, stmts, entries).map_err(before)?;
        tx.commit().map_err(|e| (db_err(e), true))?;
        Ok(last)
    }
}

fn staff_from_json(data: &str) -> StorageResult<Staff> {
    serde_json::from_str(data).map_err(|e| corrupt(format!("staff row: {}", json_error(&e))))
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

fn access_from_row(r: &postgres::Row) -> StorageResult<ChainLink<AccessRecord>> {
    Ok(ChainLink {
        entry: AccessRecord {
            seq: to_u64(r.get(0)),
            entry: NewAccess {
                at: to_time(r.get(1)),
                user_id: r.get(2),
                client_id: r.get(3),
                kind: r.get::<_, &str>(4).parse().map_err(corrupt)?,
                patient_id: r.get(5),
                table: parse_table(r.get(6))?,
                row_ids: r.get(7),
                reason: r.get(9),
            },
        },
        hash: r.get(8),
    })
}

fn security_event_from_row(r: &postgres::Row) -> StorageResult<SecurityEvent> {
    let kind: &str = r.get(3);
    Ok(SecurityEvent {
        id: to_u64(r.get(0)),
        at: to_time(r.get(1)),
        user_id: r.get(2),
        kind: SecurityKind::parse(kind)
            .ok_or_else(|| corrupt(format!("bad security event kind `{kind}`")))?,
        token_hash: r.get(4),
        epoch: to_u64(r.get(5)),
    })
}

fn sign_in_event_from_row(r: &postgres::Row) -> StorageResult<SignInEvent> {
    Ok(SignInEvent {
        id: to_u64(r.get(0)),
        at: to_time(r.get(1)),
        kind: parse_sign_in_kind(r.get(2))?,
        outcome: parse_sign_in_outcome(r.get(3))?,
        username: r.get(4),
        user_id: r.get(5),
        address: r.get(6),
        client_id: r.get(7),
        user_agent: r.get(8),
    })
}

fn throttle_from_row(r: &postgres::Row) -> Throttle {
    Throttle {
        failures: u32::try_from(r.get::<_, i32>(0)).unwrap_or(0),
        last_failure_ms: r.get(1),
        locked_until_ms: r.get(2),
        lock_reported: r.get(3),
    }
}

fn current_row_from(r: &postgres::Row) -> StorageResult<CurrentRow> {
    Ok(CurrentRow {
        version: to_u64(r.get(0)),
        deleted: r.get(1),
        data: parse_json(r.get(2))?,
    })
}

fn account_security_from(r: Option<&postgres::Row>) -> AccountSecurity {
    r.map(|r| AccountSecurity {
        epoch: to_u64(r.get(0)),
        must_change_password: r.get(1),
    })
    .unwrap_or_default()
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

    fn server_epoch(&self) -> StorageResult<String> {
        self.read(|c| {
            let rows = c
                .query("SELECT value FROM server_meta WHERE key = 'epoch'", &[])
                .map_err(db_err)?;
            rows.first()
                .map(|r| r.get::<_, String>(0))
                .ok_or_else(|| corrupt("the database has no server epoch"))
        })
    }

    fn start_new_epoch(&self, at: Timestamp) -> StorageResult<String> {
        let mut conn = self.pool.get()?;
        let mut tx = conn.client.transaction().map_err(db_err)?;
        let rows = tx
            .query(
                "INSERT INTO server_meta (key, value)
                 VALUES ('epoch', replace(gen_random_uuid()::text, '-', ''))
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value
                 RETURNING value",
                &[],
            )
            .map_err(db_err)?;
        let epoch: String = rows
            .first()
            .map(|r| r.get(0))
            .ok_or_else(|| corrupt("no server epoch was made"))?;
        tx.execute(
            "INSERT INTO server_meta (key, value) VALUES ('restored_at', $1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&at.to_string()],
        )
        .map_err(db_err)?;
        tx.execute("DELETE FROM resumed_clients", &[])
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(epoch)
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
                head,
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
            c.execute("DELETE FROM sessions WHERE token_hash = $1", &[&token_hash])
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

    fn count_open_sessions(&self, now: Timestamp) -> StorageResult<u64> {
        let now = now.as_datetime();
        self.read(|c| {
            let rows = c
                .query(
                    "SELECT COUNT(*) FROM sessions WHERE expires_at > $1",
                    &[&now],
                )
                .map_err(db_err)?;
            Ok(rows.first().map_or(0, |r| to_u64(r.get(0))))
        })
    }

    fn database_size(&self) -> StorageResult<u64> {
        self.read(|c| {
            let rows = c
                .query("SELECT pg_database_size(current_database())", &[])
                .map_err(db_err)?;
            Ok(rows.first().map_or(0, |r| to_u64(r.get(0))))
        })
    }

    fn backend_name(&self) -> &'static str {
        "postgresql"
    }

    fn session_account(&self, token_hash: &str) -> StorageResult<Option<SessionAccount>> {
        self.read(|c| {
            // One statement: session, staff row and security state agree.
            let rows = c
                .query(
                    "SELECT s.user_id, s.expires_at, r.data::text, a.epoch, a.must_change_password
                     FROM sessions s
                     LEFT JOIN rows r ON r.tbl = 'staff' AND r.id = s.user_id AND r.deleted = false
                     LEFT JOIN account_security a ON a.user_id = s.user_id
                     WHERE s.token_hash = $1",
                    &[&token_hash],
                )
                .map_err(db_err)?;
            rows.first()
                .map(|r| {
                    Ok(SessionAccount {
                        session: Session {
                            user_id: r.get(0),
                            expires_at: to_time(r.get(1)),
                        },
                        user: r
                            .get::<_, Option<&str>>(2)
                            .map(staff_from_json)
                            .transpose()?,
                        security: AccountSecurity {
                            epoch: r.get::<_, Option<i64>>(3).map_or(0, to_u64),
                            must_change_password: r.get::<_, Option<bool>>(4).unwrap_or(false),
                        },
                    })
                })
                .transpose()
        })
    }

    fn account_security(&self, user_id: Uuid) -> StorageResult<AccountSecurity> {
        self.read(|c| {
            let rows = c
                .query(
                    "SELECT epoch, must_change_password FROM account_security WHERE user_id = $1",
                    &[&user_id],
                )
                .map_err(db_err)?;
            Ok(account_security_from(rows.first()))
        })
    }

    fn current_row(&self, table: Table, id: Uuid) -> StorageResult<Option<CurrentRow>> {
        self.read(|c| {
            let rows = c
                .query(
                    "SELECT version, deleted, data::text FROM rows WHERE tbl = $1 AND id = $2",
                    &[&table.as_str(), &id],
                )
                .map_err(db_err)?;
            rows.first().map(current_row_from).transpose()
        })
    }

    fn security_head(&self) -> StorageResult<u64> {
        self.read(|c| {
            let rows = c
                .query("SELECT COALESCE(MAX(id), 0) FROM security_events", &[])
                .map_err(db_err)?;
            Ok(rows.first().map_or(0, |r| to_u64(r.get(0))))
        })
    }

    fn security_events_after(&self, after: u64, limit: usize) -> StorageResult<Vec<SecurityEvent>> {
        self.read(|c| {
            let rows = c
                .query(
                    "SELECT id, at, user_id, kind, token_hash, epoch FROM security_events
                     WHERE id > $1 ORDER BY id LIMIT $2",
                    &[&to_i64(after), &to_i64(limit as u64)],
                )
                .map_err(db_err)?;
            rows.iter().map(security_event_from_row).collect()
        })
    }

    fn throttle(&self, key: &str) -> StorageResult<Option<Throttle>> {
        self.read(|c| {
            let rows = c
                .query(
                    "SELECT failures, last_failure_ms, locked_until_ms, lock_reported
                     FROM sign_in_throttle WHERE key = $1",
                    &[&key],
                )
                .map_err(db_err)?;
            Ok(rows.first().map(throttle_from_row))
        })
    }

    fn sign_in_events(&self, before: Option<u64>, limit: usize) -> StorageResult<Vec<SignInEvent>> {
        let before = before.map_or(i64::MAX, to_i64);
        self.read(|c| {
            let rows = c
                .query(
                    "SELECT id, at, kind, outcome, username, user_id, address, client_id, user_agent
                     FROM sign_in_events WHERE id < $1 ORDER BY id DESC LIMIT $2",
                    &[&before, &to_i64(limit as u64)],
                )
                .map_err(db_err)?;
            rows.iter().map(sign_in_event_from_row).collect()
        })
    }

    fn access_log(
        &self,
        patient: Uuid,
        before: Option<u64>,
        limit: usize,
    ) -> StorageResult<Vec<AccessLogEntry>> {
        let before = before.map_or(i64::MAX, to_i64);
        self.read(|c| {
            let rows = c
                .query(
                    concat!(
                        "SELECT ",
                        access_columns!(),
                        ", (SELECT r.data->>'display_name' FROM rows r
                            WHERE r.tbl = 'staff' AND r.id = a.user_id)
                         FROM access_log a
                         WHERE a.patient_id = $1 AND a.seq < $2 ORDER BY a.seq DESC LIMIT $3"
                    ),
                    &[&patient, &before, &to_i64(limit as u64)],
                )
                .map_err(db_err)?;
            rows.iter()
                .map(|r| Ok(access_from_row(r)?.entry.to_wire(r.get(10))))
                .collect()
        })
    }

    fn care_patients(
        &self,
        doctor: Uuid,
        glass_since: Option<Timestamp>,
    ) -> StorageResult<HashSet<Uuid>> {
        let doctor_text = doctor.to_string();
        self.read(|c| {
            // Each part by its index (see migrations 1, 5 and 8).
            let rows = c
                .query(
                    "SELECT (data->>'patient_id')::uuid FROM rows
                         WHERE tbl = 'appointments' AND data->>'doctor_id' = $1 AND NOT deleted
                     UNION SELECT (data->>'patient_id')::uuid FROM rows
                         WHERE tbl = 'treatment_records' AND data->>'doctor_id' = $1 AND NOT deleted
                     UNION SELECT (data->>'patient_id')::uuid FROM rows
                         WHERE tbl = 'referrals' AND data->>'referring_doctor_id' = $1 AND NOT deleted
                     UNION SELECT patient_id FROM access_log
                         WHERE kind = 'break_the_glass' AND user_id = $2 AND at >= $3",
                    // A NULL bound matches no grant.
                    &[&doctor_text, &doctor, &glass_since.map(|t| t.as_datetime())],
                )
                .map_err(db_err)?;
            Ok(rows
                .iter()
                .filter_map(|r| r.get::<_, Option<Uuid>>(0))
                .collect())
        })
    }

    fn last_glass(&self, doctor: Uuid, patient: Uuid) -> StorageResult<Option<Timestamp>> {
        self.read(|c| {
            let rows = c
                .query(
                    "SELECT MAX(at) FROM access_log
                     WHERE kind = 'break_the_glass' AND user_id = $1 AND patient_id = $2",
                    &[&doctor, &patient],
                )
                .map_err(db_err)?;
            Ok(rows
                .first()
                .and_then(|r| r.get::<_, Option<DateTime<Utc>>>(0))
                .map(to_time))
        })
    }

    fn clinical_rows(&self, patient: Uuid) -> StorageResult<Vec<SyncRow>> {
        let patient = patient.to_string();
        self.read(|c| {
            let rows = c
                .query(
                    "SELECT tbl, id, version, deleted, data::text FROM rows
                     WHERE tbl IN ('treatment_records', 'referrals')
                       AND data->>'patient_id' = $1 AND NOT deleted
                     ORDER BY version",
                    &[&patient],
                )
                .map_err(db_err)?;
            rows.iter()
                .map(|r| {
                    Ok(SyncRow {
                        table: parse_table(r.get(0))?,
                        id: r.get(1),
                        version: to_u64(r.get(2)),
                        deleted: r.get(3),
                        data: Some(parse_json(r.get(4))?),
                    })
                })
                .collect()
        })
    }

    fn change_chain(&self, after: u64, limit: usize) -> StorageResult<Vec<ChainLink<Change>>> {
        self.read(|c| {
            let rows = c
                .query(
                    concat!(
                        "SELECT ",
                        change_columns!(),
                        ", c.hash FROM changes c WHERE c.seq > $1 ORDER BY c.seq LIMIT $2"
                    ),
                    &[&to_i64(after), &to_i64(limit as u64)],
                )
                .map_err(db_err)?;
            rows.iter()
                .map(|r| {
                    Ok(ChainLink {
                        entry: change_from_row(r)?,
                        hash: r.get(11),
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
            let rows = c
                .query(
                    concat!(
                        "SELECT ",
                        access_columns!(),
                        " FROM access_log a WHERE a.seq > $1 ORDER BY a.seq LIMIT $2"
                    ),
                    &[&to_i64(after), &to_i64(limit as u64)],
                )
                .map_err(db_err)?;
            rows.iter().map(access_from_row).collect()
        })
    }

    fn append_access(&self, entries: &[NewAccess]) -> StorageResult<u64> {
        let mut conn = self.pool.get()?;
        match self.try_append_access(&mut conn, entries) {
            Ok(last) => Ok(last),
            // As in `write`: a stale connection and COMMIT never sent.
            Err((e, false)) if conn.client.is_closed() => {
                drop(conn);
                self.pool.clear();
                tracing::info!(error = %e, "database connection lost; retrying the access entries on a new one");
                let mut conn = self.pool.get()?;
                self.try_append_access(&mut conn, entries)
                    .map_err(|(e, _)| e)
            }
            Err((e, _)) => Err(e),
        }
    }

    fn watch(&self, wake: Wake) -> StorageResult<Option<Watching>> {
        let stop = Arc::new(AtomicBool::new(false));
        let connected = Arc::new(AtomicBool::new(false));
        let config = self.pool.config.clone();
        let (s, c) = (stop.clone(), connected.clone());
        std::thread::Builder::new()
            .name("clinic-pg-listen".into())
            .spawn(move || listen::listen(config, wake, s, c))
            .map_err(|e| StorageError::Database(format!("could not start the listener: {e}")))?;
        Ok(Some(Watching::new(stop, connected)))
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
    fn the_logs_refuse_updates_deletes_and_truncation() {
        let cluster = PgCluster::start();
        let url = cluster.create_database();
        let s = PgStorage::open(&url, 2).unwrap();
        let at: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let id = Uuid::now_v7();
        s.write(&mut |tx| {
            tx.put(&Change {
                seq: 1,
                table: Table::Patients,
                id,
                action: Action::Create,
                before: None,
                after: serde_json::json!({}),
                actor_id: None,
                client_id: None,
                mutation_id: None,
                mutation: "t".into(),
                at,
            })?;
            tx.append_sign_in_event(&crate::storage::NewSignInEvent {
                at,
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
        s.append_access(&[NewAccess {
            at,
            user_id: Uuid::nil(),
            client_id: None,
            kind: clinic_shared::protocol::AccessKind::View,
            patient_id: Some(id),
            table: Table::Patients,
            row_ids: vec![id],
            reason: None,
        }])
        .unwrap();
        // Straight SQL, as someone with the database's password would try.
        cluster.with_client(&url, |c| {
            for sql in [
                "UPDATE changes SET after = '{\"x\":1}'",
                "DELETE FROM changes",
                "TRUNCATE changes",
                "UPDATE access_log SET user_id = gen_random_uuid()",
                "DELETE FROM access_log",
                "TRUNCATE access_log",
                "UPDATE sign_in_events SET outcome = 'success'",
                "DELETE FROM sign_in_events",
                "TRUNCATE sign_in_events",
            ] {
                let err = c.batch_execute(sql).err();
                assert!(
                    err.as_ref()
                        .and_then(|e| e.as_db_error())
                        .is_some_and(|e| e.message().contains("is append-only")),
                    "{sql}: {err:?}"
                );
            }
        });
        assert_eq!(crate::audit::verify_changes(&s).unwrap().entries, 1);
        assert_eq!(crate::audit::verify_access(&s).unwrap().entries, 1);
    }

    #[test]
    fn opening_a_database_of_the_first_schema_computes_its_change_chain() {
        let cluster = PgCluster::start();
        let url = cluster.create_database();
        cluster.with_client(&url, |c| {
            // A database as schema 1 left it: changes without hashes.
            let Migration::Sql(v1) = &MIGRATIONS[0] else {
                panic!("migration 1 is SQL")
            };
            c.batch_execute(v1).unwrap();
            c.batch_execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL);
                 INSERT INTO schema_migrations VALUES (1, now());
                 INSERT INTO changes (seq, tbl, row_id, action, mutation, at, after)
                     SELECT n, 'patients', gen_random_uuid(), 'create', 'old', now(), '{\"n\": 1}'
                     FROM generate_series(1, 2500) AS n;
                 UPDATE sequence_head SET head = 2500;",
            )
            .unwrap();
        });
        let s = PgStorage::open(&url, 2).unwrap();
        assert_eq!(crate::audit::verify_changes(&s).unwrap().entries, 2500);
        // New changes continue the chain.
        s.write(&mut |tx| {
            tx.put(&Change {
                seq: 2501,
                table: Table::Patients,
                id: Uuid::now_v7(),
                action: Action::Create,
                before: None,
                after: serde_json::json!({}),
                actor_id: None,
                client_id: None,
                mutation_id: None,
                mutation: "new".into(),
                at: "2030-01-02T00:00:00Z".parse().unwrap(),
            })
        })
        .unwrap();
        assert_eq!(crate::audit::verify_changes(&s).unwrap().entries, 2501);
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
        assert_eq!(
            redact_url("host=db user=clinic password=s3cret dbname=x"),
            "host=db user=clinic password=*** dbname=x"
        );
        assert_eq!(
            redact_url("postgres://db/x?user=clinic&password=s3cret&sslmode=disable"),
            "postgres://db/x?user=clinic&password=***&sslmode=disable"
        );
        assert!(is_postgres_url("postgresql://x/y") && !is_postgres_url("sqlite:x.db"));
    }
}
