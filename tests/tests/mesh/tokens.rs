//! What the interceptor refuses: every hostile or broken token is UNAUTHENTICATED
//! with a precise message, the handler is never reached (nothing is written), and
//! the server keeps serving.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokenmesh_proto::{
    orders::v1::{
        ListOrdersRequest, PlaceOrderRequest, orders_service_client::OrdersServiceClient,
    },
    products::v1::ListProductsRequest,
};
use tokenmesh_tests::{Bearer, Mesh, Minter, b64, b64_json, bearer_value};
use tonic::{Code, Request};

fn place(request_id: &str) -> PlaceOrderRequest {
    PlaceOrderRequest {
        product_id: "P-100".into(),
        quantity: 1,
        request_id: request_id.into(),
        entitlement_token: String::new(),
    }
}

/// Sends `bearer` to Orders (a write) and Products (a read): both must refuse it
/// as UNAUTHENTICATED with `message`.
async fn assert_refused(mesh: &Mesh, case: &str, bearer: Bearer, message: &str) {
    let mut orders = mesh.orders(bearer.clone()).await;
    let status = orders.place_order(place(case)).await.expect_err(case);
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, message),
        "{case} at Orders"
    );
    let mut products = mesh.products(bearer).await;
    let status = products
        .list_products(ListProductsRequest::default())
        .await
        .expect_err(case);
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, message),
        "{case} at Products"
    );
}

/// No refused request reached PlaceOrder, and the servers still serve.
async fn assert_nothing_written_and_still_serving(mesh: &Mesh) {
    let mut orders = mesh.orders_as("alice").await;
    let listed = orders
        .list_orders(ListOrdersRequest::default())
        .await
        .expect("still serving");
    assert!(
        listed.into_inner().orders.is_empty(),
        "a refused request wrote an order"
    );
    let mut products = mesh.products_as("alice").await;
    products
        .list_products(ListProductsRequest::default())
        .await
        .expect("still serving");
}

#[tokio::test]
async fn missing_and_malformed_authorization_is_unauthenticated() {
    let mesh = Mesh::start().await;
    let token = mesh.login("alice").await;
    let cases = [
        (
            "none",
            Bearer::none(),
            "missing bearer token: send `authorization: Bearer <access_token>`",
        ),
        (
            "empty bearer",
            Bearer::raw("Bearer"),
            "missing bearer token: send `authorization: Bearer <access_token>`",
        ),
        (
            "basic",
            Bearer::raw("Basic YWxpY2U6YWxpY2UtZGVtbw=="),
            "authorization is not a bearer token",
        ),
        (
            "token without scheme",
            Bearer::raw(&token),
            "authorization is not a bearer token",
        ),
        (
            "garbage",
            Bearer::token("abc.def.ghi"),
            "malformed token: not a JWS in compact form with a known alg",
        ),
        (
            "two parts",
            Bearer::token("abc.def"),
            "malformed token: not a JWS in compact form with a known alg",
        ),
        (
            "oversized",
            Bearer::token(&"a".repeat(9000)),
            "token longer than 8192 bytes",
        ),
    ];
    for (case, bearer, message) in cases {
        assert_refused(&mesh, case, bearer, message).await;
    }
    assert_nothing_written_and_still_serving(&mesh).await;
    mesh.shutdown().await;
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let mesh = Mesh::start().await;
    let token = mesh.login("alice").await;
    let mut products = mesh.products(Bearer::raw(&format!("bEaReR {token}"))).await;
    products
        .list_products(ListProductsRequest::default())
        .await
        .expect("scheme matched case-insensitively");
    mesh.shutdown().await;
}

#[tokio::test]
async fn two_authorization_values_are_refused() {
    let mesh = Mesh::start().await;
    let token = mesh.login("alice").await;
    let mut orders = OrdersServiceClient::new(Mesh::channel(mesh.orders_addr()).await);
    let mut request = Request::new(place("two-values"));
    request
        .metadata_mut()
        .append("authorization", bearer_value(&token));
    request
        .metadata_mut()
        .append("authorization", bearer_value(&token));
    let status = orders.place_order(request).await.expect_err("ambiguous");
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "more than one authorization value")
    );
    assert_nothing_written_and_still_serving(&mesh).await;
    mesh.shutdown().await;
}

#[tokio::test]
async fn tokens_from_other_keys_are_unauthenticated() {
    let mesh = Mesh::start().await;
    let auth = mesh.auth_minter();
    let foreign = Minter::foreign();
    let claims = Minter::access_claims("alice");
    let cases = [
        (
            "foreign key, own kid",
            foreign.access_token(&claims),
            "token signed by an unknown key",
        ),
        (
            "foreign key, auth's kid",
            foreign.mint("at+jwt", Some(auth.kid()), &claims),
            "invalid token signature",
        ),
        (
            "kid injection",
            foreign.mint("at+jwt", Some("../../../dev/null' OR '1'='1"), &claims),
            "token signed by an unknown key",
        ),
    ];
    for (case, token, message) in cases {
        assert_refused(&mesh, case, Bearer::token(&token), message).await;
    }

    // A header carrying the attacker's own key (`jwk`) or a key URL (`jku`, `x5u`)
    // changes nothing: keys never come from the token.
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&[7u8; 32]), "kid": foreign.kid()});
    for (case, extra) in [
        ("jwk header", json!({"jwk": jwk})),
        ("jku header", json!({"jku": "http://127.0.0.1:1/jwks"})),
        ("x5u header", json!({"x5u": "http://127.0.0.1:1/cert"})),
    ] {
        let mut header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": foreign.kid()});
        header
            .as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        let token = foreign.sign_raw(&header, &claims);
        assert_refused(
            &mesh,
            case,
            Bearer::token(&token),
            "token signed by an unknown key",
        )
        .await;
    }
    assert_nothing_written_and_still_serving(&mesh).await;
    mesh.shutdown().await;
}

#[tokio::test]
async fn algorithm_confusion_is_unauthenticated() {
    let mesh = Mesh::start().await;
    let auth = mesh.auth_minter();
    let claims = Minter::access_claims("alice");
    let header_none = json!({"alg": "none", "typ": "at+jwt", "kid": auth.kid()});
    let unsigned = format!("{}.{}.", b64_json(&header_none), b64_json(&claims));
    let header_none_caps = json!({"alg": "None", "typ": "at+jwt", "kid": auth.kid()});
    let unsigned_caps = format!("{}.{}.", b64_json(&header_none_caps), b64_json(&claims));

    // HS256 keyed with Auth's public key: the classic RS/HS confusion.
    let jwks = mesh.jwks().await;
    let public_x = jwks.keys[0].x.clone();
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.typ = Some("at+jwt".into());
    hs_header.kid = Some(auth.kid().into());
    let hmac_with_public_key = jsonwebtoken::encode(
        &hs_header,
        &claims,
        &EncodingKey::from_secret(public_x.as_bytes()),
    )
    .expect("hs256");

    let cases = [
        (
            "alg none",
            unsigned,
            "malformed token: not a JWS in compact form with a known alg",
        ),
        (
            "alg None",
            unsigned_caps,
            "malformed token: not a JWS in compact form with a known alg",
        ),
        (
            "hs256 with public key",
            hmac_with_public_key,
            "token algorithm does not match its key",
        ),
    ];
    for (case, token, message) in cases {
        assert_refused(&mesh, case, Bearer::token(&token), message).await;
    }

    // A genuine EdDSA signature with a zeroed signature or a stripped one.
    let genuine = auth.access_token(&claims);
    let (signing_input, _) = genuine.rsplit_once('.').expect("three parts");
    let zeroed = format!("{signing_input}.{}", b64(&[0u8; 64]));
    let stripped = format!("{signing_input}.");
    assert_refused(
        &mesh,
        "zero signature",
        Bearer::token(&zeroed),
        "invalid token signature",
    )
    .await;
    assert_refused(
        &mesh,
        "no signature",
        Bearer::token(&stripped),
        "invalid token signature",
    )
    .await;
    assert_nothing_written_and_still_serving(&mesh).await;
    mesh.shutdown().await;
}

#[tokio::test]
async fn claims_are_checked_with_bounded_leeway() {
    let mesh = Mesh::start().await;
    let auth = mesh.auth_minter();
    let now = tokenmesh_server::now_unix();
    let with = |changes: Value| {
        let mut claims = Minter::access_claims("alice");
        for (name, value) in changes.as_object().expect("object") {
            if value.is_null() {
                claims.as_object_mut().expect("object").remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        auth.access_token(&claims)
    };
    let cases = [
        ("expired", with(json!({"exp": now - 120})), "token expired"),
        (
            "not yet valid",
            with(json!({"nbf": now + 600})),
            "token not yet valid",
        ),
        (
            "no exp",
            with(json!({"exp": null})),
            "token lacks required claim `exp`",
        ),
        (
            "no sub",
            with(json!({"sub": null})),
            "token lacks required claim `sub`",
        ),
        (
            "empty sub",
            with(json!({"sub": ""})),
            "token lacks required claim `sub`",
        ),
        (
            "no aud",
            with(json!({"aud": null})),
            "token lacks required claim `aud`",
        ),
        (
            "no iss",
            with(json!({"iss": null})),
            "token lacks required claim `iss`",
        ),
        (
            "other audience",
            with(json!({"aud": ["auth"]})),
            "token audience does not include this service",
        ),
        (
            "other issuer",
            with(json!({"iss": "https://evil.example"})),
            "token issuer is not trusted",
        ),
        (
            "exp as string",
            with(json!({"exp": (now + 60).to_string()})),
            "malformed token: claims are not the expected JSON",
        ),
        (
            "unknown version",
            with(json!({"ver": 2})),
            "unsupported claims version 2; this service reads 1",
        ),
        (
            "no version",
            with(json!({"ver": null})),
            "unsupported claims version 0; this service reads 1",
        ),
    ];
    for (case, token, message) in cases {
        assert_refused(&mesh, case, Bearer::token(&token), message).await;
    }

    // Within the 30 s leeway a just-expired token still passes.
    let just_expired = with(json!({"exp": now - 5}));
    let mut products = mesh.products(Bearer::token(&just_expired)).await;
    products
        .list_products(ListProductsRequest::default())
        .await
        .expect("within leeway");
    assert_nothing_written_and_still_serving(&mesh).await;
    mesh.shutdown().await;
}

#[tokio::test]
async fn headers_are_checked_typ_and_crit() {
    let mesh = Mesh::start().await;
    let auth = mesh.auth_minter();
    let claims = Minter::access_claims("alice");
    let signed = |header: Value| auth.sign_raw(&header, &claims);
    let kid = auth.kid();
    let cases = [
        (
            "typ JWT",
            signed(json!({"alg": "EdDSA", "typ": "JWT", "kid": kid})),
            "wrong token type: expected at+jwt",
        ),
        (
            "no typ",
            signed(json!({"alg": "EdDSA", "kid": kid})),
            "wrong token type: expected at+jwt",
        ),
        (
            "grant typ",
            signed(json!({"alg": "EdDSA", "typ": "entitlement+jwt", "kid": kid})),
            "wrong token type: expected at+jwt",
        ),
        (
            "no kid",
            signed(json!({"alg": "EdDSA", "typ": "at+jwt"})),
            "malformed token: header lacks kid",
        ),
        (
            "crit",
            signed(
                json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid, "crit": ["x-tm"], "x-tm": "v"}),
            ),
            "unsupported critical header parameter",
        ),
        // b64=false (RFC 7797) would change what the signature covers: never accepted.
        (
            "b64 false",
            signed(
                json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid, "crit": ["b64"], "b64": false}),
            ),
            "malformed token: not a JWS in compact form with a known alg",
        ),
    ];
    for (case, token, message) in cases {
        assert_refused(&mesh, case, Bearer::token(&token), message).await;
    }
    // RFC 7515 allows the media-type spelling of typ.
    let media_type = signed(json!({"alg": "EdDSA", "typ": "application/AT+JWT", "kid": kid}));
    let mut products = mesh.products(Bearer::token(&media_type)).await;
    products
        .list_products(ListProductsRequest::default())
        .await
        .expect("application/at+jwt accepted");

    // A grant from Products is not an access token, however genuine.
    let grant = mesh
        .products_minter()
        .mint("entitlement+jwt", None, &claims);
    assert_refused(
        &mesh,
        "grant as access token",
        Bearer::token(&grant),
        "wrong token type: expected at+jwt",
    )
    .await;
    assert_nothing_written_and_still_serving(&mesh).await;
    mesh.shutdown().await;
}
