//! Verifies JWT bearer tokens for tonic servers, locally, with no call to the issuer
//! on the request path. Generic: it knows tokens, keys and per-method policies,
//! nothing about the services that use it.
//!
//! The pieces, from the bottom up: [`KeySet`] and [`KeyStore`] (which keys are
//! trusted, each pinned to one algorithm, fed by a [`KeySource`] such as
//! [`HttpJwksSource`]), [`Verifier`] (is this token valid for me? one or more
//! issuers, a verified-token cache, a [`RevocationSet`]), [`Policy`] (what does
//! this method require? possibly read from the proto), and [`AuthLayer`], the
//! tower layer that ties them to a tonic server and counts its decisions in
//! [`AuthMetrics`]. On the client side, [`AttachTokenLayer`] sends tokens from a
//! [`TokenSource`], and carries the caller's trace context ([`trace_context`]).
//!
//! `README.md` beside this crate shows a third-party server protected in twenty
//! lines (`examples/protected_server.rs`) and lists every knob with its default.

#![forbid(unsafe_code)]

mod cache;
mod client;
mod clock;
mod error;
mod freshness;
#[cfg(feature = "http-jwks")]
mod http;
mod key_set;
mod keys;
mod layer;
mod metrics;
mod policy;
mod refresh;
mod revocation;
pub mod trace_context;
mod verifier;

pub use client::{
    AttachToken, AttachTokenLayer, BearerToken, StaticToken, SubjectToken, TokenSource,
    TokenSourceError,
};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock, system_clock};
pub use error::{AuthError, ERROR_DOMAIN};
pub use freshness::{FeedFreshness, Stale};
#[cfg(feature = "http-jwks")]
pub use http::{HttpJwksSource, MAX_JWKS_BYTES};
pub use keys::{KeySet, KeySource, KeySourceError, KeyStore, VerificationKey};
pub use layer::{Auth, AuthFuture, AuthLayer, bearer_token};
pub use metrics::{Allowed, AuthMetrics, label_value};
pub use policy::{Access, Policy, PolicyError, RULE_OPTION, Rule};
pub use refresh::{DEFAULT_REFRESH_BEFORE, IssuedToken, RefreshingToken, TokenFetcher};
pub use revocation::RevocationSet;
pub use verifier::{
    ASYMMETRIC, Claims, DEFAULT_CACHE_CAPACITY, MAX_LEEWAY, Verifier, VerifierConfig,
};
