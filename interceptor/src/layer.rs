//! The tower layer that puts a [`Verifier`] and a [`Policy`] in front of a tonic
//! server: it reads the bearer token, verifies it, checks the method's rule and
//! hands the typed claims to the handler in the request extensions.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use http::{HeaderMap, Request, Response, header::AUTHORIZATION};
use tonic::Status;
use tower::{Layer, Service};
use tracing::{Instrument, field::Empty};

use crate::{Access, Allowed, AuthError, AuthMetrics, Claims, Policy, Rule, Verifier};

/// Layer that authenticates every request against a [`Policy`]. Handlers of
/// authenticated methods find the verified claims as `Arc<C>` in the extensions.
/// Each request gets an `auth` span with its `outcome` and `reason`, and is
/// counted in [`AuthLayer::metrics`].
pub struct AuthLayer<C> {
    shared: Arc<Shared<C>>,
}

struct Shared<C> {
    verifier: Arc<Verifier<C>>,
    policy: Policy,
    metrics: Arc<AuthMetrics>,
}

impl<C> Clone for AuthLayer<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<C: Claims> AuthLayer<C> {
    /// Verifies tokens with `verifier`, allows methods by `policy`.
    pub fn new(verifier: Arc<Verifier<C>>, policy: Policy) -> Self {
        Self {
            shared: Arc::new(Shared {
                verifier,
                policy,
                metrics: Arc::default(),
            }),
        }
    }

    /// The verifier (its revocation feed says whether the server may serve).
    pub fn verifier(&self) -> &Arc<Verifier<C>> {
        &self.shared.verifier
    }

    /// What this layer has let through and refused, for `/metrics`.
    pub fn metrics(&self) -> Arc<AuthMetrics> {
        self.shared.metrics.clone()
    }
}

impl<S, C> Layer<S> for AuthLayer<C> {
    type Service = Auth<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around a server.
pub struct Auth<S, C> {
    inner: S,
    shared: Arc<Shared<C>>,
}

// === impl Auth ===

impl<S: Clone, C> Clone for Auth<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for Auth<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    C: Claims,
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
        let mut inner = take_ready(&mut self.inner);
        let shared = self.shared.clone();
        let span = tracing::info_span!(
            "auth",
            method = request.uri().path(),
            outcome = Empty,
            reason = Empty,
            subject = Empty
        );
        Box::pin(
            async move {
                let span = tracing::Span::current();
                let scopes = match shared.policy.access(request.uri().path()) {
                    Access::Rule(Rule::Public) => {
                        allowed(&shared.metrics, &span, Allowed::Public);
                        return inner.call(request).await;
                    }
                    Access::Rule(Rule::Authenticated { scopes }) => scopes,
                    Access::NoRule => return Ok(refuse(&shared.metrics, &span, AuthError::NoRule)),
                    // Answered here, not by the router: the inner service may
                    // route paths this policy never saw, and none of them may
                    // pass without a rule.
                    Access::Unknown => {
                        return Ok(refuse(&shared.metrics, &span, AuthError::UnknownMethod));
                    }
                };
                match authenticate(&shared.verifier, request.headers(), scopes).await {
                    Ok((claims, why)) => {
                        span.record("subject", claims.subject());
                        allowed(&shared.metrics, &span, why);
                        request.extensions_mut().insert(claims);
                        inner.call(request).await
                    }
                    Err(error) => Ok(refuse(&shared.metrics, &span, error)),
                }
            }
            .instrument(span),
        )
    }
}

/// The service that `poll_ready` made ready, leaving a clone in its place: a
/// clone is not necessarily ready itself.
pub(crate) fn take_ready<S: Clone>(slot: &mut S) -> S {
    let clone = slot.clone();
    std::mem::replace(slot, clone)
}

async fn authenticate<C: Claims>(
    verifier: &Verifier<C>,
    headers: &HeaderMap,
    scopes: &[String],
) -> Result<(Arc<C>, Allowed), AuthError> {
    let token = bearer_token(headers)?;
    let (claims, why) = verifier.verify_counted(token).await?;
    if let Some(missing) = scopes.iter().find(|scope| !claims.has_scope(scope)) {
        return Err(AuthError::InsufficientScope(missing.clone()));
    }
    Ok((claims, why))
}

fn allowed(metrics: &AuthMetrics, span: &tracing::Span, why: Allowed) {
    metrics.allowed(why);
    span.record("outcome", "allowed");
    span.record("reason", why.reason());
}

fn refuse<B: Default>(
    metrics: &AuthMetrics,
    span: &tracing::Span,
    error: AuthError,
) -> Response<B> {
    let reason = error.reason();
    metrics.refused(reason);
    span.record("outcome", "refused");
    span.record("reason", reason);
    tracing::info!(reason, "request refused");
    Status::from(error).into_http()
}

/// The token of the one `authorization: Bearer <token>` value in `headers`. The
/// scheme is matched case-insensitively (RFC 9110 §11.1).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthError::Missing)?;
    if values.next().is_some() {
        return Err(AuthError::Duplicate);
    }
    let value = value
        .to_str()
        .map_err(|_| AuthError::Malformed("authorization is not visible ASCII".into()))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::NotBearer);
    }
    let token = token.trim_matches(' ');
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token)
}
