//! Copying a clinic from one backend to another (`clinic-server migrate
//! --from sqlite:PATH --to postgres://…`): every row with its version, the
//! whole change log (the sequence and the audit trail) with its hash chain,
//! the access log with its chain, credentials, sessions (so signed-in desks
//! stay signed in), account security state (epochs, forced password
//! changes), the security-event log, sign-in throttles and the sign-in log,
//! clients with their last mutation id and every stored mutation result (so
//! retries still get the first answer). Sequence numbers and log positions
//! are kept, so every desk's cursor stays valid and no desk needs a full
//! re-sync, and the chains' stored hashes are copied as they are, so the
//! target's `audit verify` says what the source's did.
//!
//! The source is read in one snapshot, in chunks; the target is written in
//! one transaction under its sequence and access-log locks, so a failed
//! copy leaves the target as empty as it was. The target must be empty.
//! Both chains are checked on the way: a source whose logs do not match
//! their hashes is not copied (`audit verify` on it names the entry).

use super::postgres::PgStorage;
use super::sqlite::SqliteStorage;
use super::{
    AccessRecord, AccountSecurity, ChainLink, Change, ClientRecord, SecurityEvent, Session,
    StorageError, StorageResult, Throttle, chain,
};
use clinic_shared::model::Table;
use clinic_shared::protocol::SignInEvent;
use uuid::Uuid;

/// Items read from the source at a time.
pub const CHUNK: usize = 2000;

/// One row as stored: the entity's JSON text kept byte for byte.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    /// Table.
    pub table: Table,
    /// Id.
    pub id: Uuid,
    /// Version.
    pub version: u64,
    /// Tombstone.
    pub deleted: bool,
    /// JSON text.
    pub data: String,
}

/// A chunk of one kind of record.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    /// Current rows.
    Rows(Vec<StoredRow>),
    /// Change log entries with their stored hashes, by sequence.
    Changes(Vec<ChainLink<Change>>),
    /// `(user, PHC hash)`.
    Credentials(Vec<(Uuid, String)>),
    /// `(token hash, session)`.
    Sessions(Vec<(String, Session)>),
    /// `(client, record)`.
    Clients(Vec<(Uuid, ClientRecord)>),
    /// `(client, mutation id, outcome JSON text)`.
    Results(Vec<(Uuid, u64, String, Option<String>)>),
    /// `(user, epoch and forced change)`.
    AccountSecurity(Vec<(Uuid, AccountSecurity)>),
    /// Security events, by id.
    SecurityEvents(Vec<SecurityEvent>),
    /// `(sign-in key, throttle)`.
    Throttles(Vec<(String, Throttle)>),
    /// Sign-in events, by id.
    SignInEvents(Vec<SignInEvent>),
    /// Access log entries with their stored hashes, by position.
    Access(Vec<ChainLink<AccessRecord>>),
}

/// What a copy moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    /// Current rows.
    pub rows: u64,
    /// Change log entries.
    pub changes: u64,
    /// Highest sequence number.
    pub head: u64,
    /// Password hashes.
    pub credentials: u64,
    /// Sessions.
    pub sessions: u64,
    /// Clients.
    pub clients: u64,
    /// Stored mutation results.
    pub results: u64,
    /// Accounts with security state.
    pub account_security: u64,
    /// Security events.
    pub security_events: u64,
    /// Sign-in throttles.
    pub throttles: u64,
    /// Sign-in events.
    pub sign_in_events: u64,
    /// Access log entries.
    pub access_entries: u64,
}

impl CopyReport {
    fn count(&mut self, chunk: &Chunk) {
        let n = |len: usize| u64::try_from(len).unwrap_or(u64::MAX);
        match chunk {
            Chunk::Rows(v) => self.rows += n(v.len()),
            Chunk::Changes(v) => {
                self.changes += n(v.len());
                if let Some(last) = v.last() {
                    self.head = self.head.max(last.entry.seq);
                }
            }
            Chunk::Credentials(v) => self.credentials += n(v.len()),
            Chunk::Sessions(v) => self.sessions += n(v.len()),
            Chunk::Clients(v) => self.clients += n(v.len()),
            Chunk::Results(v) => self.results += n(v.len()),
            Chunk::AccountSecurity(v) => self.account_security += n(v.len()),
            Chunk::SecurityEvents(v) => self.security_events += n(v.len()),
            Chunk::Throttles(v) => self.throttles += n(v.len()),
            Chunk::SignInEvents(v) => self.sign_in_events += n(v.len()),
            Chunk::Access(v) => self.access_entries += n(v.len()),
        }
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        format!(
            "{} rows, {} changes (head {}), {} credentials, {} sessions, {} clients, \
             {} mutation results, {} accounts' security state, {} security events, \
             {} throttles, {} sign-in events, {} access entries",
            self.rows,
            self.changes,
            self.head,
            self.credentials,
            self.sessions,
            self.clients,
            self.results,
            self.account_security,
            self.security_events,
            self.throttles,
            self.sign_in_events,
            self.access_entries
        )
    }
}

/// Where a hash chain being copied stands: position and hash of its last
/// entry.
struct ChainCheck {
    what: &'static str,
    position: u64,
    hash: String,
}

impl ChainCheck {
    fn new(what: &'static str) -> Self {
        ChainCheck {
            what,
            position: 0,
            hash: chain::GENESIS.to_owned(),
        }
    }

    /// Follows one entry: it must come next and carry the hash the chain
    /// gives it.
    fn follow(
        &mut self,
        position: u64,
        stored: Option<&str>,
        computed: String,
    ) -> StorageResult<()> {
        if position != self.position + 1 || stored != Some(computed.as_str()) {
            return Err(StorageError::Corrupt(format!(
                "the source's {} does not match its hash chain at entry {position}; \
                 nothing was written (`clinic-server audit verify` on the source says more)",
                self.what
            )));
        }
        self.position = position;
        self.hash = computed;
        Ok(())
    }
}

/// Copies everything from `from` into the empty `to`, then checks that the
/// target holds as many of each as the source gave and the same head.
pub fn sqlite_to_postgres(from: &SqliteStorage, to: &PgStorage) -> StorageResult<CopyReport> {
    if !to.is_empty()? {
        return Err(StorageError::Database(format!(
            "the target database {} already holds data; migrate into an empty database",
            to.display_url()
        )));
    }
    let mut sent = CopyReport::default();
    let mut changes = ChainCheck::new("change log");
    let mut access = ChainCheck::new("access log");
    to.bulk(|tx| {
        from.export(CHUNK, &mut |chunk| {
            match &chunk {
                Chunk::Changes(links) => {
                    for l in links {
                        let computed = chain::change_hash(&changes.hash, &l.entry);
                        changes.follow(l.entry.seq, l.hash.as_deref(), computed)?;
                    }
                }
                Chunk::Access(links) => {
                    for l in links {
                        let computed = chain::access_record_hash(&access.hash, &l.entry);
                        access.follow(l.entry.seq, l.hash.as_deref(), computed)?;
                    }
                }
                _ => {}
            }
            sent.count(&chunk);
            super::postgres::import_chunk(tx, &chunk)
        })?;
        super::postgres::set_heads(tx, sent.head, &changes.hash, access.position, &access.hash)?;
        let found = super::postgres::count_all(tx)?;
        if found != sent {
            return Err(StorageError::Database(format!(
                "the copy does not add up (read {sent:?}, the target holds {found:?}); nothing was written"
            )));
        }
        Ok(())
    })?;
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{verify_access, verify_changes};
    use crate::storage::{NewAccess, NewSignInEvent, SecurityKind, Storage};
    use clinic_e2e::pg::PgCluster;
    use clinic_shared::protocol::{
        AccessKind, MutationOutcome, RejectCode, Rejection, SignInKind, SignInOutcome,
    };

    /// A demo clinic with a session, a client and its stored result, and
    /// some of everything access control records.
    fn clinic(path: &std::path::Path) -> (SqliteStorage, Session, Uuid, MutationOutcome) {
        let sqlite = SqliteStorage::open(path).unwrap();
        let clock = crate::system_clock();
        crate::demo::seed_if_empty(&sqlite, &clock)
            .unwrap()
            .unwrap();
        let session = Session {
            user_id: Uuid::now_v7(),
            expires_at: "2100-01-01T00:00:00Z".parse().unwrap(),
        };
        sqlite.create_session("token-hash", &session).unwrap();
        let (client, user) = (Uuid::now_v7(), Uuid::now_v7());
        let outcome = MutationOutcome::Rejected {
            rejection: Rejection::new(RejectCode::Conflict, "taken"),
        };
        let at = clock();
        let doctor = sqlite.staff_by_username("doctor").unwrap().unwrap().0.id;
        sqlite
            .write(&mut |tx| {
                tx.set_client(
                    client,
                    ClientRecord {
                        user_id: user,
                        last_mutation_id: 3,
                    },
                )?;
                tx.store_outcome(client, 3, &outcome, "fingerprint-3")?;
                tx.record_security_event(doctor, SecurityKind::RoleChanged, None, at)?;
                tx.record_security_event(doctor, SecurityKind::SignedOut, Some("gone"), at)?;
                tx.set_must_change_password(doctor, true)?;
                tx.set_throttle(
                    "user:doctor",
                    Some(&Throttle {
                        failures: 3,
                        last_failure_ms: 1_800_000_000_000,
                        locked_until_ms: 0,
                        lock_reported: false,
                    }),
                )?;
                for outcome in [SignInOutcome::Failure, SignInOutcome::Success] {
                    tx.append_sign_in_event(&NewSignInEvent {
                        at,
                        kind: SignInKind::SignIn,
                        outcome,
                        username: "doctor".into(),
                        user_id: Some(doctor),
                        address: Some("192.0.2.7".into()),
                        client_id: Some(client),
                        user_agent: Some("desk/1".into()),
                    })?;
                }
                Ok(())
            })
            .unwrap();
        let patient = Uuid::now_v7();
        sqlite
            .append_access(&[
                NewAccess {
                    at,
                    user_id: doctor,
                    client_id: Some(client),
                    kind: AccessKind::Pull,
                    patient_id: Some(patient),
                    table: Table::TreatmentRecords,
                    row_ids: vec![Uuid::now_v7(), Uuid::now_v7()],
                    reason: None,
                },
                NewAccess {
                    at,
                    user_id: doctor,
                    client_id: None,
                    kind: AccessKind::View,
                    patient_id: Some(patient),
                    table: Table::Referrals,
                    row_ids: vec![Uuid::now_v7()],
                    reason: None,
                },
            ])
            .unwrap();
        (sqlite, session, client, outcome)
    }

    #[test]
    fn a_sqlite_clinic_copies_to_postgres_whole_and_only_into_an_empty_database() {
        let dir = tempfile::tempdir().unwrap();
        let (sqlite, session, client, outcome) = clinic(&dir.path().join("clinic.db"));
        let clock = crate::system_clock();

        let cluster = PgCluster::start();
        let url = cluster.create_database();
        let pg = PgStorage::open(&url, 2).unwrap();
        let report = sqlite_to_postgres(&sqlite, &pg).unwrap();
        let head = sqlite.head().unwrap();
        assert!(head > 100, "the demo clinic has changes: {head}");
        assert_eq!(report.head, head);
        assert_eq!(report.changes, head);
        assert_eq!((report.sessions, report.clients, report.results), (1, 1, 1));
        assert_eq!(report.credentials, 5);
        assert_eq!(
            (
                report.account_security,
                report.security_events,
                report.throttles,
                report.sign_in_events,
                report.access_entries
            ),
            (1, 2, 1, 2, 2)
        );

        assert_eq!(pg.head().unwrap(), head);
        assert_eq!(
            pg.committed_between(0, head).unwrap(),
            sqlite.committed_between(0, head).unwrap()
        );
        let all = Table::ALL;
        assert_eq!(
            pg.changes_page(&all, 0, 100_000, Some(client)).unwrap(),
            sqlite.changes_page(&all, 0, 100_000, Some(client)).unwrap()
        );
        let (staff, hash) = pg.staff_by_username("doctor").unwrap().unwrap();
        assert_eq!(
            sqlite.staff_by_username("doctor").unwrap(),
            Some((staff.clone(), hash))
        );
        assert_eq!(
            pg.history(Table::Staff, staff.id).unwrap(),
            sqlite.history(Table::Staff, staff.id).unwrap()
        );
        assert_eq!(pg.session("token-hash").unwrap(), Some(session));
        assert_eq!(pg.client(client).unwrap(), sqlite.client(client).unwrap());
        let mut stored = None;
        pg.write(&mut |tx| {
            stored = tx.stored_outcome(client, 3)?;
            Ok(())
        })
        .unwrap();
        assert_eq!(
            stored,
            Some(crate::storage::StoredOutcome {
                outcome,
                fingerprint: Some("fingerprint-3".into())
            })
        );
        // Access control state and logs, as they were.
        assert_eq!(
            pg.account_security(staff.id).unwrap(),
            sqlite.account_security(staff.id).unwrap()
        );
        assert_eq!(
            pg.security_events_after(0, 100).unwrap(),
            sqlite.security_events_after(0, 100).unwrap()
        );
        assert_eq!(pg.security_head().unwrap(), 2);
        assert_eq!(
            pg.throttle("user:doctor").unwrap(),
            sqlite.throttle("user:doctor").unwrap()
        );
        assert_eq!(
            pg.sign_in_events(None, 100).unwrap(),
            sqlite.sign_in_events(None, 100).unwrap()
        );
        let patient = sqlite.access_chain(0, 1).unwrap()[0].entry.entry.patient_id;
        assert_eq!(
            pg.access_log(patient.unwrap(), None, 100).unwrap(),
            sqlite.access_log(patient.unwrap(), None, 100).unwrap()
        );
        // The chains, hash for hash.
        assert_eq!(
            pg.change_chain(0, 100_000).unwrap(),
            sqlite.change_chain(0, 100_000).unwrap()
        );
        assert_eq!(
            pg.access_chain(0, 100).unwrap(),
            sqlite.access_chain(0, 100).unwrap()
        );
        assert_eq!(
            verify_changes(&pg).unwrap(),
            verify_changes(&sqlite).unwrap()
        );
        assert_eq!(verify_access(&pg).unwrap(), verify_access(&sqlite).unwrap());
        // The next change and the next access entry continue both
        // sequences and both chains.
        let next =
            crate::admin::set_role(&pg, "doctor2", clinic_shared::model::Role::Admin, &clock)
                .unwrap();
        assert_eq!(pg.head().unwrap(), head + 1, "{next:?}");
        assert_eq!(verify_changes(&pg).unwrap().entries, head + 1);
        assert_eq!(pg.security_head().unwrap(), 3);
        let entry = pg.access_chain(0, 1).unwrap()[0].entry.entry.clone();
        assert_eq!(pg.append_access(&[entry]).unwrap(), 3);
        assert_eq!(verify_access(&pg).unwrap().entries, 3);

        let again = sqlite_to_postgres(&sqlite, &pg).unwrap_err();
        assert!(again.to_string().contains("already holds data"), "{again}");
    }

    #[test]
    fn a_source_whose_change_log_does_not_match_its_chain_is_not_copied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clinic.db");
        let (sqlite, ..) = clinic(&path);
        drop(sqlite);
        {
            // An edit behind the server's back (the triggers dropped first).
            let raw = rusqlite::Connection::open(&path).unwrap();
            raw.execute_batch(
                "DROP TRIGGER changes_no_update;
                 UPDATE changes SET after = '{\"edited\": true}' WHERE seq = 7;",
            )
            .unwrap();
        }
        let sqlite = SqliteStorage::open(&path).unwrap();
        let cluster = PgCluster::start();
        let pg = PgStorage::open(&cluster.create_database(), 2).unwrap();
        let err = sqlite_to_postgres(&sqlite, &pg).unwrap_err();
        assert!(
            err.to_string()
                .contains("change log does not match its hash chain at entry 7"),
            "{err}"
        );
        assert!(pg.is_empty().unwrap(), "nothing was written");
    }
}
