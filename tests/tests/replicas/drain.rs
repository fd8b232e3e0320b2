//! How a replica stops on SIGTERM: health NOT_SERVING first, then no new calls,
//! in-flight calls finish, open streams end, exit 0.

use std::net::{IpAddr, Ipv4Addr};

use tokenmesh_proto::auth::v1::{LoginRequest, TokenResponse};
use tokenmesh_tests::{CHILD_DEADLINE, eventually_or, replica_process::ReplicaProcess};
use tonic::{Code, Request, Status, transport::Channel};
use tonic_health::{
    ServingStatus,
    pb::{HealthCheckRequest, HealthCheckResponse, health_client::HealthClient},
};

/// A Login whose request message is held back until `released`: the call is
/// open at the server (it holds a concurrency permit) until then.
/// The watch's next message, failing at the deadline instead of hanging the
/// suite (a server that never says NOT_SERVING, or never ends the stream).
async fn next(
    watch: &mut tonic::Streaming<HealthCheckResponse>,
) -> Result<Option<HealthCheckResponse>, Status> {
    tokio::time::timeout(CHILD_DEADLINE, watch.message())
        .await
        .expect("the watch answers before the deadline")
}

/// The limits' refusal of a call over `--max-concurrent-requests`.
fn overloaded() -> (Code, String) {
    (
        Code::Unavailable,
        "server overloaded; retry with backoff".to_owned(),
    )
}

async fn held_login(
    channel: Channel,
    released: tokio::sync::oneshot::Receiver<()>,
) -> Result<TokenResponse, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|error| Status::unavailable(error.to_string()))?;
    let message = futures::stream::once(async move {
        let _ = released.await;
        LoginRequest {
            username: "alice".into(),
            password: "alice-demo".into(),
        }
    });
    let path = http::uri::PathAndQuery::from_static("/tokenmesh.auth.v1.AuthService/Login");
    grpc.client_streaming(
        Request::new(message),
        path,
        tonic_prost::ProstCodec::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn sigterm_turns_health_not_serving_then_drains_in_flight_calls_and_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data").display().to_string();
    let args = [
        "auth",
        "--data-dir",
        &data_dir,
        "--demo",
        // One permit: a second call is shed while the held Login is in flight.
        "--max-concurrent-requests",
        "1",
    ];
    let args = args.into_iter().map(String::from).collect();
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut auth = ReplicaProcess::start("auth", dir.path(), args, Vec::new(), localhost).await;
    auth.wait_serving().await;

    let channel = auth.channel();
    let mut health = HealthClient::new(channel.clone());
    let whole_server = || HealthCheckRequest { service: "".into() };
    let mut watch = health
        .watch(whole_server())
        .await
        .expect("watch")
        .into_inner();
    let first = watch.message().await.expect("watch status").expect("one");
    assert_eq!(first.status, ServingStatus::Serving as i32);

    // A Login held open at the server. It is in flight once it holds the one
    // permit: then a check is shed. A check holding the permit when the login
    // arrives sheds the login instead: then it is sent again.
    let start = tokio::time::Instant::now();
    let (release, login) = loop {
        let (release, released) = tokio::sync::oneshot::channel();
        let login = tokio::spawn(held_login(channel.clone(), released));
        // In flight once a health check is shed; not, if the login ended first.
        let context = || ": the login never got in flight".to_owned();
        let (in_flight, _) = eventually_or(CHILD_DEADLINE, context, || {
            let mut health = health.clone();
            let finished = login.is_finished();
            async move {
                if finished {
                    return Some(false);
                }
                match health.check(whole_server()).await {
                    Err(status) if (status.code(), status.message().to_owned()) == overloaded() => {
                        Some(true)
                    }
                    _ => None,
                }
            }
        })
        .await;
        if in_flight {
            break (release, login);
        }
        let shed = login
            .await
            .expect("login task")
            .expect_err("no message yet");
        let shed = (shed.code(), shed.message().to_owned());
        assert_eq!(
            shed,
            overloaded(),
            "only a shed login ends before its message"
        );
        assert!(
            start.elapsed() < CHILD_DEADLINE,
            "the login never got in flight"
        );
    };

    auth.signal_terminate();
    // Health turns first, on the connection still open…
    let turned = next(&mut watch).await.expect("watch status").expect("one");
    assert_eq!(turned.status, ServingStatus::NotServing as i32);
    // …then the stream ends, so that it cannot hold the drain open.
    let ended = next(&mut watch).await.expect_err("the stream ends");
    assert_eq!(
        (ended.code(), ended.message()),
        (Code::Unavailable, "the server is shutting down")
    );
    // The call in flight when the signal came is answered.
    release.send(()).expect("login still waiting");
    let answer = login
        .await
        .expect("login task")
        .expect("in-flight login answered");
    assert_eq!(answer.token_type, "Bearer");

    let status = auth.wait().await;
    let log = auth.log();
    assert!(status.success(), "exit status {status}:\n{log}");
    let said = |what: &str| {
        log.find(what)
            .unwrap_or_else(|| panic!("{what:?} not logged:\n{log}"))
    };
    assert!(said("shutting down") < said("stopping: health NOT_SERVING"));
    assert!(said("stopping: health NOT_SERVING") < said("stopped"));
}
