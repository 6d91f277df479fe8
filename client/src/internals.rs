//! The mirror's operations, synchronous and on the caller's thread, for the
//! fuzz target (feature `internals`). Not for front ends: they use
//! [`crate::ClinicClient`], which runs these same operations on the mirror's
//! own thread.

use crate::clock::{Clock, SystemClock};
use crate::error::ClientResult;
use crate::mirror::{account, outbox, remote, schema};
use crate::types::{DumpRow, Entity, PendingEntry, Receipt, RejectedEntry, Row};
use clinic_shared::model::{Appointment, Staff, SyncRow, Table, Timestamp};
use clinic_shared::mutation::{Mutation, PendingMutation};
use clinic_shared::protocol::MutationResult;
use rusqlite::Connection;
use std::path::Path;
use uuid::Uuid;

/// A mirror opened on the caller's thread.
pub struct SyncMirror {
    conn: Connection,
}

impl SyncMirror {
    /// Opens (creating) the mirror in `dir`.
    pub fn open(dir: &Path) -> ClientResult<SyncMirror> {
        std::fs::create_dir_all(dir).map_err(|source| crate::ClientError::Io {
            context: format!("creating {}", dir.display()),
            source,
        })?;
        // One key per folder, kept beside the mirror in the clear: these
        // mirrors live for one test or fuzz input, and a test reopens them.
        let key = crate::session::keys::MirrorKey::for_tests(&dir.join("test.key"))?;
        Ok(SyncMirror {
            conn: schema::open_writer(&dir.join(schema::FILE_NAME), Uuid::now_v7(), &key)?,
        })
    }

    /// Records a sign-in.
    pub fn sign_in(&mut self, server_url: &str, token: &str, user: &Staff) -> ClientResult<()> {
        account::sign_in(
            &mut self.conn,
            server_url,
            token,
            user,
            None,
            Uuid::now_v7(),
        )
        .map(|_| ())
    }

    /// Plans, queues and shows a local mutation.
    pub fn mutate(&mut self, mutation: &Mutation) -> ClientResult<Receipt> {
        outbox::mutate(&mut self.conn, mutation, SystemClock.now()).map(|(r, _)| r)
    }

    /// Unanswered mutations, oldest first.
    pub fn unsent(&self, limit: usize) -> ClientResult<Vec<PendingMutation>> {
        outbox::unsent(&self.conn, limit)
    }

    /// Records push results.
    pub fn apply_results(&mut self, results: &[MutationResult]) -> ClientResult<()> {
        outbox::apply_results(&mut self.conn, results, SystemClock.now()).map(|_| ())
    }

    /// Applies server rows.
    pub fn apply_remote(
        &mut self,
        rows: &[SyncRow],
        cursor: u64,
        ack: Option<u64>,
        complete: bool,
    ) -> ClientResult<()> {
        remote::apply_remote(
            &mut self.conn,
            rows,
            cursor,
            ack,
            complete,
            SystemClock.now(),
        )
        .map(|_| ())
    }

    /// The mirror's cursor.
    pub fn cursor(&self) -> ClientResult<u64> {
        Ok(outbox::stats(&self.conn)?.cursor)
    }

    /// One visible row.
    pub fn get(&self, table: Table, id: Uuid) -> ClientResult<Option<Row>> {
        crate::read::row(&self.conn, table, id)
    }

    /// Every mutation in the outbox, oldest first.
    pub fn pending(&self) -> ClientResult<Vec<PendingEntry>> {
        outbox::pending(&self.conn)
    }

    /// Refusals not yet dismissed.
    pub fn rejected(&self) -> ClientResult<Vec<RejectedEntry>> {
        outbox::rejected(&self.conn)
    }

    /// The highest mutation id the server acknowledged.
    pub fn server_ack(&self) -> ClientResult<u64> {
        crate::mirror::server_ack(&self.conn)
    }

    /// The user's role changed.
    pub fn change_role(&mut self, user: &Staff) -> ClientResult<()> {
        account::change_role(&mut self.conn, user).map(|_| ())
    }

    /// Appointments starting in `[from, until)`.
    pub fn schedule(
        &self,
        from: Timestamp,
        until: Timestamp,
        doctor: Option<Uuid>,
    ) -> ClientResult<Vec<Entity<Appointment>>> {
        crate::read::schedule(&self.conn, from, until, doctor)
    }

    /// `PRAGMA integrity_check`.
    pub fn integrity_check(&self) -> ClientResult<()> {
        crate::mirror::integrity_check(&self.conn)
    }

    /// Confirmed or visible rows, sorted.
    pub fn dump(&self, visible: bool) -> ClientResult<Vec<DumpRow>> {
        crate::mirror::dump(&self.conn, visible)
    }
}
