//! Auth's errors and their one mapping to gRPC statuses.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::store::StoreError;

/// Everything that can go wrong in Auth.
#[derive(Debug, thiserror::Error)]
pub enum AuthServiceError {
    /// A request field is missing or malformed.
    #[error(transparent)]
    InvalidArgument(#[from] tokenmesh_server::FieldViolation),
    /// Unknown user, wrong password or deactivated user: deliberately one answer.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// Too many failed logins for this username: wait `retry_after`.
    #[error("too many failed logins; retry in {} s", whole_seconds(.retry_after))]
    Throttled {
        /// How long to wait.
        retry_after: Duration,
    },
    /// The refresh token cannot be used (unknown, expired, revoked, reused):
    /// deliberately one answer, the reason only in the server's log.
    #[error("invalid refresh token")]
    RefreshRefused(&'static str),
    /// Too many Refresh, Logout or IssueServiceToken calls for one key (client
    /// address, client id): wait `retry_after`.
    #[error("too many requests; retry in {} s", whole_seconds(.retry_after))]
    RateLimited {
        /// How long to wait.
        retry_after: Duration,
    },
    /// The username is taken.
    #[error("user {0} already exists")]
    UserExists(String),
    /// No such user.
    #[error("user {0} not found")]
    UserNotFound(String),
    /// Unknown client id or wrong secret: deliberately one answer.
    #[error("invalid client credentials")]
    InvalidClientCredentials,
    /// The client may not get tokens for this audience.
    #[error("audience {0} is not allowed for this client")]
    AudienceNotAllowed(String),
    /// Only registered service clients may exchange tokens.
    #[error("only service clients may exchange tokens")]
    NotAServiceClient,
    /// The token to exchange is not a valid access token.
    #[error("subject_token: {0}")]
    InvalidSubjectToken(tokenmesh_interceptor::AuthError),
    /// The store failed (database, migrations, contention).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing a password failed.
    #[error("password hashing: {0}")]
    PasswordHash(String),
    /// Signing a token failed.
    #[error("signing: {0}")]
    Signing(#[from] tokenmesh_server::SigningKeyError),
    /// A stored private key could not be sealed or opened with the
    /// key-encryption key.
    #[error(transparent)]
    KeyEncryption(#[from] tokenmesh_server::KekError),
    /// The store holds no key that signs (rows removed behind Auth's back).
    #[error("no signing key in the store")]
    NoSigningKey,
    /// A blocking task panicked or was cancelled.
    #[error("worker: {0}")]
    Worker(#[from] tokio::task::JoinError),
}

/// A wait in the message, in whole seconds rounded up: waiting the printed
/// time is always enough (`RetryInfo` carries the exact delay).
fn whole_seconds(wait: &Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

impl From<AuthServiceError> for Status {
    fn from(error: AuthServiceError) -> Self {
        match error {
            AuthServiceError::InvalidArgument(violation) => violation.into(),
            AuthServiceError::InvalidCredentials
            | AuthServiceError::RefreshRefused(_)
            | AuthServiceError::InvalidClientCredentials => {
                Status::unauthenticated(error.to_string())
            }
            AuthServiceError::Throttled { retry_after }
            | AuthServiceError::RateLimited { retry_after } => Status::with_error_details(
                Code::ResourceExhausted,
                error.to_string(),
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            AuthServiceError::UserExists(_) => Status::already_exists(error.to_string()),
            AuthServiceError::UserNotFound(_) => Status::not_found(error.to_string()),
            AuthServiceError::AudienceNotAllowed(_) | AuthServiceError::NotAServiceClient => {
                Status::permission_denied(error.to_string())
            }
            AuthServiceError::InvalidSubjectToken(_) => Status::invalid_argument(error.to_string()),
            AuthServiceError::Store(error) if error.is_unavailable() => error.unavailable_status(),
            AuthServiceError::Store(_)
            | AuthServiceError::PasswordHash(_)
            | AuthServiceError::Signing(_)
            | AuthServiceError::KeyEncryption(_)
            | AuthServiceError::NoSigningKey
            | AuthServiceError::Worker(_) => {
                tracing::error!(%error, "internal error");
                Status::internal("internal error")
            }
        }
    }
}
