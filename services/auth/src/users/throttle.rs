//! Login throttling: after a few consecutive failures for a username, further
//! attempts wait an exponentially growing delay. Unknown usernames are throttled
//! exactly like known ones, so the answer reveals nothing about existence.

use std::{collections::HashMap, sync::Mutex, time::Duration};

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

/// Entries kept at most; beyond, the ones whose lock has lapsed are dropped.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    locked_until: Option<Instant>,
}

/// Per-username failure counts (in memory, per Auth replica).
#[derive(Debug, Default)]
pub struct Throttle {
    config: ThrottleConfig,
    failures: Mutex<HashMap<String, Failures>>,
}

impl Throttle {
    /// A throttle with `config`.
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            failures: Mutex::default(),
        }
    }

    /// `Err(remaining delay)` while `username` is locked.
    pub fn check(&self, username: &str) -> Result<(), Duration> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match failures.get(username).and_then(|f| f.locked_until) {
            Some(until) if until > Instant::now() => Err(until - Instant::now()),
            _ => Ok(()),
        }
    }

    /// Counts a failure; returns the delay it imposes, if any.
    pub fn failed(&self, username: &str) -> Option<Duration> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_ENTRIES {
            let now = Instant::now();
            failures.retain(|_, f| f.locked_until.is_some_and(|until| until > now));
        }
        let entry = failures.entry(username.to_owned()).or_insert(Failures {
            count: 0,
            locked_until: None,
        });
        entry.count = entry.count.saturating_add(1);
        let over = entry.count.checked_sub(self.config.free_failures)?;
        let delay = self
            .config
            .base_delay
            .saturating_mul(2u32.saturating_pow(over.min(20)))
            .min(self.config.max_delay);
        entry.locked_until = Some(Instant::now() + delay);
        Some(delay)
    }

    /// Forgets `username`'s failures after a successful login.
    pub fn succeeded(&self, username: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(username);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn delays_start_after_the_free_failures_and_double() {
        let throttle = Throttle::new(ThrottleConfig {
            free_failures: 2,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(3),
        });
        assert_eq!(throttle.failed("a"), None);
        assert_eq!(throttle.check("a"), Ok(()));
        assert_eq!(throttle.failed("a"), Some(Duration::from_secs(1)));
        assert_eq!(throttle.check("a"), Err(Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(throttle.check("a"), Ok(()));
        assert_eq!(throttle.failed("a"), Some(Duration::from_secs(2)));
        assert_eq!(throttle.failed("a"), Some(Duration::from_secs(3)), "capped");
        assert_eq!(throttle.check("b"), Ok(()), "per username");
        throttle.succeeded("a");
        assert_eq!(throttle.check("a"), Ok(()));
    }
}
