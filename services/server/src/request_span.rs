//! The per-request span of every server: one per call, above the limits and the
//! auth layer so their outcome lands in it, and a child of the caller's span
//! when the caller sent its trace context (`traceparent`). DEBUG: nothing is
//! recorded unless a trace exporter (or `RUST_LOG`) asks for it.

use std::task::{Context, Poll};

use tower::{Layer, Service};
use tracing::{Instrument, instrument::Instrumented};

/// Wraps a server's stack in [`RequestSpan`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestSpanLayer;

impl<S> Layer<S> for RequestSpanLayer {
    type Service = RequestSpan<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestSpan { inner }
    }
}

/// The service [`RequestSpanLayer`] puts around a server's stack.
#[derive(Debug, Clone)]
pub struct RequestSpan<S> {
    inner: S,
}

// === impl RequestSpan ===

impl<S, B> Service<http::Request<B>> for RequestSpan<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The path is client input: shown cut.
        let method = crate::shown(request.uri().path());
        let span = tracing::debug_span!(
            "grpc",
            method = %method,
            otel.name = %method,
            otel.kind = "server"
        );
        tokenmesh_interceptor::trace_context::set_parent(&span, request.headers());
        // Entered while the inner layers are called as well (tonic's
        // `trace_fn` is not), so the spans they open in `call` nest under it.
        span.in_scope(|| self.inner.call(request)).instrument(span)
    }
}
