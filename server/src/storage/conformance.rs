//! The storage contract as executable checks. Every backend's tests call
//! [`run_all`] with a factory for fresh, empty stores; a new backend is
//! done when these pass unchanged.

use super::{Change, ClientRecord, Session, Storage, StorageError};
use clinic_shared::apply::Action;
use clinic_shared::model::{Table, Timestamp};
use clinic_shared::protocol::{MutationOutcome, RejectCode, Rejection};
use serde_json::json;
use uuid::Uuid;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix(1_800_000_000 + secs).unwrap_or_else(unreachable_time)
}

fn unreachable_time() -> Timestamp {
    Timestamp::from_datetime(chrono::Utc::now())
}

fn change(seq: u64, table: Table, id: Uuid, data: serde_json::Value) -> Change {
    Change {
        seq,
        table,
        id,
        action: Action::Create,
        before: None,
        after: data,
        actor_id: None,
        client_id: None,
        mutation_id: None,
        mutation: "conformance".into(),
        at: t(seq as i64),
    }
}

/// A failed check.
#[derive(Debug)]
pub struct Failed(pub String);

macro_rules! check {
    ($cond:expr, $($msg:tt)*) => {
        if !$cond { return Err(Failed(format!($($msg)*))); }
    };
}

fn st<T>(r: Result<T, StorageError>) -> Result<T, Failed> {
    r.map_err(|e| Failed(format!("storage error: {e}")))
}

/// Runs every check against fresh stores from `fresh`.
pub fn run_all(fresh: &dyn Fn() -> Box<dyn Storage>) -> Result<(), Failed> {
    commit_and_rollback(fresh().as_ref())?;
    savepoints(fresh().as_ref())?;
    pages_filter_and_resume(fresh().as_ref())?;
    clients_and_outcomes(fresh().as_ref())?;
    sessions(fresh().as_ref())?;
    history_and_committed(fresh().as_ref())?;
    Ok(())
}

fn commit_and_rollback(s: &dyn Storage) -> Result<(), Failed> {
    check!(st(s.head())? == 0, "a new store has head 0");
    let a = Uuid::now_v7();
    st(s.write(&mut |tx| tx.put(&change(1, Table::Patients, a, json!({"n": 1})))))?;
    check!(st(s.head())? == 1, "head follows a commit");
    let failed = s.write(&mut |tx| {
        tx.put(&change(2, Table::Patients, Uuid::now_v7(), json!({})))?;
        Err(StorageError::Database("abandon".into()))
    });
    check!(failed.is_err(), "an erroring write reports the error");
    check!(
        st(s.head())? == 1,
        "an abandoned write leaves nothing behind"
    );
    Ok(())
}

fn savepoints(s: &dyn Storage) -> Result<(), Failed> {
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    st(s.write(&mut |tx| {
        tx.put(&change(1, Table::Patients, a, json!({})))?;
        tx.savepoint()?;
        tx.put(&change(2, Table::Patients, b, json!({})))?;
        tx.rollback_to_savepoint()?;
        tx.savepoint()?;
        tx.put(&change(2, Table::Appointments, b, json!({})))?;
        tx.release_savepoint()
    }))?;
    let mut seen = Vec::new();
    st(s.write(&mut |tx| {
        seen = vec![
            tx.row(Table::Patients, a)?.is_some(),
            tx.row(Table::Patients, b)?.is_some(),
            tx.row(Table::Appointments, b)?.is_some(),
        ];
        Ok(())
    }))?;
    check!(
        seen == [true, false, true],
        "savepoint rollback undoes only its part: {seen:?}"
    );
    Ok(())
}

fn pages_filter_and_resume(s: &dyn Storage) -> Result<(), Failed> {
    let ids: Vec<Uuid> = (0..10).map(|_| Uuid::now_v7()).collect();
    st(s.write(&mut |tx| {
        for (i, id) in ids.iter().enumerate() {
            let table = if i % 2 == 0 {
                Table::Patients
            } else {
                Table::TreatmentRecords
            };
            tx.put(&change(i as u64 + 1, table, *id, json!({"i": i})))?;
        }
        Ok(())
    }))?;
    let client = Uuid::now_v7();
    st(s.write(&mut |tx| {
        tx.set_client(
            client,
            ClientRecord {
                user_id: Uuid::nil(),
                last_mutation_id: 7,
            },
        )
    }))?;
    let page = st(s.changes_page(&[Table::Patients], 0, 3, Some(client)))?;
    check!(
        page.rows.len() == 3 && page.more,
        "first page has 3 rows and more"
    );
    check!(
        page.rows.iter().all(|r| r.table == Table::Patients),
        "only requested tables"
    );
    check!(
        page.cursor == 5,
        "cursor is the last row's version when more: {}",
        page.cursor
    );
    check!(page.last_mutation_id.is_none(), "no ack before caught up");
    let rest = st(s.changes_page(&[Table::Patients], page.cursor, 3, Some(client)))?;
    check!(
        rest.rows.len() == 2 && !rest.more,
        "second page has the rest"
    );
    check!(
        rest.cursor == 10,
        "when caught up the cursor is the head, past invisible rows"
    );
    check!(rest.last_mutation_id == Some(7), "ack when caught up");
    let versions: Vec<u64> = page
        .rows
        .iter()
        .chain(&rest.rows)
        .map(|r| r.version)
        .collect();
    check!(
        versions == [1, 3, 5, 7, 9],
        "rows in version order: {versions:?}"
    );
    let none = st(s.changes_page(&[], 0, 3, None))?;
    check!(
        none.rows.is_empty() && none.cursor == 10,
        "no tables, no rows, cursor advances"
    );
    // A tombstone travels without data.
    st(s.write(&mut |tx| {
        let mut del = change(11, Table::Patients, ids[0], json!({"i": 0}));
        del.action = Action::Delete;
        tx.put(&del)
    }))?;
    let del = st(s.changes_page(&[Table::Patients], 10, 10, None))?;
    check!(
        del.rows.len() == 1 && del.rows[0].deleted && del.rows[0].data.is_none(),
        "tombstone without data"
    );
    Ok(())
}

fn clients_and_outcomes(s: &dyn Storage) -> Result<(), Failed> {
    let (client, user) = (Uuid::now_v7(), Uuid::now_v7());
    check!(st(s.client(client))?.is_none(), "unknown client");
    let outcome = MutationOutcome::Rejected {
        rejection: Rejection::new(RejectCode::Conflict, "x"),
    };
    st(s.write(&mut |tx| {
        tx.set_client(
            client,
            ClientRecord {
                user_id: user,
                last_mutation_id: 1,
            },
        )?;
        tx.store_outcome(client, 1, &outcome)
    }))?;
    let rec = st(s.client(client))?;
    check!(
        rec == Some(ClientRecord {
            user_id: user,
            last_mutation_id: 1
        }),
        "client stored: {rec:?}"
    );
    let mut stored = None;
    st(s.write(&mut |tx| {
        stored = tx.stored_outcome(client, 1)?;
        tx.set_client(
            client,
            ClientRecord {
                user_id: user,
                last_mutation_id: 2,
            },
        )
    }))?;
    check!(stored == Some(outcome), "outcome stored");
    check!(
        st(s.client(client))?.map(|c| c.last_mutation_id) == Some(2),
        "client advanced"
    );
    Ok(())
}

fn sessions(s: &dyn Storage) -> Result<(), Failed> {
    let user = Uuid::now_v7();
    st(s.create_session(
        "h1",
        &Session {
            user_id: user,
            expires_at: t(100),
        },
    ))?;
    st(s.create_session(
        "h2",
        &Session {
            user_id: user,
            expires_at: t(10),
        },
    ))?;
    check!(
        st(s.session("h1"))?.map(|x| x.user_id) == Some(user),
        "session found"
    );
    check!(
        st(s.purge_expired_sessions(t(50)))? == 1,
        "one expired session purged"
    );
    check!(st(s.session("h2"))?.is_none(), "expired gone");
    st(s.delete_session("h1"))?;
    check!(st(s.session("h1"))?.is_none(), "deleted gone");
    st(s.create_session(
        "h3",
        &Session {
            user_id: user,
            expires_at: t(100),
        },
    ))?;
    st(s.write(&mut |tx| tx.delete_sessions_of(user)))?;
    check!(st(s.session("h3"))?.is_none(), "all sessions of a user end");
    Ok(())
}

fn history_and_committed(s: &dyn Storage) -> Result<(), Failed> {
    let id = Uuid::now_v7();
    let client = Uuid::now_v7();
    st(s.write(&mut |tx| {
        tx.put(&change(1, Table::Patients, id, json!({"v": 1})))?;
        let mut upd = change(2, Table::Patients, id, json!({"v": 2}));
        upd.action = Action::Update;
        upd.before = Some(json!({"v": 1}));
        upd.client_id = Some(client);
        upd.mutation_id = Some(4);
        tx.put(&upd)
    }))?;
    let h = st(s.history(Table::Patients, id))?;
    check!(
        h.len() == 2 && h[0].seq == 1 && h[1].seq == 2,
        "history oldest first"
    );
    check!(
        h[1].before == Some(json!({"v": 1})) && h[1].after == Some(json!({"v": 2})),
        "before/after kept"
    );
    let mut since = Vec::new();
    st(s.write(&mut |tx| {
        since = tx.changes_to_row_since(Table::Patients, id, 1)?;
        Ok(())
    }))?;
    check!(
        since.len() == 1 && since[0].client_id == Some(client),
        "changes since a version"
    );
    let committed = st(s.committed_between(0, 2))?;
    check!(
        committed.len() == 2 && committed[1].mutation_id == Some(4),
        "committed changes in order"
    );
    Ok(())
}
