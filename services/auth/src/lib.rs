//! tokenmesh's Auth service: the only signer of access tokens. Checks passwords
//! (argon2id), issues RFC 9068 access tokens and rotating refresh tokens, service
//! and exchanged tokens, publishes its keys as a JWKS and streams revocations.
//!
//! `service` holds the gRPC handlers; each concern has its module: `users`
//! (passwords, throttle, cut-offs), `sessions` (refresh tokens), `tokens`
//! (minting, service tokens, exchange), `keys`, `revocations`, `config`, and
//! `store` for the tables.

#![forbid(unsafe_code)]

mod config;
mod counters;
mod error;
mod http;
mod keys;
mod limits;
mod revocations;
mod service;
mod sessions;
mod start;
mod state;
mod store;
mod tokens;
mod users;

pub use config::AuthConfig;
pub use error::AuthServiceError;
pub use http::PublicUrl;
pub use keys::SigningKeys;
pub use start::{Args, open, start};
pub use state::{AuthService, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
pub use store::{SCHEMA, Store, StoreError};
pub use users::{NewUser, ThrottleConfig};

use tokenmesh_interceptor::system_clock;
use tokenmesh_proto::names::scope;

/// The demo users `tokenmesh up --demo` seeds: (username, password, scopes).
pub const DEMO_USERS: [(&str, &str, &str); 3] = [
    ("alice", "alice-demo", ""),
    ("bob", "bob-demo", ""),
    ("admin", "admin-demo", scope::ADMIN),
];

/// Seeds the demo users; users that exist are left as they are.
pub async fn seed_demo(store: &Store) -> Result<(), AuthServiceError> {
    let clock = system_clock();
    for (username, password, scopes) in DEMO_USERS {
        let user = NewUser {
            username: username.into(),
            password: password.into(),
            scopes: scopes.into(),
        };
        users::create_if_absent(store, &clock, user).await?;
    }
    Ok(())
}
