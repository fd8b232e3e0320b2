//! The [`AuthService`] value: the concerns it holds (users, sessions, tokens,
//! keys, revocations), how it opens over a store, serves, and keeps its keys and
//! revocation set current while it runs.

use std::sync::{Arc, Weak};

use tokenmesh_interceptor::{AuthLayer, KeyStore, Policy, Verifier, VerifierConfig};
use tokenmesh_proto::{
    auth::v1::{
        Jwk, RotateSigningKeyResponse,
        auth_service_server::{self, AuthServiceServer},
    },
    names::audience,
};
use tokenmesh_server::{Caller, ClientCredentials, SigningKey, wakeups::SIGNING_KEYS};

use crate::{
    AuthConfig, AuthServiceError, Store,
    counters::Counters,
    keys::{OwnKeys, SigningKeys, open_ring},
    limits::Limits,
    revocations::Revocations,
    sessions::Sessions,
    tokens::Tokens,
    users::Users,
};

/// Largest request Auth decodes: an `ExchangeToken` with the largest
/// `subject_token` (16 KiB) and room to spare; above it, RESOURCE_EXHAUSTED
/// before any handler runs.
pub const MAX_REQUEST_BYTES: usize = 32 * 1024;
/// Largest response Auth encodes: a token response, or the JWKS with every
/// published key.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The Auth service.
#[derive(Debug, Clone)]
pub struct AuthService {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: AuthConfig,
    pub(crate) keys: Arc<tokenmesh_server::KeyRing>,
    pub(crate) users: Users,
    pub(crate) sessions: Sessions,
    /// Rate limits of Refresh, Logout and IssueServiceToken.
    pub(crate) limits: Limits,
    pub(crate) tokens: Tokens,
    pub(crate) revocations: Arc<Revocations>,
    /// Auth's own counters on `/metrics`.
    pub(crate) counters: Arc<Counters>,
    /// Auth's own verifier: its layer's, and the one exchange checks subject
    /// tokens with.
    pub(crate) verifier: Arc<Verifier<Caller>>,
}

impl AuthService {
    /// Auth over `store`, its private keys sealed under `keys.kek`; keys in
    /// `keys.import` are imported once each (see [`tokenmesh_server::KeyRing::open`]).
    pub async fn open(
        store: Store,
        keys: SigningKeys,
        config: AuthConfig,
    ) -> Result<Self, AuthServiceError> {
        let keys = open_ring(&store, keys, &config).await?;
        let revocations = Arc::new(Revocations::load(store.clone(), &config).await?);
        let verifier = Arc::new(
            Verifier::<Caller>::new(
                VerifierConfig::access_tokens(&config.issuer, audience::AUTH),
                KeyStore::remote(OwnKeys(keys.clone())),
            )
            .with_revocations(revocations.set())
            .with_clock(config.clock.clone()),
        );
        let counters = Arc::new(Counters::default());
        Ok(Self {
            inner: Arc::new(Inner {
                users: Users::new(
                    store.clone(),
                    config.throttle,
                    config.clock.clone(),
                    revocations.clone(),
                    counters.clone(),
                ),
                sessions: Sessions::new(store.clone(), &config, revocations.clone()),
                limits: Limits::new(
                    config.refresh_rate_limit,
                    config.service_token_rate_limit,
                    counters.clone(),
                ),
                tokens: Tokens::new(store, keys.clone(), verifier.clone(), &config),
                keys,
                revocations,
                counters,
                verifier,
                config,
            }),
        })
    }

    /// Who may call what: the rules declared in the proto.
    pub fn policy() -> Policy {
        tokenmesh_server::policy_for(auth_service_server::SERVICE_NAME)
    }

    /// Registers (or updates) a service client as its service declared it, with
    /// its secret and what it may delegate in a token exchange.
    pub async fn register_service_client(
        &self,
        credentials: &ClientCredentials,
    ) -> Result<(), AuthServiceError> {
        self.inner.tokens.register_client(credentials).await
    }

    /// `iss` of Auth's tokens.
    pub fn issuer(&self) -> &str {
        &self.inner.config.issuer
    }

    /// The key that signs now, private key included: for tools that mint
    /// tokens with Auth's own key (load tests, integration tests).
    pub fn signing_key(&self) -> Arc<SigningKey> {
        self.inner.keys.signer()
    }

    /// Where discovery says Auth's key set is, if Auth has a public URL.
    pub fn public_url(&self) -> Option<&crate::PublicUrl> {
        self.inner.config.public_url.as_ref()
    }

    /// The public keys that verify Auth's tokens.
    pub fn public_jwks(&self) -> Vec<Jwk> {
        self.inner.keys.published()
    }

    /// Starts signing with a new key now.
    pub async fn rotate_signing_key(&self) -> Result<RotateSigningKeyResponse, AuthServiceError> {
        crate::keys::rotate(&self.inner.keys).await
    }

    /// Serves Auth on `listener` within `limits` until `shutdown`.
    pub async fn serve(
        self,
        listener: impl Into<tokenmesh_server::Listener>,
        metrics: &tokenmesh_server::metrics::Registry,
        limits: tokenmesh_server::ServerLimits,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), tokenmesh_server::ServeError> {
        let maintenance = tokio::spawn(maintain(Arc::downgrade(&self.inner)));
        // Another replica's rotation: at once on its notification, else each interval.
        let reloader = self.inner.keys.spawn_reloader(
            self.inner.config.key_reload_interval,
            self.inner.config.wakeups.subscribe(SIGNING_KEYS),
        );
        // Other replicas' revocations reach this replica's own checks.
        let own_revocations = self.inner.revocations.follow_table();
        let counters: Arc<dyn tokenmesh_server::metrics::Samples> = self.inner.counters.clone();
        metrics.register_samples(&counters);
        let inner = self.inner.clone();
        let shutdown = async move {
            shutdown.await;
            // End the revocation feeds: they would hold the graceful drain open.
            inner.revocations.close();
        };
        let layer = AuthLayer::new(self.inner.verifier.clone(), Self::policy());
        let service = AuthServiceServer::new(self)
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_RESPONSE_BYTES);
        let result =
            tokenmesh_server::serve(listener, service, layer, metrics, limits, shutdown).await;
        maintenance.abort();
        reloader.abort();
        own_revocations.abort();
        result
    }
}

/// How often a replica deletes the revocation rows that no longer matter.
const PRUNE_STORED_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Prunes the revocation set every reload interval, and the stored
/// revocations and the login throttle's expired names every
/// [`PRUNE_STORED_EVERY`], until Auth is gone.
async fn maintain(inner: Weak<Inner>) {
    let mut pruned_at: Option<tokio::time::Instant> = None;
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let interval = strong.config.key_reload_interval;
        strong.revocations.prune();
        if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_STORED_EVERY) {
            pruned_at = Some(tokio::time::Instant::now());
            match strong.revocations.prune_stored().await {
                Ok(0) => {}
                Ok(deleted) => tracing::debug!(deleted, "pruned stored revocations"),
                Err(error) => tracing::warn!(%error, "pruning stored revocations failed"),
            }
            if let Err(error) = strong.users.prune_throttle().await {
                tracing::warn!(%error, "pruning the login throttle failed");
            }
        }
        drop(strong);
        tokio::time::sleep(interval).await;
    }
}
