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
//! - The change log and the access log are append-only hash chains (see
//!   [`chain`]): [`WriteTx::put`] and [`WriteTx::append_access`] compute each
//!   entry's hash from the previous entry's (by `seq`) and the entry's
//!   canonical content, inside the write transaction, so the chain stays
//!   well defined whichever process writes; the backend refuses to update or
//!   delete entries of either log.
//! - Security state (account epochs, the security-event log that tells every
//!   server process to re-check open sessions, sign-in throttling, the
//!   sign-in log) lives in the database, never only in one process's memory,
//!   so several server processes and the admin CLI agree on it.
//! - Several handles on one database (other processes: the admin CLI, other
//!   server instances) may write at once: their write transactions
//!   serialize, each one's reads see every commit before it, and every
//!   reader sees the sequence gap-free and in commit order (a reader that has
//!   seen `seq` s never later finds a committed change below s that it had
//!   not seen).
//!
//! Terms of the access-control part:
//! - **epoch**: a per-account counter that rises with every change that
//!   must reach open sessions (password change or reset, disable, enable,
//!   role change, "end all sessions"). Clients see it on `welcome` and pull.
//! - **security event**: one such change (or one sign-out), appended with
//!   a rising id; servers poll the highest id and re-check the sessions of
//!   the accounts concerned.
//! - **throttle**: failure counter and lockout of one sign-in key (a
//!   username or a client address).
//! - **access entry**: one delivery of clinical content to a person.
//!
//! Backends: [`sqlite`] (one file, the default) and [`postgres`] (several
//! stateless server instances on one database; see that module for how the
//! sequence stays gap-free across processes).

pub mod chain;
pub mod conformance;
pub mod postgres;
pub mod sqlite;
pub mod transfer;

use clinic_shared::apply::{Action, CurrentRow, SlotCandidate};
use clinic_shared::model::{Staff, SyncRow, Table, Timestamp};
use clinic_shared::protocol::{
    AccessKind, AccessLogEntry, HistoryEntry, MutationOutcome, SignInEvent, SignInKind,
    SignInOutcome,
};
use serde_json::Value;
use std::collections::HashSet;
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
    /// The disk is full or failed a read or write (SQLite's `SQLITE_FULL`,
    /// `SQLITE_IOERR`). The transaction was rolled back, nothing of it
    /// written; the same operation can succeed once space returns, with no
    /// restart.
    #[error("storage unavailable (disk full or I/O error): {0}")]
    Unavailable(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(String),
}

impl StorageError {
    /// Whether the same operation may succeed if tried again.
    pub fn retryable(&self) -> bool {
        matches!(self, StorageError::Busy(_) | StorageError::Unavailable(_))
    }
}

/// Result of storage calls.
pub type StorageResult<T> = Result<T, StorageError>;

/// What a wake-up from a shared database says another process did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Committed changes: read past the published head.
    Commits,
    /// Recorded security events (sign-out, sessions ended, password change
    /// or reset, disable, enable, role change): read the security-event log
    /// past the highest id seen ([`crate::revocation`]).
    Security,
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

/// A past change to one row, for conflict detection (the shared rule's
/// input type).
pub use clinic_shared::conflict::PastChange as LoggedChange;

/// A processed mutation's answer, as kept for retries.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredOutcome {
    /// What the mutation's first processing answered.
    pub outcome: MutationOutcome,
    /// SHA-256 (hex) of the mutation as first pushed: a retry must carry
    /// the same. `None` for results stored before fingerprints were kept.
    pub fingerprint: Option<String>,
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

/// An account's security state. An account with none recorded has epoch 0
/// and no forced password change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountSecurity {
    /// Rises with every change that must reach open sessions.
    pub epoch: u64,
    /// The password was reset by an administrator (or no longer meets the
    /// policy): only a password change is allowed until it is changed.
    pub must_change_password: bool,
}

/// A session with its account, read together (one snapshot) for
/// authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionAccount {
    /// The session.
    pub session: Session,
    /// The account's staff row (absent if the row is gone or deleted).
    pub user: Option<Staff>,
    /// The account's security state.
    pub security: AccountSecurity,
}

/// What a security event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityKind {
    /// One session was signed out (`token_hash` names it). Does not bump
    /// the epoch.
    SignedOut,
    /// Every session of the account was ended.
    SessionsEnded,
    /// The user changed their own password (`token_hash` names the session
    /// kept).
    PasswordChanged,
    /// An administrator set a new password; every session ended.
    PasswordReset,
    /// The account was disabled.
    Disabled,
    /// The account was enabled again.
    Enabled,
    /// The account's role changed.
    RoleChanged,
}

impl SecurityKind {
    /// Every kind.
    pub const ALL: [SecurityKind; 7] = [
        SecurityKind::SignedOut,
        SecurityKind::SessionsEnded,
        SecurityKind::PasswordChanged,
        SecurityKind::PasswordReset,
        SecurityKind::Disabled,
        SecurityKind::Enabled,
        SecurityKind::RoleChanged,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityKind::SignedOut => "signed_out",
            SecurityKind::SessionsEnded => "sessions_ended",
            SecurityKind::PasswordChanged => "password_changed",
            SecurityKind::PasswordReset => "password_reset",
            SecurityKind::Disabled => "disabled",
            SecurityKind::Enabled => "enabled",
            SecurityKind::RoleChanged => "role_changed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<SecurityKind> {
        SecurityKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the event raises the account's epoch.
    pub fn bumps_epoch(self) -> bool {
        self != SecurityKind::SignedOut
    }
}

/// One recorded security event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEvent {
    /// Rising id (the order servers see them in).
    pub id: u64,
    /// When.
    pub at: Timestamp,
    /// The account concerned.
    pub user_id: Uuid,
    /// What happened.
    pub kind: SecurityKind,
    /// The session signed out (`SignedOut`) or kept (`PasswordChanged`).
    pub token_hash: Option<String>,
    /// The account's epoch after the event.
    pub epoch: u64,
}

/// The failure counter and lockout of one sign-in key. Times are Unix
/// milliseconds of the wall clock (lockouts are shorter than the
/// one-second resolution of [`Timestamp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    /// Failures counted (since the last success, for a username).
    pub failures: u32,
    /// When the last failure was.
    pub last_failure_ms: i64,
    /// Attempts are refused unchecked until then (0: not locked).
    pub locked_until_ms: i64,
    /// A `locked` sign-in event was already recorded for this lockout.
    pub lock_reported: bool,
}

/// A sign-in attempt to record (the log assigns the id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSignInEvent {
    /// When.
    pub at: Timestamp,
    /// Sign-in or password change.
    pub kind: SignInKind,
    /// How it ended.
    pub outcome: SignInOutcome,
    /// The username as given (normalized).
    pub username: String,
    /// The account, when the username names one.
    pub user_id: Option<Uuid>,
    /// The client's address.
    pub address: Option<String>,
    /// The client installation.
    pub client_id: Option<Uuid>,
    /// The `User-Agent`, shortened.
    pub user_agent: Option<String>,
}

/// An access entry to append (the log assigns `seq` and the hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccess {
    /// When the content was delivered.
    pub at: Timestamp,
    /// To whom.
    pub user_id: Uuid,
    /// Which client installation, when known.
    pub client_id: Option<Uuid>,
    /// How.
    pub kind: AccessKind,
    /// Whose records.
    pub patient_id: Option<Uuid>,
    /// Table of the records.
    pub table: Table,
    /// The records.
    pub row_ids: Vec<Uuid>,
    /// Why (a break of the glass: what the doctor typed).
    pub reason: Option<String>,
}

/// An access entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord {
    /// Position in the log.
    pub seq: u64,
    /// The entry.
    pub entry: NewAccess,
}

impl AccessRecord {
    /// As the API shows it, with the reader-time display name.
    pub fn to_wire(&self, user_name: Option<String>) -> AccessLogEntry {
        AccessLogEntry {
            seq: self.seq,
            at: self.entry.at,
            user_id: self.entry.user_id,
            user_name,
            client_id: self.entry.client_id,
            kind: self.entry.kind,
            patient_id: self.entry.patient_id,
            table: self.entry.table,
            row_ids: self.entry.row_ids.clone(),
            reason: self.entry.reason.clone(),
        }
    }
}

/// One stored link of a hash chain, for verification.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainLink<T> {
    /// The entry as stored.
    pub entry: T,
    /// Its stored hash (absent: never computed, which verification reports).
    pub hash: Option<String>,
}

/// A page of changed rows for a role, read from one snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangesPage {
    /// Rows with `after < version <= cursor`, by version.
    pub rows: Vec<SyncRow>,
    /// Cursor after these rows.
    pub cursor: u64,
    /// The highest committed sequence number in the same snapshot (below
    /// the requested cursor only if the database is older than the
    /// client's copy: restored from a backup).
    pub head: u64,
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
    /// The doctor's live (not deleted) appointments starting in
    /// `[from, until)`, any status (the shared double-booking rule picks the
    /// clashes: `clinic_shared::apply::clashing_appointments`).
    fn appointments_starting_between(
        &mut self,
        doctor_id: Uuid,
        from: Timestamp,
        until: Timestamp,
    ) -> StorageResult<Vec<SlotCandidate>>;
    /// The patient's live (not deleted) appointments starting in
    /// `[from, until)`, any doctor and status (the shared rules pick what
    /// matters: `clinic_shared::apply::patient_clashes`,
    /// `clinic_shared::apply::future_appointments`). An index on (patient,
    /// start) keeps it cheap.
    fn patient_appointments_starting_between(
        &mut self,
        patient_id: Uuid,
        from: Timestamp,
        until: Timestamp,
    ) -> StorageResult<Vec<SlotCandidate>>;
    /// The staff row with this username.
    fn staff_id_by_username(&mut self, username: &str) -> StorageResult<Option<Uuid>>;
    /// Writes the row (version = `change.seq`) and appends the change log.
    fn put(&mut self, change: &Change) -> StorageResult<()>;
    /// Changes to one row with `seq > after`, oldest first, with who made
    /// each and when (a conflict names them).
    fn changes_to_row_since(
        &mut self,
        table: Table,
        id: Uuid,
        after: u64,
    ) -> StorageResult<Vec<LoggedChange>>;
    /// A client's state.
    fn client(&mut self, client_id: Uuid) -> StorageResult<Option<ClientRecord>>;
    /// Whether a gap in this client's mutation ids is the one a restore
    /// leaves (its acknowledged mutations after the backup are gone), so
    /// its next pending mutation is accepted: true only in a restored
    /// database, and only once per client (the first time it is asked, which
    /// it records in this transaction).
    fn resume_after_restore(&mut self, client_id: Uuid) -> StorageResult<bool>;
    /// Creates or updates a client's state.
    fn set_client(&mut self, client_id: Uuid, record: ClientRecord) -> StorageResult<()>;
    /// The stored outcome of a processed mutation, with the fingerprint of
    /// what was pushed under its id.
    fn stored_outcome(
        &mut self,
        client_id: Uuid,
        mutation_id: u64,
    ) -> StorageResult<Option<StoredOutcome>>;
    /// Stores a mutation's outcome and its fingerprint
    /// ([`crate::engine::fingerprint`]).
    fn store_outcome(
        &mut self,
        client_id: Uuid,
        mutation_id: u64,
        outcome: &MutationOutcome,
        fingerprint: &str,
    ) -> StorageResult<()>;
    /// Sets a user's password hash (PHC string).
    fn set_password_hash(&mut self, user_id: Uuid, hash: &str) -> StorageResult<()>;
    /// Ends every session of a user.
    fn delete_sessions_of(&mut self, user_id: Uuid) -> StorageResult<()>;
    /// Ends every session of a user but `keep` (a token hash); returns how
    /// many ended.
    fn delete_other_sessions(&mut self, user_id: Uuid, keep: &str) -> StorageResult<u64>;
    /// Ends one session; returns whether it existed.
    fn delete_session(&mut self, token_hash: &str) -> StorageResult<bool>;
    /// Counts a user's sessions.
    fn count_sessions_of(&mut self, user_id: Uuid) -> StorageResult<u64>;
    /// Appends a security event and, unless it is a sign-out, raises the
    /// account's epoch in the same transaction. Returns the stored event
    /// (with its id and the account's epoch after it).
    fn record_security_event(
        &mut self,
        user_id: Uuid,
        kind: SecurityKind,
        token_hash: Option<&str>,
        at: Timestamp,
    ) -> StorageResult<SecurityEvent>;
    /// Sets or clears the account's "must change password" mark.
    fn set_must_change_password(&mut self, user_id: Uuid, must: bool) -> StorageResult<()>;
    /// The throttle of a sign-in key, as seen in this transaction.
    fn throttle(&mut self, key: &str) -> StorageResult<Option<Throttle>>;
    /// Sets (or, with `None`, clears) the throttle of a sign-in key.
    fn set_throttle(&mut self, key: &str, throttle: Option<&Throttle>) -> StorageResult<()>;
    /// Appends a sign-in event; returns its id.
    fn append_sign_in_event(&mut self, event: &NewSignInEvent) -> StorageResult<u64>;
    /// Appends access entries in order, each chained to the one before
    /// (see [`chain::access_hash`]); returns the `seq` of the last.
    fn append_access(&mut self, entries: &[NewAccess]) -> StorageResult<u64>;
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
    /// The server epoch: a random id made with the database and made anew
    /// by [`Storage::start_new_epoch`]. Clients that see it change know the
    /// database is not the one they synced with (a restore) and re-sync.
    fn server_epoch(&self) -> StorageResult<String>;
    /// After a restore (run with every server stopped): a new server epoch,
    /// the database marked as restored at `at`, and no client counted as
    /// resumed yet (see [`WriteTx::resume_after_restore`]). Returns the new
    /// epoch.
    fn start_new_epoch(&self, at: Timestamp) -> StorageResult<String>;
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
    /// Sessions that have not expired at `now` (a cheap count, for the
    /// server's metrics).
    fn count_open_sessions(&self, now: Timestamp) -> StorageResult<u64>;
    /// Bytes the database takes on disk, for the server's metrics: SQLite,
    /// the database file plus its write-ahead log; PostgreSQL,
    /// `pg_database_size` of the current database (its WAL is the
    /// cluster's, not counted). Reads file sizes or the catalogue: cheap,
    /// but not free, so callers cache it.
    fn database_size(&self) -> StorageResult<u64>;
    /// The backend's name (`sqlite`, `postgresql`), for the build-info
    /// metric and logs.
    fn backend_name(&self) -> &'static str;
    /// A session with its account and the account's security state, from
    /// one snapshot.
    fn session_account(&self, token_hash: &str) -> StorageResult<Option<SessionAccount>>;
    /// An account's security state (the default when none is recorded).
    fn account_security(&self, user_id: Uuid) -> StorageResult<AccountSecurity>;
    /// The current state of one row, tombstones included.
    fn current_row(&self, table: Table, id: Uuid) -> StorageResult<Option<CurrentRow>>;
    /// The highest security-event id (0 when none).
    fn security_head(&self) -> StorageResult<u64>;
    /// Up to `limit` security events with `id > after`, oldest first.
    fn security_events_after(&self, after: u64, limit: usize) -> StorageResult<Vec<SecurityEvent>>;
    /// The throttle of a sign-in key.
    fn throttle(&self, key: &str) -> StorageResult<Option<Throttle>>;
    /// Up to `limit` sign-in events with `id < before` (all when `None`),
    /// newest first.
    fn sign_in_events(&self, before: Option<u64>, limit: usize) -> StorageResult<Vec<SignInEvent>>;
    /// Up to `limit` access entries about `patient` with `seq < before`
    /// (all when `None`), newest first, with each reader's current display
    /// name.
    fn access_log(
        &self,
        patient: Uuid,
        before: Option<u64>,
        limit: usize,
    ) -> StorageResult<Vec<AccessLogEntry>>;
    /// The patients in `doctor`'s care (the rule of `clinic_shared::care`):
    /// those with a live appointment or treatment record of theirs, a
    /// referral they wrote, or a break of the glass by them in the access
    /// log at or after `glass_since` (now minus the grant's length; `None`:
    /// grants do not count, the care that does not expire).
    fn care_patients(
        &self,
        doctor: Uuid,
        glass_since: Option<Timestamp>,
    ) -> StorageResult<HashSet<Uuid>>;
    /// When `doctor` last broke the glass for `patient` (the latest such
    /// access entry), if ever.
    fn last_glass(&self, doctor: Uuid, patient: Uuid) -> StorageResult<Option<Timestamp>>;
    /// The live (not deleted) rows of `patient` in the tables with clinical
    /// fields (treatment records, referrals), by version, unredacted.
    fn clinical_rows(&self, patient: Uuid) -> StorageResult<Vec<SyncRow>>;
    /// Up to `limit` change-log entries with `seq > after`, in order, with
    /// their stored hashes.
    fn change_chain(&self, after: u64, limit: usize) -> StorageResult<Vec<ChainLink<Change>>>;
    /// Up to `limit` access-log entries with `seq > after`, in order, with
    /// their stored hashes.
    fn access_chain(&self, after: u64, limit: usize)
    -> StorageResult<Vec<ChainLink<AccessRecord>>>;
    /// Appends access entries in a transaction of their own, chained like
    /// [`WriteTx::append_access`] (the audit thread's commits). A backend
    /// may serialize these on a lock of the access log's own rather than
    /// the write lock that numbers changes (PostgreSQL does), so that the
    /// read audit of several servers does not queue behind their mutation
    /// commits; the chain stays well defined either way. Returns the `seq`
    /// of the last entry.
    fn append_access(&self, entries: &[NewAccess]) -> StorageResult<u64> {
        let mut last = 0;
        self.write(&mut |tx| {
            last = tx.append_access(entries)?;
            Ok(())
        })?;
        Ok(last)
    }
    /// Starts calling `wake` when another process commits changes or
    /// records a security event on this database, if the backend can tell
    /// (PostgreSQL: LISTEN/NOTIFY). `None`: it cannot, and callers poll.
    /// Wake-ups carry no data and may come in bursts or spuriously; after a
    /// lost connection the watcher wakes for both signals once it is back,
    /// since it may have missed some.
    fn watch(&self, wake: Wake) -> StorageResult<Option<Watching>> {
        let _ = wake;
        Ok(None)
    }
}
