//! Browsers call every service directly with gRPC-Web over HTTP/1.1: the
//! bearer token in `authorization` is checked as for gRPC, the status comes
//! back in the trailer frame (in the headers when refused before any message),
//! and CORS answers only the allowed origins.

use tokenmesh_proto::{
    auth::v1::{LoginRequest, TokenResponse},
    orders::v1::ListOrdersRequest,
    products::v1::{ListProductsRequest, ListProductsResponse},
};
use tokenmesh_tests::{Mesh, grpc_web};
use tonic::Code;
use tonic_types::StatusExt;

const CONSOLE: &str = "https://console.example.test";
const LIST_PRODUCTS: &str = "/tokenmesh.products.v1.ProductsService/ListProducts";

#[tokio::test]
async fn a_grpc_web_call_with_a_bearer_token_is_answered_and_one_without_is_unauthenticated() {
    let mesh = Mesh::builder().cors_allowed_origin(CONSOLE).start().await;
    let login = LoginRequest {
        username: "alice".into(),
        password: "alice-demo".into(),
    };
    let logged_in = grpc_web::call(
        mesh.auth_addr(),
        "/tokenmesh.auth.v1.AuthService/Login",
        None,
        Some(CONSOLE),
        &login,
    )
    .await;
    assert_eq!(logged_in.http_status, 200);
    assert_eq!(
        logged_in.trailer_status(),
        Some(Code::Ok as i32),
        "{logged_in:?}"
    );
    let token = logged_in.message::<TokenResponse>().access_token;

    let listed = grpc_web::call(
        mesh.products_addr(),
        LIST_PRODUCTS,
        Some(&token),
        Some(CONSOLE),
        &ListProductsRequest::default(),
    )
    .await;
    assert_eq!(listed.trailer_status(), Some(Code::Ok as i32), "{listed:?}");
    assert_eq!(
        listed.header("content-type"),
        Some("application/grpc-web+proto")
    );
    // The page may read the answer and the status headers.
    assert_eq!(listed.header("access-control-allow-origin"), Some(CONSOLE));
    assert_eq!(
        listed.header("access-control-expose-headers"),
        Some("grpc-status,grpc-message,grpc-status-details-bin")
    );
    let catalogue = listed.message::<ListProductsResponse>();
    let over_grpc = mesh.catalogue_of("alice").await;
    assert_eq!(catalogue.products, over_grpc.products);
    assert!(!catalogue.entitlement_token.is_empty(), "a grant");

    for (addr, path) in [
        (mesh.products_addr(), LIST_PRODUCTS),
        (
            mesh.orders_addr(),
            "/tokenmesh.orders.v1.OrdersService/ListOrders",
        ),
    ] {
        let refused = if path == LIST_PRODUCTS {
            grpc_web::call(
                addr,
                path,
                None,
                Some(CONSOLE),
                &ListProductsRequest::default(),
            )
            .await
        } else {
            grpc_web::call(
                addr,
                path,
                None,
                Some(CONSOLE),
                &ListOrdersRequest::default(),
            )
            .await
        };
        assert_eq!(refused.http_status, 200, "{path}");
        // Refused before any message: a trailers-only answer, its status in
        // the headers the page may read (exposed), typed reason included.
        let status = refused
            .trailers_only_status()
            .unwrap_or_else(|| panic!("{path}: not trailers-only: {refused:?}"));
        assert_eq!(status.code(), Code::Unauthenticated, "{path}");
        assert_eq!(
            status.message(),
            "missing bearer token: send `authorization: Bearer <access_token>`"
        );
        let reason = status
            .get_error_details()
            .error_info()
            .map(|i| i.reason.clone());
        assert_eq!(reason.as_deref(), Some("TOKEN_MISSING"), "{path}");
        assert_eq!(refused.header("access-control-allow-origin"), Some(CONSOLE));
    }
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_granted_and_from_another_is_not() {
    let mesh = Mesh::builder().cors_allowed_origin(CONSOLE).start().await;
    let asked = "authorization,content-type,x-grpc-web,x-user-agent,grpc-timeout";
    for addr in [mesh.auth_addr(), mesh.products_addr(), mesh.orders_addr()] {
        let allowed = grpc_web::preflight(addr, LIST_PRODUCTS, CONSOLE, asked).await;
        assert!(
            allowed.status().is_success(),
            "{addr}: {}",
            allowed.status()
        );
        let header = |name: &str| {
            allowed
                .headers()
                .get(name)
                .map(|v| v.to_str().expect("ASCII").to_owned())
        };
        assert_eq!(
            header("access-control-allow-origin").as_deref(),
            Some(CONSOLE)
        );
        assert_eq!(
            header("access-control-allow-methods").as_deref(),
            Some("POST")
        );
        assert_eq!(
            header("access-control-allow-headers").as_deref(),
            Some(asked)
        );
        assert_eq!(
            header("access-control-allow-credentials"),
            None,
            "no cookies"
        );

        let other =
            grpc_web::preflight(addr, LIST_PRODUCTS, "https://evil.example.test", asked).await;
        assert_eq!(
            other.headers().get("access-control-allow-origin"),
            None,
            "{addr}: another origin is not granted"
        );
    }
    // An actual call from another origin is answered, but without the header
    // that would let that page read it.
    let token = mesh.login("alice").await;
    let read = grpc_web::call(
        mesh.products_addr(),
        LIST_PRODUCTS,
        Some(&token),
        Some("https://evil.example.test"),
        &ListProductsRequest::default(),
    )
    .await;
    assert_eq!(read.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn the_demo_mesh_grants_its_own_console_and_no_other_origin_unless_told() {
    let mesh = Mesh::start().await;
    let console = format!("http://{}", mesh.http_addr());
    let orders = mesh.orders_addr();
    let preflight = |origin: String| async move {
        grpc_web::preflight(orders, LIST_PRODUCTS, &origin, "authorization").await
    };
    let granted = preflight(console.clone()).await;
    assert_eq!(
        granted
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().expect("ASCII")),
        Some(console.as_str())
    );
    let refused = preflight(CONSOLE.to_owned()).await;
    assert_eq!(refused.headers().get("access-control-allow-origin"), None);
}

#[tokio::test]
async fn an_http1_header_list_over_the_limit_is_refused_before_the_auth_layer() {
    let mesh = Mesh::start().await;
    let big = "a".repeat(17 * 1024);
    let refused = grpc_web::call(
        mesh.products_addr(),
        LIST_PRODUCTS,
        Some(&big),
        None,
        &ListProductsRequest::default(),
    )
    .await;
    assert_eq!(refused.http_status, 431);
    assert!(refused.trailers.is_empty() && refused.messages.is_empty());
    // The server still answers.
    let token = mesh.login("alice").await;
    let listed = grpc_web::call(
        mesh.products_addr(),
        LIST_PRODUCTS,
        Some(&token),
        None,
        &ListProductsRequest::default(),
    )
    .await;
    assert_eq!(listed.trailer_status(), Some(Code::Ok as i32));
}
