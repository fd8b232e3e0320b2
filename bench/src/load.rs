//! The load generator: `in_flight` workers share `connections` HTTP/2
//! connections, each worker sending one request at a time, back to back, for a
//! duration or a request count after a warm-up. Latencies of successful calls go
//! into an HDR histogram; failed calls are counted by gRPC status code and never
//! count as throughput. A worker may follow a chain: each request built from
//! the last response (a refresh token's successor).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::uri::PathAndQuery;
use tokio::time::Instant;
use tonic::{
    Code, Request, Status,
    client::Grpc,
    transport::{Channel, Endpoint},
};

use crate::{BenchError, Method, RawCodec, Tokens};

/// Histogram range: 1 µs to 60 s, three significant digits.
const MAX_LATENCY_MICROS: u64 = 60_000_000;

/// What each request sends.
#[derive(Debug, Clone)]
pub enum Body {
    /// The same encoded message every time.
    Fixed(Bytes),
    /// Request `n` sends message `n % len` of these: one body per line of a
    /// `--data-file`, e.g. a distinct refresh token for every `Refresh`.
    Pool(Arc<[Bytes]>),
    /// A JSON request in which `{{seq}}` is replaced by the request number, encoded
    /// per request (e.g. a distinct `request_id` for every `PlaceOrder`).
    Template {
        /// The method whose input the JSON encodes.
        method: Method,
        /// The JSON, with `{{seq}}` placeholders.
        json: String,
    },
    /// Worker `w` follows its own chain: it sends `first[w]`, then each time the
    /// request carrying `field` of the response it got (e.g. `Refresh` with the
    /// successor refresh token: a steady run of rotations, as long as any other).
    /// A failed call ends its worker's chain: what it carried may be spent.
    Chain {
        /// The method, whose request and response both have `field`.
        method: Method,
        /// The field carried from each response into the next request.
        field: Arc<str>,
        /// Each chain's first request; at least one per request in flight.
        first: Arc<[Bytes]>,
    },
}

impl Body {
    /// `json` for `method`: encoded once, unless it holds a `{{seq}}` placeholder.
    pub fn json(method: &Method, json: &str) -> Result<Self, BenchError> {
        if json.contains("{{seq}}") {
            // Fail now, not in every worker.
            method.encode_json(&json.replace("{{seq}}", "0"))?;
            return Ok(Self::Template {
                method: method.clone(),
                json: json.to_owned(),
            });
        }
        Ok(Self::Fixed(method.encode_json(json)?))
    }

    /// One message per non-empty line of `lines`, each JSON for `method`.
    pub fn json_lines(method: &Method, lines: &str) -> Result<Self, BenchError> {
        Ok(Self::Pool(encode_lines(method, lines)?))
    }

    /// Chains for `method` carrying `field`, one per non-empty line of `lines`
    /// (each the JSON of a chain's first request).
    pub fn chain(method: &Method, field: &str, lines: &str) -> Result<Self, BenchError> {
        method.check_follow(field)?;
        Ok(Self::Chain {
            method: method.clone(),
            field: field.into(),
            first: encode_lines(method, lines)?,
        })
    }

    /// The first request of worker `worker`'s chain, if requests chain.
    fn chain_start(&self, worker: usize) -> Option<Bytes> {
        match self {
            Self::Chain { first, .. } => first.get(worker).cloned(),
            Self::Fixed(_) | Self::Pool(_) | Self::Template { .. } => None,
        }
    }

    /// The request after `response` in a chain.
    fn follow(&self, response: &[u8]) -> Result<Bytes, BenchError> {
        match self {
            Self::Chain { method, field, .. } => method.follow(response, field),
            Self::Fixed(_) | Self::Pool(_) | Self::Template { .. } => {
                Err(BenchError::Request("requests do not chain".into()))
            }
        }
    }

    fn for_request(&self, n: u64) -> Result<Bytes, Status> {
        match self {
            Self::Fixed(bytes) => Ok(bytes.clone()),
            // Outside a worker's chain (see `chain_start`), chains' first requests in turn.
            Self::Pool(bodies) | Self::Chain { first: bodies, .. } => {
                let index = usize::try_from(n % bodies.len() as u64).unwrap_or_default();
                Ok(bodies[index].clone())
            }
            Self::Template { method, json } => method
                .encode_json(&json.replace("{{seq}}", &n.to_string()))
                .map_err(|e| Status::invalid_argument(e.to_string())),
        }
    }
}

/// One message per non-empty line of `lines`, each JSON for `method`.
fn encode_lines(method: &Method, lines: &str) -> Result<Arc<[Bytes]>, BenchError> {
    let bodies = lines
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| method.encode_json(line))
        .collect::<Result<Arc<[Bytes]>, _>>()?;
    if bodies.is_empty() {
        return Err(BenchError::Request("no request in the data file".into()));
    }
    Ok(bodies)
}

/// The method to call, where, with what.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server.
    pub addr: SocketAddr,
    /// `/package.Service/Method`.
    pub path: String,
    /// The request message.
    pub body: Body,
}

/// When to stop measuring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this long (after the warm-up).
    After(Duration),
    /// After this many requests (after the warm-up).
    Requests(u64),
}

/// How hard to push.
#[derive(Debug, Clone, Copy)]
pub struct LoadConfig {
    /// HTTP/2 connections.
    pub connections: usize,
    /// Requests in flight at any time (workers), spread over the connections.
    pub in_flight: usize,
    /// When to stop.
    pub stop: Stop,
    /// Requests before this are sent but not measured.
    pub warmup: Duration,
    /// A request taking longer fails with `DEADLINE_EXCEEDED`.
    pub timeout: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            connections: 2,
            in_flight: 64,
            stop: Stop::After(Duration::from_secs(10)),
            warmup: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Calls that returned `OK`.
    pub ok: u64,
    /// Calls that failed, by status code name (`UNAUTHENTICATED`, …).
    pub errors: BTreeMap<String, u64>,
    /// Latency of successful calls, µs.
    pub latency: Histogram<u64>,
    /// From the end of the warm-up to the last measured completion.
    pub elapsed: Duration,
}

impl Outcome {
    /// Successful calls per second.
    pub fn rate(&self) -> f64 {
        if self.elapsed.is_zero() {
            return 0.0;
        }
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// Failed calls.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// One worker's tally.
struct Tally {
    ok: u64,
    errors: BTreeMap<String, u64>,
    latency: Histogram<u64>,
    last_done: Option<Instant>,
}

/// Opens `count` HTTP/2 connections to `addr`.
pub async fn connect(addr: SocketAddr, count: usize) -> Result<Vec<Channel>, BenchError> {
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        channels.push(channel(addr).await?);
    }
    Ok(channels)
}

/// Opens one HTTP/2 connection to `addr`.
pub async fn channel(addr: SocketAddr) -> Result<Channel, BenchError> {
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| BenchError::Connect(e.to_string()))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| BenchError::Connect(format!("{addr}: {e}")))
}

/// Sends one request and returns the response message bytes.
pub async fn call(
    channel: Channel,
    path: &str,
    body: Bytes,
    token: Option<&str>,
) -> Result<Bytes, Status> {
    let mut request = Request::new(body);
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::invalid_argument("token is not valid metadata"))?;
        request.metadata_mut().insert("authorization", value);
    }
    let mut grpc = Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path = PathAndQuery::try_from(path).map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok(grpc.unary(request, path, RawCodec).await?.into_inner())
}

/// Runs the load described by `config` against `target`.
pub async fn run(
    target: &Target,
    tokens: &Tokens,
    config: &LoadConfig,
) -> Result<Outcome, BenchError> {
    let path = PathAndQuery::try_from(target.path.as_str())
        .map_err(|e| BenchError::Request(format!("{}: {e}", target.path)))?;
    if let Body::Chain { first, .. } = &target.body
        && first.len() < config.in_flight
    {
        // Two workers on one chain would present each other's spent tokens.
        return Err(BenchError::Request(format!(
            "{} chains for {} requests in flight: each request in flight needs its own",
            first.len(),
            config.in_flight
        )));
    }
    let channels = connect(target.addr, config.connections).await?;
    let started = Instant::now();
    let measure_from = started + config.warmup;
    let sequence = Arc::new(AtomicU64::new(0));
    let measured = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..config.in_flight.max(1) {
        let channel = channels[worker % channels.len()].clone();
        let (path, body, tokens, config) =
            (path.clone(), target.body.clone(), tokens.clone(), *config);
        let (sequence, measured) = (sequence.clone(), measured.clone());
        workers.spawn(async move {
            let mut tally = Tally {
                ok: 0,
                errors: BTreeMap::new(),
                latency: Histogram::new_with_max(MAX_LATENCY_MICROS, 3).expect("valid bounds"),
                last_done: None,
            };
            let mut grpc = Grpc::new(channel);
            let mut chained = body.chain_start(worker);
            loop {
                let sent = Instant::now();
                let measuring = sent >= measure_from;
                if measuring {
                    let done = match config.stop {
                        Stop::After(duration) => sent >= measure_from + duration,
                        Stop::Requests(count) => measured.fetch_add(1, Ordering::Relaxed) >= count,
                    };
                    if done {
                        break;
                    }
                }
                let n = sequence.fetch_add(1, Ordering::Relaxed);
                let request = match &chained {
                    Some(next) => Ok(next.clone()),
                    None => body.for_request(n).map_err(|status| status.code()),
                };
                let result = match request {
                    Ok(request) => {
                        send(
                            &mut grpc,
                            &path,
                            request,
                            tokens.get(n).cloned(),
                            config.timeout,
                        )
                        .await
                    }
                    Err(code) => Err(code),
                };
                let done = Instant::now();
                let chain_ended = match (&mut chained, &result) {
                    (None, _) => false,
                    (Some(next), Ok(response)) => {
                        *next = body.follow(response)?;
                        false
                    }
                    (Some(_), Err(_)) => true,
                };
                if measuring {
                    tally.last_done = Some(done);
                    match result {
                        Ok(_) => {
                            tally.ok += 1;
                            let micros =
                                u64::try_from((done - sent).as_micros()).unwrap_or(u64::MAX);
                            tally.latency.saturating_record(micros.max(1));
                        }
                        Err(code) => {
                            *tally.errors.entry(code_name(code).to_owned()).or_default() += 1;
                        }
                    }
                }
                if chain_ended {
                    break;
                }
            }
            Ok::<_, BenchError>(tally)
        });
    }
    let mut outcome = Outcome {
        ok: 0,
        errors: BTreeMap::new(),
        latency: Histogram::new_with_max(MAX_LATENCY_MICROS, 3).expect("valid bounds"),
        elapsed: Duration::ZERO,
    };
    let mut last_done = measure_from;
    while let Some(tally) = workers.join_next().await {
        let tally = tally.map_err(|e| BenchError::Worker(e.to_string()))??;
        outcome.ok += tally.ok;
        for (code, count) in tally.errors {
            *outcome.errors.entry(code).or_default() += count;
        }
        outcome
            .latency
            .add(&tally.latency)
            .map_err(|e| BenchError::Worker(e.to_string()))?;
        last_done = last_done.max(tally.last_done.unwrap_or(measure_from));
    }
    outcome.elapsed = last_done - measure_from;
    Ok(outcome)
}

/// Sends `body`; the response message, or the status code.
async fn send(
    grpc: &mut Grpc<Channel>,
    path: &PathAndQuery,
    body: Bytes,
    token: Option<tonic::metadata::AsciiMetadataValue>,
    timeout: Duration,
) -> Result<Bytes, Code> {
    let mut request = Request::new(body);
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", token);
    }
    let call = async {
        grpc.ready().await.map_err(|_| Code::Unavailable)?;
        grpc.unary::<_, Bytes, _>(request, path.clone(), RawCodec)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| status.code())
    };
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or(Err(Code::DeadlineExceeded))
}

/// The canonical name of a gRPC status code, as in the gRPC spec.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use tokenmesh_proto::{
        auth::v1::{RefreshRequest, TokenResponse},
        orders::v1::PlaceOrderRequest,
    };

    use super::*;
    use crate::Methods;

    #[test]
    fn a_seq_placeholder_gives_every_request_its_own_body() {
        let method = Methods::tokenmesh()
            .expect("pool")
            .method("tokenmesh.orders.v1.OrdersService/PlaceOrder")
            .expect("known");
        let body = Body::json(&method, r#"{"product_id":"P-1","request_id":"r-{{seq}}"}"#)
            .expect("valid template");
        let seventh =
            PlaceOrderRequest::decode(body.for_request(7).expect("encodes")).expect("decodes");
        assert_eq!(seventh.request_id, "r-7");
        assert!(matches!(
            Body::json(&method, r#"{"product_id":"P-1"}"#),
            Ok(Body::Fixed(_))
        ));
        assert!(Body::json(&method, r#"{"quantity":"{{seq}}x"}"#).is_err());

        let pool = Body::json_lines(
            &method,
            "{\"request_id\":\"a\"}\n\n{\"request_id\":\"b\"}\n",
        )
        .expect("two lines");
        let ids: Vec<String> = (0..3)
            .map(|n| {
                PlaceOrderRequest::decode(pool.for_request(n).expect("body"))
                    .expect("decodes")
                    .request_id
            })
            .collect();
        assert_eq!(ids, ["a", "b", "a"]);
        assert!(Body::json_lines(&method, "\n").is_err());
    }

    #[test]
    fn a_chain_starts_each_worker_on_its_own_line_and_carries_the_field_on() {
        let methods = Methods::tokenmesh().expect("pool");
        let refresh = methods
            .method("tokenmesh.auth.v1.AuthService/Refresh")
            .expect("known");
        let chain = Body::chain(
            &refresh,
            "refresh_token",
            "{\"refresh_token\":\"first-0\"}\n{\"refresh_token\":\"first-1\"}\n",
        )
        .expect("two chains");
        let presented = |body: Bytes| RefreshRequest::decode(body).expect("decodes").refresh_token;
        assert_eq!(
            chain.chain_start(1).map(presented).as_deref(),
            Some("first-1")
        );
        assert_eq!(chain.chain_start(2), None);
        let response = TokenResponse {
            access_token: "access".into(),
            refresh_token: "successor".into(),
            ..TokenResponse::default()
        };
        let next = chain
            .follow(&response.encode_to_vec())
            .expect("the response has the field");
        assert_eq!(
            RefreshRequest::decode(next).expect("decodes"),
            RefreshRequest {
                refresh_token: "successor".into()
            }
        );
        assert_eq!(Body::Fixed(Bytes::new()).chain_start(0), None);
        // Login's request has no refresh_token to carry it into.
        let login = methods
            .method("tokenmesh.auth.v1.AuthService/Login")
            .expect("known");
        assert!(Body::chain(&login, "refresh_token", "{}").is_err());
    }
}
