//! Products' errors and their one mapping to gRPC statuses.

use tonic::Status;

/// Everything that can go wrong in Products.
#[derive(Debug, thiserror::Error)]
pub enum ProductsError {
    /// A request field is missing or malformed.
    #[error(transparent)]
    InvalidArgument(#[from] tokenmesh_server::FieldViolation),
    /// No such product.
    #[error("product {0} not found")]
    ProductNotFound(String),
    /// The caller may not see this product.
    #[error("not entitled to product {0}")]
    NotEntitled(String),
    /// Asking about another subject needs the entitlement-check scope.
    #[error("checking another subject's entitlements requires scope `{0}`")]
    CheckScopeRequired(&'static str),
    /// The product id is taken.
    #[error("product {0} already exists")]
    ProductExists(String),
    /// Too many concurrent writers kept colliding.
    #[error("contention on {0}")]
    Contention(&'static str),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Signing a grant failed.
    #[error("signing: {0}")]
    Signing(#[from] tokenmesh_server::SigningKeyError),
}

impl From<ProductsError> for Status {
    fn from(error: ProductsError) -> Self {
        match error {
            ProductsError::InvalidArgument(violation) => violation.into(),
            ProductsError::ProductNotFound(_) => Status::not_found(error.to_string()),
            ProductsError::NotEntitled(_) | ProductsError::CheckScopeRequired(_) => {
                Status::permission_denied(error.to_string())
            }
            ProductsError::ProductExists(_) => Status::already_exists(error.to_string()),
            ProductsError::Database(_)
            | ProductsError::Migrate(_)
            | ProductsError::Signing(_)
            | ProductsError::Contention(_) => {
                tracing::error!(%error, "internal error");
                Status::internal("internal error")
            }
        }
    }
}
