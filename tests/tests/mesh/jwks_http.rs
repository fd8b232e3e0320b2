//! Verifiers can take Auth's keys from its HTTP JWKS (`/.well-known/jwks.json`),
//! as a gateway or a third-party service would, and keep them when Auth is gone.

use std::sync::Arc;

use tokenmesh_interceptor::{HttpJwksSource, KeyStore, Verifier, VerifierConfig};
use tokenmesh_server::Caller;
use tokenmesh_tests::{AUTH_ISSUER, Mesh, Minter};

#[tokio::test]
async fn a_verifier_fed_by_the_http_jwks_accepts_auths_tokens_and_survives_auth_down() {
    let mesh = Mesh::start().await;
    let url = format!("http://{}/.well-known/jwks.json", mesh.http_addr());
    let keys = KeyStore::remote(HttpJwksSource::new(&url).expect("source"));
    assert_eq!(keys.refresh().await.expect("fetched over HTTP"), 1);
    let verifier = Arc::new(
        Verifier::<Caller>::new(
            VerifierConfig::access_tokens(AUTH_ISSUER, "products"),
            keys.clone(),
        )
        .with_cache_capacity(0),
    );
    let token = mesh.login("alice").await;
    let caller = verifier.verify(&token).await.expect("verified");
    assert_eq!(caller.0.sub, "alice");
    let forged = Minter::foreign().mint(
        "at+jwt",
        Some(mesh.auth_minter().kid()),
        &Minter::access_claims("alice"),
    );

    mesh.shutdown().await;
    assert!(keys.refresh().await.is_err(), "Auth is down");
    verifier
        .verify(&token)
        .await
        .expect("last good key set still verifies");
    assert_eq!(
        verifier.verify(&forged).await.expect_err("forged").reason(),
        "SIGNATURE_INVALID"
    );
}
