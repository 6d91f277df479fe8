//! Server-side tools that write without a client: the `clinic-server user`
//! commands and the demo seeder. Their changes go through the same change
//! log and audit trail as mutations (actor absent, the tool's name as the
//! mutation), so every client syncs them and history shows them; a running
//! server publishes them within `Config::external_poll`. Changes to an
//! account's access (disable, role, password, ending sessions) also record a
//! security event in the same transaction, which every running server
//! notices within `Config::security_poll` and applies to the account's open
//! connections.

use crate::Clock;
use crate::auth;
use crate::engine::SeqAllocator;
use crate::storage::{Change, SecurityKind, Storage, StorageError};
use clinic_shared::apply::Action;
use clinic_shared::model::{Role, Staff, Table};
use clinic_shared::validate::{self, Errors, FieldError};
use serde_json::Value;
use uuid::Uuid;

/// A tool's write failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Invalid input; names the fields.
    #[error("invalid {}", .0.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    /// No such user.
    #[error("no user named `{0}`")]
    UnknownUser(String),
    /// The username is taken.
    #[error("username `{0}` is taken")]
    UsernameTaken(String),
    /// Password hashing failed.
    #[error(transparent)]
    Hash(#[from] auth::HashError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl AdminError {
    /// Whether the same command may succeed if run again (the database
    /// was busy).
    pub fn retryable(&self) -> bool {
        matches!(self, AdminError::Storage(e) if e.retryable())
    }
}

/// One row a tool writes.
pub struct ToolWrite {
    /// Table.
    pub table: Table,
    /// Row id.
    pub id: Uuid,
    /// The entity.
    pub data: Value,
}

/// Writes rows (creating or replacing them) and password hashes in one
/// transaction, logged as changes by `tool`. Returns the head after it.
pub fn write_rows(
    storage: &dyn Storage,
    tool: &str,
    rows: &[ToolWrite],
    passwords: &[(Uuid, String)],
    clock: &Clock,
) -> Result<u64, StorageError> {
    Ok(write_rows_when(storage, tool, rows, passwords, clock, false)?.unwrap_or(0))
}

/// Like [`write_rows`], but writes nothing and returns `None` if the store
/// already holds changes. Decided inside the write transaction, so that
/// several servers starting at once on one database seed it once.
pub fn write_rows_into_empty(
    storage: &dyn Storage,
    tool: &str,
    rows: &[ToolWrite],
    passwords: &[(Uuid, String)],
    clock: &Clock,
) -> Result<Option<u64>, StorageError> {
    write_rows_when(storage, tool, rows, passwords, clock, true)
}

fn write_rows_when(
    storage: &dyn Storage,
    tool: &str,
    rows: &[ToolWrite],
    passwords: &[(Uuid, String)],
    clock: &Clock,
    only_into_empty: bool,
) -> Result<Option<u64>, StorageError> {
    let now = clock();
    let mut head = None;
    storage.write(&mut |tx| {
        head = None;
        if only_into_empty && tx.head()? > 0 {
            return Ok(());
        }
        let mut seqs = SeqAllocator::new(tx)?;
        let mut last = 0;
        for w in rows {
            let before = tx.row(w.table, w.id)?;
            let change = Change {
                seq: seqs.next_seq(),
                table: w.table,
                id: w.id,
                action: if before.is_some() {
                    Action::Update
                } else {
                    Action::Create
                },
                before: before.map(|b| b.data),
                after: w.data.clone(),
                actor_id: None,
                client_id: None,
                mutation_id: None,
                mutation: tool.to_owned(),
                at: now,
            };
            tx.put(&change)?;
            last = change.seq;
        }
        for (user, hash) in passwords {
            tx.set_password_hash(*user, hash)?;
        }
        head = Some(last);
        Ok(())
    })?;
    Ok(head)
}

fn to_value(staff: &Staff) -> Value {
    serde_json::to_value(staff).unwrap_or(Value::Null)
}

/// Adds a staff account.
pub fn add_user(
    storage: &dyn Storage,
    username: &str,
    display_name: &str,
    role: Role,
    password: &str,
    clock: &Clock,
) -> Result<Staff, AdminError> {
    let staff = Staff {
        id: Uuid::now_v7(),
        username: username.trim().to_lowercase(),
        display_name: display_name.trim().to_owned(),
        role,
        active: true,
    };
    check_new_password("password", password)?;
    validate::staff(&staff).map_err(AdminError::Invalid)?;
    if storage.staff_by_username(&staff.username)?.is_some() {
        return Err(AdminError::UsernameTaken(staff.username));
    }
    let hash = auth::hash_password(password)?;
    let row = ToolWrite {
        table: Table::Staff,
        id: staff.id,
        data: to_value(&staff),
    };
    write_rows(storage, "admin_cli", &[row], &[(staff.id, hash)], clock)?;
    Ok(staff)
}

/// Finds an account by username.
fn find(storage: &dyn Storage, username: &str) -> Result<Staff, AdminError> {
    storage
        .staff_by_username(&username.trim().to_lowercase())?
        .map(|(staff, _)| staff)
        .ok_or_else(|| AdminError::UnknownUser(username.to_owned()))
}

/// Changes an account by username with `change`, writing the staff row as a
/// tool change and the security event `kind` in one transaction (ending
/// every session first when `end_sessions`).
fn change_user(
    storage: &dyn Storage,
    username: &str,
    clock: &Clock,
    kind: SecurityKind,
    end_sessions: bool,
    change: impl FnOnce(&mut Staff),
) -> Result<Staff, AdminError> {
    let mut staff = find(storage, username)?;
    change(&mut staff);
    let now = clock();
    let data = to_value(&staff);
    storage.write(&mut |tx| {
        let mut seqs = SeqAllocator::new(tx)?;
        let before = tx.row(Table::Staff, staff.id)?;
        tx.put(&Change {
            seq: seqs.next_seq(),
            table: Table::Staff,
            id: staff.id,
            action: Action::Update,
            before: before.map(|b| b.data),
            after: data.clone(),
            actor_id: None,
            client_id: None,
            mutation_id: None,
            mutation: "admin_cli".to_owned(),
            at: now,
        })?;
        if end_sessions {
            tx.delete_sessions_of(staff.id)?;
        }
        tx.record_security_event(staff.id, kind, None, now)
            .map(|_| ())
    })?;
    Ok(staff)
}

/// Disables (or re-enables) an account; disabling ends its sessions. Open
/// connections of the account close within `Config::security_poll`.
pub fn set_active(
    storage: &dyn Storage,
    username: &str,
    active: bool,
    clock: &Clock,
) -> Result<Staff, AdminError> {
    let kind = if active {
        SecurityKind::Enabled
    } else {
        SecurityKind::Disabled
    };
    change_user(storage, username, clock, kind, !active, |s| {
        s.active = active
    })
}

/// Changes an account's role. Open connections of the account learn of it
/// within `Config::security_poll` (WebSockets close; long-polls answer with
/// the new role).
pub fn set_role(
    storage: &dyn Storage,
    username: &str,
    role: Role,
    clock: &Clock,
) -> Result<Staff, AdminError> {
    change_user(
        storage,
        username,
        clock,
        SecurityKind::RoleChanged,
        false,
        |s| s.role = role,
    )
}

/// What ending sessions did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// Sessions ended.
    pub sessions: u64,
    /// The account's epoch after it.
    pub epoch: u64,
}

/// Ends every session of an account ("sign out everywhere").
pub fn end_sessions(
    storage: &dyn Storage,
    user_id: Uuid,
    clock: &Clock,
) -> Result<Ended, AdminError> {
    let now = clock();
    let mut ended = Ended {
        sessions: 0,
        epoch: 0,
    };
    storage.write(&mut |tx| {
        ended.sessions = tx.count_sessions_of(user_id)?;
        tx.delete_sessions_of(user_id)?;
        ended.epoch = tx
            .record_security_event(user_id, SecurityKind::SessionsEnded, None, now)?
            .epoch;
        Ok(())
    })?;
    Ok(ended)
}

/// Ends every session of the account named `username`.
pub fn end_sessions_of(
    storage: &dyn Storage,
    username: &str,
    clock: &Clock,
) -> Result<(Staff, Ended), AdminError> {
    let staff = find(storage, username)?;
    let ended = end_sessions(storage, staff.id, clock)?;
    Ok((staff, ended))
}

/// Validates a new password against the policy, naming `field`.
pub fn check_new_password(field: &str, password: &str) -> Result<(), AdminError> {
    let mut errors = Errors::new();
    validate::password(field, password, &mut errors);
    errors.finish().map_err(AdminError::Invalid)
}

/// An administrator's reset: stores the new password `hash`, ends every
/// session and marks the account "must change password" at its next
/// sign-in.
pub fn reset_password(
    storage: &dyn Storage,
    user_id: Uuid,
    hash: &str,
    clock: &Clock,
) -> Result<Ended, AdminError> {
    let now = clock();
    let mut ended = Ended {
        sessions: 0,
        epoch: 0,
    };
    storage.write(&mut |tx| {
        tx.set_password_hash(user_id, hash)?;
        tx.set_must_change_password(user_id, true)?;
        ended.sessions = tx.count_sessions_of(user_id)?;
        tx.delete_sessions_of(user_id)?;
        ended.epoch = tx
            .record_security_event(user_id, SecurityKind::PasswordReset, None, now)?
            .epoch;
        Ok(())
    })?;
    Ok(ended)
}

/// Sets a new password for an account (`clinic-server user set-password`):
/// an administrator's reset, so the account must change it at its next
/// sign-in, and every session ends.
pub fn set_password(
    storage: &dyn Storage,
    username: &str,
    password: &str,
    clock: &Clock,
) -> Result<Staff, AdminError> {
    let staff = find(storage, username)?;
    check_new_password("password", password)?;
    let hash = auth::hash_password(password)?;
    reset_password(storage, staff.id, &hash, clock)?;
    Ok(staff)
}
