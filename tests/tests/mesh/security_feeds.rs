//! Issue 10, item 7: verifiers fail closed on revocations they cannot hear
//! about. A feed refused from the start keeps a service NOT_SERVING and its
//! tokens unserved; a feed silent past the bound refuses tokens as stale; a
//! stale entitlement replica hands the decision on. Item 5: a feed stream ends
//! when the token that opened it expires, and followers resubscribe.

use std::time::Duration;

use tokenmesh_proto::{
    auth::v1::{DeactivateUserRequest, WatchRevocationsRequest},
    orders::v1::{EntitlementSource, Order, PlaceOrderRequest},
    products::v1::{
        CreateProductRequest, EntitlementRequest, ListProductsRequest, WatchEntitlementsRequest,
        products_service_client::ProductsServiceClient,
    },
};
use tokenmesh_server::{Addr, Running};
use tokenmesh_tests::{
    ManualClock, Mesh, OrdersClient, SourceKind,
    calls::{assert_refused_by_layer, service_token, with_bearer},
    client_secret, eventually,
};
use tonic::{Code, Status};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const PRODUCTS: &str = "tokenmesh.products.v1.ProductsService";
const ORDERS: &str = "tokenmesh.orders.v1.OrdersService";
/// The default bound is the access-token lifetime, 300 s: one second past it
/// every token the test holds is still inside its 30 s expiry leeway.
const PAST_THE_BOUND: Duration = Duration::from_secs(301);
/// How long a test waits for a service to notice what happened to a feed.
const DEADLINE: Duration = Duration::from_secs(20);

/// A second Products beside the mesh's, following the mesh's Auth with
/// `secret` as its client secret, on `data_dir`, not seeding the demo; its
/// registry.
async fn extra_products(
    mesh: &Mesh,
    secret: &str,
    data_dir: &std::path::Path,
) -> (Running, tokenmesh_server::metrics::Registry) {
    let mut args = mesh.up_args().clone();
    // The demo seed would grant the demo entitlements again.
    args.demo = false;
    args.products_secret.products_client_secret = Some(secret.to_owned());
    // On PostgreSQL it shares the mesh's database, whose grant keys that key opens.
    args.auth.kek.key_encryption_key = Some(mesh.key_encryption_key());
    let mut env = tokenmesh::mesh::environment(&args).expect("environment");
    env.data_dir = data_dir.to_owned();
    let listener = tokenmesh::mesh::listener(
        &args,
        &Addr::from(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        &[],
    )
    .await
    .expect("binds");
    let running = tokenmesh::mesh::start_products(&args, &env, mesh.auth_addr(), listener)
        .await
        .expect("starts");
    (running, env.metrics.clone())
}

async fn health(addr: std::net::SocketAddr, service: &str) -> ServingStatus {
    HealthClient::new(Mesh::channel(addr).await)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status()
}

async fn list_products(addr: std::net::SocketAddr, token: &str) -> Result<(), Status> {
    ProductsServiceClient::new(Mesh::channel(addr).await)
        .list_products(with_bearer(ListProductsRequest::default(), token))
        .await
        .map(|_| ())
}

/// The attack: Products started with the wrong client secret cannot follow
/// Auth's revocations; a deactivated user's token must not work there.
#[tokio::test]
async fn a_products_whose_revocation_feed_is_refused_serves_no_token() {
    let mesh = Mesh::start().await;
    let data_dir = tempfile::tempdir().expect("data dir");
    let (mut wrong, _metrics) = extra_products(&mesh, "not-the-secret", data_dir.path()).await;
    let alice = mesh.login("alice").await;
    let admin = mesh.login("admin").await;
    mesh.auth()
        .await
        .deactivate_user(with_bearer(
            DeactivateUserRequest {
                username: "alice".into(),
            },
            &admin,
        ))
        .await
        .expect("deactivated");
    // The mesh's own Products hears of it.
    eventually(Duration::from_secs(60), || async {
        list_products(mesh.products_addr(), &alice).await.err()
    })
    .await;

    for service in ["", PRODUCTS] {
        assert_eq!(
            health(wrong.addr, service).await,
            ServingStatus::NotServing,
            "{service:?}"
        );
    }
    // Out of rotation, not dead: a liveness probe must not restart it.
    assert_eq!(
        health(wrong.addr, tokenmesh_server::LIVENESS).await,
        ServingStatus::Serving
    );
    for token in [&alice, &admin] {
        assert_refused_by_layer(
            list_products(wrong.addr, token).await,
            Code::Unavailable,
            "REVOCATIONS_STALE",
            "revocation feed not replayed yet: try again later",
        );
    }
    wrong.stop().await.expect("stops");
    mesh.shutdown().await;
}

/// The attack: Auth's feed goes quiet (here: Auth stops) and a revocation
/// made meanwhile would never arrive; past the bound, nothing is served.
#[tokio::test]
async fn a_revocation_feed_silent_past_the_bound_refuses_tokens_as_stale() {
    let clock = ManualClock::new();
    let mut mesh = Mesh::builder().clock(clock.clone()).start().await;
    let alice = mesh.login("alice").await;
    let (products, orders) = mesh.accepted_by(&alice).await;
    products.expect("Products serves");
    orders.expect("Orders serves");

    mesh.stop_auth().await;
    clock.advance(PAST_THE_BOUND - Duration::from_secs(1));
    let (products, orders) = mesh.accepted_by(&alice).await;
    products.expect("Products serves up to the bound");
    orders.expect("Orders serves up to the bound");
    clock.advance(Duration::from_secs(1));
    for status in mesh.refusals_of(&alice, DEADLINE).await {
        assert_refused_by_layer(
            Err::<(), _>(status),
            Code::Unavailable,
            "REVOCATIONS_STALE",
            "revocation feed silent for 301 s, past its 300 s bound: try again later",
        );
    }
    for (addr, service) in [
        (mesh.products_addr(), PRODUCTS),
        (mesh.orders_addr(), ORDERS),
    ] {
        eventually(DEADLINE, || async {
            (health(addr, service).await == ServingStatus::NotServing).then_some(())
        })
        .await;
    }
    let metrics = mesh.metrics();
    for service in [PRODUCTS, ORDERS] {
        let gauge = format!(
            "tokenmesh_feed_silence_seconds{{service=\"{service}\",feed=\"revocations\"}} 301\n"
        );
        assert!(metrics.contains(&gauge), "{gauge} in {metrics}");
    }

    mesh.restart_auth().await;
    let (products, orders) = mesh.accepted_by(&alice).await;
    products.expect("Products serves again");
    orders.expect("Orders serves again");
    for (addr, service) in [
        (mesh.products_addr(), PRODUCTS),
        (mesh.orders_addr(), ORDERS),
    ] {
        eventually(DEADLINE, || async {
            (health(addr, service).await == ServingStatus::Serving).then_some(())
        })
        .await;
    }
    mesh.shutdown().await;
}

/// A product no demo seed touches.
const PRODUCT: &str = "P-700";

fn order(request_id: &str) -> PlaceOrderRequest {
    PlaceOrderRequest {
        product_id: PRODUCT.into(),
        quantity: 1,
        request_id: request_id.into(),
        entitlement_token: String::new(),
    }
}

fn entitlement() -> EntitlementRequest {
    EntitlementRequest {
        subject: "alice".into(),
        product_id: PRODUCT.into(),
    }
}

async fn place(orders: &mut OrdersClient, request_id: &str) -> Result<Order, Status> {
    orders
        .place_order(order(request_id))
        .await
        .map(|r| r.into_inner())
}

/// The attack: Orders' replica loses Products' feed (Products moved) while
/// Products revokes an entitlement; the replica must not keep answering.
#[tokio::test]
async fn a_replica_whose_feed_broke_hands_the_decision_on_past_the_bound() {
    let clock = ManualClock::new();
    let mut mesh = Mesh::builder()
        .clock(clock.clone())
        .entitlement_sources(&[SourceKind::Replica, SourceKind::Rpc])
        .start()
        .await;
    let mut catalogue = mesh.products_as("admin").await;
    catalogue
        .create_product(CreateProductRequest {
            id: PRODUCT.into(),
            name: "Seventh".into(),
            price_cents: 700,
            description: String::new(),
        })
        .await
        .expect("created");
    catalogue
        .grant_entitlement(entitlement())
        .await
        .expect("granted");
    let orders = mesh.orders_as("alice").await;
    let (placed, _) = eventually(DEADLINE, || {
        let mut orders = orders.clone();
        async move { place(&mut orders, "before").await.ok() }
    })
    .await;
    assert_eq!(placed.entitlement_source(), EntitlementSource::Replica);

    // Products moves to another address on the same data: Orders' feed (and
    // its rpc source) point at the old one.
    mesh.stop_products().await;
    let secret = client_secret(&mesh, "products");
    let (mut moved, _) = extra_products(&mesh, &secret, &mesh.data_dir()).await;
    let admin = mesh.login("admin").await;
    eventually(DEADLINE, || async {
        ProductsServiceClient::new(Mesh::channel(moved.addr).await)
            .revoke_entitlement(with_bearer(entitlement(), &admin))
            .await
            .ok()
    })
    .await;

    clock.advance(PAST_THE_BOUND);
    let (status, _) = eventually(DEADLINE, || {
        let mut orders = orders.clone();
        async move { place(&mut orders, "after").await.err() }
    })
    .await;
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::Unavailable,
            "no entitlement source could decide: replica: Products' feed silent for 301 s, \
             past its 300 s bound; rpc: Products unavailable (Unavailable)"
        )
    );
    let metrics = mesh.metrics();
    let gauge = format!(
        "tokenmesh_feed_silence_seconds{{service=\"{ORDERS}\",feed=\"entitlements\"}} 301\n"
    );
    assert!(metrics.contains(&gauge), "{gauge} in {metrics}");

    // Back at its address, Products' feed brings the revocation: the replica
    // decides again, and denies.
    moved.stop().await.expect("stops");
    mesh.start_products().await;
    let (status, _) = eventually(DEADLINE, || {
        let mut orders = orders.clone();
        async move {
            place(&mut orders, "caught-up")
                .await
                .err()
                .filter(|status| status.code() == Code::PermissionDenied)
        }
    })
    .await;
    assert_eq!(status.message(), "not entitled to product P-700");
    mesh.shutdown().await;
}

/// Reads `stream` until it ends, skipping heartbeats; `Err` if it is still
/// open after the deadline.
async fn ends<T>(stream: &mut tonic::Streaming<T>) -> Result<(), &'static str> {
    let read_to_end = async { while stream.message().await.expect("no error").is_some() {} };
    tokio::time::timeout(DEADLINE, read_to_end)
        .await
        .map_err(|_| "still open")
}

/// The attack: a stream opened with a token keeps delivering after the token
/// has expired (or been retired). It must end then; the mesh's own followers
/// resubscribe with fresh tokens and keep hearing revocations.
#[tokio::test]
async fn feed_streams_end_when_their_token_expires_and_followers_resubscribe() {
    let clock = ManualClock::new();
    let mesh = Mesh::builder().clock(clock.clone()).start().await;
    let products = service_token(&mut mesh.auth().await, &mesh, "products", "auth").await;
    let orders = service_token(&mut mesh.auth().await, &mesh, "orders", "products").await;
    let mut revocations = mesh
        .auth()
        .await
        .watch_revocations(with_bearer(WatchRevocationsRequest { since: 0 }, &products))
        .await
        .expect("watch revocations")
        .into_inner();
    let mut entitlements = ProductsServiceClient::new(Mesh::channel(mesh.products_addr()).await)
        .watch_entitlements(with_bearer(
            WatchEntitlementsRequest {
                since: 0,
                snapshot: false,
            },
            &orders,
        ))
        .await
        .expect("watch entitlements")
        .into_inner();
    // Past the tokens' lifetime and their verifiers' leeway.
    clock.advance(Duration::from_secs(400));
    assert_eq!(ends(&mut revocations).await, Ok(()), "WatchRevocations");
    assert_eq!(ends(&mut entitlements).await, Ok(()), "WatchEntitlements");

    let bob = mesh.login("bob").await;
    let admin = mesh.login("admin").await;
    mesh.auth()
        .await
        .deactivate_user(with_bearer(
            DeactivateUserRequest {
                username: "bob".into(),
            },
            &admin,
        ))
        .await
        .expect("deactivated");
    for status in mesh.refusals_of(&bob, DEADLINE).await {
        assert_refused_by_layer(
            Err::<(), _>(status),
            Code::Unauthenticated,
            "TOKEN_REVOKED",
            "token revoked",
        );
    }
    mesh.shutdown().await;
}
