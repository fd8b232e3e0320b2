//! The OrdersService handlers.

use std::sync::Arc;

use tokenmesh_interceptor::{Claims, FeedFreshness, KeyStore, SharedClock};
use tokenmesh_proto::{
    names::audience,
    orders::v1::{
        EntitlementSource, GetOrderRequest, ListOrdersRequest, ListOrdersResponse, Order,
        PlaceOrderRequest,
        orders_service_server::{self, OrdersServiceServer},
    },
};
use tokenmesh_server::{
    FieldViolation, Gate, Served, ServiceTokens, TokenExchanger, bounded, caller,
    paging::PageRequest, required, shown,
};
use tonic::{Request, Response, Status, transport::Channel};
use tracing::instrument;

use crate::{
    OrdersError, SourceKind, Store,
    entitlement::{self, ChainConfig, Decision, Denial, Entitlements, Query},
    store::{self, NewOrder, OrderRecord, StoreError},
};

/// Largest request Orders decodes: a `PlaceOrder` with the largest
/// `entitlement_token` (64 KiB) and its other fields; above it,
/// RESOURCE_EXHAUSTED before any handler runs.
pub const MAX_REQUEST_BYTES: usize = 80 * 1024;
/// Largest response Orders encodes: a full page of orders.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// Whose tokens Orders trusts and how it decides entitlement.
#[derive(Debug, Clone)]
pub struct OrdersConfig {
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
    /// The time tokens and grants are checked at.
    pub clock: SharedClock,
}

/// The Orders service.
#[derive(Debug, Clone)]
pub struct OrdersService {
    store: Store,
    entitlements: Arc<Entitlements>,
}

impl OrdersService {
    /// Orders over `store`, deciding entitlement with `deps` as `config` says.
    /// Loads the entitlement replica from `store` into memory.
    pub async fn new(
        store: Store,
        deps: OrdersDeps,
        config: OrdersConfig,
    ) -> Result<Self, StoreError> {
        let entitlements =
            Entitlements::new(&config.chain, &config.grant_issuer, store.clone(), &deps).await?;
        Ok(Self {
            store,
            entitlements: Arc::new(entitlements),
        })
    }

    /// Whether the entitlement replica has caught up with Products since start
    /// (or no configured source reads it).
    pub fn replica_caught_up(&self) -> bool {
        self.entitlements.replica_caught_up()
    }

    /// How current the entitlement replica's feed is.
    pub fn replica_freshness(&self) -> Arc<FeedFreshness> {
        self.entitlements.replica_freshness().clone()
    }

    /// Serves Orders behind `gate` until `shutdown`. While it serves, the
    /// entitlement replica follows Products.
    pub async fn serve(self, gate: Gate, shutdown: impl Future<Output = ()> + Send) -> Served {
        let feed = self.entitlements.spawn_replica_feed();
        let result = gate
            .serve(
                audience::ORDERS,
                OrdersServiceServer::new(self)
                    .max_decoding_message_size(MAX_REQUEST_BYTES)
                    .max_encoding_message_size(MAX_RESPONSE_BYTES),
                shutdown,
            )
            .await;
        if let Some(feed) = feed {
            feed.abort();
        }
        result
    }
}

impl From<SourceKind> for EntitlementSource {
    fn from(source: SourceKind) -> Self {
        match source {
            SourceKind::Grant => Self::Grant,
            SourceKind::Replica => Self::Replica,
            SourceKind::Rpc => Self::Rpc,
        }
    }
}

impl From<OrderRecord> for Order {
    fn from(record: OrderRecord) -> Self {
        let created_at_us = record.created_at_us;
        Self {
            id: record.id,
            product_id: record.product_id,
            quantity: i32::try_from(record.quantity).unwrap_or(i32::MAX),
            subject: record.subject,
            entitlement_source: EntitlementSource::from(record.entitlement_source).into(),
            created_at: Some(prost_types::Timestamp {
                seconds: created_at_us.div_euclid(1_000_000),
                nanos: (created_at_us.rem_euclid(1_000_000) * 1_000) as i32,
            }),
            request_id: record.request_id,
        }
    }
}

/// The source that allowed the order, or the error that answers the caller.
fn allowed_by(decision: Decision, product_id: &str) -> Result<SourceKind, OrdersError> {
    let product_id = || product_id.to_owned();
    match decision {
        Decision::Allowed(source) => Ok(source),
        Decision::Denied { denial, .. } => Err(match denial {
            Denial::NotEntitled => OrdersError::NotEntitled(product_id()),
            Denial::OrderNotAllowed => OrdersError::OrderNotAllowed(product_id()),
            Denial::UnknownProduct => OrdersError::ProductNotFound(product_id()),
            Denial::OverLimit(limit) => OrdersError::QuantityOverLimit {
                product_id: product_id(),
                limit,
            },
        }),
        Decision::UnsupportedVersion {
            found, accepted, ..
        } => {
            let accepted: Vec<String> = accepted.iter().map(u32::to_string).collect();
            Err(OrdersError::GrantVersionUnsupported {
                found,
                accepted: accepted.join(", "),
            })
        }
        Decision::Undecided(reasons) => Err(OrdersError::Undecided(entitlement::reasons(&reasons))),
    }
}

fn validate(request: &PlaceOrderRequest) -> Result<(), OrdersError> {
    let invalid = |field, reason| Err(FieldViolation::new(field, reason).into());
    required("product_id", &request.product_id)?;
    required("request_id", &request.request_id)?;
    bounded("entitlement_token", &request.entitlement_token)?;
    if request.quantity < 1 {
        return invalid("quantity", "must be at least 1");
    }
    Ok(())
}

/// The order a retry should get back: the first attempt's, if it asked for the
/// same thing.
fn replay(existing: OrderRecord, request: &PlaceOrderRequest) -> Result<Order, OrdersError> {
    if existing.product_id == request.product_id && existing.quantity == i64::from(request.quantity)
    {
        Ok(existing.into())
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
    #[instrument(level = "debug", skip_all, fields(product_id = %shown(&request.get_ref().product_id), request_id = %shown(&request.get_ref().request_id)))]
    async fn place_order(
        &self,
        request: Request<PlaceOrderRequest>,
    ) -> Result<Response<Order>, Status> {
        let caller = caller(&request)?;
        let subject = caller.subject();
        let body = request.get_ref();
        validate(body)?;

        // Decide first, from memory, and insert: a retry conflicts on its
        // request id and is answered below, so a new order reads nothing.
        let query = Query {
            subject,
            product_id: &body.product_id,
            quantity: body.quantity,
            grant: Some(body.entitlement_token.as_str()).filter(|token| !token.is_empty()),
            access_token: access_token(&request),
        };
        let source = match allowed_by(self.entitlements.decide(&query).await, query.product_id) {
            Ok(source) => source,
            // A retry of an order placed before a revocation (or while a
            // source could still decide) gets its order back; nothing else
            // is refused any differently, and nothing is written.
            Err(refused) => {
                let existing = self
                    .store
                    .by_request_id(subject, &body.request_id)
                    .await
                    .map_err(OrdersError::from)?;
                return match existing {
                    Some(existing) => Ok(Response::new(replay(existing, body)?)),
                    None => Err(refused.into()),
                };
            }
        };

        let new = NewOrder {
            subject,
            product_id: &body.product_id,
            quantity: body.quantity,
            request_id: &body.request_id,
            source,
        };
        let order = match self.store.insert(&new).await.map_err(OrdersError::from)? {
            Some(order) => Order::from(order),
            // A retry, or a concurrent one that inserted first: answer with
            // the order its request id placed.
            None => {
                let existing = self
                    .store
                    .by_request_id(subject, &body.request_id)
                    .await
                    .map_err(OrdersError::from)?
                    .ok_or_else(|| OrdersError::RequestIdReused(body.request_id.clone()))?;
                replay(existing, body)?
            }
        };
        tracing::debug!(order_id = %order.id, source = ?source, "order placed");
        Ok(Response::new(order))
    }

    #[instrument(level = "debug", skip_all, fields(order_id = %shown(&request.get_ref().id)))]
    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<Order>, Status> {
        let caller = caller(&request)?;
        let id = &request.get_ref().id;
        required("id", id).map_err(OrdersError::from)?;
        // Another user's order is "not found": its existence is not the caller's business.
        let order = self
            .store
            .by_id(caller.subject(), id)
            .await
            .map_err(OrdersError::from)?
            .ok_or_else(|| OrdersError::OrderNotFound(id.clone()))?;
        Ok(Response::new(order.into()))
    }

    #[instrument(level = "debug", skip_all)]
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
        let records = self
            .store
            .list(caller.subject(), after, page.fetch_limit())
            .await
            .map_err(OrdersError::from)?;
        let (records, next_page_token) = page.finish(records, OrderRecord::cursor);
        Ok(Response::new(ListOrdersResponse {
            orders: records.into_iter().map(Order::from).collect(),
            next_page_token,
        }))
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;
    use crate::entitlement::Reason;

    #[test]
    fn each_decision_answers_the_caller_as_it_always_has() {
        let denied = |denial| Decision::Denied {
            by: SourceKind::Replica,
            denial,
        };
        let cases = [
            (
                denied(Denial::NotEntitled),
                Code::PermissionDenied,
                "not entitled to product P-104",
            ),
            (
                denied(Denial::UnknownProduct),
                Code::NotFound,
                "product P-104 not found",
            ),
            (
                denied(Denial::OrderNotAllowed),
                Code::PermissionDenied,
                "not allowed to order product P-104",
            ),
            (
                denied(Denial::OverLimit(2)),
                Code::PermissionDenied,
                "quantity exceeds the limit of 2 for product P-104",
            ),
            (
                Decision::UnsupportedVersion {
                    by: SourceKind::Grant,
                    found: 3,
                    accepted: vec![1, 2],
                },
                Code::FailedPrecondition,
                "entitlement grant version 3 is not supported; this service reads 1, 2",
            ),
            (
                Decision::Undecided(vec![
                    Reason {
                        source: SourceKind::Grant,
                        reason: "none in the request".into(),
                    },
                    Reason {
                        source: SourceKind::Rpc,
                        reason: "Products unavailable (Unavailable)".into(),
                    },
                ]),
                Code::Unavailable,
                "no entitlement source could decide: grant: none in the request; \
                 rpc: Products unavailable (Unavailable)",
            ),
        ];
        for (decision, code, message) in cases {
            let status = Status::from(allowed_by(decision, "P-104").expect_err(message));
            assert_eq!((status.code(), status.message()), (code, message));
        }
        assert_eq!(
            allowed_by(Decision::Allowed(SourceKind::Rpc), "P-104").expect("allowed"),
            SourceKind::Rpc
        );
    }

    #[test]
    fn a_stored_order_reads_as_it_was_placed() {
        for (source, wire) in [
            (SourceKind::Grant, EntitlementSource::Grant),
            (SourceKind::Replica, EntitlementSource::Replica),
            (SourceKind::Rpc, EntitlementSource::Rpc),
        ] {
            // The column keeps the wire's numbers: rows written before stay readable.
            assert_eq!(i64::from(source), wire as i64);
            assert_eq!(SourceKind::try_from(wire as i64), Ok(source));
        }
        let record = OrderRecord {
            id: "ord_1".into(),
            subject: "alice".into(),
            product_id: "P-100".into(),
            quantity: 2,
            request_id: "r-1".into(),
            entitlement_source: SourceKind::Replica,
            created_at_us: 1_700_000_000_123_456,
        };
        assert_eq!(record.cursor(), "1700000000123456:ord_1");
        assert_eq!(
            Order::from(record),
            Order {
                id: "ord_1".into(),
                product_id: "P-100".into(),
                quantity: 2,
                subject: "alice".into(),
                entitlement_source: EntitlementSource::Replica.into(),
                created_at: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 123_456_000,
                }),
                request_id: "r-1".into(),
            }
        );
    }
}
