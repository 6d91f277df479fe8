//! Applying pushed mutations inside a write transaction: the server's
//! authority.
//!
//! For each mutation, in the client's order: a retry returns the stored
//! outcome and writes nothing (a "retry" whose contents differ from the
//! first push of that id is refused: see [`fingerprint`]); a gap in the ids defers the rest; otherwise,
//! in a savepoint, plan it (role, validation, clinic rules, from
//! `clinic_shared::apply`), check its fields for conflicts with changes made
//! by others since its base version, write the rows with fresh sequence
//! numbers and the audit entries, and store the outcome. A refused mutation
//! is rolled back to its savepoint alone, so a bad mutation never leaves a
//! half-written row and never blocks the good ones after it.

use crate::storage::{Change, ClientRecord, SecurityKind, StorageError, StorageResult, WriteTx};
use clinic_shared::apply::{
    self, ConflictCheck, CurrentRow, PlanError, RowSource, RowWrite, SlotCandidate,
};
use clinic_shared::conflict;
use clinic_shared::model::{Table, Timestamp};
use clinic_shared::mutation::{AccountEffect, Mutation, PendingMutation};
use clinic_shared::protocol::{
    Actor, ErrorBody, ErrorCode, MutationOutcome, MutationResult, RejectCode, Rejection,
};
use uuid::Uuid;

/// The fingerprint kept with a processed mutation: SHA-256 (hex) of its
/// canonical JSON (decoded and re-encoded with sorted keys, so spacing and
/// key order of the client's text do not matter). A new account's password
/// is left out: it is never stored, and a fast hash of it would be.
pub fn fingerprint(mutation: &Mutation) -> String {
    use sha2::{Digest, Sha256};
    fn sorted(value: serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<_> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(
                    entries.into_iter().map(|(k, v)| (k, sorted(v))).collect(),
                )
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.into_iter().map(sorted).collect())
            }
            other => other,
        }
    }
    let mut value = serde_json::to_value(mutation).unwrap_or(serde_json::Value::Null);
    if let Mutation::CreateStaff(_) = mutation
        && let Some(args) = value.get_mut("args").and_then(|a| a.as_object_mut())
    {
        args.remove("password");
    }
    let bytes = serde_json::to_vec(&sorted(value)).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// A mutation ready to apply, with anything the server prepared outside the
/// transaction (the password hash of a new account: hashing is slow and must
/// not hold the write lock).
#[derive(Debug, Clone)]
pub struct PreparedMutation {
    /// The mutation as pushed.
    pub pending: PendingMutation,
    /// Argon2id PHC hash for `create_staff`.
    pub password_hash: Option<String>,
}

/// The rows planning `mutation` reads by id: its target and the rows it
/// refers to (a hint for [`WriteTx::prefetch`]; missing some costs only a
/// query).
pub fn rows_read_by(mutation: &Mutation) -> Vec<(Table, Uuid)> {
    let mut keys = vec![mutation.target()];
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(mutation) {
        // Every mutation is `{"type": …, …fields}` or nests its fields one
        // level down: look at both.
        let mut refer = |map: &serde_json::Map<String, serde_json::Value>| {
            for (field, table) in [
                ("patient_id", Table::Patients),
                ("doctor_id", Table::Staff),
                ("invoice_id", Table::Invoices),
                ("appointment_id", Table::Appointments),
            ] {
                if let Some(id) = map
                    .get(field)
                    .and_then(|v| v.as_str())
                    .and_then(|s| Uuid::parse_str(s).ok())
                {
                    keys.push((table, id));
                }
            }
        };
        refer(&fields);
        for value in fields.values() {
            if let serde_json::Value::Object(inner) = value {
                refer(inner);
            }
        }
    }
    keys
}

/// Sequence numbers handed out within one write transaction.
#[derive(Debug)]
pub struct SeqAllocator {
    next: u64,
}

impl SeqAllocator {
    /// Starts after the transaction's current head.
    pub fn new(tx: &mut dyn WriteTx) -> StorageResult<Self> {
        Ok(SeqAllocator {
            next: tx.head()? + 1,
        })
    }
    /// The next sequence number.
    pub fn next_seq(&mut self) -> u64 {
        let seq = self.next;
        self.next += 1;
        seq
    }
}

/// Adapts a write transaction to the planner's read interface.
struct TxSource<'a>(&'a mut dyn WriteTx);

impl RowSource for TxSource<'_> {
    type Error = StorageError;
    fn row(&mut self, table: Table, id: Uuid) -> StorageResult<Option<CurrentRow>> {
        self.0.row(table, id)
    }
    fn appointments_starting_between(
        &mut self,
        doctor_id: Uuid,
        from: Timestamp,
        until: Timestamp,
    ) -> StorageResult<Vec<SlotCandidate>> {
        self.0.appointments_starting_between(doctor_id, from, until)
    }
    fn patient_appointments_starting_between(
        &mut self,
        patient_id: Uuid,
        from: Timestamp,
        until: Timestamp,
    ) -> StorageResult<Vec<SlotCandidate>> {
        self.0
            .patient_appointments_starting_between(patient_id, from, until)
    }
    fn staff_id_by_username(&mut self, username: &str) -> StorageResult<Option<Uuid>> {
        self.0.staff_id_by_username(username)
    }
}

/// Why a whole push is refused before any mutation is looked at.
#[derive(Debug)]
pub enum PushRefused {
    /// The client id belongs to another user.
    ForeignClient,
}

/// Applies one client's pushed mutations. Row changes are appended to
/// `changes` (to publish after commit). Returns one result per mutation.
pub fn apply_push(
    tx: &mut dyn WriteTx,
    seqs: &mut SeqAllocator,
    actor: &Actor,
    client_id: Uuid,
    mutations: &[PreparedMutation],
    now: Timestamp,
    changes: &mut Vec<Change>,
) -> StorageResult<Result<Vec<MutationResult>, PushRefused>> {
    let mut last = match tx.client(client_id)? {
        Some(c) if c.user_id != actor.user_id => return Ok(Err(PushRefused::ForeignClient)),
        Some(c) => c.last_mutation_id,
        None => 0,
    };
    let mut results = Vec::with_capacity(mutations.len());
    let mut processed_any = false;
    for prepared in mutations {
        let mutation_id = prepared.pending.mutation_id;
        if mutation_id == 0 {
            let error = ErrorBody::new(ErrorCode::InvalidField, "mutation ids start at 1")
                .with_field("mutation_id");
            results.push(MutationResult {
                mutation_id,
                outcome: MutationOutcome::Retry { error },
            });
            continue;
        }
        if mutation_id <= last {
            // A retry: answer as the first time, change nothing; unless it
            // is not the same change, which would be lost in silence.
            let outcome = match tx.stored_outcome(client_id, mutation_id)? {
                Some(stored)
                    if stored
                        .fingerprint
                        .as_deref()
                        .is_some_and(|first| first != fingerprint(&prepared.pending.mutation)) =>
                {
                    MutationOutcome::Rejected {
                        rejection: Rejection::new(
                            RejectCode::MutationIdReused,
                            format!(
                                "mutation {mutation_id} was already processed with different \
                                 contents; send a new change under a new mutation id"
                            ),
                        ),
                    }
                }
                Some(stored) => stored.outcome,
                None => MutationOutcome::Rejected {
                    rejection: Rejection::new(
                        RejectCode::RuleViolation,
                        format!(
                            "mutation {mutation_id} was processed long ago and its result is no longer kept"
                        ),
                    ),
                },
            };
            results.push(MutationResult {
                mutation_id,
                outcome,
            });
            continue;
        }
        // A restore takes the server back to before this client's latest
        // acknowledged mutations, which the client no longer holds: its
        // next pending one follows a gap that will never fill. Accepted once
        // per client in a restored database (PROTOCOL.md, restore).
        if mutation_id > last + 1 && tx.resume_after_restore(client_id)? {
            tracing::info!(
                client = %client_id,
                expected = last + 1,
                got = mutation_id,
                "a client resumed after a restore"
            );
            last = mutation_id - 1;
        }
        if mutation_id != last + 1 {
            let error = ErrorBody::new(
                ErrorCode::OutOfOrder,
                format!(
                    "expected mutation {} before mutation {mutation_id}",
                    last + 1
                ),
            )
            .with_field("mutation_id");
            results.push(MutationResult {
                mutation_id,
                outcome: MutationOutcome::Retry { error },
            });
            continue;
        }
        let outcome = apply_one(tx, seqs, actor, client_id, prepared, now, changes)?;
        tx.store_outcome(
            client_id,
            mutation_id,
            &outcome,
            &fingerprint(&prepared.pending.mutation),
        )?;
        results.push(MutationResult {
            mutation_id,
            outcome,
        });
        last = mutation_id;
        processed_any = true;
    }
    if processed_any {
        tx.set_client(
            client_id,
            ClientRecord {
                user_id: actor.user_id,
                last_mutation_id: last,
            },
        )?;
    }
    Ok(Ok(results))
}

fn apply_one(
    tx: &mut dyn WriteTx,
    seqs: &mut SeqAllocator,
    actor: &Actor,
    client_id: Uuid,
    prepared: &PreparedMutation,
    now: Timestamp,
    changes: &mut Vec<Change>,
) -> StorageResult<MutationOutcome> {
    let mutation = &prepared.pending.mutation;
    tx.savepoint()?;
    let changes_before = changes.len();
    let next_before = seqs.next;
    match write_mutation(tx, seqs, actor, client_id, prepared, now, changes) {
        Ok(seq) => {
            tx.release_savepoint()?;
            Ok(MutationOutcome::Applied { seq })
        }
        Err(PlanError::Rejected(rejection)) => {
            tx.rollback_to_savepoint()?;
            changes.truncate(changes_before);
            seqs.next = next_before;
            tracing::info!(
                mutation = mutation.kind(),
                mutation_id = prepared.pending.mutation_id,
                %client_id,
                code = ?rejection.code,
                "mutation rejected"
            );
            Ok(MutationOutcome::Rejected { rejection })
        }
        Err(PlanError::Source(e)) => {
            // The whole transaction is abandoned by the caller.
            Err(e)
        }
    }
}

fn write_mutation(
    tx: &mut dyn WriteTx,
    seqs: &mut SeqAllocator,
    actor: &Actor,
    client_id: Uuid,
    prepared: &PreparedMutation,
    now: Timestamp,
    changes: &mut Vec<Change>,
) -> Result<u64, PlanError<StorageError>> {
    let mutation = &prepared.pending.mutation;
    let writes = apply::plan(mutation, actor, now, &mut TxSource(tx))?;
    for write in &writes {
        if let Some(check) = &write.conflict_check {
            check_conflicts(tx, write, check, client_id)?;
        }
    }
    let mut last_seq = 0;
    for write in writes {
        let change = Change {
            seq: seqs.next_seq(),
            table: write.table,
            id: write.id,
            action: write.action,
            before: write.before,
            after: write.after,
            actor_id: Some(actor.user_id),
            client_id: Some(client_id),
            mutation_id: Some(prepared.pending.mutation_id),
            // An admin's correction in the past is named as such.
            mutation: mutation.audit_name().to_owned(),
            at: now,
        };
        tx.put(&change).map_err(PlanError::Source)?;
        last_seq = change.seq;
        changes.push(change);
    }
    match mutation.account_effect() {
        Some(AccountEffect::Created { user }) => {
            let Some(hash) = &prepared.password_hash else {
                return Err(PlanError::Rejected(Rejection::new(
                    RejectCode::Validation,
                    "the new account has no password",
                )));
            };
            tx.set_password_hash(user, hash)
                .map_err(PlanError::Source)?;
        }
        // Every open session of the account must re-check itself: record
        // the security event (and raise the epoch) in this transaction.
        Some(AccountEffect::Disabled { user }) => {
            tx.delete_sessions_of(user).map_err(PlanError::Source)?;
            tx.record_security_event(user, SecurityKind::Disabled, None, now)
                .map_err(PlanError::Source)?;
        }
        Some(AccountEffect::Enabled { user }) => {
            tx.record_security_event(user, SecurityKind::Enabled, None, now)
                .map_err(PlanError::Source)?;
        }
        Some(AccountEffect::RoleChanged { user }) => {
            tx.record_security_event(user, SecurityKind::RoleChanged, None, now)
                .map_err(PlanError::Source)?;
        }
        None => {}
    }
    Ok(last_seq)
}

/// Applies the shared conflict rule to `write`, reading the row's change
/// log only when its base version is behind.
fn check_conflicts(
    tx: &mut dyn WriteTx,
    write: &RowWrite,
    check: &ConflictCheck,
    client_id: Uuid,
) -> Result<(), PlanError<StorageError>> {
    let current_version = match tx.row(write.table, write.id).map_err(PlanError::Source)? {
        Some(row) => row.version,
        None => 0,
    };
    conflict::check_conflicts(write, check, current_version, client_id, || {
        tx.changes_to_row_since(write.table, write.id, check.base_version)
    })
}
