//! RFC 8725 and the JWT attack lists, against a real tonic server with keys of
//! every algorithm: each hostile token is UNAUTHENTICATED with a precise message,
//! the handler is never reached, and the server keeps serving.

mod support;

use serde_json::{Value, json};
use support::{PING, TestKey, TestServer, b64, call, claims, key_set, now, policy, verifier};
use tokenmesh_interceptor::{AuthLayer, KeyStore};
use tonic::Code;

/// A server trusting an EdDSA, an ES256 and an RS256 key.
struct Fixture {
    server: TestServer,
    ed: TestKey,
    es: TestKey,
    rs: TestKey,
}

impl Fixture {
    async fn start() -> Self {
        let (ed, es, rs) = (
            TestKey::ed25519("ed"),
            TestKey::es256("es"),
            TestKey::rs256("rs"),
        );
        let keys = KeyStore::fixed(key_set(&[&ed, &es, &rs]));
        let layer = AuthLayer::new(verifier(keys), policy());
        let server = TestServer::start(Some(layer)).await;
        Self { server, ed, es, rs }
    }

    /// Every case is refused with its message, reaches no handler, and a valid
    /// token of each algorithm still passes afterwards.
    async fn assert_refused(self, cases: Vec<(&str, String, &str)>) {
        let channel = self.server.channel().await;
        for (case, token, message) in cases {
            let before = self.server.calls();
            let status = call(&channel, PING, Some(&token)).await.expect_err(case);
            assert_eq!(
                (status.code(), status.message()),
                (Code::Unauthenticated, message),
                "{case}"
            );
            assert!(
                !status.message().contains(&token),
                "{case} echoes the token"
            );
            assert_eq!(self.server.calls(), before, "{case} reached the handler");
        }
        for key in [&self.ed, &self.es, &self.rs] {
            call(&channel, PING, Some(&key.sign(&claims("alice"))))
                .await
                .expect("still serving");
        }
        self.server.stop().await;
    }
}

/// `token` with its signature replaced by `signature`.
fn resigned(token: &str, signature: &[u8]) -> String {
    let (input, _) = token.rsplit_once('.').expect("three parts");
    format!("{input}.{}", b64(signature))
}

fn signature(token: &str) -> Vec<u8> {
    let (_, signature) = token.rsplit_once('.').expect("three parts");
    base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, signature)
        .expect("base64url")
}

/// The order of P-256, big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// The order of the Ed25519 group, little-endian.
const ED25519_L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

#[tokio::test]
async fn zero_and_out_of_range_ecdsa_signatures_are_unauthenticated() {
    let fixture = Fixture::start().await;
    let genuine = fixture.es.sign(&claims("alice"));
    let real = signature(&genuine);
    let r_n_s_n = [P256_N, P256_N].concat();
    let r_real_s_zero = [&real[..32], &[0u8; 32][..]].concat();
    let cases = vec![
        // CVE-2022-21449, "psychic signatures": r = s = 0.
        (
            "r = s = 0",
            resigned(&genuine, &[0u8; 64]),
            "invalid token signature",
        ),
        (
            "r = s = n",
            resigned(&genuine, &r_n_s_n),
            "invalid token signature",
        ),
        (
            "s = 0",
            resigned(&genuine, &r_real_s_zero),
            "invalid token signature",
        ),
        (
            "truncated",
            resigned(&genuine, &real[..63]),
            "invalid token signature",
        ),
        (
            "doubled",
            resigned(&genuine, &[real.clone(), real.clone()].concat()),
            "invalid token signature",
        ),
        ("empty", resigned(&genuine, &[]), "invalid token signature"),
    ];
    fixture.assert_refused(cases).await;
}

#[tokio::test]
async fn keys_off_the_curve_or_carried_in_the_token_are_never_used() {
    let fixture = Fixture::start().await;
    let attacker = TestKey::es256("es");
    let mut off_curve = attacker.jwk.clone();
    // A point not on P-256 (invalid-curve attack): y moved by one.
    let mut y = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        off_curve["y"].as_str().expect("y"),
    )
    .expect("y");
    y[31] ^= 1;
    off_curve["y"] = b64(&y).into();
    let body = claims("alice").to_string();
    let with_header = |extra: Value| {
        let mut header = attacker.header();
        header
            .as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        attacker.sign_raw(&header.to_string(), &body)
    };
    let cases = vec![
        (
            "embedded jwk",
            with_header(json!({"jwk": attacker.jwk})),
            "invalid token signature",
        ),
        (
            "embedded off-curve jwk",
            with_header(json!({"jwk": off_curve})),
            "invalid token signature",
        ),
        (
            "jku",
            with_header(json!({"jku": "http://127.0.0.1:1/jwks.json"})),
            "invalid token signature",
        ),
        (
            "x5u",
            with_header(json!({"x5u": "http://127.0.0.1:1/cert.pem"})),
            "invalid token signature",
        ),
        (
            "x5c",
            with_header(json!({"x5c": ["MIIB"]})),
            "invalid token signature",
        ),
        (
            "kid injection",
            attacker.sign_raw(
                &json!({"alg": "ES256", "typ": "at+jwt", "kid": "../../dev/null"}).to_string(),
                &body,
            ),
            "token signed by an unknown key",
        ),
    ];
    fixture.assert_refused(cases).await;
}

#[tokio::test]
async fn an_off_curve_key_in_the_key_set_verifies_nothing() {
    let genuine = TestKey::es256("bent");
    let mut jwk = genuine.jwk.clone();
    jwk["y"] = b64(&[0x42; 32]).into();
    let set = tokenmesh_interceptor::KeySet::from_jwks(
        &serde_json::from_value(json!({"keys": [jwk]})).expect("jwks"),
    );
    let layer = AuthLayer::new(verifier(KeyStore::fixed(set)), policy());
    let server = TestServer::start(Some(layer)).await;
    let channel = server.channel().await;
    let status = call(&channel, PING, Some(&genuine.sign(&claims("alice"))))
        .await
        .expect_err("off-curve key");
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "invalid token signature")
    );
    assert_eq!(server.calls(), 0);
    server.stop().await;
}

#[tokio::test]
async fn non_canonical_eddsa_signatures_are_unauthenticated() {
    let fixture = Fixture::start().await;
    let genuine = fixture.ed.sign(&claims("alice"));
    let real = signature(&genuine);
    // S + L verifies the same equation; RFC 8032 §5.1.7 requires S < L.
    let mut s_plus_l = real.clone();
    let mut carry = 0u16;
    for (byte, l) in s_plus_l[32..].iter_mut().zip(ED25519_L) {
        let sum = u16::from(*byte) + u16::from(l) + carry;
        *byte = sum as u8;
        carry = sum >> 8;
    }
    let mut s_is_l = real.clone();
    s_is_l[32..].copy_from_slice(&ED25519_L);
    let cases = vec![
        (
            "S + L",
            resigned(&genuine, &s_plus_l),
            "invalid token signature",
        ),
        (
            "S = L",
            resigned(&genuine, &s_is_l),
            "invalid token signature",
        ),
        (
            "all ones",
            resigned(&genuine, &[0xff; 64]),
            "invalid token signature",
        ),
        (
            "zero",
            resigned(&genuine, &[0; 64]),
            "invalid token signature",
        ),
    ];
    fixture.assert_refused(cases).await;
}

#[tokio::test]
async fn algorithm_confusion_across_key_types_is_unauthenticated() {
    let fixture = Fixture::start().await;
    let body = claims("alice").to_string();
    // Each key's token, relabelled with another key's kid or another alg.
    let ed_as_es = fixture.ed.sign_raw(
        &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "es"}).to_string(),
        &body,
    );
    let es_as_rs = fixture.es.sign_raw(
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": "rs"}).to_string(),
        &body,
    );
    let rs_alg_ps = {
        let token = fixture.rs.sign(&claims("alice"));
        let (_, rest) = token.split_once('.').expect("parts");
        let header = json!({"alg": "PS256", "typ": "at+jwt", "kid": "rs"});
        format!("{}.{rest}", b64(header.to_string().as_bytes()))
    };
    let hs_with_public_key = {
        let secret = fixture.rs.jwk["n"].as_str().expect("n").as_bytes().to_vec();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.typ = Some("at+jwt".into());
        header.kid = Some("rs".into());
        jsonwebtoken::encode(
            &header,
            &claims("alice"),
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )
        .expect("hs256")
    };
    let cases = vec![
        (
            "EdDSA under the ES256 key",
            ed_as_es,
            "token algorithm does not match its key",
        ),
        (
            "ES256 under the RS256 key",
            es_as_rs,
            "token algorithm does not match its key",
        ),
        (
            "RS256 relabelled PS256",
            rs_alg_ps,
            "token algorithm does not match its key",
        ),
        (
            "HS256 keyed with the RSA modulus",
            hs_with_public_key,
            "token algorithm does not match its key",
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none","typ":"at+jwt","kid":"ed"}"#),
                b64(body.as_bytes())
            ),
            "malformed token: not a JWS in compact form with a known alg",
        ),
        (
            "alg nOnE",
            format!(
                "{}.{}.",
                b64(br#"{"alg":"nOnE","typ":"at+jwt","kid":"ed"}"#),
                b64(body.as_bytes())
            ),
            "malformed token: not a JWS in compact form with a known alg",
        ),
    ];
    fixture.assert_refused(cases).await;
}

#[tokio::test]
async fn duplicate_json_members_are_unauthenticated() {
    let fixture = Fixture::start().await;
    let key = &fixture.ed;
    let now = now();
    let body = |extra: &str| {
        format!(
            r#"{{"iss":"https://issuer.test","sub":"alice","aud":["ping"],"exp":{},"iat":{now},"nbf":{now},"jti":"j1","scope":""{extra}}}"#,
            now + 300
        )
    };
    let header = r#"{"alg":"EdDSA","typ":"at+jwt","kid":"ed"}"#;
    // Parsers disagree on which duplicate wins, so a token with one is refused.
    let cases = vec![
        (
            "duplicate kid",
            key.sign_raw(
                r#"{"alg":"EdDSA","typ":"at+jwt","kid":"nope","kid":"ed"}"#,
                &body(""),
            ),
            "malformed token: not a JWS in compact form with a known alg",
        ),
        (
            "duplicate alg",
            key.sign_raw(
                r#"{"alg":"none","typ":"at+jwt","kid":"ed","alg":"EdDSA"}"#,
                &body(""),
            ),
            "malformed token: not a JWS in compact form with a known alg",
        ),
        (
            "duplicate sub",
            key.sign_raw(header, &body(r#","sub":"admin""#)),
            "malformed token: claims are not the expected JSON",
        ),
        (
            "duplicate exp",
            key.sign_raw(header, &body(&format!(r#","exp":{}"#, now + 9_999_999))),
            "malformed token: claims are not the expected JSON",
        ),
        (
            "duplicate scope",
            key.sign_raw(header, &body(r#","scope":"admin""#)),
            "malformed token: claims are not the expected JSON",
        ),
    ];
    fixture.assert_refused(cases).await;
}

#[tokio::test]
async fn claim_type_confusion_is_unauthenticated() {
    let fixture = Fixture::start().await;
    let key = &fixture.ed;
    let with = |name: &str, value: Value| {
        let mut claims = claims("alice");
        claims[name] = value;
        key.sign(&claims)
    };
    let cases = vec![
        (
            "sub as array",
            with("sub", json!(["alice", "admin"])),
            "malformed token: claims are not the expected JSON",
        ),
        (
            "sub as number",
            with("sub", json!(7)),
            "malformed token: claims are not the expected JSON",
        ),
        (
            "iss as array",
            with("iss", json!([support::ISSUER])),
            "malformed token: claims are not the expected JSON",
        ),
        (
            "exp as float",
            with("exp", json!(now() as f64 + 300.5)),
            "malformed token: claims are not the expected JSON",
        ),
        (
            "exp as string",
            with("exp", json!((now() + 300).to_string())),
            "malformed token: claims are not the expected JSON",
        ),
        (
            "exp as bool",
            with("exp", json!(true)),
            "malformed token: claims are not the expected JSON",
        ),
        (
            "scope as array",
            with("scope", json!(["admin"])),
            "malformed token: claims are not the expected JSON",
        ),
        (
            "nbf as string",
            with("nbf", json!("0")),
            "malformed token: claims are not the expected JSON",
        ),
        (
            "aud as number",
            with("aud", json!(5)),
            "token lacks required claim `aud`",
        ),
        (
            "aud as object",
            with("aud", json!({"ping": true})),
            "token lacks required claim `aud`",
        ),
        (
            "typ as array",
            key.sign_raw(
                &json!({"alg": "EdDSA", "typ": ["at+jwt"], "kid": "ed"}).to_string(),
                &claims("alice").to_string(),
            ),
            "malformed token: not a JWS in compact form with a known alg",
        ),
        (
            "kid as number",
            key.sign_raw(
                &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": 1}).to_string(),
                &claims("alice").to_string(),
            ),
            "malformed token: not a JWS in compact form with a known alg",
        ),
        (
            "payload an array",
            key.sign_raw(&key.header().to_string(), "[1,2]"),
            "malformed token: claims are not the expected JSON",
        ),
        (
            "payload not JSON",
            key.sign_raw(&key.header().to_string(), "alice"),
            "malformed token: claims are not the expected JSON",
        ),
    ];
    fixture.assert_refused(cases).await;
}

#[tokio::test]
async fn issued_in_the_future_or_living_too_long_is_unauthenticated() {
    let fixture = Fixture::start().await;
    let key = &fixture.ed;
    let now = now();
    let with = |changes: Value| {
        let mut claims = claims("alice");
        for (name, value) in changes.as_object().expect("object") {
            if value.is_null() {
                claims.as_object_mut().expect("object").remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        key.sign(&claims)
    };
    let cases = vec![
        (
            "iat beyond leeway",
            with(json!({"iat": now + 120})),
            "token issued in the future",
        ),
        (
            "a 25-hour token",
            with(json!({"exp": now + 25 * 3600})),
            "token lifetime exceeds 86400 s",
        ),
        (
            "exp long after an old iat",
            with(json!({"iat": now - 24 * 3600, "nbf": now - 24 * 3600, "exp": now + 60})),
            "token lifetime exceeds 86400 s",
        ),
        (
            "no iat",
            with(json!({"iat": null})),
            "token lacks required claim `iat`",
        ),
        ("expired", with(json!({"exp": now - 120})), "token expired"),
        (
            "not yet valid",
            with(json!({"nbf": now + 120})),
            "token not yet valid",
        ),
    ];
    fixture.assert_refused(cases).await;
}

#[tokio::test]
async fn oversized_and_malformed_input_is_unauthenticated() {
    let fixture = Fixture::start().await;
    let genuine = fixture.ed.sign(&claims("alice"));
    let cases = vec![
        (
            "8 KiB + 1",
            "a".repeat(8 * 1024 + 1),
            "token longer than 8192 bytes",
        ),
        (
            "padded to the limit",
            format!("{genuine}{}", "A".repeat(8 * 1024 - genuine.len() + 1)),
            "token longer than 8192 bytes",
        ),
        (
            "four parts",
            format!("{genuine}.AAAA"),
            "malformed token: not a JWS in compact form with a known alg",
        ),
        (
            "not base64",
            "!!!.???.***".into(),
            "malformed token: not a JWS in compact form with a known alg",
        ),
        (
            "padded base64",
            genuine.replacen('.', "=.", 1),
            "malformed token: not a JWS in compact form with a known alg",
        ),
        (
            "header not JSON",
            format!(
                "{}.{}",
                b64(b"alg"),
                genuine.split_once('.').expect("parts").1
            ),
            "malformed token: not a JWS in compact form with a known alg",
        ),
    ];
    fixture.assert_refused(cases).await;
}

#[tokio::test]
async fn authorization_metadata_that_is_not_text_is_unauthenticated() {
    let fixture = Fixture::start().await;
    let channel = fixture.server.channel().await;
    // obs-text bytes are a valid HTTP/2 header value but not visible ASCII; tonic's
    // metadata API will not send them, so the header goes in below it.
    let raw = tower::ServiceBuilder::new()
        .map_request(|mut request: http::Request<tonic::body::Body>| {
            let value = http::HeaderValue::from_bytes(b"Bearer \xff\xfe.\x80").expect("obs-text");
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, value);
            request
        })
        .service(channel);
    let mut grpc = tonic::client::Grpc::new(raw);
    grpc.ready().await.expect("ready");
    let status = grpc
        .unary(
            tonic::Request::new(()),
            http::uri::PathAndQuery::from_static(PING),
            tonic_prost::ProstCodec::<(), ()>::default(),
        )
        .await
        .expect_err("not text");
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::Unauthenticated,
            "malformed token: authorization is not visible ASCII"
        )
    );
    assert_eq!(fixture.server.calls(), 0);
    fixture.assert_refused(vec![]).await;
}
