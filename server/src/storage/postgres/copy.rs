//! Bulk loading of a copied clinic ([`crate::storage::transfer`]).

use super::pool::Statements;
use super::tx::{
    INSERT_RESULTS, INSERT_SESSIONS, UPSERT_CLIENTS, UPSERT_CREDENTIALS, UPSERT_ROWS,
    insert_access, insert_changes,
};
use super::{db_err, sign_in_kind_str, sign_in_outcome_str, to_i64, to_u64};
use crate::storage::StorageResult;
use crate::storage::transfer::{Chunk, CopyReport};
use chrono::{DateTime, Utc};
use postgres::types::ToSql;
use uuid::Uuid;

/// Writes one chunk of a copied clinic ([`super::transfer`]).
pub(crate) fn import_chunk(tx: &mut postgres::Transaction<'_>, chunk: &Chunk) -> StorageResult<()> {
    let mut stmts = Statements::default();
    let run = |tx: &mut postgres::Transaction<'_>,
               sql: &'static str,
               params: &[&(dyn ToSql + Sync)]|
     -> StorageResult<()> {
        tx.execute(sql, params).map_err(db_err)?;
        Ok(())
    };
    match chunk {
        Chunk::Rows(rows) => {
            let tbl: Vec<&str> = rows.iter().map(|r| r.table.as_str()).collect();
            let id: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
            let version: Vec<i64> = rows.iter().map(|r| to_i64(r.version)).collect();
            let deleted: Vec<bool> = rows.iter().map(|r| r.deleted).collect();
            let data: Vec<&str> = rows.iter().map(|r| r.data.as_str()).collect();
            run(tx, UPSERT_ROWS, &[&tbl, &id, &version, &deleted, &data])
        }
        Chunk::Changes(links) => {
            // The stored hashes as they are (checked by the caller).
            let changes: Vec<_> = links.iter().map(|l| l.entry.clone()).collect();
            let hashes: Vec<String> = links
                .iter()
                .map(|l| l.hash.clone().unwrap_or_default())
                .collect();
            insert_changes(tx, &mut stmts, &changes, &hashes)
        }
        Chunk::Credentials(creds) => {
            let users: Vec<Uuid> = creds.iter().map(|c| c.0).collect();
            let hashes: Vec<&str> = creds.iter().map(|c| c.1.as_str()).collect();
            run(tx, UPSERT_CREDENTIALS, &[&users, &hashes])
        }
        Chunk::Sessions(sessions) => {
            let hashes: Vec<&str> = sessions.iter().map(|s| s.0.as_str()).collect();
            let users: Vec<Uuid> = sessions.iter().map(|s| s.1.user_id).collect();
            let expires: Vec<DateTime<Utc>> = sessions
                .iter()
                .map(|s| s.1.expires_at.as_datetime())
                .collect();
            run(tx, INSERT_SESSIONS, &[&hashes, &users, &expires])
        }
        Chunk::Clients(clients) => {
            let ids: Vec<Uuid> = clients.iter().map(|c| c.0).collect();
            let users: Vec<Uuid> = clients.iter().map(|c| c.1.user_id).collect();
            let last: Vec<i64> = clients
                .iter()
                .map(|c| to_i64(c.1.last_mutation_id))
                .collect();
            run(tx, UPSERT_CLIENTS, &[&ids, &users, &last])
        }
        Chunk::Results(results) => {
            let clients: Vec<Uuid> = results.iter().map(|r| r.0).collect();
            let ids: Vec<i64> = results.iter().map(|r| to_i64(r.1)).collect();
            let outcomes: Vec<&str> = results.iter().map(|r| r.2.as_str()).collect();
            let fingerprints: Vec<Option<&str>> = results.iter().map(|r| r.3.as_deref()).collect();
            run(
                tx,
                INSERT_RESULTS,
                &[&clients, &ids, &outcomes, &fingerprints],
            )
        }
        Chunk::AccountSecurity(accounts) => {
            let users: Vec<Uuid> = accounts.iter().map(|a| a.0).collect();
            let epochs: Vec<i64> = accounts.iter().map(|a| to_i64(a.1.epoch)).collect();
            let must: Vec<bool> = accounts.iter().map(|a| a.1.must_change_password).collect();
            run(
                tx,
                "INSERT INTO account_security (user_id, epoch, must_change_password)
                 SELECT * FROM unnest($1::uuid[], $2::int8[], $3::bool[])",
                &[&users, &epochs, &must],
            )
        }
        Chunk::SecurityEvents(events) => {
            let ids: Vec<i64> = events.iter().map(|e| to_i64(e.id)).collect();
            let at: Vec<DateTime<Utc>> = events.iter().map(|e| e.at.as_datetime()).collect();
            let users: Vec<Uuid> = events.iter().map(|e| e.user_id).collect();
            let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
            let tokens: Vec<Option<&str>> =
                events.iter().map(|e| e.token_hash.as_deref()).collect();
            let epochs: Vec<i64> = events.iter().map(|e| to_i64(e.epoch)).collect();
            run(
                tx,
                "INSERT INTO security_events (id, at, user_id, kind, token_hash, epoch)
                 SELECT * FROM unnest($1::int8[], $2::timestamptz[], $3::uuid[], $4::text[],
                                      $5::text[], $6::int8[])",
                &[&ids, &at, &users, &kinds, &tokens, &epochs],
            )
        }
        Chunk::Throttles(throttles) => {
            let keys: Vec<&str> = throttles.iter().map(|t| t.0.as_str()).collect();
            let failures: Vec<i32> = throttles
                .iter()
                .map(|t| i32::try_from(t.1.failures).unwrap_or(i32::MAX))
                .collect();
            let last: Vec<i64> = throttles.iter().map(|t| t.1.last_failure_ms).collect();
            let until: Vec<i64> = throttles.iter().map(|t| t.1.locked_until_ms).collect();
            let reported: Vec<bool> = throttles.iter().map(|t| t.1.lock_reported).collect();
            run(
                tx,
                "INSERT INTO sign_in_throttle (key, failures, last_failure_ms, locked_until_ms, lock_reported)
                 SELECT * FROM unnest($1::text[], $2::int4[], $3::int8[], $4::int8[], $5::bool[])",
                &[&keys, &failures, &last, &until, &reported],
            )
        }
        Chunk::SignInEvents(events) => {
            let ids: Vec<i64> = events.iter().map(|e| to_i64(e.id)).collect();
            let at: Vec<DateTime<Utc>> = events.iter().map(|e| e.at.as_datetime()).collect();
            let kinds: Vec<&str> = events.iter().map(|e| sign_in_kind_str(e.kind)).collect();
            let outcomes: Vec<&str> = events
                .iter()
                .map(|e| sign_in_outcome_str(e.outcome))
                .collect();
            let names: Vec<&str> = events.iter().map(|e| e.username.as_str()).collect();
            let users: Vec<Option<Uuid>> = events.iter().map(|e| e.user_id).collect();
            let addresses: Vec<Option<&str>> =
                events.iter().map(|e| e.address.as_deref()).collect();
            let clients: Vec<Option<Uuid>> = events.iter().map(|e| e.client_id).collect();
            let agents: Vec<Option<&str>> =
                events.iter().map(|e| e.user_agent.as_deref()).collect();
            run(
                tx,
                "INSERT INTO sign_in_events (id, at, kind, outcome, username, user_id, address, client_id, user_agent)
                 SELECT * FROM unnest($1::int8[], $2::timestamptz[], $3::text[], $4::text[], $5::text[],
                                      $6::uuid[], $7::text[], $8::uuid[], $9::text[])",
                &[
                    &ids, &at, &kinds, &outcomes, &names, &users, &addresses, &clients, &agents,
                ],
            )
        }
        Chunk::Access(links) => {
            let records: Vec<_> = links
                .iter()
                .map(|l| {
                    (
                        l.entry.seq,
                        &l.entry.entry,
                        l.hash.clone().unwrap_or_default(),
                    )
                })
                .collect();
            insert_access(tx, &mut stmts, &records)
        }
    }
}

/// Sets the sequence head and the chain heads (after a copy): the change
/// log's at `head` with hash `change_hash`, the access log's at
/// `access_seq` with hash `access_hash`.
pub(crate) fn set_heads(
    tx: &mut postgres::Transaction<'_>,
    head: u64,
    change_hash: &str,
    access_seq: u64,
    access_hash: &str,
) -> StorageResult<()> {
    tx.execute(
        "UPDATE sequence_head SET head = $1, hash = $2",
        &[&to_i64(head), &change_hash],
    )
    .map_err(db_err)?;
    tx.execute(
        "UPDATE access_head SET seq = $1, hash = $2",
        &[&to_i64(access_seq), &access_hash],
    )
    .map_err(db_err)?;
    Ok(())
}

/// How many of each kind of record the database holds, and its head.
pub(crate) fn count_all(tx: &mut postgres::Transaction<'_>) -> StorageResult<CopyReport> {
    let r = tx
        .query_one(
            "SELECT (SELECT COUNT(*) FROM rows), (SELECT COUNT(*) FROM changes),
                    (SELECT head FROM sequence_head), (SELECT COUNT(*) FROM credentials),
                    (SELECT COUNT(*) FROM sessions), (SELECT COUNT(*) FROM clients),
                    (SELECT COUNT(*) FROM mutation_results),
                    (SELECT COUNT(*) FROM account_security),
                    (SELECT COUNT(*) FROM security_events),
                    (SELECT COUNT(*) FROM sign_in_throttle),
                    (SELECT COUNT(*) FROM sign_in_events),
                    (SELECT COUNT(*) FROM access_log)",
            &[],
        )
        .map_err(db_err)?;
    let n = |i: usize| to_u64(r.get::<_, i64>(i));
    Ok(CopyReport {
        rows: n(0),
        changes: n(1),
        head: n(2),
        credentials: n(3),
        sessions: n(4),
        clients: n(5),
        results: n(6),
        account_security: n(7),
        security_events: n(8),
        throttles: n(9),
        sign_in_events: n(10),
        access_entries: n(11),
    })
}
