//! The single writer: one thread that owns every mutation write, so the
//! change sequence is gap-free and in commit order.
//!
//! Pushes queue on a bounded channel. The writer takes every push waiting
//! (up to a limit), and those that arrive while it waits for the
//! database's write lock, and applies them all in one transaction (group
//! commit):
//! one fsync acknowledges many mutations, which is what makes thousands of
//! durable mutations per second possible on SQLite. Each push gets its
//! results only after the commit, then the batch is published to the feed.

use crate::Clock;
use crate::engine::{self, PreparedMutation, PushRefused, SeqAllocator};
use crate::feed::Feed;
use crate::metrics::{Metrics, MutationCount, PushCount};
use crate::revocation::Revocations;
use crate::storage::{Change, Storage, StorageError};
use clinic_shared::field_access;
use clinic_shared::model::Table;
use clinic_shared::protocol::{
    Actor, ErrorBody, ErrorCode, MutationOutcome, MutationResult, RejectCode,
};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Pushes taken into one transaction at most.
const MAX_PUSHES_PER_COMMIT: usize = 256;
/// Pushes waiting for the writer at most; senders wait beyond that.
const QUEUE: usize = 4096;

/// One client's push, waiting for the writer.
pub struct PushJob {
    /// Who pushes.
    pub actor: Actor,
    /// From which client.
    pub client_id: Uuid,
    /// What.
    pub mutations: Vec<PreparedMutation>,
    /// Where the results go.
    pub reply: oneshot::Sender<Result<Vec<MutationResult>, ErrorBody>>,
}

/// Submits pushes to the writer thread.
#[derive(Clone)]
pub struct WriterHandle {
    jobs: mpsc::Sender<PushJob>,
}

impl WriterHandle {
    /// Applies a push and waits for its results (after the commit).
    pub async fn push(
        &self,
        actor: Actor,
        client_id: Uuid,
        mutations: Vec<PreparedMutation>,
    ) -> Result<Vec<MutationResult>, ErrorBody> {
        let (reply, answer) = oneshot::channel();
        let tables: std::collections::HashMap<u64, Table> = mutations
            .iter()
            .map(|m| (m.pending.mutation_id, m.pending.mutation.target().0))
            .collect();
        let role = actor.role;
        let job = PushJob {
            actor,
            client_id,
            mutations,
            reply,
        };
        let unavailable = || ErrorBody::new(ErrorCode::Unavailable, "the server is shutting down");
        self.jobs.send(job).await.map_err(|_| unavailable())?;
        let mut results = answer.await.map_err(|_| unavailable())??;
        // Conflict details carry row values: only what the role may read.
        for r in &mut results {
            if let (MutationOutcome::Rejected { rejection }, Some(table)) =
                (&mut r.outcome, tables.get(&r.mutation_id))
            {
                field_access::redact_rejection(role, *table, rejection);
            }
        }
        Ok(results)
    }
}

/// Starts the writer thread. It ends when every [`WriterHandle`] is dropped,
/// after finishing the pushes already queued.
pub fn spawn(
    storage: Arc<dyn Storage>,
    feed: Arc<Feed>,
    revocations: Arc<Revocations>,
    clock: Clock,
    metrics: Arc<Metrics>,
) -> std::io::Result<(WriterHandle, std::thread::JoinHandle<()>)> {
    let (jobs, mut queue) = mpsc::channel::<PushJob>(QUEUE);
    let thread = std::thread::Builder::new()
        .name("clinic-writer".into())
        .spawn(move || {
            while let Some(first) = queue.blocking_recv() {
                let mut batch = vec![first];
                while batch.len() < MAX_PUSHES_PER_COMMIT {
                    match queue.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                commit_batch(
                    storage.as_ref(),
                    &feed,
                    &revocations,
                    &clock,
                    &metrics,
                    batch,
                    &mut queue,
                );
            }
            tracing::debug!("writer stopped");
        })?;
    Ok((WriterHandle { jobs }, thread))
}

fn commit_batch(
    storage: &dyn Storage,
    feed: &Feed,
    revocations: &Revocations,
    clock: &Clock,
    metrics: &Metrics,
    mut batch: Vec<PushJob>,
    queue: &mut mpsc::Receiver<PushJob>,
) {
    let now = clock();
    let mut changes: Vec<Change> = Vec::new();
    let mut results: Vec<Result<Vec<MutationResult>, PushRefused>> =
        Vec::with_capacity(batch.len());
    // Each push's client's last processed mutation id before it: what
    // tells a duplicate (a retry of one processed before) from a fresh one.
    let mut processed_before: Vec<u64> = Vec::with_capacity(batch.len());
    let span = tracing::debug_span!("commit");
    let _enter = span.enter();
    let started = std::time::Instant::now();
    let outcome = storage.write(&mut |tx| {
        changes.clear();
        results.clear();
        processed_before.clear();
        let mut seqs = SeqAllocator::new(tx)?;
        // The write lock is held now. Pushes that arrived while it was
        // awaited (on PostgreSQL another instance may have held it for a
        // whole commit) join this transaction rather than wait for the
        // next one.
        while batch.len() < MAX_PUSHES_PER_COMMIT {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // What the mutations will read: one round trip instead of one per
        // mutation on backends where reads cost one (a hint; SQLite
        // ignores it).
        let clients: Vec<Uuid> = batch.iter().map(|j| j.client_id).collect();
        let rows_to_read: Vec<(Table, Uuid)> = batch
            .iter()
            .flat_map(|j| j.mutations.iter())
            .flat_map(|m| engine::rows_read_by(&m.pending.mutation))
            .collect();
        tx.prefetch(&rows_to_read, &clients)?;
        for job in &batch {
            processed_before.push(tx.client(job.client_id)?.map_or(0, |c| c.last_mutation_id));
            let r = engine::apply_push(
                tx,
                &mut seqs,
                &job.actor,
                job.client_id,
                &job.mutations,
                now,
                &mut changes,
            )?;
            results.push(r);
        }
        Ok(())
    });
    match outcome {
        Ok(()) => {
            metrics.commit_durable(started.elapsed());
            count_outcomes(metrics, &results, &processed_before);
            for (job, result) in batch.into_iter().zip(results) {
                let reply = result.map_err(|PushRefused::ForeignClient| {
                    ErrorBody::new(
                        ErrorCode::Forbidden,
                        "this client id belongs to another user; use a client id of your own",
                    )
                    .with_field("client_id")
                });
                // The pusher may have gone away; its results are stored anyway.
                let _ = job.reply.send(reply);
            }
            if let Err(e) = feed.publish_commit(&changes) {
                tracing::error!(error = %e, "publishing a commit failed; subscribers will catch up");
            }
            // A staff change (role, disable) came with a security event:
            // tell open sessions now rather than at the next poll.
            if changes.iter().any(|c| c.table == Table::Staff) {
                revocations.poke();
            }
        }
        Err(e) => {
            tracing::error!(error = %e, pushes = batch.len(), "write transaction failed");
            metrics.commit_failed();
            for _ in &batch {
                metrics.push(PushCount::Failed);
            }
            let code = if e.retryable() {
                ErrorCode::Unavailable
            } else {
                ErrorCode::Internal
            };
            let message = match e {
                StorageError::Unavailable(_) => {
                    "the server's disk is full or failing; nothing was written, try again later"
                }
                _ => "the change could not be saved; nothing was written, try again",
            };
            for job in batch {
                let _ = job.reply.send(Err(ErrorBody::new(code, message)));
            }
        }
    }
}

/// Counts the pushes and mutations of a committed batch; `processed_before`
/// holds each push's client's last processed mutation id before it.
fn count_outcomes(
    metrics: &Metrics,
    results: &[Result<Vec<MutationResult>, PushRefused>],
    processed_before: &[u64],
) {
    let mut counts = [0u64; 4];
    for (result, before) in results.iter().zip(processed_before) {
        let Ok(results) = result else {
            metrics.push(PushCount::Refused);
            continue;
        };
        metrics.push(PushCount::Committed);
        for r in results {
            let how = match &r.outcome {
                MutationOutcome::Retry { .. } => MutationCount::Retry,
                // A processed id sent again with other contents is refused,
                // not answered as a duplicate.
                MutationOutcome::Rejected { rejection }
                    if rejection.code == RejectCode::MutationIdReused =>
                {
                    MutationCount::Rejected
                }
                _ if r.mutation_id <= *before => MutationCount::Duplicate,
                MutationOutcome::Applied { .. } => MutationCount::Applied,
                MutationOutcome::Rejected { .. } => MutationCount::Rejected,
            };
            counts[how as usize] += 1;
        }
    }
    for how in [
        MutationCount::Applied,
        MutationCount::Rejected,
        MutationCount::Duplicate,
        MutationCount::Retry,
    ] {
        metrics.mutations(how, counts[how as usize]);
    }
}
