//! The conflict rule, written once: whether an update based on an older
//! version may be applied on top of what others changed since.
//!
//! A field this update sets is a conflict when someone else (another client)
//! changed it after the base version and the value now differs from the one
//! this update writes. A whole-row write (a delete) conflicts with every
//! field someone else changed since the base version. Clinical fields are
//! flagged so that no front end merges them silently.
//!
//! The server evaluates it in its write transaction against its change log;
//! tests and tools that simulate a server use the same function.

use crate::apply::{ConflictCheck, PlanError, RowWrite};
use crate::model::Timestamp;
use crate::protocol::{FieldConflict, RejectCode, Rejection};
use crate::validate::{FieldCode, FieldError};
use serde_json::Value;
use uuid::Uuid;

/// One earlier change to a row, as the change log recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct PastChange {
    /// Sequence number.
    pub seq: u64,
    /// Client that made it (absent for server tools).
    pub client_id: Option<Uuid>,
    /// Who made it (absent for server tools).
    pub actor_id: Option<Uuid>,
    /// When the server applied it.
    pub at: Option<Timestamp>,
    /// Entity before.
    pub before: Option<Value>,
    /// Entity after.
    pub after: Value,
}

/// Rejects `write` when it conflicts with changes made by others since
/// `check.base_version`. `current_version` is the row's version now;
/// `since` reads the row's changes after the base version, and is only
/// called when the base version is behind.
pub fn check_conflicts<E>(
    write: &RowWrite,
    check: &ConflictCheck,
    current_version: u64,
    client_id: Uuid,
    since: impl FnOnce() -> Result<Vec<PastChange>, E>,
) -> Result<(), PlanError<E>> {
    if check.base_version > current_version {
        return Err(PlanError::Rejected(Rejection::validation(vec![
            FieldError::new(
                "base_version",
                FieldCode::StaleVersion,
                format!("is newer than the record's version {current_version}"),
            ),
        ])));
    }
    if check.base_version == current_version {
        return Ok(());
    }
    let since = since().map_err(PlanError::Source)?;
    let clinical = write.table.clinical_fields();
    let current = write.before.clone().unwrap_or(Value::Null);
    let by_others = || since.iter().filter(|c| c.client_id != Some(client_id));
    let mut conflicts = Vec::new();
    // The changes by others that touched a field, oldest first: the first
    // one's "before" is what the user saw, the last one says who and when.
    let touching = |field: &str| -> Vec<&PastChange> {
        by_others()
            .filter(|c| c.before.as_ref().and_then(|b| b.get(field)) != c.after.get(field))
            .collect()
    };
    let conflict = |field: &str, yours: Value, theirs: Value, touched: &[&PastChange]| {
        let last = touched.last();
        FieldConflict {
            field: field.to_owned(),
            yours,
            theirs,
            clinical: clinical.contains(&field),
            base: touched.first().map(|c| {
                c.before
                    .as_ref()
                    .and_then(|b| b.get(field))
                    .cloned()
                    .unwrap_or(Value::Null)
            }),
            changed_by: last.and_then(|c| c.actor_id),
            changed_at: last.and_then(|c| c.at),
        }
    };
    for (field, yours) in &check.fields {
        let touched = touching(field);
        let theirs = current.get(field).cloned().unwrap_or(Value::Null);
        if !touched.is_empty() && &theirs != yours {
            conflicts.push(conflict(field, yours.clone(), theirs, &touched));
        }
    }
    if check.whole_row {
        // Every field someone else changed since the base version.
        let mut changed: Vec<String> = Vec::new();
        for c in by_others() {
            if let Some(after) = c.after.as_object() {
                for (field, value) in after {
                    let before = c.before.as_ref().and_then(|b| b.get(field));
                    if before != Some(value) && !changed.contains(field) {
                        changed.push(field.clone());
                    }
                }
            }
        }
        for field in changed {
            let theirs = current.get(&field).cloned().unwrap_or(Value::Null);
            conflicts.push(conflict(&field, Value::Null, theirs, &touching(&field)));
        }
    }
    if conflicts.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = conflicts.iter().map(|c| c.field.as_str()).collect();
    Err(PlanError::Rejected(Rejection {
        code: RejectCode::Conflict,
        message: format!(
            "someone else changed {} of this {} since you opened it; review both versions",
            names.join(", "),
            write.table.as_str().trim_end_matches('s').replace('_', " ")
        ),
        fields: vec![],
        conflicts,
        detail: None,
    }))
}
