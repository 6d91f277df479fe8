//! The storage contract as executable checks. Every backend's tests call
//! [`run_all`] with a factory for fresh, empty stores, and [`run_shared`]
//! with a factory for more handles on one store (what other processes on
//! the same database are); a new backend is done when these pass unchanged.

use super::{Change, ClientRecord, Session, Signal, Storage, StorageError};
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
    // A prefetch changes no answer, before or after writes in the same
    // transaction, and after a savepoint rolls one back.
    let keys = [
        (Table::Patients, a),
        (Table::Patients, b),
        (Table::Appointments, b),
    ];
    let mut seen = Vec::new();
    st(s.write(&mut |tx| {
        tx.prefetch(&keys, &[Uuid::now_v7()])?;
        let before: Vec<bool> = keys
            .iter()
            .map(|(t, i)| tx.row(*t, *i).map(|r| r.is_some()))
            .collect::<Result<_, _>>()?;
        tx.savepoint()?;
        let head = tx.head()?;
        tx.put(&change(head + 1, Table::Patients, b, json!({"late": true})))?;
        let during = tx.row(Table::Patients, b)?.map(|r| r.data);
        tx.rollback_to_savepoint()?;
        let after = tx.row(Table::Patients, b)?.is_some();
        seen = vec![json!(before), json!(during), json!(after)];
        Err(StorageError::Database("look only".into()))
    }))
    .err();
    check!(
        seen == [
            json!([true, false, true]),
            json!({"late": true}),
            json!(false)
        ],
        "prefetched reads answer as unprefetched ones: {seen:?}"
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
    st(s.create_session(
        "h4",
        &Session {
            user_id: Uuid::now_v7(),
            expires_at: t(100),
        },
    ))?;
    st(s.write(&mut |tx| tx.delete_sessions_of(user)))?;
    check!(st(s.session("h3"))?.is_none(), "all sessions of a user end");
    let mut existing = st(s.existing_sessions(&["h3".into(), "h4".into(), "h1".into()]))?;
    existing.sort();
    check!(
        existing == ["h4"],
        "existing_sessions names only live sessions: {existing:?}"
    );
    check!(
        st(s.existing_sessions(&[]))?.is_empty(),
        "existing_sessions of none is none"
    );
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

/// Writers per [`run_shared`] check.
const SHARED_WRITERS: u64 = 3;
/// Writes per writer.
const SHARED_WRITES: u64 = 40;

/// Runs the checks that need several handles on one store: `open` returns
/// a new handle on the same (initially empty) database each call, as
/// another process would open it.
pub fn run_shared(open: &(dyn Fn() -> Box<dyn Storage> + Sync)) -> Result<(), Failed> {
    concurrent_writers_serialize(open)?;
    wake_ups_from_other_handles(open)?;
    Ok(())
}

/// Writers on separate handles each read a counter and write it + 1 with
/// the next sequence number; a reader on another handle tails the sequence
/// meanwhile. Every increment must survive (each write saw the one before),
/// and the tail must see every number, in order, none skipped.
fn concurrent_writers_serialize(
    open: &(dyn Fn() -> Box<dyn Storage> + Sync),
) -> Result<(), Failed> {
    let counter = Uuid::now_v7();
    let total = SHARED_WRITERS * SHARED_WRITES;
    let tail: Result<Vec<u64>, Failed> = std::thread::scope(|scope| {
        let mut writers = Vec::new();
        for w in 0..SHARED_WRITERS {
            writers.push(scope.spawn(move || -> Result<(), Failed> {
                let s = open();
                for i in 0..SHARED_WRITES {
                    st(s.write(&mut |tx| {
                        let head = tx.head()?;
                        let current = tx.row(Table::InventoryItems, counter)?;
                        let n = current
                            .as_ref()
                            .and_then(|r| r.data.get("n"))
                            .and_then(|n| n.as_u64())
                            .unwrap_or(0);
                        let mut c = change(
                            head + 1,
                            Table::InventoryItems,
                            counter,
                            json!({"n": n + 1, "by": w, "i": i}),
                        );
                        if let Some(r) = current {
                            c.action = Action::Update;
                            c.before = Some(r.data);
                        }
                        tx.put(&c)
                    }))?;
                }
                Ok(())
            }));
        }
        let reader = scope.spawn(move || -> Result<Vec<u64>, Failed> {
            let s = open();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            let mut seen = Vec::new();
            let mut last = 0;
            while last < total {
                check!(
                    std::time::Instant::now() < deadline,
                    "the tail reader saw only {last} of {total} changes in time"
                );
                let head = st(s.head())?;
                check!(head >= last, "the head went back from {last} to {head}");
                for c in st(s.committed_between(last, head))? {
                    seen.push(c.seq);
                }
                check!(
                    seen.len() as u64 == head,
                    "a reader at head {head} got {} changes: a committed change was skipped or not yet visible below the head",
                    seen.len()
                );
                last = head;
                std::thread::yield_now();
            }
            Ok(seen)
        });
        for w in writers {
            w.join().map_err(|_| Failed("a writer panicked".into()))??;
        }
        reader
            .join()
            .map_err(|_| Failed("the reader panicked".into()))?
    });
    let tail = tail?;
    check!(
        tail == (1..=total).collect::<Vec<_>>(),
        "the tail saw the sequence out of order or with gaps"
    );
    let s = open();
    check!(
        st(s.head())? == total,
        "head is {total} after {total} writes"
    );
    let mut n = None;
    st(s.write(&mut |tx| {
        n = tx
            .row(Table::InventoryItems, counter)?
            .and_then(|r| r.data.get("n").and_then(|n| n.as_u64()));
        Ok(())
    }))?;
    check!(
        n == Some(total),
        "every increment survives concurrent writers: counter {n:?}, expected {total}"
    );
    let page = st(s.changes_page(&[Table::InventoryItems], 0, 10, None))?;
    check!(
        page.rows.len() == 1 && page.rows[0].version == total && page.cursor == total,
        "the row's version is the last change"
    );
    Ok(())
}

/// A backend that can wake (`watch` gives `Some`) wakes a handle for a
/// commit and for ended sessions made through another handle.
fn wake_ups_from_other_handles(open: &(dyn Fn() -> Box<dyn Storage> + Sync)) -> Result<(), Failed> {
    let (a, b) = (open(), open());
    let (tx, rx) = std::sync::mpsc::channel::<Signal>();
    let tx = std::sync::Mutex::new(tx);
    let watching = st(a.watch(std::sync::Arc::new(move |signal| {
        let _ = tx.lock().map(|t| t.send(signal));
    })))?;
    let Some(watching) = watching else {
        return Ok(()); // This backend cannot wake; servers poll it.
    };
    // The watcher wakes once for each kind when it (re)connects.
    let limit = std::time::Duration::from_secs(10);
    let wait_for = |want: Signal, what: &str| -> Result<(), Failed> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(s) if s == want => return Ok(()),
                Ok(_) => continue,
                Err(_) => {
                    return Err(Failed(format!(
                        "no {want:?} wake-up {what} within {limit:?}"
                    )));
                }
            }
        }
    };
    let connected_by = std::time::Instant::now() + limit;
    while !watching.connected() {
        check!(
            std::time::Instant::now() < connected_by,
            "the watcher never connected"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    while rx.try_recv().is_ok() {}
    let head = st(b.head())?;
    st(b.write(&mut |tx| {
        tx.put(&change(
            head + 1,
            Table::Patients,
            Uuid::now_v7(),
            json!({}),
        ))
    }))?;
    wait_for(Signal::Commits, "after another handle's commit")?;
    let user = Uuid::now_v7();
    st(b.create_session(
        "w1",
        &Session {
            user_id: user,
            expires_at: t(100),
        },
    ))?;
    while rx.try_recv().is_ok() {}
    st(b.delete_session("w1"))?;
    wait_for(Signal::Sessions, "after another handle's sign-out")?;
    st(b.create_session(
        "w2",
        &Session {
            user_id: user,
            expires_at: t(100),
        },
    ))?;
    while rx.try_recv().is_ok() {}
    st(b.write(&mut |tx| tx.delete_sessions_of(user)))?;
    wait_for(
        Signal::Sessions,
        "after another handle ended a user's sessions",
    )?;
    drop(watching);
    Ok(())
}
