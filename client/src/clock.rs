//! Wall-clock time and new ids, injectable so that tests are deterministic.
//!
//! The client stamps what it records (when a change was made, when the
//! server last answered, when a refusal arrived) with [`Clock::now`], and
//! makes row ids for the facade's convenience constructors with
//! [`IdSource::new_id`]. Timers (backoff, heartbeats) use tokio's clock, which
//! tests control separately.

use clinic_shared::model::Timestamp;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use uuid::Uuid;

/// The time of day, UTC.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_datetime(chrono::Utc::now())
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug)]
pub struct ManualClock {
    unix: AtomicI64,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            unix: AtomicI64::new(start.unix()),
        })
    }

    /// Moves the clock forward by `secs` seconds.
    pub fn advance(&self, secs: i64) {
        self.unix.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        let secs = self.unix.load(Ordering::SeqCst);
        Timestamp::from_unix(secs).unwrap_or_else(|| SystemClock.now())
    }
}

/// Where new row ids come from.
pub trait IdSource: Send + Sync + 'static {
    /// A fresh id (UUIDv7: time-ordered, made offline without coordination).
    fn new_id(&self) -> Uuid;
}

/// UUIDv7 from the system clock and randomness.
#[derive(Debug, Default, Clone, Copy)]
pub struct V7Ids;

impl IdSource for V7Ids {
    fn new_id(&self) -> Uuid {
        Uuid::now_v7()
    }
}
