//! A gRPC-Web client as a browser page is one: HTTP/1.1 POSTs of
//! length-prefixed messages with an `Origin`, the status read from the
//! trailer frame that ends the body; and the CORS preflight before them.

use std::{collections::BTreeMap, net::SocketAddr};

use prost::Message;

/// What a gRPC-Web call got back.
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status (200 for every gRPC answer, refusals included).
    pub http_status: u16,
    /// The response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The messages, in order, without their frame headers.
    pub messages: Vec<Vec<u8>>,
    /// The trailer frame's fields (`grpc-status`, `grpc-message`, …),
    /// names lowercased; empty without one.
    pub trailers: BTreeMap<String, String>,
}

impl Reply {
    /// The one message, decoded.
    pub fn message<M: Message + Default>(&self) -> M {
        let [message] = self.messages.as_slice() else {
            panic!("{} messages, not one: {self:?}", self.messages.len());
        };
        M::decode(message.as_slice()).expect("a decodable message")
    }

    /// The `grpc-status` of the trailer frame.
    pub fn trailer_status(&self) -> Option<i32> {
        self.trailers
            .get("grpc-status")
            .map(|s| s.parse().expect("numeric"))
    }

    /// The status of a trailers-only answer (a refusal before any message):
    /// `grpc-status` and its details in the HTTP headers, none in the body.
    pub fn trailers_only_status(&self) -> Option<tonic::Status> {
        if !self.messages.is_empty() || !self.trailers.is_empty() {
            return None;
        }
        tonic::Status::from_header_map(&self.headers)
    }

    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("ASCII"))
    }
}

/// An HTTP/1.1-only client, as a browser talks to a plaintext port.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .build()
        .expect("client")
}

/// Calls `path` (`/package.Service/Method`) at `addr` with gRPC-Web, sending
/// `request`, the bearer `token` if any, and `Origin: origin` if any.
pub async fn call(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    origin: Option<&str>,
    request: &impl Message,
) -> Reply {
    let message = request.encode_to_vec();
    let mut body = Vec::with_capacity(5 + message.len());
    body.push(0);
    body.extend_from_slice(&u32::try_from(message.len()).expect("small").to_be_bytes());
    body.extend_from_slice(&message);
    let mut post = client()
        .post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(body);
    if let Some(token) = token {
        post = post.header("authorization", format!("Bearer {token}"));
    }
    if let Some(origin) = origin {
        post = post.header("origin", origin);
    }
    let response = post.send().await.expect("gRPC-Web call answered");
    let http_status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body");
    let (messages, trailers) = frames(&body);
    Reply {
        http_status,
        headers,
        messages,
        trailers,
    }
}

/// Splits a gRPC-Web body into its messages and its trailer frame.
fn frames(mut body: &[u8]) -> (Vec<Vec<u8>>, BTreeMap<String, String>) {
    let mut messages = Vec::new();
    let mut trailers = BTreeMap::new();
    while !body.is_empty() {
        let (flag, rest) = body.split_first().expect("frame flag");
        let (length, rest) = rest.split_at(4);
        let length = u32::from_be_bytes(length.try_into().expect("4 bytes")) as usize;
        let (frame, rest) = rest.split_at(length);
        body = rest;
        if flag & 0x80 == 0 {
            messages.push(frame.to_vec());
            continue;
        }
        for line in String::from_utf8_lossy(frame).split("\r\n") {
            if let Some((name, value)) = line.split_once(':') {
                trailers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
    }
    (messages, trailers)
}

/// A browser's CORS preflight for a gRPC-Web POST to `path` at `addr` from
/// `origin`, asking to send `headers` (comma-separated).
pub async fn preflight(
    addr: SocketAddr,
    path: &str,
    origin: &str,
    headers: &str,
) -> reqwest::Response {
    client()
        .request(reqwest::Method::OPTIONS, format!("http://{addr}{path}"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", headers)
        .send()
        .await
        .expect("preflight answered")
}
