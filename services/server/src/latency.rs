//! How long every call took, by service, method and gRPC code, as one
//! Prometheus histogram family (`tokenmesh_grpc_server_handling_seconds`).
//! Measured outermost, so calls shed by the limits or refused by the auth layer
//! count too; lock-free, one bucket add per call. Only known methods get their
//! own label: any other path is `other`, so client input cannot grow the series.

use std::{
    collections::HashMap,
    fmt::Write,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tower::{Layer, Service};

/// Upper bounds of the buckets, in seconds (`+Inf` is the count).
pub const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The family's name; `_bucket`, `_sum` and `_count` are its series.
pub const FAMILY: &str = "tokenmesh_grpc_server_handling_seconds";

/// gRPC's codes, 0 to 16, as the `code` label shows them.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The `method` label of every path that is no known method.
const OTHER: &str = "other";

/// One histogram: per-bucket (not cumulative) counts, total count and sum.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// The latencies of one server: a histogram per known method and code.
#[derive(Debug)]
pub struct Latencies {
    service: String,
    /// Method paths (`/pkg.Service/Method`), then [`OTHER`].
    methods: Vec<String>,
    index: HashMap<String, usize>,
    cells: Vec<Histogram>,
}

impl Latencies {
    /// Histograms of `service`'s server, one per path in `methods` (and one
    /// for any other path), per code.
    pub fn new<'a>(service: &str, methods: impl IntoIterator<Item = &'a str>) -> Self {
        let mut all: Vec<String> = methods.into_iter().map(str::to_owned).collect();
        all.sort();
        all.dedup();
        all.push(OTHER.to_owned());
        let index = all
            .iter()
            .enumerate()
            .map(|(i, method)| (method.clone(), i))
            .collect();
        let cells = (0..all.len() * CODES.len())
            .map(|_| Histogram::default())
            .collect();
        Self {
            service: tokenmesh_interceptor::label_value(service),
            methods: all,
            index,
            cells,
        }
    }

    /// Counts a call to `path` answered with `code` after `elapsed`.
    pub fn observe(&self, path: &str, code: usize, elapsed: Duration) {
        self.observe_method(self.method(path), code, elapsed);
    }

    /// The `method` label's index of `path`.
    fn method(&self, path: &str) -> usize {
        self.index
            .get(path)
            .copied()
            .unwrap_or(self.methods.len() - 1)
    }

    fn observe_method(&self, method: usize, code: usize, elapsed: Duration) {
        let code = code.min(CODES.len() - 1);
        let cell = &self.cells[method * CODES.len() + code];
        let seconds = elapsed.as_secs_f64();
        if let Some(bucket) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            cell.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        cell.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        cell.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The `# HELP`/`# TYPE` lines, once per exposition.
    pub const HEADER: &'static str = "# HELP tokenmesh_grpc_server_handling_seconds Time from a call's arrival to its response headers (a unary call's whole handling), by service, method and gRPC code.\n# TYPE tokenmesh_grpc_server_handling_seconds histogram\n";

    /// Appends the samples of every (method, code) seen at least once.
    pub fn render_samples(&self, out: &mut String) {
        let service = &self.service;
        for (method_index, method) in self.methods.iter().enumerate() {
            for (code_index, code) in CODES.iter().enumerate() {
                let cell = &self.cells[method_index * CODES.len() + code_index];
                let count = cell.count.load(Ordering::Relaxed);
                if count == 0 {
                    continue;
                }
                let labels = format!("service=\"{service}\",method=\"{method}\",code=\"{code}\"");
                let mut cumulative = 0;
                for (bound, bucket) in BUCKETS.iter().zip(&cell.buckets) {
                    cumulative += bucket.load(Ordering::Relaxed);
                    let _ = writeln!(
                        out,
                        "{FAMILY}_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                    );
                }
                let _ = writeln!(out, "{FAMILY}_bucket{{{labels},le=\"+Inf\"}} {count}");
                let sum = cell.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
                let _ = writeln!(out, "{FAMILY}_sum{{{labels}}} {sum}");
                let _ = writeln!(out, "{FAMILY}_count{{{labels}}} {count}");
            }
        }
    }
}

/// Times every call of a server into its [`Latencies`].
#[derive(Debug, Clone)]
pub struct LatencyLayer {
    latencies: Arc<Latencies>,
}

impl LatencyLayer {
    /// Records into `latencies`.
    pub fn new(latencies: Arc<Latencies>) -> Self {
        Self { latencies }
    }
}

impl<S> Layer<S> for LatencyLayer {
    type Service = Timed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timed {
            inner,
            latencies: self.latencies.clone(),
        }
    }
}

/// The service [`LatencyLayer`] wraps around a server's stack.
#[derive(Debug, Clone)]
pub struct Timed<S> {
    inner: S,
    latencies: Arc<Latencies>,
}

// === impl Timed ===

impl<S, B, ResBody> Service<http::Request<B>> for Timed<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TimedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        TimedFuture {
            // Looked up now, so the future holds an index, not a copy of the path.
            method: self.latencies.method(request.uri().path()),
            started: Instant::now(),
            latencies: self.latencies.clone(),
            inner: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// A call's response future, timed until it resolves.
    pub struct TimedFuture<F> {
        #[pin]
        inner: F,
        method: usize,
        started: Instant,
        latencies: Arc<Latencies>,
    }
}

impl<F, ResBody, E> Future for TimedFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        // An error answer is trailers-only: its code is in the headers. A
        // success sends its code in trailers, after these headers: OK.
        let code = match &result {
            Ok(response) => response
                .headers()
                .get("grpc-status")
                .and_then(|code| code.to_str().ok()?.parse().ok())
                .unwrap_or(0),
            Err(_) => 2,
        };
        this.latencies
            .observe_method(*this.method, code, this.started.elapsed());
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_lands_in_its_bucket_and_unknown_paths_share_one_label() {
        let latencies = Latencies::new("svc", ["/svc/A"]);
        latencies.observe("/svc/A", 0, Duration::from_millis(3));
        latencies.observe("/svc/junk-1", 12, Duration::from_secs(9));
        latencies.observe("/svc/junk-2", 12, Duration::from_secs(9));
        let mut out = String::new();
        latencies.render_samples(&mut out);
        let labels = "service=\"svc\",method=\"/svc/A\",code=\"OK\"";
        assert!(out.contains(&format!("{FAMILY}_bucket{{{labels},le=\"0.0025\"}} 0\n")));
        assert!(out.contains(&format!("{FAMILY}_bucket{{{labels},le=\"0.005\"}} 1\n")));
        assert!(out.contains(&format!("{FAMILY}_count{{{labels}}} 1\n")));
        let other = "service=\"svc\",method=\"other\",code=\"UNIMPLEMENTED\"";
        assert!(out.contains(&format!("{FAMILY}_bucket{{{other},le=\"2.5\"}} 0\n")));
        assert!(out.contains(&format!("{FAMILY}_bucket{{{other},le=\"+Inf\"}} 2\n")));
        assert!(!out.contains("junk"));
    }
}
