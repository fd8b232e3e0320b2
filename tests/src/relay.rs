//! A gRPC relay in front of a real server, for attacks that need a peer's
//! timing: it forwards every call as it is (messages as bytes, metadata and
//! statuses unchanged), and holds each stream of one method after its first
//! messages until released — a feed's replay cut mid-way.

use std::{convert::Infallible, net::SocketAddr};

use bytes::Bytes;
use http::uri::PathAndQuery;
use tokenmesh_bench::RawCodec;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{
    Request, Response, Status, Streaming,
    server::Grpc,
    service::Routes,
    transport::{Channel, Server},
};

use crate::Mesh;

/// A relay serving on [`Relay::addr`] until dropped.
#[derive(Debug)]
pub struct Relay {
    /// Where it listens.
    pub addr: SocketAddr,
    release: watch::Sender<bool>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Which method's streams are held, and after how many messages.
#[derive(Debug, Clone)]
struct Hold {
    path: &'static str,
    after: usize,
    released: watch::Receiver<bool>,
}

impl Relay {
    /// Relays calls on `listen` to `upstream`; every stream of `held` (a path,
    /// `/package.Service/Method`) passes its first `after` messages, then waits
    /// for [`Relay::release`].
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        held: &'static str,
        after: usize,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .expect("the relay binds");
        let addr = listener.local_addr().expect("address");
        let upstream = Mesh::channel(upstream).await;
        let (release, released) = watch::channel(false);
        let hold = Hold {
            path: held,
            after,
            released,
        };
        let relay = tower::service_fn(move |request: http::Request<axum::body::Body>| {
            let (upstream, hold) = (upstream.clone(), hold.clone());
            async move {
                let path = request.uri().path_and_query().cloned();
                let forward = tower::service_fn(move |call: Request<Streaming<Bytes>>| {
                    forward(upstream.clone(), path.clone(), hold.clone(), call)
                });
                Ok::<_, Infallible>(Grpc::new(RawCodec).streaming(forward, request).await)
            }
        });
        let routes = Routes::from(axum::Router::new().fallback_service(relay));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(
            Server::builder()
                .add_routes(routes)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                }),
        );
        Self {
            addr,
            release,
            _stop: stop,
        }
    }

    /// Lets every held stream go on.
    pub fn release(&self) {
        self.release.send_replace(true);
    }
}

/// One call upstream, its request messages streamed on as they come; its
/// answer's messages back, held per `hold`.
async fn forward(
    upstream: Channel,
    path: Option<PathAndQuery>,
    hold: Hold,
    call: Request<Streaming<Bytes>>,
) -> Result<Response<ReceiverStream<Result<Bytes, Status>>>, Status> {
    let path = path.ok_or_else(|| Status::invalid_argument("no path"))?;
    let (metadata, _, messages) = call.into_parts();
    let messages = messages.map_while(Result::ok);
    let mut client = tonic::client::Grpc::new(upstream);
    client
        .ready()
        .await
        .map_err(|error| Status::unavailable(error.to_string()))?;
    let answer = client
        .streaming(
            Request::from_parts(metadata, Default::default(), messages),
            path.clone(),
            RawCodec,
        )
        .await?;
    let (metadata, mut answers, _) = answer.into_parts();
    let held = path.path() == hold.path;
    let (sender, receiver) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut passed = 0;
        while let Some(answer) = answers.next().await {
            if held && passed == hold.after {
                let mut released = hold.released.clone();
                let _ = released.wait_for(|released| *released).await;
            }
            passed += 1;
            if sender.send(answer).await.is_err() {
                return;
            }
        }
    });
    Ok(Response::from_parts(
        metadata,
        ReceiverStream::new(receiver),
        Default::default(),
    ))
}
