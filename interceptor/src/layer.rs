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

use crate::{AuthError, Claims, Policy, Rule, Verifier};

/// Layer that authenticates every request against a [`Policy`]. Handlers of
/// authenticated methods find the verified claims as `Arc<C>` in the extensions.
pub struct AuthLayer<C> {
    verifier: Arc<Verifier<C>>,
    policy: Arc<Policy>,
}

impl<C> Clone for AuthLayer<C> {
    fn clone(&self) -> Self {
        Self {
            verifier: self.verifier.clone(),
            policy: self.policy.clone(),
        }
    }
}

impl<C: Claims> AuthLayer<C> {
    /// Verifies tokens with `verifier`, allows methods by `policy`.
    pub fn new(verifier: Arc<Verifier<C>>, policy: Policy) -> Self {
        Self {
            verifier,
            policy: Arc::new(policy),
        }
    }
}

impl<S, C> Layer<S> for AuthLayer<C> {
    type Service = Auth<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            verifier: self.verifier.clone(),
            policy: self.policy.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around a server.
pub struct Auth<S, C> {
    inner: S,
    verifier: Arc<Verifier<C>>,
    policy: Arc<Policy>,
}

// === impl Auth ===

impl<S: Clone, C> Clone for Auth<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            verifier: self.verifier.clone(),
            policy: self.policy.clone(),
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
        // The clone is not necessarily ready; take the one that is.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        let policy = self.policy.clone();
        Box::pin(async move {
            let path = request.uri().path();
            let scopes = match policy.for_path(path) {
                Some(Rule::Public) => return inner.call(request).await,
                Some(Rule::Authenticated { scopes }) => scopes,
                None => return Ok(refuse(path, AuthError::NoRule)),
            };
            let claims = match authenticate(&verifier, request.headers(), scopes).await {
                Ok(claims) => claims,
                Err(error) => return Ok(refuse(path, error)),
            };
            tracing::debug!(method = path, subject = claims.subject(), "authenticated");
            request.extensions_mut().insert(claims);
            inner.call(request).await
        })
    }
}

async fn authenticate<C: Claims>(
    verifier: &Verifier<C>,
    headers: &HeaderMap,
    scopes: &[String],
) -> Result<Arc<C>, AuthError> {
    let token = bearer_token(headers)?;
    let claims = verifier.verify(token).await?;
    if let Some(missing) = scopes.iter().find(|scope| !claims.has_scope(scope)) {
        return Err(AuthError::InsufficientScope(missing.clone()));
    }
    Ok(claims)
}

fn refuse<B: Default>(path: &str, error: AuthError) -> Response<B> {
    tracing::info!(method = path, reason = error.reason(), "request refused");
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
