//! Bulk loading of a copied clinic ([`crate::storage::transfer`]).

use super::pool::Statements;
use super::tx::{
    INSERT_RESULTS, INSERT_SESSIONS, UPSERT_CLIENTS, UPSERT_CREDENTIALS, UPSERT_ROWS,
    insert_changes,
};
use super::{db_err, to_i64, to_u64};
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
        Chunk::Changes(changes) => insert_changes(tx, &mut stmts, changes),
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
            run(tx, INSERT_RESULTS, &[&clients, &ids, &outcomes])
        }
    }
}

/// Sets the sequence head (after a copy).
pub(crate) fn set_head(tx: &mut postgres::Transaction<'_>, head: u64) -> StorageResult<()> {
    tx.execute("UPDATE sequence_head SET head = $1", &[&to_i64(head)])
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
                    (SELECT COUNT(*) FROM mutation_results)",
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
    })
}
