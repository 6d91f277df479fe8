//! The feed: committed changes, published in sequence order to every live
//! subscriber (WebSocket connections, long-polls).
//!
//! Terms:
//! - **batch**: the changes of one commit (or of a run of commits made by
//!   another process), in sequence order, with the `(client, mutation)` pairs
//!   they acknowledge.
//! - **published head**: the highest sequence number handed to subscribers.
//!
//! The in-process writer publishes each commit as soon as it lands. Commits
//! made by other processes on the same database (the admin CLI; other server
//! instances on a shared database) are found by [`Feed::publish_external`],
//! which a timer calls; any gap between the published head and a new batch is
//! filled from storage first, so subscribers always see every sequence number
//! in order. Fan-out costs no query per subscriber: each one filters the
//! shared batch by its role.
//!
//! The channel is bounded: a subscriber that falls more than
//! `capacity` batches behind is told it lagged and catches up from its cursor
//! through storage, so a slow subscriber never makes the server buffer
//! without bound.

use crate::storage::{Change, Storage, StorageResult};
use clinic_shared::model::SyncRow;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

/// The changes of one or more commits, in sequence order.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Rows as they travel, by version.
    pub rows: Vec<SyncRow>,
    /// `(client_id, mutation_id)` of every mutation with effects in `rows`.
    pub acks: Vec<(Uuid, u64)>,
    /// Highest sequence number in the batch.
    pub last_seq: u64,
    /// When it was published (right after its commit): the start of the
    /// fan-out lag the metrics report.
    pub published: std::time::Instant,
}

impl Batch {
    fn from_changes(changes: &[Change]) -> Option<Batch> {
        let last_seq = changes.last()?.seq;
        let mut acks: Vec<(Uuid, u64)> = Vec::new();
        for c in changes {
            if let (Some(client), Some(m)) = (c.client_id, c.mutation_id)
                && acks.last() != Some(&(client, m))
            {
                acks.push((client, m));
            }
        }
        Some(Batch {
            rows: changes.iter().map(Change::to_sync_row).collect(),
            acks,
            last_seq,
            published: std::time::Instant::now(),
        })
    }

    /// The highest mutation id of `client` acknowledged by this batch.
    pub fn ack_for(&self, client: Uuid) -> Option<u64> {
        self.acks
            .iter()
            .filter(|(c, _)| *c == client)
            .map(|(_, m)| *m)
            .max()
    }
}

/// Publishes committed batches.
pub struct Feed {
    storage: Arc<dyn Storage>,
    batches: broadcast::Sender<Arc<Batch>>,
    head: watch::Sender<u64>,
    published: Mutex<u64>,
}

impl Feed {
    /// A feed starting at the storage's current head, keeping at most
    /// `capacity` unread batches per subscriber.
    pub fn new(storage: Arc<dyn Storage>, capacity: usize) -> StorageResult<Feed> {
        let head = storage.head()?;
        let (batches, _) = broadcast::channel(capacity.max(1));
        let (head_tx, _) = watch::channel(head);
        Ok(Feed {
            storage,
            batches,
            head: head_tx,
            published: Mutex::new(head),
        })
    }

    /// Receives every batch published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Batch>> {
        self.batches.subscribe()
    }

    /// Watches the published head.
    pub fn head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Publishes the changes of a commit made by this process. Blocking: it
    /// may read storage to fill a gap left by another process's commits.
    pub fn publish_commit(&self, changes: &[Change]) -> StorageResult<()> {
        let Some(first) = changes.first() else {
            return Ok(());
        };
        let mut published = self.published.lock().unwrap_or_else(|p| p.into_inner());
        if first.seq > *published + 1 {
            let gap = self.storage.committed_between(*published, first.seq - 1)?;
            self.send(&mut published, &gap);
        }
        let fresh: Vec<Change> = changes
            .iter()
            .filter(|c| c.seq > *published)
            .cloned()
            .collect();
        self.send(&mut published, &fresh);
        Ok(())
    }

    /// Publishes commits made by other processes since the published head.
    /// Blocking.
    pub fn publish_external(&self) -> StorageResult<()> {
        let head = self.storage.head()?;
        let mut published = self.published.lock().unwrap_or_else(|p| p.into_inner());
        if head > *published {
            tracing::debug!(
                from = *published,
                to = head,
                "publishing changes committed elsewhere"
            );
            let changes = self.storage.committed_between(*published, head)?;
            self.send(&mut published, &changes);
        }
        Ok(())
    }

    fn send(&self, published: &mut u64, changes: &[Change]) {
        if let Some(batch) = Batch::from_changes(changes) {
            *published = batch.last_seq;
            // No receivers is fine: nobody is listening right now.
            let _ = self.batches.send(Arc::new(batch));
            self.head.send_replace(*published);
        }
    }
}
