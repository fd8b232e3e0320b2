//! Which keys are trusted now: a [`KeyStore`] keeps the current [`KeySet`] behind a lock-free swap,
//! refreshed from a [`KeySource`] in the background and, rate-limited and
//! single-flight, when a token names a `kid` the set does not have.

use std::{
    fmt,
    sync::{Arc, Weak},
    time::Duration,
};

use arc_swap::ArcSwap;
use futures::{
    FutureExt,
    future::{BoxFuture, Shared},
};
use jsonwebtoken::jwk::JwkSet;
use tokio::time::Instant;

pub use crate::key_set::{KeySet, VerificationKey};

/// Why fetching a key set failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("fetching keys: {0}")]
pub struct KeySourceError(pub String);

/// Where a [`KeyStore`] fetches its keys: a JWKS over gRPC, over HTTP, a file…
pub trait KeySource: Send + Sync + 'static {
    /// Fetches the issuer's current key set.
    fn fetch(&self) -> BoxFuture<'_, Result<JwkSet, KeySourceError>>;
}

/// The trusted keys of one issuer, swapped atomically on refresh so that
/// verifying never waits on a lock, and no lock is ever held across a fetch.
pub struct KeyStore {
    keys: Arc<ArcSwap<KeySet>>,
    source: Option<Arc<dyn KeySource>>,
    /// The fetch under way, which every concurrent miss joins, and when the last
    /// on-miss fetch started. Locked only to read or replace these, never while
    /// a fetch runs.
    fetches: std::sync::Mutex<Fetches>,
    min_refetch_interval: Duration,
    fetch_timeout: Duration,
}

/// One fetch of the key set, awaited by every caller that needs it.
type SharedFetch = Shared<BoxFuture<'static, Result<usize, KeySourceError>>>;

#[derive(Default)]
struct Fetches {
    in_flight: Option<SharedFetch>,
    last_on_miss: Option<Instant>,
}

impl Fetches {
    /// The fetch under way, if it has not finished.
    fn running(&self) -> Option<SharedFetch> {
        self.in_flight
            .as_ref()
            .filter(|fetch| fetch.peek().is_none())
            .cloned()
    }
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("keys", &self.keys.load().len())
            .field("remote", &self.source.is_some())
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// A store that only ever holds these keys.
    pub fn fixed(keys: KeySet) -> Arc<Self> {
        Arc::new(Self::build(keys, None))
    }

    /// A store fed by `source`: empty until the first fetch, which happens on the
    /// first token or through [`KeyStore::spawn_refresher`].
    pub fn remote(source: impl KeySource) -> Arc<Self> {
        Arc::new(Self::build(KeySet::default(), Some(Arc::new(source))))
    }

    fn build(keys: KeySet, source: Option<Arc<dyn KeySource>>) -> Self {
        Self {
            keys: Arc::new(ArcSwap::from_pointee(keys)),
            source,
            fetches: std::sync::Mutex::default(),
            min_refetch_interval: Duration::from_secs(1),
            fetch_timeout: Duration::from_secs(3),
        }
    }

    /// The current key set.
    pub fn current(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// Whether `key` (from an earlier lookup) is still trusted: false once a
    /// refresh has retired it.
    pub fn trusts(&self, key: &Arc<VerificationKey>) -> bool {
        self.keys.load().holds(key)
    }

    /// The key with this id. On a miss, refetches the set first — at most once per
    /// second, and shared by all concurrent misses — so a rotated key is picked up
    /// at once while a flood of unknown `kid`s cannot hammer the issuer.
    pub async fn key(&self, kid: &str) -> Option<Arc<VerificationKey>> {
        if let Some(key) = self.keys.load().get(kid) {
            return Some(key);
        }
        self.source.as_ref()?;
        let fetch = {
            let mut fetches = self.fetches.lock().unwrap_or_else(|e| e.into_inner());
            match fetches.running() {
                Some(fetch) => fetch,
                None => {
                    // Another miss may have refreshed just before.
                    if let Some(key) = self.keys.load().get(kid) {
                        return Some(key);
                    }
                    if fetches
                        .last_on_miss
                        .is_some_and(|at| at.elapsed() < self.min_refetch_interval)
                    {
                        return None;
                    }
                    fetches.last_on_miss = Some(Instant::now());
                    self.start_fetch(&mut fetches)?
                }
            }
        };
        if let Err(error) = fetch.await {
            tracing::warn!(%error, "key refresh on unknown kid failed; keeping the last good set");
        }
        self.keys.load().get(kid)
    }

    /// Fetches the set now (or joins the fetch under way), replacing the current
    /// one on success. On failure the last good set stays in place.
    /// Scheduled refreshes do not count against the on-miss rate limit, so a
    /// failed background attempt never delays the fetch a new `kid` needs.
    pub async fn refresh(&self) -> Result<usize, KeySourceError> {
        let fetch = {
            let mut fetches = self.fetches.lock().unwrap_or_else(|e| e.into_inner());
            match fetches.running() {
                Some(fetch) => Some(fetch),
                None => self.start_fetch(&mut fetches),
            }
        };
        match fetch {
            Some(fetch) => fetch.await,
            None => Ok(self.keys.load().len()),
        }
    }

    /// Starts a fetch that swaps in the new set, and records it as the one under
    /// way; `None` for a store without a source.
    fn start_fetch(&self, fetches: &mut Fetches) -> Option<SharedFetch> {
        let source = self.source.clone()?;
        let keys = self.keys.clone();
        let timeout = self.fetch_timeout;
        let fetch = async move {
            let jwks = tokio::time::timeout(timeout, source.fetch())
                .await
                .map_err(|_| KeySourceError("timed out".into()))??;
            let set = KeySet::from_jwks(&jwks).carry_over(&keys.load());
            let count = set.len();
            keys.store(Arc::new(set));
            tracing::debug!(keys = count, "key set refreshed");
            Ok(count)
        }
        .boxed()
        .shared();
        fetches.in_flight = Some(fetch.clone());
        Some(fetch)
    }

    /// Refreshes the set every `every` (sooner after a failure) until the store
    /// is dropped.
    pub fn spawn_refresher(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let store: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let retry = every.min(Duration::from_secs(2));
            loop {
                let Some(strong) = store.upgrade() else {
                    return;
                };
                let wait = match strong.refresh().await {
                    Ok(_) => every,
                    Err(error) => {
                        tracing::debug!(%error, "background key refresh failed; retrying");
                        retry
                    }
                };
                drop(strong);
                tokio::time::sleep(wait).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use futures::FutureExt;

    use jsonwebtoken::Algorithm;

    use super::*;

    fn okp(kid: &str, alg: Option<&str>) -> serde_json::Value {
        let pair = Ed25519KeyPair::generate().expect("key");
        let mut jwk = serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
        });
        if let Some(alg) = alg {
            jwk["alg"] = alg.into();
        }
        jwk
    }

    fn jwks(keys: Vec<serde_json::Value>) -> JwkSet {
        serde_json::from_value(serde_json::json!({ "keys": keys })).expect("jwks")
    }

    #[test]
    fn only_asymmetric_keys_with_a_pinned_algorithm_are_kept() {
        let set = KeySet::from_jwks(&jwks(vec![
            okp("implied", None),
            okp("stated", Some("EdDSA")),
            okp("mismatched", Some("ES256")),
            serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"}),
            serde_json::json!({"kty": "RSA", "n": "sXch", "e": "AQAB", "kid": "rsa-no-alg"}),
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}),
        ]));
        assert_eq!(set.len(), 2);
        assert_eq!(
            set.get("implied").expect("kept").algorithm,
            Algorithm::EdDSA
        );
        assert_eq!(set.get("stated").expect("kept").algorithm, Algorithm::EdDSA);
        for skipped in ["mismatched", "hmac", "rsa-no-alg"] {
            assert!(set.get(skipped).is_none(), "{skipped} must be skipped");
        }
    }

    struct CountingSource {
        fetches: Arc<AtomicUsize>,
        keys: Vec<serde_json::Value>,
        fail: bool,
    }

    impl KeySource for CountingSource {
        fn fetch(&self) -> BoxFuture<'_, Result<JwkSet, KeySourceError>> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let result = if self.fail {
                Err(KeySourceError("issuer down".into()))
            } else {
                Ok(jwks(self.keys.clone()))
            };
            async move {
                tokio::task::yield_now().await;
                result
            }
            .boxed()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_misses_share_one_fetch_and_refetches_are_rate_limited() {
        let fetches = Arc::new(AtomicUsize::new(0));
        let store = KeyStore::remote(CountingSource {
            fetches: fetches.clone(),
            keys: vec![okp("k1", None)],
            fail: false,
        });
        let lookups = (0..16).map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.key("k1").await.is_some() })
        });
        for lookup in lookups {
            assert!(lookup.await.expect("task"));
        }
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            1,
            "one fetch for sixteen misses"
        );

        assert!(store.key("unknown").await.is_none());
        assert!(store.key("unknown").await.is_none());
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            1,
            "a miss within a second of the last fetch does not fetch"
        );
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert!(store.key("unknown").await.is_none());
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            2,
            "after the interval it may fetch again"
        );
    }

    #[test]
    fn a_refetched_unchanged_key_stays_trusted_and_a_changed_one_is_retired() {
        let (k1, k2) = (okp("k1", None), okp("k2", None));
        let first = KeySet::from_jwks(&jwks(vec![k1.clone(), k2]));
        let same = KeySet::from_jwks(&jwks(vec![k1.clone()])).carry_over(&first);
        let k1_key = first.get("k1").expect("k1");
        assert!(same.holds(&k1_key), "unchanged key keeps its identity");
        assert!(!same.holds(&first.get("k2").expect("k2")), "k2 retired");
        let mut rekeyed = okp("k1", None);
        rekeyed["kid"] = k1["kid"].clone();
        let changed = KeySet::from_jwks(&jwks(vec![rekeyed])).carry_over(&first);
        assert!(!changed.holds(&k1_key), "same kid, new material: retired");
    }

    /// A source whose fetch waits until the test opens the gate.
    struct GatedSource {
        fetches: Arc<AtomicUsize>,
        gate: Arc<tokio::sync::Semaphore>,
        keys: Vec<serde_json::Value>,
    }

    impl KeySource for GatedSource {
        fn fetch(&self) -> BoxFuture<'_, Result<JwkSet, KeySourceError>> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            async move {
                let _open = self.gate.acquire().await.expect("gate");
                Ok(jwks(self.keys.clone()))
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn a_slow_fetch_blocks_no_lookup_and_is_shared_by_refresh_and_misses() {
        let fetches = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let store = KeyStore::build(
            KeySet::from_jwks(&jwks(vec![okp("old", None)])),
            Some(Arc::new(GatedSource {
                fetches: fetches.clone(),
                gate: gate.clone(),
                keys: vec![okp("old", None), okp("new", None)],
            })),
        );
        let store = Arc::new(store);
        let refresh = tokio::spawn({
            let store = store.clone();
            async move { store.refresh().await }
        });
        let miss = tokio::spawn({
            let store = store.clone();
            async move { store.key("new").await.is_some() }
        });
        while fetches.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // The fetch is stuck; known keys still answer at once.
        assert!(store.key("old").await.is_some());
        assert!(!refresh.is_finished() && !miss.is_finished());
        gate.add_permits(1);
        assert_eq!(refresh.await.expect("task").expect("fetched"), 2);
        assert!(miss.await.expect("task"), "the miss joined the same fetch");
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failing_source_keeps_the_last_good_set() {
        let good = KeyStore::remote(CountingSource {
            fetches: Arc::new(AtomicUsize::new(0)),
            keys: vec![okp("k1", None)],
            fail: false,
        });
        good.refresh().await.expect("first fetch");
        let set = good.current();
        let failing = KeyStore::build(
            (*set).clone(),
            Some(Arc::new(CountingSource {
                fetches: Arc::new(AtomicUsize::new(0)),
                keys: vec![],
                fail: true,
            })),
        );
        assert!(failing.refresh().await.is_err());
        assert!(
            failing.key("k1").await.is_some(),
            "issuer down: cached key still verifies"
        );
    }
}
