//! The LISTEN connection of one server: wake-ups for other processes'
//! commits and security events.

use super::pool::Pool;
use super::{CHANGES_CHANNEL, SECURITY_CHANNEL, db_err};
use crate::storage::{Signal, Wake};
use postgres::fallible_iterator::FallibleIterator;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The LISTEN loop: one connection, reconnected with backoff; every
/// notification becomes a wake-up. After each (re)connection it wakes for
/// both signals, since notifications sent while it was away are lost.
pub(super) fn listen(
    config: postgres::Config,
    wake: Wake,
    stop: Arc<AtomicBool>,
    connected: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_millis(50);
    let mut reported = false;
    while !stop.load(Ordering::SeqCst) {
        let client = Pool::connect(&config).and_then(|mut client| {
            client
                .batch_execute(&format!(
                    "LISTEN {CHANGES_CHANNEL}; LISTEN {SECURITY_CHANNEL}"
                ))
                .map_err(db_err)?;
            Ok(client)
        });
        let mut client = match client {
            Ok(c) => c,
            Err(e) => {
                if !reported {
                    tracing::warn!(error = %e, "cannot listen for other instances' commits; polling until the database is back");
                    reported = true;
                }
                sleep_unless(&stop, backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        if reported {
            tracing::info!("listening for other instances' commits again");
        }
        reported = false;
        backoff = Duration::from_millis(50);
        connected.store(true, Ordering::SeqCst);
        wake(Signal::Commits);
        wake(Signal::Security);
        let mut silent_since = Instant::now();
        loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let mut notifications = client.notifications();
            let mut iter = notifications.timeout_iter(Duration::from_millis(250));
            match iter.next() {
                Ok(Some(n)) => {
                    silent_since = Instant::now();
                    if n.channel() == SECURITY_CHANNEL {
                        wake(Signal::Security);
                    } else {
                        wake(Signal::Commits);
                    }
                }
                Ok(None) => {
                    drop(iter);
                    drop(notifications);
                    // A quiet connection may be a dead one: ask now and then.
                    if silent_since.elapsed() > Duration::from_secs(5) {
                        silent_since = Instant::now();
                        if client.batch_execute("").is_err() {
                            break;
                        }
                    }
                    if client.is_closed() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the notification connection dropped; polling until it is back");
                    break;
                }
            }
        }
        connected.store(false, Ordering::SeqCst);
    }
}

fn sleep_unless(stop: &AtomicBool, total: Duration) {
    let end = Instant::now() + total;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= end {
            return;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}
