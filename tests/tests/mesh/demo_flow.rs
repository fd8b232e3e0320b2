//! The demo flow end to end: login → list → order (grant, then RPC) → read back.

use tokenmesh_proto::{
    orders::v1::{EntitlementSource, GetOrderRequest, ListOrdersRequest, PlaceOrderRequest},
    products::v1::{CheckEntitlementRequest, GetProductRequest, ListProductsRequest},
};
use tokenmesh_tests::{Mesh, calls::assert_refusal};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

fn ids<T>(items: &[T], id: impl Fn(&T) -> &str) -> Vec<String> {
    items.iter().map(|item| id(item).to_owned()).collect()
}

#[tokio::test]
async fn alice_lists_her_products_orders_with_the_grant_and_without_it() {
    let mesh = Mesh::start().await;
    let mut products = mesh.products_as("alice").await;
    let mut orders = mesh.orders_as("alice").await;

    let listed = products
        .list_products(ListProductsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        ids(&listed.products, |p| &p.id),
        ["P-100", "P-101", "P-102"]
    );
    assert_eq!(listed.next_page_token, "");
    assert!(
        !listed.entitlement_token.is_empty(),
        "a grant comes with the list"
    );

    let with_grant = orders
        .place_order(PlaceOrderRequest {
            product_id: "P-100".into(),
            quantity: 2,
            request_id: "flow-1".into(),
            entitlement_token: listed.entitlement_token.clone(),
        })
        .await
        .expect("order with grant")
        .into_inner();
    assert_eq!(with_grant.entitlement_source(), EntitlementSource::Grant);
    assert_eq!(
        (with_grant.subject.as_str(), with_grant.quantity),
        ("alice", 2)
    );
    assert!(with_grant.id.starts_with("ord_") && with_grant.created_at.is_some());

    let without_grant = orders
        .place_order(PlaceOrderRequest {
            product_id: "P-101".into(),
            quantity: 1,
            request_id: "flow-2".into(),
            entitlement_token: String::new(),
        })
        .await
        .expect("order via rpc")
        .into_inner();
    // The default chain is grant, replica, rpc: Orders' replica decides.
    assert_eq!(
        without_grant.entitlement_source(),
        EntitlementSource::Replica
    );

    let fetched = orders
        .get_order(GetOrderRequest {
            id: with_grant.id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(fetched, with_grant);

    let mine = orders
        .list_orders(ListOrdersRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        ids(&mine.orders, |o| &o.id),
        [without_grant.id.clone(), with_grant.id.clone()],
        "newest first"
    );
    mesh.shutdown().await;
}

#[tokio::test]
async fn each_user_sees_only_their_own_products_and_orders() {
    let mesh = Mesh::start().await;
    let mut alice = mesh.orders_as("alice").await;
    let order = alice
        .place_order(PlaceOrderRequest {
            product_id: "P-101".into(),
            quantity: 1,
            request_id: "mine".into(),
            entitlement_token: String::new(),
        })
        .await
        .expect("alice orders")
        .into_inner();

    let mut bob_products = mesh.products_as("bob").await;
    let bobs = bob_products
        .list_products(ListProductsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(ids(&bobs.products, |p| &p.id), ["P-101"]);
    let hidden = bob_products
        .get_product(GetProductRequest { id: "P-100".into() })
        .await
        .expect_err("not bob's");
    assert_eq!(hidden.code(), Code::PermissionDenied);
    assert_eq!(hidden.message(), "not entitled to product P-100");

    let mut bob = mesh.orders_as("bob").await;
    let bob_orders = bob
        .list_orders(ListOrdersRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(bob_orders.orders.is_empty());
    // Someone else's order is as unknown as one that never was.
    assert_refusal(
        bob.get_order(GetOrderRequest {
            id: order.id.clone(),
        })
        .await,
        Code::NotFound,
        "ORDER_NOT_FOUND",
        &format!("order {} not found", order.id),
        &[],
    );

    let mut admin = mesh.products_as("admin").await;
    let all = admin
        .list_products(ListProductsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        ids(&all.products, |p| &p.id),
        ["P-100", "P-101", "P-102", "P-103", "P-104"]
    );
    mesh.shutdown().await;
}

#[tokio::test]
async fn products_pages_through_the_catalogue() {
    let mesh = Mesh::start().await;
    let mut admin = mesh.products_as("admin").await;
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = admin
            .list_products(ListProductsRequest {
                page_size: 2,
                page_token,
            })
            .await
            .expect("page")
            .into_inner();
        assert!(page.products.len() <= 2);
        seen.extend(ids(&page.products, |p| &p.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, ["P-100", "P-101", "P-102", "P-103", "P-104"]);

    let bad = admin
        .list_products(ListProductsRequest {
            page_size: -1,
            page_token: String::new(),
        })
        .await
        .expect_err("negative size");
    assert_eq!(
        (bad.code(), bad.message()),
        (Code::InvalidArgument, "page_size: must not be negative")
    );
    let bad = admin
        .list_products(ListProductsRequest {
            page_size: 0,
            page_token: "%%%".into(),
        })
        .await
        .expect_err("forged token");
    assert_eq!(
        (bad.code(), bad.message()),
        (
            Code::InvalidArgument,
            "page_token: not a token this service issued"
        )
    );
    mesh.shutdown().await;
}

#[tokio::test]
async fn check_entitlement_answers_for_the_caller_and_refuses_others_without_scope() {
    let mesh = Mesh::start().await;
    let mut alice = mesh.products_as("alice").await;
    let check = |subject: &str, product_id: &str| CheckEntitlementRequest {
        subject: subject.into(),
        product_id: product_id.into(),
    };
    assert!(
        alice
            .check_entitlement(check("alice", "P-100"))
            .await
            .expect("own")
            .into_inner()
            .allowed
    );
    assert!(
        !alice
            .check_entitlement(check("alice", "P-104"))
            .await
            .expect("own")
            .into_inner()
            .allowed
    );
    let other = alice
        .check_entitlement(check("bob", "P-101"))
        .await
        .expect_err("someone else");
    assert_eq!(other.code(), Code::PermissionDenied);
    assert_eq!(
        other.message(),
        "checking another subject's entitlements requires scope `entitlements:check`"
    );
    let unknown = alice
        .check_entitlement(check("alice", "P-999"))
        .await
        .expect_err("no such product");
    assert_eq!(
        (unknown.code(), unknown.message()),
        (Code::NotFound, "product P-999 not found")
    );
    mesh.shutdown().await;
}

#[tokio::test]
async fn health_and_jwks_need_no_token() {
    let mesh = Mesh::start().await;
    for addr in [mesh.auth_addr(), mesh.products_addr(), mesh.orders_addr()] {
        let mut health = HealthClient::new(Mesh::channel(addr).await);
        let overall = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("health");
        assert_eq!(
            overall.into_inner().status(),
            ServingStatus::Serving,
            "{addr}"
        );
    }
    let mut health = HealthClient::new(Mesh::channel(mesh.orders_addr()).await);
    let orders = health
        .check(HealthCheckRequest {
            service: "tokenmesh.orders.v1.OrdersService".into(),
        })
        .await
        .expect("health");
    assert_eq!(orders.into_inner().status(), ServingStatus::Serving);

    let jwks = mesh.jwks().await;
    assert_eq!(jwks.keys.len(), 1);
    let key = &jwks.keys[0];
    assert_eq!(
        (
            key.kty.as_str(),
            key.crv.as_str(),
            key.alg.as_str(),
            key.r#use.as_str()
        ),
        ("OKP", "Ed25519", "EdDSA", "sig")
    );
    assert_eq!(key.kid, mesh.auth_minter().kid());
    mesh.shutdown().await;
}
