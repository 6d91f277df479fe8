//! The PostgreSQL schema: versioned migrations, applied in order under an
//! advisory lock, so servers starting at once do not race.

use super::{corrupt, db_err, to_i64, to_u64};
use crate::storage::{Change, StorageResult, chain};

/// One schema migration: SQL, or Rust code for what SQL should not do (the
/// hash chain is defined once, in Rust: [`chain`]).
pub(super) enum Migration {
    Sql(&'static str),
    Code(fn(&mut postgres::Transaction<'_>) -> StorageResult<()>),
}

/// Versioned schema migrations, applied in order; a migration never changes
/// once released.
pub(super) const MIGRATIONS: &[Migration] = &[
    // 1: the sequence head, rows, change log / audit, credentials, sessions,
    // clients, results.
    Migration::Sql(
        r#"
    CREATE TABLE sequence_head (
        only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
        head bigint NOT NULL
    );
    INSERT INTO sequence_head (only_row, head) VALUES (true, 0);
    CREATE TABLE rows (
        tbl text NOT NULL,
        id uuid NOT NULL,
        version bigint NOT NULL,
        deleted boolean NOT NULL DEFAULT false,
        data json NOT NULL,
        PRIMARY KEY (tbl, id)
    );
    CREATE INDEX rows_by_version ON rows (version);
    CREATE INDEX appointments_by_doctor ON rows ((data->>'doctor_id'), ((data->>'start') COLLATE "C"))
        WHERE tbl = 'appointments';
    CREATE UNIQUE INDEX staff_by_username ON rows ((data->>'username')) WHERE tbl = 'staff';
    CREATE TABLE changes (
        seq bigint PRIMARY KEY,
        tbl text NOT NULL,
        row_id uuid NOT NULL,
        action text NOT NULL,
        actor_id uuid,
        client_id uuid,
        mutation_id bigint,
        mutation text NOT NULL,
        at timestamptz NOT NULL,
        before json,
        after json NOT NULL
    );
    CREATE INDEX changes_by_row ON changes (tbl, row_id, seq);
    CREATE TABLE credentials (
        user_id uuid PRIMARY KEY,
        password_hash text NOT NULL
    );
    CREATE TABLE sessions (
        token_hash text PRIMARY KEY,
        user_id uuid NOT NULL,
        expires_at timestamptz NOT NULL
    );
    CREATE INDEX sessions_by_user ON sessions (user_id);
    CREATE TABLE clients (
        client_id uuid PRIMARY KEY,
        user_id uuid NOT NULL,
        last_mutation_id bigint NOT NULL
    );
    CREATE TABLE mutation_results (
        client_id uuid NOT NULL,
        mutation_id bigint NOT NULL,
        outcome json NOT NULL,
        PRIMARY KEY (client_id, mutation_id)
    );
    "#,
    ),
    // 2: access control: account epochs, security events, sign-in
    // throttling and log, the access log with its chain head; the change
    // log's hash column and its chain head beside the sequence head (read
    // with the sequence lock, in the same round trip).
    Migration::Sql(
        r#"
    CREATE TABLE account_security (
        user_id uuid PRIMARY KEY,
        epoch bigint NOT NULL DEFAULT 0,
        must_change_password boolean NOT NULL DEFAULT false
    );
    CREATE TABLE security_events (
        id bigint PRIMARY KEY,
        at timestamptz NOT NULL,
        user_id uuid NOT NULL,
        kind text NOT NULL,
        token_hash text,
        epoch bigint NOT NULL
    );
    CREATE TABLE sign_in_throttle (
        key text PRIMARY KEY,
        failures integer NOT NULL,
        last_failure_ms bigint NOT NULL,
        locked_until_ms bigint NOT NULL,
        lock_reported boolean NOT NULL
    );
    CREATE TABLE sign_in_events (
        id bigint PRIMARY KEY,
        at timestamptz NOT NULL,
        kind text NOT NULL,
        outcome text NOT NULL,
        username text NOT NULL,
        user_id uuid,
        address text,
        client_id uuid,
        user_agent text
    );
    CREATE TABLE access_log (
        seq bigint PRIMARY KEY,
        at timestamptz NOT NULL,
        user_id uuid NOT NULL,
        client_id uuid,
        kind text NOT NULL,
        patient_id uuid,
        tbl text NOT NULL,
        row_ids uuid[] NOT NULL,
        hash text NOT NULL
    );
    CREATE INDEX access_by_patient ON access_log (patient_id, seq);
    CREATE TABLE access_head (
        only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
        seq bigint NOT NULL,
        hash text NOT NULL
    );
    INSERT INTO access_head (only_row, seq, hash)
        VALUES (true, 0, '0000000000000000000000000000000000000000000000000000000000000000');
    ALTER TABLE changes ADD COLUMN hash text;
    ALTER TABLE sequence_head ADD COLUMN hash text;
    "#,
    ),
    // 3: the hash chain over the change log's existing entries, and its head.
    Migration::Code(backfill_change_hashes),
    // 4: the logs are append-only.
    Migration::Sql(
        r#"
    CREATE FUNCTION clinic_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the % is append-only', TG_ARGV[0]
            USING ERRCODE = 'insufficient_privilege';
    END;
    $$;
    CREATE TRIGGER changes_append_only BEFORE UPDATE OR DELETE ON changes
        FOR EACH ROW EXECUTE FUNCTION clinic_append_only('change log');
    CREATE TRIGGER changes_no_truncate BEFORE TRUNCATE ON changes
        FOR EACH STATEMENT EXECUTE FUNCTION clinic_append_only('change log');
    CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON access_log
        FOR EACH ROW EXECUTE FUNCTION clinic_append_only('access log');
    CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log
        FOR EACH STATEMENT EXECUTE FUNCTION clinic_append_only('access log');
    CREATE TRIGGER sign_in_events_append_only BEFORE UPDATE OR DELETE ON sign_in_events
        FOR EACH ROW EXECUTE FUNCTION clinic_append_only('sign-in log');
    CREATE TRIGGER sign_in_events_no_truncate BEFORE TRUNCATE ON sign_in_events
        FOR EACH STATEMENT EXECUTE FUNCTION clinic_append_only('sign-in log');
    "#,
    ),
    // 5: a patient's appointments by start (the front-desk rules: a patient
    // in two places, future appointments when archiving).
    Migration::Sql(
        r#"
    CREATE INDEX appointments_by_patient ON rows ((data->>'patient_id'), ((data->>'start') COLLATE "C"))
        WHERE tbl = 'appointments';
    "#,
    ),
    // 6: the fingerprint of each processed mutation (a reused id with other
    // contents is refused); results stored before it have none.
    Migration::Sql(
        r#"
    ALTER TABLE mutation_results ADD COLUMN fingerprint text;
    "#,
    ),
    // 7: the server epoch (new on restore) and the clients that have pushed
    // since the last restore.
    Migration::Sql(
        r#"
    CREATE TABLE server_meta (
        key text PRIMARY KEY,
        value text NOT NULL
    );
    INSERT INTO server_meta (key, value) VALUES ('epoch', replace(gen_random_uuid()::text, '-', ''));
    CREATE TABLE resumed_clients (
        client_id uuid PRIMARY KEY
    );
    "#,
    ),
    // 8: care (clinic_shared::care): a break of the glass is an access
    // entry with the doctor's reason (chained with it); the grants of a
    // doctor and the records that make a patient theirs are found by index.
    Migration::Sql(
        r#"
    ALTER TABLE access_log ADD COLUMN reason text;
    CREATE INDEX access_glass ON access_log (user_id, at) WHERE kind = 'break_the_glass';
    CREATE INDEX records_by_doctor ON rows ((data->>'doctor_id')) WHERE tbl = 'treatment_records';
    CREATE INDEX referrals_by_doctor ON rows ((data->>'referring_doctor_id')) WHERE tbl = 'referrals';
    CREATE INDEX clinical_by_patient ON rows ((data->>'patient_id'))
        WHERE tbl IN ('treatment_records', 'referrals');
    "#,
    ),
];

/// Computes the hash chain of change-log entries written before the chain
/// existed, in `seq` order, a page at a time, and records its head.
fn backfill_change_hashes(tx: &mut postgres::Transaction<'_>) -> StorageResult<()> {
    let mut previous = chain::GENESIS.to_owned();
    let mut after = 0i64;
    loop {
        let page = tx
            .query(
                concat!(
                    "SELECT ",
                    change_columns!(),
                    " FROM changes c WHERE c.seq > $1 ORDER BY c.seq LIMIT 1000"
                ),
                &[&after],
            )
            .map_err(db_err)?;
        if page.is_empty() {
            break;
        }
        let mut seqs = Vec::with_capacity(page.len());
        let mut hashes = Vec::with_capacity(page.len());
        for row in &page {
            let change: Change = super::change_from_row(row)?;
            let hash = chain::change_hash(&previous, &change);
            seqs.push(to_i64(change.seq));
            hashes.push(hash.clone());
            after = to_i64(change.seq);
            previous = hash;
        }
        tx.execute(
            "UPDATE changes SET hash = u.h FROM unnest($1::int8[], $2::text[]) AS u(s, h)
             WHERE changes.seq = u.s",
            &[&seqs, &hashes],
        )
        .map_err(db_err)?;
    }
    let head: i64 = tx
        .query_one("SELECT head FROM sequence_head", &[])
        .map_err(db_err)?
        .get(0);
    if to_u64(after) != to_u64(head) {
        return Err(corrupt(format!(
            "the change log ends at seq {after} but the sequence head is {head}"
        )));
    }
    tx.execute("UPDATE sequence_head SET hash = $1", &[&previous])
        .map_err(db_err)?;
    Ok(())
}

/// Taken by every process that migrates, so that instances starting at once
/// do not race (`pg_advisory_xact_lock`; the number is arbitrary but fixed).
pub(super) const MIGRATION_LOCK: i64 = 0x636c_696e_6963; // "clinic"
