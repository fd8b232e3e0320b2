//! Every service's auth outcomes are exposed as Prometheus text at `/metrics`
//! on the HTTP listener (`--http-addr`), beside Auth's JWKS.

use tokenmesh_proto::products::v1::ListProductsRequest;
use tokenmesh_tests::{Bearer, Mesh};

#[tokio::test]
async fn metrics_count_outcomes_by_service_and_reason() {
    let mesh = Mesh::start().await;
    let mut products = mesh.products_as("alice").await;
    products
        .list_products(ListProductsRequest::default())
        .await
        .expect("allowed");
    mesh.products(Bearer::none())
        .await
        .list_products(ListProductsRequest::default())
        .await
        .expect_err("refused");

    let response = reqwest::get(format!("http://{}/metrics", mesh.http_addr()))
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/plain; version=0.0.4")
    );
    let text = response.text().await.expect("body");
    assert!(
        text.contains("# TYPE tokenmesh_auth_requests_total counter"),
        "{text}"
    );
    // Other tests' meshes run in this process too: at least ours were counted.
    let count = |series: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    };
    let service = "tokenmesh.products.v1.ProductsService";
    assert!(
        count(&format!(
            "tokenmesh_auth_requests_total{{service=\"{service}\",outcome=\"refused\",reason=\"TOKEN_MISSING\"}}"
        )) >= 1,
        "{text}"
    );
    let allowed = count(&format!(
        "tokenmesh_auth_requests_total{{service=\"{service}\",outcome=\"allowed\",reason=\"VERIFIED\"}}"
    )) + count(&format!(
        "tokenmesh_auth_requests_total{{service=\"{service}\",outcome=\"allowed\",reason=\"CACHED\"}}"
    ));
    assert!(allowed >= 1, "{text}");
    assert!(
        text.contains(
            "service=\"tokenmesh.auth.v1.AuthService\",outcome=\"allowed\",reason=\"PUBLIC\""
        ),
        "{text}"
    );
    mesh.shutdown().await;
}
