//! The local mirror: one SQLite file holding what the server said, the
//! outbox of changes not yet confirmed, and the rows the user sees.
//!
//! Terms:
//! - **confirmed rows**: the server's rows as last received (`confirmed`).
//! - **outbox**: the user's mutations in the order made, durable, each with
//!   the rows it touches (`outbox`, `outbox_rows`). A mutation leaves the
//!   outbox when the server has rejected it, or applied it and the mirror's
//!   cursor has reached the sequence number of its effects, so that a
//!   pending row never flickers back to its old value.
//! - **visible rows**: confirmed rows with the pending mutations replayed on
//!   top (`visible`), what every query reads.
//! - **cursor**: the highest server sequence number applied to the mirror.
//!
//! One thread owns the writing connection ([`DbThread`]); async code reaches
//! it through [`Mirror`]'s methods. Every write is one IMMEDIATE
//! transaction: a local mutation and its outbox entry; a server batch, its
//! cursor and the mutations it acknowledges. A [`StoreEvent`] goes out after
//! each commit (from the owning thread, so in commit order) so a UI re-reads
//! only what changed.

pub(crate) mod account;
pub(crate) mod care;
mod meta;
pub(crate) mod outbox;
pub(crate) mod remote;
pub(crate) mod restore;
pub(crate) mod rows;
pub(crate) mod salvage;
pub(crate) mod schema;
#[cfg(test)]
mod tests;

use crate::clock::{Clock, IdSource};
use crate::db::DbThread;
use crate::error::{ClientError, ClientResult};
use crate::types::{
    DumpRow, MirrorRebuilt, PendingEntry, QueueStats, Receipt, RejectedEntry, ServerRestored,
    StoreEvent, SyncState,
};
use account::StoredIdentity;
use clinic_shared::model::{Staff, SyncRow, Timestamp};
use clinic_shared::mutation::{Mutation, PendingMutation};
use clinic_shared::protocol::MutationResult;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::broadcast;

/// The mirror: its owning thread, its change feed, its clock.
pub(crate) struct Mirror {
    db: DbThread,
    events: broadcast::Sender<StoreEvent>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdSource>,
    path: PathBuf,
    checkpointer: std::sync::Mutex<Option<schema::Checkpointer>>,
}

/// Sends `event` when it names anything (or is a session change).
fn emit(events: &broadcast::Sender<StoreEvent>, event: StoreEvent) {
    if !event.tables.is_empty() || event.origin == crate::types::ChangeOrigin::Session {
        // No subscriber is fine: nobody is looking right now.
        let _ = events.send(event);
    }
}

impl Mirror {
    /// Opens (creating) the mirror in `dir` with `key`, migrating and
    /// checking it; events go to `events`. A file found damaged, when
    /// `key.check` proves the key right, is set aside and the mirror rebuilt
    /// from what can be read back ([`salvage`]); a wrong key, a damaged file
    /// whose key cannot be proven, or a locked database is an error and
    /// nothing is moved. The folder and files are private to this user.
    pub(crate) fn open(
        dir: &Path,
        key: &crate::session::keys::MirrorKey,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdSource>,
        events: broadcast::Sender<StoreEvent>,
    ) -> ClientResult<Mirror> {
        crate::files::private_dir(dir)?;
        let path = dir.join(schema::FILE_NAME);
        let conn = match schema::open_writer(&path, ids.new_id(), key) {
            Ok(conn) => conn,
            Err(e) if schema::is_damage(&e) => match salvage::verify_key(dir, key) {
                salvage::KeyVerdict::Right => {
                    salvage::rebuild(dir, key, ids.new_id(), clock.now())?
                }
                salvage::KeyVerdict::Wrong => {
                    tracing::warn!("the local database does not open with this key; left as it is");
                    return Err(e);
                }
                salvage::KeyVerdict::Unknown => {
                    tracing::warn!(
                        "the local database does not open and its key cannot be confirmed; left as it is"
                    );
                    return Err(e);
                }
            },
            Err(e) => return Err(e),
        };
        if let Err(e) = salvage::keep_key_check(dir, key) {
            // Only a later damage could not be told from a wrong key.
            tracing::warn!(error = %e, "the key check could not be written");
        }
        for file in schema::files(dir) {
            crate::files::tighten(&file)?;
        }
        let checkpointer = schema::Checkpointer::start(&path, &conn, key);
        let db = DbThread::spawn("clinic-mirror", conn)?;
        Ok(Mirror {
            db,
            events,
            clock,
            ids,
            path,
            checkpointer: std::sync::Mutex::new(checkpointer),
        })
    }

    /// Closes the database (after the work already queued) and waits until
    /// every connection to the file is closed.
    pub(crate) async fn close(&self) {
        self.db.close().await;
        let checkpointer = self
            .checkpointer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(mut c) = checkpointer {
            let _ = tokio::task::spawn_blocking(move || c.finish()).await;
        }
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a read-only `f` on the owning thread.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> ClientResult<T> + Send + 'static,
    ) -> ClientResult<T> {
        self.db.call(move |conn| f(conn)).await
    }

    /// Runs a writing `f` on the owning thread and sends the event it
    /// returns, from that thread, right after its commit.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, Timestamp) -> ClientResult<(T, Option<StoreEvent>)>
        + Send
        + 'static,
    ) -> ClientResult<T> {
        let events = self.events.clone();
        let now = self.clock.now();
        self.db
            .call(move |conn| {
                let (value, event) = f(conn, now)?;
                if let Some(event) = event {
                    emit(&events, event);
                }
                Ok(value)
            })
            .await
    }

    // ---- the user's changes ----

    /// Plans, queues and shows a local mutation (see [`outbox::mutate`]).
    pub(crate) async fn mutate(&self, mutation: Mutation) -> ClientResult<Receipt> {
        self.write(move |conn, now| {
            let (receipt, event) = outbox::mutate(conn, &mutation, now)?;
            Ok((receipt, Some(event)))
        })
        .await
    }

    /// Pending mutations not yet answered, oldest first, at most `limit`.
    pub(crate) async fn unsent(&self, limit: usize) -> ClientResult<Vec<PendingMutation>> {
        self.read(move |c| outbox::unsent(c, limit)).await
    }

    /// Every mutation in the outbox, oldest first.
    pub(crate) async fn pending(&self) -> ClientResult<Vec<PendingEntry>> {
        self.read(outbox::pending).await
    }

    /// Refusals not yet dismissed, oldest first.
    pub(crate) async fn rejected(&self) -> ClientResult<Vec<RejectedEntry>> {
        self.read(outbox::rejected).await
    }

    /// Dismisses a refusal (the user has seen it).
    pub(crate) async fn dismiss_rejected(&self, mutation_id: u64) -> ClientResult<bool> {
        self.read(move |c| outbox::dismiss_rejected(c, mutation_id))
            .await
    }

    /// Queue counts and cursor.
    pub(crate) async fn stats(&self) -> ClientResult<QueueStats> {
        self.read(outbox::stats).await
    }

    // ---- the server's answers ----

    /// Applies server rows (see [`remote::apply_remote`]).
    pub(crate) async fn apply_remote(
        &self,
        rows: Vec<SyncRow>,
        cursor: u64,
        ack: Option<u64>,
        complete: bool,
    ) -> ClientResult<StoreEvent> {
        self.write(move |conn, now| {
            let event = remote::apply_remote(conn, &rows, cursor, ack, complete, now)?;
            Ok((event.clone(), Some(event)))
        })
        .await
    }

    /// Fills in a patient's clinical fields from the server's answer (see
    /// [`care::fill_in`]).
    pub(crate) async fn fill_in_clinical(
        &self,
        records: clinic_shared::protocol::ClinicalRecords,
    ) -> ClientResult<()> {
        self.write(move |conn, now| {
            let event = care::fill_in(
                conn,
                records.patient_id,
                &records.rows,
                records.grant_expires_at,
                now,
            )?;
            Ok(((), Some(event)))
        })
        .await
    }

    /// When this desk's glass grant for `patient` ends, if one is in force.
    pub(crate) async fn glass_grant_end(
        &self,
        patient: uuid::Uuid,
    ) -> ClientResult<Option<Timestamp>> {
        let now = self.clock.now();
        self.read(move |c| care::grant_end(c, patient, now)).await
    }

    /// Keeps only the clinical text `doctor` may hold before they read
    /// `patient`'s chart (see [`care::enforce`]).
    pub(crate) async fn enforce_care(
        &self,
        doctor: uuid::Uuid,
        patient: uuid::Uuid,
    ) -> ClientResult<()> {
        self.write(move |conn, now| Ok(((), care::enforce(conn, doctor, patient, now)?)))
            .await
    }

    /// Whether the server was restored since the mirror synced with it; if
    /// so the mirror has started over (see [`restore::check_server`]).
    pub(crate) async fn check_server(
        &self,
        epoch: String,
        cursor_above_head: bool,
    ) -> ClientResult<bool> {
        self.write(move |conn, now| {
            let event = restore::check_server(conn, &epoch, cursor_above_head, now)?;
            Ok((event.is_some(), event))
        })
        .await
    }

    /// The restore notice not yet dismissed.
    pub(crate) async fn restore_notice(&self) -> ClientResult<Option<ServerRestored>> {
        self.read(restore::notice).await
    }

    /// Dismisses the restore notice.
    pub(crate) async fn dismiss_restore_notice(&self) -> ClientResult<()> {
        self.read(restore::dismiss).await
    }

    /// The notice that the mirror was rebuilt, not yet dismissed.
    pub(crate) async fn rebuilt_notice(&self) -> ClientResult<Option<MirrorRebuilt>> {
        self.read(salvage::notice).await
    }

    /// Dismisses the rebuilt notice.
    pub(crate) async fn dismiss_rebuilt_notice(&self) -> ClientResult<()> {
        self.read(salvage::dismiss).await
    }

    /// Records push results (see [`outbox::apply_results`]).
    pub(crate) async fn apply_results(&self, results: Vec<MutationResult>) -> ClientResult<()> {
        self.write(move |conn, now| Ok(((), outbox::apply_results(conn, &results, now)?)))
            .await
    }

    /// Sync bookkeeping.
    pub(crate) async fn sync_state(&self) -> ClientResult<SyncState> {
        self.read(|c| {
            Ok(SyncState {
                cursor: meta::number(c, &meta::CURSOR)?,
                settled: meta::number(c, &meta::SETTLED)?,
                server_ack: meta::number(c, &meta::SERVER_ACK)?,
                synced_once: meta::get(c, &meta::SYNCED_ONCE)?.unwrap_or(false),
                assigned: meta::get(c, &meta::NEXT_MUTATION_ID)?
                    .unwrap_or(1)
                    .saturating_sub(1),
            })
        })
        .await
    }

    /// When the server last sent anything.
    pub(crate) async fn last_synced_at(&self) -> ClientResult<Option<Timestamp>> {
        self.read(|c| meta::get(c, &meta::LAST_SYNCED_AT)).await
    }

    /// Marks the first full catch-up as done.
    pub(crate) async fn mark_synced_once(&self) -> ClientResult<()> {
        self.read(|c| meta::set(c, &meta::SYNCED_ONCE, &true)).await
    }

    // ---- identity ----

    /// Who this installation is, as stored.
    pub(crate) async fn identity(&self) -> ClientResult<StoredIdentity> {
        self.read(account::identity).await
    }

    /// Records a sign-in (see [`account::sign_in`]).
    pub(crate) async fn sign_in(
        &self,
        server_url: String,
        token: String,
        user: Staff,
        time_zone: Option<String>,
    ) -> ClientResult<()> {
        let new_client_id = self.ids.new_id();
        self.write(move |conn, _| {
            let event = account::sign_in(
                conn,
                &server_url,
                &token,
                &user,
                time_zone.as_deref(),
                new_client_id,
            )?;
            Ok(((), event))
        })
        .await
    }

    /// The clinic's time zone as the server last said, if it ever did.
    pub(crate) async fn time_zone(&self) -> ClientResult<Option<String>> {
        self.read(|c| meta::get(c, &meta::TIME_ZONE)).await
    }

    /// Remembers the clinic's time zone (from `welcome`).
    pub(crate) async fn set_time_zone(&self, zone: String) -> ClientResult<()> {
        self.read(move |c| {
            if meta::get(c, &meta::TIME_ZONE)?.as_deref() != Some(zone.as_str()) {
                meta::set(c, &meta::TIME_ZONE, &zone)?;
            }
            Ok(())
        })
        .await
    }

    /// What became of one of this client's mutations (see
    /// [`outbox::mutation_state`]).
    pub(crate) async fn mutation_state(
        &self,
        mutation_id: u64,
    ) -> ClientResult<Option<crate::types::Delivery>> {
        self.read(move |c| outbox::mutation_state(c, mutation_id))
            .await
    }

    /// Forgets the token; queued changes stay.
    pub(crate) async fn drop_token(&self) -> ClientResult<()> {
        self.read(account::drop_token).await
    }

    /// The user's role changed (see [`account::change_role`]).
    pub(crate) async fn change_role(&self, user: Staff) -> ClientResult<()> {
        self.write(move |conn, _| Ok(((), Some(account::change_role(conn, &user)?))))
            .await
    }

    // ---- views to report ----

    /// Queues "the person opened this record" for the access log.
    pub(crate) async fn queue_view(
        &self,
        table: clinic_shared::model::Table,
        id: uuid::Uuid,
    ) -> ClientResult<()> {
        self.read(move |c| {
            c.prepare_cached("INSERT INTO views (tbl, id) VALUES (?1, ?2)")?
                .execute(rusqlite::params![table.as_str(), id.to_string()])?;
            Ok(())
        })
        .await
    }

    /// Up to `limit` queued views, oldest first, each with its number.
    pub(crate) async fn queued_views(
        &self,
        limit: usize,
    ) -> ClientResult<Vec<(i64, clinic_shared::protocol::ViewedRecord)>> {
        self.read(move |c| {
            let raw: Vec<(i64, String, String)> = c
                .prepare_cached("SELECT n, tbl, id FROM views ORDER BY n LIMIT ?1")?
                .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<Result<_, _>>()?;
            raw.iter()
                .map(|(n, t, id)| {
                    Ok((
                        *n,
                        clinic_shared::protocol::ViewedRecord {
                            table: rows::parse_table(t)?,
                            id: rows::parse_uuid(id)?,
                        },
                    ))
                })
                .collect()
        })
        .await
    }

    /// Forgets queued views: those numbered up to `last`, or only `only`.
    pub(crate) async fn drop_views(&self, last: i64, only: bool) -> ClientResult<()> {
        self.read(move |c| {
            let sql = if only {
                "DELETE FROM views WHERE n = ?1"
            } else {
                "DELETE FROM views WHERE n <= ?1"
            };
            c.execute(sql, [last])?;
            Ok(())
        })
        .await
    }

    // ---- checks ----

    /// Confirmed or visible rows, sorted, for consistency checks.
    pub(crate) async fn dump(&self, visible: bool) -> ClientResult<Vec<DumpRow>> {
        self.read(move |c| dump(c, visible)).await
    }

    /// `PRAGMA integrity_check` of the file.
    pub(crate) async fn integrity_check(&self) -> ClientResult<()> {
        self.read(integrity_check).await
    }
}

/// Confirmed or visible rows: `(table, id, version, deleted, data)` sorted.
pub(crate) fn dump(conn: &Connection, visible: bool) -> ClientResult<Vec<DumpRow>> {
    let sql = if visible {
        "SELECT tbl, id, version, deleted, data FROM visible ORDER BY tbl, id"
    } else {
        "SELECT tbl, id, version, deleted, data FROM confirmed ORDER BY tbl, id"
    };
    let raw: Vec<(String, String, i64, bool, Option<String>)> = conn
        .prepare(sql)?
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    raw.into_iter()
        .map(|(t, id, v, d, data)| {
            let data = data
                .map(|s| rows::json::<serde_json::Value>(&s))
                .transpose()?
                .filter(|v| !v.is_null());
            Ok((
                rows::parse_table(&t)?,
                rows::parse_uuid(&id)?,
                rows::to_u64(v),
                d,
                data,
            ))
        })
        .collect()
}

/// The highest mutation id the server acknowledged.
#[cfg(any(test, feature = "internals"))]
pub(crate) fn server_ack(conn: &Connection) -> ClientResult<u64> {
    meta::number(conn, &meta::SERVER_ACK)
}

/// `PRAGMA integrity_check`; `Ok` when the file is sound.
pub(crate) fn integrity_check(conn: &Connection) -> ClientResult<()> {
    let r: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if r == "ok" {
        Ok(())
    } else {
        Err(ClientError::corrupt(format!("integrity check: {r}")))
    }
}
