//! How a service talks to Auth as itself: a client-credentials token kept fresh
//! ([`ServiceTokens`]), user tokens exchanged for one downstream audience
//! ([`TokenExchanger`]), and the revocation feed applied to a verifier's
//! [`RevocationSet`] ([`follow_revocations`]).

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
    time::Duration,
};

use futures::{FutureExt, future::BoxFuture};
use sha2::{Digest, Sha256};
use tokenmesh_interceptor::{
    BearerToken, RevocationSet, SubjectToken, TokenSource, TokenSourceError,
};
use tokenmesh_proto::auth::v1::{
    ExchangeTokenRequest, IssueServiceTokenRequest, WatchRevocationsRequest,
    auth_service_client::AuthServiceClient, revocation_event::Revoked,
};
use tokio::{sync::Mutex, time::Instant};
use tonic::{Request, Status, transport::Channel};

use crate::{bearer_metadata, now_unix};

/// Tokens are renewed when they have less than this left.
const RENEW_BEFORE: Duration = Duration::from_secs(15);
/// Exchanged tokens cached at most; the cache is emptied when it is full.
const MAX_EXCHANGED: usize = 10_000;

#[derive(Debug, Clone)]
struct Cached {
    token: String,
    renew_at: Instant,
}

impl Cached {
    fn new(token: String, expires_in: i64) -> Self {
        let lifetime = Duration::from_secs(u64::try_from(expires_in).unwrap_or_default());
        Self {
            token,
            renew_at: Instant::now() + lifetime.saturating_sub(RENEW_BEFORE),
        }
    }

    fn fresh(&self) -> Option<&str> {
        (Instant::now() < self.renew_at).then_some(self.token.as_str())
    }
}

/// A service's own access token (client credentials), renewed before expiry;
/// concurrent callers share one renewal.
#[derive(Debug)]
pub struct ServiceTokens {
    auth: AuthServiceClient<Channel>,
    client_id: String,
    client_secret: String,
    audience: String,
    cached: Mutex<Option<Cached>>,
}

impl ServiceTokens {
    /// Tokens for `client_id`, for `audience`, from Auth on `channel`.
    pub fn new(channel: Channel, client_id: &str, client_secret: &str, audience: &str) -> Self {
        Self {
            auth: AuthServiceClient::new(channel),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            audience: audience.to_owned(),
            cached: Mutex::new(None),
        }
    }

    /// A valid token, fetched if the cached one is missing or about to expire.
    pub async fn token(&self) -> Result<String, Status> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref().and_then(Cached::fresh) {
            return Ok(token.to_owned());
        }
        let response = self
            .auth
            .clone()
            .issue_service_token(IssueServiceTokenRequest {
                client_id: self.client_id.clone(),
                client_secret: self.client_secret.clone(),
                audience: self.audience.clone(),
            })
            .await?
            .into_inner();
        let fresh = Cached::new(response.access_token, response.expires_in);
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }
}

/// Exchanges user tokens for tokens of one downstream audience (RFC 8693),
/// acting as this service; exchanged tokens are reused until shortly before they
/// expire.
#[derive(Debug)]
pub struct TokenExchanger {
    auth: AuthServiceClient<Channel>,
    actor: Arc<ServiceTokens>,
    audience: String,
    cache: std::sync::Mutex<HashMap<[u8; 32], Cached>>,
}

impl TokenExchanger {
    /// Exchanges for `audience`, authenticated by `actor`'s tokens.
    pub fn new(channel: Channel, actor: Arc<ServiceTokens>, audience: &str) -> Self {
        Self {
            auth: AuthServiceClient::new(channel),
            actor,
            audience: audience.to_owned(),
            cache: std::sync::Mutex::default(),
        }
    }

    /// A token for the audience, on behalf of the user of `subject_token`.
    pub async fn exchange(&self, subject_token: &str) -> Result<String, Status> {
        let key: [u8; 32] = Sha256::digest(subject_token.as_bytes()).into();
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if let Some(token) = cached.as_ref().and_then(Cached::fresh) {
            return Ok(token.to_owned());
        }
        let mut request = Request::new(ExchangeTokenRequest {
            subject_token: subject_token.to_owned(),
            audience: self.audience.clone(),
        });
        request.metadata_mut().insert(
            "authorization",
            bearer_metadata(&self.actor.token().await?)?,
        );
        let response = self
            .auth
            .clone()
            .exchange_token(request)
            .await?
            .into_inner();
        let fresh = Cached::new(response.access_token, response.expires_in);
        let token = fresh.token.clone();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_EXCHANGED {
            cache.clear();
        }
        cache.insert(key, fresh);
        Ok(token)
    }
}

// === impl TokenSource ===
//
// So that either can sit behind the interceptor's `AttachTokenLayer` on a client
// channel: the service's own token, or the caller's token exchanged.

/// Auth unreachable or failing is worth a retry; a refusal is not.
fn source_error(status: Status) -> TokenSourceError {
    match status.code() {
        tonic::Code::Unavailable
        | tonic::Code::DeadlineExceeded
        | tonic::Code::ResourceExhausted
        | tonic::Code::Internal
        | tonic::Code::Unknown => TokenSourceError::Unavailable(status.message().to_owned()),
        _ => TokenSourceError::Refused(status.message().to_owned()),
    }
}

impl TokenSource for ServiceTokens {
    fn token<'a>(
        &'a self,
        _: &'a http::Extensions,
    ) -> BoxFuture<'a, Result<BearerToken, TokenSourceError>> {
        async move { BearerToken::new(&self.token().await.map_err(source_error)?) }.boxed()
    }
}

impl TokenSource for TokenExchanger {
    /// Exchanges the request's [`SubjectToken`]; a request without one is not sent.
    fn token<'a>(
        &'a self,
        extensions: &'a http::Extensions,
    ) -> BoxFuture<'a, Result<BearerToken, TokenSourceError>> {
        let subject = extensions.get::<SubjectToken>().cloned();
        async move {
            let subject = subject
                .ok_or_else(|| TokenSourceError::Refused("no subject token to exchange".into()))?;
            BearerToken::new(&self.exchange(&subject.0).await.map_err(source_error)?)
        }
        .boxed()
    }
}

/// Follows Auth's revocation feed into `revocations` until the set is dropped:
/// reconnects with its cursor after any drop (Auth restart, network), with
/// backoff, and prunes entries that can no longer match.
pub fn follow_revocations(
    channel: Channel,
    credentials: Arc<ServiceTokens>,
    revocations: &Arc<RevocationSet>,
) -> tokio::task::JoinHandle<()> {
    let revocations: Weak<RevocationSet> = Arc::downgrade(revocations);
    let mut auth = AuthServiceClient::new(channel);
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(50);
        loop {
            let Some(since) = revocations.upgrade().map(|set| set.cursor()) else {
                return;
            };
            match watch_once(&mut auth, &credentials, &revocations, since).await {
                Ok(applied) if applied > 0 => backoff = Duration::from_millis(50),
                Ok(_) => {}
                Err(status) => {
                    tracing::debug!(code = ?status.code(), message = status.message(), "revocation feed interrupted");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    })
}

async fn watch_once(
    auth: &mut AuthServiceClient<Channel>,
    credentials: &ServiceTokens,
    revocations: &Weak<RevocationSet>,
    since: u64,
) -> Result<usize, Status> {
    let mut request = Request::new(WatchRevocationsRequest { since });
    request.metadata_mut().insert(
        "authorization",
        bearer_metadata(&credentials.token().await?)?,
    );
    let mut stream = auth.watch_revocations(request).await?.into_inner();
    let mut applied = 0;
    while let Some(event) = stream.message().await? {
        let Some(set) = revocations.upgrade() else {
            return Ok(applied);
        };
        match event.revoked {
            Some(Revoked::Subject(subject)) => {
                set.revoke_subject(&subject.subject, subject.not_before, subject.forget_after)
            }
            Some(Revoked::Token(token)) => set.revoke_token(&token.jti, token.expires_at),
            None => {}
        }
        set.set_cursor(event.cursor);
        set.prune(now_unix());
        applied += 1;
    }
    Ok(applied)
}
