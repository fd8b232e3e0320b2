//! Auth's errors and their one mapping to gRPC statuses.

use tonic::Status;

/// Everything that can go wrong in Auth.
#[derive(Debug, thiserror::Error)]
pub enum AuthServiceError {
    /// A request field is missing or malformed.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The proto field name.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Unknown user, wrong password or deactivated user: deliberately one answer.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Hashing a password failed.
    #[error("password hashing: {0}")]
    PasswordHash(String),
    /// Signing a token failed.
    #[error("signing: {0}")]
    Signing(#[from] tokenmesh_server::SigningKeyError),
    /// A blocking task panicked or was cancelled.
    #[error("worker: {0}")]
    Worker(#[from] tokio::task::JoinError),
}

impl From<AuthServiceError> for Status {
    fn from(error: AuthServiceError) -> Self {
        match error {
            AuthServiceError::InvalidArgument { .. } => Status::invalid_argument(error.to_string()),
            AuthServiceError::InvalidCredentials => Status::unauthenticated(error.to_string()),
            AuthServiceError::Database(_)
            | AuthServiceError::Migrate(_)
            | AuthServiceError::PasswordHash(_)
            | AuthServiceError::Signing(_)
            | AuthServiceError::Worker(_) => {
                tracing::error!(%error, "internal error");
                Status::internal("internal error")
            }
        }
    }
}
