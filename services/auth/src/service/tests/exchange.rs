//! Token exchange and service tokens: what a service client may obtain, and
//! that an exchange only ever narrows.

use super::*;

tokenmesh_server::on_each_store!(
    an_exchange_narrows_the_audience_and_names_the_actor,
    an_exchanged_token_cannot_be_exchanged_again,
    an_exchange_passes_on_only_the_scopes_declared_for_the_audience,
    a_service_token_needs_the_right_secret_and_an_allowed_audience,
);

async fn an_exchange_narrows_the_audience_and_names_the_actor(url: &str) {
    let fixture = Fixture::start(url).await;
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

async fn an_exchanged_token_cannot_be_exchanged_again(url: &str) {
    let fixture = Fixture::start(url).await;
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

async fn an_exchange_passes_on_only_the_scopes_declared_for_the_audience(url: &str) {
    let fixture = Fixture::start(url).await;
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

async fn a_service_token_needs_the_right_secret_and_an_allowed_audience(url: &str) {
    let fixture = Fixture::start(url).await;
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
