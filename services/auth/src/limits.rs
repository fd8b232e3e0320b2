//! Rate limits of Auth's public token endpoints besides Login's throttle:
//! Refresh and Logout per client address (one budget for both), and
//! IssueServiceToken per client id. Token buckets in bounded caches keyed by a
//! SHA-256 of the key, so a flood of distinct keys costs bounded memory.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::Instant;

use crate::{
    AuthServiceError,
    counters::{Counters, Throttled},
    users::throttle::{Key, key},
};

/// Keys tracked at most per limit; beyond, moka evicts the least useful.
const MAX_KEYS: u64 = 100_000;

/// An idle key is forgotten after this long (its bucket is full again by then).
const IDLE_FORGET: Duration = Duration::from_secs(120);

/// One key's bucket: tokens left, as of `at`.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// At most `per_minute` calls per key, in bursts of up to as many.
#[derive(Debug)]
pub(crate) struct RateLimit {
    per_minute: u32,
    buckets: moka::future::Cache<Key, Arc<Mutex<Bucket>>>,
}

impl RateLimit {
    /// `per_minute` calls per key; 0: unlimited.
    pub(crate) fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: moka::future::Cache::builder()
                .max_capacity(MAX_KEYS)
                .time_to_idle(IDLE_FORGET)
                .build(),
        }
    }

    /// Takes one call for `name`, or `Err(how long until the next is allowed)`.
    pub(crate) async fn take(&self, name: &str) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let bucket = self
            .buckets
            .get_with(key(name), async move {
                Arc::new(Mutex::new(Bucket {
                    tokens: capacity,
                    at: Instant::now(),
                }))
            })
            .await;
        let mut bucket = bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refilled = (now - bucket.at).as_secs_f64() * capacity / 60.0;
        bucket.tokens = (bucket.tokens + refilled).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64(
            (1.0 - bucket.tokens) * 60.0 / capacity,
        ))
    }
}

/// Auth's rate limits and where their refusals are counted.
#[derive(Debug)]
pub(crate) struct Limits {
    refresh: RateLimit,
    service_tokens: RateLimit,
    counters: Arc<Counters>,
}

impl Limits {
    /// Refresh and Logout: `refresh_per_minute` per client address;
    /// IssueServiceToken: `service_tokens_per_minute` per client id (0: no limit).
    pub(crate) fn new(
        refresh_per_minute: u32,
        service_tokens_per_minute: u32,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            refresh: RateLimit::new(refresh_per_minute),
            service_tokens: RateLimit::new(service_tokens_per_minute),
            counters,
        }
    }

    /// A Refresh or Logout (`rpc`) from `peer` (unknown: one shared budget).
    pub(crate) async fn refresh(
        &self,
        rpc: Throttled,
        peer: Option<SocketAddr>,
    ) -> Result<(), AuthServiceError> {
        let address = peer.map(|peer| peer.ip().to_string()).unwrap_or_default();
        self.check(rpc, self.refresh.take(&address).await)
    }

    /// An IssueServiceToken for `client_id`, counted before its secret is checked.
    pub(crate) async fn service_token(&self, client_id: &str) -> Result<(), AuthServiceError> {
        let taken = self.service_tokens.take(client_id).await;
        self.check(Throttled::ServiceToken, taken)
    }

    fn check(&self, rpc: Throttled, taken: Result<(), Duration>) -> Result<(), AuthServiceError> {
        taken.map_err(|retry_after| {
            self.counters.throttled(rpc);
            tracing::debug!(?retry_after, "rate limited");
            AuthServiceError::RateLimited { retry_after }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_key_gets_its_budget_per_minute_refilled_gradually() {
        let limit = RateLimit::new(2);
        assert_eq!(limit.take("a").await, Ok(()));
        assert_eq!(limit.take("a").await, Ok(()));
        assert_eq!(limit.take("a").await, Err(Duration::from_secs(30)));
        assert_eq!(limit.take("b").await, Ok(()), "per key");
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(limit.take("a").await, Ok(()));
        assert!(limit.take("a").await.is_err());
        assert_eq!(RateLimit::new(0).take("a").await, Ok(()), "0: no limit");
    }
}
