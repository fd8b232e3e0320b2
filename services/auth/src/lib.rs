//! tokenmesh's Auth service: the only signer of access tokens. Checks passwords
//! (argon2id), issues RFC 9068 access tokens and rotating refresh tokens, service
//! and exchanged tokens, publishes its keys as a JWKS and streams revocations.

#![forbid(unsafe_code)]

mod error;
mod http;
mod keyring;
mod password;
mod service;
mod store;
mod throttle;

pub use error::AuthServiceError;
pub use service::{
    ADMIN_SCOPE, AuthConfig, AuthService, EXCHANGE_SCOPE, NewUser, REVOCATIONS_SCOPE,
};
pub use store::{Store, StoreError};
pub use throttle::ThrottleConfig;

/// The demo users `tokenmesh up --demo` seeds: (username, password, scopes).
pub const DEMO_USERS: [(&str, &str, &str); 3] = [
    ("alice", "alice-demo", ""),
    ("bob", "bob-demo", ""),
    ("admin", "admin-demo", "admin"),
];

/// Seeds the demo users; users that exist are left as they are.
pub async fn seed_demo(store: &Store) -> Result<(), AuthServiceError> {
    for (username, password, scopes) in DEMO_USERS {
        let user = NewUser {
            username: username.into(),
            password: password.into(),
            scopes: scopes.into(),
        };
        service::create_user_if_absent(store, user).await?;
    }
    Ok(())
}
