//! The tower layer that puts a [`Verifier`] and a [`Policy`] in front of a tonic
//! server: it reads the bearer token, verifies it, checks the method's rule and
//! hands the typed claims to the handler in the request extensions.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use http::{HeaderMap, Request, Response, header::AUTHORIZATION};
use pin_project_lite::pin_project;
use tonic::Status;
use tower::{Layer, Service};
use tracing::field::Empty;

use crate::{
    Access, Allowed, AuthError, AuthMetrics, Claims, Policy, Rule, Verifier, verifier::Lookup,
};

/// Layer that authenticates every request against a [`Policy`]. Handlers of
/// authenticated methods find the verified claims as `Arc<C>` in the extensions.
/// Each request is counted in [`AuthLayer::metrics`] by outcome and reason, and
/// gets an `auth` span at DEBUG recording them (refusals are logged at DEBUG only).
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

    /// Which methods it allows, and how.
    pub fn policy(&self) -> &Policy {
        &self.shared.policy
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
    type Future = AuthFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // DEBUG: at INFO, the level services run at, a request costs no span.
        let span = tracing::debug_span!(
            "auth",
            method = request.uri().path(),
            outcome = Empty,
            reason = Empty,
            subject = Empty
        );
        let shared = &self.shared;
        let scopes = match shared.policy.access(request.uri().path()) {
            Access::Rule(Rule::Public) => {
                allowed(&shared.metrics, &span, Allowed::Public);
                let future = span.in_scope(|| take_ready(&mut self.inner).call(request));
                return AuthFuture::inner(future, span);
            }
            Access::Rule(Rule::Authenticated { scopes }) => scopes,
            Access::NoRule => return AuthFuture::refused(&shared.metrics, span, AuthError::NoRule),
            // Answered here, not by the router: the inner service may route
            // paths this policy never saw, and none of them may pass without a
            // rule.
            Access::Unknown => {
                return AuthFuture::refused(&shared.metrics, span, AuthError::UnknownMethod);
            }
        };
        // A token verified before is answered here, without a boxed future; only
        // a signature check (and perhaps a key fetch) waits.
        let looked_up =
            bearer_token(request.headers()).and_then(|token| shared.verifier.lookup(token));
        let digest = match looked_up {
            Ok(Lookup::Hit(claims)) => {
                return match check_scopes(&*claims, scopes) {
                    Ok(()) => {
                        span.record("subject", claims.subject());
                        allowed(&shared.metrics, &span, Allowed::Cached);
                        request.extensions_mut().insert(claims);
                        let future = span.in_scope(|| take_ready(&mut self.inner).call(request));
                        AuthFuture::inner(future, span)
                    }
                    Err(error) => AuthFuture::refused(&shared.metrics, span, error),
                };
            }
            Ok(Lookup::Miss(digest)) => digest,
            Err(error) => return AuthFuture::refused(&shared.metrics, span, error),
        };
        let mut inner = take_ready(&mut self.inner);
        let shared = self.shared.clone();
        let verify_span = span.clone();
        let verifying = async move {
            let span = verify_span;
            let verified = match bearer_token(request.headers()) {
                Ok(token) => shared.verifier.verify_miss(token, digest).await,
                Err(error) => Err(error),
            };
            let scopes = match shared.policy.for_path(request.uri().path()) {
                Some(Rule::Authenticated { scopes }) => scopes.as_slice(),
                _ => &[],
            };
            match verified.and_then(|claims| check_scopes(&*claims, scopes).map(|()| claims)) {
                Ok(claims) => {
                    span.record("subject", claims.subject());
                    allowed(&shared.metrics, &span, Allowed::Verified);
                    request.extensions_mut().insert(claims);
                    inner.call(request).await
                }
                Err(error) => Ok(refuse(&shared.metrics, &span, error)),
            }
        };
        AuthFuture::verifying(Box::pin(verifying), span)
    }
}

pin_project! {
    /// The response future of [`Auth`]: a refusal ready at once, the inner
    /// service's own future (public methods and cached tokens: nothing boxed),
    /// or a boxed verification followed by the inner call. Polled inside the
    /// request's `auth` span.
    pub struct AuthFuture<F, B, E> {
        #[pin]
        state: State<F, B, E>,
        span: tracing::Span,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B, E> {
        Refused { response: Option<Response<B>> },
        Inner { #[pin] future: F },
        Verifying { future: BoxFuture<'static, Result<Response<B>, E>> },
    }
}

impl<F, B, E> AuthFuture<F, B, E> {
    /// A refusal of `error`, counted and recorded in `span`.
    fn refused(metrics: &AuthMetrics, span: tracing::Span, error: AuthError) -> Self
    where
        B: Default,
    {
        let response = Some(refuse(metrics, &span, error));
        Self {
            state: State::Refused { response },
            span,
        }
    }

    fn inner(future: F, span: tracing::Span) -> Self {
        Self {
            state: State::Inner { future },
            span,
        }
    }

    fn verifying(future: BoxFuture<'static, Result<Response<B>, E>>, span: tracing::Span) -> Self {
        Self {
            state: State::Verifying { future },
            span,
        }
    }
}

impl<F, B, E> Future for AuthFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        match this.state.project() {
            StateProj::Refused { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
            StateProj::Inner { future } => future.poll(cx),
            StateProj::Verifying { future } => future.as_mut().poll(cx),
        }
    }
}

/// The service that `poll_ready` made ready, leaving a clone in its place: a
/// clone is not necessarily ready itself.
pub(crate) fn take_ready<S: Clone>(slot: &mut S) -> S {
    let clone = slot.clone();
    std::mem::replace(slot, clone)
}

/// Whether `claims` carry every scope the method requires.
fn check_scopes<C: Claims>(claims: &C, scopes: &[String]) -> Result<(), AuthError> {
    match scopes.iter().find(|scope| !claims.has_scope(scope)) {
        Some(missing) => Err(AuthError::InsufficientScope(missing.clone())),
        None => Ok(()),
    }
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
    // DEBUG: a flood of bad tokens must not become a flood of logs; the
    // counters above say how many were refused, and why.
    tracing::debug!(reason, "request refused");
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
