//! Browsers as clients: every server answers gRPC-Web (tonic-web) beside gRPC,
//! over HTTP/1.1 too, grants CORS only to an allowlist of origins (tower-http),
//! and bounds an HTTP/1.1 request's header list as HTTP/2 bounds it.

use std::{
    fmt,
    str::FromStr,
    task::{Context, Poll},
    time::Duration,
};

use futures::future::{Either, Ready, ready};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version, header};
use tonic::body::Body;
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// A web origin (`scheme://host[:port]`) whose pages may call a server.
#[derive(Clone, PartialEq, Eq)]
pub struct Origin(HeaderValue);

/// Why a configured origin was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// `*` or a pattern: only listed origins are allowed.
    #[error("list each origin (e.g. https://console.example.com); '*' is not accepted")]
    Wildcard,
    /// Not `http(s)://host[:port]` with nothing after it.
    #[error("an origin is http(s)://host[:port] with no path, query or user; got {0:?}")]
    Malformed(String),
}

impl Origin {
    /// The origin of pages served from `addr` over plain HTTP (the console's).
    pub fn http(addr: std::net::SocketAddr) -> Self {
        Self(HeaderValue::from_str(&format!("http://{addr}")).expect("an address is ASCII"))
    }

    /// The origin as browsers send it in `Origin`.
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Origin {
    type Err = OriginError;

    /// Browsers send an origin lowercased, without a trailing slash: so is it
    /// stored, so that `https://Console.example.com/` still matches.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.contains('*') {
            return Err(OriginError::Wildcard);
        }
        let malformed = || OriginError::Malformed(crate::shown(text).to_string());
        let uri: http::Uri = text.parse().map_err(|_| malformed())?;
        let scheme = uri.scheme_str().map(str::to_ascii_lowercase);
        let (Some(scheme @ ("http" | "https")), Some(authority)) =
            (scheme.as_deref(), uri.authority())
        else {
            return Err(malformed());
        };
        let bare = uri.path_and_query().is_none_or(|p| p.as_str() == "/");
        if !bare || authority.as_str().contains('@') || text.ends_with("//") {
            return Err(malformed());
        }
        let origin = format!("{scheme}://{}", authority.as_str().to_ascii_lowercase());
        HeaderValue::from_str(&origin)
            .map(Self)
            .map_err(|_| malformed())
    }
}

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// What a gRPC-Web client sends beyond a simple request: the bearer token, the
/// gRPC-Web content type and markers, and the call's deadline.
const ALLOWED_HEADERS: [HeaderName; 5] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    HeaderName::from_static("x-grpc-web"),
    HeaderName::from_static("x-user-agent"),
    HeaderName::from_static("grpc-timeout"),
];

/// What a page's script must read of an answer: the status, and its typed
/// details (`ErrorInfo`, `RetryInfo`).
const EXPOSED_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("grpc-status"),
    HeaderName::from_static("grpc-message"),
    HeaderName::from_static("grpc-status-details-bin"),
];

/// CORS for `origins` only: none given, no page from another origin may read
/// an answer. No credentials: tokens travel in `authorization`, never cookies.
pub(crate) fn cors(origins: &[Origin]) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.iter().map(|o| o.0.clone())))
        .allow_methods([Method::POST])
        .allow_headers(ALLOWED_HEADERS)
        .expose_headers(EXPOSED_HEADERS)
        .max_age(PREFLIGHT_MAX_AGE)
}

/// Refuses an HTTP/1.x request whose header list is larger than `max` bytes
/// (counted as HTTP/2 counts it: name, value and 32 per field) with 431,
/// before anything reads it: hyper itself bounds HTTP/1.1 headers only at
/// about 400 KiB.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Http1HeaderLimitLayer {
    max: usize,
}

impl Http1HeaderLimitLayer {
    pub(crate) fn new(max: u32) -> Self {
        Self { max: max as usize }
    }
}

impl<S> Layer<S> for Http1HeaderLimitLayer {
    type Service = Http1HeaderLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Http1HeaderLimit {
            inner,
            max: self.max,
        }
    }
}

// === impl Http1HeaderLimit ===

/// See [`Http1HeaderLimitLayer`].
#[derive(Debug, Clone)]
pub(crate) struct Http1HeaderLimit<S> {
    inner: S,
    max: usize,
}

impl<S, B> Service<Request<B>> for Http1HeaderLimit<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response<Body>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.version() < Version::HTTP_2 && header_list_size(request.headers()) > self.max {
            tracing::debug!("HTTP/1.1 header list over the limit: 431");
            let mut refused = Response::new(Body::empty());
            *refused.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
            return Either::Left(ready(Ok(refused)));
        }
        Either::Right(self.inner.call(request))
    }
}

/// The size HTTP/2's `SETTINGS_MAX_HEADER_LIST_SIZE` counts.
fn header_list_size(headers: &http::HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_is_a_scheme_and_an_authority_stored_as_browsers_send_it() {
        let origin = |text: &str| text.parse::<Origin>().map(|o| o.to_string());
        assert_eq!(
            origin("https://Console.Example.com/"),
            Ok("https://console.example.com".to_owned())
        );
        assert_eq!(
            origin("http://127.0.0.1:8080"),
            Ok("http://127.0.0.1:8080".to_owned())
        );
        assert_eq!(origin("*"), Err(OriginError::Wildcard));
        assert_eq!(origin("https://*.example.com"), Err(OriginError::Wildcard));
        for bad in [
            "console.example.com",
            "ftp://example.com",
            "https://example.com/console",
            "https://example.com?x=1",
            "https://user@example.com",
            "",
        ] {
            assert!(
                matches!(origin(bad), Err(OriginError::Malformed(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn the_header_list_is_counted_as_http2_counts_it() {
        let mut headers = http::HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("a"));
        assert_eq!(header_list_size(&headers), (13 + 8 + 32) + (12 + 1 + 32));
    }
}
