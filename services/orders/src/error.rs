//! Orders' errors and their one mapping to gRPC statuses.

use std::collections::HashMap;

use tokenmesh_interceptor::ERROR_DOMAIN;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

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
    /// Each refusal with its code and a `google.rpc.ErrorInfo`: a stable reason
    /// for clients to act on without reading the message, and what they need to
    /// act on it.
    fn from(error: OrdersError) -> Self {
        let product = |id: &str| vec![("product_id", id.to_owned())];
        let (code, reason, metadata) = match &error {
            OrdersError::InvalidArgument(violation) => return violation.clone().into(),
            OrdersError::Store(store) if store.is_unavailable() => {
                return store.unavailable_status();
            }
            OrdersError::Store(_) => {
                tracing::error!(%error, "internal error");
                return Status::internal("internal error");
            }
            OrdersError::ProductNotFound(id) => (Code::NotFound, "PRODUCT_NOT_FOUND", product(id)),
            OrdersError::OrderNotFound(_) => (Code::NotFound, "ORDER_NOT_FOUND", vec![]),
            OrdersError::NotEntitled(id) => (Code::PermissionDenied, "NOT_ENTITLED", product(id)),
            OrdersError::OrderNotAllowed(id) => {
                (Code::PermissionDenied, "ORDER_NOT_ALLOWED", product(id))
            }
            OrdersError::QuantityOverLimit { product_id, limit } => (
                Code::PermissionDenied,
                "QUANTITY_OVER_LIMIT",
                vec![
                    ("product_id", product_id.clone()),
                    ("limit", limit.to_string()),
                ],
            ),
            OrdersError::GrantVersionUnsupported { found, accepted } => (
                Code::FailedPrecondition,
                "GRANT_VERSION_UNSUPPORTED",
                vec![("found", found.to_string()), ("accepted", accepted.clone())],
            ),
            OrdersError::RequestIdReused(_) => (Code::AlreadyExists, "REQUEST_ID_REUSED", vec![]),
            OrdersError::Undecided(_) => (Code::Unavailable, "ENTITLEMENT_UNDECIDED", vec![]),
        };
        let metadata: HashMap<String, String> = metadata
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect();
        let details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata);
        Status::with_error_details(code, error.to_string(), details)
    }
}
