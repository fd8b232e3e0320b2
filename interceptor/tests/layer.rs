//! The layer through a real tonic client: refusals carry a `google.rpc.ErrorInfo`
//! with a stable reason, and verified tokens are served from the cache only while
//! unexpired, unrevoked and signed by a key still trusted.

mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{FutureExt, future::BoxFuture};
use jsonwebtoken::jwk::JwkSet;
use serde_json::json;
use support::{
    ADMIN, AUDIENCE, ISSUER, PING, TestClaims, TestKey, TestServer, call, claims, jwks, key_set,
    now, policy, verifier,
};
use tokenmesh_interceptor::{
    AuthLayer, Clock, ERROR_DOMAIN, KeySource, KeySourceError, KeyStore, ManualClock,
    RevocationSet, Verifier, VerifierConfig,
};
use tonic::Code;
use tonic_types::StatusExt;

#[tokio::test]
async fn refusals_carry_error_info_with_a_stable_reason() {
    let key = TestKey::ed25519("k1");
    let layer = AuthLayer::new(verifier(KeyStore::fixed(key_set(&[&key]))), policy());
    let server = TestServer::start(Some(layer)).await;
    let channel = server.channel().await;
    let with = |name: &str, value: serde_json::Value| {
        let mut claims = claims("alice");
        claims[name] = value;
        key.sign(&claims)
    };
    let foreign = TestKey::ed25519("k2").sign(&claims("alice"));
    let cases = [
        (
            "no token",
            PING,
            None,
            Code::Unauthenticated,
            "missing bearer token: send `authorization: Bearer <access_token>`",
            "TOKEN_MISSING",
        ),
        (
            "expired",
            PING,
            Some(with("exp", json!(now() - 60))),
            Code::Unauthenticated,
            "token expired",
            "TOKEN_EXPIRED",
        ),
        (
            "unknown key",
            PING,
            Some(foreign),
            Code::Unauthenticated,
            "token signed by an unknown key",
            "KEY_UNKNOWN",
        ),
        (
            "other audience",
            PING,
            Some(with("aud", json!(["other"]))),
            Code::Unauthenticated,
            "token audience does not include this service",
            "AUDIENCE_MISMATCH",
        ),
        (
            "garbage",
            PING,
            Some("a.b.c".to_owned()),
            Code::Unauthenticated,
            "malformed token: not a JWS in compact form with a known alg",
            "TOKEN_MALFORMED",
        ),
        (
            "no scope",
            ADMIN,
            Some(key.sign(&claims("alice"))),
            Code::PermissionDenied,
            "insufficient scope: this method requires `admin`",
            "INSUFFICIENT_SCOPE",
        ),
        (
            "not a method of this server",
            "/test.v1.Ping/Other",
            Some(key.sign(&claims("alice"))),
            Code::Unimplemented,
            "unknown method: this server does not serve it (`grpcurl <address> list` shows what it does)",
            "METHOD_UNKNOWN",
        ),
    ];
    for (case, path, token, code, message, reason) in cases {
        let status = call(&channel, path, token.as_deref())
            .await
            .expect_err(case);
        let info = status.get_details_error_info().expect(case);
        assert_eq!(
            (
                status.code(),
                status.message(),
                info.reason.as_str(),
                info.domain.as_str()
            ),
            (code, message, reason, ERROR_DOMAIN),
            "{case}"
        );
        if let Some(token) = token {
            assert!(
                !status.message().contains(&token),
                "{case} echoes the token"
            );
        }
    }
    let status = call(&channel, ADMIN, Some(&key.sign(&claims("alice"))))
        .await
        .expect_err("no scope");
    let info = status.get_details_error_info().expect("error info");
    assert_eq!(
        info.metadata.get("scope").map(String::as_str),
        Some("admin")
    );
    assert_eq!(server.calls(), 0, "no refused request reached the handler");

    let mut admin = claims("root");
    admin["scope"] = "read admin".into();
    call(&channel, ADMIN, Some(&key.sign(&admin)))
        .await
        .expect("admin scope");
    server.stop().await;
}

#[tokio::test]
async fn a_repeated_token_is_verified_once_and_served_from_the_cache() {
    let key = TestKey::es256("k1");
    let verifier = verifier(KeyStore::fixed(key_set(&[&key])));
    let server = TestServer::start(Some(AuthLayer::new(verifier.clone(), policy()))).await;
    let channel = server.channel().await;
    let token = key.sign(&claims("alice"));
    for _ in 0..3 {
        call(&channel, PING, Some(&token)).await.expect("valid");
    }
    assert_eq!(verifier.cached(), 1);
    assert_eq!(server.calls(), 3);
    // A refused token is never cached.
    let mut expired = claims("bob");
    expired["exp"] = (now() - 60).into();
    call(&channel, PING, Some(&key.sign(&expired)))
        .await
        .expect_err("expired");
    assert_eq!(verifier.cached(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_cached_token_is_refused_once_revoked() {
    let key = TestKey::ed25519("k1");
    let revocations = Arc::new(RevocationSet::new());
    let verifier = Arc::new(
        Verifier::<TestClaims>::new(
            VerifierConfig::access_tokens(ISSUER, AUDIENCE),
            KeyStore::fixed(key_set(&[&key])),
        )
        .with_revocations(revocations.clone()),
    );
    let server = TestServer::start(Some(AuthLayer::new(verifier.clone(), policy()))).await;
    let channel = server.channel().await;
    let by_id = claims("alice");
    let by_subject = claims("bob");
    let (token_a, token_b) = (key.sign(&by_id), key.sign(&by_subject));
    call(&channel, PING, Some(&token_a)).await.expect("valid");
    call(&channel, PING, Some(&token_b)).await.expect("valid");
    assert_eq!(verifier.cached(), 2);

    revocations.revoke_token(by_id["jti"].as_str().expect("jti"), now() + 300);
    revocations.revoke_subject("bob", now() + 1, now() + 300);
    for token in [&token_a, &token_b] {
        let status = call(&channel, PING, Some(token))
            .await
            .expect_err("revoked");
        let info = status.get_details_error_info().expect("error info");
        assert_eq!(
            (status.code(), status.message(), info.reason.as_str()),
            (Code::Unauthenticated, "token revoked", "TOKEN_REVOKED")
        );
    }
    assert_eq!(server.calls(), 2);
    server.stop().await;
}

/// A key source whose JWKS the test replaces, as an issuer rotating keys would.
#[derive(Clone)]
struct Rotating(Arc<Mutex<JwkSet>>);

impl KeySource for Rotating {
    fn fetch(&self) -> BoxFuture<'_, Result<JwkSet, KeySourceError>> {
        let jwks = self.0.lock().expect("lock").clone();
        async move { Ok(jwks) }.boxed()
    }
}

#[tokio::test]
async fn a_cached_token_is_refused_once_its_key_is_retired() {
    let (old, new) = (TestKey::ed25519("old"), TestKey::ed25519("new"));
    let published = Rotating(Arc::new(Mutex::new(jwks(&[&old, &new]))));
    let keys = KeyStore::remote(published.clone());
    keys.refresh().await.expect("first fetch");
    let verifier = verifier(keys.clone());
    let server = TestServer::start(Some(AuthLayer::new(verifier.clone(), policy()))).await;
    let channel = server.channel().await;
    let (old_token, new_token) = (old.sign(&claims("alice")), new.sign(&claims("alice")));
    call(&channel, PING, Some(&old_token))
        .await
        .expect("old key trusted");
    call(&channel, PING, Some(&new_token))
        .await
        .expect("new key trusted");

    // The same set fetched again changes nothing.
    keys.refresh().await.expect("refetch");
    call(&channel, PING, Some(&old_token))
        .await
        .expect("still trusted");

    *published.0.lock().expect("lock") = jwks(&[&new]);
    keys.refresh().await.expect("rotation");
    let status = call(&channel, PING, Some(&old_token))
        .await
        .expect_err("retired");
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "token signed by an unknown key")
    );
    call(&channel, PING, Some(&new_token))
        .await
        .expect("new key still trusted");
    assert_eq!(server.calls(), 4);
    server.stop().await;
}

#[tokio::test]
async fn a_cached_token_expires_with_the_token() {
    let key = TestKey::ed25519("k1");
    let mut config = VerifierConfig::access_tokens(ISSUER, AUDIENCE);
    config.leeway = Duration::ZERO;
    let clock = ManualClock::new();
    let verifier = Arc::new(
        Verifier::<TestClaims>::new(config, KeyStore::fixed(key_set(&[&key])))
            .with_clock(Arc::new(clock.clone())),
    );
    let server = TestServer::start(Some(AuthLayer::new(verifier.clone(), policy()))).await;
    let channel = server.channel().await;
    let mut short = claims("alice");
    short["exp"] = (clock.now_unix() + 2).into();
    let token = key.sign(&short);
    call(&channel, PING, Some(&token))
        .await
        .expect("valid for two seconds");
    assert_eq!(verifier.cached(), 1);
    clock.advance(Duration::from_secs(2));
    call(&channel, PING, Some(&token))
        .await
        .expect("still valid in its last second, from the cache");
    clock.advance(Duration::from_secs(1));
    let status = call(&channel, PING, Some(&token))
        .await
        .expect_err("expired");
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "token expired")
    );
    server.stop().await;
}
