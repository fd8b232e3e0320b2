//! How Auth issues tokens: lifetimes, audiences, the algorithm of new keys, login
//! throttling, key-rotation timing, the public URL its discovery document
//! names, and the one clock every expiry, epoch and key lifetime is read from.

use std::time::Duration;

use tokenmesh_interceptor::{SharedClock, system_clock};
use tokenmesh_proto::names::audience;
use tokenmesh_server::{
    SigningAlgorithm, Wakeups,
    wakeups::{REVOCATIONS, SIGNING_KEYS, SQLITE_POLL},
};

use crate::ThrottleConfig;

/// Leeway verifiers may allow at most: revocation entries and retired keys
/// outlive the last token they concern by this much.
pub(crate) const MAX_VERIFIER_LEEWAY_SECS: i64 = tokenmesh_interceptor::MAX_LEEWAY.as_secs() as i64;

/// The channels Auth's [`Wakeups`] listen on.
pub(crate) const WAKEUP_CHANNELS: &[&str] = &[REVOCATIONS, SIGNING_KEYS];

/// How Auth issues tokens.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `iss` of every token.
    pub issuer: String,
    /// `aud` of user access tokens.
    pub audiences: Vec<String>,
    /// Lifetime of access tokens.
    pub access_token_ttl: Duration,
    /// Lifetime of refresh tokens (sliding: each refresh issues a new one).
    pub refresh_token_ttl: Duration,
    /// A login ends this long after it started, however often it refreshes.
    pub session_max_lifetime: Duration,
    /// Refresh and Logout calls allowed per minute from one client address
    /// (0: no limit).
    pub refresh_rate_limit: u32,
    /// IssueServiceToken calls allowed per minute for one client id (0: no limit).
    pub service_token_rate_limit: u32,
    /// Longest lifetime of an exchanged token (never beyond the subject token's).
    pub exchange_token_ttl: Duration,
    /// Algorithm of new keys (rotation).
    pub signing_algorithm: SigningAlgorithm,
    /// Login throttling.
    pub throttle: ThrottleConfig,
    /// How often keys are re-read from the database (rotation by another replica
    /// or the CLI).
    pub key_reload_interval: Duration,
    /// How long a retired key stays published after the last token it signed
    /// has expired (cover the verifiers' leeway).
    pub retired_key_grace: Duration,
    /// Where clients reach Auth's HTTP routes: discovery's `jwks_uri` is built
    /// from it, never from a request. `None`: no discovery document.
    pub public_url: Option<crate::PublicUrl>,
    /// Where Auth reads the time (tests move a `ManualClock`), the login
    /// throttle's delays included.
    pub clock: SharedClock,
    /// What wakes the revocation feed and the key reload: writes here and, on
    /// PostgreSQL, every replica's (channels `revocations`, `signing_keys`).
    pub wakeups: Wakeups,
}

impl AuthConfig {
    /// Tokens from `issuer` for Auth, Products and Orders: 5-minute access tokens,
    /// 30-day refresh tokens, logins capped at 30 days, 1-minute exchanged
    /// tokens; 600 Refresh/Logout per minute per address, 60 service tokens per
    /// minute per client; the system clock.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences: audience::USER_TOKEN.map(String::from).to_vec(),
            access_token_ttl: Duration::from_secs(300),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            session_max_lifetime: Duration::from_secs(30 * 24 * 3600),
            refresh_rate_limit: 600,
            service_token_rate_limit: 60,
            exchange_token_ttl: Duration::from_secs(60),
            signing_algorithm: SigningAlgorithm::EdDSA,
            throttle: ThrottleConfig::default(),
            key_reload_interval: Duration::from_secs(2),
            retired_key_grace: Duration::from_secs(MAX_VERIFIER_LEEWAY_SECS as u64),
            public_url: None,
            clock: system_clock(),
            wakeups: Wakeups::local(WAKEUP_CHANNELS, SQLITE_POLL),
        }
    }

    /// The same configuration reading the time from `clock`.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// How long a subject revocation matters after its epoch: until every token
    /// issued before it has expired, even to the most lenient verifier.
    pub(crate) fn revocation_lifetime(&self) -> i64 {
        secs(self.access_token_ttl) + MAX_VERIFIER_LEEWAY_SECS
    }
}

/// Whole seconds of `duration`, as token times count them.
pub(crate) fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}
