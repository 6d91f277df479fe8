//! Applying what the server sent: rows, the cursor after them, and the
//! acknowledgement of this client's mutations.

use super::meta;
use super::outbox::{RowSet, event, immediate, rederive, remove_from_outbox, stored_actor};
use super::rows::{copy_confirmed_to_visible, put_confirmed, to_i64};
use crate::error::ClientResult;
use crate::types::{ChangeOrigin, StoreEvent};
use clinic_shared::model::{SyncRow, Timestamp};
use rusqlite::Connection;

/// Applies a batch of server rows and the cursor after them, in one
/// transaction. `ack` is the server's `last_mutation_id` sent with these
/// rows: mutations up to it are processed, so they are no longer replayed
/// (their effects are in the rows). `complete` says the mirror now holds
/// every change up to `cursor` (a last pull page, a live batch), not just a
/// page of them: only then do applied mutations whose effects the cursor
/// covers leave the outbox. Pending mutations are then re-planned on the new
/// rows.
pub(crate) fn apply_remote(
    conn: &mut Connection,
    rows: &[SyncRow],
    cursor: u64,
    ack: Option<u64>,
    complete: bool,
    now: Timestamp,
) -> ClientResult<StoreEvent> {
    // Server rows commit with `synchronous=NORMAL`: they and the cursor
    // after them commit together and can always be fetched again, so they
    // need not reach the disk before the call returns (one fsync per live
    // batch per desk otherwise). The WAL is written in order, and the next
    // FULL commit (a local write, a push result) syncs it whole: a crash can
    // lose only the latest remote batches, with their cursor, never a local
    // write.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let applied = apply_in(conn, rows, cursor, ack, complete, now);
    conn.pragma_update(None, "synchronous", "FULL")?;
    let (touched, cursor) = applied?;
    Ok(event(ChangeOrigin::Remote, &touched, cursor))
}

fn apply_in(
    conn: &mut Connection,
    rows: &[SyncRow],
    cursor: u64,
    ack: Option<u64>,
    complete: bool,
    now: Timestamp,
) -> ClientResult<(RowSet, u64)> {
    let tx = immediate(conn)?;
    let actor = stored_actor(&tx)?;
    let has_outbox: bool =
        tx.query_row("SELECT EXISTS (SELECT 1 FROM outbox)", [], |r| r.get(0))?;
    let mut touched = RowSet::new();
    for row in rows {
        put_confirmed(
            &tx,
            row.table,
            row.id,
            row.version,
            row.deleted,
            row.data.as_ref(),
        )?;
        touched.insert((row.table, row.id));
        copy_confirmed_to_visible(&tx, row.table, row.id)?;
    }
    // A late answer (a long-poll overtaken by a WebSocket batch) never moves
    // the cursor, the acknowledgement or the settled point back.
    let incoming = cursor;
    let cursor = incoming.max(meta::number(&tx, &meta::CURSOR)?);
    meta::set(&tx, &meta::CURSOR, &cursor)?;
    meta::set(&tx, &meta::LAST_SYNCED_AT, &now)?;
    let previous_ack = meta::number(&tx, &meta::SERVER_ACK)?;
    let ack_moved = ack.is_some_and(|a| a > previous_ack);
    if let Some(ack) = ack.filter(|_| ack_moved) {
        meta::set(&tx, &meta::SERVER_ACK, &ack)?;
    }
    if complete && incoming > meta::number(&tx, &meta::SETTLED)? {
        meta::set(&tx, &meta::SETTLED, &incoming)?;
    }
    if has_outbox {
        // Mutations whose effects the mirror now fully holds leave the outbox.
        let settled = meta::number(&tx, &meta::SETTLED)?;
        let done: Vec<i64> = tx
            .prepare_cached(
                "SELECT mutation_id FROM outbox WHERE applied_seq IS NOT NULL AND applied_seq <= ?1",
            )?
            .query_map([to_i64(settled)], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut released = RowSet::new();
        for id in done {
            released.extend(remove_from_outbox(&tx, id)?);
        }
        // Nothing a pending mutation reads or replays changed: an empty
        // batch (rows this role cannot see) replays nothing.
        if !rows.is_empty() || !released.is_empty() || ack_moved {
            touched.extend(rederive(&tx, actor.as_ref(), &released)?);
        }
    }
    tx.commit()?;
    Ok((touched, cursor))
}
