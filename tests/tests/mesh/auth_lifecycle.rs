//! Auth's token lifecycle, on SQLite and on PostgreSQL: refresh rotation and
//! reuse detection, logout, revocation that reaches Products and Orders (how
//! fast is printed, not asserted), throttling, service tokens, token exchange
//! and key rotation.

use std::time::{Duration, Instant};

use serde_json::json;
use tokenmesh_interceptor::Clock;
use tokenmesh_proto::{
    auth::v1::{
        ChangePasswordRequest, DeactivateUserRequest, ExchangeTokenRequest, GetJwksRequest,
        IssueServiceTokenRequest, LogoutRequest, RotateSigningKeyRequest,
    },
    orders::v1::ListOrdersRequest,
    products::v1::CheckEntitlementRequest,
};
use tokenmesh_tests::calls::{assert_status, assert_throttled, login, refresh, with_bearer};
use tokenmesh_tests::{
    Bearer, ManualClock, Mesh, MeshBuilder, Minter, claims_of, client_secret, eventually,
    header_of, on_sqlite_and_postgres,
};
use tonic::Code;

/// How long a test waits for a revocation to reach Products and Orders before it
/// fails: a bound for one that never arrives, not a speed goal (the goal, one
/// second, is measured and printed, never asserted: a loaded machine may take
/// longer and still be right).
const REVOCATION_DEADLINE: Duration = Duration::from_secs(60);

on_sqlite_and_postgres!(
    refresh_rotates_the_token_and_the_new_access_token_works,
    a_replayed_refresh_token_revokes_its_whole_family,
    concurrent_refreshes_of_one_token_have_exactly_one_winner,
    logout_ends_the_family_and_unknown_tokens_are_not_an_error,
    deactivation_kills_live_tokens_at_products_and_orders,
    a_password_change_kills_old_tokens_but_not_the_next_login,
    the_revocation_feed_resumes_after_auth_restarts,
    repeated_failures_are_throttled_alike_for_known_and_unknown_users,
    service_clients_get_tokens_for_allowed_audiences_only,
    an_exchanged_token_is_narrowed_to_one_audience_and_names_its_actor,
    rotation_reaches_products_and_orders_without_restart_and_the_old_key_retires,
    admin_creates_users_with_checked_input,
);

/// Waits until Products and Orders both refuse `token` with `message`.
async fn refused_everywhere(
    mesh: &Mesh,
    token: &str,
    message: &str,
    deadline: Duration,
) -> Duration {
    let start = Instant::now();
    for status in mesh.refusals_of(token, deadline).await {
        assert_status(Err::<(), _>(status), Code::Unauthenticated, message);
    }
    start.elapsed()
}

async fn refresh_rotates_the_token_and_the_new_access_token_works(builder: MeshBuilder) {
    let mesh = builder.start().await;
    let mut auth = mesh.auth().await;
    let first = login(&mut auth, "alice", "alice-demo")
        .await
        .expect("login");
    let second = refresh(&mut auth, &first.refresh_token)
        .await
        .expect("refresh");
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_ne!(second.access_token, first.access_token);
    assert_eq!(
        (second.token_type.as_str(), second.expires_in),
        ("Bearer", 300)
    );
    assert_eq!(claims_of(&second.access_token)["sub"], "alice");
    let (products, orders) = mesh.accepted_by(&second.access_token).await;
    products.expect("Products accepts the refreshed token");
    orders.expect("Orders accepts the refreshed token");
    let third = refresh(&mut auth, &second.refresh_token)
        .await
        .expect("the successor refreshes too");
    assert_ne!(third.refresh_token, second.refresh_token);
    assert_status(
        refresh(&mut auth, "").await,
        Code::InvalidArgument,
        "refresh_token: required",
    );
    assert_status(
        refresh(&mut auth, "not-a-token").await,
        Code::Unauthenticated,
        "invalid refresh token",
    );
    mesh.shutdown().await;
}

async fn a_replayed_refresh_token_revokes_its_whole_family(builder: MeshBuilder) {
    let mesh = builder.start().await;
    let mut auth = mesh.auth().await;
    let stolen = login(&mut auth, "alice", "alice-demo")
        .await
        .expect("login");
    let other_device = login(&mut auth, "alice", "alice-demo")
        .await
        .expect("second login");
    let legitimate = refresh(&mut auth, &stolen.refresh_token)
        .await
        .expect("rotation");

    assert_status(
        refresh(&mut auth, &stolen.refresh_token).await,
        Code::Unauthenticated,
        "invalid refresh token",
    );
    // The newest token of the family dies with it…
    assert_status(
        refresh(&mut auth, &legitimate.refresh_token).await,
        Code::Unauthenticated,
        "invalid refresh token",
    );
    // …and a replay of the replay stays refused.
    assert_status(
        refresh(&mut auth, &stolen.refresh_token).await,
        Code::Unauthenticated,
        "invalid refresh token",
    );
    // Another login of the same user is another family.
    refresh(&mut auth, &other_device.refresh_token)
        .await
        .expect("other family unaffected");
    mesh.shutdown().await;
}

async fn concurrent_refreshes_of_one_token_have_exactly_one_winner(builder: MeshBuilder) {
    let mesh = builder.start().await;
    let mut auth = mesh.auth().await;
    let tokens = login(&mut auth, "bob", "bob-demo").await.expect("login");
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let mut auth = auth.clone();
            let token = tokens.refresh_token.clone();
            tokio::spawn(async move { refresh(&mut auth, &token).await })
        })
        .collect();
    let mut winners = Vec::new();
    for attempt in attempts {
        match attempt.await.expect("task") {
            Ok(tokens) => winners.push(tokens),
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated);
                assert_eq!(status.message(), "invalid refresh token");
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one concurrent refresh wins");
    // The losers were replays: the family is revoked, the winner's successor too.
    assert_status(
        refresh(&mut auth, &winners[0].refresh_token).await,
        Code::Unauthenticated,
        "invalid refresh token",
    );
    mesh.shutdown().await;
}

async fn logout_ends_the_family_and_unknown_tokens_are_not_an_error(builder: MeshBuilder) {
    let mesh = builder.start().await;
    let mut auth = mesh.auth().await;
    let tokens = login(&mut auth, "alice", "alice-demo")
        .await
        .expect("login");
    auth.logout(LogoutRequest {
        refresh_token: tokens.refresh_token.clone(),
    })
    .await
    .expect("logout");
    assert_status(
        refresh(&mut auth, &tokens.refresh_token).await,
        Code::Unauthenticated,
        "invalid refresh token",
    );
    auth.logout(LogoutRequest {
        refresh_token: tokens.refresh_token.clone(),
    })
    .await
    .expect("again: idempotent");
    auth.logout(LogoutRequest {
        refresh_token: "never-issued".into(),
    })
    .await
    .expect("RFC 7009: not an error");
    assert_status(
        auth.logout(LogoutRequest {
            refresh_token: String::new(),
        })
        .await,
        Code::InvalidArgument,
        "refresh_token: required",
    );
    mesh.shutdown().await;
}

async fn deactivation_kills_live_tokens_at_products_and_orders(builder: MeshBuilder) {
    let mesh = builder.start().await;
    let mut auth = mesh.auth().await;
    let alice = login(&mut auth, "alice", "alice-demo")
        .await
        .expect("login");
    let (products, orders) = mesh.accepted_by(&alice.access_token).await;
    products.expect("accepted before");
    orders.expect("accepted before");

    let admin = mesh.login("admin").await;
    let deactivated = auth
        .deactivate_user(with_bearer(
            DeactivateUserRequest {
                username: "alice".into(),
            },
            &admin,
        ))
        .await
        .expect("deactivate")
        .into_inner();
    assert!(!deactivated.active);
    let took = refused_everywhere(
        &mesh,
        &alice.access_token,
        "token revoked",
        REVOCATION_DEADLINE,
    )
    .await;
    eprintln!("MEASURED: deactivation reached Products and Orders in {took:?}");

    assert_status(
        login(&mut auth, "alice", "alice-demo").await,
        Code::Unauthenticated,
        "invalid username or password",
    );
    assert_status(
        refresh(&mut auth, &alice.refresh_token).await,
        Code::Unauthenticated,
        "invalid refresh token",
    );
    assert_status(
        auth.deactivate_user(with_bearer(
            DeactivateUserRequest {
                username: "nobody".into(),
            },
            &admin,
        ))
        .await,
        Code::NotFound,
        "user nobody not found",
    );
    let bob = mesh.login("bob").await;
    assert_status(
        auth.deactivate_user(with_bearer(
            DeactivateUserRequest {
                username: "admin".into(),
            },
            &bob,
        ))
        .await,
        Code::PermissionDenied,
        "insufficient scope: this method requires `admin`",
    );
    mesh.shutdown().await;
}

async fn a_password_change_kills_old_tokens_but_not_the_next_login(builder: MeshBuilder) {
    let mesh = builder.start().await;
    let mut auth = mesh.auth().await;
    let old = login(&mut auth, "bob", "bob-demo").await.expect("login");
    assert_status(
        auth.change_password(with_bearer(
            ChangePasswordRequest {
                current_password: "wrong".into(),
                new_password: "bob-new-password".into(),
            },
            &old.access_token,
        ))
        .await,
        Code::Unauthenticated,
        "invalid username or password",
    );
    assert_status(
        auth.change_password(with_bearer(
            ChangePasswordRequest {
                current_password: "bob-demo".into(),
                new_password: "short".into(),
            },
            &old.access_token,
        ))
        .await,
        Code::InvalidArgument,
        "new_password: must be at least 8 characters",
    );
    auth.change_password(with_bearer(
        ChangePasswordRequest {
            current_password: "bob-demo".into(),
            new_password: "bob-new-password".into(),
        },
        &old.access_token,
    ))
    .await
    .expect("changed");
    // A login in the same second as the change is not caught by it.
    let new = login(&mut auth, "bob", "bob-new-password")
        .await
        .expect("new password works");
    let took = refused_everywhere(
        &mesh,
        &old.access_token,
        "token revoked",
        REVOCATION_DEADLINE,
    )
    .await;
    eprintln!("MEASURED: password change reached Products and Orders in {took:?}");
    let (products, orders) = mesh.accepted_by(&new.access_token).await;
    products.expect("the new login's token is valid");
    orders.expect("the new login's token is valid");
    assert_status(
        refresh(&mut auth, &old.refresh_token).await,
        Code::Unauthenticated,
        "invalid refresh token",
    );
    assert_status(
        login(&mut auth, "bob", "bob-demo").await,
        Code::Unauthenticated,
        "invalid username or password",
    );
    mesh.shutdown().await;
}

async fn the_revocation_feed_resumes_after_auth_restarts(builder: MeshBuilder) {
    let mut mesh = builder.start().await;
    let bob = mesh.login("bob").await;
    let alice = mesh.login("alice").await;
    // Products and Orders are subscribed: a first revocation arrives.
    let mut auth = mesh.auth().await;
    let admin = mesh.login("admin").await;
    auth.deactivate_user(with_bearer(
        DeactivateUserRequest {
            username: "alice".into(),
        },
        &admin,
    ))
    .await
    .expect("deactivate alice");
    refused_everywhere(&mesh, &alice, "token revoked", REVOCATION_DEADLINE).await;

    mesh.restart_auth().await;
    let (products, orders) = mesh.accepted_by(&bob).await;
    products.expect("bob still accepted while Auth restarts");
    orders.expect("bob still accepted while Auth restarts");

    let mut auth = mesh.auth().await;
    let admin = mesh.login("admin").await;
    auth.deactivate_user(with_bearer(
        DeactivateUserRequest {
            username: "bob".into(),
        },
        &admin,
    ))
    .await
    .expect("deactivate bob after the restart");
    let took = refused_everywhere(&mesh, &bob, "token revoked", REVOCATION_DEADLINE).await;
    eprintln!(
        "MEASURED: after an Auth restart, revocation reached Products and Orders in {took:?}"
    );
    mesh.shutdown().await;
}

async fn repeated_failures_are_throttled_alike_for_known_and_unknown_users(builder: MeshBuilder) {
    let mesh = builder
        .login_throttle(3, Duration::from_secs(30))
        .start()
        .await;
    let mut auth = mesh.auth().await;
    for user in ["alice", "mallory"] {
        for _ in 0..3 {
            assert_status(
                login(&mut auth, user, "guess").await,
                Code::Unauthenticated,
                "invalid username or password",
            );
        }
        for password in ["guess", "alice-demo"] {
            let retry = assert_throttled(
                login(&mut auth, user, password).await,
                "too many failed logins",
            );
            assert!(
                retry > Duration::from_secs(20) && retry <= Duration::from_secs(30),
                "{retry:?}"
            );
        }
    }
    login(&mut auth, "bob", "bob-demo")
        .await
        .expect("other users are not throttled");
    mesh.shutdown().await;
}

async fn service_clients_get_tokens_for_allowed_audiences_only(builder: MeshBuilder) {
    let mesh = builder.start().await;
    let mut auth = mesh.auth().await;
    let secret = client_secret(&mesh, "orders");
    let request = |client_id: &str, secret: &str, audience: &str| IssueServiceTokenRequest {
        client_id: client_id.into(),
        client_secret: secret.into(),
        audience: audience.into(),
    };
    let token = auth
        .issue_service_token(request("orders", &secret, "products"))
        .await
        .expect("issued")
        .into_inner();
    assert_eq!(
        token.refresh_token, "",
        "client credentials get no refresh token"
    );
    let claims = claims_of(&token.access_token);
    assert_eq!(
        (
            claims["sub"].clone(),
            claims["client_id"].clone(),
            claims["aud"].clone()
        ),
        (json!("orders"), json!("orders"), json!(["products"]))
    );
    assert_eq!(
        claims["scope"],
        "revocations:read token:exchange entitlements:watch"
    );

    assert_status(
        auth.issue_service_token(request("orders", "wrong", "products"))
            .await,
        Code::Unauthenticated,
        "invalid client credentials",
    );
    assert_status(
        auth.issue_service_token(request("ghost", &secret, "products"))
            .await,
        Code::Unauthenticated,
        "invalid client credentials",
    );
    assert_status(
        auth.issue_service_token(request("orders", &secret, "orders"))
            .await,
        Code::PermissionDenied,
        "audience orders is not allowed for this client",
    );
    assert_status(
        auth.issue_service_token(request("orders", &secret, ""))
            .await,
        Code::InvalidArgument,
        "audience: required",
    );
    // Products accepts the service token; it names no user, so it may not see
    // someone else's entitlements without the check scope.
    let mut products = mesh.products(Bearer::token(&token.access_token)).await;
    assert_status(
        products
            .check_entitlement(CheckEntitlementRequest {
                subject: "alice".into(),
                product_id: "P-100".into(),
            })
            .await,
        Code::PermissionDenied,
        "checking another subject's entitlements requires scope `entitlements:check`",
    );
    mesh.shutdown().await;
}

async fn an_exchanged_token_is_narrowed_to_one_audience_and_names_its_actor(builder: MeshBuilder) {
    let mesh = builder.start().await;
    let mut auth = mesh.auth().await;
    let alice = mesh.login("alice").await;
    let actor = auth
        .issue_service_token(IssueServiceTokenRequest {
            client_id: "orders".into(),
            client_secret: client_secret(&mesh, "orders"),
            audience: "auth".into(),
        })
        .await
        .expect("service token")
        .into_inner()
        .access_token;
    let exchange = |subject: &str, audience: &str| ExchangeTokenRequest {
        subject_token: subject.into(),
        audience: audience.into(),
    };
    let exchanged = auth
        .exchange_token(with_bearer(exchange(&alice, "products"), &actor))
        .await
        .expect("exchanged")
        .into_inner()
        .access_token;
    let claims = claims_of(&exchanged);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], json!(["products"]));
    assert_eq!(claims["act"], json!({"sub": "orders"}));
    let lifetime = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
    assert!(lifetime <= 60, "short-lived: {lifetime}");
    assert!(
        claims["exp"].as_i64() <= claims_of(&alice)["exp"].as_i64(),
        "never outlives the subject token"
    );

    let mut products = mesh.products(Bearer::token(&exchanged)).await;
    let allowed = products
        .check_entitlement(CheckEntitlementRequest {
            subject: "alice".into(),
            product_id: "P-100".into(),
        })
        .await
        .expect("Products accepts it")
        .into_inner();
    assert!(allowed.allowed);
    let mut orders = mesh.orders(Bearer::token(&exchanged)).await;
    assert_status(
        orders.list_orders(ListOrdersRequest::default()).await,
        Code::Unauthenticated,
        "token audience does not include this service",
    );

    assert_status(
        auth.exchange_token(with_bearer(exchange(&exchanged, "products"), &actor))
            .await,
        Code::InvalidArgument,
        "subject_token: token audience does not include this service",
    );
    assert_status(
        auth.exchange_token(with_bearer(exchange(&alice, "orders"), &actor))
            .await,
        Code::PermissionDenied,
        "audience orders is not allowed for this client",
    );
    assert_status(
        auth.exchange_token(with_bearer(exchange(&alice, "products"), &alice))
            .await,
        Code::PermissionDenied,
        "insufficient scope: this method requires `token:exchange`",
    );
    let forged = Minter::foreign().access_token(&Minter::access_claims("alice"));
    assert_status(
        auth.exchange_token(with_bearer(exchange(&forged, "products"), &actor))
            .await,
        Code::InvalidArgument,
        "subject_token: token signed by an unknown key",
    );
    mesh.shutdown().await;
}

async fn rotation_reaches_products_and_orders_without_restart_and_the_old_key_retires(
    builder: MeshBuilder,
) {
    let clock = ManualClock::new();
    let mesh = builder
        .clock(clock.clone())
        .retired_key_grace(Duration::ZERO)
        .key_refresh_interval(Duration::from_millis(100))
        .start()
        .await;
    let old_key = mesh.auth_minter();
    let mut auth = mesh.auth().await;
    let admin = mesh.login("admin").await;
    let before = mesh.login("alice").await;
    let rotated = auth
        .rotate_signing_key(with_bearer(RotateSigningKeyRequest {}, &admin))
        .await
        .expect("rotate")
        .into_inner();
    assert_eq!(rotated.retired_kid, old_key.kid());
    let after = mesh.login("alice").await;
    assert_eq!(header_of(&after)["kid"], rotated.kid.as_str());
    let jwks = auth
        .get_jwks(GetJwksRequest {})
        .await
        .expect("jwks")
        .into_inner();
    let mut published: Vec<&str> = jwks.keys.iter().map(|k| k.kid.as_str()).collect();
    published.sort_unstable();
    let mut expected = vec![rotated.kid.as_str(), old_key.kid()];
    expected.sort_unstable();
    assert_eq!(
        published, expected,
        "both keys published during the overlap"
    );
    for token in [&before, &after] {
        let (products, orders) = mesh.accepted_by(token).await;
        products.expect("Products accepts old and new keys");
        orders.expect("Orders accepts old and new keys");
    }

    // Once every token of the old key has expired (the default 5-minute lifetime
    // and no grace, passed on the mesh's clock), the key is unpublished and
    // verifiers stop trusting it: a token it signs now is refused.
    clock.advance(Duration::from_secs(301));
    let (_, retired_after) = eventually(Duration::from_secs(60), || {
        let mut auth = auth.clone();
        let old_kid = old_key.kid().to_owned();
        async move {
            let jwks = auth
                .get_jwks(GetJwksRequest {})
                .await
                .expect("jwks")
                .into_inner();
            jwks.keys.iter().all(|k| k.kid != old_kid).then_some(())
        }
    })
    .await;
    eprintln!("MEASURED: old key unpublished {retired_after:?} after the overlap started");
    // Valid in every other respect at the mesh's time.
    let mut claims = Minter::access_claims("alice");
    let now = clock.now_unix();
    (claims["iat"], claims["nbf"], claims["exp"]) = (now.into(), now.into(), (now + 300).into());
    let forged_with_old = old_key.access_token(&claims);
    refused_everywhere(
        &mesh,
        &forged_with_old,
        "token signed by an unknown key",
        Duration::from_secs(60),
    )
    .await;
    let fresh = mesh.login("alice").await;
    let (products, orders) = mesh.accepted_by(&fresh).await;
    products.expect("new key still trusted");
    orders.expect("new key still trusted");
    mesh.shutdown().await;
}

async fn admin_creates_users_with_checked_input(builder: MeshBuilder) {
    let mesh = builder.start().await;
    let mut auth = mesh.auth().await;
    let admin = mesh.login("admin").await;
    let create = |username: &str, password: &str| tokenmesh_proto::auth::v1::CreateUserRequest {
        username: username.into(),
        password: password.into(),
        scopes: String::new(),
    };
    let carol = auth
        .create_user(with_bearer(create("carol", "carol-password"), &admin))
        .await
        .expect("created")
        .into_inner();
    assert_eq!((carol.username.as_str(), carol.active), ("carol", true));
    login(&mut auth, "carol", "carol-password")
        .await
        .expect("carol logs in");
    assert_status(
        auth.create_user(with_bearer(create("carol", "carol-password"), &admin))
            .await,
        Code::AlreadyExists,
        "user carol already exists",
    );
    assert_status(
        auth.create_user(with_bearer(create("dave", "short"), &admin))
            .await,
        Code::InvalidArgument,
        "password: must be at least 8 characters",
    );
    assert_status(
        auth.create_user(with_bearer(create("no spaces", "long-enough"), &admin))
            .await,
        Code::InvalidArgument,
        "username: at most 64 of A-Z a-z 0-9 . _ - @",
    );
    let alice = mesh.login("alice").await;
    assert_status(
        auth.create_user(with_bearer(create("eve", "eve-password"), &alice))
            .await,
        Code::PermissionDenied,
        "insufficient scope: this method requires `admin`",
    );
    mesh.shutdown().await;
}
