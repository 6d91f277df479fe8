//! The PostgreSQL schema: versioned migrations, applied in order under an
//! advisory lock, so servers starting at once do not race.

/// Versioned schema migrations, applied in order; a migration never changes
/// once released.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the sequence head, rows, change log / audit, credentials, sessions,
    // clients, results.
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
];

/// Taken by every process that migrates, so that instances starting at once
/// do not race (`pg_advisory_xact_lock`; the number is arbitrary but fixed).
pub(super) const MIGRATION_LOCK: i64 = 0x636c_696e_6963; // "clinic"
