//! A token fetched from an issuer and refreshed before it expires
//! ([`RefreshingToken`] around a [`TokenFetcher`]): single-flight, and the
//! current token kept while a refresh fails and it is still valid.

use std::{fmt, sync::Arc, time::Duration};

use arc_swap::ArcSwapOption;
use futures::{FutureExt, future::BoxFuture};
use tokio::{sync::Mutex, time::Instant};

use crate::{BearerToken, SharedClock, TokenSource, TokenSourceError};

/// A token as an issuer hands it out (OAuth 2.0 token response, RFC 6749 §5.1).
#[derive(Clone)]
pub struct IssuedToken {
    /// The token.
    pub access_token: String,
    /// How long it lives from now (`expires_in`).
    pub expires_in: Duration,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Fetches a fresh token from an issuer: client credentials, a refresh token…
/// Called by [`RefreshingToken`] only, never concurrently.
pub trait TokenFetcher: Send + Sync + 'static {
    /// Asks the issuer for a new token.
    fn fetch(&self) -> BoxFuture<'_, Result<IssuedToken, TokenSourceError>>;
}

/// How long before expiry [`RefreshingToken`] refreshes, unless told otherwise
/// (at most half the token's lifetime).
pub const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(30);

struct Current {
    token: BearerToken,
    refresh_at: Instant,
    expires_at: Instant,
    /// The same two moments on the injected clock, if any (`i64::MAX`: none).
    refresh_at_unix: i64,
    expires_at_unix: i64,
}

/// A [`TokenSource`] over a [`TokenFetcher`]: fetches on first use, refreshes
/// once the token is within `refresh_before` of expiry (single-flight: one fetch
/// however many requests need it, and requests never wait on a refresh while the
/// current token is still valid), and keeps the current token if a refresh fails.
pub struct RefreshingToken<F> {
    fetcher: F,
    current: ArcSwapOption<Current>,
    refreshing: Mutex<()>,
    refresh_before: Duration,
    clock: Option<SharedClock>,
}

impl<F> fmt::Debug for RefreshingToken<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshingToken")
            .field("refresh_before", &self.refresh_before)
            .finish_non_exhaustive()
    }
}

impl<F: TokenFetcher> RefreshingToken<F> {
    /// Tokens from `fetcher`, refreshed [`DEFAULT_REFRESH_BEFORE`] before expiry.
    pub fn new(fetcher: F) -> Self {
        Self {
            fetcher,
            current: ArcSwapOption::empty(),
            refreshing: Mutex::new(()),
            refresh_before: DEFAULT_REFRESH_BEFORE,
            clock: None,
        }
    }

    /// Also refreshes when `clock` (the one the token's verifiers read) says the
    /// token is due, e.g. when a test moves a [`crate::ManualClock`] past it.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    fn now_unix(&self) -> i64 {
        self.clock
            .as_ref()
            .map_or(i64::MIN, |clock| clock.now_unix())
    }

    fn due(&self, current: &Current) -> bool {
        Instant::now() >= current.refresh_at || self.now_unix() >= current.refresh_at_unix
    }

    fn valid(&self, current: &Current) -> bool {
        Instant::now() < current.expires_at && self.now_unix() < current.expires_at_unix
    }

    /// Refreshes `before` expiry instead (capped at half the token's lifetime).
    pub fn refresh_before(mut self, before: Duration) -> Self {
        self.refresh_before = before;
        self
    }

    /// The current token, fetching or refreshing it if due.
    pub async fn get(&self) -> Result<BearerToken, TokenSourceError> {
        if let Some(current) = self.current.load_full() {
            if !self.due(&current) {
                return Ok(current.token.clone());
            }
            // Due for refresh but still valid: one request refreshes, the others
            // go on with the current token.
            if self.valid(&current) {
                let Ok(_refreshing) = self.refreshing.try_lock() else {
                    return Ok(current.token.clone());
                };
                return self.refresh().await;
            }
        }
        let _refreshing = self.refreshing.lock().await;
        self.refresh().await
    }

    /// Fetches a new token unless another request just did; the caller holds
    /// `refreshing`.
    async fn refresh(&self) -> Result<BearerToken, TokenSourceError> {
        let current = self.current.load_full();
        if let Some(current) = &current
            && !self.due(current)
        {
            return Ok(current.token.clone());
        }
        match self.fetcher.fetch().await {
            Ok(issued) => {
                let token = BearerToken::new(&issued.access_token)?;
                let now = Instant::now();
                let early = self.refresh_before.min(issued.expires_in / 2);
                let unix = |after: Duration| match &self.clock {
                    Some(clock) => clock
                        .now_unix()
                        .saturating_add(i64::try_from(after.as_secs()).unwrap_or(i64::MAX)),
                    None => i64::MAX,
                };
                self.current.store(Some(Arc::new(Current {
                    token: token.clone(),
                    refresh_at: now + issued.expires_in - early,
                    expires_at: now + issued.expires_in,
                    refresh_at_unix: unix(issued.expires_in - early),
                    expires_at_unix: unix(issued.expires_in),
                })));
                tracing::debug!(expires_in = ?issued.expires_in, "token refreshed");
                Ok(token)
            }
            Err(error) => match current {
                Some(current) if self.valid(&current) => {
                    tracing::warn!(%error, "token refresh failed; the current token is still valid");
                    Ok(current.token.clone())
                }
                _ => Err(error),
            },
        }
    }
}

impl<F: TokenFetcher> TokenSource for RefreshingToken<F> {
    fn token<'a>(
        &'a self,
        _: &'a http::Extensions,
    ) -> BoxFuture<'a, Result<BearerToken, TokenSourceError>> {
        self.get().boxed()
    }
}
