//! The one clock every expiry, epoch and lifetime check reads. Production uses
//! [`SystemClock`]; tests hand a [`ManualClock`] to the verifier and the services
//! and move it, instead of sleeping until a token expires.

use std::{
    fmt::Debug,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Tells the time in Unix seconds.
pub trait Clock: Debug + Send + Sync + 'static {
    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> i64;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
            })
    }
}

/// A clock that stands still until moved: starts at the system time, then
/// changes only through [`ManualClock::advance`].
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock reading the system time now.
    pub fn new() -> Self {
        Self(Arc::new(AtomicI64::new(SystemClock.now_unix())))
    }

    /// Moves the clock (and every copy of it) forward by `by`, whole seconds.
    pub fn advance(&self, by: Duration) {
        let seconds = i64::try_from(by.as_secs()).unwrap_or(i64::MAX);
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A shared clock, as services and verifiers hold it.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock, shared.
pub fn system_clock() -> SharedClock {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced_and_copies_follow() {
        let clock = ManualClock::new();
        let copy = clock.clone();
        let start = clock.now_unix();
        assert_eq!(copy.now_unix(), start);
        clock.advance(Duration::from_secs(90));
        assert_eq!(copy.now_unix(), start + 90);
    }
}
