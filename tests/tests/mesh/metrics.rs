//! Every service's auth outcomes are exposed as Prometheus text at `/metrics`
//! on the HTTP listener (`--http-addr`), beside Auth's JWKS. Each mesh has its
//! own registry, so the counts are exact.

use tokenmesh_proto::products::v1::ListProductsRequest;
use tokenmesh_tests::{Bearer, Mesh, SourceKind};

const PRODUCTS: &str = "tokenmesh.products.v1.ProductsService";

fn series(service: &str, outcome: &str, reason: &str) -> String {
    format!(
        "tokenmesh_auth_requests_total{{service=\"{service}\",outcome=\"{outcome}\",reason=\"{reason}\"}}"
    )
}

fn count(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test]
async fn metrics_count_exactly_this_meshs_outcomes_by_service_and_reason() {
    // Orders asks Products only per order (rpc), so nothing else calls Products
    // with a token: every count below is this test's own.
    let mesh = Mesh::builder()
        .entitlement_sources(&[SourceKind::Rpc])
        .start()
        .await;
    let before = mesh.metrics();
    assert_eq!(
        count(&before, &series(PRODUCTS, "allowed", "VERIFIED")),
        Some(0)
    );
    let mut products = mesh.products_as("alice").await;
    for _ in 0..3 {
        products
            .list_products(ListProductsRequest::default())
            .await
            .expect("allowed");
    }
    for _ in 0..2 {
        mesh.products(Bearer::none())
            .await
            .list_products(ListProductsRequest::default())
            .await
            .expect_err("refused");
    }

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
        text.starts_with("# HELP tokenmesh_auth_requests_total"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE tokenmesh_auth_requests_total counter"),
        "{text}"
    );
    // The first call verified the signature, the next two came from the cache.
    assert_eq!(
        count(&text, &series(PRODUCTS, "allowed", "VERIFIED")),
        Some(1),
        "{text}"
    );
    assert_eq!(
        count(&text, &series(PRODUCTS, "allowed", "CACHED")),
        Some(2),
        "{text}"
    );
    assert_eq!(
        count(&text, &series(PRODUCTS, "refused", "TOKEN_MISSING")),
        Some(2),
        "{text}"
    );
    // A refusal reason is rendered once it has been counted.
    assert_eq!(
        count(&text, &series(PRODUCTS, "refused", "TOKEN_EXPIRED")),
        None,
        "{text}"
    );
    mesh.shutdown().await;
}
