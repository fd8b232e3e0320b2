//! The handlers called directly, tonic-health style: no socket, Auth over SQLite
//! in a temp dir. Authenticated handlers find the caller's claims in the request
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
    db::sqlite_url,
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

/// Auth over a fresh SQLite file, with `alice` (password `alice-password`),
/// `carol` (`carol-password`, scopes admin, catalog:read, entitlements:check) and
/// the service client [`ORDERS_CLIENT`].
struct Fixture {
    auth: AuthService,
    _dir: TempDir,
}

impl Fixture {
    async fn start() -> Self {
        Self::with_config(AuthConfig::new(ISSUER)).await
    }

    async fn with_config(config: AuthConfig) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&sqlite_url(&dir.path().join("auth.db")))
            .await
            .expect("store opens");
        let (key, _) = SigningKey::generate().expect("key");
        let keys = SigningKeys {
            kek: KeyEncryptionKey::from_bytes(&[7; 32], &dir.path().join("kek")).expect("kek"),
            import: vec![key],
        };
        let auth = AuthService::open(store, keys, config)
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
        Self { auth, _dir: dir }
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

#[tokio::test]
async fn login_with_the_right_password_answers_a_bearer_token_pair() {
    let fixture = Fixture::start().await;
    let tokens = fixture.alice().await;
    assert_eq!(tokens.token_type, BEARER);
    assert_eq!(tokens.expires_in, 300);
    assert!(!tokens.refresh_token.is_empty());
    let claims = fixture
        .verify(&tokens.access_token)
        .await
        .expect("Auth accepts its token");
    assert_eq!(claims.subject(), "alice");
    assert_eq!(claims.0.aud, audience::USER_TOKEN);
}

#[tokio::test]
async fn login_with_a_wrong_password_or_an_unknown_user_is_unauthenticated() {
    let fixture = Fixture::start().await;
    for (username, password) in [("alice", "wrong-password"), ("mallory", "alice-password")] {
        assert_status(
            fixture.login(username, password).await,
            Code::Unauthenticated,
            "invalid username or password",
        );
    }
    assert_status(
        fixture.login("alice", "").await,
        Code::InvalidArgument,
        "password: required",
    );
}

#[tokio::test]
async fn a_refresh_rotates_the_token_and_a_replay_revokes_the_family() {
    let fixture = Fixture::start().await;
    let first = fixture.alice().await;
    let second = fixture
        .refresh(&first.refresh_token)
        .await
        .expect("rotated");
    assert_ne!(second.refresh_token, first.refresh_token);
    fixture
        .verify(&second.access_token)
        .await
        .expect("the new access token works");
    assert_status(
        fixture.refresh(&first.refresh_token).await,
        Code::Unauthenticated,
        "invalid refresh token",
    );
    assert_status(
        fixture.refresh(&second.refresh_token).await,
        Code::Unauthenticated,
        "invalid refresh token",
    );
    assert_status(
        fixture.refresh("never-issued").await,
        Code::Unauthenticated,
        "invalid refresh token",
    );
}

#[tokio::test]
async fn logout_is_idempotent_and_ends_the_refresh_token() {
    let fixture = Fixture::start().await;
    let tokens = fixture.alice().await;
    for presented in [
        tokens.refresh_token.as_str(),
        &tokens.refresh_token,
        "unknown",
    ] {
        let request = LogoutRequest {
            refresh_token: presented.into(),
        };
        fixture
            .auth
            .logout(Request::new(request))
            .await
            .expect("logout answers OK");
    }
    assert_status(
        fixture.refresh(&tokens.refresh_token).await,
        Code::Unauthenticated,
        "invalid refresh token",
    );
}

#[tokio::test]
async fn a_deactivated_user_can_neither_log_in_nor_refresh() {
    let fixture = Fixture::start().await;
    let tokens = fixture.alice().await;
    let request = DeactivateUserRequest {
        username: "alice".into(),
    };
    let user = fixture
        .auth
        .deactivate_user(Request::new(request))
        .await
        .expect("deactivated")
        .into_inner();
    assert!(!user.active);
    assert_status(
        fixture.login("alice", "alice-password").await,
        Code::Unauthenticated,
        "invalid username or password",
    );
    assert_status(
        fixture.refresh(&tokens.refresh_token).await,
        Code::Unauthenticated,
        "invalid refresh token",
    );
    assert_eq!(
        fixture.verify(&tokens.access_token).await.map(|_| ()),
        Err(AuthError::Revoked)
    );
}

#[tokio::test]
async fn a_password_change_revokes_tokens_minted_before_it() {
    let fixture = Fixture::start().await;
    let before = fixture.alice().await;
    let change = ChangePasswordRequest {
        current_password: "alice-password".into(),
        new_password: "alice-new-password".into(),
    };
    let request = fixture
        .sent_by_holder_of(&before.access_token, change)
        .await;
    fixture
        .auth
        .change_password(request)
        .await
        .expect("password changed");
    assert_eq!(
        fixture.verify(&before.access_token).await.map(|_| ()),
        Err(AuthError::Revoked),
        "Auth's own verifier refuses the old token"
    );
    assert_status(
        fixture.refresh(&before.refresh_token).await,
        Code::Unauthenticated,
        "invalid refresh token",
    );
    assert_status(
        fixture.login("alice", "alice-password").await,
        Code::Unauthenticated,
        "invalid username or password",
    );
    let after = fixture
        .login("alice", "alice-new-password")
        .await
        .expect("the next login works");
    fixture
        .verify(&after.access_token)
        .await
        .expect("and its token is not caught by the revocation");
}

#[tokio::test]
async fn an_exchange_narrows_the_audience_and_names_the_actor() {
    let fixture = Fixture::start().await;
    let alice = fixture.alice().await;
    let actor = fixture.actor().await;
    let exchanged = fixture
        .exchange(&actor.access_token, &alice.access_token)
        .await
        .expect("exchanged");
    assert!(exchanged.refresh_token.is_empty());
    let subject = fixture.verify(&alice.access_token).await.expect("alice");
    let claims = fixture
        .verify_at_products(&exchanged.access_token)
        .await
        .expect("Products accepts the exchanged token");
    assert_eq!(claims.subject(), "alice");
    assert_eq!(claims.0.aud, [audience::PRODUCTS]);
    assert_eq!(
        claims.0.act.as_ref().map(|act| act.sub.as_str()),
        Some("orders")
    );
    assert_eq!(claims.0.client_id, "orders");
    assert!(claims.0.exp <= subject.0.exp);
}

#[tokio::test]
async fn an_exchanged_token_cannot_be_exchanged_again() {
    let fixture = Fixture::start().await;
    let alice = fixture.alice().await;
    let actor = fixture.actor().await;
    let once = fixture
        .exchange(&actor.access_token, &alice.access_token)
        .await
        .expect("the first exchange");
    // Narrowed to Products, it no longer names Auth's audience.
    assert_status(
        fixture
            .exchange(&actor.access_token, &once.access_token)
            .await,
        Code::InvalidArgument,
        "subject_token: token audience does not include this service",
    );
}

#[tokio::test]
async fn an_exchange_passes_on_only_the_scopes_declared_for_the_audience() {
    let fixture = Fixture::start().await;
    let carol = fixture
        .login("carol", "carol-password")
        .await
        .expect("login");
    let actor = fixture.actor().await;
    let exchanged = fixture
        .exchange(&actor.access_token, &carol.access_token)
        .await
        .expect("exchanged");
    assert_eq!(exchanged.scope, DELEGABLE);
    let claims = fixture
        .verify_at_products(&exchanged.access_token)
        .await
        .expect("Products accepts it");
    assert_eq!(claims.scope(), DELEGABLE);
    // Declared or not, never for Auth itself.
    assert_status(
        fixture
            .exchange_for(&actor.access_token, &carol.access_token, audience::AUTH)
            .await,
        Code::InvalidArgument,
        "audience: an exchanged token is never issued for auth",
    );
    // No delegation declared for Orders: no exchange for it.
    assert_status(
        fixture
            .exchange_for(&actor.access_token, &carol.access_token, audience::ORDERS)
            .await,
        Code::PermissionDenied,
        "audience orders is not allowed for this client",
    );
}

#[tokio::test]
async fn a_service_token_needs_the_right_secret_and_an_allowed_audience() {
    let fixture = Fixture::start().await;
    assert_status(
        fixture.service_token("wrong-secret", audience::AUTH).await,
        Code::Unauthenticated,
        "invalid client credentials",
    );
    assert_status(
        fixture.service_token(CLIENT_SECRET, audience::ORDERS).await,
        Code::PermissionDenied,
        "audience orders is not allowed for this client",
    );
    let token = fixture
        .service_token(CLIENT_SECRET, audience::PRODUCTS)
        .await
        .expect("allowed audience");
    assert_eq!(token.scope, scope::TOKEN_EXCHANGE);
    assert!(
        token.refresh_token.is_empty(),
        "client credentials: no refresh"
    );
}

#[tokio::test]
async fn failures_beyond_the_free_ones_are_throttled() {
    let mut config = AuthConfig::new(ISSUER);
    config.throttle.free_failures = 2;
    config.throttle.base_delay = Duration::from_secs(30);
    let fixture = Fixture::with_config(config).await;
    // The failure that uses up the free ones starts the first delay.
    for _ in 0..2 {
        assert_status(
            fixture.login("alice", "wrong-password").await,
            Code::Unauthenticated,
            "invalid username or password",
        );
    }
    let status = fixture
        .login("alice", "alice-password")
        .await
        .expect_err("throttled, even with the right password");
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::ResourceExhausted,
            "too many failed logins; retry later"
        )
    );
    let retry = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("RetryInfo");
    assert!(
        retry > Duration::from_secs(20) && retry <= Duration::from_secs(30),
        "{retry:?}"
    );
}

#[tokio::test]
async fn an_access_token_expires_when_the_clock_passes_its_lifetime_and_the_leeway() {
    let clock = ManualClock::new();
    let config = AuthConfig::new(ISSUER).with_clock(Arc::new(clock.clone()));
    let ttl = config.access_token_ttl;
    let fixture = Fixture::with_config(config).await;
    let tokens = fixture.alice().await;
    fixture
        .verify(&tokens.access_token)
        .await
        .expect("valid at first");
    // Auth's verifier allows the default 30 s of leeway on `exp`.
    clock.advance(ttl + Duration::from_secs(30));
    fixture
        .verify(&tokens.access_token)
        .await
        .expect("still within the leeway");
    clock.advance(Duration::from_secs(1));
    let refused = fixture
        .verify(&tokens.access_token)
        .await
        .expect_err("expired");
    assert_eq!(refused.reason(), "TOKEN_EXPIRED");
}
