//! Orders' errors and their one mapping to gRPC statuses.

use tonic::Status;

use crate::store::StoreError;

/// Everything that can go wrong in Orders.
#[derive(Debug, thiserror::Error)]
pub enum OrdersError {
    /// A request field is missing or malformed.
    #[error(transparent)]
    InvalidArgument(#[from] tokenmesh_server::FieldViolation),
    /// No such product.
    #[error("product {0} not found")]
    ProductNotFound(String),
    /// No such order among the caller's.
    #[error("order {0} not found")]
    OrderNotFound(String),
    /// The caller is not entitled to the product.
    #[error("not entitled to product {0}")]
    NotEntitled(String),
    /// The caller's entitlement does not include ordering.
    #[error("not allowed to order product {0}")]
    OrderNotAllowed(String),
    /// The `request_id` already placed an order with other contents.
    #[error("request_id {0} was already used for a different order")]
    RequestIdReused(String),
    /// The order exceeds the entitlement's quantity limit.
    #[error("quantity exceeds the limit of {limit} for product {product_id}")]
    QuantityOverLimit {
        /// The product.
        product_id: String,
        /// Its limit.
        limit: u32,
    },
    /// The grant (the only configured source) has a claims version this reader
    /// does not accept.
    #[error("entitlement grant version {found} is not supported; this service reads {accepted}")]
    GrantVersionUnsupported {
        /// The grant's version.
        found: u32,
        /// The accepted versions.
        accepted: String,
    },
    /// No source was reachable or conclusive: retry later.
    #[error("no entitlement source could decide: {0}")]
    Undecided(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<OrdersError> for Status {
    fn from(error: OrdersError) -> Self {
        match error {
            OrdersError::InvalidArgument(violation) => violation.into(),
            OrdersError::ProductNotFound(_) | OrdersError::OrderNotFound(_) => {
                Status::not_found(error.to_string())
            }
            OrdersError::NotEntitled(_)
            | OrdersError::OrderNotAllowed(_)
            | OrdersError::QuantityOverLimit { .. } => Status::permission_denied(error.to_string()),
            OrdersError::GrantVersionUnsupported { .. } => {
                Status::failed_precondition(error.to_string())
            }
            OrdersError::RequestIdReused(_) => Status::already_exists(error.to_string()),
            OrdersError::Undecided(_) => Status::unavailable(error.to_string()),
            OrdersError::Store(error) if error.is_unavailable() => error.unavailable_status(),
            OrdersError::Store(_) => {
                tracing::error!(%error, "internal error");
                Status::internal("internal error")
            }
        }
    }
}
