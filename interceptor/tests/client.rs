//! The client layer against a real server: it sends the token its source gives,
//! refreshes through a fetcher once for many calls, and fails a call without
//! sending it when there is no token.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::{FutureExt, future::BoxFuture};
use http::uri::PathAndQuery;
use support::{PING, TestKey, TestServer, claims, key_set, policy, verifier};
use tokenmesh_interceptor::{
    AttachToken, AttachTokenLayer, AuthLayer, IssuedToken, KeyStore, RefreshingToken, StaticToken,
    TokenFetcher, TokenSourceError,
};
use tonic::{Code, Status, transport::Channel};
use tonic_prost::ProstCodec;
use tower::Layer;

async fn ping(client: &AttachToken<Channel>) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(client.clone());
    grpc.ready()
        .await
        .map_err(|error| Status::unavailable(error.to_string()))?;
    grpc.unary(
        tonic::Request::new(()),
        PathAndQuery::from_static(PING),
        ProstCodec::<(), ()>::default(),
    )
    .await
    .map(|_| ())
}

async fn server(key: &TestKey) -> TestServer {
    let layer = AuthLayer::new(verifier(KeyStore::fixed(key_set(&[key]))), policy());
    TestServer::start(Some(layer)).await
}

#[tokio::test]
async fn the_client_layer_sends_its_static_token() {
    let key = TestKey::ed25519("k1");
    let server = server(&key).await;
    let source = StaticToken::new(&key.sign(&claims("svc"))).expect("ascii");
    let client = AttachTokenLayer::new(source).layer(server.channel().await);
    ping(&client).await.expect("authenticated");
    assert_eq!(server.calls(), 1);
    server.stop().await;
}

/// Signs a fresh token per fetch, as an issuer of client credentials would.
struct Issuer {
    key: Arc<TestKey>,
    fetches: Arc<AtomicUsize>,
}

impl TokenFetcher for Issuer {
    fn fetch(&self) -> BoxFuture<'_, Result<IssuedToken, TokenSourceError>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let token = self.key.sign(&claims("svc"));
        async move {
            Ok(IssuedToken {
                access_token: token,
                expires_in: Duration::from_secs(300),
            })
        }
        .boxed()
    }
}

#[tokio::test]
async fn the_client_layer_fetches_once_for_many_calls() {
    let key = Arc::new(TestKey::es256("k1"));
    let server = server(&key).await;
    let fetches = Arc::new(AtomicUsize::new(0));
    let source = RefreshingToken::new(Issuer {
        key: key.clone(),
        fetches: fetches.clone(),
    });
    let client = AttachTokenLayer::new(source).layer(server.channel().await);
    let calls = (0..8).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { ping(&client).await })
    });
    for call in calls {
        call.await.expect("task").expect("authenticated");
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    assert_eq!(server.calls(), 8);
    server.stop().await;
}

struct Refusing;

impl TokenFetcher for Refusing {
    fn fetch(&self) -> BoxFuture<'_, Result<IssuedToken, TokenSourceError>> {
        async { Err(TokenSourceError::Refused("invalid client secret".into())) }.boxed()
    }
}

#[tokio::test]
async fn without_a_token_the_call_fails_and_nothing_is_sent() {
    let key = TestKey::ed25519("k1");
    let server = server(&key).await;
    let client =
        AttachTokenLayer::new(RefreshingToken::new(Refusing)).layer(server.channel().await);
    let status = ping(&client).await.expect_err("no token");
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::Unauthenticated,
            "no token issued: invalid client secret"
        )
    );
    assert_eq!(server.calls(), 0);
    server.stop().await;
}
