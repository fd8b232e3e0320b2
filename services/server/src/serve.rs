//! `serve(listener, service, auth, metrics, limits, shutdown)`: one gRPC service
//! behind the limits and the auth layer, with health and reflection beside it,
//! over gRPC and gRPC-Web, until `shutdown` resolves; then health says
//! NOT_SERVING and the server drains.

use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use tokenmesh_interceptor::{AuthLayer, Claims, FeedFreshness};

use crate::Listener;
use tonic::{
    body::Body,
    server::NamedService,
    transport::{Server, server::TcpIncoming},
};
use tower::Service;

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The reflection service rejected the descriptor set.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The HTTP server failed.
    #[error("http: {0}")]
    Http(std::io::Error),
}

/// The health name a liveness probe checks: SERVING for as long as the server
/// runs, whatever the revocation feed says. A stale feed takes a replica out of
/// rotation (readiness, the server-wide "" and the service's own name); it is no
/// reason to restart it.
pub const LIVENESS: &str = "liveness";

/// What [`serve`] returns once the server has stopped.
pub type Served = Result<(), ServeError>;

/// A generated tonic service server that [`serve`] can run.
pub trait Servable:
    Service<
        http::Request<Body>,
        Response = http::Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + NamedService
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> Servable for S where
    S: Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + NamedService
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// Serves `service` on `listener` (TLS if it says so) until `shutdown` resolves,
/// within `limits`. Then, as Kubernetes expects of a pod it stops: health turns
/// NOT_SERVING (the server, "", and `service`); after `limits.shutdown_delay`
/// the server stops accepting, in-flight calls finish, open streams end with
/// `UNAVAILABLE`, and it returns. The auth layer's counters are
/// registered in `metrics`. Health reports `service` as SERVING — when the
/// layer's verifier follows a revocation feed, only while that feed is current
/// (its silence is exported in `metrics`); reflection (v1 and v1alpha)
/// advertises `service`, health and itself only.
pub async fn serve<S, C>(
    listener: impl Into<Listener>,
    service: S,
    auth: AuthLayer<C>,
    metrics: &crate::metrics::Registry,
    limits: crate::ServerLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError>
where
    S: Servable,
    C: Claims,
{
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status(LIVENESS, tonic_health::ServingStatus::Serving)
        .await;
    // A verifier following a revocation feed serves only while the feed is
    // current: NOT_SERVING until its first replay and while it is stale.
    let freshness = auth
        .verifier()
        .revocations()
        .and_then(|revocations| revocations.freshness())
        .cloned();
    let (stop_health, health_stopped) = tokio::sync::oneshot::channel();
    let health = match freshness {
        None => {
            health_reporter.set_serving::<S>().await;
            None
        }
        Some(freshness) => {
            metrics.register_feed(S::NAME, crate::wakeups::REVOCATIONS, &freshness);
            Some(tokio::spawn(report_health::<S>(
                health_reporter.clone(),
                freshness,
                health_stopped,
            )))
        }
    };
    let drain = crate::drain::Drain::new();
    let drain_layer = drain.layer();
    let shutdown = async move {
        shutdown.await;
        // The feed must not turn health back to SERVING once it says NOT_SERVING.
        let _ = stop_health.send(());
        if let Some(health) = health {
            let _ = health.await;
        }
        use tonic_health::ServingStatus::NotServing;
        health_reporter.set_service_status("", NotServing).await;
        health_reporter
            .set_service_status(S::NAME, NotServing)
            .await;
        tracing::info!(
            service = S::NAME,
            delay = ?limits.shutdown_delay,
            "stopping: health NOT_SERVING, draining in-flight calls, ending streams"
        );
        // Still serving while load balancers see NOT_SERVING and move away.
        tokio::time::sleep(limits.shutdown_delay).await;
        drain.start();
    };

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tokenmesh_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // The `google.rpc` detail types refusals carry (ErrorInfo, RetryInfo,
            // BadRequest): grpcurl resolves them by reflection to print them typed.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
            .with_service_name(S::NAME)
            .with_service_name("grpc.health.v1.Health")
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .with_service_name("grpc.reflection.v1alpha.ServerReflection")
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    metrics.register(S::NAME, &auth.metrics());
    let latencies = Arc::new(crate::latency::Latencies::new(
        S::NAME,
        auth.policy().methods().chain(INFRASTRUCTURE_METHODS),
    ));
    metrics.register_latencies(&latencies);
    let Listener {
        listener,
        tls,
        origins,
    } = listener.into();
    let address = listener.local_addr().ok();
    tracing::info!(
        service = S::NAME,
        ?address,
        tls = tls.is_some(),
        ?origins,
        "serving"
    );
    let mut server = Server::builder()
        // gRPC-Web: browsers speak HTTP/1.1 to a plaintext port.
        .accept_http1(true)
        // Bounded per connection by HTTP/2 itself: the client learns both in
        // SETTINGS; hyper refuses a larger header list before any layer runs.
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_max_header_list_size(limits.max_header_list_size);
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    let served = server
        // HTTP/1.1 headers bounded like HTTP/2's, before anything reads them.
        .layer(crate::web::Http1HeaderLimitLayer::new(
            limits.max_header_list_size,
        ))
        // A preflight is answered here, for the allowed origins only; it never
        // reaches the auth layer (it carries no token).
        .layer(crate::web::cors(&origins))
        // gRPC-Web in, gRPC inside, gRPC-Web out: the layers below (the auth
        // layer's refusals included) see and answer plain gRPC.
        .layer(tonic_web::GrpcWebLayer::new())
        // Every layer below works inside the request's span (DEBUG: at INFO a
        // request costs no span and writes no line).
        .layer(crate::request_span::RequestSpanLayer)
        // Outside the limits and the auth layer: shed and refused calls are timed too.
        .layer(crate::latency::LatencyLayer::new(latencies))
        // Above the auth layer: a flood is shed before any token is verified.
        .layer(limits.layer())
        // Every request, reflection and health included, passes the policy.
        .layer(auth)
        // Innermost, on every answer: streams end when the drain starts.
        .layer(drain_layer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service)
        // TCP_NODELAY: small gRPC frames must not wait for Nagle and delayed ACKs
        // (40 ms per call otherwise).
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await;
    served?;
    tracing::info!(service = S::NAME, "stopped");
    Ok(())
}

/// Keeps `S` and the server as a whole ("") SERVING exactly while `freshness`
/// says the revocations are current: at once when the feed's state changes,
/// within [`HEALTH_POLL`] when the clock makes it stale; until `stop`.
async fn report_health<S: NamedService>(
    reporter: tonic_health::server::HealthReporter,
    freshness: Arc<FeedFreshness>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    use tonic_health::ServingStatus;
    let mut reported = None;
    loop {
        let changed = freshness.changed();
        let serving = freshness.check().is_ok();
        if reported != Some(serving) {
            let status = if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            reporter.set_service_status(S::NAME, status).await;
            if reported.is_some() {
                tracing::info!(
                    service = S::NAME,
                    serving,
                    "health changed with the revocation feed"
                );
            }
            reported = Some(serving);
        }
        // Replay and connection changes at once; the clock's passing by polling.
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep(HEALTH_POLL) => {}
            _ = &mut stop => return,
        }
    }
}

/// Health's and reflection's methods (public by service, so not in the policy):
/// their calls get their own latency series.
const INFRASTRUCTURE_METHODS: [&str; 4] = [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// How often health looks at the revocation feed's freshness.
const HEALTH_POLL: Duration = Duration::from_millis(200);
