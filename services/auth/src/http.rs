//! Auth's keys over plain HTTP, for verifiers that speak JOSE but not gRPC:
//! Envoy `jwt_authn`, Istio, any JWKS client.

use axum::{Json, Router, http::header, response::IntoResponse, routing::get};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::AuthService;

/// How long HTTP caches may keep the key set. Short enough that a rotated key
/// reaches every verifier well within an access token's lifetime.
const JWKS_MAX_AGE_SECS: u32 = 300;

impl AuthService {
    /// `GET /.well-known/jwks.json`: the public keys as an RFC 7517 JWK Set.
    pub fn http_router(&self) -> Router {
        let jwks = jwks_json(self);
        Router::new().route(
            "/.well-known/jwks.json",
            get(move || {
                let body = jwks.clone();
                async move {
                    (
                        [(
                            header::CACHE_CONTROL,
                            format!("public, max-age={JWKS_MAX_AGE_SECS}"),
                        )],
                        Json(body),
                    )
                        .into_response()
                }
            }),
        )
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

fn jwks_json(auth: &AuthService) -> Value {
    let keys: Vec<Value> = auth
        .public_jwks()
        .iter()
        .map(|jwk| Value::Object(tokenmesh_server::jwk_json(jwk)))
        .collect();
    json!({ "keys": keys })
}
