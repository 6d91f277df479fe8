//! Copying a clinic from one backend to another (`clinic-server migrate
//! --from sqlite:PATH --to postgres://…`): every row with its version, the
//! whole change log (the sequence and the audit trail), credentials,
//! sessions (so signed-in desks stay signed in), clients with their last
//! mutation id and every stored mutation result (so retries still get the
//! first answer). Sequence numbers are kept, so every desk's cursor stays
//! valid and no desk needs a full re-sync.
//!
//! The source is read in one snapshot, in chunks; the target is written in
//! one transaction under its sequence lock, so a failed copy leaves the
//! target as empty as it was. The target must be empty.

use super::postgres::PgStorage;
use super::sqlite::SqliteStorage;
use super::{Change, ClientRecord, Session, StorageError, StorageResult};
use clinic_shared::model::Table;
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
    /// Change log entries, by sequence.
    Changes(Vec<Change>),
    /// `(user, PHC hash)`.
    Credentials(Vec<(Uuid, String)>),
    /// `(token hash, session)`.
    Sessions(Vec<(String, Session)>),
    /// `(client, record)`.
    Clients(Vec<(Uuid, ClientRecord)>),
    /// `(client, mutation id, outcome JSON text)`.
    Results(Vec<(Uuid, u64, String)>),
}

/// What a copy moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
}

impl CopyReport {
    fn count(&mut self, chunk: &Chunk) {
        let n = |len: usize| u64::try_from(len).unwrap_or(u64::MAX);
        match chunk {
            Chunk::Rows(v) => self.rows += n(v.len()),
            Chunk::Changes(v) => {
                self.changes += n(v.len());
                if let Some(last) = v.last() {
                    self.head = self.head.max(last.seq);
                }
            }
            Chunk::Credentials(v) => self.credentials += n(v.len()),
            Chunk::Sessions(v) => self.sessions += n(v.len()),
            Chunk::Clients(v) => self.clients += n(v.len()),
            Chunk::Results(v) => self.results += n(v.len()),
        }
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
    to.bulk(|tx| {
        from.export(CHUNK, &mut |chunk| {
            sent.count(&chunk);
            super::postgres::import_chunk(tx, &chunk)
        })?;
        super::postgres::set_head(tx, sent.head)?;
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
    use crate::storage::Storage;
    use clinic_e2e::pg::PgCluster;
    use clinic_shared::protocol::{MutationOutcome, RejectCode, Rejection};

    #[test]
    fn a_sqlite_clinic_copies_to_postgres_whole_and_only_into_an_empty_database() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStorage::open(dir.path().join("clinic.db")).unwrap();
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
        sqlite
            .write(&mut |tx| {
                tx.set_client(
                    client,
                    ClientRecord {
                        user_id: user,
                        last_mutation_id: 3,
                    },
                )?;
                tx.store_outcome(client, 3, &outcome)
            })
            .unwrap();

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
        assert_eq!(stored, Some(outcome));
        // The next change continues the sequence.
        let next =
            crate::admin::set_role(&pg, "doctor2", clinic_shared::model::Role::Admin, &clock)
                .unwrap();
        assert_eq!(pg.head().unwrap(), head + 1, "{next:?}");

        let again = sqlite_to_postgres(&sqlite, &pg).unwrap_err();
        assert!(again.to_string().contains("already holds data"), "{again}");
    }
}
