//! The server was restored from a backup: the mirror holds rows (and a
//! cursor) from a history the server no longer has. Detected by the server
//! epoch changing (or, on a pull, by the cursor being above the server's
//! head); the mirror then drops every confirmed row, keeps its outbox, and
//! syncs from 0. Every queued change is sent again under its own id: one the
//! backup already holds gets its stored outcome (applied once), one it does
//! not is applied now (PROTOCOL.md §7.8). The person is told once.

use super::meta;
use super::outbox::{RowSet, immediate, outbox_len, rederive, stored_actor};
use super::rows::clear_search;
use crate::error::ClientResult;
use crate::types::{ChangeOrigin, ServerRestored, StoreEvent};
use clinic_shared::model::Timestamp;
use rusqlite::Connection;

/// Compares what the server says with what the mirror synced against.
/// Returns the event of the reset when the server was restored (the caller
/// then syncs again from cursor 0), `None` otherwise. `epoch` is empty from
/// servers that do not send one.
pub(crate) fn check_server(
    conn: &mut Connection,
    epoch: &str,
    cursor_above_head: bool,
    now: Timestamp,
) -> ClientResult<Option<StoreEvent>> {
    // A server without epochs sends no head either (it reads as 0).
    let cursor_above_head = cursor_above_head && !epoch.is_empty();
    let known = meta::get(conn, &meta::SERVER_EPOCH)?;
    let new_epoch = !epoch.is_empty() && known.as_deref().is_some_and(|k| k != epoch);
    if !new_epoch && !cursor_above_head {
        if known.is_none() && !epoch.is_empty() {
            meta::set(conn, &meta::SERVER_EPOCH, &epoch.to_owned())?;
        }
        return Ok(None);
    }
    let tx = immediate(conn)?;
    let actor = stored_actor(&tx)?;
    let old_cursor = meta::number(&tx, &meta::CURSOR)?;
    tx.execute_batch("DELETE FROM confirmed; DELETE FROM visible;")?;
    clear_search(&tx)?;
    // Every queued change is sent again, the ones the old server had
    // answered too: the restored one may not have them.
    tx.execute("UPDATE outbox SET applied_seq = NULL", [])?;
    meta::set(&tx, &meta::CURSOR, &0)?;
    meta::set(&tx, &meta::SETTLED, &0)?;
    meta::set(&tx, &meta::SERVER_ACK, &0)?;
    meta::delete(&tx, &meta::SYNCED_ONCE)?;
    if !epoch.is_empty() {
        meta::set(&tx, &meta::SERVER_EPOCH, &epoch.to_owned())?;
    }
    let resent = outbox_len(&tx)?;
    meta::set(
        &tx,
        &meta::RESTORE_NOTICE,
        &ServerRestored {
            noticed_at: now,
            resent,
        },
    )?;
    // The queued changes show again over the (now empty) confirmed rows.
    rederive(&tx, actor.as_ref(), &RowSet::new())?;
    tx.commit()?;
    tracing::warn!(
        old_cursor,
        resent,
        new_epoch,
        "the server was restored from a backup; re-syncing from the start"
    );
    Ok(Some(StoreEvent::everything(ChangeOrigin::Session)))
}

/// The notice, until dismissed.
pub(crate) fn notice(conn: &Connection) -> ClientResult<Option<ServerRestored>> {
    meta::get(conn, &meta::RESTORE_NOTICE)
}

/// The person has read the notice.
pub(crate) fn dismiss(conn: &Connection) -> ClientResult<()> {
    meta::delete(conn, &meta::RESTORE_NOTICE)
}
