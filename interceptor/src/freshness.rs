//! Whether what a followed feed built (a revocation set, a replica) can still be
//! trusted to be complete: each stream replayed to its end, and heard from — a
//! change or a heartbeat — within a bound, on the injected clock. Past it, fail
//! closed; and a stream mid-replay restores no trust.

use std::{
    fmt,
    sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
    time::Duration,
};

use crate::SharedClock;

/// Never heard.
const NEVER: i64 = i64::MIN;

/// How current a followed feed is. The follower reports what it hears; readers
/// ask [`FeedFreshness::check`] before trusting what the feed built.
pub struct FeedFreshness {
    clock: SharedClock,
    /// Longest silence tolerated, in seconds.
    bound: i64,
    /// The first replay has reached the end of the feed.
    replayed: AtomicBool,
    /// A stream is open, has replayed what was missed to its end, and is
    /// delivering (the follower drops one that goes quiet for longer than its
    /// heartbeat timeout).
    connected: AtomicBool,
    /// The clock's time of the last event, heartbeat or marker heard on a
    /// connected stream; [`NEVER`] before.
    last_heard: AtomicI64,
    /// The last feed position applied (0: none).
    position: AtomicU64,
    /// Woken when `replayed` or `connected` changes (health follows at once).
    changed: tokio::sync::Notify,
}

impl fmt::Debug for FeedFreshness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedFreshness")
            .field("bound", &self.bound)
            .field("replayed", &self.replayed.load(Ordering::Relaxed))
            .field("connected", &self.connected.load(Ordering::Relaxed))
            .field("last_heard", &self.last_heard.load(Ordering::Relaxed))
            .field("position", &self.position.load(Ordering::Relaxed))
            .finish()
    }
}

/// Why a feed cannot be trusted right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// The first replay has not completed.
    NotReplayed,
    /// Nothing heard for `silent_secs`, more than `bound_secs`.
    Silent {
        /// Seconds since the feed was last heard.
        silent_secs: i64,
        /// The bound.
        bound_secs: i64,
    },
}

impl fmt::Display for Stale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stale::NotReplayed => f.write_str("feed not replayed yet"),
            Stale::Silent {
                silent_secs: i64::MAX,
                ..
            } => f.write_str("feed never heard"),
            Stale::Silent {
                silent_secs,
                bound_secs,
            } => write!(
                f,
                "feed silent for {silent_secs} s, past its {bound_secs} s bound"
            ),
        }
    }
}

impl FeedFreshness {
    /// A feed not replayed yet, trusted while it is connected or was heard
    /// within `bound`, reading the time from `clock`.
    pub fn new(clock: SharedClock, bound: Duration) -> Self {
        Self {
            clock,
            bound: i64::try_from(bound.as_secs()).unwrap_or(i64::MAX),
            replayed: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            last_heard: AtomicI64::new(NEVER),
            position: AtomicU64::new(0),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// An event arrived on a stream. It counts only once that stream has
    /// replayed what was missed ([`FeedFreshness::replayed`]): mid-replay, what
    /// the feed built still lacks the rest of the replay, however long it took,
    /// and a feed silent past its bound must stay untrusted until it has it all.
    pub fn heard(&self) {
        if self.connected.load(Ordering::Acquire) {
            self.last_heard
                .fetch_max(self.clock.now_unix(), Ordering::AcqRel);
        }
    }

    /// A stream's replay reached the end of the feed: what the feed built is
    /// complete, and the stream is current from here (also an event heard).
    pub fn replayed(&self) {
        self.last_heard
            .fetch_max(self.clock.now_unix(), Ordering::AcqRel);
        let was_connected = self.connected.swap(true, Ordering::AcqRel);
        let was_replayed = self.replayed.swap(true, Ordering::AcqRel);
        if !was_connected || !was_replayed {
            self.changed.notify_waiters();
        }
    }

    /// What the feed built now reflects it up to `position`.
    pub fn applied(&self, position: u64) {
        self.position.store(position, Ordering::Release);
    }

    /// The last position applied (0: none), for operators comparing replicas.
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    /// The stream ended or failed: silence counts from the last event heard.
    pub fn disconnected(&self) {
        if self.connected.swap(false, Ordering::AcqRel) {
            self.changed.notify_waiters();
        }
    }

    /// Resolves at the next change of replay or connection state (not of the
    /// clock: poll [`FeedFreshness::check`] for that too). Create it before
    /// checking, so that a change in between is not missed.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Whether the feed has been replayed to its end once (kept through
    /// disconnects).
    pub fn is_replayed(&self) -> bool {
        self.replayed.load(Ordering::Acquire)
    }

    /// Whether a stream is open, replayed to its end, and delivering.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Seconds since the feed was last heard, on the clock; `None`: never.
    pub fn silent_secs(&self) -> Option<i64> {
        let last = self.last_heard.load(Ordering::Acquire);
        (last != NEVER).then(|| self.clock.now_unix().saturating_sub(last).max(0))
    }

    /// Whether what the feed built can be trusted now. A connected stream is
    /// current (its follower drops it when heartbeats stop); a broken one, or
    /// a new one still replaying, is trusted until the silence since the last
    /// connected stream exceeds the bound.
    pub fn check(&self) -> Result<(), Stale> {
        if !self.is_replayed() {
            return Err(Stale::NotReplayed);
        }
        if self.connected.load(Ordering::Acquire) {
            return Ok(());
        }
        match self.silent_secs() {
            Some(silent_secs) if silent_secs <= self.bound => Ok(()),
            silent => Err(Stale::Silent {
                silent_secs: silent.unwrap_or(i64::MAX),
                bound_secs: self.bound,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ManualClock;

    #[test]
    fn trusted_once_replayed_while_connected_and_up_to_the_bound_after() {
        let clock = ManualClock::new();
        let feed = FeedFreshness::new(Arc::new(clock.clone()), Duration::from_secs(60));
        assert_eq!(feed.check(), Err(Stale::NotReplayed));
        assert_eq!(feed.silent_secs(), None);
        feed.heard();
        assert_eq!(feed.check(), Err(Stale::NotReplayed), "heard, not replayed");
        feed.replayed();
        clock.advance(Duration::from_secs(3600));
        assert_eq!(feed.check(), Ok(()), "connected: current");
        assert_eq!(feed.silent_secs(), Some(3600));
        feed.heard();
        feed.disconnected();
        clock.advance(Duration::from_secs(60));
        assert_eq!(feed.check(), Ok(()), "at the bound");
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            feed.check(),
            Err(Stale::Silent {
                silent_secs: 61,
                bound_secs: 60
            })
        );
        // A new stream replays what was missed: until its end, what the feed
        // built lacks the rest, so its events restore no trust.
        feed.heard();
        assert_eq!(
            feed.check(),
            Err(Stale::Silent {
                silent_secs: 61,
                bound_secs: 60
            }),
            "mid-replay"
        );
        assert_eq!(feed.silent_secs(), Some(61));
        feed.replayed();
        assert_eq!(feed.check(), Ok(()), "replayed again");
        assert_eq!(feed.silent_secs(), Some(0));
    }

    #[test]
    fn a_stream_ended_mid_replay_leaves_the_silence_counting() {
        let clock = ManualClock::new();
        let feed = FeedFreshness::new(Arc::new(clock.clone()), Duration::from_secs(60));
        feed.replayed();
        feed.disconnected();
        clock.advance(Duration::from_secs(50));
        // A stream that replays part of what was missed, then ends.
        feed.heard();
        feed.disconnected();
        clock.advance(Duration::from_secs(11));
        assert_eq!(
            feed.check(),
            Err(Stale::Silent {
                silent_secs: 61,
                bound_secs: 60
            })
        );
        assert!(!feed.is_connected());
    }
}
