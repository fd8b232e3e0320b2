//! Signing keys: generated once into the data dir or given by flag, named by
//! their thumbprint, published over gRPC and HTTP.

use serde_json::Value;
use std::time::Duration;
use tokenmesh_proto::{
    auth::v1::LoginRequest,
    orders::v1::{ListOrdersRequest, PlaceOrderRequest},
    products::v1::ListProductsRequest,
};

use tokenmesh_server::SigningAlgorithm;
use tokenmesh_tests::{
    Bearer, Mesh, Minter, claims_of, eventually, header_of, http_get, output_within_deadline,
};

fn header_kid(token: &str) -> String {
    header_of(token)["kid"].as_str().expect("kid").to_owned()
}

#[tokio::test]
async fn auth_signs_with_the_key_given_by_flag() {
    let (_, pem) = tokenmesh_server::SigningKey::generate().expect("key");
    let expected_kid = Minter::from_pem(&pem).kid().to_owned();
    let mesh = Mesh::builder().auth_signing_key(&pem).start().await;

    let jwks = mesh.jwks().await;
    assert_eq!(
        jwks.keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
        [expected_kid.as_str()]
    );
    let token = mesh.login("alice").await;
    assert_eq!(header_kid(&token), expected_kid);
    // Products fetched that key over GetJwks and accepts the token.
    let mut products = mesh.products(Bearer::token(&token)).await;
    products
        .list_products(ListProductsRequest::default())
        .await
        .expect("verified with the given key");
    mesh.shutdown().await;
}

#[tokio::test]
async fn keys_and_data_survive_a_restart_and_demo_seeding_is_idempotent() {
    let mesh = Mesh::start().await;
    let first_kid = header_kid(&mesh.login("alice").await);
    let mut orders = mesh.orders_as("alice").await;
    let placed = orders
        .place_order(PlaceOrderRequest {
            product_id: "P-100".into(),
            quantity: 1,
            request_id: "before-restart".into(),
            entitlement_token: String::new(),
        })
        .await
        .expect("order")
        .into_inner();

    let mesh = mesh.restart().await;
    assert_eq!(header_kid(&mesh.login("alice").await), first_kid);
    let listed = mesh.catalogue_of("alice").await;
    assert_eq!(listed.products.len(), 3, "seeding twice adds nothing");
    let mut orders = mesh.orders_as("alice").await;
    let mine = orders
        .list_orders(ListOrdersRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(mine.orders, [placed]);
    mesh.shutdown().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let mesh = Mesh::start().await;
    let mut auth = mesh.auth().await;
    let login = |username: &str, password: &str| LoginRequest {
        username: username.into(),
        password: password.into(),
    };
    let wrong = auth
        .login(login("alice", "bob-demo"))
        .await
        .expect_err("wrong password");
    let unknown = auth
        .login(login("mallory", "x"))
        .await
        .expect_err("unknown user");
    for status in [&wrong, &unknown] {
        assert_eq!(
            (status.code(), status.message()),
            (tonic::Code::Unauthenticated, "invalid username or password")
        );
    }
    let empty = auth.login(login("", "x")).await.expect_err("no username");
    assert_eq!(
        (empty.code(), empty.message()),
        (tonic::Code::InvalidArgument, "username: required")
    );
    let empty = auth
        .login(login("alice", ""))
        .await
        .expect_err("no password");
    assert_eq!(
        (empty.code(), empty.message()),
        (tonic::Code::InvalidArgument, "password: required")
    );

    let tokens = auth
        .login(login("admin", "admin-demo"))
        .await
        .expect("admin")
        .into_inner();
    assert_eq!(
        (
            tokens.token_type.as_str(),
            tokens.expires_in,
            tokens.scope.as_str()
        ),
        ("Bearer", 300, "admin")
    );
    assert!(tokens.refresh_token.len() >= 43, "256-bit refresh token");
    let claims = claims_of(&tokens.access_token);
    assert_eq!(claims["sub"], "admin");
    assert_eq!(
        claims["aud"],
        serde_json::json!(["auth", "products", "orders"])
    );
    assert_eq!(claims["ver"], 1);
    assert_eq!(
        claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
        300
    );
    for claim in ["iss", "nbf", "jti", "scope", "client_id"] {
        assert!(!claims[claim].is_null(), "{claim} present");
    }
    mesh.shutdown().await;
}

#[tokio::test]
async fn jwks_over_http_matches_get_jwks_and_may_be_cached() {
    let mesh = Mesh::start().await;
    let (head, body) = http_get(mesh.http_addr(), "/.well-known/jwks.json").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("cache-control: public, max-age=60"),
        "{head}"
    );
    let jwks: Value = serde_json::from_str(&body).expect("json body");

    let grpc = mesh.jwks().await;
    let key = &grpc.keys[0];
    assert_eq!(
        jwks,
        serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": key.x, "kid": key.kid, "alg": "EdDSA", "use": "sig"}]})
    );

    let (head, body) = http_get(mesh.http_addr(), "/.well-known/openid-configuration").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let discovery: Value = serde_json::from_str(&body).expect("json body");
    assert_eq!(discovery["issuer"], tokenmesh_tests::AUTH_ISSUER);
    assert_eq!(
        discovery["jwks_uri"],
        format!("http://{}/.well-known/jwks.json", mesh.http_addr())
    );
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        serde_json::json!(["EdDSA"])
    );
    mesh.shutdown().await;
}

/// PyJWT with `cryptography`, when installed (CI installs it).
async fn pyjwt_available() -> bool {
    let mut command = tokio::process::Command::new("python3");
    command.args(["-c", "import jwt, cryptography"]);
    let found = output_within_deadline("python3 -c 'import jwt, cryptography'", command)
        .await
        .is_ok_and(|output| output.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "PyJWT is required in CI (.ci/run installs it)"
        );
        eprintln!("SKIPPED: PyJWT not installed; `pip install pyjwt cryptography` to run it");
    }
    found
}

#[tokio::test]
async fn access_tokens_of_every_algorithm_verify_with_pyjwt_and_at_every_service() {
    if !pyjwt_available().await {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/jose/verify_with_pyjwt.py");
    for algorithm in [
        SigningAlgorithm::EdDSA,
        SigningAlgorithm::ES256,
        SigningAlgorithm::RS256,
    ] {
        let mesh = Mesh::builder().signing_alg(algorithm).start().await;
        let token = mesh.login("alice").await;
        assert_eq!(header_of(&token)["alg"], algorithm.as_str());
        let jwks_url = format!("http://{}/.well-known/jwks.json", mesh.http_addr());
        let run = |token: String| {
            let mut command = tokio::process::Command::new("python3");
            command.args([
                script,
                &jwks_url,
                &token,
                tokenmesh_tests::AUTH_ISSUER,
                "orders",
            ]);
            output_within_deadline("tests/jose/verify_with_pyjwt.py", command)
        };
        let verified = run(token.clone()).await.expect("python3 runs");
        assert!(verified.status.success(), "{algorithm}: {verified:?}");
        assert_eq!(
            String::from_utf8_lossy(&verified.stdout).trim(),
            format!("{algorithm} alice")
        );

        // A flipped payload byte must fail PyJWT's signature check as well.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut claims = claims_of(&token);
        claims["sub"] = "admin".into();
        parts[1] = tokenmesh_tests::b64_json(&claims);
        let tampered = run(parts.join(".")).await.expect("python3 runs");
        assert!(
            !tampered.status.success(),
            "{algorithm}: PyJWT accepted a tampered token"
        );
        assert!(
            String::from_utf8_lossy(&tampered.stderr).contains("InvalidSignatureError"),
            "{tampered:?}"
        );

        let (products, orders) = mesh.accepted_by(&token).await;
        products.expect("Products verifies it");
        orders.expect("Orders verifies it");
        mesh.shutdown().await;
    }
}

#[tokio::test]
async fn keys_rotate_from_the_command_line_reaches_the_running_auth() {
    let mesh = Mesh::start().await;
    let before = header_kid(&mesh.login("alice").await);
    // What `tokenmesh keys rotate --data-dir …` runs, against the live data dir.
    let offline = mesh.auth_offline().await;
    let rotated = offline.rotate_signing_key().await.expect("rotates");
    assert_eq!(rotated.retired_kid, before);
    let (_, took) = eventually(Duration::from_secs(60), || async {
        let kid = header_kid(&mesh.login("alice").await);
        (kid == rotated.kid).then_some(())
    })
    .await;
    eprintln!("MEASURED: the running Auth signed with the rotated key after {took:?}");
    let token = mesh.login("bob").await;
    let mut products = mesh.products(Bearer::token(&token)).await;
    products
        .list_products(ListProductsRequest::default())
        .await
        .expect("Products fetched the new key");
    mesh.shutdown().await;
}

/// Deployments from before grant keys lived in Products' database keep their
/// key: the file is imported once, encrypted, and removed.
#[tokio::test]
async fn a_products_key_file_of_an_earlier_version_is_imported_once_and_removed() {
    let mut mesh = Mesh::start().await;
    let first_kid = header_kid(&mesh.grant_of("alice").await);
    mesh.stop().await;
    let (key, pem) = tokenmesh_server::SigningKey::generate().expect("key");
    let path = mesh.data_dir().join("products-signing-key.pem");
    tokenmesh_server::start::write_private_file(&path, pem.as_bytes()).expect("legacy file");
    mesh.try_start_again().await.expect("starts");
    assert!(!path.exists(), "the file is removed once imported");
    assert_eq!(header_kid(&mesh.grant_of("alice").await), key.kid());
    let mut published: Vec<String> = mesh
        .products(Bearer::none())
        .await
        .get_jwks(tokenmesh_proto::auth::v1::GetJwksRequest {})
        .await
        .expect("Products' keys")
        .into_inner()
        .keys
        .into_iter()
        .map(|key| key.kid)
        .collect();
    published.sort();
    let mut expected = vec![first_kid, key.kid().to_owned()];
    expected.sort();
    assert_eq!(published, expected, "the key it replaced stays published");
    mesh.shutdown().await;
}
