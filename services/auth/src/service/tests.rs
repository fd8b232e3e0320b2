//! The handlers called directly, tonic-health style: no socket, Auth over SQLite
//! and over PostgreSQL (`on_each_store!`). Authenticated handlers find the caller's claims in the request
//! extensions, put there as the auth layer does.

use std::{sync::Arc, time::Duration};

use tempfile::TempDir;
use tokenmesh_interceptor::{AuthError, Claims, KeyStore, ManualClock, Verifier, VerifierConfig};
use tokenmesh_proto::{
    auth::v1::{
        ChangePasswordRequest, CreateUserRequest, DeactivateUserRequest, ExchangeTokenRequest,
        IssueServiceTokenRequest, LoginRequest, LogoutRequest, RefreshRequest, TokenResponse,
        auth_service_server::AuthService as _,
    },
    names::{BEARER, audience, scope},
};
use tokenmesh_server::{
    Caller, ClientCredentials, Delegation, KeyEncryptionKey, ServiceClient, SigningKey,
};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use crate::{AuthConfig, AuthService, SigningKeys, Store, keys::OwnKeys};

const ISSUER: &str = "tokenmesh-auth-test";
const CLIENT_SECRET: &str = "orders-secret";
/// A user scope the fixture's `orders` may pass on to Products.
const DELEGABLE: &str = "catalog:read";

/// `orders` as the fixture declares it: it may exchange users' tokens for
/// Products, passing on [`DELEGABLE`] only, and — declared, but never honoured
/// — for Auth with `admin`.
const ORDERS_CLIENT: ServiceClient = ServiceClient {
    id: "orders",
    scopes: &[scope::TOKEN_EXCHANGE],
    audiences: &[audience::AUTH, audience::PRODUCTS],
    delegates: &[
        Delegation {
            audience: audience::PRODUCTS,
            scopes: &[DELEGABLE],
        },
        Delegation {
            audience: audience::AUTH,
            scopes: &[scope::ADMIN],
        },
    ],
};

/// Auth over the fresh database at a URL, with `alice` (password `alice-password`),
/// `carol` (`carol-password`, scopes admin, catalog:read, entitlements:check) and
/// the service client [`ORDERS_CLIENT`].
struct Fixture {
    auth: AuthService,
    /// The store `auth` runs on, for tests of the store itself.
    store: Store,
    _dir: TempDir,
}

impl Fixture {
    async fn start(url: &str) -> Self {
        Self::with_config(url, AuthConfig::new(ISSUER)).await
    }

    async fn with_config(url: &str, config: AuthConfig) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(url).await.expect("store opens");
        let (key, _) = SigningKey::generate().expect("key");
        let keys = SigningKeys {
            kek: KeyEncryptionKey::from_bytes(&[7; 32], &dir.path().join("kek")).expect("kek"),
            import: vec![key],
        };
        let auth = AuthService::open(store.clone(), keys, config)
            .await
            .expect("auth opens");
        auth.create_user(Request::new(CreateUserRequest {
            username: "alice".into(),
            password: "alice-password".into(),
            scopes: String::new(),
        }))
        .await
        .expect("alice created");
        auth.create_user(Request::new(CreateUserRequest {
            username: "carol".into(),
            password: "carol-password".into(),
            scopes: format!("{} {DELEGABLE} {}", scope::ADMIN, scope::ENTITLEMENTS_CHECK),
        }))
        .await
        .expect("carol created");
        let credentials = ClientCredentials {
            client: ORDERS_CLIENT,
            secret: CLIENT_SECRET.into(),
        };
        auth.register_service_client(&credentials)
            .await
            .expect("client registered");
        Self {
            auth,
            store,
            _dir: dir,
        }
    }

    async fn login(&self, username: &str, password: &str) -> Result<TokenResponse, Status> {
        let request = LoginRequest {
            username: username.into(),
            password: password.into(),
        };
        let response = self.auth.login(Request::new(request)).await?;
        Ok(response.into_inner())
    }

    /// Alice's tokens from a login with her password.
    async fn alice(&self) -> TokenResponse {
        self.login("alice", "alice-password").await.expect("login")
    }

    async fn refresh(&self, refresh_token: &str) -> Result<TokenResponse, Status> {
        let request = RefreshRequest {
            refresh_token: refresh_token.into(),
        };
        let response = self.auth.refresh(Request::new(request)).await?;
        Ok(response.into_inner())
    }

    async fn service_token(&self, secret: &str, aud: &str) -> Result<TokenResponse, Status> {
        let request = IssueServiceTokenRequest {
            client_id: "orders".into(),
            client_secret: secret.into(),
            audience: aud.into(),
        };
        let response = self.auth.issue_service_token(Request::new(request)).await?;
        Ok(response.into_inner())
    }

    /// The service token `orders` calls Auth with.
    async fn actor(&self) -> TokenResponse {
        let token = self.service_token(CLIENT_SECRET, audience::AUTH).await;
        token.expect("service token")
    }

    /// `subject_token` exchanged for a Products token by the holder of `actor`.
    async fn exchange(&self, actor: &str, subject_token: &str) -> Result<TokenResponse, Status> {
        self.exchange_for(actor, subject_token, audience::PRODUCTS)
            .await
    }

    /// `subject_token` exchanged for `audience` by the holder of `actor`.
    async fn exchange_for(
        &self,
        actor: &str,
        subject_token: &str,
        audience: &str,
    ) -> Result<TokenResponse, Status> {
        let exchange = ExchangeTokenRequest {
            subject_token: subject_token.into(),
            audience: audience.into(),
        };
        let request = self.sent_by_holder_of(actor, exchange).await;
        Ok(self.auth.exchange_token(request).await?.into_inner())
    }

    /// `token` as Auth's own verifier (the one behind its layer) judges it.
    async fn verify(&self, token: &str) -> Result<Arc<Caller>, AuthError> {
        self.auth.inner.verifier.verify(token).await
    }

    /// `message` from the holder of `token`, as the auth layer hands it over.
    async fn sent_by_holder_of<T>(&self, token: &str, message: T) -> Request<T> {
        let claims = self.verify(token).await.expect("caller's token verifies");
        let mut request = Request::new(message);
        request.extensions_mut().insert(claims);
        request
    }

    /// `token` as Products' verifier judges it.
    async fn verify_at_products(&self, token: &str) -> Result<Arc<Caller>, AuthError> {
        let keys = KeyStore::remote(OwnKeys(self.auth.inner.keys.clone()));
        let config = VerifierConfig::access_tokens(ISSUER, audience::PRODUCTS);
        Verifier::<Caller>::new(config, keys).verify(token).await
    }
}

fn assert_status<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, message: &str) {
    let status = result.expect_err(message);
    assert_eq!((status.code(), status.message()), (code, message));
}

mod exchange;
mod logins;
mod pruning;
