//! Issue 10, item 7: verifiers fail closed on revocations they cannot hear
//! about. A feed refused from the start keeps a service NOT_SERVING and its
//! tokens unserved; a feed silent past the bound refuses tokens as stale; a
//! stale entitlement replica hands the decision on, and a feed that comes back
//! stays stale until its replay has ended. A store that goes back under its
//! followers (a restore, a failover) tells them so, and they follow it back.
//! Item 5: a feed stream ends when the token that opened it expires, and
//! followers resubscribe.

use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use sqlx::AnyPool;
use tokenmesh_proto::{
    auth::v1::{
        DeactivateUserRequest, ReactivateUserRequest, WatchRevocationsRequest,
        auth_service_client::AuthServiceClient,
    },
    orders::v1::{EntitlementSource, Order, PlaceOrderRequest},
    products::v1::{
        CreateProductRequest, EntitlementRequest, ListProductsRequest, WatchEntitlementsRequest,
        products_service_client::ProductsServiceClient,
    },
};
use tokenmesh_server::{Addr, Running};
use tokenmesh_tests::{
    ManualClock, Mesh, OrdersClient, SourceKind,
    calls::{assert_refusal, assert_refused_by_layer, service_token, with_bearer},
    client_secret, eventually,
    relay::Relay,
};
use tonic::{Code, Status, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const PRODUCTS: &str = "tokenmesh.products.v1.ProductsService";
const ORDERS: &str = "tokenmesh.orders.v1.OrdersService";
/// The default bound is the access-token lifetime, 300 s: one second past it
/// every token the test holds is still inside its 30 s expiry leeway.
const PAST_THE_BOUND: Duration = Duration::from_secs(301);
/// How long a test waits for a service to notice what happened to a feed.
const DEADLINE: Duration = Duration::from_secs(60);

/// A second Products beside the mesh's, following the mesh's Auth with
/// `secret` as its client secret, on `data_dir`, on the mesh's clock, not
/// seeding the demo; its registry.
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
    env.clock = mesh.clock();
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
    let (mut wrong, _metrics) = extra_products(
        &mesh,
        "not-the-secret-but-long-enough-to-start",
        data_dir.path(),
    )
    .await;
    let alice = mesh.login("alice").await;
    let admin = mesh.login("admin").await;
    deactivate(&mut mesh.auth().await, &admin, "alice").await;
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

/// Waits until Products and Orders both refuse `token`: each refusal is the
/// auth layer's, with `code`, `reason` and exactly `message`.
async fn refused_by_both(mesh: &Mesh, token: &str, code: Code, reason: &str, message: &str) {
    for status in mesh.refusals_of(token, DEADLINE).await {
        assert_refused_by_layer(Err::<(), _>(status), code, reason, message);
    }
}

/// Deactivates `username` through `auth`, as `admin`.
async fn deactivate(auth: &mut AuthServiceClient<Channel>, admin: &str, username: &str) {
    auth.deactivate_user(with_bearer(
        DeactivateUserRequest {
            username: username.into(),
        },
        admin,
    ))
    .await
    .expect("deactivated");
}

/// A mesh on `clock`, and alice's access token, served by Products and Orders.
async fn mesh_serving_alice(clock: &ManualClock) -> (Mesh, String) {
    let mesh = Mesh::builder().clock(clock.clone()).start().await;
    let alice = mesh.login("alice").await;
    let (products, orders) = mesh.accepted_by(&alice).await;
    products.expect("Products serves");
    orders.expect("Orders serves");
    (mesh, alice)
}

/// The attack: Auth's feed goes quiet (here: Auth stops) and a revocation
/// made meanwhile would never arrive; past the bound, nothing is served.
#[tokio::test]
async fn a_revocation_feed_silent_past_the_bound_refuses_tokens_as_stale() {
    let clock = ManualClock::new();
    let (mut mesh, alice) = mesh_serving_alice(&clock).await;

    mesh.stop_auth().await;
    clock.advance(PAST_THE_BOUND - Duration::from_secs(1));
    let (products, orders) = mesh.accepted_by(&alice).await;
    products.expect("Products serves up to the bound");
    orders.expect("Orders serves up to the bound");
    clock.advance(Duration::from_secs(1));
    refused_by_both(
        &mesh,
        &alice,
        Code::Unavailable,
        "REVOCATIONS_STALE",
        "revocation feed silent for 301 s, past its 300 s bound: try again later",
    )
    .await;
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

/// The last revocation-feed position Products and Orders applied.
fn revocation_positions(mesh: &Mesh) -> [i64; 2] {
    let metrics = mesh.metrics();
    [PRODUCTS, ORDERS].map(|service| {
        feed_gauge(&metrics, "tokenmesh_feed_position", service, "revocations")
            .expect("a revocation feed position")
    })
}

/// The attack on the auth layer: Products and Orders are cut off from Auth's
/// revocation feed past its bound while Auth deactivates bob, then alice;
/// when the feed comes back, its replay of what was missed is slow (here held
/// after bob's revocation, by a relay where Auth was). Until the replay
/// reaches alice's revocation and its end, a verifier trusting the feed again
/// would serve her token: it must refuse tokens as stale until then.
#[tokio::test]
async fn a_verifier_mid_replay_after_its_bound_serves_no_token() {
    let clock = ManualClock::new();
    let (mut mesh, alice) = mesh_serving_alice(&clock).await;
    let applied = revocation_positions(&mesh);

    // Auth moves (same store); there, bob and then alice are deactivated,
    // while Products and Orders hear nothing past the bound.
    let admin = mesh.login("admin").await;
    let moved = mesh.start_auth_replica().await;
    mesh.stop_auth().await;
    let mut auth = moved.auth().await;
    for username in ["bob", "alice"] {
        deactivate(&mut auth, &admin, username).await;
    }
    clock.advance(PAST_THE_BOUND);

    // Where Auth was, a relay to where it is now passes the replay's first
    // revocation (bob's) and holds alice's and the rest.
    let relay = Relay::start(
        mesh.auth_addr(),
        moved.addr(),
        "/tokenmesh.auth.v1.AuthService/WatchRevocations",
        1,
    )
    .await;
    eventually(DEADLINE, || async {
        let now = revocation_positions(&mesh);
        (now[0] > applied[0] && now[1] > applied[1]).then_some(())
    })
    .await;
    let (products, orders) = mesh.accepted_by(&alice).await;
    for refused in [products, orders] {
        assert_refused_by_layer(
            refused,
            Code::Unavailable,
            "REVOCATIONS_STALE",
            "revocation feed silent for 301 s, past its 300 s bound: try again later",
        );
    }

    // The replay ends: her token is refused as revoked.
    relay.release();
    let refusals = eventually(DEADLINE, || async {
        match mesh.accepted_by(&alice).await {
            (Err(products), Err(orders))
                if products.code() == Code::Unauthenticated
                    && orders.code() == Code::Unauthenticated =>
            {
                Some([products, orders])
            }
            _ => None,
        }
    })
    .await
    .0;
    for refused in refusals {
        assert_refused_by_layer(
            Err::<(), _>(refused),
            Code::Unauthenticated,
            "TOKEN_REVOKED",
            "token revoked",
        );
    }
    drop(relay);
    moved.stop().await;
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

/// Places new orders (a new request id each, so that one placed before is
/// not replayed as the answer) until one is refused: its status.
async fn first_refusal_of_a_new_order(orders: &OrdersClient) -> Status {
    let tries = AtomicU32::new(0);
    let (status, _) = eventually(DEADLINE, || {
        let mut orders = orders.clone();
        let request_id = format!("after-{}", tries.fetch_add(1, Ordering::Relaxed));
        async move { place(&mut orders, &request_id).await.err() }
    })
    .await;
    status
}

/// A mesh on `clock` whose Orders decides from its replica, then rpc; alice
/// is entitled to [`PRODUCT`] and has an order placed from the replica.
async fn mesh_with_an_order_from_the_replica(clock: &ManualClock) -> (Mesh, OrdersClient) {
    let mesh = Mesh::builder()
        .clock(clock.clone())
        .entitlement_sources(&[SourceKind::Replica, SourceKind::Rpc])
        .start()
        .await;
    let mut catalogue = mesh.products_as("admin").await;
    catalogue
        .create_product(product(PRODUCT))
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
    (mesh, orders)
}

fn product(id: &str) -> CreateProductRequest {
    CreateProductRequest {
        id: id.into(),
        name: "Seventh".into(),
        price_cents: 700,
        description: String::new(),
    }
}

/// Stops the mesh's Products and starts one at another address on the same
/// data (Orders still points at the old one); it, and an admin's token.
async fn products_moved(mesh: &mut Mesh) -> (Running, String) {
    mesh.stop_products().await;
    let secret = client_secret(mesh, "products");
    let (moved, _) = extra_products(mesh, &secret, &mesh.data_dir()).await;
    (moved, mesh.login("admin").await)
}

/// The attack: Orders' replica loses Products' feed (Products moved) while
/// Products revokes an entitlement; the replica must not keep answering.
#[tokio::test]
async fn a_replica_whose_feed_broke_hands_the_decision_on_past_the_bound() {
    let clock = ManualClock::new();
    let (mut mesh, orders) = mesh_with_an_order_from_the_replica(&clock).await;

    // Products moves to another address on the same data: Orders' feed (and
    // its rpc source) point at the old one.
    let (mut moved, admin) = products_moved(&mut mesh).await;
    eventually(DEADLINE, || async {
        ProductsServiceClient::new(Mesh::channel(moved.addr).await)
            .revoke_entitlement(with_bearer(entitlement(), &admin))
            .await
            .ok()
    })
    .await;

    clock.advance(PAST_THE_BOUND);
    // Until Orders has seen its stream end, its replica is still current:
    // each try is a new order, so that one placed then is not replayed.
    let status = first_refusal_of_a_new_order(&orders).await;
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

/// `service`'s gauge for `feed` named `gauge` in `metrics`.
fn feed_gauge(metrics: &str, gauge: &str, service: &str, feed: &str) -> Option<i64> {
    let series = format!("{gauge}{{service=\"{service}\",feed=\"{feed}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .map(|value| value.parse().expect("an integer"))
}

/// The attack: Orders' replica is cut off from Products' feed past its bound
/// while Products revokes an entitlement; when the feed comes back, its replay
/// of what was missed is slow (here held after its first change, by a relay
/// where Products was). Until the replay reaches the revocation and its end,
/// the replica still grants: it must stay inconclusive, and the order go to
/// the next source, which knows.
#[tokio::test]
async fn a_replica_mid_replay_after_its_bound_decides_nothing() {
    let clock = ManualClock::new();
    let (mut mesh, orders) = mesh_with_an_order_from_the_replica(&clock).await;
    let position = |metrics: &str| {
        feed_gauge(metrics, "tokenmesh_feed_position", ORDERS, "entitlements")
            .expect("the replica's position")
    };
    let silence = |metrics: &str| {
        feed_gauge(
            metrics,
            "tokenmesh_feed_silence_seconds",
            ORDERS,
            "entitlements",
        )
    };
    let applied = position(&mesh.metrics());

    // Products moves (same data); there, a product is created and alice's
    // entitlement revoked, while Orders hears nothing past the bound.
    let (mut moved, admin) = products_moved(&mut mesh).await;
    let mut catalogue = ProductsServiceClient::new(Mesh::channel(moved.addr).await);
    eventually(DEADLINE, || {
        let mut catalogue = catalogue.clone();
        let admin = admin.clone();
        async move {
            catalogue
                .create_product(with_bearer(product("P-701"), &admin))
                .await
                .ok()
        }
    })
    .await;
    catalogue
        .revoke_entitlement(with_bearer(entitlement(), &admin))
        .await
        .expect("revoked");
    clock.advance(PAST_THE_BOUND);

    // Where Products was, a relay to where it is now passes the replay's first
    // change (the new product) and holds the revocation and the rest.
    let relay = Relay::start(
        mesh.products_addr(),
        moved.addr,
        "/tokenmesh.products.v1.ProductsService/WatchEntitlements",
        1,
    )
    .await;
    eventually(DEADLINE, || async {
        (position(&mesh.metrics()) > applied).then_some(())
    })
    .await;
    let mut during = orders.clone();
    let status = place(&mut during, "mid-replay")
        .await
        .expect_err("no order from a replica mid-replay");
    assert_eq!(
        (status.code(), status.message()),
        (Code::PermissionDenied, "not entitled to product P-700"),
        "the rpc source decided, through the relay"
    );
    let metrics = mesh.metrics();
    assert_eq!(
        silence(&metrics),
        Some(301),
        "mid-replay, the feed is still silent: {metrics}"
    );

    // The replay ends: the replica is current again, and denies too.
    relay.release();
    eventually(DEADLINE, || async {
        (silence(&mesh.metrics()) == Some(0)).then_some(())
    })
    .await;
    let mut after = orders.clone();
    let status = place(&mut after, "replayed").await.expect_err("revoked");
    assert_eq!(status.message(), "not entitled to product P-700");
    drop(relay);
    moved.stop().await.expect("stops");
    mesh.shutdown().await;
}

/// The store a service keeps in `file` (SQLite) or in `schema` of the mesh's
/// database (PostgreSQL), opened as the service opens it: what an operator
/// restoring a backup works on.
async fn store(mesh: &Mesh, file: &str, schema: &'static str) -> AnyPool {
    tokenmesh_server::db::connect(&mesh.store_url(file), schema)
        .await
        .expect("the service's store")
}

/// The last position of the feed kept in `table` (its `seq`).
async fn last_position(store: &AnyPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COALESCE(MAX(seq), 0) FROM {table}"))
        .fetch_one(store)
        .await
        .expect("last position")
}

/// Runs `statements` on `store`: a restore's effect on it.
async fn go_back(store: &AnyPool, statements: &[String]) {
    for statement in statements {
        sqlx::query(statement)
            .execute(store)
            .await
            .expect(statement);
    }
}

/// The attack: Auth's store goes back (restored from a backup, or failed
/// over to a standby that lacked the last writes) under verifiers that had
/// followed its feed further. Its next revocation takes a position they
/// already hold, so asking for what comes after their cursor they would never
/// hear of it: the feed must tell them, and they replay it from the start.
#[tokio::test]
async fn a_revocation_after_auths_store_went_back_reaches_every_verifier() {
    let mut mesh = Mesh::start().await;
    let alice = mesh.login("alice").await;
    let admin = mesh.login("admin").await;
    let auth_store = store(&mesh, "auth.db", tokenmesh_auth::SCHEMA).await;
    let backup = last_position(&auth_store, "revocations").await;

    // After the backup: bob deactivated, reactivated and deactivated again
    // (two revocations), which both verifiers hear.
    let mut auth = mesh.auth().await;
    deactivate(&mut auth, &admin, "bob").await;
    auth.reactivate_user(with_bearer(
        ReactivateUserRequest {
            username: "bob".into(),
        },
        &admin,
    ))
    .await
    .expect("reactivated");
    deactivate(&mut auth, &admin, "bob").await;
    let lost = last_position(&auth_store, "revocations").await;
    assert_eq!(lost, backup + 2);
    eventually(DEADLINE, || async {
        (revocation_positions(&mesh) == [lost; 2]).then_some(())
    })
    .await;

    // Auth's revocations go back to the backup; Auth comes back on them.
    mesh.stop_auth().await;
    go_back(
        &auth_store,
        &[format!("DELETE FROM revocations WHERE seq > {backup}")],
    )
    .await;
    mesh.restart_auth().await;

    // There, alice is deactivated: at a position both verifiers held (had
    // the new history reached theirs before they resubscribed, positions
    // alone could not tell it apart: see docs/security.md).
    deactivate(&mut mesh.auth().await, &admin, "alice").await;
    assert_eq!(last_position(&auth_store, "revocations").await, backup + 1);
    refused_by_both(
        &mesh,
        &alice,
        Code::Unauthenticated,
        "TOKEN_REVOKED",
        "token revoked",
    )
    .await;
    eventually(DEADLINE, || async {
        (revocation_positions(&mesh) == [backup + 1; 2]).then_some(())
    })
    .await;
    mesh.shutdown().await;
}

/// The attack: Products' store goes back under Orders' entitlement replica,
/// which had followed its feed further; alice's entitlement is then revoked
/// there, at a position the replica held. The replica must not keep granting
/// it: Products tells it the store went back, and it re-syncs from the
/// snapshot.
#[tokio::test]
async fn an_entitlement_revoked_after_products_store_went_back_reaches_orders_replica() {
    let clock = ManualClock::new();
    let (mut mesh, orders) = mesh_with_an_order_from_the_replica(&clock).await;
    let products_store = store(&mesh, "products.db", tokenmesh_products::SCHEMA).await;
    let backup = last_position(&products_store, "entitlement_events").await;
    let position = |mesh: &Mesh| {
        feed_gauge(
            &mesh.metrics(),
            "tokenmesh_feed_position",
            ORDERS,
            "entitlements",
        )
    };

    // After the backup: two products, which Orders' replica hears of.
    let mut catalogue = mesh.products_as("admin").await;
    for id in ["P-701", "P-702"] {
        catalogue
            .create_product(product(id))
            .await
            .expect("created");
    }
    assert_eq!(
        last_position(&products_store, "entitlement_events").await,
        backup + 2
    );
    eventually(DEADLINE, || async {
        (position(&mesh) == Some(backup + 2)).then_some(())
    })
    .await;

    // Products' store goes back to the backup; Products comes back on it.
    mesh.stop_products().await;
    go_back(
        &products_store,
        &[
            format!("DELETE FROM entitlement_events WHERE seq > {backup}"),
            "DELETE FROM products WHERE id IN ('P-701', 'P-702')".to_owned(),
        ],
    )
    .await;
    mesh.start_products().await;

    // There, alice's entitlement is revoked: at a position the replica held.
    let mut catalogue = mesh.products_as("admin").await;
    catalogue
        .revoke_entitlement(entitlement())
        .await
        .expect("revoked");
    assert_eq!(
        last_position(&products_store, "entitlement_events").await,
        backup + 1
    );
    let refused = first_refusal_of_a_new_order(&orders).await;
    assert_refusal(
        Err::<(), _>(refused),
        Code::PermissionDenied,
        "NOT_ENTITLED",
        "not entitled to product P-700",
        &[("product_id", PRODUCT)],
    );
    eventually(DEADLINE, || async {
        (position(&mesh) == Some(backup + 1)).then_some(())
    })
    .await;
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
    deactivate(&mut mesh.auth().await, &admin, "bob").await;
    refused_by_both(
        &mesh,
        &bob,
        Code::Unauthenticated,
        "TOKEN_REVOKED",
        "token revoked",
    )
    .await;
    mesh.shutdown().await;
}
