//! Throttling of login attempts: after a few consecutive failures for a
//! username, further attempts wait an exponentially growing delay. An attempt
//! reserves its slot before any hashing, so a burst of concurrent guesses is
//! evaluated only up to the failure budget. Unknown names are throttled exactly
//! like known ones, so the answer reveals nothing.
//!
//! The budget lives in the database, keyed by a SHA-256 of the normalised name,
//! so that failures spread over every Auth replica count as one; locks are
//! measured on Auth's clock, and untouched rows expire and are pruned.

use std::time::Duration;

use sha2::{Digest, Sha256};
use tokenmesh_interceptor::SharedClock;

use crate::{
    config::secs,
    store::{Lock, Reservation, Store, StoreError},
};

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

/// A name untouched this long is forgotten (unless its delay is longer).
const IDLE_FORGET: Duration = Duration::from_secs(3600);

/// A reservation older than this is presumed lost with the replica that made
/// it (no password check takes that long).
const STALE_RESERVATION: Duration = Duration::from_secs(60);

/// A key of the throttle: SHA-256 of its normalised name.
pub(crate) type Key = [u8; 32];

/// Per-name failure counts, shared by every replica through the store.
#[derive(Debug)]
pub struct Throttle {
    config: ThrottleConfig,
    store: Store,
    clock: SharedClock,
}

impl Throttle {
    /// A throttle with `config` over `store`, on `clock`.
    pub fn new(config: ThrottleConfig, store: Store, clock: SharedClock) -> Self {
        Self {
            config,
            store,
            clock,
        }
    }

    /// Reserves an attempt for `name` before it is evaluated, or `Err(how long
    /// to wait)`: while `name` is locked, or while the attempts in flight
    /// would, if they all failed, use up the failure budget.
    pub async fn reserve(&self, name: &str) -> Result<Result<Attempt, Duration>, StoreError> {
        let name_hash = hex_key(name);
        let now = self.clock.now_unix();
        let now_ms = now.saturating_mul(1000);
        let forget = IDLE_FORGET.max(self.config.max_delay.saturating_mul(2));
        let at = Reservation {
            now,
            now_ms,
            free_failures: i64::from(self.config.free_failures),
            stale_before: now.saturating_sub(secs(STALE_RESERVATION)),
            expires_at: now.saturating_add(secs(forget)),
        };
        if self.store.reserve_login_attempt(&name_hash, at).await? {
            return Ok(Ok(Attempt {
                name_hash,
                store: self.store.clone(),
                clock: self.clock.clone(),
                config: self.config,
                settled: false,
            }));
        }
        let locked_until = self.store.login_locked_until(&name_hash).await?;
        let wait = match u64::try_from(locked_until.saturating_sub(now_ms)) {
            Ok(ms) if ms > 0 => Duration::from_millis(ms),
            _ => self.config.base_delay,
        };
        Ok(Err(wait))
    }

    /// Forgets the names untouched past their expiry.
    pub async fn prune(&self) -> Result<u64, StoreError> {
        self.store.prune_login_throttle(self.clock.now_unix()).await
    }
}

/// An attempt being evaluated; dropped unsettled (the request was cancelled),
/// it frees its slot without counting.
#[derive(Debug)]
pub struct Attempt {
    name_hash: String,
    store: Store,
    clock: SharedClock,
    config: ThrottleConfig,
    settled: bool,
}

impl Attempt {
    /// Counts a failure; returns the delay it imposes, if any.
    pub async fn failed(mut self) -> Result<Option<Duration>, StoreError> {
        self.settled = true;
        let config = self.config;
        // The first failure that locks is the `max(free, 1)`-th: it waits
        // `base_delay` doubled once per failure past the free ones.
        let first_over = config.free_failures.max(1) - config.free_failures;
        let first = config
            .base_delay
            .saturating_mul(2u32.saturating_pow(first_over))
            .min(config.max_delay);
        let lock = Lock {
            now_ms: self.clock.now_unix().saturating_mul(1000),
            free_failures: i64::from(config.free_failures),
            first_delay_ms: millis(first),
            max_delay_ms: millis(config.max_delay),
        };
        let delay = self
            .store
            .login_attempt_failed(&self.name_hash, lock)
            .await?;
        Ok(u64::try_from(delay)
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis))
    }

    /// Forgets the name's failures after a success.
    pub async fn succeeded(mut self) -> Result<(), StoreError> {
        self.settled = true;
        self.store.login_attempt_ended(&self.name_hash, true).await
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        // Cancelled mid-check: free the slot in the background (a reservation
        // that is never freed goes stale after STALE_RESERVATION anyway).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, name_hash) = (self.store.clone(), std::mem::take(&mut self.name_hash));
            runtime.spawn(async move {
                if let Err(error) = store.login_attempt_ended(&name_hash, false).await {
                    tracing::warn!(%error, "freeing a cancelled login attempt's slot failed");
                }
            });
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

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// [`key`] in hex, as the store keeps it.
fn hex_key(name: &str) -> String {
    crate::tokens::hex(&key(name))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokenmesh_interceptor::ManualClock;
    use tokenmesh_server::db::sqlite_url;

    use super::*;

    /// A throttle on a fresh SQLite store, and the clock it reads.
    async fn throttle(free_failures: u32) -> (Throttle, ManualClock, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&sqlite_url(&dir.path().join("auth.db")))
            .await
            .expect("store");
        let clock = ManualClock::new();
        let config = ThrottleConfig {
            free_failures,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(3),
        };
        (
            Throttle::new(config, store, Arc::new(clock.clone())),
            clock,
            dir,
        )
    }

    async fn reserve(throttle: &Throttle, name: &str) -> Result<Attempt, Duration> {
        throttle.reserve(name).await.expect("store")
    }

    #[tokio::test]
    async fn delays_start_after_the_free_failures_and_double() {
        let (throttle, clock, _dir) = throttle(2).await;
        let first = reserve(&throttle, "a").await.expect("free");
        assert_eq!(first.failed().await.expect("store"), None);
        let second = reserve(&throttle, "a").await.expect("free");
        assert_eq!(
            second.failed().await.expect("store"),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            reserve(&throttle, "a").await.map(drop),
            Err(Duration::from_secs(1))
        );
        clock.advance(Duration::from_secs(1));
        let third = reserve(&throttle, "A").await.expect("lock lapsed");
        assert_eq!(
            third.failed().await.expect("store"),
            Some(Duration::from_secs(2)),
            "one name"
        );
        clock.advance(Duration::from_secs(2));
        let fourth = reserve(&throttle, "a").await.expect("lock lapsed");
        assert_eq!(
            fourth.failed().await.expect("store"),
            Some(Duration::from_secs(3)),
            "capped"
        );
        assert!(reserve(&throttle, "b").await.is_ok(), "per name");
        clock.advance(Duration::from_secs(3));
        let fifth = reserve(&throttle, "a").await.expect("lock lapsed");
        fifth.succeeded().await.expect("store");
        assert!(reserve(&throttle, "a").await.is_ok());
    }

    #[tokio::test]
    async fn attempts_in_flight_hold_the_budget_until_they_settle() {
        let (throttle, _clock, _dir) = throttle(2).await;
        let first = reserve(&throttle, "a").await.expect("slot 1");
        let second = reserve(&throttle, "a").await.expect("slot 2");
        assert_eq!(
            reserve(&throttle, "a").await.map(drop),
            Err(Duration::from_secs(1)),
            "both slots in flight"
        );
        drop(first);
        let third = freed_slot(&throttle).await;
        second.succeeded().await.expect("store");
        third.failed().await.expect("store");
        assert!(reserve(&throttle, "a").await.is_ok());
    }

    /// A cancelled attempt frees its slot in the background: the next
    /// reservation succeeds once it has.
    async fn freed_slot(throttle: &Throttle) -> Attempt {
        for _ in 0..1000 {
            if let Ok(attempt) = reserve(throttle, "a").await {
                return attempt;
            }
            tokio::task::yield_now().await;
        }
        panic!("a cancelled attempt never freed its slot");
    }

    #[tokio::test]
    async fn a_lost_reservation_goes_stale_and_untouched_names_are_pruned() {
        let (throttle, clock, _dir) = throttle(1).await;
        let lost = reserve(&throttle, "a").await.expect("slot");
        std::mem::forget(lost);
        assert!(reserve(&throttle, "a").await.is_err(), "its slot is held");
        clock.advance(STALE_RESERVATION + Duration::from_secs(1));
        let again = reserve(&throttle, "a").await.expect("stale slot reclaimed");
        again.failed().await.expect("store");
        assert_eq!(throttle.prune().await.expect("store"), 0, "not yet expired");
        clock.advance(IDLE_FORGET);
        assert_eq!(throttle.prune().await.expect("store"), 1);
        assert!(reserve(&throttle, "a").await.is_ok(), "forgotten");
    }
}
