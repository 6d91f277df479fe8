//! The storage contract as executable checks. Every backend's tests call
//! [`run_all`] with a factory for fresh, empty stores, and [`run_shared`]
//! with a factory for more handles on one store (what other processes on
//! the same database are); a new backend is done when these pass unchanged.

use super::{
    Change, ClientRecord, NewAccess, NewSignInEvent, SecurityKind, Session, Signal, Storage,
    StorageError, Throttle, chain,
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
    savepoints_undo_security_writes(fresh().as_ref())?;
    access_appends_of_their_own(fresh().as_ref())?;
    appointment_ranges(fresh().as_ref())?;
    server_epochs_and_restores(fresh().as_ref())?;
    size_and_open_sessions(fresh().as_ref())?;
    care_and_glass(fresh().as_ref())?;
    Ok(())
}

/// Care (`clinic_shared::care`): a doctor's patients are those of their
/// appointments, treatment records and referrals, and of their breaks of
/// the glass from `glass_since` on; a reason is kept with its entry and
/// chained; the clinical rows of a patient are theirs alone, live only.
fn care_and_glass(s: &dyn Storage) -> Result<(), Failed> {
    let (doctor, other) = (Uuid::now_v7(), Uuid::now_v7());
    let [
        by_visit,
        by_record,
        by_referral,
        by_glass,
        not_mine,
        deleted,
    ] = [(); 6].map(|_| Uuid::now_v7());
    let record = Uuid::now_v7();
    let rows = [
        (
            Table::Appointments,
            json!({"doctor_id": doctor, "patient_id": by_visit}),
        ),
        (
            Table::TreatmentRecords,
            json!({"doctor_id": doctor, "patient_id": by_record, "notes": "n"}),
        ),
        (
            Table::Referrals,
            json!({"referring_doctor_id": doctor, "patient_id": by_referral, "reason": "r"}),
        ),
        (
            Table::TreatmentRecords,
            json!({"doctor_id": other, "patient_id": not_mine, "notes": "x"}),
        ),
        (
            Table::Appointments,
            json!({"doctor_id": other, "patient_id": by_record}),
        ),
    ];
    for (i, (table, data)) in rows.iter().enumerate() {
        let id = if i == 3 { record } else { Uuid::now_v7() };
        st(s.write(&mut |tx| tx.put(&change(i as u64 + 1, *table, id, data.clone()))))?;
    }
    let gone = Uuid::now_v7();
    st(s.write(&mut |tx| {
        tx.put(&change(
            6,
            Table::Appointments,
            gone,
            json!({"doctor_id": doctor, "patient_id": deleted}),
        ))
    }))?;
    st(s.write(&mut |tx| {
        let mut c = change(7, Table::Appointments, gone, serde_json::Value::Null);
        c.action = Action::Delete;
        tx.put(&c)
    }))?;
    let glass = |at: i64, patient: Uuid| NewAccess {
        at: t(at),
        user_id: doctor,
        client_id: None,
        kind: AccessKind::BreakTheGlass,
        patient_id: Some(patient),
        table: Table::TreatmentRecords,
        row_ids: vec![],
        reason: Some("Collapsed in the waiting room".into()),
    };
    st(s.append_access(&[glass(100, by_glass), glass(50, not_mine)]))?;
    let lasting: std::collections::HashSet<Uuid> = [by_visit, by_record, by_referral].into();
    check!(
        st(s.care_patients(doctor, None))? == lasting,
        "without grants: visits, records and referrals of the doctor (a deleted visit does not count)"
    );
    let mut with_glass = lasting.clone();
    with_glass.insert(by_glass);
    check!(
        st(s.care_patients(doctor, Some(t(100))))? == with_glass,
        "a grant made at glass_since counts, an older one does not"
    );
    check!(
        st(s.care_patients(other, Some(t(0))))? == [not_mine, by_record].into(),
        "another doctor's care is theirs"
    );
    check!(
        st(s.last_glass(doctor, by_glass))? == Some(t(100)),
        "the latest break of the glass"
    );
    check!(
        st(s.last_glass(other, by_glass))?.is_none(),
        "none by another doctor"
    );
    let log = st(s.access_log(by_glass, None, 10))?;
    check!(
        log.len() == 1
            && log[0].kind == AccessKind::BreakTheGlass
            && log[0].reason.as_deref() == Some("Collapsed in the waiting room"),
        "the reason is kept with the entry: {log:?}"
    );
    let chain = st(s.access_chain(0, 10))?;
    let mut previous = chain::GENESIS.to_owned();
    for link in &chain {
        let expected = chain::access_record_hash(&previous, &link.entry);
        check!(
            link.hash.as_deref() == Some(expected.as_str()),
            "the reason is chained"
        );
        previous = expected;
    }
    let mut edited = chain[0].entry.clone();
    edited.entry.reason = Some("something else".into());
    check!(
        chain::access_record_hash(chain::GENESIS, &edited)
            != chain[0].hash.clone().unwrap_or_default(),
        "an edited reason no longer matches its hash"
    );
    let clinical = st(s.clinical_rows(not_mine))?;
    check!(
        clinical.len() == 1
            && clinical[0].id == record
            && clinical[0].data.as_ref().is_some_and(|d| d["notes"] == "x"),
        "the patient's clinical rows, unredacted: {clinical:?}"
    );
    check!(
        st(s.clinical_rows(by_visit))?.is_empty(),
        "appointments are not clinical rows"
    );
    Ok(())
}

/// The figures the metrics read: the database takes some bytes from the
/// start and more after rows are written; open sessions are the unexpired
/// ones.
fn size_and_open_sessions(s: &dyn Storage) -> Result<(), Failed> {
    let empty = st(s.database_size())?;
    check!(empty > 0, "a new database takes some bytes on disk");
    check!(
        ["sqlite", "postgresql"].contains(&s.backend_name()),
        "a known backend name, not {}",
        s.backend_name()
    );
    // Two hundred rows of a few KiB each (random, so compression cannot
    // make them small): more than any preallocated space.
    for seq in 1..=200 {
        let filler: String = (0..100)
            .map(|_| Uuid::now_v7().simple().to_string())
            .collect();
        st(s.write(&mut |tx| {
            tx.put(&change(
                seq,
                Table::Patients,
                Uuid::now_v7(),
                json!({"first_name": filler}),
            ))
        }))?;
    }
    let written = st(s.database_size())?;
    check!(
        written > empty,
        "the database grows with its rows: {empty} bytes empty, {written} after 600 KiB of rows"
    );
    check!(
        st(s.count_open_sessions(t(50)))? == 0,
        "no sessions in a new database"
    );
    for (hash, expires) in [("o1", 100), ("o2", 10), ("o3", 200)] {
        st(s.create_session(
            hash,
            &Session {
                user_id: Uuid::now_v7(),
                expires_at: t(expires),
            },
        ))?;
    }
    let open = st(s.count_open_sessions(t(50)))?;
    check!(open == 2, "two sessions open at t+50, not {open}");
    let open = st(s.count_open_sessions(t(150)))?;
    check!(open == 1, "one session open at t+150, not {open}");
    st(s.delete_session("o3"))?;
    let open = st(s.count_open_sessions(t(150)))?;
    check!(open == 0, "none open after the last one ended, not {open}");
    Ok(())
}

/// A database has a server epoch from the start; a new one after a
/// restore, which also lets each client resume past a gap exactly once (and
/// not before any restore); a savepoint rolled back takes the resume back.
/// Pages carry the head of their snapshot, below a cursor from the future.
fn server_epochs_and_restores(s: &dyn Storage) -> Result<(), Failed> {
    let first = st(s.server_epoch())?;
    check!(
        first.len() == 32 && first.chars().all(|c| c.is_ascii_hexdigit()),
        "an epoch of 32 hex digits: {first:?}"
    );
    check!(st(s.server_epoch())? == first, "the epoch is stable");
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let mut resumed = Vec::new();
    st(s.write(&mut |tx| {
        resumed.push(tx.resume_after_restore(a)?);
        Ok(())
    }))?;
    check!(
        resumed == [false],
        "no resume before a restore: {resumed:?}"
    );
    st(s.write(&mut |tx| tx.put(&change(1, Table::Patients, Uuid::now_v7(), json!({})))))?;
    let page = st(s.changes_page(&[Table::Patients], 40, 10, None))?;
    check!(
        page.head == 1 && page.rows.is_empty(),
        "a page read from cursor 40 says head 1: {:?}",
        (page.head, page.cursor)
    );
    let second = st(s.start_new_epoch(t(5)))?;
    check!(second != first, "a restore makes a new epoch");
    check!(st(s.server_epoch())? == second, "the new epoch is kept");
    resumed.clear();
    st(s.write(&mut |tx| {
        tx.savepoint()?;
        resumed.push(tx.resume_after_restore(a)?);
        tx.rollback_to_savepoint()?;
        resumed.push(tx.resume_after_restore(a)?);
        resumed.push(tx.resume_after_restore(a)?);
        resumed.push(tx.resume_after_restore(b)?);
        Ok(())
    }))?;
    check!(
        resumed == [true, true, false, true],
        "once per client, undone with its savepoint: {resumed:?}"
    );
    resumed.clear();
    st(s.write(&mut |tx| {
        resumed.push(tx.resume_after_restore(a)?);
        Ok(())
    }))?;
    check!(resumed == [false], "a resume is kept: {resumed:?}");
    let third = st(s.start_new_epoch(t(9)))?;
    check!(third != second, "every restore makes a new epoch");
    resumed.clear();
    st(s.write(&mut |tx| {
        resumed.push(tx.resume_after_restore(a)?);
        Ok(())
    }))?;
    check!(
        resumed == [true],
        "the next restore allows one more: {resumed:?}"
    );
    Ok(())
}

/// What the engine writes for an account inside a mutation's savepoint
/// (sessions ended, a security event, a forced password change) and what
/// sign-in writes (throttle, sign-in log, access entries) are undone with
/// the savepoint, also when an inner savepoint released them into an outer
/// one that rolls back; a released savepoint keeps them.
fn savepoints_undo_security_writes(s: &dyn Storage) -> Result<(), Failed> {
    let user = Uuid::now_v7();
    for h in ["s1", "s2"] {
        st(s.create_session(
            h,
            &Session {
                user_id: user,
                expires_at: t(100),
            },
        ))?;
    }
    let throttle = Throttle {
        failures: 1,
        last_failure_ms: 1,
        locked_until_ms: 0,
        lock_reported: false,
    };
    let undone = |tx: &mut dyn super::WriteTx| -> Result<(), StorageError> {
        tx.delete_session("s1")?;
        tx.delete_other_sessions(user, "s1")?;
        tx.delete_sessions_of(user)?;
        tx.record_security_event(user, SecurityKind::Disabled, None, t(1))?;
        tx.set_must_change_password(user, true)?;
        tx.set_throttle("user:x", Some(&throttle))?;
        tx.append_sign_in_event(&NewSignInEvent {
            at: t(1),
            kind: SignInKind::SignIn,
            outcome: SignInOutcome::Failure,
            username: "x".into(),
            user_id: None,
            address: None,
            client_id: None,
            user_agent: None,
        })?;
        tx.append_access(&[access_entry(1, user)])?;
        Ok(())
    };
    let mut inside = (0, 0);
    st(s.write(&mut |tx| {
        tx.savepoint()?;
        undone(tx)?;
        inside.0 = tx.count_sessions_of(user)?;
        tx.rollback_to_savepoint()?;
        inside.1 = tx.count_sessions_of(user)?;
        tx.savepoint()?;
        tx.savepoint()?;
        undone(tx)?;
        tx.release_savepoint()?;
        tx.rollback_to_savepoint()
    }))?;
    check!(
        inside == (0, 2),
        "sessions ended in a savepoint come back when it rolls back: {inside:?}"
    );
    check!(
        st(s.session("s1"))?.is_some() && st(s.session("s2"))?.is_some(),
        "no session ended"
    );
    check!(
        st(s.security_head())? == 0 && st(s.account_security(user))? == Default::default(),
        "no security event, epoch or forced change left"
    );
    check!(
        st(s.throttle("user:x"))?.is_none() && st(s.sign_in_events(None, 10))?.is_empty(),
        "no throttle, no sign-in event left"
    );
    check!(
        st(s.access_chain(0, 10))?.is_empty(),
        "no access entry left"
    );
    st(s.write(&mut |tx| {
        tx.savepoint()?;
        undone(tx)?;
        tx.release_savepoint()
    }))?;
    check!(
        st(s.session("s1"))?.is_none() && st(s.session("s2"))?.is_none(),
        "a released savepoint keeps its writes: sessions ended"
    );
    check!(
        st(s.security_events_after(0, 10))?.len() == 1 && st(s.account_security(user))?.epoch == 1,
        "one event kept, epoch 1"
    );
    check!(
        verify_access(s)? == [1],
        "the kept access entry starts the chain"
    );
    Ok(())
}

/// Access entries appended in transactions of their own and inside write
/// transactions make one chain.
fn access_appends_of_their_own(s: &dyn Storage) -> Result<(), Failed> {
    let reader = Uuid::now_v7();
    let mut lasts = vec![st(s.append_access(&[access_entry(1, reader)]))?];
    st(s.write(&mut |tx| {
        lasts.push(tx.append_access(&[access_entry(2, reader), access_entry(3, reader)])?);
        Ok(())
    }))?;
    lasts.push(st(s.append_access(&[access_entry(4, reader)]))?);
    check!(lasts == [1, 3, 4], "positions continue: {lasts:?}");
    check!(
        verify_access(s)? == [1, 2, 3, 4],
        "one chain over both kinds of append"
    );
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
        reason: None,
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
        tx.store_outcome(client, 1, &outcome, "f1")
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
    check!(
        stored
            == Some(super::StoredOutcome {
                outcome,
                fingerprint: Some("f1".into())
            }),
        "outcome and fingerprint stored: {stored:?}"
    );
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
    check!(
        st(s.session("h4"))?.is_some(),
        "another user's session stays"
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
    chains_across_handles(open)?;
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
/// commit and for a security event recorded through another handle.
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
    // A sign-out as the server makes it: the session ends and the event is
    // recorded in one transaction.
    st(b.write(&mut |tx| {
        tx.delete_session("w1")?;
        tx.record_security_event(user, SecurityKind::SignedOut, Some("w1"), t(1))
            .map(|_| ())
    }))?;
    wait_for(Signal::Security, "after another handle's sign-out")?;
    st(b.create_session(
        "w2",
        &Session {
            user_id: user,
            expires_at: t(100),
        },
    ))?;
    while rx.try_recv().is_ok() {}
    st(b.write(&mut |tx| {
        tx.delete_sessions_of(user)?;
        tx.record_security_event(user, SecurityKind::Disabled, None, t(2))
            .map(|_| ())
    }))?;
    wait_for(Signal::Security, "after another handle disabled an account")?;
    drop(watching);
    Ok(())
}

/// Walks a whole chain, a page at a time: every entry's stored hash is the
/// one computed from the entry before it. Returns the entries' positions.
fn walk_chain<T>(
    what: &str,
    page: &dyn Fn(u64) -> Result<Vec<super::ChainLink<T>>, StorageError>,
    seq_of: fn(&T) -> u64,
    hash_of: fn(&str, &T) -> String,
) -> Result<Vec<u64>, Failed> {
    let mut previous = chain::GENESIS.to_owned();
    let mut seqs = Vec::new();
    let mut after = 0;
    loop {
        let links = st(page(after))?;
        if links.is_empty() {
            return Ok(seqs);
        }
        for link in links {
            let seq = seq_of(&link.entry);
            let computed = hash_of(&previous, &link.entry);
            check!(
                link.hash.as_deref() == Some(computed.as_str()),
                "{what} entry {seq} is not chained to the one before it"
            );
            seqs.push(seq);
            after = seq;
            previous = computed;
        }
    }
}

fn verify_changes(s: &dyn Storage) -> Result<Vec<u64>, Failed> {
    walk_chain(
        "change log",
        &|after| s.change_chain(after, 100),
        |c: &Change| c.seq,
        chain::change_hash,
    )
}

fn verify_access(s: &dyn Storage) -> Result<Vec<u64>, Failed> {
    walk_chain(
        "access log",
        &|after| s.access_chain(after, 100),
        |a: &super::AccessRecord| a.seq,
        chain::access_record_hash,
    )
}

fn access_entry(i: u64, reader: Uuid) -> NewAccess {
    NewAccess {
        at: t(i as i64),
        user_id: reader,
        client_id: None,
        kind: AccessKind::WsLive,
        patient_id: Some(Uuid::now_v7()),
        table: Table::TreatmentRecords,
        row_ids: vec![Uuid::now_v7()],
        reason: None,
    }
}

/// Writers on separate handles append to both hash chains and the
/// security-event log at once: mutation commits (a change and a security
/// event), access entries in write transactions and in transactions of
/// their own ([`Storage::append_access`]). Both chains must come out whole
/// (every entry linked to the one before, positions 1..n, none lost), and a
/// reader tailing the security-event log by id, as every server does, must
/// see every event, in rising order.
fn chains_across_handles(open: &(dyn Fn() -> Box<dyn Storage> + Sync)) -> Result<(), Failed> {
    let reader = Uuid::now_v7();
    let events = SHARED_WRITERS * SHARED_WRITES;
    // The store may hold entries of earlier checks: count from there.
    let (changes_before, access_before, events_before) = {
        let s = open();
        (
            verify_changes(s.as_ref())?.len() as u64,
            verify_access(s.as_ref())?.len() as u64,
            st(s.security_head())?,
        )
    };
    let tailed: Result<Vec<u64>, Failed> = std::thread::scope(|scope| {
        let mut writers = Vec::new();
        for w in 0..SHARED_WRITERS {
            writers.push(scope.spawn(move || -> Result<(), Failed> {
                let s = open();
                for i in 0..SHARED_WRITES {
                    st(s.write(&mut |tx| {
                        let head = tx.head()?;
                        tx.put(&change(
                            head + 1,
                            Table::Patients,
                            Uuid::now_v7(),
                            json!({"by": w, "i": i}),
                        ))?;
                        tx.record_security_event(reader, SecurityKind::RoleChanged, None, t(1))
                            .map(|_| ())
                    }))?;
                    st(s.append_access(&[access_entry(i, reader), access_entry(i, reader)]))?;
                    st(s.write(&mut |tx| {
                        tx.append_access(&[access_entry(i, reader)]).map(|_| ())
                    }))?;
                }
                Ok(())
            }));
        }
        let tail = scope.spawn(move || -> Result<Vec<u64>, Failed> {
            let s = open();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            let (mut seen, mut last) = (Vec::new(), events_before);
            while (seen.len() as u64) < events {
                check!(
                    std::time::Instant::now() < deadline,
                    "the security-event tail saw only {} of {events} events in time",
                    seen.len()
                );
                for e in st(s.security_events_after(last, 1000))? {
                    check!(e.id > last, "security event {} came after {last}", e.id);
                    last = e.id;
                    seen.push(e.id);
                }
                std::thread::yield_now();
            }
            Ok(seen)
        });
        for w in writers {
            w.join().map_err(|_| Failed("a writer panicked".into()))??;
        }
        tail.join()
            .map_err(|_| Failed("the security-event tail panicked".into()))?
    });
    let tailed = tailed?;
    let s = open();
    let all: Vec<u64> = st(s.security_events_after(events_before, 100_000))?
        .iter()
        .map(|e| e.id)
        .collect();
    check!(
        tailed == all,
        "the tail by id skipped a security event: it saw {} of {}",
        tailed.len(),
        all.len()
    );
    let changes = verify_changes(s.as_ref())?;
    check!(
        changes == (1..=changes_before + events).collect::<Vec<_>>(),
        "the change log holds every change once, in order: {} entries",
        changes.len()
    );
    let access = verify_access(s.as_ref())?;
    check!(
        access == (1..=access_before + events * 3).collect::<Vec<_>>(),
        "the access log holds every entry once, in order: {} entries",
        access.len()
    );
    check!(
        st(s.account_security(reader))?.epoch == events,
        "every event raised the epoch once"
    );
    Ok(())
}
