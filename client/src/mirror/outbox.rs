//! The outbox: the user's mutations in the order made, durable until the
//! server has answered them; and re-deriving visible rows from confirmed
//! rows with the pending mutations replayed on top.

use super::meta;
use super::rows::{
    VisibleSource, copy_confirmed_to_visible, json, parse_table, parse_uuid, to_i64, to_json,
    to_u64, write_visible,
};
use crate::error::{ClientError, ClientResult};
use crate::types::{ChangeOrigin, PendingEntry, QueueStats, Receipt, RejectedEntry, StoreEvent};
use clinic_shared::apply::{self, PlanError, RowWrite};
use clinic_shared::field_access;
use clinic_shared::model::{Table, Timestamp};
use clinic_shared::mutation::{Mutation, PendingMutation};
use clinic_shared::protocol::{Actor, MutationOutcome, MutationResult, Rejection};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::collections::BTreeSet;
use uuid::Uuid;

/// At most this many row ids are listed in one event.
const EVENT_ROWS: usize = 500;

pub(crate) type RowSet = BTreeSet<(Table, Uuid)>;

pub(crate) fn immediate(conn: &mut Connection) -> ClientResult<Transaction<'_>> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

pub(crate) fn event(origin: ChangeOrigin, rows: &RowSet, cursor: u64) -> StoreEvent {
    let tables: BTreeSet<Table> = rows.iter().map(|(t, _)| *t).collect();
    StoreEvent {
        origin,
        tables: tables.into_iter().collect(),
        rows: if rows.len() <= EVENT_ROWS {
            rows.iter().copied().collect()
        } else {
            Vec::new()
        },
        cursor,
    }
}

/// The signed-in (or last signed-in) user as the rules see them.
pub(crate) fn stored_actor(conn: &Connection) -> ClientResult<Option<Actor>> {
    Ok(meta::get(conn, &meta::USER)?.map(|u| Actor {
        user_id: u.id,
        role: u.role,
    }))
}

/// Plans `mutation` against the visible rows at `now` (see
/// [`apply::plan`]): the writes, or the refusal. Storage errors are errors.
pub(crate) fn planned(
    conn: &Connection,
    mutation: &Mutation,
    actor: &Actor,
    now: Timestamp,
) -> ClientResult<Result<Vec<RowWrite>, Rejection>> {
    match apply::plan(mutation, actor, now, &mut VisibleSource(conn)) {
        Ok(mut writes) => {
            // The optimistic rows hold what the server will send this role:
            // a field the role may not read (planned back from a row that
            // lacks it) is not kept.
            for w in &mut writes {
                field_access::redact(actor.role, w.table, &mut w.after);
                field_access::redact_opt(actor.role, w.table, w.before.as_mut());
            }
            Ok(Ok(writes))
        }
        Err(PlanError::Rejected(r)) => Ok(Err(r)),
        Err(PlanError::Source(e)) => Err(e),
    }
}

/// Validates and plans `mutation` against the visible rows, then writes it
/// to the outbox and applies it to the visible rows, in one transaction. A
/// mutation the local rules already refuse is returned as
/// [`ClientError::Rejected`] and nothing is queued.
pub(crate) fn mutate(
    conn: &mut Connection,
    mutation: &Mutation,
    now: Timestamp,
) -> ClientResult<(Receipt, StoreEvent)> {
    let tx = immediate(conn)?;
    let actor = stored_actor(&tx)?.ok_or(ClientError::NotSignedIn)?;
    let writes = match planned(&tx, mutation, &actor, now)? {
        Ok(w) => w,
        Err(rejection) => return Err(ClientError::Rejected(Box::new(rejection))),
    };
    let mutation_id = meta::get(&tx, &meta::NEXT_MUTATION_ID)?.unwrap_or(1);
    meta::set(&tx, &meta::NEXT_MUTATION_ID, &(mutation_id + 1))?;
    tx.prepare_cached(
        "INSERT INTO outbox (mutation_id, mutation, created_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![
        to_i64(mutation_id),
        to_json(mutation)?,
        now.to_string()
    ])?;
    let rows: RowSet = writes.iter().map(|w| (w.table, w.id)).collect();
    for (table, id) in &rows {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO outbox_rows (mutation_id, tbl, id) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![to_i64(mutation_id), table.as_str(), id.to_string()])?;
    }
    write_visible(&tx, &writes)?;
    let cursor = meta::number(&tx, &meta::CURSOR)?;
    tx.commit()?;
    tracing::debug!(mutation_id, kind = mutation.kind(), "local mutation queued");
    let receipt = Receipt {
        mutation_id,
        rows: rows.iter().copied().collect(),
    };
    Ok((receipt, event(ChangeOrigin::Local, &rows, cursor)))
}

/// One outbox entry.
struct OutboxItem {
    mutation_id: u64,
    mutation: Mutation,
    created_at: Timestamp,
}

fn load_outbox(conn: &Connection) -> ClientResult<Vec<OutboxItem>> {
    let raw: Vec<(i64, String, String)> = conn
        .prepare_cached(
            "SELECT mutation_id, mutation, created_at FROM outbox ORDER BY mutation_id",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    raw.into_iter()
        .map(|(id, m, at)| {
            Ok(OutboxItem {
                mutation_id: to_u64(id),
                mutation: json(&m)?,
                created_at: at
                    .parse()
                    .map_err(|_| ClientError::corrupt("bad timestamp in the outbox"))?,
            })
        })
        .collect()
}

fn all_outbox_rows(conn: &Connection) -> ClientResult<RowSet> {
    let raw: Vec<(String, String)> = conn
        .prepare_cached("SELECT DISTINCT tbl, id FROM outbox_rows")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    raw.iter()
        .map(|(t, i)| Ok((parse_table(t)?, parse_uuid(i)?)))
        .collect()
}

/// Re-derives the visible rows: the rows in `extra` and every row the outbox
/// writes go back to their confirmed state, then every pending mutation not
/// yet acknowledged by the server is replayed in order, each judged at the
/// time it was made (a booking made for 10:00 at 09:55 stays on screen at
/// 10:05 until the server, which judges it on arrival, answers). All of them, not only
/// those writing a changed row: a mutation also reads rows (the patient of an
/// invoice, a doctor's other appointments), and a change to what it read can
/// change or cancel its effect. A pending mutation that no longer plans shows
/// no effect; the server will answer it. Returns the rows re-derived.
pub(crate) fn rederive(
    conn: &Connection,
    actor: Option<&Actor>,
    extra: &RowSet,
) -> ClientResult<RowSet> {
    let mut rows = extra.clone();
    rows.extend(all_outbox_rows(conn)?);
    for (table, id) in &rows {
        copy_confirmed_to_visible(conn, *table, *id)?;
    }
    if let Some(actor) = actor {
        let acknowledged = meta::number(conn, &meta::SERVER_ACK)?;
        for item in load_outbox(conn)?
            .iter()
            .filter(|i| i.mutation_id > acknowledged)
        {
            if let Ok(writes) = planned(conn, &item.mutation, actor, item.created_at)? {
                write_visible(conn, &writes)?;
            }
        }
    }
    Ok(rows)
}

/// Removes a mutation from the outbox; returns the rows it wrote.
pub(crate) fn remove_from_outbox(tx: &Connection, mutation_id: i64) -> ClientResult<RowSet> {
    let rows: Vec<(String, String)> = tx
        .prepare_cached("SELECT tbl, id FROM outbox_rows WHERE mutation_id = ?1")?
        .query_map([mutation_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    tx.execute(
        "DELETE FROM outbox_rows WHERE mutation_id = ?1",
        [mutation_id],
    )?;
    tx.execute("DELETE FROM outbox WHERE mutation_id = ?1", [mutation_id])?;
    rows.iter()
        .map(|(t, i)| Ok((parse_table(t)?, parse_uuid(i)?)))
        .collect()
}

/// Records the server's answers to pushed mutations: a rejection removes
/// the mutation and rolls its rows back (keeping the reason for the user);
/// an application is remembered until the mirror catches up with it.
/// Returns the event for the rows that changed.
pub(crate) fn apply_results(
    conn: &mut Connection,
    results: &[MutationResult],
    now: Timestamp,
) -> ClientResult<Option<StoreEvent>> {
    let tx = immediate(conn)?;
    let actor = stored_actor(&tx)?;
    let cursor = meta::number(&tx, &meta::CURSOR)?;
    let settled = meta::number(&tx, &meta::SETTLED)?;
    let mut rolled_back = RowSet::new();
    let mut rejected_any = false;
    for result in results {
        let id = to_i64(result.mutation_id);
        let mutation: Option<String> = tx
            .prepare_cached("SELECT mutation FROM outbox WHERE mutation_id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        let Some(mutation) = mutation else { continue };
        match &result.outcome {
            MutationOutcome::Applied { seq } if *seq <= settled => {
                rolled_back.extend(remove_from_outbox(&tx, id)?);
            }
            MutationOutcome::Applied { seq } => {
                tx.execute(
                    "UPDATE outbox SET applied_seq = ?2 WHERE mutation_id = ?1",
                    params![id, to_i64(*seq)],
                )?;
            }
            MutationOutcome::Rejected { rejection } => {
                tracing::info!(mutation_id = result.mutation_id, code = ?rejection.code, "mutation rejected by the server");
                tx.execute(
                    "INSERT OR REPLACE INTO rejected (mutation_id, mutation, rejection, rejected_at) VALUES (?1, ?2, ?3, ?4)",
                    params![id, mutation, to_json(rejection)?, now.to_string()],
                )?;
                rolled_back.extend(remove_from_outbox(&tx, id)?);
                rejected_any = true;
            }
            MutationOutcome::Retry { .. } => {}
        }
    }
    let touched = if rolled_back.is_empty() {
        rolled_back
    } else {
        rederive(&tx, actor.as_ref(), &rolled_back)?
    };
    tx.commit()?;
    if touched.is_empty() && !rejected_any {
        return Ok(None);
    }
    let origin = if rejected_any {
        ChangeOrigin::Rejection
    } else {
        ChangeOrigin::Remote
    };
    Ok(Some(event(origin, &touched, cursor)))
}

/// Pending mutations not yet answered, oldest first, at most `limit`.
pub(crate) fn unsent(conn: &Connection, limit: usize) -> ClientResult<Vec<PendingMutation>> {
    let raw: Vec<(i64, String)> = conn
        .prepare_cached("SELECT mutation_id, mutation FROM outbox WHERE applied_seq IS NULL ORDER BY mutation_id LIMIT ?1")?
        .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    raw.into_iter()
        .map(|(id, m)| {
            Ok(PendingMutation {
                mutation_id: to_u64(id),
                mutation: json(&m)?,
            })
        })
        .collect()
}

/// Every mutation in the outbox, oldest first.
pub(crate) fn pending(conn: &Connection) -> ClientResult<Vec<PendingEntry>> {
    let raw: Vec<(i64, String, String, Option<i64>)> = conn
        .prepare_cached("SELECT mutation_id, mutation, created_at, applied_seq FROM outbox ORDER BY mutation_id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    raw.into_iter()
        .map(|(id, m, at, seq)| {
            Ok(PendingEntry {
                mutation_id: to_u64(id),
                mutation: json(&m)?,
                created_at: at
                    .parse()
                    .map_err(|_| ClientError::corrupt("bad timestamp in the outbox"))?,
                applied_seq: seq.map(to_u64),
            })
        })
        .collect()
}

/// Rejections the user has not dismissed, oldest first.
pub(crate) fn rejected(conn: &Connection) -> ClientResult<Vec<RejectedEntry>> {
    let raw: Vec<(i64, String, String, String)> = conn
        .prepare_cached("SELECT mutation_id, mutation, rejection, rejected_at FROM rejected ORDER BY mutation_id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    raw.into_iter()
        .map(|(id, m, r, at)| {
            Ok(RejectedEntry {
                mutation_id: to_u64(id),
                mutation: json(&m)?,
                rejection: json(&r)?,
                rejected_at: at
                    .parse()
                    .map_err(|_| ClientError::corrupt("bad timestamp in the rejections"))?,
            })
        })
        .collect()
}

/// What became of one of this client's mutations, as the mirror knows now:
/// still queued, refused (not yet dismissed), or confirmed. `None` for an id
/// this mirror never made.
pub(crate) fn mutation_state(
    conn: &Connection,
    mutation_id: u64,
) -> ClientResult<Option<crate::types::Delivery>> {
    use crate::types::Delivery;
    let id = to_i64(mutation_id);
    let queued: Option<Option<i64>> = conn
        .prepare_cached("SELECT applied_seq FROM outbox WHERE mutation_id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    if let Some(applied) = queued {
        return Ok(Some(Delivery::Queued {
            reason: if applied.is_some() {
                "saved on the server; this desk is catching up".into()
            } else {
                "not yet answered by the server".into()
            },
        }));
    }
    let refused: Option<String> = conn
        .prepare_cached("SELECT rejection FROM rejected WHERE mutation_id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    if let Some(r) = refused {
        return Ok(Some(Delivery::Rejected {
            rejection: json(&r)?,
        }));
    }
    let next = meta::get(conn, &meta::NEXT_MUTATION_ID)?.unwrap_or(1);
    Ok((mutation_id >= 1 && mutation_id < next).then_some(Delivery::Confirmed))
}

/// Dismisses a rejection (the user has seen it).
pub(crate) fn dismiss_rejected(conn: &Connection, mutation_id: u64) -> ClientResult<bool> {
    let n = conn.execute(
        "DELETE FROM rejected WHERE mutation_id = ?1",
        [to_i64(mutation_id)],
    )?;
    Ok(n > 0)
}

/// Queue counts and cursor.
pub(crate) fn stats(conn: &Connection) -> ClientResult<QueueStats> {
    let (pending, oldest): (i64, Option<String>) =
        conn.query_row("SELECT COUNT(*), MIN(created_at) FROM outbox", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let rejected: i64 = conn.query_row("SELECT COUNT(*) FROM rejected", [], |r| r.get(0))?;
    Ok(QueueStats {
        pending: to_u64(pending),
        oldest_pending: oldest.and_then(|o| o.parse().ok()),
        rejected: to_u64(rejected),
        cursor: meta::number(conn, &meta::CURSOR)?,
    })
}

/// Number of queued mutations.
pub(crate) fn outbox_len(conn: &Connection) -> ClientResult<u64> {
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))?;
    Ok(to_u64(n))
}
