//! The web console `up` serves on its HTTP address: the page, its bundle (built
//! from `web/` and embedded, so `cargo run` needs no npm) and where the three
//! services are, all under a strict Content-Security-Policy.

use std::net::SocketAddr;

use axum::{
    Json, Router,
    http::{HeaderValue, header},
    response::IntoResponse,
    routing::get,
};
use serde::Serialize;

const INDEX_HTML: &str = include_str!("../../../web/static/index.html");
const CONSOLE_CSS: &str = include_str!("../../../web/static/console.css");
const CONSOLE_JS: &str = include_str!("../../../web/dist/console.js");

/// Where the console's gRPC-Web calls go: each service's base URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsoleConfig {
    /// Auth.
    pub auth: String,
    /// Products.
    pub products: String,
    /// Orders.
    pub orders: String,
}

impl ConsoleConfig {
    /// The services at these addresses, `https` when they serve TLS.
    pub fn new((auth, products, orders): (SocketAddr, SocketAddr, SocketAddr), tls: bool) -> Self {
        let url = |addr: SocketAddr| {
            let scheme = if tls { "https" } else { "http" };
            format!("{scheme}://{addr}")
        };
        Self {
            auth: url(auth),
            products: url(products),
            orders: url(orders),
        }
    }

    /// The page's policy: its own scripts and styles only (none inline),
    /// calls to this server and the three services only, never framed.
    fn content_security_policy(&self) -> String {
        format!(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self' {} {} {}; base-uri 'none'; form-action 'none'; \
             object-src 'none'; frame-ancestors 'none'",
            self.auth, self.products, self.orders
        )
    }
}

/// `GET /` (the page), `/console/console.js`, `/console/console.css` and
/// `/console/config.json`, each with the security headers.
pub fn router(config: ConsoleConfig) -> Router {
    let policy = HeaderValue::from_str(&config.content_security_policy())
        .expect("URLs of socket addresses are valid header text");
    let headers = move |content_type: &'static str| {
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_SECURITY_POLICY, policy.clone()),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ]
    };
    let page = headers("text/html; charset=utf-8");
    let script = headers("text/javascript; charset=utf-8");
    let style = headers("text/css; charset=utf-8");
    let json = headers("application/json");
    Router::new()
        .route("/", get(move || async move { (page, INDEX_HTML) }))
        .route(
            "/console/console.js",
            get(move || async move { (script, CONSOLE_JS) }),
        )
        .route(
            "/console/console.css",
            get(move || async move { (style, CONSOLE_CSS) }),
        )
        // Browsers ask for it unbidden: no icon, and no 404 in the console.
        .route(
            "/favicon.ico",
            get(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
        .route(
            "/console/config.json",
            get(move || async move { (json, Json(config)).into_response() }),
        )
}
