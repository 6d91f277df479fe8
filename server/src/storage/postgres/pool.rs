//! A bounded pool of connections, each with its prepared statements.

use super::{SESSION_SETTINGS, db_err};
use crate::storage::{StorageError, StorageResult};
use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls, Statement};
use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a caller waits for a free pooled connection before `Busy`.
const POOL_WAIT: Duration = Duration::from_secs(10);

/// Prepared statements of one connection, by their SQL.
#[derive(Default)]
pub(super) struct Statements(HashMap<&'static str, Statement>);

impl Statements {
    pub(super) fn get(
        &mut self,
        client: &mut impl GenericClient,
        sql: &'static str,
    ) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.0.get(sql) {
            return Ok(s.clone());
        }
        let s = client.prepare(sql)?;
        self.0.insert(sql, s.clone());
        Ok(s)
    }
}

/// One pooled connection and its prepared statements.
pub(super) struct PgConn {
    pub(super) client: Client,
    pub(super) stmts: Statements,
}

impl PgConn {
    pub(super) fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, postgres::Error> {
        let stmt = self.stmts.get(&mut self.client, sql)?;
        self.client.query(&stmt, params)
    }

    pub(super) fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let stmt = self.stmts.get(&mut self.client, sql)?;
        self.client.execute(&stmt, params)
    }
}

/// A bounded pool of connections, opened on demand.
pub(super) struct Pool {
    pub(super) config: postgres::Config,
    max: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<PgConn>,
    open: usize,
}

impl Pool {
    /// A pool of at most `max` connections to `config`, opened on demand.
    pub(super) fn new(config: postgres::Config, max: usize) -> Pool {
        Pool {
            config,
            max: max.max(1),
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    pub(super) fn connect(config: &postgres::Config) -> StorageResult<Client> {
        let mut client = config.connect(NoTls).map_err(db_err)?;
        client.batch_execute(SESSION_SETTINGS).map_err(db_err)?;
        Ok(client)
    }

    /// A connection, waiting at most [`POOL_WAIT`] for one to be free.
    pub(super) fn get(&self) -> StorageResult<Pooled<'_>> {
        let deadline = Instant::now() + POOL_WAIT;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            while let Some(conn) = state.idle.pop() {
                if conn.client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(Pooled {
                    pool: self,
                    conn: Some(conn),
                });
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match Self::connect(&self.config) {
                    Ok(client) => Ok(Pooled {
                        pool: self,
                        conn: Some(PgConn {
                            client,
                            stmts: Statements::default(),
                        }),
                    }),
                    Err(e) => {
                        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                        state.open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StorageError::Busy(format!(
                    "all {} database connections are busy",
                    self.max
                )));
            }
            state = self
                .freed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Closes every idle connection (the next calls open new ones).
    pub(super) fn clear(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let n = state.idle.len();
        state.idle.clear();
        state.open -= n;
    }
}

/// A connection on loan; back to the pool on drop unless it broke.
pub(super) struct Pooled<'p> {
    pool: &'p Pool,
    conn: Option<PgConn>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = PgConn;
    fn deref(&self) -> &PgConn {
        self.conn.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut PgConn {
        self.conn.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let mut state = self.pool.state.lock().unwrap_or_else(|p| p.into_inner());
        match self.conn.take() {
            Some(conn) if !conn.client.is_closed() => state.idle.push(conn),
            _ => state.open -= 1,
        }
        self.pool.freed.notify_one();
    }
}
