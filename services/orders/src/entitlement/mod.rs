//! Deciding entitlement: configured [`Source`]s asked in order, the first
//! conclusive answer wins — the grant in the request body, Orders' replica of
//! Products' entitlements, `CheckEntitlement` on Products.

mod feed;
mod grant;
mod memory;
mod replica;
mod rpc;
mod terms;
#[cfg(test)]
mod tests;

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use tokenmesh_interceptor::FeedFreshness;
use tokio::task::JoinHandle;
use tonic::Code;

pub use grant::Grant;
pub use terms::Terms;

use crate::{OrdersDeps, Store, store::StoreError};

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

/// How the chain is set up.
#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// Sources, in the order they are asked.
    pub sources: Vec<SourceKind>,
    /// Grant claims versions this reader accepts.
    pub grant_versions: Vec<u32>,
    /// How long a `CheckEntitlement` answer is reused.
    pub rpc_cache_ttl: Duration,
    /// How long the replica stays conclusive once Products' feed has gone
    /// quiet; past it, the replica hands the decision to the next source.
    pub max_feed_silence: Duration,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self {
            sources: vec![SourceKind::Grant, SourceKind::Replica, SourceKind::Rpc],
            grant_versions: vec![1, 2],
            rpc_cache_ttl: Duration::from_secs(2),
            max_feed_silence: Duration::from_secs(300),
        }
    }
}

/// What is asked: may `subject` order `quantity` of `product_id`?
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// The caller.
    pub subject: &'a str,
    /// The product to order.
    pub product_id: &'a str,
    /// How many.
    pub quantity: i32,
    /// The entitlement grant from the request body, if any.
    pub grant: Option<&'a str>,
    /// The caller's access token, exchanged (never forwarded) to ask Products.
    pub access_token: &'a str,
}

/// What one source says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Entitled.
    Allow,
    /// Refused, for good.
    Deny(Denial),
    /// This source cannot tell; the next one is asked.
    Inconclusive(String),
    /// The source's evidence has a claims version this reader does not accept.
    UnsupportedVersion {
        /// The version found.
        found: u32,
        /// The versions accepted.
        accepted: Vec<u32>,
    },
}

/// Why a source refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// The caller is not entitled to the product.
    NotEntitled,
    /// No such product.
    UnknownProduct,
    /// More than the entitlement's quantity limit.
    OverLimit(u32),
    /// The entitlement does not include the `order` action.
    OrderNotAllowed,
}

/// Why a source could not answer at all (the replica answers from memory and
/// cannot fail: only Products can).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Products could not be reached.
    #[error("Products unavailable ({0:?})")]
    Unavailable(Code),
    /// Products answered with an error.
    #[error("CheckEntitlement failed ({0:?})")]
    Failed(Code),
}

/// A source of entitlement answers.
#[tonic::async_trait]
pub trait Source: fmt::Debug + Send + Sync {
    /// Which source this is, for the order it records and the reasons it gives.
    fn kind(&self) -> SourceKind;

    /// This source's answer to `query`.
    async fn answer(&self, query: &Query<'_>) -> Result<Answer, SourceError>;
}

/// What the chain decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Entitled, by this source.
    Allowed(SourceKind),
    /// Refused by `by`.
    Denied {
        /// The source that refused.
        by: SourceKind,
        /// Why.
        denial: Denial,
    },
    /// The only source's evidence has a claims version this reader does not
    /// accept: no retry will change that.
    UnsupportedVersion {
        /// The source.
        by: SourceKind,
        /// The version found.
        found: u32,
        /// The versions accepted.
        accepted: Vec<u32>,
    },
    /// No source could decide; each one's reason, in the order asked.
    Undecided(Vec<Reason>),
}

/// Why one source could not decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// The source.
    pub source: SourceKind,
    /// Its reason.
    pub reason: String,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.reason)
    }
}

/// The reasons of an undecided chain, as one sentence: `grant: …; rpc: …`.
pub fn reasons(reasons: &[Reason]) -> String {
    let reasons: Vec<String> = reasons.iter().map(Reason::to_string).collect();
    reasons.join("; ")
}

/// Sources asked in order; the first conclusive answer wins.
#[derive(Debug)]
pub struct Chain {
    sources: Vec<Arc<dyn Source>>,
}

impl Chain {
    /// A chain asking `sources` in this order.
    pub fn new(sources: Vec<Arc<dyn Source>>) -> Self {
        Self { sources }
    }

    /// Asks each source in turn until one allows or denies.
    pub async fn decide(&self, query: &Query<'_>) -> Decision {
        let mut undecided = Vec::new();
        for source in &self.sources {
            let kind = source.kind();
            let reason = match source.answer(query).await {
                Ok(Answer::Allow) => return Decision::Allowed(kind),
                Ok(Answer::Deny(denial)) => return Decision::Denied { by: kind, denial },
                // Alone, the source is the whole chain: its version is the
                // caller's to fix, not an outage to wait out.
                Ok(Answer::UnsupportedVersion { found, accepted }) if self.sources.len() == 1 => {
                    return Decision::UnsupportedVersion {
                        by: kind,
                        found,
                        accepted,
                    };
                }
                Ok(Answer::UnsupportedVersion { found, .. }) => {
                    format!("{kind} version {found} unsupported")
                }
                Ok(Answer::Inconclusive(reason)) => reason,
                Err(error) => error.to_string(),
            };
            undecided.push(Reason {
                source: kind,
                reason,
            });
        }
        tracing::debug!(reasons = %reasons(&undecided), "no entitlement source decided");
        Decision::Undecided(undecided)
    }
}

/// The chain as Orders runs it: the configured sources over one replica, and
/// what the replica needs to follow Products.
#[derive(Debug)]
pub struct Entitlements {
    chain: Chain,
    replica: Arc<replica::Replica>,
    /// Present when a configured source reads the replica.
    feed: Option<feed::Feed>,
}

impl Entitlements {
    /// The sources `config` names, trusting grants from `grant_issuer`, over the
    /// replica in `store` (loaded into memory now), with `deps` for Products.
    pub async fn new(
        config: &ChainConfig,
        grant_issuer: &str,
        store: Store,
        deps: &OrdersDeps,
    ) -> Result<Self, StoreError> {
        let freshness = FeedFreshness::new(deps.clock.clone(), config.max_feed_silence);
        let replica = replica::Replica::load(store).await?;
        let replica = Arc::new(replica.with_freshness(Arc::new(freshness)));
        let rpc = Arc::new(rpc::RpcSource::new(
            deps.products.clone(),
            deps.exchanger.clone(),
            config.rpc_cache_ttl,
        ));
        let grant = Arc::new(
            grant::GrantSource::new(
                grant_issuer,
                deps.grant_keys.clone(),
                config.grant_versions.clone(),
                replica.clone(),
            )
            .with_clock(deps.clock.clone()),
        );
        let sources = config
            .sources
            .iter()
            .map(|kind| -> Arc<dyn Source> {
                match kind {
                    SourceKind::Grant => grant.clone(),
                    SourceKind::Replica => replica.clone(),
                    SourceKind::Rpc => rpc.clone(),
                }
            })
            .collect();
        // The grant source reads the replica too: a revocation overrides older grants.
        let follows = config
            .sources
            .iter()
            .any(|source| matches!(source, SourceKind::Grant | SourceKind::Replica));
        let feed = follows.then(|| feed::Feed {
            replica: Arc::downgrade(&replica),
            rpc_cache: rpc.cache(),
            products: deps.products.clone(),
            credentials: deps.products_credentials.clone(),
        });
        Ok(Self {
            chain: Chain::new(sources),
            replica,
            feed,
        })
    }

    /// What the configured chain decides.
    pub async fn decide(&self, query: &Query<'_>) -> Decision {
        self.chain.decide(query).await
    }

    /// Whether the replica has caught up with Products' feed since Orders
    /// started, or no configured source reads it.
    pub fn replica_caught_up(&self) -> bool {
        self.feed.is_none() || self.replica.caught_up()
    }

    /// How current the replica's feed is.
    pub fn replica_freshness(&self) -> &Arc<FeedFreshness> {
        self.replica.freshness()
    }

    /// Starts following Products' feed into the replica, if a configured source
    /// reads it. The task ends when the handle is aborted or the replica dropped.
    pub fn spawn_replica_feed(&self) -> Option<JoinHandle<()>> {
        self.feed.clone().map(|feed| tokio::spawn(feed.follow()))
    }
}
