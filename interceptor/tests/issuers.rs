//! Several trusted issuers in one verifier, each with its own `iss`, audiences,
//! `typ`, algorithms and maximum lifetime: a token is judged by the rules of the
//! issuer whose key signed it, never by another's.

mod support;

use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::json;
use support::{AUDIENCE, ISSUER, TestClaims, TestKey, claims, key_set, now};
use tokenmesh_interceptor::{KeyStore, Verifier, VerifierConfig};

const PARTNER: &str = "https://partner.test";

struct Fixture {
    verifier: Verifier<TestClaims>,
    ours: TestKey,
    partner: TestKey,
    partner_rsa: TestKey,
}

fn fixture() -> Fixture {
    let ours = TestKey::ed25519("ours");
    let partner = TestKey::es256("partner");
    let partner_rsa = TestKey::rs256("partner-rsa");
    let mut partner_config = VerifierConfig::access_tokens(PARTNER, AUDIENCE)
        .with_token_type("partner+jwt")
        .with_algorithms(&[Algorithm::ES256, Algorithm::HS256]);
    partner_config.audiences.push("ping-admin".into());
    partner_config.max_lifetime = Some(Duration::from_secs(600));
    let verifier = Verifier::new(
        VerifierConfig::access_tokens(ISSUER, AUDIENCE),
        KeyStore::fixed(key_set(&[&ours])),
    )
    .trust(
        partner_config,
        KeyStore::fixed(key_set(&[&partner, &partner_rsa])),
    );
    Fixture {
        verifier,
        ours,
        partner,
        partner_rsa,
    }
}

fn partner_claims() -> serde_json::Value {
    let mut claims = claims("carol");
    claims["iss"] = PARTNER.into();
    claims
}

fn partner_header(key: &TestKey) -> String {
    let mut header = key.header();
    header["typ"] = "partner+jwt".into();
    header.to_string()
}

#[tokio::test]
async fn each_issuers_tokens_are_accepted_under_its_own_rules() {
    let f = fixture();
    let ours = f
        .verifier
        .verify(&f.ours.sign(&claims("alice")))
        .await
        .expect("ours");
    assert_eq!(ours.sub, "alice");
    let theirs = f
        .partner
        .sign_raw(&partner_header(&f.partner), &partner_claims().to_string());
    assert_eq!(
        f.verifier.verify(&theirs).await.expect("partner").sub,
        "carol"
    );
    let mut other_audience = partner_claims();
    other_audience["aud"] = json!(["ping-admin"]);
    let token = f
        .partner
        .sign_raw(&partner_header(&f.partner), &other_audience.to_string());
    f.verifier
        .verify(&token)
        .await
        .expect("partner's second audience");
}

#[tokio::test]
async fn one_issuers_tokens_never_pass_under_anothers_rules() {
    let f = fixture();
    let reason = |token: String| {
        let verifier = &f.verifier;
        async move { verifier.verify(&token).await.expect_err("refused").reason() }
    };
    // The partner's key signing a token that claims to be ours.
    let ours_by_partner = f
        .partner
        .sign_raw(&partner_header(&f.partner), &claims("alice").to_string());
    assert_eq!(reason(ours_by_partner).await, "ISSUER_MISMATCH");
    // Our `typ` under the partner's key, and the partner's under ours.
    let wrong_typ = f.partner.sign(&partner_claims());
    assert_eq!(reason(wrong_typ).await, "TOKEN_TYPE_MISMATCH");
    let ours_with_partner_typ = f
        .ours
        .sign_raw(&partner_header(&f.ours), &claims("alice").to_string());
    assert_eq!(reason(ours_with_partner_typ).await, "TOKEN_TYPE_MISMATCH");
    // An algorithm the partner's key allows but the partner's issuer does not.
    let rsa = f.partner_rsa.sign_raw(
        &partner_header(&f.partner_rsa),
        &partner_claims().to_string(),
    );
    assert_eq!(reason(rsa).await, "SIGNATURE_INVALID");
    // The partner's 10-minute limit, though ours allows a day.
    let mut long = partner_claims();
    long["exp"] = (now() + 3600).into();
    let long = f
        .partner
        .sign_raw(&partner_header(&f.partner), &long.to_string());
    assert_eq!(reason(long).await, "TOKEN_LIFETIME_EXCEEDED");
    let mut long_ours = claims("alice");
    long_ours["exp"] = (now() + 3600).into();
    f.verifier
        .verify(&f.ours.sign(&long_ours))
        .await
        .expect("an hour is fine for our issuer");
    // The partner's audience is not ours.
    let mut admin = claims("alice");
    admin["aud"] = json!(["ping-admin"]);
    assert_eq!(reason(f.ours.sign(&admin)).await, "AUDIENCE_MISMATCH");
}

#[test]
fn symmetric_algorithms_are_dropped_from_an_issuers_list() {
    let config = VerifierConfig::access_tokens(PARTNER, AUDIENCE)
        .with_algorithms(&[Algorithm::HS256, Algorithm::ES256]);
    assert_eq!(config.algorithms, vec![Algorithm::ES256]);
}
