//! The read audit: every delivery of clinical content to a person goes to
//! the access log, and both logs' hash chains can be verified.
//!
//! What is recorded: rows of the tables with clinical fields
//! (`Table::clinical_fields`: treatment records and referrals) sent with
//! any of those fields (a row whose clinical fields were withheld from the
//! reader, by role or by care, is not clinical content) on pull, WebSocket
//! catch-up and live batches, and on `GET /v1/patients/{id}/clinical`;
//! every break of the glass, with its reason; every
//! history read; every record the desk reports as opened
//! (`POST /v1/audit/views`). Deliveries are aggregated: one entry per
//! recipient, delivery (a pull answer, a catch-up page, a live batch),
//! patient and table, listing the row ids, so "who saw this patient's
//! records" is one indexed query and a live batch fanned out to a
//! thousand doctors is a thousand small rows, not a thousand transactions.
//!
//! Entries go through a bounded queue to one audit thread that commits
//! everything waiting in one transaction (group commit), so the delivery
//! path never waits for a disk write. Durability: an entry for a WebSocket
//! delivery is committed within one audit commit after it was sent (a few
//! milliseconds; a crash in between loses at most those entries). Pulls,
//! history reads and view reports wait for the commit before they answer,
//! so what they deliver is always on record. A full queue makes senders
//! wait (backpressure) rather than drop entries.

use crate::storage::{
    AccessRecord, ChainLink, Change, NewAccess, Storage, StorageError, StorageResult, chain,
};
use clinic_shared::model::{SyncRow, Table, Timestamp};
use clinic_shared::protocol::{AccessKind, ErrorBody, ErrorCode};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Entries waiting for the audit thread at most (jobs, each one delivery).
const QUEUE: usize = 8192;
/// Entries committed in one transaction at most.
const MAX_ENTRIES_PER_COMMIT: usize = 20_000;
/// Attempts at a commit before the entries are given up (and logged).
const ATTEMPTS: u32 = 5;

struct Job {
    entries: Vec<NewAccess>,
    done: Option<oneshot::Sender<bool>>,
}

/// Submits access entries to the audit thread.
#[derive(Clone)]
pub struct AuditHandle {
    jobs: mpsc::Sender<Job>,
}

fn unavailable() -> ErrorBody {
    ErrorBody::new(
        ErrorCode::Unavailable,
        "the access log could not be written; nothing was delivered, try again",
    )
}

impl AuditHandle {
    /// Queues entries (waits only while the queue is full).
    pub async fn record(&self, entries: Vec<NewAccess>) {
        if entries.is_empty() {
            return;
        }
        if self
            .jobs
            .send(Job {
                entries,
                done: None,
            })
            .await
            .is_err()
        {
            tracing::error!("the audit thread has stopped; access entries lost");
        }
    }

    /// Queues entries and waits until they are committed.
    pub async fn record_durable(&self, entries: Vec<NewAccess>) -> Result<(), ErrorBody> {
        let (done, committed) = oneshot::channel();
        let job = Job {
            entries,
            done: Some(done),
        };
        self.jobs.send(job).await.map_err(|_| unavailable())?;
        match committed.await {
            Ok(true) => Ok(()),
            _ => Err(unavailable()),
        }
    }

    /// Waits until everything queued before this call is committed.
    pub async fn flush(&self) -> Result<(), ErrorBody> {
        self.record_durable(Vec::new()).await
    }
}

/// Starts the audit thread. It ends when every [`AuditHandle`] is dropped,
/// after committing what is queued.
pub fn spawn(
    storage: Arc<dyn Storage>,
) -> std::io::Result<(AuditHandle, std::thread::JoinHandle<()>)> {
    let (jobs, mut queue) = mpsc::channel::<Job>(QUEUE);
    let thread = std::thread::Builder::new()
        .name("clinic-audit".into())
        .spawn(move || {
            while let Some(first) = queue.blocking_recv() {
                let mut batch = vec![first];
                let mut count = batch[0].entries.len();
                while count < MAX_ENTRIES_PER_COMMIT {
                    match queue.try_recv() {
                        Ok(job) => {
                            count += job.entries.len();
                            batch.push(job);
                        }
                        Err(_) => break,
                    }
                }
                commit(storage.as_ref(), batch);
            }
            tracing::debug!("audit thread stopped");
        })?;
    Ok((AuditHandle { jobs }, thread))
}

fn commit(storage: &dyn Storage, batch: Vec<Job>) {
    let entries: Vec<NewAccess> = batch
        .iter()
        .flat_map(|j| j.entries.iter().cloned())
        .collect();
    let mut outcome = Ok(());
    if !entries.is_empty() {
        for attempt in 1..=ATTEMPTS {
            outcome = storage.append_access(&entries).map(|_| ());
            match &outcome {
                Err(e) if e.retryable() && attempt < ATTEMPTS => {
                    std::thread::sleep(std::time::Duration::from_millis(20 << attempt));
                }
                _ => break,
            }
        }
    }
    if let Err(e) = &outcome {
        // Counts only: entries name patients.
        tracing::error!(error = %e, entries = entries.len(), "access entries could not be written");
    }
    for job in batch {
        if let Some(done) = job.done {
            let _ = done.send(outcome.is_ok());
        }
    }
}

/// The patient a row belongs to: the row itself for `patients`, its
/// `patient_id` field otherwise (absent for staff and stock).
pub fn patient_of(table: Table, id: Uuid, data: &serde_json::Value) -> Option<Uuid> {
    if table == Table::Patients {
        return Some(id);
    }
    data.get("patient_id")
        .and_then(|p| p.as_str())
        .and_then(|p| Uuid::parse_str(p).ok())
}

/// The access entries for delivering `rows` to `user`: the rows of
/// clinical tables sent with content, one entry per patient and table.
pub fn deliveries(
    user_id: Uuid,
    client_id: Option<Uuid>,
    kind: AccessKind,
    rows: &[SyncRow],
    at: Timestamp,
) -> Vec<NewAccess> {
    // By (patient, table name): the rows of one patient's records of one table.
    type Group = (Table, Vec<Uuid>);
    let mut grouped: BTreeMap<(Option<Uuid>, &'static str), Group> = BTreeMap::new();
    for row in rows {
        if row.table.clinical_fields().is_empty() {
            continue;
        }
        let Some(data) = &row.data else {
            continue; // a tombstone carries no content
        };
        // Withheld from this reader (the field matrix, care): nothing
        // clinical went out with it.
        if !row
            .table
            .clinical_fields()
            .iter()
            .any(|f| data.get(f).is_some())
        {
            continue;
        }
        let patient = patient_of(row.table, row.id, data);
        grouped
            .entry((patient, row.table.as_str()))
            .or_insert_with(|| (row.table, Vec::new()))
            .1
            .push(row.id);
    }
    grouped
        .into_iter()
        .map(|((patient_id, _), (table, row_ids))| NewAccess {
            at,
            user_id,
            client_id,
            kind,
            patient_id,
            table,
            row_ids,
            reason: None,
        })
        .collect()
}

/// Which log a verification failure is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Log {
    /// The change log (`changes`).
    Changes,
    /// The access log.
    Access,
}

impl std::fmt::Display for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Log::Changes => "change log",
            Log::Access => "access log",
        })
    }
}

/// A log that verified: how many entries, and the hash of the last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Entries checked.
    pub entries: u64,
    /// The head hash (write it down elsewhere: it anchors the whole chain).
    pub head: String,
}

/// Why [`verify_changes`] or [`verify_access`] failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// An entry does not match its chain.
    #[error("{log}: entry {seq} {problem}")]
    Broken {
        /// Which log.
        log: Log,
        /// The first bad entry.
        seq: u64,
        /// What is wrong with it.
        problem: String,
    },
    /// The logs could not be read.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

const PAGE: usize = 2000;

fn check_link(
    log: Log,
    seq: u64,
    expected_seq: Option<u64>,
    stored: Option<&str>,
    computed: &str,
) -> Result<(), VerifyError> {
    let broken = |problem: String| VerifyError::Broken { log, seq, problem };
    if let Some(expected) = expected_seq
        && seq != expected
    {
        return Err(broken(format!(
            "follows entry {} (entries {expected}..{} are missing)",
            expected - 1,
            seq - 1
        )));
    }
    match stored {
        None => Err(broken("has no hash".into())),
        Some(h) if h != computed => Err(broken(
            "does not match its hash: it was edited, or an entry before it was removed or changed"
                .into(),
        )),
        Some(_) => Ok(()),
    }
}

/// Walks the change log's chain from its first entry.
pub fn verify_changes(storage: &dyn Storage) -> Result<Verified, VerifyError> {
    let mut previous = chain::GENESIS.to_owned();
    let mut after = 0;
    let mut entries = 0;
    loop {
        let page: Vec<ChainLink<Change>> = storage.change_chain(after, PAGE)?;
        if page.is_empty() {
            return Ok(Verified {
                entries,
                head: previous,
            });
        }
        for link in page {
            let computed = chain::change_hash(&previous, &link.entry);
            // The change sequence is gap-free: a missing number is a removed entry.
            check_link(
                Log::Changes,
                link.entry.seq,
                Some(after + 1),
                link.hash.as_deref(),
                &computed,
            )?;
            after = link.entry.seq;
            previous = computed;
            entries += 1;
        }
    }
}

/// Walks the access log's chain from its first entry.
pub fn verify_access(storage: &dyn Storage) -> Result<Verified, VerifyError> {
    let mut previous = chain::GENESIS.to_owned();
    let mut after = 0;
    let mut entries = 0;
    loop {
        let page: Vec<ChainLink<AccessRecord>> = storage.access_chain(after, PAGE)?;
        if page.is_empty() {
            return Ok(Verified {
                entries,
                head: previous,
            });
        }
        for link in page {
            let computed = chain::access_record_hash(&previous, &link.entry);
            check_link(
                Log::Access,
                link.entry.seq,
                Some(after + 1),
                link.hash.as_deref(),
                &computed,
            )?;
            after = link.entry.seq;
            previous = computed;
            entries += 1;
        }
    }
}

/// Reads a page of the access log of one patient for the API.
pub fn access_page(
    storage: &dyn Storage,
    patient: Uuid,
    before: Option<u64>,
    limit: usize,
) -> StorageResult<(Vec<clinic_shared::protocol::AccessLogEntry>, Option<u64>)> {
    let entries = storage.access_log(patient, before, limit)?;
    let next = if entries.len() == limit {
        entries.last().map(|e| e.seq)
    } else {
        None
    };
    Ok((entries, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deliveries_group_clinical_rows_by_patient_and_skip_the_rest() {
        let (p1, p2) = (Uuid::now_v7(), Uuid::now_v7());
        let row = |table, patient: Uuid, data: bool| SyncRow {
            table,
            id: Uuid::now_v7(),
            version: 1,
            deleted: !data,
            data: data.then(|| match table {
                Table::Referrals => json!({"patient_id": patient, "reason": "r"}),
                _ => json!({"patient_id": patient, "notes": "n"}),
            }),
        };
        let rows = vec![
            row(Table::TreatmentRecords, p1, true),
            row(Table::TreatmentRecords, p1, true),
            row(Table::TreatmentRecords, p2, true),
            row(Table::Referrals, p1, true),
            row(Table::TreatmentRecords, p2, false), // tombstone: no content
            row(Table::Appointments, p1, true),      // not clinical
            // Clinical fields withheld (reception's referral, a doctor's
            // record of someone else's patient): no clinical content.
            SyncRow {
                data: Some(json!({"patient_id": p2, "referred_to": "x"})),
                ..row(Table::Referrals, p2, true)
            },
        ];
        let at = Timestamp::from_unix(0).expect("time");
        let entries = deliveries(Uuid::nil(), None, AccessKind::Pull, &rows, at);
        let summary: Vec<(Option<Uuid>, Table, usize)> = entries
            .iter()
            .map(|e| (e.patient_id, e.table, e.row_ids.len()))
            .collect();
        let mut expected = vec![
            (Some(p1), Table::TreatmentRecords, 2),
            (Some(p1), Table::Referrals, 1),
            (Some(p2), Table::TreatmentRecords, 1),
        ];
        expected.sort_by_key(|(p, t, _)| (*p, t.as_str()));
        assert_eq!(summary, expected);
    }
}
