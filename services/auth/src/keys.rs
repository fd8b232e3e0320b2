//! Auth's signing keys, stored in the database so every replica signs with the
//! same key: the newest unretired key signs; a retired key stays published until
//! the last token it signed has expired. Rotation is a row, picked up by every
//! replica within a reload interval.

use std::{collections::HashMap, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use futures::{FutureExt, future::BoxFuture};
use jsonwebtoken::jwk::JwkSet;
use tokenmesh_interceptor::{KeySource, KeySourceError, SharedClock};
use tokenmesh_proto::auth::v1::{Jwk, RotateSigningKeyResponse};
use tokenmesh_server::{SigningAlgorithm, SigningKey, jwk_to_jose};

use crate::{
    AuthConfig, AuthServiceError,
    config::secs,
    store::{NewSigningKey, Store},
};

/// The keys Auth signs with and publishes.
#[derive(Debug)]
pub struct KeyRing {
    store: Store,
    algorithm: SigningAlgorithm,
    /// How long a retired key stays published: the access-token lifetime plus
    /// the verifiers' maximum leeway.
    publish_retired_for: Duration,
    clock: SharedClock,
    state: ArcSwap<RingState>,
}

#[derive(Debug)]
struct RingState {
    signer: Arc<SigningKey>,
    published: Vec<Arc<SigningKey>>,
}

impl KeyRing {
    /// Loads the stored keys. `initial` becomes the signing key if it is not
    /// stored yet (first start, or a new `--auth-signing-key`), or if no key signs.
    /// New keys use `config.signing_algorithm`; a retired key stays published
    /// for the access-token lifetime plus `config.retired_key_grace`.
    pub async fn open(
        store: Store,
        initial: SigningKey,
        config: &AuthConfig,
    ) -> Result<Arc<Self>, AuthServiceError> {
        let ring = Self {
            store,
            algorithm: config.signing_algorithm,
            publish_retired_for: config.access_token_ttl + config.retired_key_grace,
            clock: config.clock.clone(),
            state: ArcSwap::from_pointee(RingState {
                signer: Arc::new(initial),
                published: Vec::new(),
            }),
        };
        let initial = ring.signer();
        let live = ring.store.live_keys(ring.clock.now_unix()).await?;
        let stored = live.iter().any(|key| key.kid == initial.kid());
        let signing = live.iter().any(|key| key.retired_at.is_none());
        if !stored || !signing {
            ring.activate(&initial).await?;
        }
        ring.reload().await?;
        Ok(Arc::new(ring))
    }

    /// Makes `key` the signing key in the store; the key it replaces stays
    /// published until every token it signed has expired. Returns the retired
    /// key's id and when it stops being published.
    async fn activate(&self, key: &SigningKey) -> Result<(Option<String>, i64), AuthServiceError> {
        let now = self.clock.now_unix();
        let expires = now + secs(self.publish_retired_for);
        let stored = NewSigningKey {
            kid: key.kid(),
            algorithm: key.algorithm().as_str(),
            pem: key.pem(),
        };
        let retired = self.store.activate_key(stored, now, expires).await?;
        Ok((retired, expires))
    }

    /// Re-reads the stored keys (another replica or `tokenmesh keys rotate` may
    /// have rotated).
    pub async fn reload(&self) -> Result<(), AuthServiceError> {
        let live = self.store.live_keys(self.clock.now_unix()).await?;
        let current = self.state.load();
        let known: HashMap<&str, &Arc<SigningKey>> = current
            .published
            .iter()
            .chain(std::iter::once(&current.signer))
            .map(|key| (key.kid(), key))
            .collect();
        let mut published = Vec::with_capacity(live.len());
        let mut signer = None;
        for stored in &live {
            let key = match known.get(stored.kid.as_str()) {
                Some(key) => Arc::clone(key),
                None => Arc::new(SigningKey::from_pem(&stored.private_key_pem)?),
            };
            if signer.is_none() && stored.retired_at.is_none() {
                signer = Some(key.clone());
            }
            published.push(key);
        }
        let signer = signer.unwrap_or_else(|| current.signer.clone());
        self.state.store(Arc::new(RingState { signer, published }));
        Ok(())
    }

    /// The key that signs now.
    pub fn signer(&self) -> Arc<SigningKey> {
        self.state.load().signer.clone()
    }

    /// The public keys verifiers must trust now.
    pub fn published(&self) -> Vec<Jwk> {
        self.state
            .load()
            .published
            .iter()
            .map(|key| key.public_jwk().clone())
            .collect()
    }

    /// Signs with a fresh key from now on; the old one stays published until every
    /// token it signed has expired.
    pub async fn rotate(&self) -> Result<RotateSigningKeyResponse, AuthServiceError> {
        let (key, _) = SigningKey::generate_with(self.algorithm)?;
        let (retired, expires) = self.activate(&key).await?;
        self.reload().await?;
        tracing::info!(kid = key.kid(), retired = ?retired, "signing key rotated");
        Ok(RotateSigningKeyResponse {
            kid: key.kid().to_owned(),
            retired_kid: retired.unwrap_or_default(),
            retired_kid_expires_at: expires,
        })
    }
}

/// Auth's own published keys as a key source, so Auth verifies its tokens with
/// the same machinery as every other service, rotation included.
#[derive(Debug, Clone)]
pub struct OwnKeys(pub Arc<KeyRing>);

impl KeySource for OwnKeys {
    fn fetch(&self) -> BoxFuture<'_, Result<JwkSet, KeySourceError>> {
        let keys = self
            .0
            .published()
            .iter()
            .filter_map(|jwk| jwk_to_jose(jwk).ok())
            .collect();
        async move { Ok(JwkSet { keys }) }.boxed()
    }
}
