//! The AuthService handlers: logins, refresh rotation, users, service identity,
//! token exchange, keys and the revocation feed.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures::Stream;
use sha2::{Digest, Sha256};
use tokenmesh_interceptor::{
    AuthLayer, Claims, KeyStore, Policy, RevocationSet, Verifier, VerifierConfig,
};
use tokenmesh_proto::{
    auth::v1::{
        ChangePasswordRequest, ChangePasswordResponse, CreateUserRequest, DeactivateUserRequest,
        ExchangeTokenRequest, GetJwksRequest, IssueServiceTokenRequest, Jwk, Jwks, LoginRequest,
        LogoutRequest, LogoutResponse, RefreshRequest, RevocationEvent, RotateSigningKeyRequest,
        RotateSigningKeyResponse, SubjectRevoked, TokenResponse, TokenRevoked, User,
        WatchRevocationsRequest,
        auth_service_server::{self, AuthServiceServer},
        revocation_event::Revoked,
    },
    claims::v1::{AccessClaims, Actor},
};
use tokenmesh_server::{
    ACCESS_CLAIMS_VERSION, Caller, Feed, FieldViolation, SigningAlgorithm, SigningKey, caller,
    now_unix, random_token, required,
};
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::{
    AuthServiceError, Store,
    keyring::{KeyRing, OwnKeys},
    password,
    store::{Epoch, NewRefreshToken, NewUserRecord, Revocation, ServiceClient, Spend},
    throttle::{Throttle, ThrottleConfig},
};

/// Scope of administrators.
pub const ADMIN_SCOPE: &str = "admin";
/// Scope a service needs to exchange user tokens.
pub const EXCHANGE_SCOPE: &str = "token:exchange";
/// Scope a service needs to follow the revocation feed.
pub const REVOCATIONS_SCOPE: &str = "revocations:read";
/// Leeway verifiers may allow at most: revocation entries and retired keys
/// outlive the last token they concern by this much.
const MAX_VERIFIER_LEEWAY_SECS: i64 = 60;
/// Shortest acceptable password.
const MIN_PASSWORD_LEN: usize = 8;

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Login name, unique.
    pub username: String,
    /// Plain text; only its argon2id hash is stored.
    pub password: String,
    /// Space-separated scopes granted at login.
    pub scopes: String,
}

/// Hashes `user`'s password and stores them; false if the name is taken.
async fn insert_user(store: &Store, user: NewUser) -> Result<bool, AuthServiceError> {
    let password_hash = password::hash(user.password).await?;
    let record = NewUserRecord {
        username: user.username,
        password_hash,
        scopes: user.scopes,
        created_at: now_unix(),
    };
    Ok(store.insert_user(&record).await?)
}

/// Creates `user` unless the name is taken, without hashing when it is.
pub(crate) async fn create_user_if_absent(
    store: &Store,
    user: NewUser,
) -> Result<bool, AuthServiceError> {
    if store.find_user(&user.username).await?.is_some() {
        return Ok(false);
    }
    insert_user(store, user).await
}

/// How Auth issues tokens.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `iss` of every token.
    pub issuer: String,
    /// `aud` of user access tokens.
    pub audiences: Vec<String>,
    /// Lifetime of access tokens.
    pub access_token_ttl: Duration,
    /// Lifetime of refresh tokens.
    pub refresh_token_ttl: Duration,
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
}

impl AuthConfig {
    /// Tokens from `issuer` for Auth, Products and Orders: 5-minute access tokens,
    /// 30-day refresh tokens, 1-minute exchanged tokens.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences: vec!["auth".into(), "products".into(), "orders".into()],
            access_token_ttl: Duration::from_secs(300),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            exchange_token_ttl: Duration::from_secs(60),
            signing_algorithm: SigningAlgorithm::EdDSA,
            throttle: ThrottleConfig::default(),
            key_reload_interval: Duration::from_secs(2),
            retired_key_grace: Duration::from_secs(MAX_VERIFIER_LEEWAY_SECS as u64),
        }
    }

    /// The epoch of a cut-off now: everything issued up to the end of this
    /// second dies; the entry matters until every such token has expired.
    fn epoch_now(&self) -> Epoch {
        let not_before = now_unix() + 1;
        Epoch {
            not_before,
            forget_after: not_before
                + self.access_token_ttl.as_secs() as i64
                + MAX_VERIFIER_LEEWAY_SECS,
        }
    }
}

/// The Auth service.
#[derive(Debug, Clone)]
pub struct AuthService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    keys: Arc<KeyRing>,
    config: AuthConfig,
    throttle: Throttle,
    verifier: Arc<Verifier<Caller>>,
    revocations: Arc<RevocationSet>,
    /// The revocation feed's streams.
    feed: Feed,
}

const SERVICE: &str = auth_service_server::SERVICE_NAME;

/// What a minted access token says.
struct Mint<'a> {
    sub: &'a str,
    scope: &'a str,
    aud: Vec<String>,
    client_id: &'a str,
    act: Option<Actor>,
    ttl: Duration,
    /// Never issued before this (the subject's revocation epoch).
    not_before: i64,
    /// Never valid after this.
    expires_by: Option<i64>,
}

fn hex_sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn event(revocation: Revocation) -> RevocationEvent {
    let revoked = if revocation.jti.is_empty() {
        Revoked::Subject(SubjectRevoked {
            subject: revocation.subject,
            not_before: revocation.not_before,
            forget_after: revocation.forget_after,
        })
    } else {
        Revoked::Token(TokenRevoked {
            jti: revocation.jti,
            expires_at: revocation.forget_after,
        })
    };
    RevocationEvent {
        cursor: u64::try_from(revocation.seq).unwrap_or_default(),
        revoked: Some(revoked),
    }
}

fn valid_new_password(field: &'static str, value: &str) -> Result<(), AuthServiceError> {
    if value.chars().count() < MIN_PASSWORD_LEN {
        return Err(FieldViolation::new(field, "must be at least 8 characters").into());
    }
    Ok(())
}

impl AuthService {
    /// Auth over `store`. `initial_key` signs unless the store already holds a
    /// key that does (see [`KeyRing::open`]).
    pub async fn open(
        store: Store,
        initial_key: SigningKey,
        config: AuthConfig,
    ) -> Result<Self, AuthServiceError> {
        let publish_retired_for = config.access_token_ttl + config.retired_key_grace;
        let keys = KeyRing::open(
            store.clone(),
            initial_key,
            config.signing_algorithm,
            publish_retired_for,
        )
        .await?;
        let revocations = Arc::new(RevocationSet::new());
        for revocation in store.revocations_since(0, now_unix(), i64::MAX).await? {
            apply(&revocations, &revocation);
        }
        let own_keys = KeyStore::remote(OwnKeys(keys.clone()));
        let verifier = Verifier::<Caller>::new(
            VerifierConfig::access_tokens(&config.issuer, "auth"),
            own_keys,
        )
        .with_revocations(revocations.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                keys,
                throttle: Throttle::new(config.throttle),
                config,
                verifier: Arc::new(verifier),
                revocations,
                feed: Feed::new(),
            }),
        })
    }

    /// Who may call what: the rules declared in the proto.
    pub fn policy() -> Policy {
        tokenmesh_server::policy_for(SERVICE)
    }

    /// Registers (or updates) a service client with a secret.
    pub async fn register_service_client(
        &self,
        client_id: &str,
        secret: &str,
        scopes: &str,
        audiences: &str,
    ) -> Result<(), AuthServiceError> {
        Ok(self
            .inner
            .store
            .upsert_service_client(&ServiceClient {
                client_id: client_id.to_owned(),
                secret_hash: hex_sha256(secret),
                scopes: scopes.to_owned(),
                audiences: audiences.to_owned(),
            })
            .await?)
    }

    /// `iss` of Auth's tokens.
    pub fn issuer(&self) -> &str {
        &self.inner.config.issuer
    }

    /// The public keys that verify Auth's tokens.
    pub fn public_jwks(&self) -> Vec<Jwk> {
        self.inner.keys.published()
    }

    /// Starts signing with a new key now.
    pub async fn rotate_signing_key(&self) -> Result<RotateSigningKeyResponse, AuthServiceError> {
        self.inner.keys.rotate().await
    }

    /// Serves Auth on `listener` until `shutdown`.
    pub async fn serve(
        self,
        listener: impl Into<tokenmesh_server::Listener>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), tokenmesh_server::ServeError> {
        let maintenance = tokio::spawn(maintain(Arc::downgrade(&self.inner)));
        let inner = self.inner.clone();
        let shutdown = async move {
            shutdown.await;
            // End the revocation feeds: they would hold the graceful drain open.
            inner.feed.close();
        };
        let layer = AuthLayer::new(self.inner.verifier.clone(), Self::policy());
        let result =
            tokenmesh_server::serve(listener, AuthServiceServer::new(self), layer, shutdown).await;
        maintenance.abort();
        result
    }

    fn mint(&self, mint: Mint<'_>) -> Result<(String, i64), AuthServiceError> {
        let now = now_unix();
        // A token issued in the same second as a revocation must not be caught by
        // it: start at the subject's epoch.
        let issued = now.max(mint.not_before);
        let mut expires = issued + mint.ttl.as_secs() as i64;
        if let Some(cap) = mint.expires_by {
            expires = expires.min(cap);
        }
        let claims = AccessClaims {
            iss: self.inner.config.issuer.clone(),
            sub: mint.sub.to_owned(),
            aud: mint.aud,
            exp: expires,
            iat: issued,
            nbf: issued,
            jti: random_token(16),
            scope: mint.scope.to_owned(),
            ver: ACCESS_CLAIMS_VERSION,
            client_id: mint.client_id.to_owned(),
            act: mint.act,
        };
        let token = self.inner.keys.signer().sign("at+jwt", &claims)?;
        Ok((token, expires - now))
    }

    fn user_access_token(
        &self,
        username: &str,
        scope: &str,
        not_before: i64,
    ) -> Result<(String, i64), AuthServiceError> {
        self.mint(Mint {
            sub: username,
            scope,
            aud: self.inner.config.audiences.clone(),
            client_id: "tokenmesh-login",
            act: None,
            ttl: self.inner.config.access_token_ttl,
            not_before,
            expires_by: None,
        })
    }

    fn token_response(access: (String, i64), refresh_token: String, scope: &str) -> TokenResponse {
        TokenResponse {
            access_token: access.0,
            token_type: "Bearer".into(),
            expires_in: access.1,
            refresh_token,
            scope: scope.to_owned(),
        }
    }

    /// Records a subject revocation here and wakes the feeds.
    fn revoked_subject(&self, subject: &str, epoch: Epoch) {
        self.inner
            .revocations
            .revoke_subject(subject, epoch.not_before, epoch.forget_after);
        self.inner.feed.notify();
    }

    async fn check_password(
        &self,
        username: &str,
        password: String,
    ) -> Result<Option<crate::store::UserRecord>, AuthServiceError> {
        if let Err(retry_after) = self.inner.throttle.check(username) {
            return Err(AuthServiceError::Throttled { retry_after });
        }
        let user = self.inner.store.find_user(username).await?;
        let stored_hash = user.as_ref().map(|user| user.password_hash.clone());
        let matches = password::verify(password, stored_hash).await?;
        match user {
            Some(user) if matches && user.is_active() => {
                self.inner.throttle.succeeded(username);
                Ok(Some(user))
            }
            _ => {
                if let Some(retry_after) = self.inner.throttle.failed(username) {
                    tracing::info!(?retry_after, "login throttled");
                }
                Ok(None)
            }
        }
    }
}

fn apply(set: &RevocationSet, revocation: &Revocation) {
    if revocation.jti.is_empty() {
        set.revoke_subject(
            &revocation.subject,
            revocation.not_before,
            revocation.forget_after,
        );
    } else {
        set.revoke_token(&revocation.jti, revocation.forget_after);
    }
}

/// Re-reads keys (rotation elsewhere) and prunes the revocation set, until Auth
/// is gone.
async fn maintain(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let interval = strong.config.key_reload_interval;
        if let Err(error) = strong.keys.reload().await {
            tracing::warn!(%error, "reloading signing keys failed");
        }
        strong.revocations.prune(now_unix());
        drop(strong);
        tokio::time::sleep(interval).await;
    }
}

type RevocationStream = Pin<Box<dyn Stream<Item = Result<RevocationEvent, Status>> + Send>>;

#[tonic::async_trait]
impl auth_service_server::AuthService for AuthService {
    #[instrument(skip_all, fields(username = %request.get_ref().username))]
    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<TokenResponse>, Status> {
        let LoginRequest { username, password } = request.into_inner();
        required("username", &username)?;
        required("password", &password)?;
        let Some(user) = self.check_password(&username, password).await? else {
            tracing::info!(reason = "invalid credentials", "login refused");
            return Err(AuthServiceError::InvalidCredentials.into());
        };
        let now = now_unix();
        let refresh_token = random_token(32);
        let first = NewRefreshToken {
            token_hash: hex_sha256(&refresh_token),
            issued_at: now,
            expires_at: now + self.inner.config.refresh_token_ttl.as_secs() as i64,
        };
        self.inner
            .store
            .start_family(&user.username, &random_token(16), &first)
            .await
            .map_err(AuthServiceError::from)?;
        let access = self.user_access_token(&user.username, &user.scopes, user.not_before)?;
        tracing::info!("login");
        Ok(Response::new(Self::token_response(
            access,
            refresh_token,
            &user.scopes,
        )))
    }

    #[instrument(skip_all)]
    async fn refresh(
        &self,
        request: Request<RefreshRequest>,
    ) -> Result<Response<TokenResponse>, Status> {
        let presented = &request.get_ref().refresh_token;
        required("refresh_token", presented)?;
        let now = now_unix();
        let successor = random_token(32);
        let expires_at = now + self.inner.config.refresh_token_ttl.as_secs() as i64;
        let record = NewRefreshToken {
            token_hash: hex_sha256(&successor),
            issued_at: now,
            expires_at,
        };
        let spend = self
            .inner
            .store
            .spend_refresh_token(&hex_sha256(presented), &record)
            .await
            .map_err(AuthServiceError::from)?;
        let (username, scopes, not_before) = match spend {
            Spend::Rotated {
                username,
                scopes,
                not_before,
            } => (username, scopes, not_before),
            Spend::Unknown => return Err(AuthServiceError::RefreshRefused("unknown").into()),
            Spend::Expired => return Err(AuthServiceError::RefreshRefused("expired").into()),
            Spend::Revoked => return Err(AuthServiceError::RefreshRefused("revoked").into()),
            Spend::Reused => {
                tracing::warn!(reason = "refresh token reuse", "session revoked");
                return Err(
                    AuthServiceError::RefreshRefused("reused: the session is revoked").into(),
                );
            }
        };
        // The spend read the owner's scopes and epoch in its transaction.
        let access = self.user_access_token(&username, &scopes, not_before)?;
        Ok(Response::new(Self::token_response(
            access, successor, &scopes,
        )))
    }

    #[instrument(skip_all)]
    async fn logout(
        &self,
        request: Request<LogoutRequest>,
    ) -> Result<Response<LogoutResponse>, Status> {
        let presented = &request.get_ref().refresh_token;
        required("refresh_token", presented)?;
        let ended = self
            .inner
            .store
            .revoke_family_of(&hex_sha256(presented), now_unix())
            .await
            .map_err(AuthServiceError::from)?;
        tracing::info!(ended, "logout");
        Ok(Response::new(LogoutResponse {}))
    }

    #[instrument(skip_all, fields(username = %request.get_ref().username))]
    async fn create_user(
        &self,
        request: Request<CreateUserRequest>,
    ) -> Result<Response<User>, Status> {
        let CreateUserRequest {
            username,
            password,
            scopes,
        } = request.into_inner();
        required("username", &username)?;
        let name_ok = username.len() <= 64
            && username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
        if !name_ok {
            return Err(AuthServiceError::from(FieldViolation::new(
                "username",
                "at most 64 of A-Z a-z 0-9 . _ - @",
            ))
            .into());
        }
        valid_new_password("password", &password)?;
        let created = insert_user(
            &self.inner.store,
            NewUser {
                username: username.clone(),
                password,
                scopes: scopes.clone(),
            },
        )
        .await?;
        if !created {
            return Err(AuthServiceError::UserExists(username).into());
        }
        Ok(Response::new(User {
            username,
            scopes,
            active: true,
        }))
    }

    #[instrument(skip_all, fields(username = %request.get_ref().username))]
    async fn deactivate_user(
        &self,
        request: Request<DeactivateUserRequest>,
    ) -> Result<Response<User>, Status> {
        let username = &request.get_ref().username;
        required("username", username)?;
        let epoch = self.inner.config.epoch_now();
        if !self
            .inner
            .store
            .deactivate(username, epoch)
            .await
            .map_err(AuthServiceError::from)?
        {
            return Err(AuthServiceError::UserNotFound(username.clone()).into());
        }
        self.revoked_subject(username, epoch);
        tracing::info!("user deactivated");
        let user = (self.inner.store.find_user(username).await).map_err(AuthServiceError::from)?;
        Ok(Response::new(User {
            username: username.clone(),
            scopes: user.map(|u| u.scopes).unwrap_or_default(),
            active: false,
        }))
    }

    #[instrument(skip_all)]
    async fn change_password(
        &self,
        request: Request<ChangePasswordRequest>,
    ) -> Result<Response<ChangePasswordResponse>, Status> {
        let caller = caller(&request)?;
        let ChangePasswordRequest {
            current_password,
            new_password,
        } = request.into_inner();
        required("current_password", &current_password)?;
        valid_new_password("new_password", &new_password)?;
        let username = caller.subject();
        if self
            .check_password(username, current_password)
            .await?
            .is_none()
        {
            return Err(AuthServiceError::InvalidCredentials.into());
        }
        let hash = password::hash(new_password).await?;
        let epoch = self.inner.config.epoch_now();
        if !self
            .inner
            .store
            .change_password(username, &hash, epoch)
            .await
            .map_err(AuthServiceError::from)?
        {
            return Err(AuthServiceError::UserNotFound(username.to_owned()).into());
        }
        self.revoked_subject(username, epoch);
        tracing::info!("password changed; tokens revoked");
        Ok(Response::new(ChangePasswordResponse {}))
    }

    #[instrument(skip_all, fields(client_id = %request.get_ref().client_id, audience = %request.get_ref().audience))]
    async fn issue_service_token(
        &self,
        request: Request<IssueServiceTokenRequest>,
    ) -> Result<Response<TokenResponse>, Status> {
        let IssueServiceTokenRequest {
            client_id,
            client_secret,
            audience,
        } = request.get_ref();
        required("client_id", client_id)?;
        required("client_secret", client_secret)?;
        required("audience", audience)?;
        let client =
            (self.inner.store.service_client(client_id).await).map_err(AuthServiceError::from)?;
        let Some(client) = client.filter(|client| client.secret_hash == hex_sha256(client_secret))
        else {
            return Err(AuthServiceError::InvalidClientCredentials.into());
        };
        if !client
            .audiences
            .split(' ')
            .any(|allowed| allowed == audience)
        {
            return Err(AuthServiceError::AudienceNotAllowed(audience.clone()).into());
        }
        let access = self.mint(Mint {
            sub: client_id,
            scope: &client.scopes,
            aud: vec![audience.clone()],
            client_id,
            act: None,
            ttl: self.inner.config.access_token_ttl,
            not_before: 0,
            expires_by: None,
        })?;
        // Client credentials get no refresh token (RFC 6749 §4.4.3).
        Ok(Response::new(Self::token_response(
            access,
            String::new(),
            &client.scopes,
        )))
    }

    #[instrument(skip_all, fields(audience = %request.get_ref().audience))]
    async fn exchange_token(
        &self,
        request: Request<ExchangeTokenRequest>,
    ) -> Result<Response<TokenResponse>, Status> {
        let actor = caller(&request)?;
        let ExchangeTokenRequest {
            subject_token,
            audience,
        } = request.get_ref();
        required("subject_token", subject_token)?;
        required("audience", audience)?;
        let client = self
            .inner
            .store
            .service_client(actor.subject())
            .await
            .map_err(AuthServiceError::from)?
            .filter(|client| client.client_id == actor.0.client_id)
            .ok_or(AuthServiceError::NotAServiceClient)?;
        if !client
            .audiences
            .split(' ')
            .any(|allowed| allowed == audience)
        {
            return Err(AuthServiceError::AudienceNotAllowed(audience.clone()).into());
        }
        // Only user tokens carrying audience "auth" can be exchanged: an exchanged
        // token (narrowed to one audience) cannot be exchanged again.
        let subject = self
            .inner
            .verifier
            .verify(subject_token)
            .await
            .map_err(AuthServiceError::InvalidSubjectToken)?;
        let access = self.mint(Mint {
            sub: subject.subject(),
            scope: subject.scope(),
            aud: vec![audience.clone()],
            client_id: &client.client_id,
            act: Some(Actor {
                sub: client.client_id.clone(),
            }),
            ttl: self.inner.config.exchange_token_ttl,
            not_before: subject.0.iat,
            expires_by: Some(subject.0.exp),
        })?;
        Ok(Response::new(Self::token_response(
            access,
            String::new(),
            subject.scope(),
        )))
    }

    #[instrument(skip_all)]
    async fn get_jwks(&self, _request: Request<GetJwksRequest>) -> Result<Response<Jwks>, Status> {
        Ok(Response::new(Jwks {
            keys: self.public_jwks(),
        }))
    }

    #[instrument(skip_all)]
    async fn rotate_signing_key(
        &self,
        _request: Request<RotateSigningKeyRequest>,
    ) -> Result<Response<RotateSigningKeyResponse>, Status> {
        Ok(Response::new(self.rotate_signing_key().await?))
    }

    type WatchRevocationsStream = RevocationStream;

    #[instrument(skip_all, fields(since = request.get_ref().since))]
    async fn watch_revocations(
        &self,
        request: Request<WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        let since = i64::try_from(request.get_ref().since).unwrap_or(i64::MAX);
        let store = self.inner.store.clone();
        let stream = self.inner.feed.stream(since, move |cursor, limit| {
            let store = store.clone();
            async move {
                let rows = store
                    .revocations_since(cursor, now_unix(), limit as i64)
                    .await
                    .map_err(|error| Status::from(AuthServiceError::from(error)))?;
                Ok(rows.into_iter().map(|row| (row.seq, event(row))).collect())
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
