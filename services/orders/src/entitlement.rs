//! Deciding entitlement: a configurable chain of sources, first conclusive answer
//! wins — the grant in the request body, Orders' replica of Products'
//! entitlements, or a `CheckEntitlement` call to Products behind a short cache.
//! A revocation seen by the replica overrides any grant issued before it.

use std::{
    fmt,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde::Deserialize;
use tokenmesh_interceptor::{AttachToken, AttachTokenLayer, Claims, SubjectToken, Verifier};
use tokenmesh_proto::{
    claims::v2::ProductGrant,
    orders::v1::EntitlementSource,
    products::v1::{
        CheckEntitlementRequest, WatchEntitlementsRequest, entitlement_event::Change,
        products_service_client::ProductsServiceClient,
    },
};
use tokenmesh_server::{ServiceTokens, TokenExchanger};
use tonic::{Code, Request, Status, transport::Channel};
use tower::Layer;

use crate::{
    OrdersError, Store,
    store::{ReplicaChange, ReplicaEntry},
};

/// One source of entitlement answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// The grant in the request body.
    Grant,
    /// Orders' replica of Products' entitlements.
    Replica,
    /// Products' `CheckEntitlement`.
    Rpc,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Grant => "grant",
            Self::Replica => "replica",
            Self::Rpc => "rpc",
        })
    }
}

impl FromStr for SourceKind {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.trim() {
            "grant" => Ok(Self::Grant),
            "replica" => Ok(Self::Replica),
            "rpc" => Ok(Self::Rpc),
            other => Err(format!(
                "unknown entitlement source {other}: use grant, replica, rpc"
            )),
        }
    }
}

/// An entitlement grant from Products, of any claims version this build parses:
/// v1 (`product_ids`) and v2 (`grants`). Unknown fields are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Grant {
    /// The user the grant is about.
    pub sub: String,
    /// Claims contract version.
    pub ver: u32,
    /// When Products issued it.
    pub iat: i64,
    /// When it expires.
    pub exp: i64,
    /// Not valid before this.
    pub nbf: i64,
    /// v1: product ids.
    pub product_ids: Vec<String>,
    /// v2: per-product grants.
    pub grants: Vec<ProductGrant>,
}

impl Claims for Grant {
    fn subject(&self) -> &str {
        &self.sub
    }

    fn issued_at(&self) -> i64 {
        self.iat
    }

    fn expires_at(&self) -> i64 {
        self.exp
    }

    fn not_before(&self) -> i64 {
        self.nbf
    }
}

impl Grant {
    /// The grant as v2 product grants: v1 ids mean view and order, no limit.
    pub fn upcast(&self) -> Vec<ProductGrant> {
        if self.ver == 1 {
            return self
                .product_ids
                .iter()
                .map(|product_id| ProductGrant {
                    product_id: product_id.clone(),
                    actions: vec!["view".into(), "order".into()],
                    max_quantity: 0,
                })
                .collect();
        }
        self.grants.clone()
    }
}

/// What one source says.
#[derive(Debug)]
enum Decision {
    Allowed(EntitlementSource),
    Denied(OrdersError),
    Inconclusive(String),
}

/// How the chain is set up.
#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// Sources, in the order they are asked.
    pub sources: Vec<SourceKind>,
    /// Grant claims versions this reader accepts.
    pub grant_versions: Vec<u32>,
    /// How long a `CheckEntitlement` answer is reused.
    pub rpc_cache_ttl: Duration,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self {
            sources: vec![SourceKind::Grant, SourceKind::Replica, SourceKind::Rpc],
            grant_versions: vec![1, 2],
            rpc_cache_ttl: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RpcAnswer {
    Allowed,
    NotEntitled,
    UnknownProduct,
}

/// The chain of entitlement sources.
#[derive(Debug)]
pub struct Entitlements {
    config: ChainConfig,
    grants: Arc<Verifier<Grant>>,
    replica: Arc<Replica>,
    /// Products, called as Orders acting for the caller: the client layer
    /// exchanges the request's subject token (RFC 8693), never forwards it.
    products: ProductsServiceClient<AttachToken<Channel>>,
    rpc_cache: moka::future::Cache<(String, String), RpcAnswer>,
}

impl Entitlements {
    /// A chain over these sources. When the chain asks the grant or the replica,
    /// the replica follows Products' feed (as `feed_credentials`) from now on.
    pub fn new(
        config: ChainConfig,
        grants: Arc<Verifier<Grant>>,
        store: Store,
        products: Channel,
        exchanger: Arc<TokenExchanger>,
        feed_credentials: Arc<ServiceTokens>,
    ) -> Arc<Self> {
        let rpc_cache = moka::future::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(config.rpc_cache_ttl)
            .build();
        let replica = Arc::new(Replica {
            store,
            caught_up: AtomicBool::new(false),
        });
        let follows = config
            .sources
            .iter()
            .any(|source| matches!(source, SourceKind::Grant | SourceKind::Replica));
        let chain = Arc::new(Self {
            config,
            grants,
            replica,
            products: ProductsServiceClient::new(
                AttachTokenLayer::shared(exchanger).layer(products.clone()),
            ),
            rpc_cache,
        });
        if follows {
            tokio::spawn(follow_feed(
                Arc::downgrade(&chain),
                products,
                feed_credentials,
            ));
        }
        chain
    }

    /// Whether the replica has caught up with Products' feed since Orders started.
    pub fn replica_caught_up(&self) -> bool {
        self.replica.caught_up.load(Ordering::Acquire)
    }

    /// Which source allows `subject` to order `quantity` of `product_id`, or why
    /// not. `grant` is the request's grant (may be empty), `access_token` the
    /// caller's token (exchanged before calling Products).
    pub async fn decide(
        &self,
        subject: &str,
        product_id: &str,
        quantity: i32,
        grant: &str,
        access_token: &str,
    ) -> Result<EntitlementSource, OrdersError> {
        let mut reasons = Vec::new();
        for source in &self.config.sources {
            let decision = match source {
                SourceKind::Grant => {
                    match self.by_grant(grant, subject, product_id, quantity).await {
                        Err(version) if self.config.sources.len() == 1 => {
                            return Err(OrdersError::GrantVersionUnsupported {
                                found: version,
                                accepted: self.accepted_versions(),
                            });
                        }
                        Err(version) => {
                            Decision::Inconclusive(format!("grant version {version} unsupported"))
                        }
                        Ok(decision) => decision,
                    }
                }
                SourceKind::Replica => self.replica.decide(subject, product_id).await,
                SourceKind::Rpc => self.by_rpc(subject, product_id, access_token).await,
            };
            match decision {
                Decision::Allowed(source) => return Ok(source),
                Decision::Denied(error) => return Err(error),
                Decision::Inconclusive(reason) => reasons.push(format!("{source}: {reason}")),
            }
        }
        tracing::info!(reasons = %reasons.join("; "), "no entitlement source decided");
        Err(OrdersError::Undecided(reasons.join("; ")))
    }

    fn accepted_versions(&self) -> String {
        let versions: Vec<String> = self
            .config
            .grant_versions
            .iter()
            .map(u32::to_string)
            .collect();
        versions.join(", ")
    }

    /// The grant's answer; `Err(version)` for a claims version this reader does
    /// not accept.
    async fn by_grant(
        &self,
        grant: &str,
        subject: &str,
        product_id: &str,
        quantity: i32,
    ) -> Result<Decision, u32> {
        if grant.is_empty() {
            return Ok(Decision::Inconclusive("none in the request".into()));
        }
        let grant = match self.grants.verify(grant).await {
            Ok(grant) => grant,
            Err(error) => {
                return Ok(Decision::Inconclusive(format!(
                    "refused ({})",
                    error.reason()
                )));
            }
        };
        if !self.config.grant_versions.contains(&grant.ver) {
            return Err(grant.ver);
        }
        if grant.sub != subject {
            return Ok(Decision::Inconclusive("issued to another subject".into()));
        }
        let covering = grant.upcast().into_iter().find(|g| {
            g.product_id == product_id && g.actions.iter().any(|action| action == "order")
        });
        let Some(covering) = covering else {
            return Ok(Decision::Inconclusive("does not cover this product".into()));
        };
        if self
            .replica
            .revoked_since(subject, product_id, grant.iat)
            .await
        {
            return Ok(Decision::Inconclusive("revoked since it was issued".into()));
        }
        let limit = covering.max_quantity;
        if limit > 0 && i64::from(quantity) > i64::from(limit) {
            return Ok(Decision::Denied(OrdersError::QuantityOverLimit {
                product_id: product_id.to_owned(),
                limit,
            }));
        }
        Ok(Decision::Allowed(EntitlementSource::Grant))
    }

    async fn by_rpc(&self, subject: &str, product_id: &str, access_token: &str) -> Decision {
        let key = (subject.to_owned(), product_id.to_owned());
        let call = self.check_with_products(subject, product_id, access_token);
        let answer = if self.config.rpc_cache_ttl.is_zero() {
            // No cache: every decision is a call (what "rpc cold" measures).
            call.await.map_err(Arc::new)
        } else {
            // Concurrent misses for one key share one call (moka coalesces them).
            self.rpc_cache.try_get_with(key, call).await
        };
        match answer {
            Ok(RpcAnswer::Allowed) => Decision::Allowed(EntitlementSource::Rpc),
            Ok(RpcAnswer::NotEntitled) => {
                Decision::Denied(OrdersError::NotEntitled(product_id.to_owned()))
            }
            Ok(RpcAnswer::UnknownProduct) => {
                Decision::Denied(OrdersError::ProductNotFound(product_id.to_owned()))
            }
            Err(reason) => Decision::Inconclusive(reason.to_string()),
        }
    }

    /// Asks Products, as Orders acting for the user (RFC 8693), never with the
    /// user's own token.
    async fn check_with_products(
        &self,
        subject: &str,
        product_id: &str,
        access_token: &str,
    ) -> Result<RpcAnswer, String> {
        let mut request = Request::new(CheckEntitlementRequest {
            subject: subject.to_owned(),
            product_id: product_id.to_owned(),
        });
        request
            .extensions_mut()
            .insert(SubjectToken(access_token.into()));
        match self.products.clone().check_entitlement(request).await {
            Ok(response) if response.get_ref().allowed => Ok(RpcAnswer::Allowed),
            Ok(_) => Ok(RpcAnswer::NotEntitled),
            Err(status) if status.code() == Code::NotFound => Ok(RpcAnswer::UnknownProduct),
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "CheckEntitlement failed");
                if status.code() == Code::Unavailable {
                    Err(format!("Products unavailable ({:?})", status.code()))
                } else {
                    Err(format!("CheckEntitlement failed ({:?})", status.code()))
                }
            }
        }
    }
}

/// Orders' replica of Products' catalogue and entitlements.
#[derive(Debug)]
struct Replica {
    store: Store,
    /// Set once the feed has been replayed to its end since Orders started; kept
    /// through disconnects.
    caught_up: AtomicBool,
}

impl Replica {
    async fn decide(&self, subject: &str, product_id: &str) -> Decision {
        if !self.caught_up.load(Ordering::Acquire) {
            return Decision::Inconclusive("not caught up with Products yet".into());
        }
        match self.store.replica_lookup(subject, product_id).await {
            Ok(ReplicaEntry::UnknownProduct) => {
                Decision::Denied(OrdersError::ProductNotFound(product_id.to_owned()))
            }
            Ok(ReplicaEntry::Known { granted: true, .. }) => {
                Decision::Allowed(EntitlementSource::Replica)
            }
            Ok(ReplicaEntry::NeverGranted | ReplicaEntry::Known { granted: false, .. }) => {
                Decision::Denied(OrdersError::NotEntitled(product_id.to_owned()))
            }
            Err(error) => Decision::Inconclusive(format!("store error: {error}")),
        }
    }

    /// Whether `subject`'s entitlement to `product_id` was revoked at or after
    /// `issued_at` (both on Products' clock, in seconds: a grant issued in the
    /// same second as a revocation is treated as older).
    async fn revoked_since(&self, subject: &str, product_id: &str, issued_at: i64) -> bool {
        matches!(
            self.store.replica_lookup(subject, product_id).await,
            Ok(ReplicaEntry::Known { granted: false, changed_at }) if changed_at >= issued_at
        )
    }
}

/// Follows Products' entitlement feed into the replica until the chain is
/// dropped: resumes from the stored cursor after any drop, with backoff.
async fn follow_feed(
    chain: std::sync::Weak<Entitlements>,
    products: Channel,
    credentials: Arc<ServiceTokens>,
) {
    let client = ProductsServiceClient::new(AttachTokenLayer::shared(credentials).layer(products));
    // The replica stays conclusive while disconnected: with Products down nothing
    // can change; it catches up again on reconnect.
    tokenmesh_server::follow("entitlement", move || {
        let (chain, mut client) = (chain.clone(), client.clone());
        async move { follow_once(&chain, &mut client).await }
    })
    .await;
}

/// One subscription: `Ok(None)` when the chain is gone, else how many changes
/// it applied before the stream ended.
async fn follow_once(
    chain: &std::sync::Weak<Entitlements>,
    client: &mut ProductsServiceClient<AttachToken<Channel>>,
) -> Result<Option<usize>, Status> {
    let Some(replica) = chain.upgrade().map(|chain| chain.replica.clone()) else {
        return Ok(None);
    };
    let since = replica.store.replica_cursor().await.map_err(Status::from)?;
    drop(replica);
    let mut applied = 0;
    let request = WatchEntitlementsRequest {
        since: u64::try_from(since).unwrap_or_default(),
    };
    let mut stream = client.watch_entitlements(request).await?.into_inner();
    while let Some(event) = stream.message().await? {
        let Some(chain) = chain.upgrade() else {
            return Ok(None);
        };
        let cursor = i64::try_from(event.cursor).unwrap_or(i64::MAX);
        let change = match event.change {
            None => {
                chain.replica.caught_up.store(true, Ordering::Release);
                tracing::debug!(cursor, "entitlement replica caught up");
                continue;
            }
            Some(Change::ProductCreated(product_id)) => ReplicaChange::Product { product_id },
            Some(Change::Entitlement(change)) => {
                chain
                    .rpc_cache
                    .invalidate(&(change.subject.clone(), change.product_id.clone()))
                    .await;
                ReplicaChange::Entitlement {
                    subject: change.subject,
                    product_id: change.product_id,
                    granted: change.granted,
                    changed_at: event.changed_at,
                }
            }
        };
        chain
            .replica
            .store
            .apply_replica_change(&change, cursor)
            .await
            .map_err(Status::from)?;
        applied += 1;
    }
    Ok(Some(applied))
}
