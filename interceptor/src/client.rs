//! The client side: [`AttachTokenLayer`] puts `authorization: Bearer <token>` on
//! every request of a tonic client, taking the token from a [`TokenSource`] —
//! a fixed one ([`StaticToken`]) or one fetched and refreshed before it expires
//! ([`RefreshingToken`] around a [`TokenFetcher`], in `refresh`).

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use futures::{
    FutureExt,
    future::{BoxFuture, ready},
};
use http::{HeaderValue, Request, Response, header::AUTHORIZATION};
use tonic::Status;
use tower::{Layer, Service};

/// Why a client has no token to send. Mapped to the status the call fails with:
/// `UNAVAILABLE` (try again later) or `UNAUTHENTICATED` (the credentials are bad).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenSourceError {
    /// The issuer could not be reached or failed; a retry may succeed.
    #[error("token issuer unavailable: {0}")]
    Unavailable(String),
    /// The issuer refused: wrong client credentials, a subject token it will
    /// not exchange, or a token that cannot be sent as metadata.
    #[error("no token issued: {0}")]
    Refused(String),
}

impl From<TokenSourceError> for Status {
    fn from(error: TokenSourceError) -> Self {
        match &error {
            TokenSourceError::Unavailable(_) => Status::unavailable(error.to_string()),
            TokenSourceError::Refused(_) => Status::unauthenticated(error.to_string()),
        }
    }
}

/// A token ready to send: the `authorization` value `Bearer <token>`, marked
/// sensitive so that HTTP/2 never indexes it. Its `Debug` shows no token.
#[derive(Clone)]
pub struct BearerToken(HeaderValue);

impl BearerToken {
    /// `Bearer <token>`; refused if `token` is not visible ASCII.
    pub fn new(token: &str) -> Result<Self, TokenSourceError> {
        let mut value = HeaderValue::try_from(format!("Bearer {token}"))
            .map_err(|_| TokenSourceError::Refused("token is not valid metadata".into()))?;
        value.set_sensitive(true);
        Ok(Self(value))
    }

    /// The `authorization` header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

/// Where a client gets the token it sends, once per request.
///
/// Implementations must be cheap when they already hold a valid token: the
/// layer asks on every call. `extensions` are the outgoing request's (tonic
/// copies a `tonic::Request`'s extensions there), so a source can depend on the
/// request — e.g. a token-exchange source reads the caller's subject token that
/// the handler put there, and returns a token for the downstream audience.
///
/// Sources that fetch tokens should wrap a [`TokenFetcher`] in
/// [`RefreshingToken`], which refreshes before expiry, single-flight, and keeps
/// serving the current token if a refresh fails while it is still valid.
pub trait TokenSource: Send + Sync + 'static {
    /// The token to send with a request carrying `extensions`.
    fn token<'a>(
        &'a self,
        extensions: &'a http::Extensions,
    ) -> BoxFuture<'a, Result<BearerToken, TokenSourceError>>;
}

/// The token of the caller on whose behalf an outgoing request is made (RFC
/// 8693's subject token). A handler puts it in the outgoing `tonic::Request`'s
/// extensions; a token-exchange [`TokenSource`] reads it there.
#[derive(Clone)]
pub struct SubjectToken(pub Arc<str>);

impl fmt::Debug for SubjectToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectToken(..)")
    }
}

/// Always the same token (a long-lived service token, a test token).
#[derive(Debug, Clone)]
pub struct StaticToken(BearerToken);

impl StaticToken {
    /// Sends `token` on every request.
    pub fn new(token: &str) -> Result<Self, TokenSourceError> {
        BearerToken::new(token).map(Self)
    }
}

impl TokenSource for StaticToken {
    fn token<'a>(
        &'a self,
        _: &'a http::Extensions,
    ) -> BoxFuture<'a, Result<BearerToken, TokenSourceError>> {
        ready(Ok(self.0.clone())).boxed()
    }
}

/// Layer for tonic clients (around a `Channel`) that sends a token from a
/// [`TokenSource`] with every request, and the caller's trace context
/// (`traceparent`, see [`crate::trace_context`]). A request that already carries
/// `authorization` keeps it. When the source has no token the call fails with
/// the status of its [`TokenSourceError`], and nothing is sent.
pub struct AttachTokenLayer {
    source: Arc<dyn TokenSource>,
}

impl Clone for AttachTokenLayer {
    fn clone(&self) -> Self {
        Self {
            source: self.source.clone(),
        }
    }
}

impl fmt::Debug for AttachTokenLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachTokenLayer").finish_non_exhaustive()
    }
}

impl AttachTokenLayer {
    /// Sends tokens from `source`.
    pub fn new(source: impl TokenSource) -> Self {
        Self {
            source: Arc::new(source),
        }
    }

    /// Sends tokens from a shared `source`.
    pub fn shared(source: Arc<dyn TokenSource>) -> Self {
        Self { source }
    }
}

impl<S> Layer<S> for AttachTokenLayer {
    type Service = AttachToken<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AttachToken {
            inner,
            source: self.source.clone(),
        }
    }
}

/// The service [`AttachTokenLayer`] wraps around a client channel.
#[derive(Clone)]
pub struct AttachToken<S> {
    inner: S,
    source: Arc<dyn TokenSource>,
}

impl<S> fmt::Debug for AttachToken<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachToken").finish_non_exhaustive()
    }
}

// === impl AttachToken ===

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AttachToken<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let mut inner = crate::layer::take_ready(&mut self.inner);
        let source = self.source.clone();
        // Here, not in the future: the caller's span is the current one now.
        crate::trace_context::inject(request.headers_mut());
        Box::pin(async move {
            if !request.headers().contains_key(AUTHORIZATION) {
                match source.token(request.extensions()).await {
                    Ok(token) => {
                        request
                            .headers_mut()
                            .insert(AUTHORIZATION, token.header_value().clone());
                    }
                    Err(error) => return Ok(Status::from(error).into_http()),
                }
            }
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use std::time::Duration;

    use super::*;
    use crate::{IssuedToken, RefreshingToken, TokenFetcher};

    struct Counting {
        fetches: Arc<AtomicUsize>,
        lifetime: Duration,
        fail_after: usize,
    }

    impl TokenFetcher for Counting {
        fn fetch(&self) -> BoxFuture<'_, Result<IssuedToken, TokenSourceError>> {
            let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
            let lifetime = self.lifetime;
            let fail = n > self.fail_after;
            async move {
                tokio::task::yield_now().await;
                if fail {
                    return Err(TokenSourceError::Unavailable("issuer down".into()));
                }
                Ok(IssuedToken {
                    access_token: format!("token-{n}"),
                    expires_in: lifetime,
                })
            }
            .boxed()
        }
    }

    fn value(token: &BearerToken) -> &str {
        token.header_value().to_str().expect("ascii")
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_share_one_fetch_and_refresh_happens_before_expiry() {
        let fetches = Arc::new(AtomicUsize::new(0));
        let source = Arc::new(RefreshingToken::new(Counting {
            fetches: fetches.clone(),
            lifetime: Duration::from_secs(300),
            fail_after: usize::MAX,
        }));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let source = source.clone();
                tokio::spawn(async move { source.get().await })
            })
            .collect();
        for task in tasks {
            assert_eq!(
                value(&task.await.expect("task").expect("token")),
                "Bearer token-1"
            );
        }
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            1,
            "one fetch for sixteen requests"
        );

        tokio::time::advance(Duration::from_secs(269)).await;
        assert_eq!(value(&source.get().await.expect("token")), "Bearer token-1");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            value(&source.get().await.expect("token")),
            "Bearer token-2",
            "refreshed 30 s before expiry"
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_keeps_the_valid_token_and_an_expired_one_is_not_sent() {
        let source = RefreshingToken::new(Counting {
            fetches: Arc::new(AtomicUsize::new(0)),
            lifetime: Duration::from_secs(60),
            fail_after: 1,
        })
        .refresh_before(Duration::from_secs(20));
        assert_eq!(value(&source.get().await.expect("token")), "Bearer token-1");
        tokio::time::advance(Duration::from_secs(45)).await;
        assert_eq!(
            value(&source.get().await.expect("still valid")),
            "Bearer token-1",
            "issuer down, token valid: keep it"
        );
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(
            source.get().await.expect_err("expired"),
            TokenSourceError::Unavailable("issuer down".into())
        );
    }
}
