//! How a replica stops on SIGTERM: health NOT_SERVING first, then no new calls,
//! in-flight calls finish, open streams end, exit 0.

use std::net::{IpAddr, Ipv4Addr};

use tokenmesh_proto::auth::v1::{LoginRequest, TokenResponse};
use tokenmesh_tests::{CHILD_DEADLINE, replica::Replica};
use tonic::{Code, Request, Status, transport::Channel};
use tonic_health::{
    ServingStatus,
    pb::{HealthCheckRequest, health_client::HealthClient},
};

/// A Login whose request message is held back until `released`: the call is
/// open at the server (it holds a concurrency permit) until then.
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
        "--products-client-secret",
        "products-secret-for-the-drain-test",
        "--orders-client-secret",
        "orders-secret-for-the-drain-test",
    ];
    let args = args.into_iter().map(String::from).collect();
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut auth = Replica::start("auth", dir.path(), args, localhost).await;
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

    let (release, released) = tokio::sync::oneshot::channel();
    let login = tokio::spawn(held_login(channel.clone(), released));
    // In flight at the server: its one permit is taken, so a check is shed.
    let start = tokio::time::Instant::now();
    loop {
        let checked = health.check(whole_server()).await;
        match &checked {
            Err(status)
                if status.code() == Code::Unavailable
                    && status.message() == "server overloaded; retry with backoff" =>
            {
                break;
            }
            _ => {}
        }
        assert!(
            start.elapsed() < CHILD_DEADLINE && !login.is_finished(),
            "the held login is not in flight: last check {checked:?}, login finished: {}\n{}",
            login.is_finished(),
            auth.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }

    auth.signal_terminate();
    // Health turns first, on the connection still open…
    let next = watch.message().await.expect("watch status").expect("one");
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    // …then the stream ends, so that it cannot hold the drain open.
    let ended = watch.message().await.expect_err("the stream ends");
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
