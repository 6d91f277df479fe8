//! Storage: the server's durable state behind one trait, so that SQLite (the
//! embedded default) and PostgreSQL (several server instances on one
//! database) serve the same engine.
//!
//! Terms:
//! - **row**: the current state of one record (`table`, `id`), with the
//!   `version` of its last change and a `deleted` flag (tombstone). Rows are
//!   kept as the entity's JSON.
//! - **change**: one row write, numbered by the global change **sequence**
//!   (`seq`). Sequence numbers are assigned inside the write transaction,
//!   which holds the database's write lock to its commit (SQLite: the
//!   `BEGIN IMMEDIATE` lock; PostgreSQL: the row lock on `sequence_head`),
//!   so they are gap-free and in commit order whatever process writes. The
//!   change log is also the audit trail: who, when, from which client,
//!   which mutation, before and after.
//! - **client**: one installation of a client, identified by a UUID it makes,
//!   bound to the first user who pushes with it, with the highest mutation id
//!   processed for it and the stored result of every mutation.
//!
//! Contract every backend keeps (checked by [`conformance`]):
//! - [`Storage::write`] runs its work in one transaction: all of it commits
//!   or none of it does; savepoints undo part of it.
//! - A committed change's `seq` is greater than every earlier commit's.
//! - [`Storage::changes_page`] reads rows, cursor and acknowledgement from
//!   one consistent snapshot.
//! - Several handles on one database (other processes: the admin CLI, other
//!   server instances) may write at once: their write transactions
//!   serialize, each one's reads see every commit before it, and every
//!   reader sees the sequence gap-free and in commit order (a reader that has
//!   seen `seq` s never later finds a committed change below s that it had
//!   not seen).
//!
//! Backends: [`sqlite`] (one file, the default) and [`postgres`] (several
//! stateless server instances on one database; see that module for how the
//! sequence stays gap-free across processes).

pub mod conformance;
pub mod postgres;
pub mod sqlite;
pub mod transfer;

use clinic_shared::apply::{Action, CurrentRow};
use clinic_shared::model::{Staff, SyncRow, Table, Timestamp};
use clinic_shared::protocol::{HistoryEntry, MutationOutcome};
use serde_json::Value;
use uuid::Uuid;

/// A storage failure. Says whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database is busy or locked by another writer; retry.
    #[error("database busy: {0}")]
    Busy(String),
    /// Data in the database does not decode: a bug or corruption.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(String),
}

impl StorageError {
    /// Whether the same operation may succeed if tried again.
    pub fn retryable(&self) -> bool {
        matches!(self, StorageError::Busy(_))
    }
}

/// Result of storage calls.
pub type StorageResult<T> = Result<T, StorageError>;

/// What a wake-up from a shared database says another process did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Committed changes: read past the published head.
    Commits,
    /// Ended sessions (sign-out, account disabled, password set): re-check
    /// the sessions of open connections.
    Sessions,
}

/// Called from the backend's own thread for every wake-up; must not block.
pub type Wake = std::sync::Arc<dyn Fn(Signal) + Send + Sync>;

/// A running source of wake-ups ([`Storage::watch`]). Dropping it stops it.
pub struct Watching {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connected: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Watching {
    /// A handle over the flags a backend's watcher thread reads and sets.
    pub fn new(
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        connected: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        Watching { stop, connected }
    }

    /// Whether wake-ups arrive right now. While they do not (the
    /// notification connection is down), callers poll instead.
    pub fn connected(&self) -> bool {
        self.connected.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// One row write, as recorded in the change log and applied to the row.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Sequence number; becomes the row's version.
    pub seq: u64,
    /// Table.
    pub table: Table,
    /// Row id.
    pub id: Uuid,
    /// Create, update or delete.
    pub action: Action,
    /// The entity before (absent for creates).
    pub before: Option<Value>,
    /// The entity after (kept for deletes too: tombstones keep their data
    /// server-side for the audit trail, but are sent without it).
    pub after: Value,
    /// Who made it (absent for server tools such as the demo seeder).
    pub actor_id: Option<Uuid>,
    /// From which client.
    pub client_id: Option<Uuid>,
    /// Which mutation of that client.
    pub mutation_id: Option<u64>,
    /// The mutation's name, or the tool's (`admin_cli`, `demo_seed`).
    pub mutation: String,
    /// When the server applied it.
    pub at: Timestamp,
}

impl Change {
    /// The row as it travels after this change.
    pub fn to_sync_row(&self) -> SyncRow {
        let deleted = self.action == Action::Delete;
        SyncRow {
            table: self.table,
            id: self.id,
            version: self.seq,
            deleted,
            data: if deleted {
                None
            } else {
                Some(self.after.clone())
            },
        }
    }
}

/// A past change to one row, for conflict detection.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedChange {
    /// Sequence number.
    pub seq: u64,
    /// Client that made it.
    pub client_id: Option<Uuid>,
    /// Entity before.
    pub before: Option<Value>,
    /// Entity after.
    pub after: Value,
}

/// A client installation's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientRecord {
    /// The user the client is bound to.
    pub user_id: Uuid,
    /// Highest mutation id processed.
    pub last_mutation_id: u64,
}

/// A signed-in session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The user.
    pub user_id: Uuid,
    /// When it stops working.
    pub expires_at: Timestamp,
}

/// A page of changed rows for a role, read from one snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangesPage {
    /// Rows with `after < version <= cursor`, by version.
    pub rows: Vec<SyncRow>,
    /// Cursor after these rows.
    pub cursor: u64,
    /// More rows wait past `cursor`.
    pub more: bool,
    /// Highest processed mutation id of the client asked about, given only
    /// when `more` is false (so every effect it covers is in this page or
    /// before).
    pub last_mutation_id: Option<u64>,
}

/// Operations inside one write transaction. The engine's mutation logic is
/// written against this, so it runs unchanged on every backend.
pub trait WriteTx {
    /// Highest committed sequence number (0 when empty), as seen in this
    /// transaction.
    fn head(&mut self) -> StorageResult<u64>;
    /// A row, tombstones included.
    fn row(&mut self, table: Table, id: Uuid) -> StorageResult<Option<CurrentRow>>;
    /// The doctor's live, slot-occupying appointments overlapping `[start, end)`.
    fn overlapping_appointments(
        &mut self,
        doctor_id: Uuid,
        start: Timestamp,
        end: Timestamp,
        exclude: Uuid,
    ) -> StorageResult<Vec<Uuid>>;
    /// The staff row with this username.
    fn staff_id_by_username(&mut self, username: &str) -> StorageResult<Option<Uuid>>;
    /// Writes the row (version = `change.seq`) and appends the change log.
    fn put(&mut self, change: &Change) -> StorageResult<()>;
    /// Changes to one row with `seq > after`, oldest first.
    fn changes_to_row_since(
        &mut self,
        table: Table,
        id: Uuid,
        after: u64,
    ) -> StorageResult<Vec<LoggedChange>>;
    /// A client's state.
    fn client(&mut self, client_id: Uuid) -> StorageResult<Option<ClientRecord>>;
    /// Creates or updates a client's state.
    fn set_client(&mut self, client_id: Uuid, record: ClientRecord) -> StorageResult<()>;
    /// The stored outcome of a processed mutation.
    fn stored_outcome(
        &mut self,
        client_id: Uuid,
        mutation_id: u64,
    ) -> StorageResult<Option<MutationOutcome>>;
    /// Stores a mutation's outcome.
    fn store_outcome(
        &mut self,
        client_id: Uuid,
        mutation_id: u64,
        outcome: &MutationOutcome,
    ) -> StorageResult<()>;
    /// Sets a user's password hash (PHC string).
    fn set_password_hash(&mut self, user_id: Uuid, hash: &str) -> StorageResult<()>;
    /// Ends every session of a user.
    fn delete_sessions_of(&mut self, user_id: Uuid) -> StorageResult<()>;
    /// A hint that `rows` and `clients` are about to be read: a backend
    /// whose reads cost a round trip may load them in one (PostgreSQL).
    /// Reads then return exactly what they would have without it.
    fn prefetch(&mut self, rows: &[(Table, Uuid)], clients: &[Uuid]) -> StorageResult<()> {
        let _ = (rows, clients);
        Ok(())
    }
    /// Starts a savepoint.
    fn savepoint(&mut self) -> StorageResult<()>;
    /// Undoes everything since the savepoint and ends it.
    fn rollback_to_savepoint(&mut self) -> StorageResult<()>;
    /// Keeps everything since the savepoint and ends it.
    fn release_savepoint(&mut self) -> StorageResult<()>;
}

/// Work to run in a write transaction.
pub type WriteWork<'a> = dyn FnMut(&mut dyn WriteTx) -> StorageResult<()> + 'a;

/// The server's durable state. Calls block: async code calls them through
/// `spawn_blocking` or from the writer thread.
pub trait Storage: Send + Sync + 'static {
    /// Runs `work` in one write transaction; commits if it returns `Ok`,
    /// rolls back otherwise.
    fn write(&self, work: &mut WriteWork<'_>) -> StorageResult<()>;
    /// Highest committed sequence number.
    fn head(&self) -> StorageResult<u64>;
    /// Up to `limit` rows of `tables` with `after < version`, by version,
    /// and, for `client`, its last processed mutation id when caught up.
    fn changes_page(
        &self,
        tables: &[Table],
        after: u64,
        limit: usize,
        client: Option<Uuid>,
    ) -> StorageResult<ChangesPage>;
    /// Changes with `after < seq <= upto`, in order, as rows, and the
    /// `(client, mutation)` pairs they came from. Used to publish commits
    /// made by other processes (admin CLI, other server instances).
    fn committed_between(&self, after: u64, upto: u64) -> StorageResult<Vec<Change>>;
    /// The audit trail of one record, oldest first.
    fn history(&self, table: Table, id: Uuid) -> StorageResult<Vec<HistoryEntry>>;
    /// A staff member and their password hash, by username.
    fn staff_by_username(&self, username: &str) -> StorageResult<Option<(Staff, Option<String>)>>;
    /// A staff member by id.
    fn staff(&self, id: Uuid) -> StorageResult<Option<Staff>>;
    /// Which user a client is bound to.
    fn client(&self, client_id: Uuid) -> StorageResult<Option<ClientRecord>>;
    /// Records a new session under the hash of its token.
    fn create_session(&self, token_hash: &str, session: &Session) -> StorageResult<()>;
    /// A session by token hash.
    fn session(&self, token_hash: &str) -> StorageResult<Option<Session>>;
    /// Ends a session.
    fn delete_session(&self, token_hash: &str) -> StorageResult<()>;
    /// Removes expired sessions; returns how many.
    fn purge_expired_sessions(&self, now: Timestamp) -> StorageResult<usize>;
    /// Those of `token_hashes` that are still sessions (not ended or
    /// purged), in any order. One query for every open connection of a
    /// server, when another process may have ended some.
    fn existing_sessions(&self, token_hashes: &[String]) -> StorageResult<Vec<String>>;
    /// Starts calling `wake` when another process commits changes or ends
    /// sessions on this database, if the backend can tell (PostgreSQL:
    /// LISTEN/NOTIFY). `None`: it cannot, and callers poll. Wake-ups carry
    /// no data and may come in bursts or spuriously; after a lost
    /// connection the watcher wakes for both signals once it is back, since
    /// it may have missed some.
    fn watch(&self, wake: Wake) -> StorageResult<Option<Watching>> {
        let _ = wake;
        Ok(None)
    }
}
