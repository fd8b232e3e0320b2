//! The verified caller: access-token claims as the auth layer hands them to handlers.

use std::sync::Arc;

use serde::Deserialize;
use tokenmesh_interceptor::{AuthError, Claims};
use tokenmesh_proto::claims::v1::AccessClaims;
use tonic::{Request, Status};

/// The access-claims versions this build reads.
pub const ACCESS_CLAIMS_VERSION: u32 = 1;

/// Verified access-token claims of the caller, found in request extensions of
/// every authenticated method.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct Caller(pub AccessClaims);

impl Claims for Caller {
    fn subject(&self) -> &str {
        &self.0.sub
    }

    fn expires_at(&self) -> i64 {
        self.0.exp
    }

    fn not_before(&self) -> i64 {
        self.0.nbf
    }

    fn scope(&self) -> &str {
        &self.0.scope
    }

    fn token_id(&self) -> &str {
        &self.0.jti
    }

    fn issued_at(&self) -> i64 {
        self.0.iat
    }

    fn session_id(&self) -> &str {
        &self.0.sid
    }

    fn check_version(&self) -> Result<(), AuthError> {
        if self.0.ver == ACCESS_CLAIMS_VERSION {
            return Ok(());
        }
        Err(AuthError::UnsupportedVersion {
            found: self.0.ver,
            accepted: ACCESS_CLAIMS_VERSION.to_string(),
        })
    }
}

/// The caller of an authenticated method. Absent only if the method's policy
/// is public, which is a wiring bug: answered `INTERNAL`, and logged.
pub fn caller<T>(request: &Request<T>) -> Result<Arc<Caller>, Status> {
    request
        .extensions()
        .get::<Arc<Caller>>()
        .cloned()
        .ok_or_else(|| {
            tracing::error!("handler expects a caller but its method is not authenticated");
            Status::internal("internal error")
        })
}
