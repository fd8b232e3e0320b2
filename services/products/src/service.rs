//! The ProductsService handlers.

use std::{sync::Arc, time::Duration};

use tokenmesh_interceptor::{
    AuthLayer, Claims, KeyStore, Policy, RevocationSet, Verifier, VerifierConfig,
};
use tokenmesh_proto::{
    auth::v1::{GetJwksRequest, Jwks},
    claims::v1::EntitlementClaims,
    products::v1::{
        CheckEntitlementRequest, CheckEntitlementResponse, GetProductRequest, ListProductsRequest,
        ListProductsResponse, Product,
        products_service_server::{self, ProductsServiceServer},
    },
};
use tokenmesh_server::{Caller, SigningKey, caller, now_unix, paging::PageRequest, random_token};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::{ProductsError, Store};

/// JOSE `typ` of entitlement grants; distinct from `at+jwt` so that a grant can
/// never pass for an access token, nor the reverse.
pub const GRANT_TOKEN_TYPE: &str = "entitlement+jwt";
/// Scope that lets a service ask about any subject's entitlements.
pub const ENTITLEMENT_CHECK_SCOPE: &str = "entitlements:check";
/// Scope that sees the whole catalogue.
const ADMIN_SCOPE: &str = "admin";
/// Version of `claims.v1.EntitlementClaims` this build emits.
const GRANT_CLAIMS_VERSION: u32 = 1;

/// How Products issues grants and whose access tokens it accepts.
#[derive(Debug, Clone)]
pub struct ProductsConfig {
    /// `iss` of entitlement grants.
    pub issuer: String,
    /// `iss` of the access tokens Products accepts (Auth's).
    pub access_token_issuer: String,
    /// Lifetime of entitlement grants.
    pub grant_ttl: Duration,
}

impl ProductsConfig {
    /// Grants from `issuer`, valid 5 minutes; access tokens from `access_token_issuer`.
    pub fn new(issuer: impl Into<String>, access_token_issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            access_token_issuer: access_token_issuer.into(),
            grant_ttl: Duration::from_secs(300),
        }
    }
}

/// The Products service.
#[derive(Debug, Clone)]
pub struct ProductsService {
    store: Store,
    key: Arc<SigningKey>,
    config: Arc<ProductsConfig>,
}

const SERVICE: &str = products_service_server::SERVICE_NAME;

impl ProductsService {
    /// Products over `store`, signing grants with `key`.
    pub fn new(store: Store, key: Arc<SigningKey>, config: ProductsConfig) -> Self {
        Self {
            store,
            key,
            config: Arc::new(config),
        }
    }

    /// Who may call what.
    pub fn policy() -> Policy {
        Policy::new()
            .authenticated(SERVICE, "ListProducts", &[])
            .authenticated(SERVICE, "GetProduct", &[])
            .authenticated(SERVICE, "CheckEntitlement", &[])
            .public(SERVICE, "GetJwks")
    }

    /// Serves Products on `listener` until `shutdown`, accepting access tokens
    /// verified with `access_token_keys` and not in `revocations`.
    pub async fn serve(
        self,
        listener: TcpListener,
        access_token_keys: Arc<KeyStore>,
        revocations: Arc<RevocationSet>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), tokenmesh_server::ServeError> {
        let config = VerifierConfig::access_tokens(&self.config.access_token_issuer, "products");
        let verifier =
            Verifier::<Caller>::new(config, access_token_keys).with_revocations(revocations);
        let layer = AuthLayer::new(Arc::new(verifier), Self::policy());
        tokenmesh_server::serve(listener, ProductsServiceServer::new(self), layer, shutdown).await
    }

    fn grant(&self, subject: &str, product_ids: Vec<String>) -> Result<String, ProductsError> {
        let now = now_unix();
        let claims = EntitlementClaims {
            iss: self.config.issuer.clone(),
            sub: subject.to_owned(),
            aud: vec!["orders".into()],
            exp: now + self.config.grant_ttl.as_secs() as i64,
            iat: now,
            nbf: now,
            jti: random_token(16),
            ver: GRANT_CLAIMS_VERSION,
            product_ids,
        };
        Ok(self.key.sign(GRANT_TOKEN_TYPE, &claims)?)
    }
}

fn required(field: &'static str, value: &str) -> Result<(), ProductsError> {
    if value.is_empty() {
        return Err(ProductsError::InvalidArgument {
            field,
            reason: "required",
        });
    }
    Ok(())
}

#[tonic::async_trait]
impl products_service_server::ProductsService for ProductsService {
    #[instrument(skip_all)]
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
        let visible_to = (!caller.has_scope(ADMIN_SCOPE)).then_some(subject);
        let rows = self
            .store
            .list_products(
                visible_to,
                page.after.as_deref().unwrap_or_default(),
                page.fetch_limit(),
            )
            .await?;
        let (products, next_page_token) = page.finish(rows, |product| product.id.clone());
        let entitled = self.store.entitled_product_ids(subject).await?;
        let entitlement_token = self.grant(subject, entitled)?;
        Ok(Response::new(ListProductsResponse {
            products,
            next_page_token,
            entitlement_token,
        }))
    }

    #[instrument(skip_all, fields(product_id = %request.get_ref().id))]
    async fn get_product(
        &self,
        request: Request<GetProductRequest>,
    ) -> Result<Response<Product>, Status> {
        let caller = caller(&request)?;
        let id = &request.get_ref().id;
        required("id", id)?;
        let product = self
            .store
            .product(id)
            .await?
            .ok_or_else(|| ProductsError::ProductNotFound(id.clone()))?;
        if !caller.has_scope(ADMIN_SCOPE) && !self.store.is_entitled(caller.subject(), id).await? {
            return Err(ProductsError::NotEntitled(id.clone()).into());
        }
        Ok(Response::new(product))
    }

    #[instrument(skip_all, fields(subject = %request.get_ref().subject, product_id = %request.get_ref().product_id))]
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
        if subject != caller.subject() && !caller.has_scope(ENTITLEMENT_CHECK_SCOPE) {
            return Err(ProductsError::CheckScopeRequired(ENTITLEMENT_CHECK_SCOPE).into());
        }
        if self.store.product(product_id).await?.is_none() {
            return Err(ProductsError::ProductNotFound(product_id.clone()).into());
        }
        let allowed = self.store.is_entitled(subject, product_id).await?;
        Ok(Response::new(CheckEntitlementResponse { allowed }))
    }

    #[instrument(skip_all)]
    async fn get_jwks(&self, _request: Request<GetJwksRequest>) -> Result<Response<Jwks>, Status> {
        Ok(Response::new(Jwks {
            keys: vec![self.key.public_jwk().clone()],
        }))
    }
}
