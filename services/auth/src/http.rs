//! Auth's keys over plain HTTP, for verifiers that speak JOSE but not gRPC
//! (Envoy `jwt_authn`, Istio, PyJWT, any JWKS client): the JWK Set and an
//! OpenID-style discovery document pointing at it.

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, header},
    response::IntoResponse,
    routing::get,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::AuthService;

/// How long HTTP caches may keep the key set. A new key needs no cache expiry
/// (verifiers refetch on an unknown `kid`); this bounds how long a retired key
/// lingers in caches.
const JWKS_MAX_AGE_SECS: u32 = 60;

impl AuthService {
    /// `GET /.well-known/jwks.json` (RFC 7517 JWK Set) and
    /// `GET /.well-known/openid-configuration` (issuer, `jwks_uri`, algorithms).
    pub fn http_router(&self) -> Router {
        Router::new()
            .route("/.well-known/jwks.json", get(jwks))
            .route("/.well-known/openid-configuration", get(discovery))
            .with_state(self.clone())
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

async fn discovery(State(auth): State<AuthService>, headers: HeaderMap) -> impl IntoResponse {
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or("localhost");
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
            "jwks_uri": format!("http://{host}/.well-known/jwks.json"),
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
