//! The trivial server the overhead scenarios measure: `grpc.health.v1.Health/Check`
//! and nothing else, served bare or behind tokenmesh's [`AuthLayer`] (verifying
//! Auth-style access tokens with one Ed25519 key), so the difference between the
//! two is the layer and nothing but the layer.

use std::{future::Future, sync::Arc};

use jsonwebtoken::jwk::JwkSet;
use tokenmesh_interceptor::{AuthLayer, KeySet, KeyStore, Policy, Verifier, VerifierConfig};
use tokenmesh_server::{Caller, SigningKey, jwk_to_jose};
use tokio::net::TcpListener;
use tonic::transport::{Server, server::TcpIncoming};

use crate::BenchError;

/// The method the trivial server answers.
pub const TRIVIAL_METHOD: &str = "grpc.health.v1.Health/Check";

/// The audience the trivial server's verifier requires (the minted tokens carry it).
pub const TRIVIAL_AUDIENCE: &str = "products";

/// The auth layer of the trivial server: access tokens of tokenmesh's default
/// issuer signed by `key`, for audience `products`; `Health/Check` needs one.
pub fn trivial_auth_layer(key: &SigningKey) -> Result<AuthLayer<Caller>, BenchError> {
    let jwk = jwk_to_jose(key.public_jwk()).map_err(|e| BenchError::Token(e.to_string()))?;
    let keys = KeyStore::fixed(KeySet::from_jwks(&JwkSet { keys: vec![jwk] }));
    let verifier = Verifier::<Caller>::new(
        VerifierConfig::access_tokens("tokenmesh-auth", TRIVIAL_AUDIENCE),
        keys,
    );
    let policy = Policy::new().authenticated("grpc.health.v1.Health", "Check", &[]);
    Ok(AuthLayer::new(Arc::new(verifier), policy))
}

/// Serves `Health/Check` on `listener` until `shutdown`, behind `auth` if given.
pub async fn serve_trivial(
    listener: TcpListener,
    auth: Option<AuthLayer<Caller>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), BenchError> {
    let (_reporter, health) = tonic_health::server::health_reporter();
    // As the services do: no Nagle delay on responses.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let served = match auth {
        Some(layer) => {
            Server::builder()
                .layer(layer)
                .add_service(health)
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        None => {
            Server::builder()
                .add_service(health)
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
    };
    served.map_err(|e| BenchError::Serve(e.to_string()))
}
