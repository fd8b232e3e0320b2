//! How a service talks to Auth as itself: a client-credentials token kept fresh
//! ([`ServiceTokens`]), user tokens exchanged for one downstream audience
//! ([`TokenExchanger`]), and the revocation feed applied to a verifier's
//! [`RevocationSet`] ([`follow_revocations`]).

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Weak},
    time::Duration,
};

use futures::{FutureExt, future::BoxFuture};
use sha2::{Digest, Sha256};
use tokenmesh_interceptor::{
    AttachToken, AttachTokenLayer, BearerToken, FeedFreshness, IssuedToken, RefreshingToken,
    RevocationSet, SubjectToken, TokenFetcher, TokenSource, TokenSourceError,
};
use tokenmesh_proto::auth::v1::{
    ExchangeTokenRequest, IssueServiceTokenRequest, RevocationEvent, WatchRevocationsRequest,
    auth_service_client::AuthServiceClient, revocation_event::Revoked,
};
use tokio::time::Instant;
use tonic::{Status, transport::Channel};
use tower::Layer;

use crate::now_unix;

/// Exchanged tokens are renewed when they have less than this left.
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

/// Client credentials (RFC 6749 §4.4) at Auth, for [`RefreshingToken`].
struct ClientCredentials {
    auth: AuthServiceClient<Channel>,
    request: IssueServiceTokenRequest,
}

impl TokenFetcher for ClientCredentials {
    fn fetch(&self) -> BoxFuture<'_, Result<IssuedToken, TokenSourceError>> {
        async move {
            let response = self
                .auth
                .clone()
                .issue_service_token(self.request.clone())
                .await
                .map_err(source_error)?
                .into_inner();
            Ok(IssuedToken {
                access_token: response.access_token,
                expires_in: Duration::from_secs(
                    u64::try_from(response.expires_in).unwrap_or_default(),
                ),
            })
        }
        .boxed()
    }
}

/// A service's own access token (client credentials): the interceptor's
/// [`RefreshingToken`] over Auth's `IssueServiceToken` — renewed before expiry,
/// one fetch for all callers, the current token kept if Auth is briefly down.
pub struct ServiceTokens(RefreshingToken<ClientCredentials>);

impl fmt::Debug for ServiceTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ServiceTokens").field(&self.0).finish()
    }
}

impl ServiceTokens {
    /// Tokens for `client_id`, for `audience`, from Auth on `channel`.
    pub fn new(channel: Channel, client_id: &str, client_secret: &str, audience: &str) -> Self {
        Self(RefreshingToken::new(ClientCredentials {
            auth: AuthServiceClient::new(channel),
            request: IssueServiceTokenRequest {
                client_id: client_id.to_owned(),
                client_secret: client_secret.to_owned(),
                audience: audience.to_owned(),
            },
        }))
    }

    /// Also renews when `clock` (the one its verifiers read) says the token is
    /// due: a long-lived stream that ended at the token's expiry resubscribes
    /// with a fresh one.
    pub fn with_clock(self, clock: tokenmesh_interceptor::SharedClock) -> Self {
        Self(self.0.with_clock(clock))
    }
}

/// Exchanges user tokens for tokens of one downstream audience (RFC 8693),
/// acting as this service; exchanged tokens are reused until shortly before they
/// expire.
#[derive(Debug)]
pub struct TokenExchanger {
    /// Auth, called as this service: the layer attaches its own token.
    auth: AuthServiceClient<AttachToken<Channel>>,
    audience: String,
    cache: std::sync::Mutex<HashMap<[u8; 32], Cached>>,
}

impl TokenExchanger {
    /// Exchanges for `audience`, authenticated by `actor`'s tokens.
    pub fn new(channel: Channel, actor: Arc<ServiceTokens>, audience: &str) -> Self {
        Self {
            auth: AuthServiceClient::new(AttachTokenLayer::shared(actor).layer(channel)),
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
        let request = ExchangeTokenRequest {
            subject_token: subject_token.to_owned(),
            audience: self.audience.clone(),
        };
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
        extensions: &'a http::Extensions,
    ) -> BoxFuture<'a, Result<BearerToken, TokenSourceError>> {
        self.0.token(extensions)
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
/// reconnects with its cursor after any drop (Auth restart, network, token
/// expiry), with backoff, prunes entries that can no longer match, and tells
/// `freshness` (the set's own, see [`RevocationSet::followed`]) what it hears:
/// the verifier refuses tokens until the first replay, and after a silence
/// past its bound.
pub fn follow_revocations(
    channel: Channel,
    credentials: Arc<ServiceTokens>,
    revocations: &Arc<RevocationSet>,
    freshness: Arc<FeedFreshness>,
) -> tokio::task::JoinHandle<()> {
    let revocations: Weak<RevocationSet> = Arc::downgrade(revocations);
    let auth = AuthServiceClient::new(AttachTokenLayer::shared(credentials).layer(channel));
    tokio::spawn(crate::follow(
        crate::wakeups::REVOCATIONS,
        freshness.clone(),
        move || {
            let (mut auth, revocations) = (auth.clone(), revocations.clone());
            let freshness = freshness.clone();
            async move { watch_once(&mut auth, &revocations, &freshness).await }
        },
    ))
}

/// One subscription; `Ok(None)` once the set is gone.
async fn watch_once(
    auth: &mut AuthServiceClient<AttachToken<Channel>>,
    revocations: &Weak<RevocationSet>,
    freshness: &FeedFreshness,
) -> Result<Option<usize>, Status> {
    let Some(since) = revocations.upgrade().map(|set| set.cursor()) else {
        return Ok(None);
    };
    let mut stream = auth
        .watch_revocations(WatchRevocationsRequest { since })
        .await?
        .into_inner();
    let mut applied = 0;
    loop {
        let next = crate::feed::next_event(&mut stream).await;
        let Some(set) = revocations.upgrade() else {
            return Ok(None);
        };
        let Some(event) = next.inspect_err(|status| rewind_if_went_back(&set, status))? else {
            break;
        };
        apply_event(&set, &event);
        match &event.revoked {
            // Counts only once this stream's replay is over.
            Some(_) => freshness.heard(),
            // The replay has caught up: the set now holds every revocation.
            None => freshness.replayed(),
        }
        // Pruning scans the whole set: once per replay and heartbeat, not per
        // revocation (a replay of N events would cost N scans).
        if matches!(event.revoked, None | Some(Revoked::Heartbeat(_))) {
            set.prune(now_unix());
        }
        applied += 1;
    }
    Ok(Some(applied))
}

/// After an OUT_OF_RANGE from the feed (its store went back under the set's
/// cursor: a restore, a failover), the next subscription replays it from its
/// start: positions past the store's last are being given to new revocations.
pub fn rewind_if_went_back(set: &RevocationSet, status: &Status) {
    if status.code() == tonic::Code::OutOfRange {
        tracing::warn!(
            cursor = set.cursor(),
            reason = status.message(),
            "the revocation feed went back: replaying it from the start"
        );
        set.rewind_cursor();
    }
}

/// Adds what `event` revokes to `set` (a heartbeat or a marker adds nothing)
/// and moves its cursor to the event's. The one place a revocation event
/// becomes a verifier's state, for followers and for Auth.
pub fn apply_event(set: &RevocationSet, event: &RevocationEvent) {
    match &event.revoked {
        Some(Revoked::Subject(subject)) => {
            set.revoke_subject(&subject.subject, subject.not_before, subject.forget_after)
        }
        Some(Revoked::Token(token)) => set.revoke_token(&token.jti, token.expires_at),
        Some(Revoked::Session(session)) => {
            set.revoke_session(&session.session_id, session.forget_after)
        }
        Some(Revoked::Heartbeat(_)) | None => {}
    }
    set.set_cursor(event.cursor);
}
