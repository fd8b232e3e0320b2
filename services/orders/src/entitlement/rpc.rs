//! The rpc source: `CheckEntitlement` on Products, as Orders acting for the
//! caller (RFC 8693 exchange), behind a short cache that the feed invalidates
//! on every change it sees. Products' answer carries the entitlement's terms;
//! the order is decided from them as the other sources do.

use std::{sync::Arc, time::Duration};

use tokenmesh_interceptor::{AttachToken, AttachTokenLayer, SubjectToken};
use tokenmesh_proto::products::v1::{
    CheckEntitlementRequest, products_service_client::ProductsServiceClient,
};
use tokenmesh_server::TokenExchanger;
use tonic::{Code, Request, transport::Channel};
use tower::Layer;

use super::{
    Answer, Query, Source, SourceError, SourceKind,
    terms::{Standing, Terms},
};

/// Products' answers by (subject, product id): whatever the quantity asked.
pub type RpcCache = moka::future::Cache<(String, String), Standing>;

/// Answers by asking Products.
#[derive(Debug)]
pub struct RpcSource {
    /// Products, called as Orders acting for the caller: the client layer
    /// exchanges the request's subject token, never forwards it.
    products: ProductsServiceClient<AttachToken<Channel>>,
    cache: RpcCache,
    /// Zero: no cache, every decision is a call (what "rpc cold" measures).
    ttl: Duration,
}

impl RpcSource {
    /// Asks Products over `products`, with tokens from `exchanger`, reusing an
    /// answer for `ttl`.
    pub fn new(products: Channel, exchanger: Arc<TokenExchanger>, ttl: Duration) -> Self {
        Self {
            products: ProductsServiceClient::new(
                AttachTokenLayer::shared(exchanger).layer(products),
            ),
            cache: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
            ttl,
        }
    }

    /// The cache, for the feed to forget answers that changed.
    pub fn cache(&self) -> RpcCache {
        self.cache.clone()
    }

    async fn check(&self, query: &Query<'_>) -> Result<Standing, Code> {
        let mut request = Request::new(CheckEntitlementRequest {
            subject: query.subject.to_owned(),
            product_id: query.product_id.to_owned(),
        });
        request
            .extensions_mut()
            .insert(SubjectToken(query.access_token.into()));
        match self.products.clone().check_entitlement(request).await {
            Ok(response) if response.get_ref().allowed => Ok(Standing::Entitled(
                Terms::from_proto(response.get_ref().terms.as_ref()),
            )),
            Ok(_) => Ok(Standing::NotEntitled),
            Err(status) if status.code() == Code::NotFound => Ok(Standing::UnknownProduct),
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "CheckEntitlement failed");
                Err(status.code())
            }
        }
    }
}

#[tonic::async_trait]
impl Source for RpcSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Rpc
    }

    async fn answer(&self, query: &Query<'_>) -> Result<Answer, SourceError> {
        let standing = if self.ttl.is_zero() {
            self.check(query).await
        } else {
            let key = (query.subject.to_owned(), query.product_id.to_owned());
            // Concurrent misses for one key share one call (moka coalesces them).
            self.cache
                .try_get_with(key, self.check(query))
                .await
                .map_err(|code| *code)
        };
        let standing = standing.map_err(|code| match code {
            Code::Unavailable => SourceError::Unavailable(code),
            code => SourceError::Failed(code),
        })?;
        Ok(standing.answer(query.quantity))
    }
}
