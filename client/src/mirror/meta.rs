//! Typed sync metadata: the mirror's small key/value facts (cursor,
//! acknowledgement, identity), each with its type, instead of bare strings
//! spread over the code.

use crate::error::ClientResult;
use crate::types::{MirrorRebuilt, ServerRestored};
use clinic_shared::model::{Staff, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};
use std::marker::PhantomData;
use uuid::Uuid;

/// How a value is kept in the `meta` table's text column.
pub(crate) trait MetaValue: Sized {
    fn encode(&self) -> ClientResult<String>;
    fn decode(text: &str) -> ClientResult<Self>;
}

impl MetaValue for u64 {
    fn encode(&self) -> ClientResult<String> {
        Ok(self.to_string())
    }
    fn decode(text: &str) -> ClientResult<Self> {
        text.parse()
            .map_err(|_| crate::ClientError::corrupt(format!("bad number `{text}` in the mirror")))
    }
}

impl MetaValue for String {
    fn encode(&self) -> ClientResult<String> {
        Ok(self.clone())
    }
    fn decode(text: &str) -> ClientResult<Self> {
        Ok(text.to_owned())
    }
}

impl MetaValue for Uuid {
    fn encode(&self) -> ClientResult<String> {
        Ok(self.to_string())
    }
    fn decode(text: &str) -> ClientResult<Self> {
        Uuid::parse_str(text)
            .map_err(|_| crate::ClientError::corrupt(format!("bad id `{text}` in the mirror")))
    }
}

impl MetaValue for Timestamp {
    fn encode(&self) -> ClientResult<String> {
        Ok(self.to_string())
    }
    fn decode(text: &str) -> ClientResult<Self> {
        text.parse()
            .map_err(|_| crate::ClientError::corrupt(format!("bad time `{text}` in the mirror")))
    }
}

impl MetaValue for bool {
    fn encode(&self) -> ClientResult<String> {
        Ok(if *self { "1" } else { "0" }.into())
    }
    fn decode(text: &str) -> ClientResult<Self> {
        Ok(text == "1")
    }
}

impl MetaValue for Staff {
    fn encode(&self) -> ClientResult<String> {
        Ok(serde_json::to_string(self)?)
    }
    fn decode(text: &str) -> ClientResult<Self> {
        Ok(serde_json::from_str(text)?)
    }
}

impl MetaValue for ServerRestored {
    fn encode(&self) -> ClientResult<String> {
        Ok(serde_json::to_string(self)?)
    }
    fn decode(text: &str) -> ClientResult<Self> {
        Ok(serde_json::from_str(text)?)
    }
}

impl MetaValue for MirrorRebuilt {
    fn encode(&self) -> ClientResult<String> {
        Ok(serde_json::to_string(self)?)
    }
    fn decode(text: &str) -> ClientResult<Self> {
        Ok(serde_json::from_str(text)?)
    }
}

/// Glass grants this desk was given: patient → when the grant ends.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct GlassGrants(pub std::collections::BTreeMap<Uuid, Timestamp>);

impl MetaValue for GlassGrants {
    fn encode(&self) -> ClientResult<String> {
        Ok(serde_json::to_string(self)?)
    }
    fn decode(text: &str) -> ClientResult<Self> {
        Ok(serde_json::from_str(text)?)
    }
}

/// The glass grants in force on this desk (see `mirror::care`).
pub(crate) const GLASS_GRANTS: Key<GlassGrants> = key("glass_grants");
/// Patients the server said are in the doctor's care for good (a visit, a
/// record, a referral this mirror may not hold yet), with when it said so.
pub(crate) const CARE_CONFIRMED: Key<GlassGrants> = key("care_confirmed");

/// A key of the `meta` table with the type of its value.
pub(crate) struct Key<T> {
    pub name: &'static str,
    _type: PhantomData<fn() -> T>,
}

const fn key<T>(name: &'static str) -> Key<T> {
    Key {
        name,
        _type: PhantomData,
    }
}

/// This installation's client id (a new one for every user signing in here).
pub(crate) const CLIENT_ID: Key<Uuid> = key("client_id");
/// The server's base URL.
pub(crate) const SERVER_URL: Key<String> = key("server_url");
/// The signed-in (or last signed-in) user.
pub(crate) const USER: Key<Staff> = key("user");
/// The clinic's time zone (IANA name), as the server last said (sign-in,
/// `welcome`).
pub(crate) const TIME_ZONE: Key<String> = key("time_zone");
/// The bearer token while signed in.
pub(crate) const TOKEN: Key<String> = key("token");
/// Before the mirror was encrypted: an Argon2id hash of the password for
/// offline sign-in (now the wrapped key proves the password). Removed.
pub(crate) const OFFLINE_VERIFIER: Key<String> = key("offline_verifier");
/// Highest server sequence number applied to the mirror.
pub(crate) const CURSOR: Key<u64> = key("cursor");
/// The next local mutation id.
pub(crate) const NEXT_MUTATION_ID: Key<u64> = key("next_mutation_id");
/// When the server last sent anything.
pub(crate) const LAST_SYNCED_AT: Key<Timestamp> = key("last_synced_at");
/// A full catch-up has completed since the mirror (re)started.
pub(crate) const SYNCED_ONCE: Key<bool> = key("synced_once");
/// The highest mutation id the server said it has processed: mutations up
/// to it are not replayed (their effects, if any, are in the confirmed rows).
pub(crate) const SERVER_ACK: Key<u64> = key("server_ack");
/// The cursor up to which the mirror holds every change (not just a page
/// of them): an applied mutation leaves the outbox only when its sequence
/// number is at or below this, so a pending row never flickers back.
pub(crate) const SETTLED: Key<u64> = key("settled");
/// The server epoch the mirror's rows came from (see
/// [`super::restore::server_restored`]).
pub(crate) const SERVER_EPOCH: Key<String> = key("server_epoch");
/// The notice of a server restore, until the person has read it.
pub(crate) const RESTORE_NOTICE: Key<ServerRestored> = key("restore_notice");
/// The notice that the mirror was found damaged and rebuilt
/// ([`super::salvage`]), until the person has read it.
pub(crate) const REBUILT_NOTICE: Key<MirrorRebuilt> = key("rebuilt_notice");

/// Keys that belong to one client id's sync session with the server: a new
/// client id starts without them (a stale acknowledgement would hide the new
/// client's first mutations).
pub(crate) const SESSION_KEYS: [&str; 8] = [
    CURSOR.name,
    NEXT_MUTATION_ID.name,
    LAST_SYNCED_AT.name,
    SYNCED_ONCE.name,
    SERVER_ACK.name,
    SETTLED.name,
    SERVER_EPOCH.name,
    RESTORE_NOTICE.name,
];

/// Reads a key.
pub(crate) fn get<T: MetaValue>(conn: &Connection, key: &Key<T>) -> ClientResult<Option<T>> {
    let text: Option<String> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key.name], |r| r.get(0))
        .optional()?;
    text.map(|t| T::decode(&t)).transpose()
}

/// Writes a key.
pub(crate) fn set<T: MetaValue>(conn: &Connection, key: &Key<T>, value: &T) -> ClientResult<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key.name, value.encode()?])?;
    Ok(())
}

/// Removes a key by name.
pub(crate) fn delete_named(conn: &Connection, name: &str) -> ClientResult<()> {
    conn.prepare_cached("DELETE FROM meta WHERE key = ?1")?
        .execute([name])?;
    Ok(())
}

/// Removes a key.
pub(crate) fn delete<T>(conn: &Connection, key: &Key<T>) -> ClientResult<()> {
    delete_named(conn, key.name)
}

/// A numeric key, 0 when unset.
pub(crate) fn number(conn: &Connection, key: &Key<u64>) -> ClientResult<u64> {
    Ok(get(conn, key)?.unwrap_or(0))
}
