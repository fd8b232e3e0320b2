//! The OrdersService handlers.

use std::sync::Arc;

use tokenmesh_interceptor::{Claims, KeyStore, Policy, RevocationSet, Verifier, VerifierConfig};
use tokenmesh_proto::orders::v1::{
    GetOrderRequest, ListOrdersRequest, ListOrdersResponse, Order, PlaceOrderRequest,
    orders_service_server::{self, OrdersServiceServer},
};
use tokenmesh_server::{
    FieldViolation, ServiceTokens, TokenExchanger, caller, paging::PageRequest,
};
use tonic::{Request, Response, Status, transport::Channel};
use tracing::instrument;

use crate::{
    OrdersError, Store,
    entitlement::{ChainConfig, Entitlements},
    store::{self, NewOrder},
};

/// Longest accepted `request_id`.
const MAX_REQUEST_ID_LEN: usize = 128;
/// JOSE `typ` of Products' entitlement grants.
const GRANT_TOKEN_TYPE: &str = "entitlement+jwt";

/// Whose tokens Orders trusts and how it decides entitlement.
#[derive(Debug, Clone)]
pub struct OrdersConfig {
    /// `iss` of access tokens (Auth's).
    pub access_token_issuer: String,
    /// `iss` of entitlement grants (Products').
    pub grant_issuer: String,
    /// The entitlement sources and their settings.
    pub chain: ChainConfig,
}

/// The peers Orders works with.
#[derive(Debug, Clone)]
pub struct OrdersDeps {
    /// Products, for entitlement checks and its feed.
    pub products: Channel,
    /// Exchanges callers' tokens for tokens Products accepts.
    pub exchanger: Arc<TokenExchanger>,
    /// Products' grant keys.
    pub grant_keys: Arc<KeyStore>,
    /// Orders' own tokens for Products (the entitlement feed).
    pub products_credentials: Arc<ServiceTokens>,
}

/// The Orders service.
#[derive(Debug, Clone)]
pub struct OrdersService {
    store: Store,
    entitlements: Arc<Entitlements>,
    config: Arc<OrdersConfig>,
}

const SERVICE: &str = orders_service_server::SERVICE_NAME;

impl OrdersService {
    /// Orders over `store`, deciding entitlement with `deps` as `config` says.
    pub fn new(store: Store, deps: OrdersDeps, config: OrdersConfig) -> Self {
        let grant_config = VerifierConfig::access_tokens(&config.grant_issuer, "orders")
            .with_token_type(GRANT_TOKEN_TYPE);
        let grants = Arc::new(Verifier::new(grant_config, deps.grant_keys));
        let entitlements = Entitlements::new(
            config.chain.clone(),
            grants,
            store.clone(),
            deps.products,
            deps.exchanger,
            deps.products_credentials,
        );
        Self {
            store,
            entitlements,
            config: Arc::new(config),
        }
    }

    /// Whether the entitlement replica has caught up with Products since start.
    pub fn replica_caught_up(&self) -> bool {
        self.entitlements.replica_caught_up()
    }

    /// Who may call what: the rules declared in the proto.
    pub fn policy() -> Policy {
        tokenmesh_server::policy_for(SERVICE)
    }

    /// Serves Orders on `listener` until `shutdown`, accepting access tokens
    /// verified with `access_token_keys` and not in `revocations`.
    pub async fn serve(
        self,
        listener: impl Into<tokenmesh_server::Listener>,
        access_token_keys: Arc<KeyStore>,
        revocations: Arc<RevocationSet>,
        metrics: &tokenmesh_server::metrics::Registry,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), tokenmesh_server::ServeError> {
        let layer = tokenmesh_server::access_token_layer(
            &self.config.access_token_issuer,
            "orders",
            access_token_keys,
            revocations,
            SERVICE,
        );
        tokenmesh_server::serve(
            listener,
            OrdersServiceServer::new(self),
            layer,
            metrics,
            shutdown,
        )
        .await
    }
}

fn validate(request: &PlaceOrderRequest) -> Result<(), OrdersError> {
    let invalid = |field, reason| Err(FieldViolation::new(field, reason).into());
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
    tokenmesh_interceptor::bearer_token(request.metadata().as_ref()).unwrap_or_default()
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

        let source = self
            .entitlements
            .decide(
                subject,
                &body.product_id,
                body.quantity,
                &body.entitlement_token,
                access_token(&request),
            )
            .await?;

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
            return Err(OrdersError::from(FieldViolation::new("id", "required")).into());
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
            Some(cursor) => Some(store::parse_cursor(cursor).ok_or(OrdersError::from(
                FieldViolation::new("page_token", "not a token this service issued"),
            ))?),
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
