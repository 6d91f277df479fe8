//! A write transaction: the sequence lock held to commit, reads from the
//! database merged with this transaction's own writes. Row, change, client,
//! result and password writes are held in memory ([`Overlay`], with
//! savepoints as undo marks) and sent at commit, one multi-row statement
//! per kind; security state is written at once, under a real savepoint when
//! one is open (see the module above).

use super::pool::Statements;
use super::{
    CHANGES_CHANNEL, SECURITY_CHANNEL, corrupt, db_err, json_error, parse_json,
    sign_in_outcome_str, to_i64, to_u64,
};
use crate::storage::{
    Change, ClientRecord, LoggedChange, NewAccess, NewSignInEvent, SecurityEvent, SecurityKind,
    StorageError, StorageResult, StoredOutcome, Throttle, WriteTx, chain,
};
use clinic_shared::apply::{Action, CurrentRow, SlotCandidate};
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
pub(super) const INSERT_CHANGES: &str = "INSERT INTO changes (seq, tbl, row_id, action, actor_id, client_id, mutation_id, mutation, at, before, after, hash)
                 SELECT s, t, r, a, ac, cl, m, mu, w, b::json, af::json, h
                 FROM unnest($1::int8[], $2::text[], $3::uuid[], $4::text[], $5::uuid[], $6::uuid[],
                             $7::int8[], $8::text[], $9::timestamptz[], $10::text[], $11::text[], $12::text[])
                      AS u(s, t, r, a, ac, cl, m, mu, w, b, af, h)";
/// Access entries with their hashes (row ids as a JSON array each: arrays
/// of arrays do not `unnest` row by row).
pub(super) const INSERT_ACCESS: &str = "INSERT INTO access_log (seq, at, user_id, client_id, kind, patient_id, tbl, row_ids, hash, reason)
                 SELECT s, w, u, c, k, p, t, ARRAY(SELECT json_array_elements_text(r::json)::uuid), h, re
                 FROM unnest($1::int8[], $2::timestamptz[], $3::uuid[], $4::uuid[], $5::text[],
                             $6::uuid[], $7::text[], $8::text[], $9::text[], $10::text[])
                      AS x(s, w, u, c, k, p, t, r, h, re)";
pub(super) const INSERT_RESULTS: &str = "INSERT INTO mutation_results (client_id, mutation_id, outcome, fingerprint)
                 SELECT c, m, o::json, f FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::text[]) AS u(c, m, o, f)";
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
    outcomes: HashMap<(Uuid, u64), (MutationOutcome, String)>,
    passwords: HashMap<Uuid, String>,
    undo: Vec<Undo>,
    marks: Vec<Mark>,
}

/// An open savepoint: where the overlay stood, and whether the database
/// holds a real savepoint for it (made just before the first write that
/// went straight to the database while it was open).
struct Mark {
    undo: usize,
    changes: usize,
    in_db: bool,
}

/// How to take back one overlay write.
enum Undo {
    Row((Table, Uuid), Option<CurrentRow>),
    Client(Uuid, Option<ClientRecord>),
    Outcome((Uuid, u64)),
    Password(Uuid, Option<String>),
}

impl Overlay {
    fn rollback_to(&mut self, undo: usize, changes: usize) {
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
    /// The hash of the change at `head` ([`chain::GENESIS`] when none).
    pub(super) chain_head: String,
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

    /// Before a write that goes straight to the database: every open
    /// savepoint without a database savepoint gets one now, outermost first
    /// (nothing reached the database since it was opened, so now is the
    /// same point), so that rolling it back undoes the write.
    fn direct(&mut self) -> StorageResult<()> {
        for (depth, mark) in self.overlay.marks.iter_mut().enumerate() {
            if !mark.in_db {
                self.tx
                    .batch_execute(&format!("SAVEPOINT clinic_{depth}"))
                    .map_err(db_err)?;
                mark.in_db = true;
            }
        }
        Ok(())
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
        let mut changes = overlay.changes;
        if !changes.windows(2).all(|w| w[0].seq < w[1].seq) {
            changes.sort_by_key(|c| c.seq);
        }
        // The chain, in seq order, from the head read under the lock.
        let mut hashes = Vec::with_capacity(changes.len());
        for c in &changes {
            let previous = hashes.last().unwrap_or(&self.chain_head);
            let hash = chain::change_hash(previous, c);
            hashes.push(hash);
        }
        if !changes.is_empty() {
            insert_changes(&mut self.tx, self.stmts, &changes, &hashes)?;
        }
        if !overlay.outcomes.is_empty() {
            let mut client = Vec::with_capacity(overlay.outcomes.len());
            let mut mutation = Vec::with_capacity(overlay.outcomes.len());
            let mut outcome = Vec::with_capacity(overlay.outcomes.len());
            let mut fingerprint = Vec::with_capacity(overlay.outcomes.len());
            for ((c, m), (o, f)) in &overlay.outcomes {
                client.push(*c);
                mutation.push(to_i64(*m));
                outcome.push(
                    serde_json::to_string(o).map_err(|e| StorageError::Database(e.to_string()))?,
                );
                fingerprint.push(Some(f.as_str()));
            }
            self.execute(
                INSERT_RESULTS,
                &[&client, &mutation, &outcome, &fingerprint],
            )?;
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
        if let (Some(last), Some(hash)) = (changes.last(), hashes.last()) {
            self.execute(
                "UPDATE sequence_head SET head = $1, hash = $2",
                &[&to_i64(last.seq.max(self.head)), hash],
            )?;
            self.execute("SELECT pg_notify($1, '')", &[&CHANGES_CHANNEL])?;
        }
        Ok(())
    }
}

/// Appends access entries under the access log's lock row: positions and
/// hashes continue from its head, which moves in the same transaction.
/// Returns the position of the last entry (the head when none).
pub(super) fn append_access(
    tx: &mut postgres::Transaction<'_>,
    stmts: &mut Statements,
    entries: &[NewAccess],
) -> StorageResult<u64> {
    let lock = stmts
        .get(tx, "SELECT seq, hash FROM access_head FOR UPDATE")
        .map_err(db_err)?;
    let head = tx.query_one(&lock, &[]).map_err(db_err)?;
    let mut seq = to_u64(head.get(0));
    let mut previous: String = head.get(1);
    if entries.is_empty() {
        return Ok(seq);
    }
    let mut records = Vec::with_capacity(entries.len());
    for entry in entries {
        seq += 1;
        let hash = chain::access_hash(&previous, seq, entry);
        records.push((seq, entry, hash.clone()));
        previous = hash;
    }
    insert_access(tx, stmts, &records)?;
    let update = stmts
        .get(tx, "UPDATE access_head SET seq = $1, hash = $2")
        .map_err(db_err)?;
    tx.execute(&update, &[&to_i64(seq), &previous])
        .map_err(db_err)?;
    Ok(seq)
}

/// Inserts access entries, each `(seq, entry, hash)`, in one statement.
pub(super) fn insert_access(
    tx: &mut postgres::Transaction<'_>,
    stmts: &mut Statements,
    records: &[(u64, &NewAccess, String)],
) -> StorageResult<()> {
    let n = records.len();
    let mut seq = Vec::with_capacity(n);
    let mut at = Vec::with_capacity(n);
    let mut user = Vec::with_capacity(n);
    let mut client = Vec::with_capacity(n);
    let mut kind = Vec::with_capacity(n);
    let mut patient = Vec::with_capacity(n);
    let mut tbl = Vec::with_capacity(n);
    let mut row_ids = Vec::with_capacity(n);
    let mut hash = Vec::with_capacity(n);
    let mut reason = Vec::with_capacity(n);
    for (s, e, h) in records {
        seq.push(to_i64(*s));
        at.push(e.at.as_datetime());
        user.push(e.user_id);
        client.push(e.client_id);
        kind.push(e.kind.as_str());
        patient.push(e.patient_id);
        tbl.push(e.table.as_str());
        row_ids.push(
            serde_json::to_string(&e.row_ids).map_err(|e| StorageError::Database(e.to_string()))?,
        );
        hash.push(h.as_str());
        reason.push(e.reason.as_deref());
    }
    let stmt = stmts.get(tx, INSERT_ACCESS).map_err(db_err)?;
    tx.execute(
        &stmt,
        &[
            &seq, &at, &user, &client, &kind, &patient, &tbl, &row_ids, &hash, &reason,
        ],
    )
    .map_err(db_err)?;
    Ok(())
}

/// Appends change log entries with their hashes in one statement.
pub(super) fn insert_changes(
    tx: &mut postgres::Transaction<'_>,
    stmts: &mut Statements,
    changes: &[Change],
    hashes: &[String],
) -> StorageResult<()> {
    if changes.len() != hashes.len() {
        return Err(StorageError::Database(format!(
            "{} changes but {} hashes",
            changes.len(),
            hashes.len()
        )));
    }
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
            &hashes,
        ],
    )
    .map_err(db_err)?;
    Ok(())
}

/// Whether an appointment's JSON is the doctor's and starts in
/// `[from, until)` (ISO-8601 UTC strings order as their bytes).
fn starts_between(
    data: &serde_json::Value,
    key: &str,
    value: &str,
    from: &str,
    until: &str,
) -> bool {
    let field = |name: &str| data.get(name).and_then(|v| v.as_str()).unwrap_or("");
    let start = field("start");
    field(key) == value && start >= from && start < until
}

impl PgTx<'_> {
    /// Live appointments whose `key` (`doctor_id` or `patient_id`) is `id`
    /// and that start in `[from, until)`, as this transaction sees them:
    /// rows written in it are judged by their new state. Each key has its
    /// own expression index (schema migrations 1 and 5).
    fn appointments_by(
        &mut self,
        key: &'static str,
        id: Uuid,
        from: Timestamp,
        until: Timestamp,
    ) -> StorageResult<Vec<SlotCandidate>> {
        let (value, from, until) = (id.to_string(), from.to_string(), until.to_string());
        let sql = match key {
            "doctor_id" => {
                "SELECT id, data::text FROM rows
                 WHERE tbl = 'appointments' AND deleted = false
                   AND data->>'doctor_id' = $1
                   AND (data->>'start') COLLATE \"C\" >= $2
                   AND (data->>'start') COLLATE \"C\" < $3"
            }
            _ => {
                "SELECT id, data::text FROM rows
                 WHERE tbl = 'appointments' AND deleted = false
                   AND data->>'patient_id' = $1
                   AND (data->>'start') COLLATE \"C\" >= $2
                   AND (data->>'start') COLLATE \"C\" < $3"
            }
        };
        let rows = self.query(sql, &[&value, &from, &until])?;
        let mut found = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: Uuid = r.get(0);
            if self.overlay.rows.contains_key(&(Table::Appointments, id)) {
                continue;
            }
            found.push(SlotCandidate {
                id,
                data: parse_json(r.get(1))?,
            });
        }
        for ((table, id), row) in &self.overlay.rows {
            if *table == Table::Appointments
                && !row.deleted
                && starts_between(&row.data, key, &value, &from, &until)
            {
                found.push(SlotCandidate {
                    id: *id,
                    data: row.data.clone(),
                });
            }
        }
        Ok(found)
    }
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

    fn appointments_starting_between(
        &mut self,
        doctor_id: Uuid,
        from: Timestamp,
        until: Timestamp,
    ) -> StorageResult<Vec<SlotCandidate>> {
        self.appointments_by("doctor_id", doctor_id, from, until)
    }

    fn patient_appointments_starting_between(
        &mut self,
        patient_id: Uuid,
        from: Timestamp,
        until: Timestamp,
    ) -> StorageResult<Vec<SlotCandidate>> {
        self.appointments_by("patient_id", patient_id, from, until)
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
            "SELECT seq, client_id, before::text, after::text, actor_id, at FROM changes
             WHERE tbl = $1 AND row_id = $2 AND seq > $3 ORDER BY seq",
            &[&table.as_str(), &id, &to_i64(after)],
        )?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(LoggedChange {
                    seq: to_u64(r.get(0)),
                    client_id: r.get(1),
                    actor_id: r.get(4),
                    at: Some(Timestamp::from_datetime(
                        r.get::<_, chrono::DateTime<chrono::Utc>>(5),
                    )),
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
                    actor_id: c.actor_id,
                    at: Some(c.at),
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

    fn resume_after_restore(&mut self, client_id: Uuid) -> StorageResult<bool> {
        let restored = self.query("SELECT 1 FROM server_meta WHERE key = 'restored_at'", &[])?;
        if restored.is_empty() {
            return Ok(false);
        }
        self.direct()?;
        let first = self.execute(
            "INSERT INTO resumed_clients (client_id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&client_id],
        )?;
        Ok(first == 1)
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
    ) -> StorageResult<Option<StoredOutcome>> {
        if let Some((outcome, fingerprint)) = self.overlay.outcomes.get(&(client_id, mutation_id)) {
            return Ok(Some(StoredOutcome {
                outcome: outcome.clone(),
                fingerprint: Some(fingerprint.clone()),
            }));
        }
        let rows = self.query(
            "SELECT outcome::text, fingerprint FROM mutation_results
             WHERE client_id = $1 AND mutation_id = $2",
            &[&client_id, &to_i64(mutation_id)],
        )?;
        rows.first()
            .map(|r| {
                let outcome = serde_json::from_str(r.get(0))
                    .map_err(|e| corrupt(format!("bad stored outcome: {}", json_error(&e))))?;
                Ok(StoredOutcome {
                    outcome,
                    fingerprint: r.get(1),
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
        let key = (client_id, mutation_id);
        if self.overlay.outcomes.contains_key(&key) {
            return Err(StorageError::Database(format!(
                "outcome of mutation {mutation_id} of client {client_id} stored twice"
            )));
        }
        self.overlay
            .outcomes
            .insert(key, (outcome.clone(), fingerprint.to_owned()));
        self.overlay.undo.push(Undo::Outcome(key));
        Ok(())
    }

    fn set_password_hash(&mut self, user_id: Uuid, hash: &str) -> StorageResult<()> {
        let previous = self.overlay.passwords.insert(user_id, hash.to_owned());
        self.overlay.undo.push(Undo::Password(user_id, previous));
        Ok(())
    }

    fn delete_sessions_of(&mut self, user_id: Uuid) -> StorageResult<()> {
        self.direct()?;
        self.execute("DELETE FROM sessions WHERE user_id = $1", &[&user_id])?;
        Ok(())
    }

    fn delete_other_sessions(&mut self, user_id: Uuid, keep: &str) -> StorageResult<u64> {
        self.direct()?;
        self.execute(
            "DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2",
            &[&user_id, &keep],
        )
    }

    fn delete_session(&mut self, token_hash: &str) -> StorageResult<bool> {
        self.direct()?;
        let n = self.execute("DELETE FROM sessions WHERE token_hash = $1", &[&token_hash])?;
        Ok(n > 0)
    }

    fn count_sessions_of(&mut self, user_id: Uuid) -> StorageResult<u64> {
        let rows = self.query(
            "SELECT COUNT(*) FROM sessions WHERE user_id = $1",
            &[&user_id],
        )?;
        Ok(rows.first().map_or(0, |r| to_u64(r.get(0))))
    }

    fn record_security_event(
        &mut self,
        user_id: Uuid,
        kind: SecurityKind,
        token_hash: Option<&str>,
        at: Timestamp,
    ) -> StorageResult<SecurityEvent> {
        self.direct()?;
        if kind.bumps_epoch() {
            self.execute(
                "INSERT INTO account_security (user_id, epoch) VALUES ($1, 1)
                 ON CONFLICT (user_id) DO UPDATE SET epoch = account_security.epoch + 1",
                &[&user_id],
            )?;
        }
        // The id is the next after the highest: under the sequence lock, so
        // ids rise in commit order and a reader tailing by id skips none.
        let rows = self.query(
            "INSERT INTO security_events (id, at, user_id, kind, token_hash, epoch)
             SELECT COALESCE((SELECT MAX(id) FROM security_events), 0) + 1, $1, $2, $3, $4,
                    COALESCE((SELECT epoch FROM account_security WHERE user_id = $2), 0)
             RETURNING id, epoch",
            &[&at.as_datetime(), &user_id, &kind.as_str(), &token_hash],
        )?;
        let stored = rows
            .first()
            .ok_or_else(|| StorageError::Database("the security event was not stored".into()))?;
        let event = SecurityEvent {
            id: to_u64(stored.get(0)),
            at,
            user_id,
            kind,
            token_hash: token_hash.map(str::to_owned),
            epoch: to_u64(stored.get(1)),
        };
        // Delivered at commit; dropped if a savepoint around it rolls back.
        self.execute("SELECT pg_notify($1, '')", &[&SECURITY_CHANNEL])?;
        Ok(event)
    }

    fn set_must_change_password(&mut self, user_id: Uuid, must: bool) -> StorageResult<()> {
        self.direct()?;
        self.execute(
            "INSERT INTO account_security (user_id, must_change_password) VALUES ($1, $2)
             ON CONFLICT (user_id) DO UPDATE SET must_change_password = excluded.must_change_password",
            &[&user_id, &must],
        )?;
        Ok(())
    }

    fn throttle(&mut self, key: &str) -> StorageResult<Option<Throttle>> {
        let rows = self.query(
            "SELECT failures, last_failure_ms, locked_until_ms, lock_reported
             FROM sign_in_throttle WHERE key = $1",
            &[&key],
        )?;
        Ok(rows.first().map(super::throttle_from_row))
    }

    fn set_throttle(&mut self, key: &str, throttle: Option<&Throttle>) -> StorageResult<()> {
        self.direct()?;
        match throttle {
            None => {
                self.execute("DELETE FROM sign_in_throttle WHERE key = $1", &[&key])?;
            }
            Some(t) => {
                let failures = i32::try_from(t.failures).unwrap_or(i32::MAX);
                self.execute(
                    "INSERT INTO sign_in_throttle (key, failures, last_failure_ms, locked_until_ms, lock_reported)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (key) DO UPDATE SET failures = excluded.failures,
                         last_failure_ms = excluded.last_failure_ms,
                         locked_until_ms = excluded.locked_until_ms,
                         lock_reported = excluded.lock_reported",
                    &[
                        &key,
                        &failures,
                        &t.last_failure_ms,
                        &t.locked_until_ms,
                        &t.lock_reported,
                    ],
                )?;
            }
        }
        Ok(())
    }

    fn append_sign_in_event(&mut self, e: &NewSignInEvent) -> StorageResult<u64> {
        self.direct()?;
        let rows = self.query(
            "INSERT INTO sign_in_events (id, at, kind, outcome, username, user_id, address, client_id, user_agent)
             SELECT COALESCE((SELECT MAX(id) FROM sign_in_events), 0) + 1, $1, $2, $3, $4, $5, $6, $7, $8
             RETURNING id",
            &[
                &e.at.as_datetime(),
                &super::sign_in_kind_str(e.kind),
                &sign_in_outcome_str(e.outcome),
                &e.username,
                &e.user_id,
                &e.address,
                &e.client_id,
                &e.user_agent,
            ],
        )?;
        Ok(rows.first().map_or(0, |r| to_u64(r.get(0))))
    }

    fn append_access(&mut self, entries: &[NewAccess]) -> StorageResult<u64> {
        self.direct()?;
        append_access(&mut self.tx, self.stmts, entries)
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
        self.overlay.marks.push(Mark {
            undo: self.overlay.undo.len(),
            changes: self.overlay.changes.len(),
            in_db: false,
        });
        Ok(())
    }

    fn rollback_to_savepoint(&mut self) -> StorageResult<()> {
        let mark = self
            .overlay
            .marks
            .pop()
            .ok_or_else(|| StorageError::Database("no savepoint to roll back to".into()))?;
        if mark.in_db {
            let depth = self.overlay.marks.len();
            self.tx
                .batch_execute(&format!(
                    "ROLLBACK TO SAVEPOINT clinic_{depth}; RELEASE SAVEPOINT clinic_{depth}"
                ))
                .map_err(db_err)?;
        }
        self.overlay.rollback_to(mark.undo, mark.changes);
        Ok(())
    }

    fn release_savepoint(&mut self) -> StorageResult<()> {
        let mark = self
            .overlay
            .marks
            .pop()
            .ok_or_else(|| StorageError::Database("no savepoint to release".into()))?;
        if mark.in_db {
            let depth = self.overlay.marks.len();
            self.tx
                .batch_execute(&format!("RELEASE SAVEPOINT clinic_{depth}"))
                .map_err(db_err)?;
        }
        Ok(())
    }
}
