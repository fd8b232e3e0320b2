//! Auth is not a single point of failure: with Auth stopped, Products and Orders
//! keep accepting valid tokens — seen before or not — with the keys they hold,
//! and keep refusing forged ones.

use tokenmesh_proto::{orders::v1::ListOrdersRequest, products::v1::ListProductsRequest};
use tokenmesh_tests::{Bearer, Mesh, Minter, calls::assert_refused_by_layer};
use tonic::Code;

#[tokio::test]
async fn with_auth_down_valid_tokens_pass_and_forged_ones_do_not() {
    let mut mesh = Mesh::start().await;
    let seen = mesh.login("alice").await;
    // Products and Orders fetch Auth's keys and verify (and cache) one token.
    mesh.products(Bearer::token(&seen))
        .await
        .list_products(ListProductsRequest::default())
        .await
        .expect("verified");
    mesh.orders(Bearer::token(&seen))
        .await
        .list_orders(ListOrdersRequest::default())
        .await
        .expect("verified");

    mesh.stop_auth().await;
    // Signed with Auth's real key, never seen by either service: a cold check.
    let auth = mesh.auth_minter();
    let unseen = auth.access_token(&Minter::access_claims("bob"));
    let forged =
        Minter::foreign().mint("at+jwt", Some(auth.kid()), &Minter::access_claims("alice"));
    let unknown_kid = Minter::foreign().access_token(&Minter::access_claims("alice"));
    for token in [&seen, &unseen] {
        mesh.products(Bearer::token(token))
            .await
            .list_products(ListProductsRequest::default())
            .await
            .expect("Products still accepts valid tokens");
        mesh.orders(Bearer::token(token))
            .await
            .list_orders(ListOrdersRequest::default())
            .await
            .expect("Orders still accepts valid tokens");
    }
    for (token, message, reason) in [
        (&forged, "invalid token signature", "SIGNATURE_INVALID"),
        (
            &unknown_kid,
            "token signed by an unknown key",
            "KEY_UNKNOWN",
        ),
    ] {
        let listed = mesh
            .products(Bearer::token(token))
            .await
            .list_products(ListProductsRequest::default())
            .await;
        assert_refused_by_layer(listed, Code::Unauthenticated, reason, message);
        let status = mesh
            .orders(Bearer::token(token))
            .await
            .list_orders(ListOrdersRequest::default())
            .await
            .expect_err("forged");
        assert_eq!(
            (status.code(), status.message()),
            (Code::Unauthenticated, message)
        );
    }
    mesh.shutdown().await;
}
