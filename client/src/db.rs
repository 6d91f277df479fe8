//! A SQLite connection owned by one thread, reached over a channel.
//!
//! SQLite calls block (disk I/O, the busy handler), so async code never
//! makes them itself and never holds a connection lock: it sends a job (a
//! closure over `&mut Connection`) to the owning thread and awaits the
//! answer. Jobs run one at a time, in the order sent, so a layer that owns a
//! [`DbThread`] also owns the order of its transactions.

use crate::error::{ClientError, ClientResult};
use rusqlite::Connection;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

enum Msg {
    Job(Job),
    /// Close the connection, then answer.
    Close(mpsc::Sender<()>),
}

/// The handle of a connection-owning thread. Cloning it shares the thread;
/// the thread (and its connection) ends when the last handle is dropped or
/// at [`DbThread::close`].
#[derive(Clone)]
pub(crate) struct DbThread {
    jobs: mpsc::Sender<Msg>,
    name: &'static str,
}

impl DbThread {
    /// Moves `conn` to a new thread named `name`.
    pub(crate) fn spawn(name: &'static str, mut conn: Connection) -> ClientResult<DbThread> {
        let (jobs, queue) = mpsc::channel::<Msg>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while let Ok(msg) = queue.recv() {
                    match msg {
                        // A panicking job fails its own call (its answer
                        // channel is dropped), not every call after it.
                        Msg::Job(job) => {
                            if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut conn)))
                                .is_err()
                            {
                                tracing::error!(thread = name, "a database job panicked");
                            }
                        }
                        Msg::Close(done) => {
                            drop(conn);
                            let _ = done.send(());
                            return;
                        }
                    }
                }
            })
            .map_err(|source| ClientError::Io {
                context: format!("starting the {name} thread"),
                source,
            })?;
        Ok(DbThread { jobs, name })
    }

    /// Runs `f` on the thread's connection and returns its answer.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> ClientResult<T> + Send + 'static,
    ) -> ClientResult<T> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Msg::Job(Box::new(move |conn| {
                let _ = answer.send(f(conn));
            })))
            .map_err(|_| ClientError::Stopped(self.name))?;
        answered
            .await
            .map_err(|_| ClientError::Stopped(self.name))?
    }

    /// Closes the connection after the jobs already sent, and waits until it
    /// is closed (so its files can be removed). Later calls fail `Stopped`.
    pub(crate) async fn close(&self) {
        let (done, closed) = mpsc::channel();
        if self.jobs.send(Msg::Close(done)).is_ok() {
            let _ = tokio::task::spawn_blocking(move || closed.recv()).await;
        }
    }
}
