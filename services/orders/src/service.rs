//! The OrdersService handlers.

use std::sync::Arc;

use tokenmesh_interceptor::{
    AuthLayer, Claims, KeyStore, Policy, RevocationSet, Verifier, VerifierConfig,
};
use tokenmesh_proto::{
    orders::v1::{
        GetOrderRequest, ListOrdersRequest, ListOrdersResponse, Order, PlaceOrderRequest,
        orders_service_server::{self, OrdersServiceServer},
    },
    products::v1::products_service_client::ProductsServiceClient,
};
use tokenmesh_server::{Caller, TokenExchanger, caller, paging::PageRequest};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, transport::Channel};
use tracing::instrument;

use crate::{
    Grant, OrdersError, Store, entitlement,
    store::{self, NewOrder},
};

/// Longest accepted `request_id`.
const MAX_REQUEST_ID_LEN: usize = 128;
/// JOSE `typ` of Products' entitlement grants.
const GRANT_TOKEN_TYPE: &str = "entitlement+jwt";

/// Whose tokens Orders trusts.
#[derive(Debug, Clone)]
pub struct OrdersConfig {
    /// `iss` of access tokens (Auth's).
    pub access_token_issuer: String,
    /// `iss` of entitlement grants (Products').
    pub grant_issuer: String,
}

/// The Orders service.
#[derive(Debug, Clone)]
pub struct OrdersService {
    store: Store,
    products: ProductsServiceClient<Channel>,
    grants: Arc<Verifier<Grant>>,
    /// Turns the caller's token into one for Products, acting as Orders.
    exchanger: Arc<TokenExchanger>,
    config: Arc<OrdersConfig>,
}

const SERVICE: &str = orders_service_server::SERVICE_NAME;

impl OrdersService {
    /// Orders over `store`, calling Products on `products` with tokens from
    /// `exchanger`, and verifying Products' grants with `grant_keys`.
    pub fn new(
        store: Store,
        products: Channel,
        exchanger: Arc<TokenExchanger>,
        grant_keys: Arc<KeyStore>,
        config: OrdersConfig,
    ) -> Self {
        let grant_config = VerifierConfig::access_tokens(&config.grant_issuer, "orders")
            .with_token_type(GRANT_TOKEN_TYPE);
        Self {
            store,
            products: ProductsServiceClient::new(products),
            grants: Arc::new(Verifier::new(grant_config, grant_keys)),
            exchanger,
            config: Arc::new(config),
        }
    }

    /// Who may call what.
    pub fn policy() -> Policy {
        Policy::new()
            .authenticated(SERVICE, "PlaceOrder", &[])
            .authenticated(SERVICE, "GetOrder", &[])
            .authenticated(SERVICE, "ListOrders", &[])
    }

    /// Serves Orders on `listener` until `shutdown`, accepting access tokens
    /// verified with `access_token_keys` and not in `revocations`.
    pub async fn serve(
        self,
        listener: TcpListener,
        access_token_keys: Arc<KeyStore>,
        revocations: Arc<RevocationSet>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), tokenmesh_server::ServeError> {
        let config = VerifierConfig::access_tokens(&self.config.access_token_issuer, "orders");
        let verifier =
            Verifier::<Caller>::new(config, access_token_keys).with_revocations(revocations);
        let layer = AuthLayer::new(Arc::new(verifier), Self::policy());
        tokenmesh_server::serve(listener, OrdersServiceServer::new(self), layer, shutdown).await
    }

    /// The grant, if it alone proves the caller's entitlement; otherwise `false`
    /// and the chain moves on. An invalid grant is not an error: the caller may
    /// still be entitled, and Products has the last word.
    async fn grant_proves(&self, grant: &str, subject: &str, product_id: &str) -> bool {
        if grant.is_empty() {
            return false;
        }
        match self.grants.verify(grant).await {
            Ok(grant) if grant.proves(subject, product_id) => true,
            Ok(_) => {
                tracing::debug!(
                    reason = "grant does not cover this subject and product",
                    "grant inconclusive"
                );
                false
            }
            Err(error) => {
                tracing::debug!(reason = error.reason(), "grant rejected");
                false
            }
        }
    }
}

fn validate(request: &PlaceOrderRequest) -> Result<(), OrdersError> {
    let invalid = |field, reason| Err(OrdersError::InvalidArgument { field, reason });
    if request.product_id.is_empty() {
        return invalid("product_id", "required");
    }
    if request.quantity < 1 {
        return invalid("quantity", "must be at least 1");
    }
    if request.request_id.is_empty() {
        return invalid("request_id", "required");
    }
    if request.request_id.len() > MAX_REQUEST_ID_LEN {
        return invalid("request_id", "longer than 128 bytes");
    }
    Ok(())
}

/// The order a retry should get back: the first attempt's, if it asked for the
/// same thing.
fn replay(existing: Order, request: &PlaceOrderRequest) -> Result<Order, OrdersError> {
    if existing.product_id == request.product_id && existing.quantity == request.quantity {
        Ok(existing)
    } else {
        Err(OrdersError::RequestIdReused(request.request_id.clone()))
    }
}

/// The bearer token the auth layer already checked, to exchange for Products.
fn access_token<T>(request: &Request<T>) -> &str {
    request
        .metadata()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .map(|(_, token)| token.trim())
        .unwrap_or_default()
}

#[tonic::async_trait]
impl orders_service_server::OrdersService for OrdersService {
    #[instrument(skip_all, fields(product_id = %request.get_ref().product_id, request_id = %request.get_ref().request_id))]
    async fn place_order(
        &self,
        request: Request<PlaceOrderRequest>,
    ) -> Result<Response<Order>, Status> {
        let caller = caller(&request)?;
        let subject = caller.subject();
        let body = request.get_ref();
        validate(body)?;
        if let Some(existing) = self.store.by_request_id(subject, &body.request_id).await? {
            return Ok(Response::new(replay(existing, body)?));
        }

        let source = if self
            .grant_proves(&body.entitlement_token, subject, &body.product_id)
            .await
        {
            tokenmesh_proto::orders::v1::EntitlementSource::Grant
        } else {
            // Products is called as Orders acting for the user (RFC 8693), never
            // with the user's own token.
            let token = self
                .exchanger
                .exchange(access_token(&request))
                .await
                .map_err(|status| {
                    tracing::warn!(code = ?status.code(), message = status.message(), "token exchange failed");
                    OrdersError::EntitlementCheckUnavailable(format!("token exchange failed ({:?})", status.code()))
                })?;
            entitlement::check_with_products(
                self.products.clone(),
                &token,
                subject,
                &body.product_id,
            )
            .await?
        };

        let new = NewOrder {
            subject,
            product_id: &body.product_id,
            quantity: body.quantity,
            request_id: &body.request_id,
            source,
        };
        let order = match self.store.insert(&new).await? {
            Some(order) => order,
            // A concurrent retry inserted first: answer with its order.
            None => {
                let existing = self.store.by_request_id(subject, &body.request_id).await?;
                let existing = existing
                    .ok_or_else(|| OrdersError::RequestIdReused(body.request_id.clone()))?;
                replay(existing, body)?
            }
        };
        tracing::info!(order_id = %order.id, source = ?source, "order placed");
        Ok(Response::new(order))
    }

    #[instrument(skip_all, fields(order_id = %request.get_ref().id))]
    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<Order>, Status> {
        let caller = caller(&request)?;
        let id = &request.get_ref().id;
        if id.is_empty() {
            return Err(OrdersError::InvalidArgument {
                field: "id",
                reason: "required",
            }
            .into());
        }
        // Another user's order is "not found": its existence is not the caller's business.
        let order = self
            .store
            .by_id(caller.subject(), id)
            .await?
            .ok_or_else(|| OrdersError::OrderNotFound(id.clone()))?;
        Ok(Response::new(order))
    }

    #[instrument(skip_all)]
    async fn list_orders(
        &self,
        request: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        let caller = caller(&request)?;
        let ListOrdersRequest {
            page_size,
            page_token,
        } = request.get_ref();
        let page = PageRequest::parse(*page_size, page_token).map_err(OrdersError::from)?;
        let after = match page.after.as_deref() {
            None => None,
            Some(cursor) => Some(store::parse_cursor(cursor).ok_or(
                OrdersError::InvalidArgument {
                    field: "page_token",
                    reason: "not a token this service issued",
                },
            )?),
        };
        let rows = self
            .store
            .list(caller.subject(), after, page.fetch_limit())
            .await?;
        let (orders, next_page_token) = page.finish(rows, store::cursor);
        Ok(Response::new(ListOrdersResponse {
            orders,
            next_page_token,
        }))
    }
}
