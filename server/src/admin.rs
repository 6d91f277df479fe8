//! Server-side tools that write without a client: the `clinic-server user`
//! commands and the demo seeder. Their changes go through the same change
//! log and audit trail as mutations (actor absent, the tool's name as the
//! mutation), so every client syncs them and history shows them; a running
//! server publishes them within `Config::external_poll`.

use crate::Clock;
use crate::auth;
use crate::engine::SeqAllocator;
use crate::storage::{Change, Storage, StorageError};
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
    let mut errors = Errors::new();
    validate::password("password", password, &mut errors);
    errors.finish().map_err(AdminError::Invalid)?;
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

/// Changes an account by username with `change`, writing it as a tool change.
fn change_user(
    storage: &dyn Storage,
    username: &str,
    clock: &Clock,
    change: impl FnOnce(&mut Staff),
) -> Result<Staff, AdminError> {
    let (mut staff, _) = storage
        .staff_by_username(&username.trim().to_lowercase())?
        .ok_or_else(|| AdminError::UnknownUser(username.to_owned()))?;
    change(&mut staff);
    let row = ToolWrite {
        table: Table::Staff,
        id: staff.id,
        data: to_value(&staff),
    };
    write_rows(storage, "admin_cli", &[row], &[], clock)?;
    Ok(staff)
}

/// Disables (or re-enables) an account; disabling ends its sessions.
pub fn set_active(
    storage: &dyn Storage,
    username: &str,
    active: bool,
    clock: &Clock,
) -> Result<Staff, AdminError> {
    let staff = change_user(storage, username, clock, |s| s.active = active)?;
    if !active {
        storage.write(&mut |tx| tx.delete_sessions_of(staff.id))?;
    }
    Ok(staff)
}

/// Changes an account's role.
pub fn set_role(
    storage: &dyn Storage,
    username: &str,
    role: Role,
    clock: &Clock,
) -> Result<Staff, AdminError> {
    change_user(storage, username, clock, |s| s.role = role)
}

/// Sets a new password for an account.
pub fn set_password(
    storage: &dyn Storage,
    username: &str,
    password: &str,
) -> Result<Staff, AdminError> {
    let (staff, _) = storage
        .staff_by_username(&username.trim().to_lowercase())?
        .ok_or_else(|| AdminError::UnknownUser(username.to_owned()))?;
    let mut errors = Errors::new();
    validate::password("password", password, &mut errors);
    errors.finish().map_err(AdminError::Invalid)?;
    let hash = auth::hash_password(password)?;
    storage.write(&mut |tx| {
        tx.set_password_hash(staff.id, &hash)?;
        tx.delete_sessions_of(staff.id)
    })?;
    Ok(staff)
}
