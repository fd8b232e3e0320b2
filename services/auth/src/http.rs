//! Auth's keys over plain HTTP, for verifiers that speak JOSE but not gRPC
//! (Envoy `jwt_authn`, Istio, PyJWT, any JWKS client): the JWK Set and an
//! OpenID-style discovery document pointing at it. The document names Auth's
//! configured public URL, never anything a request says (`Host`,
//! `X-Forwarded-*`): it is cached publicly, so one forged request must not
//! point every verifier behind a cache at an attacker's key set.

use std::{fmt, net::SocketAddr, str::FromStr};

use axum::{
    Json, Router,
    extract::State,
    http::{Uri, header},
    response::IntoResponse,
    routing::get,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::AuthService;

/// Path of the JWK Set under the public URL.
const JWKS_PATH: &str = "/.well-known/jwks.json";

/// The base URL where clients reach Auth's HTTP routes, e.g.
/// `https://auth.example.com` (`--public-url`): `http` or `https`, a host, an
/// optional port and path; no user, query or fragment. A trailing `/` is
/// dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(String);

impl PublicUrl {
    /// The URL of an HTTP listener on `addr`: `https` when it is served over
    /// TLS.
    pub fn for_listener(addr: SocketAddr, tls: bool) -> Self {
        let scheme = if tls { "https" } else { "http" };
        Self(format!("{scheme}://{addr}"))
    }

    /// Discovery's `jwks_uri`.
    pub fn jwks_uri(&self) -> String {
        format!("{}{JWKS_PATH}", self.0)
    }

    /// The URL as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for PublicUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refuse = |why: &str| Err(format!("public URL {text:?}: {why}"));
        if text.contains(['#', '?']) {
            return refuse("no query or fragment allowed");
        }
        let uri: Uri = match text.parse() {
            Ok(uri) => uri,
            Err(error) => return refuse(&error.to_string()),
        };
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return refuse("the scheme must be http or https");
        }
        match uri.authority() {
            None => return refuse("a host is required"),
            Some(authority) if authority.as_str().contains('@') => {
                return refuse("no user or password allowed");
            }
            Some(authority) if authority.host().is_empty() => return refuse("a host is required"),
            Some(_) => {}
        }
        Ok(Self(text.trim_end_matches('/').to_owned()))
    }
}

/// How long HTTP caches may keep the key set. A new key needs no cache expiry
/// (verifiers refetch on an unknown `kid`); this bounds how long a retired key
/// lingers in caches.
const JWKS_MAX_AGE_SECS: u32 = 60;

impl AuthService {
    /// `GET /.well-known/jwks.json` (RFC 7517 JWK Set) and
    /// `GET /.well-known/openid-configuration` (issuer, `jwks_uri`, algorithms).
    /// The discovery document is served only when Auth has a public URL.
    pub fn http_router(&self) -> Router {
        let router = Router::new().route(JWKS_PATH, get(jwks));
        let router = match self.public_url() {
            Some(_) => router.route("/.well-known/openid-configuration", get(discovery)),
            None => router,
        };
        router.with_state(self.clone())
    }

    /// Serves [`AuthService::http_router`] on `listener` until `shutdown`.
    pub async fn serve_http(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.http_router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

async fn jwks(State(auth): State<AuthService>) -> impl IntoResponse {
    let keys: Vec<Value> = auth
        .public_jwks()
        .iter()
        .map(|jwk| Value::Object(tokenmesh_server::jwk_json(jwk)))
        .collect();
    (
        [(
            header::CACHE_CONTROL,
            format!("public, max-age={JWKS_MAX_AGE_SECS}"),
        )],
        Json(json!({ "keys": keys })),
    )
}

async fn discovery(State(auth): State<AuthService>) -> impl IntoResponse {
    let jwks_uri = auth.public_url().map(PublicUrl::jwks_uri);
    let mut algorithms: Vec<String> = auth.public_jwks().into_iter().map(|jwk| jwk.alg).collect();
    algorithms.sort();
    algorithms.dedup();
    (
        [(
            header::CACHE_CONTROL,
            format!("public, max-age={JWKS_MAX_AGE_SECS}"),
        )],
        Json(json!({
            "issuer": auth.issuer(),
            "jwks_uri": jwks_uri,
            "id_token_signing_alg_values_supported": algorithms,
            "token_endpoint_auth_signing_alg_values_supported": algorithms,
            "subject_types_supported": ["public"],
            "response_types_supported": ["token"],
            "grant_types_supported": [
                "password",
                "refresh_token",
                "client_credentials",
                "urn:ietf:params:oauth:grant-type:token-exchange"
            ],
        })),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_url_is_an_http_or_https_base_url() {
        for (given, kept) in [
            ("https://auth.example.com", "https://auth.example.com"),
            ("https://auth.example.com/", "https://auth.example.com"),
            ("http://10.0.0.1:8080/auth/", "http://10.0.0.1:8080/auth"),
            ("https://[::1]:8443", "https://[::1]:8443"),
        ] {
            let url: PublicUrl = given.parse().expect(given);
            assert_eq!(url.as_str(), kept);
            assert_eq!(url.jwks_uri(), format!("{kept}/.well-known/jwks.json"));
        }
        for (given, why) in [
            ("auth.example.com", "the scheme must be http or https"),
            ("ftp://auth.example.com", "the scheme must be http or https"),
            (
                "https://user:pw@auth.example.com",
                "no user or password allowed",
            ),
            (
                "https://auth.example.com/?next=evil",
                "no query or fragment allowed",
            ),
            (
                "https://auth.example.com/#x",
                "no query or fragment allowed",
            ),
        ] {
            assert_eq!(
                given.parse::<PublicUrl>(),
                Err(format!("public URL {given:?}: {why}"))
            );
        }
    }

    #[test]
    fn the_default_public_url_is_the_listener_https_with_tls() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        assert_eq!(
            PublicUrl::for_listener(addr, false).jwks_uri(),
            "http://127.0.0.1:8080/.well-known/jwks.json"
        );
        assert_eq!(
            PublicUrl::for_listener(addr, true).jwks_uri(),
            "https://127.0.0.1:8080/.well-known/jwks.json"
        );
    }
}
