//! Deciding entitlement: the grant in the request body when it is conclusive,
//! else Products' `CheckEntitlement`. The first conclusive source wins; the order
//! records which one it was.

use serde::Deserialize;
use tokenmesh_interceptor::{AuthError, Claims};
use tokenmesh_proto::{
    claims::v1::EntitlementClaims,
    orders::v1::EntitlementSource,
    products::v1::{CheckEntitlementRequest, products_service_client::ProductsServiceClient},
};
use tokenmesh_server::bearer_metadata;
use tonic::{Code, transport::Channel};

use crate::OrdersError;

/// The entitlement-claims versions this build reads.
const GRANT_CLAIMS_VERSION: u32 = 1;

/// A verified entitlement grant from Products.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct Grant(pub EntitlementClaims);

impl Claims for Grant {
    fn subject(&self) -> &str {
        &self.0.sub
    }

    fn check_version(&self) -> Result<(), AuthError> {
        if self.0.ver == GRANT_CLAIMS_VERSION {
            return Ok(());
        }
        Err(AuthError::UnsupportedVersion {
            found: self.0.ver,
            accepted: GRANT_CLAIMS_VERSION.to_string(),
        })
    }
}

impl Grant {
    /// Whether this grant proves that `subject` may order `product_id`.
    pub fn proves(&self, subject: &str, product_id: &str) -> bool {
        self.0.sub == subject && self.0.product_ids.iter().any(|id| id == product_id)
    }
}

/// Asks Products whether `subject` is entitled to `product_id`, calling with
/// `access_token` (exchanged for Products, acting for `subject`).
pub async fn check_with_products(
    mut products: ProductsServiceClient<Channel>,
    access_token: &str,
    subject: &str,
    product_id: &str,
) -> Result<EntitlementSource, OrdersError> {
    let mut request = tonic::Request::new(CheckEntitlementRequest {
        subject: subject.to_owned(),
        product_id: product_id.to_owned(),
    });
    request.metadata_mut().insert(
        "authorization",
        bearer_metadata(access_token).map_err(|_| {
            OrdersError::EntitlementCheckUnavailable("caller's token cannot be forwarded".into())
        })?,
    );
    match products.check_entitlement(request).await {
        Ok(response) if response.get_ref().allowed => Ok(EntitlementSource::Rpc),
        Ok(_) => Err(OrdersError::NotEntitled(product_id.to_owned())),
        Err(status) if status.code() == Code::NotFound => {
            Err(OrdersError::ProductNotFound(product_id.to_owned()))
        }
        Err(status) if status.code() == Code::PermissionDenied => {
            Err(OrdersError::NotEntitled(product_id.to_owned()))
        }
        Err(status) => {
            tracing::warn!(code = ?status.code(), message = status.message(), "CheckEntitlement failed");
            Err(OrdersError::EntitlementCheckUnavailable(format!(
                "{:?}",
                status.code()
            )))
        }
    }
}
