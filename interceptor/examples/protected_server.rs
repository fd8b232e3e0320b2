//! A third-party tonic server protected by tokenmesh-interceptor: keys from the
//! issuer's JWKS over HTTP, a per-method policy, typed claims in the handlers.
//!
//!     cargo run -p tokenmesh-interceptor --example protected_server -- \
//!         http://127.0.0.1:8080/.well-known/jwks.json

use std::{sync::Arc, time::Duration};

use serde::Deserialize;
use tokenmesh_interceptor::{
    AuthLayer, Claims, HttpJwksSource, KeyStore, Policy, Verifier, VerifierConfig,
};

/// The claims your handlers read: `request.extensions().get::<Arc<User>>()`.
#[derive(Deserialize)]
struct User {
    sub: String,
    exp: i64,
    iat: i64,
    #[serde(default)]
    nbf: i64,
    #[serde(default)]
    scope: String,
}

impl Claims for User {
    fn subject(&self) -> &str {
        &self.sub
    }
    fn expires_at(&self) -> i64 {
        self.exp
    }
    fn issued_at(&self) -> i64 {
        self.iat
    }
    fn not_before(&self) -> i64 {
        self.nbf
    }
    fn scope(&self) -> &str {
        &self.scope
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let jwks = std::env::args()
        .nth(1)
        .unwrap_or("http://127.0.0.1:8080/.well-known/jwks.json".into());
    let keys = KeyStore::remote(HttpJwksSource::new(&jwks)?);
    keys.spawn_refresher(Duration::from_secs(60));
    let config = VerifierConfig::access_tokens("tokenmesh-auth", "greeter");
    let verifier = Arc::new(Verifier::<User>::new(config, keys));
    // Or from the proto: Policy::from_descriptor_set(FILE_DESCRIPTOR_SET, RULE_OPTION, &[..])
    let policy = Policy::new().authenticated("helloworld.Greeter", "SayHello", &[]);
    let (_, health) = tonic_health::server::health_reporter(); // health: public by default
    tonic::transport::Server::builder()
        .layer(AuthLayer::new(verifier, policy))
        .add_service(health) // .add_service(GreeterServer::new(MyGreeter))
        .serve("127.0.0.1:50051".parse()?)
        .await?;
    Ok(())
}
