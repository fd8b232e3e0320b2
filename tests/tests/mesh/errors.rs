//! Refusals are typed: every status from the auth layer carries a
//! `google.rpc.ErrorInfo` whose stable reason tells a client whether to refresh,
//! log in again or ask for access.

use serde_json::json;
use tokenmesh_proto::{orders::v1::ListOrdersRequest, products::v1::ListProductsRequest};
use tokenmesh_tests::{Bearer, Mesh, Minter, calls::assert_refused_by_layer};
use tonic::Code;
use tonic_types::StatusExt;

#[tokio::test]
async fn refusals_name_a_stable_reason_in_error_info() {
    let mesh = Mesh::start().await;
    let auth = mesh.auth_minter();
    let mut expired = Minter::access_claims("alice");
    expired["exp"] = json!(tokenmesh_server::now_unix() - 120);
    let cases = [
        (
            "no token",
            Bearer::none(),
            "missing bearer token: send `authorization: Bearer <access_token>`",
            "TOKEN_MISSING",
        ),
        (
            "expired",
            Bearer::token(&auth.access_token(&expired)),
            "token expired",
            "TOKEN_EXPIRED",
        ),
        (
            "foreign key",
            Bearer::token(&Minter::foreign().access_token(&Minter::access_claims("alice"))),
            "token signed by an unknown key",
            "KEY_UNKNOWN",
        ),
    ];
    for (case, bearer, message, reason) in cases {
        let listed = mesh
            .products(bearer.clone())
            .await
            .list_products(ListProductsRequest::default())
            .await;
        assert_refused_by_layer(listed, Code::Unauthenticated, reason, message);
        let status = mesh
            .orders(bearer)
            .await
            .list_orders(ListOrdersRequest::default())
            .await
            .expect_err(case);
        let info = status.get_details_error_info().expect(case);
        assert_eq!(
            (status.code(), status.message(), info.reason.as_str()),
            (Code::Unauthenticated, message, reason),
            "{case} at Orders"
        );
    }
    mesh.shutdown().await;
}
