//! The load generator's own acceptance: it counts errors by status code and never
//! as throughput, and its latency percentiles respect a synthetic server whose
//! delays are known. Real sockets on 127.0.0.1:0; no timed assertions on the
//! machine's speed — only the floors the server's own sleeps guarantee, never a
//! ceiling (a loaded machine may take any time above a sleep).

use std::{
    collections::BTreeMap,
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use tokenmesh_bench::{
    Body, LoadConfig, Outcome, RawCodec, Stop, Target, TokenMinter, Tokens, scenario,
    serve_trivial, trivial_auth_layer,
};
use tokenmesh_server::SigningKey;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, server::NamedService, transport::Server};

/// `bench.test.Synthetic`: `Delay` sleeps 5 ms for 16 calls in 20, 50 ms for 3
/// and 300 ms for 1 (by arrival order); `Fail` always answers
/// `PERMISSION_DENIED`; `Flaky` answers `OK` and `NOT_FOUND` in turn.
#[derive(Clone, Default)]
struct Synthetic {
    calls: Arc<AtomicU64>,
}

impl NamedService for Synthetic {
    const NAME: &'static str = "bench.test.Synthetic";
}

impl tower::Service<http::Request<tonic::body::Body>> for Synthetic {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let method = request
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        Box::pin(async move {
            let answer = tower::service_fn(move |_: Request<Bytes>| {
                let method = method.clone();
                async move {
                    match method.as_str() {
                        "Delay" => {
                            let delay = match n % 20 {
                                0..16 => 5,
                                16..19 => 50,
                                _ => 300,
                            };
                            tokio::time::sleep(Duration::from_millis(delay)).await;
                            Ok(Response::new(Bytes::from_static(b"done")))
                        }
                        "Flaky" if n.is_multiple_of(2) => Ok(Response::new(Bytes::new())),
                        "Flaky" => Err(Status::not_found("every other call")),
                        "Fail" => Err(Status::permission_denied("always")),
                        _ => Err(Status::unimplemented("no such method")),
                    }
                }
            });
            Ok(tonic::server::Grpc::new(RawCodec)
                .unary(answer, request)
                .await)
        })
    }
}

async fn synthetic_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        Server::builder()
            .add_service(Synthetic::default())
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}

fn synthetic(addr: SocketAddr, method: &str) -> Target {
    Target {
        addr,
        path: format!("/bench.test.Synthetic/{method}"),
        body: Body::Fixed(Bytes::new()),
    }
}

/// Sends exactly `count` calls of `method` to the synthetic server, no token.
async fn load_synthetic(addr: SocketAddr, method: &str, count: u64) -> Outcome {
    tokenmesh_bench::run(
        &synthetic(addr, method),
        &Tokens::none(),
        &requests(count, 8),
    )
    .await
    .expect("runs")
}

fn errors(code: &str, count: u64) -> BTreeMap<String, u64> {
    BTreeMap::from([(code.to_owned(), count)])
}

fn requests(count: u64, in_flight: usize) -> LoadConfig {
    LoadConfig {
        connections: 2,
        in_flight,
        stop: Stop::Requests(count),
        warmup: Duration::ZERO,
        timeout: Duration::from_secs(30),
    }
}

#[tokio::test]
async fn a_failing_method_is_counted_as_errors_and_never_as_throughput() {
    let addr = synthetic_server().await;
    let outcome = load_synthetic(addr, "Fail", 100).await;
    assert_eq!(outcome.ok, 0);
    assert_eq!(outcome.rate(), 0.0);
    assert!(outcome.latency.is_empty());
    assert_eq!(outcome.errors, errors("PERMISSION_DENIED", 100));
}

#[tokio::test]
async fn a_method_failing_every_other_call_counts_exactly_half_as_throughput() {
    let addr = synthetic_server().await;
    let outcome = load_synthetic(addr, "Flaky", 100).await;
    assert_eq!(outcome.ok, 50);
    assert_eq!(outcome.latency.len(), 50);
    assert_eq!(outcome.errors, errors("NOT_FOUND", 50));
    let unknown = load_synthetic(addr, "Nope", 10).await;
    assert_eq!(unknown.errors, errors("UNIMPLEMENTED", 10));
}

#[tokio::test]
async fn latency_percentiles_are_never_below_the_servers_known_delays() {
    let addr = synthetic_server().await;
    // 200 calls: 160 sleep 5 ms, 30 sleep 50 ms, 10 sleep 300 ms.
    let outcome = load_synthetic(addr, "Delay", 200).await;
    assert_eq!((outcome.ok, outcome.failed()), (200, 0));
    assert_eq!(outcome.latency.len(), 200);
    let ms = |quantile: f64| outcome.latency.value_at_quantile(quantile) as f64 / 1000.0;
    let (p50, p90, p99, max) = (
        ms(0.50),
        ms(0.90),
        ms(0.99),
        outcome.latency.max() as f64 / 1000.0,
    );
    // A call never takes less than its sleep, so every call is at least 5 ms, the
    // slowest 40 (ranks 161-200, p90 is rank 180) at least 50 ms and the slowest 10
    // (ranks 191-200, p99 is rank 198) at least 300 ms. How far above its floor a
    // percentile lands depends on the machine: no upper bound is asserted.
    assert!(p50 >= 5.0, "p50 {p50} ms");
    assert!(p90 >= 50.0, "p90 {p90} ms");
    assert!(p99 >= 300.0, "p99 {p99} ms");
    assert!(
        p50 <= p90 && p90 <= p99 && p99 <= max,
        "{p50} {p90} {p99} {max}"
    );
    let report = tokenmesh_bench::Report::new("delay", "/bench.test.Synthetic/Delay", &outcome);
    assert_eq!(report.latency.p50_ms, p50);
    assert_eq!(report.ok, 200);
}

#[tokio::test]
async fn the_auth_layer_refuses_tokenless_load_and_passes_minted_tokens() {
    let (key, _) = SigningKey::generate().expect("key");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let layer = trivial_auth_layer(&key).expect("layer");
    tokio::spawn(serve_trivial(listener, Some(layer), std::future::pending()));
    let target = scenario::target(addr, tokenmesh_bench::TRIVIAL_METHOD, "{}").expect("target");
    let minter = TokenMinter::new(key, "alice");

    let refused = tokenmesh_bench::run(&target, &Tokens::none(), &requests(20, 4))
        .await
        .expect("runs");
    assert_eq!(refused.ok, 0);
    assert_eq!(refused.errors, errors("UNAUTHENTICATED", 20));

    let one = Tokens::pool([minter.mint().expect("mints")]).expect("ascii");
    let pid = Some(std::process::id());
    let report = scenario::measure("one token", &target, &one, "reuse", &requests(20, 4), pid)
        .await
        .expect("runs");
    assert_eq!(
        (report.ok, report.failed, report.distinct_tokens),
        (20, 0, 1)
    );
    let server = report.server.expect("in-process server measured");
    assert!(server.peak_rss_mib > 0.0);

    let fresh = Tokens::pool(minter.mint_many(20).expect("mints")).expect("ascii");
    let outcome = tokenmesh_bench::run(&target, &fresh, &requests(20, 4))
        .await
        .expect("runs");
    assert_eq!((outcome.ok, outcome.failed()), (20, 0));
}
