//! The interceptor's client layer with Auth-backed token sources: a service's
//! own client-credentials token, and a caller's token exchanged for Products —
//! attached to every call of a plain generated client.

use std::sync::Arc;

use tokenmesh_interceptor::{AttachTokenLayer, SubjectToken};
use tokenmesh_proto::products::v1::{
    CheckEntitlementRequest, ListProductsRequest, products_service_client::ProductsServiceClient,
};
use tokenmesh_server::{ServiceTokens, TokenExchanger};
use tokenmesh_tests::Mesh;
use tonic::{Code, Request, transport::Channel};
use tower::Layer;

/// Orders' service identity, as `tokenmesh up` provisioned it.
async fn orders_identity(mesh: &Mesh, audience: &str) -> (Channel, ServiceTokens) {
    let secret = std::fs::read_to_string(mesh.data_dir().join("orders-client-secret"))
        .expect("orders' client secret");
    let auth = Mesh::channel(mesh.auth_addr()).await;
    let tokens = ServiceTokens::new(auth.clone(), "orders", secret.trim(), audience);
    (auth, tokens)
}

#[tokio::test]
async fn a_client_sends_its_service_token_from_the_layer() {
    let mesh = Mesh::start().await;
    let (_, tokens) = orders_identity(&mesh, "products").await;
    let channel = AttachTokenLayer::new(tokens).layer(Mesh::channel(mesh.products_addr()).await);
    ProductsServiceClient::new(channel)
        .list_products(ListProductsRequest::default())
        .await
        .expect("a service token for Products, attached by the layer");
    mesh.shutdown().await;
}

#[tokio::test]
async fn a_client_exchanges_the_callers_token_for_each_call() {
    let mesh = Mesh::start().await;
    let alice = mesh.login("alice").await;
    let (auth, actor) = orders_identity(&mesh, "auth").await;
    let exchanger = TokenExchanger::new(auth, Arc::new(actor), "products");
    let channel = AttachTokenLayer::new(exchanger).layer(Mesh::channel(mesh.products_addr()).await);
    let mut products = ProductsServiceClient::new(channel);

    let mut request = Request::new(CheckEntitlementRequest {
        subject: "alice".into(),
        product_id: "P-100".into(),
    });
    request
        .extensions_mut()
        .insert(SubjectToken(alice.as_str().into()));
    products
        .check_entitlement(request)
        .await
        .expect("alice's token, exchanged for Products, asks about alice");

    let status = products
        .check_entitlement(CheckEntitlementRequest {
            subject: "alice".into(),
            product_id: "P-100".into(),
        })
        .await
        .expect_err("no subject token");
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::Unauthenticated,
            "no token issued: no subject token to exchange"
        )
    );
    mesh.shutdown().await;
}
