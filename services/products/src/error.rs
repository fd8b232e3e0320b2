//! Products' errors and their one mapping to gRPC statuses.

use tonic::Status;

use crate::store::StoreError;

/// Everything that can go wrong in Products.
#[derive(Debug, thiserror::Error)]
pub enum ProductsError {
    /// A request field is missing or malformed.
    #[error(transparent)]
    InvalidArgument(#[from] tokenmesh_server::FieldViolation),
    /// No such product.
    #[error("product {0} not found")]
    ProductNotFound(String),
    /// The subject holds no entitlement to this product.
    #[error("no entitlement to product {0} for this subject: grant it first")]
    EntitlementNotFound(String),
    /// The caller may not see this product.
    #[error("not entitled to product {0}")]
    NotEntitled(String),
    /// The caller's entitlement does not include viewing.
    #[error("not allowed to view product {0}")]
    ViewNotAllowed(String),
    /// Asking about another subject needs the entitlement-check scope.
    #[error("checking another subject's entitlements requires scope `{0}`")]
    CheckScopeRequired(&'static str),
    /// The product id is taken.
    #[error("product {0} already exists")]
    ProductExists(String),
    /// The subscriber's cursor is older than the feed's compaction.
    #[error(
        "cursor {since} is older than the entitlement feed's compaction: the oldest cursor still served is {oldest}; resubscribe with `snapshot`"
    )]
    Compacted {
        /// The cursor asked for.
        since: i64,
        /// The oldest cursor still served.
        oldest: i64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Signing a grant failed.
    #[error("signing: {0}")]
    Signing(#[from] tokenmesh_server::SigningKeyError),
}

impl From<ProductsError> for Status {
    fn from(error: ProductsError) -> Self {
        match error {
            ProductsError::InvalidArgument(violation) => violation.into(),
            ProductsError::ProductNotFound(_) | ProductsError::EntitlementNotFound(_) => {
                Status::not_found(error.to_string())
            }
            ProductsError::NotEntitled(_)
            | ProductsError::ViewNotAllowed(_)
            | ProductsError::CheckScopeRequired(_) => Status::permission_denied(error.to_string()),
            ProductsError::ProductExists(_) => Status::already_exists(error.to_string()),
            ProductsError::Compacted { .. } => Status::out_of_range(error.to_string()),
            ProductsError::Store(error) if error.is_unavailable() => error.unavailable_status(),
            ProductsError::Store(_) | ProductsError::Signing(_) => {
                tracing::error!(%error, "internal error");
                Status::internal("internal error")
            }
        }
    }
}
