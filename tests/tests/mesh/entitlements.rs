//! The entitlement contract: each source alone and chained, the claims-version
//! matrix, the grant size budget, revocation beating an older grant, the replica
//! catching up, and Products down.

use std::time::Duration;

use serde_json::json;
use tokenmesh_proto::{
    orders::v1::{EntitlementSource, ListOrdersRequest, Order, PlaceOrderRequest},
    products::v1::{
        CreateProductRequest, EntitlementRequest, EntitlementResponse, GrantStatus,
        ListProductsRequest,
    },
};
use tokenmesh_tests::calls::{assert_refusal, assert_status};
use tokenmesh_tests::{
    ManualClock, Mesh, OrdersClient, PRODUCTS_ISSUER, ProductsClient, SourceKind, claims_of,
    eventually, order,
};
use tonic::{Code, Status};

use SourceKind::{Grant, Replica, Rpc};

/// How long a test waits for a Products change to reach Orders before it fails:
/// a bound for a change that never arrives, not a speed goal (the goal, one
/// second, is measured and printed, never asserted: a loaded machine may take
/// longer and still be right).
const PROPAGATION_DEADLINE: Duration = Duration::from_secs(60);

async fn place(orders: &mut OrdersClient, request: PlaceOrderRequest) -> Result<Order, Status> {
    orders.place_order(request).await.map(|r| r.into_inner())
}

async fn order_count(orders: &mut OrdersClient) -> usize {
    orders
        .list_orders(ListOrdersRequest {
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .expect("list")
        .into_inner()
        .orders
        .len()
}

fn entitlement(subject: &str, product_id: &str) -> EntitlementRequest {
    EntitlementRequest {
        subject: subject.into(),
        product_id: product_id.into(),
    }
}

#[tokio::test]
async fn each_source_alone_decides_and_the_order_records_it() {
    for (sources, expected) in [
        (vec![Grant], EntitlementSource::Grant),
        (vec![Replica], EntitlementSource::Replica),
        (vec![Rpc], EntitlementSource::Rpc),
    ] {
        let mesh = Mesh::builder().entitlement_sources(&sources).start().await;
        let grant = mesh.grant_of("alice").await;
        let mut orders = mesh.orders_as("alice").await;
        let placed = place(&mut orders, order("P-100", 1, "allowed", &grant))
            .await
            .expect("entitled");
        assert_eq!(placed.entitlement_source(), expected, "{sources:?}");
        if sources == [Grant] {
            // The grant alone cannot deny or say "no such product": it is a proof.
            assert_refusal(
                place(&mut orders, order("P-104", 1, "no-proof", &grant)).await,
                Code::Unavailable,
                "ENTITLEMENT_UNDECIDED",
                "no entitlement source could decide: grant: does not cover this product",
                &[],
            );
            assert_status(
                place(&mut orders, order("P-100", 1, "no-grant", "")).await,
                Code::Unavailable,
                "no entitlement source could decide: grant: none in the request",
            );
        } else {
            assert_refusal(
                place(&mut orders, order("P-104", 1, "denied", "")).await,
                Code::PermissionDenied,
                "NOT_ENTITLED",
                "not entitled to product P-104",
                &[("product_id", "P-104")],
            );
            assert_refusal(
                place(&mut orders, order("P-999", 1, "unknown", "")).await,
                Code::NotFound,
                "PRODUCT_NOT_FOUND",
                "product P-999 not found",
                &[("product_id", "P-999")],
            );
        }
        assert_eq!(
            order_count(&mut orders).await,
            1,
            "{sources:?}: refused orders write nothing"
        );
        mesh.shutdown().await;
    }
}

#[tokio::test]
async fn the_first_conclusive_source_in_the_configured_order_wins() {
    let mesh = Mesh::builder()
        .entitlement_sources(&[Rpc, Grant])
        .start()
        .await;
    let grant = mesh.grant_of("alice").await;
    let mut orders = mesh.orders_as("alice").await;
    let placed = place(&mut orders, order("P-100", 1, "rpc-first", &grant))
        .await
        .expect("entitled");
    assert_eq!(placed.entitlement_source(), EntitlementSource::Rpc);
    mesh.shutdown().await;

    let mesh = Mesh::builder()
        .entitlement_sources(&[Grant, Replica])
        .start()
        .await;
    let grant = mesh.grant_of("alice").await;
    let mut orders = mesh.orders_as("alice").await;
    let by_grant = place(&mut orders, order("P-100", 1, "grant-first", &grant))
        .await
        .expect("entitled");
    assert_eq!(by_grant.entitlement_source(), EntitlementSource::Grant);
    let by_replica = place(&mut orders, order("P-101", 1, "then-replica", ""))
        .await
        .expect("entitled");
    assert_eq!(by_replica.entitlement_source(), EntitlementSource::Replica);
    mesh.shutdown().await;
}

#[tokio::test]
async fn the_emitter_and_reader_version_matrix() {
    // (emitted, read, grant-only outcome, with rpc behind it)
    let matrix: [(u32, &[u32], Result<(), &str>); 4] = [
        (1, &[1], Ok(())),
        (1, &[1, 2], Ok(())),
        (2, &[1, 2], Ok(())),
        (
            2,
            &[1],
            Err("entitlement grant version 2 is not supported; this service reads 1"),
        ),
    ];
    for (emitted, read, grant_only) in matrix {
        let mesh = Mesh::builder()
            .grant_versions(emitted, read)
            .entitlement_sources(&[Grant])
            .start()
            .await;
        let grant = mesh.grant_of("alice").await;
        let claims = claims_of(&grant);
        assert_eq!(claims["ver"], emitted);
        if emitted == 1 {
            assert_eq!(claims["product_ids"], json!(["P-100", "P-101", "P-102"]));
        } else {
            assert_eq!(
                claims["grants"][0],
                json!({"product_id": "P-100", "actions": ["view", "order"], "max_quantity": 0})
            );
            assert!(claims["catalogue_revision"].as_u64().expect("revision") > 0);
        }
        let mut orders = mesh.orders_as("alice").await;
        let result = place(&mut orders, order("P-100", 1, "matrix", &grant)).await;
        match grant_only {
            Ok(()) => assert_eq!(
                result.expect("accepted").entitlement_source(),
                EntitlementSource::Grant
            ),
            Err(message) => assert_status(result, Code::FailedPrecondition, message),
        }
        mesh.shutdown().await;
    }

    // With another source behind it, an unreadable grant just moves the chain on.
    let mesh = Mesh::builder()
        .grant_versions(2, &[1])
        .entitlement_sources(&[Grant, Rpc])
        .start()
        .await;
    let grant = mesh.grant_of("alice").await;
    let mut orders = mesh.orders_as("alice").await;
    let placed = place(&mut orders, order("P-100", 1, "moves-on", &grant))
        .await
        .expect("rpc decides");
    assert_eq!(placed.entitlement_source(), EntitlementSource::Rpc);
    mesh.shutdown().await;
}

#[tokio::test]
async fn an_unknown_version_names_the_versions_read_and_limits_are_enforced() {
    let mesh = Mesh::builder().entitlement_sources(&[Grant]).start().await;
    let key = mesh.products_minter();
    let now = tokenmesh_server::now_unix();
    let grant = |ver: u32, grants: serde_json::Value| {
        key.mint(
            "entitlement+jwt",
            None,
            &json!({"iss": PRODUCTS_ISSUER, "sub": "alice", "aud": ["orders"], "exp": now + 60, "iat": now,
                    "nbf": now, "jti": "g", "ver": ver, "grants": grants, "future_field": {"ignored": true}}),
        )
    };
    let mut orders = mesh.orders_as("alice").await;
    let v3 = grant(3, json!([]));
    assert_refusal(
        place(&mut orders, order("P-104", 1, "v3", &v3)).await,
        Code::FailedPrecondition,
        "GRANT_VERSION_UNSUPPORTED",
        "entitlement grant version 3 is not supported; this service reads 1, 2",
        &[("found", "3"), ("accepted", "1, 2")],
    );
    let limited = grant(
        2,
        json!([{"product_id": "P-104", "actions": ["order", "teleport"], "max_quantity": 2}]),
    );
    assert_refusal(
        place(&mut orders, order("P-104", 3, "over", &limited)).await,
        Code::PermissionDenied,
        "QUANTITY_OVER_LIMIT",
        "quantity exceeds the limit of 2 for product P-104",
        &[("product_id", "P-104"), ("limit", "2")],
    );
    let placed = place(&mut orders, order("P-104", 2, "within", &limited))
        .await
        .expect("within the limit");
    assert_eq!(placed.entitlement_source(), EntitlementSource::Grant);
    // Without the `order` action the grant refuses, as the replica and rpc do
    // for a view-only entitlement (security_limits): one state, one answer.
    let view_only = grant(2, json!([{"product_id": "P-103", "actions": ["view"]}]));
    assert_refusal(
        place(&mut orders, order("P-103", 1, "view-only", &view_only)).await,
        Code::PermissionDenied,
        "ORDER_NOT_ALLOWED",
        "not allowed to order product P-103",
        &[("product_id", "P-103")],
    );
    assert_eq!(order_count(&mut orders).await, 1);
    mesh.shutdown().await;
}

async fn admin_products(mesh: &Mesh) -> ProductsClient {
    mesh.products_as("admin").await
}

/// Revokes `subject`'s `product` as `admin`, which it had: the answer.
async fn revoke(admin: &mut ProductsClient, subject: &str, product: &str) -> EntitlementResponse {
    let revoked = admin
        .revoke_entitlement(entitlement(subject, product))
        .await
        .expect("revoke")
        .into_inner();
    assert!(revoked.changed);
    revoked
}

#[tokio::test]
async fn a_user_entitled_to_5000_products_gets_no_grant_and_still_orders() {
    let mesh = Mesh::start().await;
    let admin = admin_products(&mesh).await;
    let ids: Vec<String> = (0..5000).map(|i| format!("BULK-{i:04}")).collect();
    let work: Vec<_> = ids
        .chunks(5000 / 16)
        .map(|chunk| {
            let (mut admin, chunk) = (admin.clone(), chunk.to_vec());
            tokio::spawn(async move {
                for id in chunk {
                    let create = CreateProductRequest {
                        id: id.clone(),
                        name: format!("Bulk {id}"),
                        price_cents: 1,
                        description: String::new(),
                    };
                    admin.create_product(create).await.expect("created");
                    admin
                        .grant_entitlement(entitlement("alice", &id))
                        .await
                        .expect("granted");
                }
            })
        })
        .collect();
    for task in work {
        task.await.expect("task");
    }
    let listed = mesh.catalogue_of("alice").await;
    assert_eq!(listed.grant_status(), GrantStatus::TooLarge);
    assert_eq!(listed.entitlement_token, "");
    assert_eq!(listed.products.len(), 50, "the list itself pages as usual");

    let mut orders = mesh.orders_as("alice").await;
    let (placed, took) = eventually(PROPAGATION_DEADLINE, || {
        let mut orders = orders.clone();
        async move {
            place(&mut orders, order("BULK-4999", 1, "bulk", ""))
                .await
                .ok()
        }
    })
    .await;
    eprintln!(
        "MEASURED: 10,000 catalogue and entitlement changes replicated; last usable after {took:?}"
    );
    assert_eq!(placed.entitlement_source(), EntitlementSource::Replica);
    assert_eq!(order_count(&mut orders).await, 1);
    mesh.shutdown().await;
}

#[tokio::test]
async fn a_grant_within_budget_is_issued_and_one_over_it_is_not() {
    let mesh = Mesh::builder().grant_max_bytes(700).start().await;
    let mut bob = mesh.products_as("bob").await;
    let small = bob
        .list_products(ListProductsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(small.grant_status(), GrantStatus::Issued);
    assert!(small.entitlement_token.len() <= 700);
    let mut alice = mesh.products_as("alice").await;
    let large = alice
        .list_products(ListProductsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        (large.grant_status(), large.entitlement_token.as_str()),
        (GrantStatus::TooLarge, "")
    );
    mesh.shutdown().await;
}

#[tokio::test]
async fn a_revocation_beats_an_older_grant() {
    for sources in [vec![Grant, Replica, Rpc], vec![Grant]] {
        let mesh = Mesh::builder().entitlement_sources(&sources).start().await;
        let older_grant = mesh.grant_of("alice").await;
        let mut admin = admin_products(&mesh).await;
        revoke(&mut admin, "alice", "P-100").await;
        let mut orders = mesh.orders_as("alice").await;
        let expected = if sources.len() == 1 {
            (
                Code::Unavailable,
                "no entitlement source could decide: grant: revoked since it was issued",
            )
        } else {
            (Code::PermissionDenied, "not entitled to product P-100")
        };
        // A fresh request_id per try: a try that lands before the revocation
        // places an order, and retrying its id would only replay that order.
        let mut tries = 0;
        let ((), took) = eventually(PROPAGATION_DEADLINE, || {
            tries += 1;
            let request_id = format!("after-revoke-{tries}");
            let mut orders = orders.clone();
            let grant = older_grant.clone();
            async move {
                match place(&mut orders, order("P-100", 1, &request_id, &grant)).await {
                    Err(status) if (status.code(), status.message()) == expected => Some(()),
                    Err(status) => panic!("unexpected {status:?}"),
                    Ok(_) => None,
                }
            }
        })
        .await;
        eprintln!("MEASURED: revocation beat the older grant after {took:?} ({sources:?})");
        // The race window may have let orders through before the revocation landed;
        // none after it.
        let placed_before = order_count(&mut orders).await;
        assert_status(
            place(&mut orders, order("P-100", 1, "again", &older_grant)).await,
            expected.0,
            expected.1,
        );
        assert_eq!(order_count(&mut orders).await, placed_before);
        mesh.shutdown().await;
    }
}

#[tokio::test]
async fn a_retry_after_a_revocation_gets_the_order_placed_before_it() {
    for sources in [vec![Grant, Replica, Rpc], vec![Grant]] {
        let mesh = Mesh::builder().entitlement_sources(&sources).start().await;
        let grant = mesh.grant_of("alice").await;
        let mut orders = mesh.orders_as("alice").await;
        let placed = place(&mut orders, order("P-100", 2, "placed-before", &grant))
            .await
            .expect("entitled when placed");
        let mut admin = admin_products(&mesh).await;
        revoke(&mut admin, "alice", "P-100").await;
        let refused = if sources.len() == 1 {
            Code::Unavailable
        } else {
            Code::PermissionDenied
        };
        // Orders has the revocation once a new request id is refused.
        let mut tries = 0;
        eventually(PROPAGATION_DEADLINE, || {
            tries += 1;
            let request_id = format!("probe-{tries}");
            let (mut orders, grant) = (orders.clone(), grant.clone());
            async move {
                match place(&mut orders, order("P-100", 1, &request_id, &grant)).await {
                    Err(status) if status.code() == refused => Some(()),
                    Err(status) => panic!("unexpected {status:?}"),
                    Ok(_) => None,
                }
            }
        })
        .await;
        let count = order_count(&mut orders).await;
        // With the older grant or without one (then no source can decide at
        // all on the grant-only chain): the stored order is the answer.
        for retry_grant in [grant.as_str(), ""] {
            let again = place(&mut orders, order("P-100", 2, "placed-before", retry_grant))
                .await
                .unwrap_or_else(|status| panic!("{sources:?}: the retry got {status:?}"));
            assert_eq!(again, placed, "{sources:?}");
        }
        assert_status(
            place(&mut orders, order("P-100", 1, "placed-before", "")).await,
            Code::AlreadyExists,
            "request_id placed-before was already used for a different order",
        );
        assert_eq!(order_count(&mut orders).await, count, "nothing written");
        mesh.shutdown().await;
    }
}

/// The products a v2 grant lists.
fn granted_products(grant: &str) -> Vec<String> {
    claims_of(grant)["grants"]
        .as_array()
        .expect("a v2 grant lists its grants")
        .iter()
        .map(|grant| grant["product_id"].as_str().expect("product_id").to_owned())
        .collect()
}

#[tokio::test]
async fn a_cached_grant_is_reused_only_until_the_entitlements_change_or_half_its_life_is_gone() {
    let clock = ManualClock::new();
    let mesh = Mesh::builder().clock(clock.clone()).start().await;
    let first = mesh.grant_of("alice").await;
    assert!(granted_products(&first).contains(&"P-100".to_owned()));
    assert_eq!(
        mesh.grant_of("alice").await,
        first,
        "nothing changed: reused"
    );
    assert_ne!(
        mesh.grant_of("bob").await,
        first,
        "another subject, its own grant"
    );

    let mut admin = admin_products(&mesh).await;
    let revoked = revoke(&mut admin, "alice", "P-100").await;
    let after_revocation = mesh.grant_of("alice").await;
    assert_ne!(
        after_revocation, first,
        "the revocation retired the cached grant"
    );
    assert!(!granted_products(&after_revocation).contains(&"P-100".to_owned()));
    assert_eq!(
        claims_of(&after_revocation)["catalogue_revision"],
        json!(revoked.cursor)
    );
    assert_eq!(mesh.grant_of("alice").await, after_revocation);

    // Grants live 300 s: at 149 s one is still handed out again, at 150 s a
    // new one is signed.
    clock.advance(Duration::from_secs(149));
    assert_eq!(mesh.grant_of("alice").await, after_revocation);
    clock.advance(Duration::from_secs(1));
    let renewed = mesh.grant_of("alice").await;
    assert_ne!(renewed, after_revocation, "half its life gone: a new grant");
    assert_eq!(
        granted_products(&renewed),
        granted_products(&after_revocation)
    );
    mesh.shutdown().await;
}

#[tokio::test]
async fn a_new_entitlement_is_usable_without_a_grant() {
    let mesh = Mesh::builder()
        .entitlement_sources(&[Replica])
        .start()
        .await;
    let mut orders = mesh.orders_as("bob").await;
    assert_status(
        place(&mut orders, order("P-104", 1, "before", "")).await,
        Code::PermissionDenied,
        "not entitled to product P-104",
    );
    let mut admin = admin_products(&mesh).await;
    admin
        .grant_entitlement(entitlement("bob", "P-104"))
        .await
        .expect("grant");
    let (placed, took) = eventually(PROPAGATION_DEADLINE, || {
        let mut orders = orders.clone();
        async move {
            place(&mut orders, order("P-104", 1, "after", ""))
                .await
                .ok()
        }
    })
    .await;
    eprintln!("MEASURED: new entitlement usable through the replica after {took:?}");
    assert_eq!(placed.entitlement_source(), EntitlementSource::Replica);
    mesh.shutdown().await;
}

#[tokio::test]
async fn the_replica_catches_up_after_orders_and_after_products_restart() {
    let mut mesh = Mesh::builder()
        .entitlement_sources(&[Replica])
        .start()
        .await;
    let mut admin = admin_products(&mesh).await;
    admin
        .grant_entitlement(entitlement("bob", "P-102"))
        .await
        .expect("grant");

    mesh.restart_orders().await;
    mesh.wait_for_replica().await;
    admin
        .grant_entitlement(entitlement("bob", "P-103"))
        .await
        .expect("grant after the restart");
    let orders = mesh.orders_as("bob").await;
    for product in ["P-102", "P-103"] {
        let (placed, _) = eventually(PROPAGATION_DEADLINE, || {
            let mut orders = orders.clone();
            async move {
                place(&mut orders, order(product, 1, product, ""))
                    .await
                    .ok()
            }
        })
        .await;
        assert_eq!(placed.entitlement_source(), EntitlementSource::Replica);
    }

    mesh.stop_products().await;
    mesh.start_products().await;
    let mut admin = admin_products(&mesh).await;
    admin
        .grant_entitlement(entitlement("bob", "P-104"))
        .await
        .expect("grant after Products restarts");
    let (placed, took) = eventually(PROPAGATION_DEADLINE, || {
        let mut orders = orders.clone();
        async move {
            place(&mut orders, order("P-104", 1, "P-104", ""))
                .await
                .ok()
        }
    })
    .await;
    eprintln!("MEASURED: replica resumed after a Products restart; change usable after {took:?}");
    assert_eq!(placed.entitlement_source(), EntitlementSource::Replica);
    mesh.shutdown().await;
}

#[tokio::test]
async fn with_products_down_grant_and_replica_still_decide_and_rpc_alone_is_unavailable() {
    let mut mesh = Mesh::start().await;
    let grant = mesh.grant_of("alice").await;
    mesh.stop_products().await;
    let mut orders = mesh.orders_as("alice").await;
    let by_grant = place(&mut orders, order("P-100", 1, "down-1", &grant))
        .await
        .expect("grant decides");
    assert_eq!(by_grant.entitlement_source(), EntitlementSource::Grant);
    let by_replica = place(&mut orders, order("P-101", 1, "down-2", ""))
        .await
        .expect("replica decides");
    assert_eq!(by_replica.entitlement_source(), EntitlementSource::Replica);
    assert_status(
        place(&mut orders, order("P-104", 1, "down-3", "")).await,
        Code::PermissionDenied,
        "not entitled to product P-104",
    );
    mesh.shutdown().await;

    let mut mesh = Mesh::builder().entitlement_sources(&[Rpc]).start().await;
    mesh.stop_products().await;
    let mut orders = mesh.orders_as("alice").await;
    let status = place(&mut orders, order("P-100", 1, "rpc-down", ""))
        .await
        .expect_err("no source");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status
            .message()
            .starts_with("no entitlement source could decide: rpc: Products unavailable"),
        "{}",
        status.message()
    );
    assert_eq!(order_count(&mut orders).await, 0, "nothing written");
    mesh.shutdown().await;
}

#[tokio::test]
async fn admin_catalogue_changes_are_checked() {
    let mesh = Mesh::start().await;
    let mut admin = admin_products(&mesh).await;
    let create = |id: &str, price_cents: i64| CreateProductRequest {
        id: id.into(),
        name: "A product".into(),
        price_cents,
        description: String::new(),
    };
    admin
        .create_product(create("P-200", 100))
        .await
        .expect("created");
    assert_status(
        admin.create_product(create("P-200", 100)).await,
        Code::AlreadyExists,
        "product P-200 already exists",
    );
    assert_status(
        admin.create_product(create("P-201", -1)).await,
        Code::InvalidArgument,
        "price_cents: must not be negative",
    );
    assert_status(
        admin.create_product(create("", 1)).await,
        Code::InvalidArgument,
        "id: required",
    );
    assert_status(
        admin.grant_entitlement(entitlement("bob", "P-999")).await,
        Code::NotFound,
        "product P-999 not found",
    );
    let first = admin
        .grant_entitlement(entitlement("bob", "P-200"))
        .await
        .expect("grant")
        .into_inner();
    let again = admin
        .grant_entitlement(entitlement("bob", "P-200"))
        .await
        .expect("grant again")
        .into_inner();
    assert!(first.changed && !again.changed);
    assert_eq!(again.cursor, first.cursor, "nothing new on the feed");
    let mut alice = mesh.products_as("alice").await;
    assert_status(
        alice.grant_entitlement(entitlement("alice", "P-104")).await,
        Code::PermissionDenied,
        "insufficient scope: this method requires `admin`",
    );
    mesh.shutdown().await;
}
