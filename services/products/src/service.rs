//! The ProductsService handlers.

use std::{sync::Arc, time::Duration};

use tokenmesh_interceptor::{Claims, SharedClock, system_clock};
use tokenmesh_proto::{
    auth::v1::{GetJwksRequest, Jwks},
    names::{action, audience, scope},
    products::v1::{
        CheckEntitlementRequest, CheckEntitlementResponse, CreateProductRequest, Entitlement,
        EntitlementRequest, EntitlementResponse, GetProductRequest, ListEntitlementsRequest,
        ListEntitlementsResponse, ListProductsRequest, ListProductsResponse, Product,
        SetEntitlementLimitsRequest, WatchEntitlementsRequest,
        products_service_server::{self, ProductsServiceServer},
    },
};
use tokenmesh_server::{
    Feed, FieldViolation, Gate, KeyRing, Served, Wakeups, bounded, caller,
    paging::PageRequest,
    required, shown,
    wakeups::{ENTITLEMENTS, SQLITE_POLL},
};
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::{
    GrantedRecord, ProductRecord, ProductsError, Store, Terms,
    cache::CachedReads,
    grant::GrantCache,
    store::Written,
    view::{self, FeedView},
    watch::{self, ChangeStream, Compaction},
};

/// Largest request Products decodes: a `CreateProduct` with the longest id, name
/// and description (about 4.5 KiB) and room to spare; above it,
/// RESOURCE_EXHAUSTED before any handler runs.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Largest response Products encodes: a full page of products with the longest
/// descriptions, and a grant.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// How Products issues grants.
#[derive(Debug, Clone)]
pub struct ProductsConfig {
    /// `iss` of entitlement grants.
    pub issuer: String,
    /// Lifetime of entitlement grants.
    pub grant_ttl: Duration,
    /// Which `tokenmesh.claims.vN.EntitlementClaims` grants are emitted as (1 or
    /// 2): emit 1 until every Orders reads 2.
    pub grant_version: u32,
    /// Largest grant, in bytes of the compact JWT; a caller whose entitlements do
    /// not fit gets no grant (and `GRANT_STATUS_TOO_LARGE`).
    pub grant_max_bytes: usize,
    /// The time grants are issued and checked at.
    pub clock: SharedClock,
    /// What wakes the feed's streams: writes here and, on PostgreSQL, every
    /// replica's (channel `entitlements`).
    pub wakeups: Wakeups,
    /// How the feed is compacted.
    pub compaction: Compaction,
}

impl ProductsConfig {
    /// Grants from `issuer`, valid 5 minutes.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            grant_ttl: Duration::from_secs(300),
            grant_version: 2,
            grant_max_bytes: 4096,
            clock: system_clock(),
            wakeups: Wakeups::local(&[ENTITLEMENTS], SQLITE_POLL),
            compaction: Compaction::default(),
        }
    }
}

/// The Products service.
#[derive(Debug, Clone)]
pub struct ProductsService {
    store: Store,
    keys: Arc<KeyRing>,
    config: Arc<ProductsConfig>,
    /// The entitlement feed's streams.
    feed: Arc<Feed>,
    /// `GetProduct`'s and `ListProducts`' reads, cached until the feed moves.
    pub(crate) reads: Arc<CachedReads>,
    /// Grants `ListProducts` signed, reused until the feed moves.
    grants: Arc<GrantCache>,
}

impl ProductsService {
    /// Products over `store`, signing grants with the key `keys` signs with
    /// and publishing every live one.
    pub fn new(store: Store, keys: Arc<KeyRing>, config: ProductsConfig) -> Self {
        let view = FeedView::new(config.clock.clone(), config.wakeups.poll());
        Self {
            reads: Arc::new(CachedReads::new(store.clone(), Arc::new(view))),
            store,
            keys,
            feed: Arc::new(Feed::new(
                config.clock.clone(),
                config.wakeups.clone(),
                ENTITLEMENTS,
            )),
            config: Arc::new(config),
            grants: Arc::default(),
        }
    }

    /// Serves Products behind `gate` until `shutdown`.
    pub async fn serve(self, gate: Gate, shutdown: impl Future<Output = ()> + Send) -> Served {
        let compaction = self.config.compaction.covering(self.config.grant_ttl);
        tokio::spawn(watch::compact_periodically(
            Arc::downgrade(&self.feed),
            self.store.clone(),
            compaction,
            self.config.clock.clone(),
        ));
        // Until it has read the feed once, reads go to the database.
        tokio::spawn(view::follow(
            Arc::downgrade(self.reads.view()),
            self.store.clone(),
            self.config.wakeups.subscribe(ENTITLEMENTS),
            self.config.wakeups.poll(),
        ));
        let feed = self.feed.clone();
        let shutdown = async move {
            shutdown.await;
            // Open feed streams would hold the graceful drain open.
            feed.close();
        };
        let service = ProductsServiceServer::new(self)
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_RESPONSE_BYTES);
        gate.serve(audience::PRODUCTS, service, shutdown).await
    }

    /// The product `id`, or why not.
    async fn existing(&self, id: &str) -> Result<ProductRecord, ProductsError> {
        self.store
            .product(id)
            .await?
            .ok_or_else(|| ProductsError::ProductNotFound(id.to_owned()))
    }

    /// Moves this replica's feed view past `change` — the next read here sees
    /// it (read-your-writes) — and wakes the feed's streams if it changed
    /// anything.
    fn written(&self, change: Written) {
        self.reads.view().advance_to(change.cursor);
        if change.changed {
            self.feed.notify();
        }
    }

    /// [`ProductsService::written`], and the answer to `change`.
    fn published(&self, change: Written) -> EntitlementResponse {
        self.written(change);
        EntitlementResponse {
            cursor: u64::try_from(change.cursor).unwrap_or_default(),
            changed: change.changed,
        }
    }
}

fn product(record: ProductRecord) -> Product {
    let ProductRecord {
        id,
        name,
        description,
        price_cents,
    } = record;
    Product {
        id,
        name,
        description,
        price_cents,
    }
}

fn entitlement(record: GrantedRecord) -> Entitlement {
    Entitlement {
        terms: Some(record.terms.to_proto()),
        subject: record.subject,
        product_id: record.product_id,
        granted_at: record.granted_at,
    }
}

/// The page cursor of an entitlement: its subject's length, then subject and
/// product id, so that neither needs a separator it could contain.
fn entitlement_cursor(record: &GrantedRecord) -> String {
    format!(
        "{}:{}{}",
        record.subject.len(),
        record.subject,
        record.product_id
    )
}

/// The subject and product id in a cursor made by [`entitlement_cursor`].
fn parse_entitlement_cursor(cursor: &str) -> Result<(&str, &str), ProductsError> {
    let invalid = || FieldViolation::new("page_token", "not a token this service issued");
    let (length, rest) = cursor.split_once(':').ok_or_else(invalid)?;
    let length: usize = length.parse().map_err(|_| invalid())?;
    if !rest.is_char_boundary(length) {
        return Err(invalid().into());
    }
    Ok(rest.split_at(length))
}

/// `subject` and `product_id` of an admin entitlement change, both required.
fn entitlement_fields(request: &EntitlementRequest) -> Result<(&str, &str), ProductsError> {
    required("subject", &request.subject)?;
    required("product_id", &request.product_id)?;
    Ok((&request.subject, &request.product_id))
}

#[tonic::async_trait]
impl products_service_server::ProductsService for ProductsService {
    #[instrument(level = "debug", skip_all)]
    async fn list_products(
        &self,
        request: Request<ListProductsRequest>,
    ) -> Result<Response<ListProductsResponse>, Status> {
        let caller = caller(&request)?;
        let ListProductsRequest {
            page_size,
            page_token,
        } = request.get_ref();
        let page = PageRequest::parse(*page_size, page_token).map_err(ProductsError::from)?;
        let subject = caller.subject();
        let visible_to = (!caller.has_scope(scope::ADMIN)).then_some(subject);
        // One label for the page and the grant, read before either.
        let revision = self.reads.revision();
        let records = self
            .reads
            .list_products(
                revision,
                visible_to,
                page.after.as_deref().unwrap_or_default(),
                page.fetch_limit(),
            )
            .await
            .map_err(ProductsError::from)?;
        let (records, next_page_token) =
            page.finish(records.as_ref().clone(), |product| product.id.clone());
        let (entitlement_token, grant_status) = crate::grant::issue(
            &self.store,
            &self.keys.signer(),
            &self.config,
            &self.grants,
            revision,
            subject,
        )
        .await?;
        Ok(Response::new(ListProductsResponse {
            products: records.into_iter().map(product).collect(),
            next_page_token,
            entitlement_token,
            grant_status: grant_status.into(),
        }))
    }

    #[instrument(level = "debug", skip_all, fields(product_id = %shown(&request.get_ref().id)))]
    async fn get_product(
        &self,
        request: Request<GetProductRequest>,
    ) -> Result<Response<Product>, Status> {
        let caller = caller(&request)?;
        let id = &request.get_ref().id;
        required("id", id)?;
        let found = self
            .reads
            .product_for(self.reads.revision(), id, caller.subject())
            .await
            .map_err(ProductsError::from)?;
        let (record, terms) = found
            .as_ref()
            .as_ref()
            .ok_or_else(|| ProductsError::ProductNotFound(id.clone()))?;
        if !caller.has_scope(scope::ADMIN) {
            let terms = terms
                .as_ref()
                .ok_or_else(|| ProductsError::NotEntitled(id.clone()))?;
            if !terms.allows(action::VIEW) {
                return Err(ProductsError::ViewNotAllowed(id.clone()).into());
            }
        }
        Ok(Response::new(product(record.clone())))
    }

    #[instrument(level = "debug", skip_all, fields(subject = %shown(&request.get_ref().subject), product_id = %shown(&request.get_ref().product_id)))]
    async fn check_entitlement(
        &self,
        request: Request<CheckEntitlementRequest>,
    ) -> Result<Response<CheckEntitlementResponse>, Status> {
        let caller = caller(&request)?;
        let CheckEntitlementRequest {
            subject,
            product_id,
        } = request.get_ref();
        required("subject", subject)?;
        required("product_id", product_id)?;
        if subject != caller.subject() && !caller.has_scope(scope::ENTITLEMENTS_CHECK) {
            return Err(ProductsError::CheckScopeRequired(scope::ENTITLEMENTS_CHECK).into());
        }
        self.existing(product_id).await?;
        let terms = self
            .store
            .entitlement(subject, product_id)
            .await
            .map_err(ProductsError::from)?;
        Ok(Response::new(CheckEntitlementResponse {
            allowed: terms.is_some(),
            terms: terms.as_ref().map(Terms::to_proto),
        }))
    }

    #[instrument(level = "debug", skip_all)]
    async fn get_jwks(&self, _request: Request<GetJwksRequest>) -> Result<Response<Jwks>, Status> {
        Ok(Response::new(Jwks {
            keys: self.keys.published(),
        }))
    }

    #[instrument(level = "debug", skip_all, fields(product_id = %shown(&request.get_ref().id)))]
    async fn create_product(
        &self,
        request: Request<CreateProductRequest>,
    ) -> Result<Response<Product>, Status> {
        let CreateProductRequest {
            id,
            name,
            price_cents,
            description,
        } = request.into_inner();
        required("id", &id)?;
        required("name", &name)?;
        bounded("description", &description)?;
        if price_cents < 0 {
            return Err(ProductsError::from(FieldViolation::new(
                "price_cents",
                "must not be negative",
            ))
            .into());
        }
        let record = ProductRecord {
            id,
            name,
            description,
            price_cents,
        };
        let written = self
            .store
            .create_product(&record)
            .await
            .map_err(ProductsError::from)?;
        self.written(written);
        if !written.changed {
            return Err(ProductsError::ProductExists(record.id).into());
        }
        Ok(Response::new(product(record)))
    }

    #[instrument(level = "debug", skip_all, fields(subject = %shown(&request.get_ref().subject), product_id = %shown(&request.get_ref().product_id)))]
    async fn grant_entitlement(
        &self,
        request: Request<EntitlementRequest>,
    ) -> Result<Response<EntitlementResponse>, Status> {
        let (subject, product_id) = entitlement_fields(request.get_ref())?;
        self.existing(product_id).await?;
        let change = self
            .store
            .grant(subject, product_id)
            .await
            .map_err(ProductsError::from)?;
        Ok(Response::new(self.published(change)))
    }

    #[instrument(level = "debug", skip_all, fields(subject = %shown(&request.get_ref().subject), product_id = %shown(&request.get_ref().product_id)))]
    async fn revoke_entitlement(
        &self,
        request: Request<EntitlementRequest>,
    ) -> Result<Response<EntitlementResponse>, Status> {
        let (subject, product_id) = entitlement_fields(request.get_ref())?;
        let change = self
            .store
            .revoke(subject, product_id)
            .await
            .map_err(ProductsError::from)?;
        Ok(Response::new(self.published(change)))
    }

    #[instrument(level = "debug", skip_all, fields(subject = %shown(&request.get_ref().subject), product_id = %shown(&request.get_ref().product_id)))]
    async fn set_entitlement_limits(
        &self,
        request: Request<SetEntitlementLimitsRequest>,
    ) -> Result<Response<EntitlementResponse>, Status> {
        let SetEntitlementLimitsRequest {
            subject,
            product_id,
            actions,
            max_quantity,
        } = request.get_ref();
        required("subject", subject)?;
        required("product_id", product_id)?;
        for action in actions {
            bounded("actions", action)?;
        }
        let terms = Terms::new(actions, *max_quantity).map_err(ProductsError::from)?;
        self.existing(product_id).await?;
        if !self
            .store
            .is_entitled(subject, product_id)
            .await
            .map_err(ProductsError::from)?
        {
            return Err(ProductsError::EntitlementNotFound(product_id.clone()).into());
        }
        let change = self
            .store
            .set_terms(subject, product_id, &terms)
            .await
            .map_err(ProductsError::from)?;
        Ok(Response::new(self.published(change)))
    }

    #[instrument(level = "debug", skip_all, fields(subject = %shown(&request.get_ref().subject), product_id = %shown(&request.get_ref().product_id)))]
    async fn list_entitlements(
        &self,
        request: Request<ListEntitlementsRequest>,
    ) -> Result<Response<ListEntitlementsResponse>, Status> {
        let ListEntitlementsRequest {
            subject,
            product_id,
            page_size,
            page_token,
        } = request.get_ref();
        bounded("subject", subject)?;
        bounded("product_id", product_id)?;
        let page = PageRequest::parse(*page_size, page_token).map_err(ProductsError::from)?;
        let after = match page.after.as_deref() {
            Some(cursor) => parse_entitlement_cursor(cursor)?,
            None => ("", ""),
        };
        let records = self
            .store
            .list_entitlements(subject, product_id, after, page.fetch_limit())
            .await
            .map_err(ProductsError::from)?;
        let (records, next_page_token) = page.finish(records, entitlement_cursor);
        Ok(Response::new(ListEntitlementsResponse {
            entitlements: records.into_iter().map(entitlement).collect(),
            next_page_token,
        }))
    }

    type WatchEntitlementsStream = ChangeStream;

    #[instrument(level = "debug", skip_all, fields(since = request.get_ref().since))]
    async fn watch_entitlements(
        &self,
        request: Request<WatchEntitlementsRequest>,
    ) -> Result<Response<Self::WatchEntitlementsStream>, Status> {
        let since = i64::try_from(request.get_ref().since).unwrap_or(i64::MAX);
        let expires_at = caller(&request)?.expires_at();
        let stream: ChangeStream = if request.get_ref().snapshot {
            watch::snapshot_then_changes(self.feed.clone(), self.store.clone(), expires_at)
        } else {
            Box::pin(watch::changes(
                &self.feed,
                self.store.clone(),
                since,
                expires_at,
            ))
        };
        Ok(Response::new(stream))
    }
}
