//! Criterion benchmarks: token verification per algorithm, cold (signature
//! checked) and cached, and the whole layer in front of a trivial tonic method,
//! each beside the `jwt-authorizer` crate with the same keys and tokens.
//!
//!     cargo bench -p tokenmesh-interceptor --bench verify

#![allow(missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::{TryFutureExt, future::join_all};
use jwt_authorizer::{Authorizer, JwtAuthorizer, Validation, layer::AuthorizationService};
use serde_json::Value;
use support::{
    AUDIENCE, ISSUER, PING, Ping, TestClaims, TestKey, TestServer, call, claims, key_set, now,
    policy,
};
use tokenmesh_interceptor::{AuthLayer, KeyStore, Verifier, VerifierConfig};
use tokio::{net::TcpListener, runtime::Runtime};
use tonic::{
    Status,
    body::Body,
    transport::{Server, server::TcpIncoming},
};
use tower::Service;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Claims valid for the whole run.
fn long_claims() -> Value {
    let mut claims = claims("alice");
    claims["exp"] = (now() + 3600).into();
    claims
}

async fn jwt_authorizer(key: &TestKey) -> Authorizer<TestClaims> {
    let jwks = serde_json::json!({ "keys": [key.jwk] }).to_string();
    JwtAuthorizer::from_jwks_text(&jwks)
        .validation(Validation::new().iss(&[ISSUER]).aud(&[AUDIENCE]).nbf(true))
        .build()
        .await
        .expect("jwt-authorizer")
}

fn verify(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("verify");
    for key in [
        TestKey::ed25519("ed"),
        TestKey::es256("es"),
        TestKey::rs256("rs"),
    ] {
        let algorithm = format!("{:?}", key.algorithm);
        let token = key.sign(&long_claims());
        let keys = KeyStore::fixed(key_set(&[&key]));
        let config = VerifierConfig::access_tokens(ISSUER, AUDIENCE);
        let cold = Verifier::<TestClaims>::new(config.clone(), keys.clone()).with_cache_capacity(0);
        let cached = Verifier::<TestClaims>::new(config, keys);
        rt.block_on(cached.verify(&token)).expect("valid");
        let authorizer = rt.block_on(jwt_authorizer(&key));
        rt.block_on(authorizer.check_auth(&token))
            .expect("jwt-authorizer accepts");

        group.bench_function(BenchmarkId::new("tokenmesh cold", &algorithm), |b| {
            b.to_async(&rt)
                .iter(|| async { cold.verify(&token).await.expect("valid") })
        });
        group.bench_function(BenchmarkId::new("tokenmesh cached", &algorithm), |b| {
            b.to_async(&rt)
                .iter(|| async { cached.verify(&token).await.expect("valid") })
        });
        group.bench_function(BenchmarkId::new("jwt-authorizer", &algorithm), |b| {
            b.to_async(&rt)
                .iter(|| async { authorizer.check_auth(&token).await.expect("valid") })
        });
    }
    group.finish();
}

/// jwt-authorizer's service needs `S::Response: From<its AuthError>`; tonic's
/// response type is foreign to both crates, so the bench wraps it.
#[derive(Clone)]
struct Wrap<S>(S);

struct Wrapped(http::Response<Body>);

impl From<jwt_authorizer::AuthError> for Wrapped {
    fn from(_: jwt_authorizer::AuthError) -> Self {
        Wrapped(Status::unauthenticated("unauthenticated").into_http())
    }
}

impl<S, B> Service<http::Request<B>> for Wrap<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
{
    type Response = Wrapped;
    type Error = S::Error;
    type Future = futures::future::MapOk<S::Future, fn(http::Response<Body>) -> Wrapped>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.0.call(request).map_ok(Wrapped as fn(_) -> _)
    }
}

#[derive(Clone)]
struct Unwrap<S>(S);

impl<S, B> Service<http::Request<B>> for Unwrap<S>
where
    S: Service<http::Request<B>, Response = Wrapped>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = futures::future::MapOk<S::Future, fn(Wrapped) -> http::Response<Body>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        fn unwrap(wrapped: Wrapped) -> http::Response<Body> {
            wrapped.0
        }
        self.0.call(request).map_ok(unwrap as fn(_) -> _)
    }
}

/// Serves [`Ping`] behind jwt-authorizer's own tower layer.
async fn jwt_authorizer_server(authorizer: Authorizer<TestClaims>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let auths = vec![Arc::new(authorizer)];
    let layer = tower::layer::layer_fn(move |inner| {
        Unwrap(AuthorizationService::new(Wrap(inner), auths.clone()))
    });
    tokio::spawn(
        Server::builder()
            .layer(layer)
            .add_service(Ping::default())
            .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true))),
    );
    addr
}

/// Calls in flight at once per iteration, over one HTTP/2 connection.
const CONCURRENT: usize = 32;

fn layer(c: &mut Criterion) {
    let rt = runtime();
    let key = TestKey::ed25519("ed");
    let token = key.sign(&long_claims());
    let (bare, protected, peer) = rt.block_on(async {
        let bare = TestServer::start(None).await;
        let verifier = Arc::new(Verifier::<TestClaims>::new(
            VerifierConfig::access_tokens(ISSUER, AUDIENCE),
            KeyStore::fixed(key_set(&[&key])),
        ));
        let protected = TestServer::start(Some(AuthLayer::new(verifier, policy()))).await;
        let peer_addr = jwt_authorizer_server(jwt_authorizer(&key).await).await;
        (bare, protected, peer_addr)
    });
    let (bare_channel, protected_channel, peer_channel) = rt.block_on(async {
        let peer = tonic::transport::Channel::from_shared(format!("http://{peer}"))
            .expect("url")
            .connect()
            .await
            .expect("connects");
        (bare.channel().await, protected.channel().await, peer)
    });
    // Warm the cache and check every server answers.
    rt.block_on(async {
        for channel in [&bare_channel, &protected_channel, &peer_channel] {
            call(channel, PING, Some(&token)).await.expect("served");
        }
    });

    let mut group = c.benchmark_group("layer");
    group.throughput(Throughput::Elements(CONCURRENT as u64));
    group.measurement_time(Duration::from_secs(8));
    for (name, channel) in [
        ("no layer", &bare_channel),
        ("tokenmesh, warm cache", &protected_channel),
        ("jwt-authorizer", &peer_channel),
    ] {
        group.bench_function(BenchmarkId::new("unary EdDSA", name), |b| {
            b.to_async(&rt).iter(|| async {
                let calls = (0..CONCURRENT).map(|_| call(channel, PING, Some(&token)));
                for result in join_all(calls).await {
                    result.expect("served");
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, verify, layer);
criterion_main!(benches);
