//! This replica's view of its own feed position, kept by a follower reading
//! `entitlement_events` at every ENTITLEMENTS wake-up: the revision the read
//! caches are labelled with, trusted only while the follower keeps reading.
//!
//! Staleness: a write here moves the view before it is answered; another
//! replica's once its NOTIFY (PostgreSQL, milliseconds) or the next poll
//! (SQLite, 500 ms) is heard and read. Past [`FeedView::bound`] without a
//! successful read (2 poll intervals: 1 s on SQLite, 10 s on PostgreSQL, plus
//! under a second for the clock's whole seconds) reads go to the database.

use std::{
    sync::{
        Weak,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use tokenmesh_interceptor::SharedClock;
use tokio::sync::watch;

use crate::Store;

/// Never read.
const NEVER: i64 = i64::MIN;

/// The feed position every change up to which a read starting now sees, and
/// whether it is current.
#[derive(Debug)]
pub(crate) struct FeedView {
    /// Every feed change through it is committed: the follower read it, or a
    /// write here made it. Seq numbers are committed in order (one appender
    /// at a time), so nothing below it is still to come.
    revision: AtomicI64,
    /// When the last successful read started (clock seconds), or [`NEVER`].
    read_at: AtomicI64,
    /// Longest time since `read_at` the view is trusted, in whole seconds.
    bound: i64,
    clock: SharedClock,
    /// The position of the last successful read (`None`: never read), for a
    /// test waiting for the follower.
    #[cfg(test)]
    reads: watch::Sender<Option<i64>>,
}

impl FeedView {
    /// A view not read yet (so not trusted), trusted for twice `poll` after
    /// each read: a follower that is alive reads at least every `poll`.
    pub(crate) fn new(clock: SharedClock, poll: Duration) -> Self {
        let bound = (poll * 2).as_millis().div_ceil(1000).max(1);
        Self {
            revision: AtomicI64::new(0),
            read_at: AtomicI64::new(NEVER),
            bound: i64::try_from(bound).unwrap_or(i64::MAX),
            clock,
            #[cfg(test)]
            reads: watch::Sender::new(None),
        }
    }

    /// How long after its last read the view is trusted.
    pub(crate) fn bound(&self) -> Duration {
        Duration::from_secs(self.bound.unsigned_abs())
    }

    /// The revision to label a read starting now with; `None` when the
    /// follower has not read the feed within the bound (or ever): read the
    /// database, without the caches.
    pub(crate) fn current(&self) -> Option<i64> {
        let read_at = self.read_at.load(Ordering::Acquire);
        let silent = self.clock.now_unix().saturating_sub(read_at);
        (read_at != NEVER && silent <= self.bound).then(|| self.revision.load(Ordering::Acquire))
    }

    /// Every change through `cursor` is committed (a write here answered
    /// with it): reads from now on are labelled at least `cursor`.
    pub(crate) fn advance_to(&self, cursor: i64) {
        self.revision.fetch_max(cursor, Ordering::AcqRel);
    }

    /// The follower read the feed through `cursor` in a read that started at
    /// `started` (clock seconds).
    pub(crate) fn read_through(&self, cursor: i64, started: i64) {
        self.advance_to(cursor);
        self.read_at.fetch_max(started, Ordering::AcqRel);
        #[cfg(test)]
        self.reads.send_replace(Some(cursor));
    }

    /// The positions the feed is read through, as each read succeeds: what
    /// a test waits for instead of polling the view.
    #[cfg(test)]
    pub(crate) fn reads(&self) -> watch::Receiver<Option<i64>> {
        self.reads.subscribe()
    }

    /// The clock's time now, for [`FeedView::read_through`].
    pub(crate) fn now(&self) -> i64 {
        self.clock.now_unix()
    }
}

/// Reads the feed's last position at once, then whenever `wake`
/// ticks (a write here, another replica's NOTIFY) and at least every `poll`,
/// until the view is dropped. A failing read is logged once per outage; the
/// view then ages past its bound and reads go to the database.
pub(crate) async fn follow(
    view: Weak<FeedView>,
    store: Store,
    mut wake: watch::Receiver<u64>,
    poll: Duration,
) {
    let mut failing = false;
    loop {
        // Seen before reading: a write during the read ticks the next wait.
        wake.borrow_and_update();
        let Some(view) = view.upgrade() else {
            return;
        };
        let started = view.now();
        // Its last position is all a read needs: every change up to it is
        // committed (one appender at a time), and the caches keep no rows.
        match store.revision().await {
            Ok(through) => {
                view.read_through(through, started);
                if failing {
                    tracing::info!("entitlement feed readable again: read caches back in use");
                    failing = false;
                }
            }
            Err(error) => {
                if !failing {
                    let bound_secs = view.bound().as_secs();
                    tracing::warn!(%error, bound_secs, "reading the entitlement feed failed: reads go to the database once it has failed for the bound");
                    failing = true;
                }
            }
        }
        drop(view);
        tokio::select! {
            // A closed channel (its wake-ups gone) leaves the poll.
            Ok(()) = wake.changed() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokenmesh_interceptor::ManualClock;

    use super::*;

    #[test]
    fn trusted_from_the_first_read_until_twice_the_poll_has_passed_without_one() {
        let clock = ManualClock::new();
        let view = FeedView::new(Arc::new(clock.clone()), Duration::from_millis(500));
        assert_eq!(view.bound(), Duration::from_secs(1));
        view.advance_to(3);
        assert_eq!(view.current(), None, "never read");
        view.read_through(2, view.now());
        assert_eq!(view.current(), Some(3), "a write here moved it further");
        clock.advance(Duration::from_secs(1));
        assert_eq!(view.current(), Some(3), "at the bound");
        clock.advance(Duration::from_secs(1));
        assert_eq!(view.current(), None, "past the bound");
        view.read_through(5, view.now());
        assert_eq!(view.current(), Some(5));
        view.advance_to(4);
        assert_eq!(view.current(), Some(5), "never moves back");
        let postgres = FeedView::new(Arc::new(clock), Duration::from_secs(5));
        assert_eq!(postgres.bound(), Duration::from_secs(10));
    }
}
