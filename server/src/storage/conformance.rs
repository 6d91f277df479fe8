//! The storage contract as executable checks. Every backend's tests call
//! [`run_all`] with a factory for fresh, empty stores; a new backend is
//! done when these pass unchanged.

use super::{
    Change, ClientRecord, NewAccess, NewSignInEvent, SecurityKind, Session, Storage, StorageError,
    Throttle, chain,
};
use clinic_shared::apply::Action;
use clinic_shared::model::{Role, Staff, Table, Timestamp};
use clinic_shared::protocol::{
    AccessKind, MutationOutcome, RejectCode, Rejection, SignInKind, SignInOutcome,
};
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
    session_accounts_and_epochs(fresh().as_ref())?;
    security_events(fresh().as_ref())?;
    throttles_and_sign_in_log(fresh().as_ref())?;
    access_log_chain(fresh().as_ref())?;
    change_log_chain(fresh().as_ref())?;
    appointment_ranges(fresh().as_ref())?;
    Ok(())
}

/// The two range scans behind the clinic rules: a doctor's appointments
/// and a patient's, by start, live rows only, any status.
fn appointment_ranges(s: &dyn Storage) -> Result<(), Failed> {
    let (doctor, other_doctor, patient, other_patient) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let appt = |start: &str, doctor: Uuid, patient: Uuid, status: &str| {
        json!({"id": Uuid::now_v7(), "patient_id": patient, "doctor_id": doctor,
               "start": start, "end": start, "status": status, "reason": null})
    };
    let rows = [
        (
            Uuid::now_v7(),
            appt("2031-03-03T09:00:00Z", doctor, patient, "scheduled"),
        ),
        (
            Uuid::now_v7(),
            appt("2031-03-03T10:00:00Z", other_doctor, patient, "cancelled"),
        ),
        (
            Uuid::now_v7(),
            appt("2031-03-03T11:00:00Z", doctor, other_patient, "scheduled"),
        ),
        (
            Uuid::now_v7(),
            appt("2031-03-04T09:00:00Z", other_doctor, patient, "scheduled"),
        ),
        (
            Uuid::now_v7(),
            appt("2031-03-03T09:30:00Z", other_doctor, patient, "scheduled"),
        ),
    ];
    st(s.write(&mut |tx| {
        for (i, (id, data)) in rows.iter().enumerate() {
            tx.put(&change(
                i as u64 + 1,
                Table::Appointments,
                *id,
                data.clone(),
            ))?;
        }
        // The last one is deleted: tombstones are not candidates.
        let mut del = change(6, Table::Appointments, rows[4].0, rows[4].1.clone());
        del.action = Action::Delete;
        tx.put(&del)
    }))?;
    let ts = |s: &str| {
        s.parse::<Timestamp>()
            .map_err(|e| Failed(format!("{s}: {e}")))
    };
    let (from, until) = (ts("2031-03-03T00:00:00Z")?, ts("2031-03-04T00:00:00Z")?);
    let mut by_patient = Vec::new();
    let mut by_doctor = Vec::new();
    st(s.write(&mut |tx| {
        by_patient = tx.patient_appointments_starting_between(patient, from, until)?;
        by_doctor = tx.appointments_starting_between(doctor, from, until)?;
        Ok(())
    }))?;
    let mut ids: Vec<Uuid> = by_patient.iter().map(|c| c.id).collect();
    ids.sort();
    let mut want = vec![rows[0].0, rows[1].0];
    want.sort();
    check!(
        ids == want,
        "a patient's appointments in the range, any doctor and status, no tombstones: {ids:?}"
    );
    check!(
        by_patient
            .iter()
            .all(|c| c.data["patient_id"] == json!(patient)),
        "candidates carry their entity"
    );
    let mut ids: Vec<Uuid> = by_doctor.iter().map(|c| c.id).collect();
    ids.sort();
    let mut want = vec![rows[0].0, rows[2].0];
    want.sort();
    check!(ids == want, "a doctor's appointments in the range: {ids:?}");
    Ok(())
}

fn staff_row(seq: u64, id: Uuid, name: &str, active: bool) -> Change {
    let staff = Staff {
        id,
        username: name.into(),
        display_name: format!("{name} display"),
        role: Role::Doctor,
        active,
    };
    change(
        seq,
        Table::Staff,
        id,
        serde_json::to_value(staff).unwrap_or_default(),
    )
}

fn session_accounts_and_epochs(s: &dyn Storage) -> Result<(), Failed> {
    let user = Uuid::now_v7();
    st(s.write(&mut |tx| tx.put(&staff_row(1, user, "ana", true))))?;
    let session = Session {
        user_id: user,
        expires_at: t(100),
    };
    for h in ["a1", "a2", "a3"] {
        st(s.create_session(h, &session))?;
    }
    let found = st(s.session_account("a1"))?;
    check!(
        found
            .as_ref()
            .map(|f| (&f.session, f.user.as_ref().map(|u| u.id), f.security.epoch))
            == Some((&session, Some(user), 0)),
        "a session with its account and epoch 0: {found:?}"
    );
    check!(st(s.session_account("nope"))?.is_none(), "unknown token");
    check!(
        st(s.account_security(user))? == Default::default(),
        "no security state yet is epoch 0, no forced change"
    );
    let mut events = Vec::new();
    let mut counts = (0, 0, false);
    st(s.write(&mut |tx| {
        events.clear();
        events.push(tx.record_security_event(user, SecurityKind::RoleChanged, None, t(1))?);
        events.push(tx.record_security_event(user, SecurityKind::SignedOut, Some("a3"), t(2))?);
        events.push(tx.record_security_event(
            user,
            SecurityKind::PasswordChanged,
            Some("a1"),
            t(3),
        )?);
        counts.0 = tx.count_sessions_of(user)?;
        counts.2 = tx.delete_session("a3")?;
        counts.1 = tx.delete_other_sessions(user, "a1")?;
        tx.set_must_change_password(user, true)
    }))?;
    let epochs: Vec<u64> = events.iter().map(|e| e.epoch).collect();
    check!(
        epochs == [1, 1, 2],
        "a sign-out does not raise the epoch, other events do: {epochs:?}"
    );
    check!(
        events.windows(2).all(|w| w[0].id < w[1].id),
        "event ids rise"
    );
    check!(
        counts == (3, 1, true),
        "3 sessions counted, one deleted by hash, one other ended: {counts:?}"
    );
    let found = st(s.session_account("a1"))?;
    check!(
        found.map(|f| (f.security.epoch, f.security.must_change_password)) == Some((2, true)),
        "the kept session sees the new epoch and the forced change"
    );
    check!(
        st(s.session_account("a2"))?.is_none() && st(s.session_account("a3"))?.is_none(),
        "the other sessions are gone"
    );
    // A disabled or deleted account comes with its session (the caller decides).
    st(s.write(&mut |tx| {
        let mut del = staff_row(2, user, "ana", false);
        del.action = Action::Delete;
        tx.put(&del)
    }))?;
    let found = st(s.session_account("a1"))?;
    check!(
        found.is_some_and(|f| f.user.is_none()),
        "a deleted account's session has no user"
    );
    Ok(())
}

fn security_events(s: &dyn Storage) -> Result<(), Failed> {
    check!(st(s.security_head())? == 0, "no events yet");
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    st(s.write(&mut |tx| {
        for (i, kind) in SecurityKind::ALL.into_iter().enumerate() {
            let user = if i % 2 == 0 { a } else { b };
            tx.record_security_event(user, kind, None, t(i as i64))?;
        }
        Ok(())
    }))?;
    let head = st(s.security_head())?;
    check!(head >= 7, "head is the highest id: {head}");
    let all = st(s.security_events_after(0, 100))?;
    check!(all.len() == 7, "every event: {}", all.len());
    let kinds: Vec<SecurityKind> = all.iter().map(|e| e.kind).collect();
    check!(
        kinds == SecurityKind::ALL,
        "kinds round-trip in order: {kinds:?}"
    );
    check!(
        all.last().map(|e| e.id) == Some(head),
        "last id is the head"
    );
    let rest = st(s.security_events_after(all[4].id, 100))?;
    check!(
        rest.len() == 2 && rest[0].id == all[5].id,
        "events after an id, oldest first"
    );
    let page = st(s.security_events_after(0, 3))?;
    check!(page.len() == 3, "limit honoured");
    let epoch_a = st(s.account_security(a))?.epoch;
    check!(
        epoch_a == 3,
        "a's epoch counts its 4 events minus the sign-out: {epoch_a}"
    );
    Ok(())
}

fn throttles_and_sign_in_log(s: &dyn Storage) -> Result<(), Failed> {
    let key = "user:ana";
    check!(st(s.throttle(key))?.is_none(), "no throttle yet");
    let throttle = Throttle {
        failures: 6,
        last_failure_ms: 1_800_000_000_123,
        locked_until_ms: 1_800_000_001_123,
        lock_reported: true,
    };
    let mut ids = Vec::new();
    st(s.write(&mut |tx| {
        ids.clear();
        check_tx(tx.throttle(key)?.is_none())?;
        tx.set_throttle(key, Some(&throttle))?;
        check_tx(tx.throttle(key)? == Some(throttle))?;
        for (i, outcome) in [
            SignInOutcome::Failure,
            SignInOutcome::Locked,
            SignInOutcome::Success,
            SignInOutcome::Disabled,
        ]
        .into_iter()
        .enumerate()
        {
            ids.push(tx.append_sign_in_event(&NewSignInEvent {
                at: t(i as i64),
                kind: if i == 3 {
                    SignInKind::PasswordChange
                } else {
                    SignInKind::SignIn
                },
                outcome,
                username: format!("user{i}"),
                user_id: (i > 0).then(Uuid::nil),
                address: Some("192.0.2.1".into()),
                client_id: None,
                user_agent: (i == 2).then(|| "desk/1".to_owned()),
            })?);
        }
        Ok(())
    }))?;
    check!(st(s.throttle(key))? == Some(throttle), "throttle stored");
    st(s.write(&mut |tx| tx.set_throttle(key, None)))?;
    check!(st(s.throttle(key))?.is_none(), "throttle cleared");
    let newest = st(s.sign_in_events(None, 3))?;
    let names: Vec<&str> = newest.iter().map(|e| e.username.as_str()).collect();
    check!(
        names == ["user3", "user2", "user1"],
        "newest first, limited: {names:?}"
    );
    check!(
        newest[0].kind == SignInKind::PasswordChange
            && newest[0].outcome == SignInOutcome::Disabled
            && newest[1].user_agent.as_deref() == Some("desk/1")
            && newest[1].address.as_deref() == Some("192.0.2.1"),
        "fields round-trip: {newest:?}"
    );
    let older = st(s.sign_in_events(Some(newest[2].id), 10))?;
    check!(
        older.len() == 1 && older[0].username == "user0" && older[0].user_id.is_none(),
        "the page before an id: {older:?}"
    );
    check!(ids.windows(2).all(|w| w[0] < w[1]), "ids rise");
    Ok(())
}

fn check_tx(ok: bool) -> Result<(), StorageError> {
    if ok {
        Ok(())
    } else {
        Err(StorageError::Database(
            "a check inside the transaction failed".into(),
        ))
    }
}

fn access_log_chain(s: &dyn Storage) -> Result<(), Failed> {
    let (reader, patient, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    st(s.write(&mut |tx| tx.put(&staff_row(1, reader, "reader", true))))?;
    let entry = |i: i64, p: Uuid, kind: AccessKind| NewAccess {
        at: t(i),
        user_id: reader,
        client_id: Some(Uuid::nil()),
        kind,
        patient_id: Some(p),
        table: Table::TreatmentRecords,
        row_ids: vec![Uuid::now_v7(), Uuid::now_v7()],
    };
    let first = vec![
        entry(1, patient, AccessKind::Pull),
        entry(2, other, AccessKind::WsLive),
    ];
    let second = vec![
        entry(3, patient, AccessKind::View),
        entry(4, patient, AccessKind::History),
        entry(5, patient, AccessKind::WsCatchUp),
    ];
    let mut lasts = Vec::new();
    st(s.write(&mut |tx| {
        lasts.push(tx.append_access(&first)?);
        Ok(())
    }))?;
    st(s.write(&mut |tx| {
        lasts.push(tx.append_access(&second)?);
        Ok(())
    }))?;
    check!(lasts == [2, 5], "seq of the last entry appended: {lasts:?}");
    let log = st(s.access_log(patient, None, 10))?;
    let kinds: Vec<AccessKind> = log.iter().map(|e| e.kind).collect();
    check!(
        kinds
            == [
                AccessKind::WsCatchUp,
                AccessKind::History,
                AccessKind::View,
                AccessKind::Pull
            ],
        "one patient's entries, newest first: {kinds:?}"
    );
    check!(
        log[0].user_name.as_deref() == Some("reader display")
            && log[0].row_ids == second[2].row_ids
            && log[0].client_id == Some(Uuid::nil()),
        "entry fields and the reader's name: {:?}",
        log[0]
    );
    let page = st(s.access_log(patient, Some(log[1].seq), 1))?;
    check!(page.len() == 1 && page[0].seq == log[2].seq, "paged by seq");
    let links = st(s.access_chain(0, 100))?;
    check!(links.len() == 5, "the whole chain: {}", links.len());
    let mut previous = chain::GENESIS.to_owned();
    for link in &links {
        let computed = chain::access_record_hash(&previous, &link.entry);
        check!(
            link.hash.as_deref() == Some(computed.as_str()),
            "access entry {} is chained to the one before",
            link.entry.seq
        );
        previous = computed;
    }
    let tail = st(s.access_chain(3, 100))?;
    check!(
        tail.len() == 2 && tail[0].entry.seq == 4,
        "chain pages start after a seq"
    );
    Ok(())
}

fn change_log_chain(s: &dyn Storage) -> Result<(), Failed> {
    let id = Uuid::now_v7();
    st(s.write(&mut |tx| {
        tx.put(&change(
            1,
            Table::Patients,
            id,
            json!({"b": 1, "a": [1, 2]}),
        ))?;
        tx.savepoint()?;
        tx.put(&change(2, Table::Patients, Uuid::now_v7(), json!({})))?;
        tx.rollback_to_savepoint()?;
        let mut upd = change(2, Table::Patients, id, json!({"a": [1, 2], "b": 2}));
        upd.action = Action::Update;
        upd.before = Some(json!({"b": 1, "a": [1, 2]}));
        tx.put(&upd)
    }))?;
    st(s.write(&mut |tx| tx.put(&change(3, Table::Appointments, id, json!({"x": null})))))?;
    let links = st(s.change_chain(0, 10))?;
    check!(links.len() == 3, "every change: {}", links.len());
    let mut previous = chain::GENESIS.to_owned();
    for link in &links {
        let computed = chain::change_hash(&previous, &link.entry);
        check!(
            link.hash.as_deref() == Some(computed.as_str()),
            "change {} is chained to the one before (a rolled-back savepoint leaves no link)",
            link.entry.seq
        );
        previous = computed;
    }
    check!(
        st(s.change_chain(2, 10))?.len() == 1,
        "chain pages start after a seq"
    );
    let row = st(s.current_row(Table::Patients, id))?;
    check!(
        row.as_ref().map(|r| (r.version, r.deleted)) == Some((2, false)),
        "current row: {row:?}"
    );
    check!(
        st(s.current_row(Table::Referrals, id))?.is_none(),
        "no such row"
    );
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
        upd.actor_id = Some(client);
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
    check!(
        since[0].actor_id == Some(client) && since[0].at == Some(t(2)),
        "a logged change says who made it and when: {:?}",
        since[0]
    );
    let committed = st(s.committed_between(0, 2))?;
    check!(
        committed.len() == 2 && committed[1].mutation_id == Some(4),
        "committed changes in order"
    );
    Ok(())
}
