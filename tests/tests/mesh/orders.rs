//! PlaceOrder's rules: validation, entitlement by grant or by Products,
//! idempotent retries, and nothing written when refused.

use tokenmesh_proto::orders::v1::{EntitlementSource, ListOrdersRequest};
use tokenmesh_tests::{Mesh, Minter, OrdersClient, PRODUCTS_ISSUER, calls::assert_refusal, order};
use tonic::Code;

async fn order_count(orders: &mut OrdersClient) -> usize {
    orders
        .list_orders(ListOrdersRequest::default())
        .await
        .expect("list")
        .into_inner()
        .orders
        .len()
}

#[tokio::test]
async fn malformed_requests_are_invalid_argument_naming_the_field() {
    let mesh = Mesh::start().await;
    let mut orders = mesh.orders_as("alice").await;
    let cases = [
        (order("", 1, "r", ""), "product_id: required"),
        (order("P-100", 0, "r", ""), "quantity: must be at least 1"),
        (order("P-100", -5, "r", ""), "quantity: must be at least 1"),
        (order("P-100", 1, "", ""), "request_id: required"),
        (
            order("P-100", 1, &"x".repeat(129), ""),
            "request_id: longer than 128 bytes",
        ),
    ];
    for (request, message) in cases {
        let status = orders.place_order(request).await.expect_err("invalid");
        assert_eq!(
            (status.code(), status.message()),
            (Code::InvalidArgument, message)
        );
    }
    assert_eq!(order_count(&mut orders).await, 0);
    mesh.shutdown().await;
}

#[tokio::test]
async fn unknown_product_is_not_found_and_unentitled_product_is_denied_with_nothing_written() {
    let mesh = Mesh::start().await;
    let mut orders = mesh.orders_as("alice").await;
    let grant = mesh.grant_of("alice").await;

    let unknown = orders
        .place_order(order("P-999", 1, "u-1", &grant))
        .await
        .expect_err("unknown");
    assert_eq!(
        (unknown.code(), unknown.message()),
        (Code::NotFound, "product P-999 not found")
    );
    let denied = orders
        .place_order(order("P-104", 1, "d-1", &grant))
        .await
        .expect_err("not entitled");
    assert_eq!(
        (denied.code(), denied.message()),
        (Code::PermissionDenied, "not entitled to product P-104")
    );
    assert_eq!(order_count(&mut orders).await, 0);
    mesh.shutdown().await;
}

#[tokio::test]
async fn bob_is_denied_with_alices_grant_and_nothing_is_written() {
    let mesh = Mesh::start().await;
    let alices_grant = mesh.grant_of("alice").await;
    let mut bob = mesh.orders_as("bob").await;

    let denied = bob
        .place_order(order("P-100", 1, "steal", &alices_grant))
        .await
        .expect_err("not bob's grant");
    assert_eq!(
        (denied.code(), denied.message()),
        (Code::PermissionDenied, "not entitled to product P-100")
    );
    assert_eq!(order_count(&mut bob).await, 0);

    // Alice's grant does not decide for bob even where bob is entitled: the
    // replica does.
    let allowed = bob
        .place_order(order("P-101", 1, "own", &alices_grant))
        .await
        .expect("bob's product");
    assert_eq!(
        allowed.into_inner().entitlement_source(),
        EntitlementSource::Replica
    );
    mesh.shutdown().await;
}

#[tokio::test]
async fn retrying_a_request_id_returns_the_same_order_and_writes_nothing_new() {
    let mesh = Mesh::start().await;
    let mut orders = mesh.orders_as("alice").await;
    let grant = mesh.grant_of("alice").await;
    let first = orders
        .place_order(order("P-100", 3, "retry-me", &grant))
        .await
        .expect("first")
        .into_inner();
    // The retry even goes another way (no grant): the stored order is the answer.
    let again = orders
        .place_order(order("P-100", 3, "retry-me", ""))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(again, first);
    assert_eq!(order_count(&mut orders).await, 1);

    assert_refusal(
        orders.place_order(order("P-101", 1, "retry-me", "")).await,
        Code::AlreadyExists,
        "REQUEST_ID_REUSED",
        "request_id retry-me was already used for a different order",
        &[],
    );
    assert_eq!(order_count(&mut orders).await, 1);

    // Request ids are per user: bob's "retry-me" is his own order.
    let mut bob = mesh.orders_as("bob").await;
    let bobs = bob
        .place_order(order("P-101", 1, "retry-me", ""))
        .await
        .expect("bob")
        .into_inner();
    assert_ne!(bobs.id, first.id);
    mesh.shutdown().await;
}

#[tokio::test]
async fn concurrent_retries_place_exactly_one_order() {
    let mesh = Mesh::start().await;
    let orders = mesh.orders_as("alice").await;
    let grant = mesh.grant_of("alice").await;
    let attempts = (0..8).map(|_| {
        let mut client = orders.clone();
        let request = order("P-102", 1, "race", &grant);
        tokio::spawn(async move { client.place_order(request).await.map(|r| r.into_inner()) })
    });
    let mut ids = Vec::new();
    for attempt in attempts {
        ids.push(
            attempt
                .await
                .expect("task")
                .expect("every attempt succeeds")
                .id,
        );
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one order for all attempts: {ids:?}");
    let mut orders = orders;
    assert_eq!(order_count(&mut orders).await, 1);
    mesh.shutdown().await;
}

#[tokio::test]
async fn concurrent_orders_committed_together_are_each_placed_once() {
    let mesh = Mesh::start().await;
    let orders = mesh.orders_as("alice").await;
    let grant = mesh.grant_of("alice").await;
    // 32 request ids, each sent twice at once: the writer groups whatever is
    // queued, so a group may hold both calls of one id.
    let attempts: Vec<_> = (0..64)
        .map(|call| {
            let mut client = orders.clone();
            let request = order("P-100", 1, &format!("group-{}", call % 32), &grant);
            tokio::spawn(async move { client.place_order(request).await.map(|r| r.into_inner()) })
        })
        .collect();
    let mut placed = std::collections::BTreeMap::new();
    for attempt in attempts {
        let order = attempt.await.expect("task").expect("every call succeeds");
        let first = placed
            .entry(order.request_id.clone())
            .or_insert_with(|| order.id.clone());
        assert_eq!(
            *first, order.id,
            "both calls of {} answer one order",
            order.request_id
        );
    }
    assert_eq!(placed.len(), 32);
    let mut orders = orders;
    assert_eq!(
        order_count(&mut orders).await,
        32,
        "each acknowledged order committed, once"
    );
    mesh.shutdown().await;
}

#[tokio::test]
async fn an_invalid_grant_is_not_trusted_and_the_next_source_decides() {
    let mesh = Mesh::start().await;
    let mut orders = mesh.orders_as("alice").await;
    let now = tokenmesh_server::now_unix();
    let grant_claims = |exp: i64, products: &[&str], ver: u32| {
        serde_json::json!({
            "iss": PRODUCTS_ISSUER, "sub": "alice", "aud": ["orders"], "exp": exp, "iat": now,
            "nbf": now, "jti": "g", "ver": ver, "product_ids": products,
        })
    };
    let products_key = mesh.products_minter();
    let forged = Minter::foreign().mint(
        "entitlement+jwt",
        Some(products_key.kid()),
        &grant_claims(now + 60, &["P-104"], 1),
    );
    let expired = products_key.mint(
        "entitlement+jwt",
        None,
        &grant_claims(now - 600, &["P-104"], 1),
    );
    let future_version = products_key.mint(
        "entitlement+jwt",
        None,
        &grant_claims(now + 60, &["P-104"], 9),
    );
    let access_typed = products_key.mint("at+jwt", None, &grant_claims(now + 60, &["P-104"], 1));
    for (name, grant) in [
        ("forged", forged),
        ("expired", expired),
        ("v9", future_version),
        ("wrong typ", access_typed),
    ] {
        let denied = orders
            .place_order(order("P-104", 1, name, &grant))
            .await
            .expect_err(name);
        // The grant is not trusted, so the replica decides: not entitled.
        assert_eq!(
            (denied.code(), denied.message()),
            (Code::PermissionDenied, "not entitled to product P-104"),
            "{name}"
        );
    }
    assert_eq!(order_count(&mut orders).await, 0);

    // A genuine grant signed by Products' key for P-104 decides on its own.
    let genuine = products_key.mint(
        "entitlement+jwt",
        None,
        &grant_claims(now + 60, &["P-104"], 1),
    );
    let placed = orders
        .place_order(order("P-104", 1, "genuine", &genuine))
        .await
        .expect("granted");
    assert_eq!(
        placed.into_inner().entitlement_source(),
        EntitlementSource::Grant
    );
    mesh.shutdown().await;
}

#[tokio::test]
async fn orders_page_newest_first() {
    let mesh = Mesh::start().await;
    let mut orders = mesh.orders_as("alice").await;
    let mut placed = Vec::new();
    for i in 0..5 {
        placed.push(
            orders
                .place_order(order("P-100", 1, &format!("p-{i}"), ""))
                .await
                .expect("order")
                .into_inner()
                .id,
        );
    }
    placed.reverse();
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = orders
            .list_orders(ListOrdersRequest {
                page_size: 2,
                page_token,
            })
            .await
            .expect("page")
            .into_inner();
        seen.extend(page.orders.into_iter().map(|o| o.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, placed);
    mesh.shutdown().await;
}
