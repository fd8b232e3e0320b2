//! W3C trace context (`traceparent`) across hops: the client layer writes the
//! current span's context into an outgoing request; a server makes the context
//! it receives the parent of its request span. Both go through the process's
//! global propagator, a no-op until the binary exports traces: an untraced
//! process sends and reads nothing.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Writes the current span's trace context into `headers`.
pub fn inject(headers: &mut HeaderMap) {
    let span = tracing::Span::current();
    if span.is_none() {
        return;
    }
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut Headers(headers));
    });
}

/// Makes the trace context in `headers` (if any) the parent of `span`, which
/// must not have been entered yet.
pub fn set_parent(span: &tracing::Span, headers: &HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let context = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&ReadHeaders(headers))
    });
    // Without an OpenTelemetry layer (no exporter) there is nothing to parent.
    let _ = span.set_parent(context);
}

/// `headers` as the propagator's carrier, for writing.
struct Headers<'a>(&'a mut HeaderMap);

impl Injector for Headers<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// `headers` as the propagator's carrier, for reading.
struct ReadHeaders<'a>(&'a HeaderMap);

impl Extractor for ReadHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}
