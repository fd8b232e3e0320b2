//! What every server bounds — concurrent requests (shed above the limit:
//! `UNAVAILABLE`), request time (`DEADLINE_EXCEEDED`), HTTP/2 streams and header
//! lists — and tonic's `OUT_OF_RANGE` for an oversized message answered
//! `RESOURCE_EXHAUSTED`, as gRPC's status table and every other implementation do.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue};
use http_body::Frame;
use tokio::sync::Semaphore;
use tonic::{Status, body::Body};
use tower::{
    BoxError, Layer, Service, ServiceBuilder, limit::GlobalConcurrencyLimitLayer,
    load_shed::LoadShedLayer, timeout::TimeoutLayer,
};

/// The bounds every server applies; flags in [`crate::args::LimitArgs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Requests handled at once by one server, over all connections; above it a
    /// request is shed at once, never queued.
    pub max_concurrent_requests: usize,
    /// How long one request may take until its response starts (a stream's
    /// first message); a feed stream is not cut by it.
    pub request_timeout: Duration,
    /// HTTP/2 streams one connection may have open at once.
    pub max_concurrent_streams: u32,
    /// Largest header list (metadata, token included) a request may carry.
    pub max_header_list_size: u32,
    /// How long a stopping server keeps serving after its health turned
    /// NOT_SERVING, so that load balancers take it out of rotation before it
    /// stops accepting (Kubernetes' `preStop` delay, built in).
    pub shutdown_delay: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_concurrent_requests: 512,
            request_timeout: Duration::from_secs(30),
            max_concurrent_streams: 128,
            max_header_list_size: 16 * 1024,
            shutdown_delay: Duration::ZERO,
        }
    }
}

impl ServerLimits {
    /// The tower stack that applies the per-request limits, outermost first.
    pub(crate) fn layer(&self) -> LimitsLayer {
        LimitsLayer {
            permits: Arc::new(Semaphore::new(self.max_concurrent_requests)),
            timeout: self.request_timeout,
        }
    }
}

/// Answers the limits' refusals as gRPC statuses; see [`ServerLimits::layer`].
#[derive(Debug, Clone)]
pub(crate) struct LimitsLayer {
    permits: Arc<Semaphore>,
    timeout: Duration,
}

/// Type of the stack [`LimitsLayer`] builds around `S`.
type Limited<S> =
    tower::load_shed::LoadShed<tower::limit::ConcurrencyLimit<tower::timeout::Timeout<S>>>;

impl<S> Layer<S> for LimitsLayer {
    type Service = Limits<Limited<S>>;

    fn layer(&self, inner: S) -> Self::Service {
        let inner = ServiceBuilder::new()
            // Shed, not queue: a full server answers at once and the caller backs off.
            .layer(LoadShedLayer::new())
            // One semaphore for every connection: the bound is the server's.
            .layer(GlobalConcurrencyLimitLayer::with_semaphore(
                self.permits.clone(),
            ))
            // Inside the permit: a request that times out frees its permit.
            .layer(TimeoutLayer::new(self.timeout))
            .service(inner);
        Limits {
            inner,
            timeout: self.timeout,
        }
    }
}

// === impl Limits ===

/// Maps the inner stack's refusals and tonic's size errors to their statuses.
#[derive(Debug, Clone)]
pub(crate) struct Limits<S> {
    inner: S,
    timeout: Duration,
}

impl<S> Service<http::Request<Body>> for Limits<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let timeout = self.timeout;
        let response = self.inner.call(request);
        Box::pin(async move {
            match response.await {
                Ok(response) => {
                    let (mut parts, body) = response.into_parts();
                    size_error_is_resource_exhausted(&mut parts.headers);
                    Ok(http::Response::from_parts(
                        parts,
                        Body::new(SizeErrorTrailers(body)),
                    ))
                }
                Err(error) if error.is::<tower::load_shed::error::Overloaded>() => {
                    // debug: under a flood, one line per shed request would be the flood.
                    tracing::debug!("server at its concurrency limit: request shed");
                    Ok(Status::unavailable("server overloaded; retry with backoff").into_http())
                }
                Err(error) if error.is::<tower::timeout::error::Elapsed>() => {
                    tracing::debug!(?timeout, "request timed out");
                    Ok(Status::deadline_exceeded(format!(
                        "request took longer than the server's limit of {}",
                        humantime::format_duration(timeout)
                    ))
                    .into_http())
                }
                Err(error) => Err(error),
            }
        })
    }
}

/// tonic's messages for a message over a service's size limit.
const SIZE_ERRORS: [&str; 2] = [
    "Error, decoded message length too large",
    "Error, encoded message length too large",
];

/// Rewrites `grpc-status: 11` (OUT_OF_RANGE) to 8 (RESOURCE_EXHAUSTED) when the
/// message is tonic's size error; any other OUT_OF_RANGE is a handler's own.
fn size_error_is_resource_exhausted(headers: &mut HeaderMap) {
    let is_size_error = headers.get("grpc-status").map(HeaderValue::as_bytes) == Some(b"11")
        && Status::from_header_map(headers).is_some_and(|status| {
            SIZE_ERRORS
                .iter()
                .any(|prefix| status.message().starts_with(prefix))
        });
    if is_size_error {
        headers.insert("grpc-status", HeaderValue::from_static("8"));
    }
}

/// A response body whose trailers get [`size_error_is_resource_exhausted`]: an
/// oversized response fails in its trailers.
struct SizeErrorTrailers(Body);

impl http_body::Body for SizeErrorTrailers {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let mut polled = Pin::new(&mut self.0).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &mut polled
            && let Some(trailers) = frame.trailers_mut()
        {
            size_error_is_resource_exhausted(trailers);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(status: &'static str, message: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", HeaderValue::from_static(status));
        headers.insert("grpc-message", HeaderValue::from_static(message));
        headers
    }

    #[test]
    fn only_tonics_size_error_becomes_resource_exhausted() {
        // As tonic writes it: percent-encoded.
        let mut oversized = headers(
            "11",
            "Error,%20decoded%20message%20length%20too%20large:%20found%204194320%20bytes,%20the%20limit%20is:%2032768%20bytes",
        );
        size_error_is_resource_exhausted(&mut oversized);
        assert_eq!(oversized["grpc-status"], "8");
        let mut own = headers("11", "page%20out%20of%20range");
        size_error_is_resource_exhausted(&mut own);
        assert_eq!(own["grpc-status"], "11");
    }
}
