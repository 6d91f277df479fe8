//! A mirror found damaged when it is opened: set it aside, read back what
//! only this desk had, start a new mirror, and tell the person once.
//!
//! What only the desk has is its outbox (changes not yet confirmed), its
//! unread refusals and the record views not yet reported to the access log;
//! everything else is the server's and comes back with a sync from cursor 0.
//! So:
//! 1. The damaged file (and its `-wal`/`-shm`) is renamed to
//!    `clinic-client.db.corrupt-<UTC time>` in the user's folder. Nothing is
//!    deleted: IT may want it.
//! 2. It is opened (same key, read only, no checkpoint on close) and read
//!    row by row: a row on a page that fails its HMAC (or SQLite's own
//!    checks) is skipped and counted, the others are kept. Which outbox
//!    entries existed is known from the metadata (the ids between the
//!    server's acknowledgement and the next id), from the outbox and from
//!    the rows each entry wrote (`outbox_rows`, a separate b-tree).
//! 3. A new mirror is made with the same key and client id; the kept
//!    entries go back into its outbox in order, to be sent again: the
//!    server answers an id it already processed with its stored outcome.
//!    Mutation ids must follow each other without a gap (PROTOCOL.md §7.4),
//!    so the kept entries after a lost one move down to close the gap (a
//!    lost entry was never processed by the server, or its
//!    acknowledgement would have removed it: ids are processed in order, so
//!    neither were the ones after it).
//! 4. The notice ([`MirrorRebuilt`]) is kept in the new mirror until the
//!    person dismisses it.
//!
//! A wrong key is not damage: SQLCipher reports both as "file is not a
//! database", so the key is checked first against `key.check` (see
//! [`KeyCheck`]). Only a key that is proven right leads here; otherwise the
//! open fails as before and nothing is renamed.

use super::meta;
use super::outbox::{RowSet, planned, rederive};
use super::rows::{parse_table, parse_uuid, to_i64, to_u64};
use super::schema;
use crate::error::{ClientError, ClientResult};
use crate::session::keys::{KeyCheck, MirrorKey};
use crate::types::MirrorRebuilt;
use clinic_shared::model::{Staff, Table, Timestamp};
use clinic_shared::mutation::Mutation;
use clinic_shared::protocol::Actor;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The key check's file in a user's folder.
pub(crate) const KEY_CHECK_FILE: &str = "key.check";

/// At most this many outbox ids (or queued views) are probed one by one in
/// a damaged file: far more than a desk ever queues.
const MAX_PROBES: u64 = 1_000_000;

/// What `key.check` says about `key`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeyVerdict {
    /// The mirror was last opened with this key.
    Right,
    /// It was opened with another key.
    Wrong,
    /// No (readable) check: a mirror from before checks were kept.
    Unknown,
}

/// Checks `key` against the key check in `dir`.
pub(crate) fn verify_key(dir: &Path, key: &MirrorKey) -> KeyVerdict {
    let Ok(bytes) = std::fs::read(dir.join(KEY_CHECK_FILE)) else {
        return KeyVerdict::Unknown;
    };
    match serde_json::from_slice::<KeyCheck>(&bytes)
        .ok()
        .and_then(|c| c.matches(key))
    {
        Some(true) => KeyVerdict::Right,
        Some(false) => KeyVerdict::Wrong,
        None => KeyVerdict::Unknown,
    }
}

/// Records that the mirror in `dir` opens with `key` (after it opened).
/// Written only when missing or made for another key.
pub(crate) fn keep_key_check(dir: &Path, key: &MirrorKey) -> ClientResult<()> {
    if verify_key(dir, key) == KeyVerdict::Right {
        return Ok(());
    }
    let check = KeyCheck::make(key)?;
    crate::files::write_private(&dir.join(KEY_CHECK_FILE), &serde_json::to_vec(&check)?)
}

/// One outbox entry read back from the damaged file.
struct Kept {
    mutation_id: u64,
    mutation: Mutation,
    mutation_json: String,
    created_at: String,
    /// The server had applied it (its answer was recorded).
    applied: bool,
    rows: RowSet,
}

/// What could be read back from the damaged file.
#[derive(Default)]
struct Salvaged {
    client_id: Option<uuid::Uuid>,
    server_url: Option<String>,
    user: Option<Staff>,
    token: Option<String>,
    time_zone: Option<String>,
    epoch: Option<String>,
    restore_notice: Option<crate::types::ServerRestored>,
    server_ack: u64,
    next_mutation_id: Option<u64>,
    kept: Vec<Kept>,
    /// Ids above the acknowledgement whose entry could not be read, with
    /// what could be said about each.
    lost: BTreeMap<u64, String>,
    lost_unknown: bool,
    rejected: Vec<(i64, String, String, String)>,
    views: Vec<(String, String)>,
    views_lost: u64,
}

/// Sets the damaged mirror in `dir` aside, reads back what it can, and
/// makes a new mirror in its place with what was read: returns the new
/// writer connection. `key` must be proven right ([`verify_key`]).
pub(crate) fn rebuild(
    dir: &Path,
    key: &MirrorKey,
    new_client_id: uuid::Uuid,
    now: Timestamp,
) -> ClientResult<Connection> {
    let aside = set_aside(dir, now)?;
    let salvaged = match open_damaged(&aside, key) {
        Some(conn) => read_back(&Damaged {
            path: aside.clone(),
            key,
            conn: std::cell::RefCell::new(Some(conn)),
        }),
        None => Salvaged {
            lost_unknown: true,
            ..Salvaged::default()
        },
    };
    let mut conn = schema::open_writer(&dir.join(schema::FILE_NAME), new_client_id, key)?;
    let notice = write_back(&mut conn, &salvaged, &aside, now)?;
    // Counts only: the notice's lines name patients and stay in the mirror.
    tracing::warn!(
        kept = notice.kept,
        lost = notice.lost.len(),
        lost_unknown = notice.lost_unknown,
        views_lost = notice.views_lost,
        aside = %aside.display(),
        "the local database was damaged; set aside and rebuilt, re-syncing from the server"
    );
    Ok(conn)
}

/// Renames the database and its `-wal`/`-shm` to `<name>.corrupt-<time>`
/// (the WAL keeps its suffix so SQLite reads it with the file). Returns the
/// new path of the database.
fn set_aside(dir: &Path, now: Timestamp) -> ClientResult<PathBuf> {
    // Digits only (no `:`, which some file systems refuse).
    let stamp: String = now
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let mut base = format!("{}.corrupt-{stamp}", schema::FILE_NAME);
    let mut n = 1;
    while dir.join(&base).exists() {
        n += 1;
        base = format!("{}.corrupt-{stamp}-{n}", schema::FILE_NAME);
    }
    let [db, wal, shm] = schema::files(dir);
    for (from, suffix) in [(wal, "-wal"), (shm, "-shm"), (db, "")] {
        if !from.exists() {
            continue;
        }
        let to = dir.join(format!("{base}{suffix}"));
        std::fs::rename(&from, &to).map_err(|source| ClientError::Io {
            context: format!("moving {} aside", from.display()),
            source,
        })?;
    }
    Ok(dir.join(base))
}

/// Opens the set-aside file to read it, if even its first page reads.
/// Nothing is written to it: no checkpoint on close, queries only.
fn open_damaged(path: &Path, key: &MirrorKey) -> Option<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    conn.pragma_update(None, "key", key.pragma().as_str())
        .ok()?;
    let _ = conn.pragma_update(None, "cipher_log_level", "NONE");
    let _ = conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    );
    conn.pragma_update(None, "query_only", true).ok()?;
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    })
    .ok()?;
    Some(conn)
}

/// The damaged file, read query by query. A connection that met a page
/// failing its HMAC cannot read any page after it (SQLCipher keeps the
/// error; seen here: every later look-up failed), so after a failed read
/// the next one starts on a new connection.
struct Damaged<'k> {
    path: PathBuf,
    key: &'k MirrorKey,
    conn: std::cell::RefCell<Option<Connection>>,
}

impl Damaged<'_> {
    /// Runs `f`; `None` when it failed (the row or table cannot be read).
    fn read<T, E>(&self, f: impl FnOnce(&Connection) -> Result<T, E>) -> Option<T> {
        let mut slot = self.conn.borrow_mut();
        if slot.is_none() {
            *slot = open_damaged(&self.path, self.key);
        }
        let result = f(slot.as_ref()?);
        match result {
            Ok(value) => Some(value),
            Err(_) => {
                *slot = None;
                None
            }
        }
    }
}

/// A meta value, or `None` when it cannot be read.
fn meta_or_none<T: meta::MetaValue>(d: &Damaged<'_>, key: &meta::Key<T>) -> Option<T> {
    d.read(|c| meta::get(c, key)).flatten()
}

/// The first column of every row `sql` gives, as far as it can be read;
/// `true` when every row was read.
fn ids_until_error(d: &Damaged<'_>, sql: &str, into: &mut BTreeSet<u64>) -> bool {
    d.read(|conn| -> rusqlite::Result<()> {
        let mut stmt = conn.prepare(sql)?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            into.insert(to_u64(row.get::<_, i64>(0)?));
        }
        Ok(())
    })
    .is_some()
}

fn read_back(d: &Damaged<'_>) -> Salvaged {
    let mut s = Salvaged {
        client_id: meta_or_none(d, &meta::CLIENT_ID),
        server_url: meta_or_none(d, &meta::SERVER_URL),
        user: meta_or_none(d, &meta::USER),
        token: meta_or_none(d, &meta::TOKEN),
        time_zone: meta_or_none(d, &meta::TIME_ZONE),
        epoch: meta_or_none(d, &meta::SERVER_EPOCH),
        restore_notice: meta_or_none(d, &meta::RESTORE_NOTICE),
        server_ack: meta_or_none(d, &meta::SERVER_ACK).unwrap_or(0),
        next_mutation_id: meta_or_none(d, &meta::NEXT_MUTATION_ID),
        ..Salvaged::default()
    };
    // Which entries there were: the ids the metadata says may be queued,
    // and those the outbox and its rows name (as far as they read).
    let mut ids = BTreeSet::new();
    if let Some(next) = s.next_mutation_id {
        let first = s.server_ack.saturating_add(1);
        ids.extend(first..next.min(first.saturating_add(MAX_PROBES)));
    }
    let outbox_whole = ids_until_error(
        d,
        "SELECT mutation_id FROM outbox ORDER BY mutation_id",
        &mut ids,
    );
    ids_until_error(
        d,
        "SELECT mutation_id FROM outbox_rows ORDER BY mutation_id",
        &mut ids,
    );
    // Without the metadata and with an unreadable outbox, entries no other
    // table names may be gone without a trace.
    s.lost_unknown = s.next_mutation_id.is_none() && !outbox_whole;
    for id in ids {
        let row = d.read(|c| {
            c.query_row(
                "SELECT mutation, created_at, applied_seq FROM outbox WHERE mutation_id = ?1",
                [to_i64(id)],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                    ))
                },
            )
            .optional()
        });
        let read = match row {
            // Answered and removed before the damage: nothing to keep.
            Some(None) => continue,
            Some(Some((json, at, applied))) => serde_json::from_str::<Mutation>(&json)
                .ok()
                .filter(|_| at.parse::<Timestamp>().is_ok())
                .map(|m| (m, json, at, applied.is_some())),
            None => None,
        };
        match read {
            Some((mutation, mutation_json, created_at, applied)) => s.kept.push(Kept {
                mutation_id: id,
                mutation,
                mutation_json,
                created_at,
                applied,
                rows: outbox_rows(d, id).unwrap_or_default(),
            }),
            // At or below the acknowledgement the server has processed it:
            // its effect comes back with the sync.
            None if id <= s.server_ack => {}
            None => {
                s.lost.insert(id, describe_lost(d, id));
            }
        }
    }
    s.rejected = read_rejected(d);
    let (views, views_lost) = read_views(d);
    s.views = views;
    s.views_lost = views_lost;
    s
}

fn outbox_rows(d: &Damaged<'_>, id: u64) -> Option<RowSet> {
    let raw: Vec<(String, String)> = d.read(|c| {
        c.prepare("SELECT tbl, id FROM outbox_rows WHERE mutation_id = ?1")?
            .query_map([to_i64(id)], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()
    })?;
    raw.iter()
        .map(|(t, i)| Some((parse_table(t).ok()?, parse_uuid(i).ok()?)))
        .collect()
}

/// A row's data as the desk showed it, if it can be read.
fn shown_row(d: &Damaged<'_>, table: Table, id: uuid::Uuid) -> Option<serde_json::Value> {
    let data: String = d.read(|c| {
        c.query_row(
            "SELECT data FROM visible WHERE tbl = ?1 AND id = ?2",
            params![table.as_str(), id.to_string()],
            |r| r.get(0),
        )
    })?;
    serde_json::from_str(&data).ok()
}

fn patient_name(d: &Damaged<'_>, id: uuid::Uuid) -> Option<String> {
    let p = shown_row(d, Table::Patients, id)?;
    let name = format!(
        "{} {}",
        p.get("first_name")?.as_str()?,
        p.get("last_name")?.as_str()?
    );
    Some(name.trim().to_owned())
}

/// Whose record a row is: the patient's name, when it can be read.
fn patient_of(d: &Damaged<'_>, table: Table, id: uuid::Uuid) -> Option<String> {
    if table == Table::Patients {
        return patient_name(d, id);
    }
    let row = shown_row(d, table, id)?;
    let patient = match row.get("patient_id").and_then(|v| v.as_str()) {
        Some(p) => p.to_owned(),
        // A payment belongs to an invoice, which belongs to a patient.
        None => {
            let invoice = row.get("invoice_id")?.as_str()?.parse().ok()?;
            shown_row(d, Table::Invoices, invoice)?
                .get("patient_id")?
                .as_str()?
                .to_owned()
        }
    };
    patient_name(d, patient.parse().ok()?)
}

/// A lost entry in words, from what else the file still shows: the kind of
/// record it wrote, and whose.
fn describe_lost(d: &Damaged<'_>, id: u64) -> String {
    let rows = outbox_rows(d, id).unwrap_or_default();
    // A patient's own record says most; then the first other.
    let main = rows
        .iter()
        .find(|(t, _)| *t == Table::Patients)
        .or_else(|| rows.iter().next());
    let Some(&(table, row)) = main else {
        return "a change whose details could not be read".into();
    };
    let what = match table {
        Table::Staff => "a change to a staff account",
        Table::Patients => "a patient's record (new or changed)",
        Table::Appointments => "an appointment (new or changed)",
        Table::TreatmentRecords => "a treatment record (new or changed)",
        Table::Invoices => "an invoice (new or changed)",
        Table::Payments => "a payment",
        Table::InventoryItems => "a change to a stock item",
        Table::Referrals => "a referral (new or changed)",
        Table::PriceItems => "a change to the price list",
    };
    match patient_of(d, table, row) {
        Some(name) => format!("{what} for {name}"),
        None => what.to_owned(),
    }
}

/// The unread refusals that can be read (those that cannot are dropped:
/// the server's rows already show the change did not happen).
fn read_rejected(d: &Damaged<'_>) -> Vec<(i64, String, String, String)> {
    let mut out = Vec::new();
    d.read(|c| -> rusqlite::Result<()> {
        let mut stmt = c.prepare(
            "SELECT mutation_id, mutation, rejection, rejected_at FROM rejected ORDER BY mutation_id",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            out.push((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?));
        }
        Ok(())
    });
    out
}

/// The queued views that read, oldest first, and how many did not.
fn read_views(d: &Damaged<'_>) -> (Vec<(String, String)>, u64) {
    let bounds: Option<(Option<i64>, Option<i64>)> = d.read(|c| {
        c.query_row("SELECT min(n), max(n) FROM views", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
    });
    let mut views = Vec::new();
    let mut lost = 0;
    match bounds {
        Some((Some(first), Some(last))) => {
            let last = last.min(first.saturating_add(i64::try_from(MAX_PROBES).unwrap_or(0)));
            for n in first..=last {
                let view = d.read(|c| {
                    c.query_row("SELECT tbl, id FROM views WHERE n = ?1", [n], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                    })
                    .optional()
                });
                match view {
                    Some(Some(v)) => views.push(v),
                    Some(None) => {}
                    None => lost += 1,
                }
            }
        }
        // No views queued.
        Some(_) => {}
        // Its pages do not read: how many there were is not known; at
        // least one, so the notice mentions the access log.
        None => lost = 1,
    }
    (views, lost)
}

/// Writes what was read back into the new mirror, in one transaction:
/// identity, the kept entries (renumbered to close gaps), refusals, views,
/// cursor 0, and the notice. Returns the notice.
fn write_back(
    conn: &mut Connection,
    s: &Salvaged,
    aside: &Path,
    now: Timestamp,
) -> ClientResult<MirrorRebuilt> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Without the old client id the kept entries are a new client's: they
    // are numbered from 1, and those the server had already applied are
    // not kept (they would be applied twice).
    let same_client = s.client_id.is_some();
    if let Some(id) = s.client_id {
        meta::set(&tx, &meta::CLIENT_ID, &id)?;
    }
    if let Some(v) = &s.server_url {
        meta::set(&tx, &meta::SERVER_URL, v)?;
    }
    if let Some(v) = &s.user {
        meta::set(&tx, &meta::USER, v)?;
    }
    if let Some(v) = &s.token {
        meta::set(&tx, &meta::TOKEN, v)?;
    }
    if let Some(v) = &s.time_zone {
        meta::set(&tx, &meta::TIME_ZONE, v)?;
    }
    if let Some(v) = &s.epoch {
        meta::set(&tx, &meta::SERVER_EPOCH, v)?;
    }
    if let Some(v) = &s.restore_notice {
        meta::set(&tx, &meta::RESTORE_NOTICE, v)?;
    }
    meta::set(&tx, &meta::CURSOR, &0)?;
    meta::set(&tx, &meta::SETTLED, &0)?;
    meta::set(&tx, &meta::SERVER_ACK, &0)?;
    let actor = s.user.as_ref().map(|u| Actor {
        user_id: u.id,
        role: u.role,
    });
    let mut kept = 0u64;
    let mut next = 1u64;
    for entry in &s.kept {
        if !same_client && entry.applied {
            continue;
        }
        let id = if same_client {
            // Ids above the acknowledgement move down past the lost ones.
            let below = s.lost.range(..entry.mutation_id).count() as u64;
            if entry.mutation_id > s.server_ack {
                entry.mutation_id - below
            } else {
                entry.mutation_id
            }
        } else {
            next
        };
        let mut rows = entry.rows.clone();
        let created_at: Timestamp = entry
            .created_at
            .parse()
            .map_err(|_| ClientError::corrupt("bad timestamp in the outbox"))?;
        if let Some(actor) = &actor
            && let Ok(writes) = planned(&tx, &entry.mutation, actor, created_at)?
        {
            rows.extend(writes.iter().map(|w| (w.table, w.id)));
        }
        tx.execute(
            "INSERT INTO outbox (mutation_id, mutation, created_at) VALUES (?1, ?2, ?3)",
            params![to_i64(id), entry.mutation_json, entry.created_at],
        )?;
        for (table, row) in &rows {
            tx.execute(
                "INSERT OR IGNORE INTO outbox_rows (mutation_id, tbl, id) VALUES (?1, ?2, ?3)",
                params![to_i64(id), table.as_str(), row.to_string()],
            )?;
        }
        kept += 1;
        next = id + 1;
    }
    let lost_count = s.lost.len() as u64;
    let next_id = match (same_client, s.next_mutation_id) {
        (true, Some(n)) => n.saturating_sub(lost_count).max(next),
        _ => next,
    };
    meta::set(&tx, &meta::NEXT_MUTATION_ID, &next_id)?;
    if same_client {
        for (id, m, r, at) in &s.rejected {
            tx.execute(
                "INSERT OR IGNORE INTO rejected (mutation_id, mutation, rejection, rejected_at) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![id, m, r, at],
            )?;
        }
    }
    for (table, id) in &s.views {
        tx.execute(
            "INSERT INTO views (tbl, id) VALUES (?1, ?2)",
            params![table, id],
        )?;
    }
    let notice = MirrorRebuilt {
        noticed_at: now,
        kept,
        lost: s.lost.values().cloned().collect(),
        lost_unknown: s.lost_unknown,
        views_lost: s.views_lost,
        aside: aside.display().to_string(),
    };
    meta::set(&tx, &meta::REBUILT_NOTICE, &notice)?;
    // The kept changes show again over the (empty) confirmed rows.
    rederive(&tx, actor.as_ref(), &RowSet::new())?;
    tx.commit()?;
    Ok(notice)
}

/// The notice, until dismissed.
pub(crate) fn notice(conn: &Connection) -> ClientResult<Option<MirrorRebuilt>> {
    meta::get(conn, &meta::REBUILT_NOTICE)
}

/// The person has read the notice.
pub(crate) fn dismiss(conn: &Connection) -> ClientResult<()> {
    meta::delete(conn, &meta::REBUILT_NOTICE)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn damage_a_wrong_key_and_a_newer_file_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let key = MirrorKey::for_tests(&dir.path().join("test.key")).unwrap();
        let path = dir.path().join(schema::FILE_NAME);
        assert_eq!(verify_key(dir.path(), &key), KeyVerdict::Unknown);
        drop(schema::open_writer(&path, uuid::Uuid::now_v7(), &key).unwrap());
        keep_key_check(dir.path(), &key).unwrap();
        assert_eq!(verify_key(dir.path(), &key), KeyVerdict::Right);
        // Another key reads as "not a database", like damage: the check
        // says it is the key.
        let other = MirrorKey::generate();
        let e = schema::open_writer(&path, uuid::Uuid::now_v7(), &other).unwrap_err();
        assert!(schema::is_damage(&e), "{e:?}");
        assert_eq!(verify_key(dir.path(), &other), KeyVerdict::Wrong);
        // A file from a newer app is not damage.
        {
            let conn = schema::connect(&path, &key).unwrap();
            conn.execute("INSERT INTO schema_migrations (version) VALUES (999)", [])
                .unwrap();
        }
        let e = schema::open_writer(&path, uuid::Uuid::now_v7(), &key).unwrap_err();
        assert!(matches!(e, ClientError::Corrupt { .. }), "{e:?}");
        assert!(!schema::is_damage(&e), "{e:?}");
    }

    /// The cost of the check at start on a mirror of the size of the
    /// benchmark's clinic (650 000 rows): `quick_check` against
    /// `integrity_check`. A measurement, not a pass/fail test:
    /// `cargo test -p clinic-client --release -- --ignored --nocapture
    /// a_big_mirror`.
    #[test]
    #[ignore = "a measurement: builds a 650 000-row mirror (about a minute)"]
    fn a_big_mirror_check_costs() {
        let dir = tempfile::tempdir().unwrap();
        let key = MirrorKey::for_tests(&dir.path().join("test.key")).unwrap();
        let path = dir.path().join(schema::FILE_NAME);
        let started = std::time::Instant::now();
        {
            let mut conn = schema::open_writer(&path, uuid::Uuid::now_v7(), &key).unwrap();
            let tx = conn.transaction().unwrap();
            let doctors: Vec<uuid::Uuid> = (0..20).map(|_| uuid::Uuid::now_v7()).collect();
            let mut patients = Vec::new();
            for i in 0..650_000u64 {
                let id = uuid::Uuid::now_v7();
                let (table, data) = match i % 13 {
                    0..=1 => {
                        patients.push(id);
                        (
                            "patients",
                            serde_json::json!({"id": id, "first_name": format!("First{i}"),
                                "last_name": format!("Last{i}"), "date_of_birth": "1980-01-01",
                                "phone": "+1 555 000 0000", "email": null, "address": "12 Long Street, Springfield"}),
                        )
                    }
                    2..=9 => (
                        "appointments",
                        serde_json::json!({"id": id, "patient_id": patients[(i as usize * 7) % patients.len()],
                            "doctor_id": doctors[(i % 20) as usize], "start": format!("2026-{:02}-{:02}T09:00:00Z", 1 + i % 12, 1 + i % 28),
                            "end": "2026-01-01T09:30:00Z", "status": "scheduled", "reason": "check-up"}),
                    ),
                    _ => (
                        "treatment_records",
                        serde_json::json!({"id": id, "patient_id": patients[(i as usize * 3) % patients.len()],
                            "doctor_id": doctors[(i % 20) as usize], "notes": "Routine visit; no findings of note. Advised to return in six months.",
                            "procedures": ["exam"], "created_at": "2026-01-01T09:00:00Z"}),
                    ),
                };
                let data = data.to_string();
                tx.execute(
                    "INSERT INTO confirmed (tbl, id, version, deleted, data) VALUES (?1, ?2, ?3, 0, ?4)",
                    params![table, id.to_string(), i64::try_from(i).unwrap() + 1, data],
                )
                .unwrap();
                tx.execute(
                    "INSERT INTO visible (tbl, id, version, deleted, data, pending) VALUES (?1, ?2, ?3, 0, ?4, 0)",
                    params![table, id.to_string(), i64::try_from(i).unwrap() + 1, data],
                )
                .unwrap();
                if table == "patients" {
                    tx.execute(
                        "INSERT INTO patient_search (id, name, phone, dob) VALUES (?1, ?2, '+1 555 000 0000', '1980-01-01')",
                        params![id.to_string(), format!("First{i} Last{i}")],
                    )
                    .unwrap();
                }
            }
            tx.commit().unwrap();
        }
        let size = std::fs::metadata(&path).unwrap().len();
        eprintln!(
            "built 650 000 rows ({} MB) in {:?}",
            size / 1_000_000,
            started.elapsed()
        );
        for pragma in ["quick_check", "integrity_check", "quick_check"] {
            let conn = schema::connect(&path, &key).unwrap();
            let t = std::time::Instant::now();
            let r: String = conn
                .query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0))
                .unwrap();
            eprintln!("PRAGMA {pragma}: {r} in {:?}", t.elapsed());
        }
        let t = std::time::Instant::now();
        drop(schema::open_writer(&path, uuid::Uuid::now_v7(), &key).unwrap());
        eprintln!("a clean start's open_writer: {:?}", t.elapsed());
    }
}
