//! A SQLite connection owned by one thread, reached over a channel.
//!
//! SQLite calls block (disk I/O, the busy handler), so async code never
//! makes them itself and never holds a connection lock: it sends a job (a
//! closure over `&mut Connection`) to the owning thread and awaits the
//! answer. Jobs run one at a time, in the order sent, so a layer that owns a
//! [`DbThread`] also owns the order of its transactions.
//!
//! Dropping the last handle closes the connection and waits for it to be
//! closed. That wait is what keeps a process that simply returns from
//! `main` safe: SQLCipher frees its provider and private heap in an exit
//! handler, and a connection still closing on its own thread at that moment
//! frees the same memory again ("double free or corruption", seen once in a
//! benchmark child that dropped its client just before exiting).

use crate::error::{ClientError, ClientResult};
use rusqlite::Connection;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, mpsc};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

enum Msg {
    Job(Job),
    /// Close the connection, then answer.
    Close(mpsc::Sender<()>),
}

/// The handle of a connection-owning thread. Cloning it shares the thread;
/// the thread (and its connection) ends at [`DbThread::close`] or when the
/// last handle is dropped, which then waits for the connection to close.
#[derive(Clone)]
pub(crate) struct DbThread {
    owner: Arc<Owner>,
    name: &'static str,
}

/// Shared by every handle of one thread; its drop is the last handle's.
struct Owner {
    jobs: mpsc::Sender<Msg>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        let (done, _) = mpsc::channel();
        // Fails only if the thread has already ended (after `close`).
        let _ = self.jobs.send(Msg::Close(done));
        if let Some(thread) = self.thread.take() {
            // A job that held the last handle ends on the thread itself,
            // which cannot wait for itself; it returns right after.
            if thread.thread().id() != std::thread::current().id() {
                // Closing a connection takes milliseconds; the jobs queued
                // before it are the ones the dropped handles had sent.
                let _ = thread.join();
            }
        }
    }
}

impl DbThread {
    /// Moves `conn` to a new thread named `name`.
    pub(crate) fn spawn(name: &'static str, mut conn: Connection) -> ClientResult<DbThread> {
        let (jobs, queue) = mpsc::channel::<Msg>();
        let thread = std::thread::Builder::new()
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
        Ok(DbThread {
            name,
            owner: Arc::new(Owner {
                jobs,
                thread: Some(thread),
            }),
        })
    }

    /// Runs `f` on the thread's connection and returns its answer.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> ClientResult<T> + Send + 'static,
    ) -> ClientResult<T> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.owner
            .jobs
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
        if self.owner.jobs.send(Msg::Close(done)).is_ok() {
            let _ = tokio::task::spawn_blocking(move || closed.recv()).await;
        }
    }
}
