//! A write transaction: the sequence lock held to commit, reads from the
//! database merged with this transaction's own writes, which are held in
//! memory ([`Overlay`], with savepoints as undo marks) and sent at commit,
//! one multi-row statement per kind.

use super::pool::Statements;
use super::{CHANGES_CHANNEL, SESSIONS_CHANNEL, corrupt, db_err, parse_json, to_i64, to_u64};
use crate::storage::{Change, ClientRecord, LoggedChange, StorageError, StorageResult, WriteTx};
use clinic_shared::apply::{Action, CurrentRow};
use clinic_shared::model::{Table, Timestamp};
use clinic_shared::protocol::MutationOutcome;
use postgres::types::ToSql;
use std::collections::HashMap;
use uuid::Uuid;

/// Multi-row writes, one statement each (arrays in, `unnest` out).
pub(super) const UPSERT_ROWS: &str = "INSERT INTO rows (tbl, id, version, deleted, data)
                 SELECT t, i, v, d, x::json
                 FROM unnest($1::text[], $2::uuid[], $3::int8[], $4::bool[], $5::text[]) AS u(t, i, v, d, x)
                 ON CONFLICT (tbl, id) DO UPDATE SET version = excluded.version,
                     deleted = excluded.deleted, data = excluded.data";
pub(super) const INSERT_CHANGES: &str = "INSERT INTO changes (seq, tbl, row_id, action, actor_id, client_id, mutation_id, mutation, at, before, after)
                 SELECT s, t, r, a, ac, cl, m, mu, w, b::json, af::json
                 FROM unnest($1::int8[], $2::text[], $3::uuid[], $4::text[], $5::uuid[], $6::uuid[],
                             $7::int8[], $8::text[], $9::timestamptz[], $10::text[], $11::text[])
                      AS u(s, t, r, a, ac, cl, m, mu, w, b, af)";
pub(super) const INSERT_RESULTS: &str = "INSERT INTO mutation_results (client_id, mutation_id, outcome)
                 SELECT c, m, o::json FROM unnest($1::uuid[], $2::int8[], $3::text[]) AS u(c, m, o)";
pub(super) const UPSERT_CLIENTS: &str = "INSERT INTO clients (client_id, user_id, last_mutation_id)
                 SELECT c, u, l FROM unnest($1::uuid[], $2::uuid[], $3::int8[]) AS x(c, u, l)
                 ON CONFLICT (client_id) DO UPDATE SET last_mutation_id = excluded.last_mutation_id";
pub(super) const UPSERT_CREDENTIALS: &str = "INSERT INTO credentials (user_id, password_hash)
                 SELECT u, h FROM unnest($1::uuid[], $2::text[]) AS x(u, h)
                 ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash";
pub(super) const INSERT_SESSIONS: &str = "INSERT INTO sessions (token_hash, user_id, expires_at)
     SELECT h, u, e FROM unnest($1::text[], $2::uuid[], $3::timestamptz[]) AS x(h, u, e)";

/// Writes of one transaction, held until commit.
#[derive(Default)]
pub(super) struct Overlay {
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
pub(super) struct PgTx<'c> {
    pub(super) tx: postgres::Transaction<'c>,
    pub(super) stmts: &'c mut Statements,
    /// The committed head when the lock was taken.
    pub(super) head: u64,
    pub(super) overlay: Overlay,
    /// Client records read from the database in this transaction.
    pub(super) db_clients: HashMap<Uuid, Option<ClientRecord>>,
    /// Rows read from the database in this transaction (prefetched). Valid
    /// to its end: no other writer can commit while it holds the lock, and
    /// its own writes are in the overlay, which is read first.
    pub(super) db_rows: HashMap<(Table, Uuid), Option<CurrentRow>>,
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
    pub(super) fn flush(&mut self) -> StorageResult<()> {
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
pub(super) fn insert_changes(
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
        if let Some(known) = self.db_rows.get(&(table, id)) {
            return Ok(known.clone());
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

    fn prefetch(&mut self, rows: &[(Table, Uuid)], clients: &[Uuid]) -> StorageResult<()> {
        let wanted: Vec<(Table, Uuid)> = rows
            .iter()
            .filter(|k| !self.db_rows.contains_key(k))
            .copied()
            .collect();
        if !wanted.is_empty() {
            let tables: Vec<&str> = wanted.iter().map(|(t, _)| t.as_str()).collect();
            let ids: Vec<Uuid> = wanted.iter().map(|(_, i)| *i).collect();
            let found = self.query(
                "SELECT r.tbl, r.id, r.version, r.deleted, r.data::text
                 FROM unnest($1::text[], $2::uuid[]) AS k(tbl, id)
                 JOIN rows r ON r.tbl = k.tbl AND r.id = k.id",
                &[&tables, &ids],
            )?;
            for key in &wanted {
                self.db_rows.insert(*key, None);
            }
            for r in &found {
                let table: Table = r.get::<_, &str>(0).parse().map_err(corrupt)?;
                self.db_rows.insert(
                    (table, r.get(1)),
                    Some(CurrentRow {
                        version: to_u64(r.get(2)),
                        deleted: r.get(3),
                        data: parse_json(r.get(4))?,
                    }),
                );
            }
        }
        let wanted: Vec<Uuid> = clients
            .iter()
            .filter(|c| !self.db_clients.contains_key(c))
            .copied()
            .collect();
        if !wanted.is_empty() {
            let found = self.query(
                "SELECT client_id, user_id, last_mutation_id FROM clients WHERE client_id = ANY($1)",
                &[&wanted],
            )?;
            for c in &wanted {
                self.db_clients.insert(*c, None);
            }
            for r in &found {
                self.db_clients.insert(
                    r.get(0),
                    Some(ClientRecord {
                        user_id: r.get(1),
                        last_mutation_id: to_u64(r.get(2)),
                    }),
                );
            }
        }
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
