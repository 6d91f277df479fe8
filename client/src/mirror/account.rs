//! What the mirror keeps about its user: identity, token, the offline
//! verifier, and the operations that change whose data the mirror holds
//! (a sign-in as someone else, a wipe, a role change). The policy of when to
//! do which lives in the session layer; this is how.

use super::meta;
use super::outbox::{immediate, outbox_len};
use super::rows::{clear_search, drop_table, redact_table};
use crate::error::{ClientError, ClientResult};
use crate::types::{ChangeOrigin, StoreEvent};
use clinic_shared::field_access;
use clinic_shared::model::{Staff, Table};
use clinic_shared::permissions;
use rusqlite::Connection;
use uuid::Uuid;

/// Who this installation is, as stored (`signed_in` = a token is held).
pub(crate) struct StoredIdentity {
    pub client_id: Uuid,
    pub server_url: Option<String>,
    pub user: Option<Staff>,
    pub token: Option<String>,
}

pub(crate) fn identity(conn: &Connection) -> ClientResult<StoredIdentity> {
    Ok(StoredIdentity {
        client_id: meta::get(conn, &meta::CLIENT_ID)?
            .ok_or_else(|| ClientError::corrupt("the mirror has no client id"))?,
        server_url: meta::get(conn, &meta::SERVER_URL)?,
        user: meta::get(conn, &meta::USER)?,
        token: meta::get(conn, &meta::TOKEN)?,
    })
}

const CLEAR_DATA: &str = "DELETE FROM confirmed; DELETE FROM visible; DELETE FROM rejected;
     DELETE FROM outbox_rows; DELETE FROM outbox;";

/// Removes every row, queued change and refusal, and every key bound to the
/// old client id, and starts a new client id.
fn clear_for_new_client(tx: &Connection, new_client_id: Uuid) -> ClientResult<()> {
    tx.execute_batch(CLEAR_DATA)?;
    clear_search(tx)?;
    for key in meta::SESSION_KEYS {
        meta::delete_named(tx, key)?;
    }
    meta::delete(tx, &meta::OFFLINE_VERIFIER)?;
    meta::set(tx, &meta::CLIENT_ID, &new_client_id)?;
    Ok(())
}

/// Records a sign-in. A different user (or server) than the one this mirror
/// belongs to starts from an empty mirror with a new client id (a client id
/// is bound to one user on the server); the previous user's unsent changes
/// are refused rather than silently dropped. Returns the event to send when
/// the mirror was emptied.
pub(crate) fn sign_in(
    conn: &mut Connection,
    server_url: &str,
    token: &str,
    user: &Staff,
    time_zone: Option<&str>,
    new_client_id: Uuid,
) -> ClientResult<Option<StoreEvent>> {
    let tx = immediate(conn)?;
    let previous = meta::get(&tx, &meta::USER)?;
    let same_server = meta::get(&tx, &meta::SERVER_URL)?.as_deref() == Some(server_url);
    let switching =
        previous.as_ref().is_some_and(|p| p.id != user.id) || (previous.is_some() && !same_server);
    if switching {
        let pending = outbox_len(&tx)?;
        if pending > 0 {
            return Err(ClientError::PendingChanges(pending));
        }
        clear_for_new_client(&tx, new_client_id)?;
    }
    meta::set(&tx, &meta::SERVER_URL, &server_url.to_owned())?;
    meta::set(&tx, &meta::TOKEN, &token.to_owned())?;
    meta::set(&tx, &meta::USER, user)?;
    if let Some(zone) = time_zone {
        meta::set(&tx, &meta::TIME_ZONE, &zone.to_owned())?;
    }
    tx.commit()?;
    Ok(switching.then(|| StoreEvent::everything(ChangeOrigin::Session)))
}

/// Forgets the token (the server ended or refused the session). Unsent
/// changes stay queued for when the same user signs in again.
pub(crate) fn drop_token(conn: &Connection) -> ClientResult<()> {
    meta::delete(conn, &meta::TOKEN)
}

/// The user's role changed: rows the new role may not read are removed,
/// fields it may not read are removed from the rows it keeps (by the same
/// rule the server sends by, [`field_access::redact`]), and the mirror
/// re-syncs from the start (the new role may see more).
pub(crate) fn change_role(conn: &mut Connection, user: &Staff) -> ClientResult<StoreEvent> {
    let tx = immediate(conn)?;
    for table in Table::ALL
        .into_iter()
        .filter(|t| !permissions::can_read(user.role, *t))
    {
        drop_table(&tx, table)?;
    }
    for table in Table::ALL {
        if !field_access::withheld_fields(user.role, table).is_empty() {
            redact_table(&tx, user.role, table)?;
        }
    }
    meta::set(&tx, &meta::USER, user)?;
    meta::set(&tx, &meta::CURSOR, &0)?;
    meta::set(&tx, &meta::SETTLED, &0)?;
    meta::delete(&tx, &meta::SYNCED_ONCE)?;
    tx.commit()?;
    Ok(StoreEvent::everything(ChangeOrigin::Session))
}
