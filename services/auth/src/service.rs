//! The AuthService handlers: Login and GetJwks.

use std::{sync::Arc, time::Duration};

use sha2::{Digest, Sha256};
use tokenmesh_interceptor::{AuthLayer, KeySet, KeyStore, Policy, Verifier, VerifierConfig};
use tokenmesh_proto::{
    auth::v1::{
        GetJwksRequest, Jwks, LoginRequest, TokenResponse,
        auth_service_server::{self, AuthServiceServer},
    },
    claims::v1::AccessClaims,
};
use tokenmesh_server::{
    ACCESS_CLAIMS_VERSION, Caller, SigningKey, jwk_to_jose, now_unix, random_token,
};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::{AuthServiceError, Store, password, store::NewRefreshToken};

/// How Auth issues tokens.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `iss` of every token.
    pub issuer: String,
    /// `aud` of access tokens: the services that accept them.
    pub audiences: Vec<String>,
    /// Lifetime of access tokens.
    pub access_token_ttl: Duration,
    /// Lifetime of refresh tokens.
    pub refresh_token_ttl: Duration,
}

impl AuthConfig {
    /// Tokens from `issuer` for Products and Orders: 5-minute access tokens,
    /// 30-day refresh tokens.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences: vec!["products".into(), "orders".into()],
            access_token_ttl: Duration::from_secs(300),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// The Auth service.
#[derive(Debug, Clone)]
pub struct AuthService {
    store: Store,
    key: Arc<SigningKey>,
    config: Arc<AuthConfig>,
}

const SERVICE: &str = auth_service_server::SERVICE_NAME;

impl AuthService {
    /// Auth over `store`, signing with `key`.
    pub fn new(store: Store, key: Arc<SigningKey>, config: AuthConfig) -> Self {
        Self {
            store,
            key,
            config: Arc::new(config),
        }
    }

    /// Who may call what.
    pub fn policy() -> Policy {
        Policy::new()
            .public(SERVICE, "Login")
            .public(SERVICE, "GetJwks")
    }

    /// Serves Auth on `listener` until `shutdown`.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), tokenmesh_server::ServeError> {
        // Auth verifies its own tokens (audience "auth") with its own key: no fetch.
        let own_key = jwk_to_jose(self.key.public_jwk())
            .map(|jwk| KeySet::from_jwks(&jsonwebtoken::jwk::JwkSet { keys: vec![jwk] }));
        let keys = KeyStore::fixed(own_key.unwrap_or_default());
        let verifier = Verifier::<Caller>::new(
            VerifierConfig::access_tokens(&self.config.issuer, "auth"),
            keys,
        );
        let layer = AuthLayer::new(Arc::new(verifier), Self::policy());
        tokenmesh_server::serve(listener, AuthServiceServer::new(self), layer, shutdown).await
    }

    /// The public keys that verify Auth's tokens.
    pub fn public_jwks(&self) -> Vec<tokenmesh_proto::auth::v1::Jwk> {
        vec![self.key.public_jwk().clone()]
    }

    async fn issue_tokens(
        &self,
        username: &str,
        scope: &str,
    ) -> Result<TokenResponse, AuthServiceError> {
        let now = now_unix();
        let ttl = self.config.access_token_ttl.as_secs() as i64;
        let claims = AccessClaims {
            iss: self.config.issuer.clone(),
            sub: username.to_owned(),
            aud: self.config.audiences.clone(),
            exp: now + ttl,
            iat: now,
            nbf: now,
            jti: random_token(16),
            scope: scope.to_owned(),
            ver: ACCESS_CLAIMS_VERSION,
            client_id: "tokenmesh-login".into(),
        };
        let access_token = self.key.sign("at+jwt", &claims)?;

        let refresh_token = random_token(32);
        let token_hash = hex_sha256(&refresh_token);
        let family_id = random_token(16);
        self.store
            .insert_refresh_token(&NewRefreshToken {
                token_hash: &token_hash,
                family_id: &family_id,
                username,
                issued_at: now,
                expires_at: now + self.config.refresh_token_ttl.as_secs() as i64,
            })
            .await?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer".into(),
            expires_in: ttl,
            refresh_token,
            scope: scope.to_owned(),
        })
    }
}

fn hex_sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[tonic::async_trait]
impl auth_service_server::AuthService for AuthService {
    #[instrument(skip_all, fields(username = %request.get_ref().username))]
    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<TokenResponse>, Status> {
        let LoginRequest { username, password } = request.into_inner();
        if username.is_empty() {
            return Err(AuthServiceError::InvalidArgument {
                field: "username",
                reason: "required",
            }
            .into());
        }
        if password.is_empty() {
            return Err(AuthServiceError::InvalidArgument {
                field: "password",
                reason: "required",
            }
            .into());
        }
        let user = self.store.find_user(&username).await?;
        let stored_hash = user.as_ref().map(|user| user.password_hash.clone());
        let password_ok = password::verify(password, stored_hash).await?;
        let user = match user {
            Some(user) if password_ok && user.active => user,
            _ => {
                tracing::info!(reason = "invalid credentials", "login refused");
                return Err(AuthServiceError::InvalidCredentials.into());
            }
        };
        let tokens = self.issue_tokens(&user.username, &user.scopes).await?;
        tracing::info!("login");
        Ok(Response::new(tokens))
    }

    #[instrument(skip_all)]
    async fn get_jwks(&self, _request: Request<GetJwksRequest>) -> Result<Response<Jwks>, Status> {
        Ok(Response::new(Jwks {
            keys: self.public_jwks(),
        }))
    }
}
