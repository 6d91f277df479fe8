//! Model-based property test of the local mirror (its operations through
//! [`crate::internals::SyncMirror`], the same functions the mirror's thread
//! runs).
//!
//! The property (DESIGN.md, "Sync model"): whatever sequence of local
//! mutations, server answers (applied, rejected, retry), pulled pages, live
//! batches and changes by other users arrives, in any interleaving the
//! protocol allows, the store's visible rows equal its confirmed rows with the
//! remaining pending mutations replayed on top, in order. And once everything
//! has been pushed, answered and pulled, the outbox is empty and
//! visible == confirmed == the server's rows.
//!
//! The server is simulated in the test: authoritative rows, a gap-free
//! sequence, a change log, the shared planner, and the server's field-conflict
//! rule (the shared `clinic_shared::conflict::check_conflicts`, which the
//! server's engine runs too).

mod cases;
mod model;

use crate::ClientError;
use crate::internals::SyncMirror as Store;
use clinic_shared::apply::{
    self, Action, ConflictCheck, CurrentRow, PlanError, RowSource, SlotCandidate,
};
use clinic_shared::conflict::{self, PastChange};
use clinic_shared::model::{InvoiceLine, Role, Staff, SyncRow, Table, Timestamp};
use clinic_shared::mutation::{
    AdjustStock, BookAppointment, CreateInvoice, CreatePatient, DeletePatient, InventoryItemPatch,
    Mutation, PatientPatch, PendingMutation, UpdateInventoryItem, UpdatePatient,
};
use clinic_shared::protocol::{
    Actor, ErrorBody, ErrorCode, MutationOutcome, MutationResult, Rejection,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Rows as the planner sees them, for the simulated server and the model.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct MRow {
    version: u64,
    deleted: bool,
    data: Value,
}

type Rows = BTreeMap<(Table, Uuid), MRow>;

/// A `RowSource` over an in-memory map. No appointments and no staff rows
/// are ever generated, so the two lookups have nothing to find.
struct Src<'a>(&'a Rows);

impl RowSource for Src<'_> {
    type Error = Infallible;

    fn row(&mut self, table: Table, id: Uuid) -> Result<Option<CurrentRow>, Infallible> {
        Ok(self.0.get(&(table, id)).map(|r| CurrentRow {
            version: r.version,
            deleted: r.deleted,
            data: r.data.clone(),
        }))
    }

    fn appointments_starting_between(
        &mut self,
        _doctor_id: Uuid,
        _from: Timestamp,
        _until: Timestamp,
    ) -> Result<Vec<SlotCandidate>, Infallible> {
        Ok(Vec::new())
    }

    fn patient_appointments_starting_between(
        &mut self,
        _patient_id: Uuid,
        _from: Timestamp,
        _until: Timestamp,
    ) -> Result<Vec<SlotCandidate>, Infallible> {
        Ok(Vec::new())
    }

    fn staff_id_by_username(&mut self, _username: &str) -> Result<Option<Uuid>, Infallible> {
        Ok(None)
    }
}

fn plan(m: &Mutation, actor: &Actor, rows: &Rows) -> Result<Vec<apply::RowWrite>, Rejection> {
    // No appointments are generated, so "now" only has to be a time.
    let now = Timestamp::from_unix(1_800_000_000).unwrap_or_else(|| unreachable!());
    match apply::plan(m, actor, now, &mut Src(rows)) {
        Ok(w) => Ok(w),
        Err(PlanError::Rejected(r)) => Err(r),
        Err(PlanError::Source(e)) => match e {},
    }
}

// ---------------------------------------------------------------------------
// The simulated server.
// ---------------------------------------------------------------------------

/// One entry of the server's change log (for conflicts and live batches).
#[derive(Debug, Clone)]
struct Logged {
    seq: u64,
    table: Table,
    id: Uuid,
    /// Made by this test's client (as opposed to another user).
    ours: bool,
    /// The mutation of this test's client that made it, if any.
    mutation_id: Option<u64>,
    before: Option<Value>,
    after: Value,
    deleted: bool,
}

struct Server {
    actor: Actor,
    rows: Rows,
    log: Vec<Logged>,
    head: u64,
    /// Stored outcome of every mutation id processed (a re-push gets it again).
    processed: BTreeMap<u64, MutationOutcome>,
    /// Push results sent but not yet delivered to the client, in order.
    results: Vec<MutationResult>,
}

impl Server {
    fn write(
        &mut self,
        table: Table,
        id: Uuid,
        deleted: bool,
        before: Option<Value>,
        after: Value,
        by: Option<u64>,
    ) -> u64 {
        self.head += 1;
        let seq = self.head;
        self.rows.insert(
            (table, id),
            MRow {
                version: seq,
                deleted,
                data: after.clone(),
            },
        );
        self.log.push(Logged {
            seq,
            table,
            id,
            ours: by.is_some(),
            mutation_id: by,
            before,
            after,
            deleted,
        });
        seq
    }

    /// The server's conflict rule (the shared one), on this log.
    fn conflict(&self, w: &apply::RowWrite, check: &ConflictCheck) -> Option<Rejection> {
        let current_version = self.rows.get(&(w.table, w.id)).map_or(0, |r| r.version);
        let since = || -> Result<Vec<PastChange>, Infallible> {
            Ok(self
                .log
                .iter()
                .filter(|c| c.table == w.table && c.id == w.id && c.seq > check.base_version)
                .map(|c| PastChange {
                    seq: c.seq,
                    client_id: Some(if c.ours { OUR_CLIENT } else { OTHER_CLIENT }),
                    actor_id: None,
                    at: None,
                    before: c.before.clone(),
                    after: c.after.clone(),
                })
                .collect())
        };
        match conflict::check_conflicts(w, check, current_version, OUR_CLIENT, since) {
            Ok(()) => None,
            Err(PlanError::Rejected(r)) => Some(r),
            Err(PlanError::Source(never)) => match never {},
        }
    }

    /// Processes one pushed mutation (exactly once; a re-push gets the
    /// stored outcome) and queues its result for delivery.
    fn process(&mut self, pm: &PendingMutation) {
        let outcome = if let Some(stored) = self.processed.get(&pm.mutation_id) {
            stored.clone()
        } else {
            let outcome = match plan(&pm.mutation, &self.actor, &self.rows) {
                Err(rejection) => MutationOutcome::Rejected { rejection },
                Ok(writes) => {
                    let conflict = writes.iter().find_map(|w| {
                        w.conflict_check
                            .as_ref()
                            .and_then(|check| self.conflict(w, check))
                    });
                    match conflict {
                        Some(rejection) => MutationOutcome::Rejected { rejection },
                        None => {
                            let mut seq = 0;
                            for w in writes {
                                seq = self.write(
                                    w.table,
                                    w.id,
                                    w.action == Action::Delete,
                                    w.before,
                                    w.after,
                                    Some(pm.mutation_id),
                                );
                            }
                            MutationOutcome::Applied { seq }
                        }
                    }
                }
            };
            self.processed.insert(pm.mutation_id, outcome.clone());
            outcome
        };
        self.results.push(MutationResult {
            mutation_id: pm.mutation_id,
            outcome,
        });
    }

    fn sync_row(table: Table, id: Uuid, version: u64, deleted: bool, data: &Value) -> SyncRow {
        SyncRow {
            table,
            id,
            version,
            deleted,
            data: (!deleted).then(|| data.clone()),
        }
    }

    /// `GET /v1/pull?cursor=`: current rows with `version > cursor`, by
    /// version, at most `limit`; the cursor is the last row's version while
    /// more remain, else the head. The last page (and only it) carries the
    /// highest mutation id processed for the client; the bool says "last".
    fn pull(&self, cursor: u64, limit: usize) -> (Vec<SyncRow>, u64, Option<u64>, bool) {
        let mut rows: Vec<SyncRow> = self
            .rows
            .iter()
            .filter(|(_, r)| r.version > cursor)
            .map(|((t, id), r)| Self::sync_row(*t, *id, r.version, r.deleted, &r.data))
            .collect();
        rows.sort_by_key(|r| r.version);
        if rows.len() > limit {
            rows.truncate(limit);
            let c = rows.last().map_or(cursor, |r| r.version);
            (rows, c, None, false)
        } else {
            let ack = self.processed.keys().max().copied();
            (rows, self.head.max(cursor), ack, true)
        }
    }

    /// A live `changes` batch: every logged change in `(cursor, cursor + n]`
    /// as it was at the time, cursor = the batch's end, acknowledging the
    /// highest mutation of this client among them (as `Batch::ack_for`).
    fn live(&self, cursor: u64, n: u64) -> (Vec<SyncRow>, u64, Option<u64>) {
        let end = cursor.saturating_add(n).min(self.head).max(cursor);
        let in_batch = || self.log.iter().filter(|c| c.seq > cursor && c.seq <= end);
        let rows = in_batch()
            .map(|c| Self::sync_row(c.table, c.id, c.seq, c.deleted, &c.after))
            .collect();
        let ack = in_batch().filter_map(|c| c.mutation_id).max();
        (rows, end, ack)
    }

    fn ids(&self, table: Table) -> BTreeSet<Uuid> {
        self.rows
            .keys()
            .filter(|(t, _)| *t == table)
            .map(|(_, id)| *id)
            .collect()
    }

    fn live_ids(&self, table: Table) -> Vec<Uuid> {
        self.rows
            .iter()
            .filter(|((t, _), r)| *t == table && !r.deleted)
            .map(|((_, id), _)| *id)
            .collect()
    }
}

// ---------------------------------------------------------------------------
/// The client id the simulated server sees for this test's client, and for
/// everyone else.
const OUR_CLIENT: Uuid = Uuid::from_u128(0xC1);
const OTHER_CLIENT: Uuid = Uuid::from_u128(0xC2);
