//! Issue 11, items 3 and 4: feeds across replicas and feeds that stay small. A
//! revocation written through one Auth replica wakes the streams of another
//! at once (PostgreSQL LISTEN/NOTIFY, the poll made useless); the entitlement
//! feed is compacted, a subscriber from before the horizon is told so, and
//! Orders' replica re-syncs from the snapshot to exactly Products' state.

use std::{collections::BTreeSet, time::Duration};

use tokenmesh_proto::{
    auth::v1::{
        DeactivateUserRequest, RevocationEvent, WatchRevocationsRequest, revocation_event::Revoked,
    },
    products::v1::{
        EntitlementEvent, EntitlementRequest, WatchEntitlementsRequest, entitlement_event::Change,
        products_service_client::ProductsServiceClient,
    },
};
use tokenmesh_tests::{
    ManualClock, Mesh, Replica, SourceKind, TestDatabase,
    calls::{assert_status, service_token, with_bearer},
    eventually, order,
};
use tonic::{Code, Status};

/// How long a test waits for something that happens at once.
const DEADLINE: Duration = Duration::from_secs(60);
/// A poll that never comes within a test.
const NO_POLL: [&str; 2] = ["--revocation-feed-poll", "24h"];

/// A revocation stream from Auth replica `replica`, replayed to its end.
async fn follow(mesh: &Mesh, replica: &Replica) -> tonic::Streaming<RevocationEvent> {
    let mut auth = replica.auth().await;
    let token = service_token(&mut auth, mesh, "products", "auth").await;
    let mut stream = auth
        .watch_revocations(with_bearer(WatchRevocationsRequest { since: 0 }, &token))
        .await
        .expect("watch revocations")
        .into_inner();
    // The caught-up event carries no revocation.
    while let Some(event) = stream.message().await.expect("replay") {
        if event.revoked.is_none() {
            break;
        }
    }
    stream
}

/// Deactivates `username` through the mesh's own Auth (replica A).
async fn deactivate_through_a(mesh: &Mesh, username: &str) {
    let admin = mesh.login("admin").await;
    mesh.auth()
        .await
        .deactivate_user(with_bearer(
            DeactivateUserRequest {
                username: username.into(),
            },
            &admin,
        ))
        .await
        .expect("deactivated through replica A");
}

/// The subject of the next subject revocation on `stream`.
async fn next_subject(stream: &mut tonic::Streaming<RevocationEvent>) -> String {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let event = stream.message().await.expect("stream").expect("open");
            if let Some(Revoked::Subject(subject)) = event.revoked {
                break subject.subject;
            }
        }
    })
    .await
    .expect("heard without waiting for a poll")
}

#[tokio::test]
async fn a_revocation_through_one_auth_replica_wakes_a_follower_of_another_without_the_poll() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let mesh = Mesh::builder()
        .auth_database_url(Some(database.url.clone()))
        .start()
        .await;
    // Replica B reads its table only when woken: a day between polls.
    let replica_b = mesh.start_auth_replica_with(&NO_POLL).await;
    let mut stream = follow(&mesh, &replica_b).await;
    deactivate_through_a(&mesh, "bob").await;
    assert_eq!(next_subject(&mut stream).await, "bob");
    drop(stream);
    replica_b.stop().await;
    mesh.shutdown().await;
    database.drop_database().await;
}

#[tokio::test]
async fn a_listener_whose_connection_was_killed_reconnects_and_misses_no_revocation() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let mesh = Mesh::builder()
        .auth_database_url(Some(database.url.clone()))
        .start()
        .await;
    let replica_b = mesh.start_auth_replica_with(&NO_POLL).await;
    let mut stream = follow(&mesh, &replica_b).await;
    sqlx::any::install_default_drivers();
    // The server's own database: the test's cannot refuse connections to itself.
    let admin_url = std::env::var("TOKENMESH_TEST_DATABASE_URL").expect("set: the database exists");
    let pool = sqlx::AnyPool::connect(&admin_url).await.expect("server");
    let name = database.url.rsplit('/').next().expect("database name");
    // Listeners cannot reconnect for now (open connections keep working).
    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .execute(&pool)
        .await
        .expect("connections refused");
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND query LIKE 'LISTEN%'",
    )
    .bind(name)
    .fetch_all(&pool)
    .await
    .expect("listeners killed");
    assert_eq!(killed, [true, true], "replica A's and B's listeners");
    // Its notification reaches no one: B learns of it only by reading its
    // table when its listener is back.
    deactivate_through_a(&mesh, "bob").await;
    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .execute(&pool)
        .await
        .expect("connections allowed");
    assert_eq!(next_subject(&mut stream).await, "bob");
    pool.close().await;
    drop(stream);
    replica_b.stop().await;
    mesh.shutdown().await;
    database.drop_database().await;
}

fn entitlement(subject: &str, product_id: &str) -> EntitlementRequest {
    EntitlementRequest {
        subject: subject.into(),
        product_id: product_id.into(),
    }
}

/// The events of a WatchEntitlements stream up to its caught-up event, or the
/// status it ended with.
async fn until_caught_up(
    mesh: &Mesh,
    request: WatchEntitlementsRequest,
) -> Result<Vec<EntitlementEvent>, Status> {
    let mut auth = mesh.auth().await;
    let token = service_token(&mut auth, mesh, "orders", "products").await;
    let mut stream = ProductsServiceClient::new(Mesh::channel(mesh.products_addr()).await)
        .watch_entitlements(with_bearer(request, &token))
        .await?
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.message().await? {
        if event.change.is_none() {
            events.push(event);
            return Ok(events);
        }
        events.push(event);
    }
    panic!("the stream ended before catching up");
}

/// The entitlements held after applying `events` in order, as upserts.
fn entitled(events: &[EntitlementEvent]) -> BTreeSet<(String, String)> {
    let mut held = BTreeSet::new();
    for event in events {
        if let Some(Change::Entitlement(change)) = &event.change {
            let key = (change.subject.clone(), change.product_id.clone());
            if change.granted {
                held.insert(key);
            } else {
                held.remove(&key);
            }
        }
    }
    held
}

fn pairs(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    list.iter()
        .map(|(subject, product)| (subject.to_string(), product.to_string()))
        .collect()
}

/// The entitlements Orders' replica holds as granted, read from its database.
async fn replica_entitlements(mesh: &Mesh) -> BTreeSet<(String, String)> {
    let pool =
        tokenmesh_server::db::connect(&mesh.store_url("orders.db"), tokenmesh_orders::SCHEMA)
            .await
            .expect("orders database");
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT subject, product_id FROM replica_entitlements WHERE granted = 1")
            .fetch_all(&pool)
            .await
            .expect("replica rows");
    pool.close().await;
    rows.into_iter().collect()
}

#[tokio::test]
async fn a_subscriber_behind_the_compaction_is_told_so_and_orders_resyncs_from_the_snapshot() {
    let clock = ManualClock::new();
    let mut mesh = Mesh::builder()
        .clock(clock.clone())
        .entitlement_sources(&[SourceKind::Replica])
        .entitlement_feed_compaction(Duration::from_secs(600), Duration::from_millis(20))
        .start()
        .await;
    // The demo: 5 products and 4 grants, cursors 1 to 9, all in Orders' replica.
    mesh.stop_orders().await;
    let mut admin = mesh.products_as("admin").await;
    // Before the horizon: cursors 10 to 13.
    admin
        .revoke_entitlement(entitlement("alice", "P-100"))
        .await
        .expect("revoke");
    admin
        .grant_entitlement(entitlement("bob", "P-103"))
        .await
        .expect("grant");
    admin
        .revoke_entitlement(entitlement("bob", "P-101"))
        .await
        .expect("revoke");
    admin
        .grant_entitlement(entitlement("alice", "P-104"))
        .await
        .expect("grant");
    clock.advance(Duration::from_secs(3600));
    // After it (kept): cursors 14 and 15. Products refuses tokens as stale
    // until its revocation feed's next heartbeat on the moved clock.
    let mut admin = mesh.products_as("admin").await;
    eventually(DEADLINE, || {
        let mut admin = admin.clone();
        async move {
            admin
                .revoke_entitlement(entitlement("alice", "P-104"))
                .await
                .ok()
        }
    })
    .await;
    admin
        .grant_entitlement(entitlement("bob", "P-101"))
        .await
        .expect("grant again");
    let expected = pairs(&[
        ("alice", "P-101"),
        ("alice", "P-102"),
        ("bob", "P-101"),
        ("bob", "P-103"),
    ]);

    // Everything up to 13 is compacted away (and 13 stays the horizon: 14
    // and 15 are younger than the retention).
    let compacted = WatchEntitlementsRequest {
        since: 5,
        snapshot: false,
    };
    eventually(DEADLINE, || async {
        match until_caught_up(&mesh, compacted).await {
            Err(status) if status.message().contains("is 13;") => Some(()),
            _ => None,
        }
    })
    .await;
    assert_status(
        until_caught_up(&mesh, compacted).await,
        Code::OutOfRange,
        "cursor 5 is older than the entitlement feed's compaction: the oldest cursor still served is 13; resubscribe with `snapshot`",
    );
    // From the horizon on, the tail is whole.
    let tail = until_caught_up(
        &mesh,
        WatchEntitlementsRequest {
            since: 13,
            snapshot: false,
        },
    )
    .await
    .expect("served from the horizon");
    let cursors: Vec<u64> = tail.iter().map(|event| event.cursor).collect();
    assert_eq!(cursors, [14, 15, 15]);
    // The snapshot, then the tail: exactly Products' entitlements.
    let snapshot = until_caught_up(
        &mesh,
        WatchEntitlementsRequest {
            since: 0,
            snapshot: true,
        },
    )
    .await
    .expect("snapshot");
    assert_eq!(entitled(&snapshot), expected);
    assert_eq!(snapshot.last().map(|event| event.cursor), Some(15));

    // Orders held cursor 9: it is told, re-syncs, and holds exactly that.
    mesh.restart_orders().await;
    assert_eq!(replica_entitlements(&mesh).await, expected);
    let mut orders = mesh.orders_as("alice").await;
    let refused = eventually(DEADLINE, || {
        let mut orders = orders.clone();
        async move {
            match orders.place_order(order("P-100", 1, "revoked", "")).await {
                Err(status) if status.code() == Code::PermissionDenied => Some(status),
                _ => None,
            }
        }
    })
    .await
    .0;
    assert_eq!(refused.message(), "not entitled to product P-100");
    let placed = orders
        .place_order(order("P-102", 1, "kept", ""))
        .await
        .expect("entitled through the snapshot");
    assert_eq!(placed.into_inner().product_id, "P-102");
    mesh.shutdown().await;
}
