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
//!
//! The feed also keeps the most recent batches (at most `capacity` of them
//! and [`RECENT_ROWS`] rows): a long-poll woken by a new head reads what it
//! missed from here ([`Feed::since`]) rather than querying storage, so a
//! hundred waiting desks cost one shared copy of each batch, not a hundred
//! queries.

use crate::storage::{Change, Storage, StorageResult};
use clinic_shared::model::{SyncRow, Table};
use std::collections::VecDeque;
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

/// Rows the recent-batch window holds at most (beyond that, the oldest
/// batches leave it and readers that far behind go to storage).
pub const RECENT_ROWS: usize = 20_000;

/// A pull page read from the feed ([`Since::page`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FeedPage {
    /// Rows of the readable tables past the cursor, by version.
    pub rows: Vec<SyncRow>,
    /// Cursor after these rows: the head when every row fitted.
    pub cursor: u64,
    /// More rows wait past `cursor`.
    pub more: bool,
}

impl Since {
    /// Up to `limit` rows of `tables` with `cursor < version`, by version,
    /// as [`Storage::changes_page`] pages them (here each change of a row
    /// comes in order, where storage gives only its latest version).
    pub fn page(&self, tables: &[Table], cursor: u64, limit: usize) -> FeedPage {
        let mut rows = Vec::new();
        for batch in &self.batches {
            for row in &batch.rows {
                if row.version <= cursor || !tables.contains(&row.table) {
                    continue;
                }
                if rows.len() == limit {
                    let cursor = rows.last().map_or(cursor, |r: &SyncRow| r.version);
                    return FeedPage {
                        rows,
                        cursor,
                        more: true,
                    };
                }
                rows.push(row.clone());
            }
        }
        FeedPage {
            rows,
            cursor: self.head,
            more: false,
        }
    }

    /// The highest mutation id of `client` with effects in these batches.
    pub fn ack_for(&self, client: Uuid) -> Option<u64> {
        self.batches.iter().filter_map(|b| b.ack_for(client)).max()
    }
}

/// Publishes committed batches.
pub struct Feed {
    storage: Arc<dyn Storage>,
    batches: broadcast::Sender<Arc<Batch>>,
    head: watch::Sender<u64>,
    published: Mutex<u64>,
    recent: Mutex<Recent>,
}

/// The most recent batches, oldest first, covering every sequence number in
/// `floor < seq <= head` with no gap.
struct Recent {
    /// The published head before the oldest batch held.
    floor: u64,
    batches: VecDeque<Arc<Batch>>,
    rows: usize,
    max_batches: usize,
}

impl Recent {
    fn head(&self) -> u64 {
        self.batches.back().map_or(self.floor, |b| b.last_seq)
    }

    fn push(&mut self, batch: Arc<Batch>) {
        self.rows += batch.rows.len();
        self.batches.push_back(batch);
        while self.batches.len() > self.max_batches
            || (self.rows > RECENT_ROWS && self.batches.len() > 1)
        {
            let Some(old) = self.batches.pop_front() else {
                break;
            };
            self.rows -= old.rows.len();
            self.floor = old.last_seq;
        }
    }
}

/// What the feed holds past a cursor ([`Feed::since`]).
#[derive(Debug, Clone)]
pub struct Since {
    /// Batches with rows past the cursor, in order; the first may also hold
    /// rows at or before it, which readers skip.
    pub batches: Vec<Arc<Batch>>,
    /// The published head these batches reach.
    pub head: u64,
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
            recent: Mutex::new(Recent {
                floor: head,
                batches: VecDeque::new(),
                rows: 0,
                max_batches: capacity.max(1),
            }),
        })
    }

    /// When the oldest batch with changes past `cursor` was published, if
    /// the feed holds one (for a long-poll's gathering: no copy of the
    /// batches).
    pub fn oldest_past(&self, cursor: u64) -> Option<std::time::Instant> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if cursor < recent.floor {
            return None; // answered from storage, at once
        }
        let first = recent.batches.partition_point(|b| b.last_seq <= cursor);
        recent.batches.get(first).map(|b| b.published)
    }

    /// Every published change past `cursor`, from memory, or `None` when
    /// the feed no longer holds all of them (the cursor is older than the
    /// recent window) or `cursor` is past the published head (a database
    /// restored behind the client): then the caller reads storage.
    pub fn since(&self, cursor: u64) -> Option<Since> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let head = recent.head();
        if cursor < recent.floor || cursor > head {
            return None;
        }
        let first = recent.batches.partition_point(|b| b.last_seq <= cursor);
        Some(Since {
            batches: recent.batches.range(first..).cloned().collect(),
            head,
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
            let batch = Arc::new(batch);
            // Held before the head moves, so a poll woken by the new head
            // finds the batch.
            self.recent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(batch.clone());
            // No receivers is fine: nobody is listening right now.
            let _ = self.batches.send(batch);
            self.head.send_replace(*published);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::sqlite::SqliteStorage;
    use clinic_shared::apply::Action;
    use clinic_shared::model::Timestamp;
    use serde_json::json;

    fn change(seq: u64, table: Table, client: Option<(Uuid, u64)>) -> Change {
        Change {
            seq,
            table,
            id: Uuid::from_u128(u128::from(seq)),
            action: Action::Create,
            before: None,
            after: json!({ "n": seq }),
            actor_id: None,
            client_id: client.map(|c| c.0),
            mutation_id: client.map(|c| c.1),
            mutation: "test".to_owned(),
            at: Timestamp::from_unix(0).expect("the epoch"),
        }
    }

    fn feed(capacity: usize) -> (tempfile::TempDir, Feed) {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = SqliteStorage::open(dir.path().join("feed.db")).expect("open");
        let feed = Feed::new(Arc::new(storage), capacity).expect("feed");
        (dir, feed)
    }

    fn versions(rows: &[SyncRow]) -> Vec<u64> {
        rows.iter().map(|r| r.version).collect()
    }

    #[test]
    fn since_serves_the_recent_window_and_refuses_outside_it() {
        let (_dir, feed) = feed(3);
        assert_eq!(feed.since(0).map(|s| s.head), Some(0), "empty: at the head");
        assert!(feed.since(1).is_none(), "past the head: storage answers");
        for seq in 1..=5 {
            feed.publish_commit(&[change(seq, Table::Patients, None)])
                .expect("publish");
        }
        // Three batches held: 3, 4, 5; the floor is 2.
        assert!(feed.since(1).is_none(), "older than the window");
        assert!(feed.oldest_past(1).is_none(), "no gathering for storage");
        let since = feed.since(2).expect("at the floor");
        assert_eq!(since.head, 5);
        assert_eq!(since.batches.len(), 3);
        let since = feed.since(4).expect("inside");
        assert_eq!(since.batches.len(), 1);
        assert_eq!(feed.oldest_past(4), Some(since.batches[0].published));
        assert_eq!(feed.oldest_past(5), None, "nothing past the head");
        assert_eq!(feed.since(5).map(|s| s.batches.len()), Some(0));
        assert!(feed.since(6).is_none());
    }

    #[test]
    fn since_keeps_at_most_the_row_cap() {
        let (_dir, feed) = feed(64);
        let big: Vec<Change> = (1..=RECENT_ROWS as u64)
            .map(|s| change(s, Table::Patients, None))
            .collect();
        feed.publish_commit(&big).expect("publish");
        let next = RECENT_ROWS as u64 + 1;
        feed.publish_commit(&[change(next, Table::Patients, None)])
            .expect("publish");
        assert!(feed.since(0).is_none(), "the big batch left the window");
        assert_eq!(
            feed.since(RECENT_ROWS as u64).map(|s| s.batches.len()),
            Some(1)
        );
    }

    #[test]
    fn a_page_filters_tables_skips_delivered_rows_and_truncates() {
        let (_dir, feed) = feed(16);
        let me = Uuid::from_u128(7);
        feed.publish_commit(&[
            change(1, Table::Patients, Some((me, 1))),
            change(2, Table::TreatmentRecords, Some((me, 1))),
            change(3, Table::Patients, Some((me, 1))),
        ])
        .expect("publish");
        feed.publish_commit(&[change(4, Table::Patients, Some((me, 2)))])
            .expect("publish");
        let since = feed.since(1).expect("in the window");
        let page = since.page(&[Table::Patients], 1, 10);
        assert_eq!(
            versions(&page.rows),
            [3, 4],
            "seq 1 delivered, 2 unreadable"
        );
        assert_eq!((page.cursor, page.more), (4, false));
        assert_eq!(since.ack_for(me), Some(2));
        assert_eq!(since.ack_for(Uuid::from_u128(8)), None);

        let page = since.page(&[Table::Patients, Table::TreatmentRecords], 1, 2);
        assert_eq!(versions(&page.rows), [2, 3]);
        assert_eq!(
            (page.cursor, page.more),
            (3, true),
            "cursor at the last row"
        );
        let rest = feed.since(page.cursor).expect("in the window");
        let page = rest.page(&[Table::Patients, Table::TreatmentRecords], 3, 2);
        assert_eq!(versions(&page.rows), [4]);
        assert_eq!((page.cursor, page.more), (4, false));

        let page = since.page(&[], 1, 10);
        assert!(page.rows.is_empty());
        assert_eq!(
            (page.cursor, page.more),
            (4, false),
            "nothing readable: at the head"
        );
    }
}
