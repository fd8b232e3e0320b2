//! `deploy/grafana/tokenmesh.json` charts only what the services export: every
//! metric its queries name is on a live `/metrics` after some traffic, and the
//! latency histogram counts calls by service, method and code.

use serde_json::Value;
use tokenmesh_proto::products::v1::ListProductsRequest;
use tokenmesh_tests::{Bearer, Mesh, order};
use tonic::Code;

/// Every `expr` in the dashboard, wherever it is nested.
fn exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => exprs(value, out),
                }
            }
        }
        Value::Array(values) => values.iter().for_each(|value| exprs(value, out)),
        _ => {}
    }
}

/// The metric names in a PromQL expression: this project's series all start
/// `tokenmesh_`, and nothing else in a query (functions, labels) does.
fn metric_names(expr: &str) -> Vec<String> {
    expr.match_indices("tokenmesh_")
        .map(|(start, _)| {
            expr[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// The sample names of a Prometheus text exposition.
fn exported(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect()
}

fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exported_and_latency_is_by_method_and_code() {
    let mesh = Mesh::start().await;
    let mut products = mesh.products_as("alice").await;
    for _ in 0..2 {
        products
            .list_products(ListProductsRequest::default())
            .await
            .expect("listed");
    }
    let grant = mesh.grant_of("alice").await;
    let mut orders = mesh.orders_as("alice").await;
    orders
        .place_order(order("P-100", 1, "dashboard-1", &grant))
        .await
        .expect("placed");
    let refused = mesh
        .orders(Bearer::none())
        .await
        .place_order(order("P-100", 1, "dashboard-2", ""))
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), Code::Unauthenticated);

    let metrics = reqwest::get(format!("http://{}/metrics", mesh.http_addr()))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/tokenmesh.json"
    );
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("JSON");
    let mut queries = Vec::new();
    exprs(&dashboard, &mut queries);
    assert!(queries.len() >= 10, "the dashboard's queries: {queries:?}");
    let names = exported(&metrics);
    for query in &queries {
        let referenced = metric_names(query);
        assert!(!referenced.is_empty(), "a query naming no series: {query}");
        for name in referenced {
            assert!(
                names.contains(&name.as_str()),
                "{name} (in `{query}`) is not exported:\n{metrics}"
            );
        }
    }

    let family = "tokenmesh_grpc_server_handling_seconds";
    let orders_service = "tokenmesh.orders.v1.OrdersService";
    let labels = |code: &str| {
        format!(
            "service=\"{orders_service}\",method=\"/{orders_service}/PlaceOrder\",code=\"{code}\""
        )
    };
    assert_eq!(
        sample(&metrics, &format!("{family}_count{{{}}}", labels("OK"))),
        Some(1)
    );
    assert_eq!(
        sample(
            &metrics,
            &format!(
                "{family}_bucket{{{},le=\"+Inf\"}}",
                labels("UNAUTHENTICATED")
            )
        ),
        Some(1),
        "{metrics}"
    );
    mesh.shutdown().await;
}
