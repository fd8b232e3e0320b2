//! What every tokenmesh service shares: [`serve`] (health, reflection, tracing,
//! gRPC-Web for browsers and the auth layer around one gRPC service), signing keys, JWKS sources over gRPC,
//! talking to Auth as a service (tokens, exchange, revocations), the verified
//! caller type, database pools and group commit, and keys and secrets at rest.

#![forbid(unsafe_code)]

pub mod addr;
pub mod args;
mod auth_client;
mod caller;
pub mod db;
mod drain;
mod feed;
pub mod group_commit;
mod jwks;
pub mod key_ring;
pub mod key_table;
pub mod latency;
pub mod limits;
pub mod metrics;
pub mod paging;
mod policy;
pub mod private_file;
pub mod request_span;
pub mod sealing;
mod serve;
mod signing;
pub mod start;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
pub mod validate;
pub mod wakeups;
mod web;

pub use addr::{Addr, AddrError, Peer};
pub use auth_client::{
    ServiceTokens, TokenExchanger, apply_event, follow_revocations, rewind_if_went_back,
};
pub use caller::{ACCESS_CLAIMS_VERSION, Caller, caller};
pub use feed::{Feed, HEARTBEAT, Markers, SILENCE_TIMEOUT, follow, next_event};
pub use jwks::{GrpcJwksSource, jwk_json, jwk_to_jose};
pub use key_ring::{KeyRing, KeyRingError, RingConfig, Rotated, SigningKeys};
pub use key_table::KeyTable;
pub use limits::ServerLimits;
pub use policy::{Gate, policy_for};
pub use private_file::ExposedFile;
pub use sealing::{KekError, KeyEncryptionKey};
pub use serve::{LIVENESS, Servable, ServeError, Served, serve};
pub use signing::{SigningAlgorithm, SigningKey, SigningKeyError};
pub use start::{
    AccessTokens, ClientCredentials, Delegation, Environment, Running, ServiceClient, Shutdown,
    StartError,
};
pub use tls::{Listener, TlsError};
pub use validate::{FieldViolation, bounded, required, shown};
pub use wakeups::Wakeups;
pub use web::{Origin, OriginError};

use std::time::{SystemTime, UNIX_EPOCH};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// `bytes` random bytes from the OS generator, base64url without padding: ids,
/// `jti`s and opaque tokens.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}
