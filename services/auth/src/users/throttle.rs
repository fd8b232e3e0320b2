//! Throttling of credential checks: after a few consecutive failures for a key
//! (a username, a client id), further attempts wait an exponentially growing
//! delay. An attempt reserves its slot before any hashing, so a burst of
//! concurrent guesses is evaluated only up to the failure budget. Unknown names
//! are throttled exactly like known ones, so the answer reveals nothing.
//!
//! Entries live in a bounded cache (moka) keyed by a SHA-256 of the normalised
//! name: a flood of distinct names costs bounded memory.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use sha2::{Digest, Sha256};
use tokio::time::Instant;

/// How throttling behaves.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleConfig {
    /// Consecutive failures allowed before delays start.
    pub free_failures: u32,
    /// The first delay; each further failure doubles it.
    pub base_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            free_failures: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
        }
    }
}

/// Names tracked at most (about 150 bytes each with the cache's own bookkeeping):
/// beyond, moka evicts the least useful (its admission policy keeps the
/// frequently tried names over a flood of one-off ones).
const MAX_ENTRIES: u64 = 100_000;

/// An entry idle this long is forgotten (unless its delay is longer).
const IDLE_FORGET: Duration = Duration::from_secs(3600);

/// A key's state: failures since the last success, attempts being evaluated.
#[derive(Debug, Default)]
struct Failures {
    count: u32,
    in_flight: u32,
    locked_until: Option<Instant>,
}

/// A key of the throttle: SHA-256 of its normalised name.
pub(crate) type Key = [u8; 32];

/// Per-name failure counts (in memory, per Auth replica).
#[derive(Debug)]
pub struct Throttle {
    config: ThrottleConfig,
    entries: moka::future::Cache<Key, Arc<Mutex<Failures>>>,
}

impl Throttle {
    /// A throttle with `config`.
    pub fn new(config: ThrottleConfig) -> Self {
        Self::with_capacity(config, MAX_ENTRIES)
    }

    /// A throttle tracking at most `capacity` names.
    fn with_capacity(config: ThrottleConfig, capacity: u64) -> Self {
        Self {
            config,
            entries: moka::future::Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(IDLE_FORGET.max(config.max_delay.saturating_mul(2)))
                .build(),
        }
    }

    /// Reserves an attempt for `name` before it is evaluated, or `Err(how long
    /// to wait)`: while `name` is locked, or while the attempts in flight
    /// would, if they all failed, use up the failure budget.
    pub async fn reserve(&self, name: &str) -> Result<Attempt, Duration> {
        let entry = self
            .entries
            .get_with(key(name), async { Arc::default() })
            .await;
        {
            let mut failures = entry.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if let Some(until) = failures.locked_until.filter(|until| *until > now) {
                return Err(until - now);
            }
            // Before the budget is used up, as many attempts as it has left;
            // after (each failure then locks), one at a time.
            let slots = self
                .config
                .free_failures
                .saturating_sub(failures.count)
                .max(1);
            if failures.in_flight >= slots {
                return Err(self.config.base_delay);
            }
            failures.in_flight += 1;
        }
        Ok(Attempt {
            entry,
            config: self.config,
            settled: false,
        })
    }
}

/// An attempt being evaluated; dropped unsettled (the request was cancelled),
/// it frees its slot without counting.
#[derive(Debug)]
pub struct Attempt {
    entry: Arc<Mutex<Failures>>,
    config: ThrottleConfig,
    settled: bool,
}

impl Attempt {
    /// Counts a failure; returns the delay it imposes, if any.
    pub fn failed(mut self) -> Option<Duration> {
        self.settled = true;
        let mut failures = self.entry.lock().unwrap_or_else(|e| e.into_inner());
        failures.in_flight = failures.in_flight.saturating_sub(1);
        failures.count = failures.count.saturating_add(1);
        let over = failures.count.checked_sub(self.config.free_failures)?;
        let delay = self
            .config
            .base_delay
            .saturating_mul(2u32.saturating_pow(over.min(20)))
            .min(self.config.max_delay);
        failures.locked_until = Some(Instant::now() + delay);
        Some(delay)
    }

    /// Forgets the name's failures after a success.
    pub fn succeeded(mut self) {
        self.settled = true;
        let mut failures = self.entry.lock().unwrap_or_else(|e| e.into_inner());
        failures.in_flight = failures.in_flight.saturating_sub(1);
        failures.count = 0;
        failures.locked_until = None;
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.settled {
            let mut failures = self.entry.lock().unwrap_or_else(|e| e.into_inner());
            failures.in_flight = failures.in_flight.saturating_sub(1);
        }
    }
}

/// SHA-256 of `name` lowercased: `Alice` and `alice` share one budget, and a
/// key is 32 bytes however long the name.
pub(crate) fn key(name: &str) -> Key {
    let mut hasher = Sha256::new();
    let mut buffer = [0u8; 4];
    for c in name.chars().flat_map(char::to_lowercase) {
        hasher.update(c.encode_utf8(&mut buffer).as_bytes());
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(free_failures: u32) -> Throttle {
        Throttle::new(ThrottleConfig {
            free_failures,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(3),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn delays_start_after_the_free_failures_and_double() {
        let throttle = throttle(2);
        assert_eq!(throttle.reserve("a").await.expect("free").failed(), None);
        let second = throttle.reserve("a").await.expect("free");
        assert_eq!(second.failed(), Some(Duration::from_secs(1)));
        assert_eq!(
            throttle.reserve("a").await.map(drop),
            Err(Duration::from_secs(1))
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        let third = throttle.reserve("A").await.expect("lock lapsed");
        assert_eq!(third.failed(), Some(Duration::from_secs(2)), "one name");
        tokio::time::advance(Duration::from_secs(2)).await;
        let fourth = throttle.reserve("a").await.expect("lock lapsed");
        assert_eq!(fourth.failed(), Some(Duration::from_secs(3)), "capped");
        assert!(throttle.reserve("b").await.is_ok(), "per name");
        tokio::time::advance(Duration::from_secs(3)).await;
        throttle
            .reserve("a")
            .await
            .expect("lock lapsed")
            .succeeded();
        assert!(throttle.reserve("a").await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_in_flight_hold_the_budget_until_they_settle() {
        let throttle = throttle(2);
        let first = throttle.reserve("a").await.expect("slot 1");
        let second = throttle.reserve("a").await.expect("slot 2");
        assert_eq!(
            throttle.reserve("a").await.map(drop),
            Err(Duration::from_secs(1)),
            "both slots in flight"
        );
        drop(first);
        let third = throttle
            .reserve("a")
            .await
            .expect("a cancelled attempt frees its slot");
        second.succeeded();
        third.failed();
        assert!(throttle.reserve("a").await.is_ok());
    }

    #[tokio::test]
    async fn a_flood_of_distinct_names_stays_within_the_capacity() {
        let throttle = Throttle::with_capacity(ThrottleConfig::default(), 100);
        for n in 0..5_000 {
            let name = format!("{n}-{}", "x".repeat(1_000));
            throttle.reserve(&name).await.expect("fresh name").failed();
        }
        throttle.entries.run_pending_tasks().await;
        assert!(throttle.entries.entry_count() <= 100);
    }
}
