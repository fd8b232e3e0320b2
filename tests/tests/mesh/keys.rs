//! Signing keys: generated once into the data dir or given by flag, named by
//! their thumbprint, published over gRPC and HTTP.

use serde_json::Value;
use tokenmesh_proto::{
    auth::v1::{GetJwksRequest, LoginRequest},
    orders::v1::{ListOrdersRequest, PlaceOrderRequest},
    products::v1::ListProductsRequest,
};
use tokenmesh_tests::{Bearer, Mesh, Minter, claims_of, header_of};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn header_kid(token: &str) -> String {
    header_of(token)["kid"].as_str().expect("kid").to_owned()
}

#[tokio::test]
async fn auth_signs_with_the_key_given_by_flag() {
    let (_, pem) = tokenmesh_server::SigningKey::generate().expect("key");
    let expected_kid = Minter::from_pem(&pem).kid().to_owned();
    let mesh = Mesh::builder().auth_signing_key(&pem).start().await;

    let jwks = mesh
        .auth()
        .await
        .get_jwks(GetJwksRequest {})
        .await
        .expect("jwks")
        .into_inner();
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
    let mut products = mesh.products_as("alice").await;
    let listed = products
        .list_products(ListProductsRequest::default())
        .await
        .expect("list")
        .into_inner();
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
    let mut stream = tokio::net::TcpStream::connect(mesh.http_addr())
        .await
        .expect("connect");
    stream
        .write_all(
            b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: tokenmesh\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("cache-control: public, max-age=300"),
        "{head}"
    );
    let jwks: Value = serde_json::from_str(body).expect("json body");

    let grpc = mesh
        .auth()
        .await
        .get_jwks(GetJwksRequest {})
        .await
        .expect("jwks")
        .into_inner();
    let key = &grpc.keys[0];
    assert_eq!(
        jwks,
        serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": key.x, "kid": key.kid, "alg": "EdDSA", "use": "sig"}]})
    );
    mesh.shutdown().await;
}
