//! A flood of bad tokens against a server logging at INFO: every refusal is
//! counted in `/metrics` by reason, and none is logged one line each (per-request
//! spans and refusals are DEBUG), so the flood does not become a flood of logs.

use std::net::{IpAddr, Ipv4Addr};

use tokenmesh_proto::auth::v1::{CreateUserRequest, auth_service_client::AuthServiceClient};
use tokenmesh_tests::{haproxy::free_port, replica_process::ReplicaProcess};
use tonic::{Code, Request};

/// How many refused calls the flood sends.
const FLOOD: u64 = 300;

/// The sum of the auth layer's refusal counters, over every service and reason.
fn refused(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("tokenmesh_auth_requests_total{"))
        .filter(|line| line.contains("outcome=\"refused\""))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn a_flood_of_refused_calls_is_counted_in_metrics_and_not_logged_one_line_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data").display().to_string();
    let http = free_port().to_string();
    let args = [
        "auth",
        "--data-dir",
        &data_dir,
        "--demo",
        "--http-addr",
        &http,
    ];
    let args = args.into_iter().map(String::from).collect();
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    // `ReplicaProcess` runs the binary with RUST_LOG=info, as a service runs.
    let mut auth = ReplicaProcess::start("auth", dir.path(), args, Vec::new(), localhost).await;
    auth.wait_serving().await;
    let metrics = || async {
        reqwest::get(format!("http://{http}/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body")
    };
    let refused_before = refused(&metrics().await);
    let log_before = auth.log().len();

    let mut client = AuthServiceClient::new(auth.channel());
    for i in 0..FLOOD {
        let mut request = Request::new(CreateUserRequest::default());
        // Three reasons in turn: no token, not a JWS, not a bearer token.
        let value = match i % 3 {
            0 => None,
            1 => Some(format!("Bearer not-a-jwt-{i}")),
            _ => Some(format!("Basic {i}")),
        };
        if let Some(value) = value {
            let value = value.parse().expect("ASCII metadata");
            request.metadata_mut().insert("authorization", value);
        }
        let status = client.create_user(request).await.expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }

    // Each answer left the server after its refusal was counted and (if at
    // all) logged, so both are complete now.
    let refused_after = refused(&metrics().await);
    assert_eq!(refused_after - refused_before, FLOOD);
    let log = auth.log();
    let flood = log.get(log_before..).unwrap_or_default();
    assert!(
        !flood.contains("refused") && !flood.contains("CreateUser"),
        "a refusal was logged at INFO:\n{flood}"
    );
    assert!(
        flood.lines().count() < 10,
        "{FLOOD} refused calls wrote {} lines:\n{flood}",
        flood.lines().count()
    );
    auth.terminate().await;
}
