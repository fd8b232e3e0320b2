//! Issue 11, item 4, in storage: the entitlement feed's compaction and
//! snapshot in Products' tables, and Orders' replica replaced whole, on SQLite
//! and PostgreSQL.

use std::time::Duration;

use tokenmesh_tests::{ManualClock, TestDatabase};

/// Compaction keeps the last change, never moves the horizon back, and the
/// snapshot pages hold the state; Orders' replica is replaced whole — on
/// `products_url` and `orders_url`, fresh databases.
async fn compaction_and_snapshot(products_url: &str, orders_url: &str) {
    use std::sync::Arc;
    use tokenmesh_interceptor::Clock;
    use tokenmesh_orders::{ReplicaChange, ReplicaEntry, Terms as OrderTerms};
    use tokenmesh_products::{FeedChange, ProductRecord, SnapshotAfter, Store};

    let clock = ManualClock::new();
    let products = Store::open(products_url)
        .await
        .expect("products store")
        .with_clock(Arc::new(clock.clone()));
    for id in ["P-1", "P-2"] {
        let product = ProductRecord {
            id: id.into(),
            name: id.into(),
            description: String::new(),
            price_cents: 1,
        };
        products.create_product(&product).await.expect("created");
    }
    products.grant("alice", "P-1").await.expect("granted");
    products.grant("bob", "P-2").await.expect("granted");
    products.revoke("alice", "P-1").await.expect("revoked");
    let before = clock.now_unix() + 1;
    clock.advance(Duration::from_secs(100));
    products.grant("alice", "P-2").await.expect("granted");

    assert_eq!(products.compacted_through().await.expect("read"), 0);
    assert_eq!(products.compact_feed(before).await.expect("compacted"), 5);
    let kept: Vec<i64> = products
        .changes_since(0, 10)
        .await
        .expect("read")
        .into_iter()
        .map(|change| change.seq)
        .collect();
    assert_eq!(kept, [6]);
    assert_eq!(
        products.compact_feed(0).await.expect("again"),
        5,
        "never back"
    );
    let everything = clock.now_unix() + 1000;
    assert_eq!(
        products.compact_feed(everything).await.expect("again"),
        5,
        "the last change stays"
    );

    let page = |after| {
        let products = products.clone();
        async move {
            products
                .snapshot_page(5, &after, 1)
                .await
                .expect("page")
                .into_iter()
                .map(|row| (row.seq, row.change))
                .collect::<Vec<_>>()
        }
    };
    let granted = |subject: &str, product: &str| FeedChange::Entitlement {
        subject: subject.into(),
        product_id: product.into(),
        granted: true,
        terms: tokenmesh_products::Terms::default(),
    };
    assert_eq!(
        page(SnapshotAfter::Product("P-1".into())).await,
        [(
            5,
            FeedChange::ProductCreated {
                product_id: "P-2".into()
            }
        )]
    );
    assert_eq!(page(SnapshotAfter::Product("P-2".into())).await, []);
    let first = SnapshotAfter::Entitlement(String::new(), String::new());
    assert_eq!(page(first).await, [(5, granted("alice", "P-2"))]);
    let next = SnapshotAfter::Entitlement("alice".into(), "P-2".into());
    assert_eq!(page(next).await, [(5, granted("bob", "P-2"))]);
    let last = SnapshotAfter::Entitlement("bob".into(), "P-2".into());
    assert_eq!(page(last).await, []);

    let orders = tokenmesh_orders::Store::open(orders_url)
        .await
        .expect("orders store");
    let entitlement = |subject: &str, product: &str, granted| ReplicaChange::Entitlement {
        subject: subject.into(),
        product_id: product.into(),
        granted,
        changed_at: 1,
        terms: OrderTerms::default(),
    };
    let product = |id: &str| ReplicaChange::Product {
        product_id: id.into(),
    };
    orders
        .apply_replica_change(&entitlement("carol", "P-1", true), 3)
        .await
        .expect("applied");
    let snapshot = [
        (product("P-1"), 5),
        (product("P-2"), 5),
        (entitlement("alice", "P-2", true), 5),
        (entitlement("alice", "P-2", false), 6),
    ];
    orders
        .replace_replica(&snapshot, 6)
        .await
        .expect("replaced");
    assert_eq!(orders.replica_cursor().await.expect("cursor"), 6);
    assert_eq!(
        orders.replica_lookup("carol", "P-1").await.expect("lookup"),
        ReplicaEntry::NeverGranted,
        "what the snapshot does not hold is gone"
    );
    assert_eq!(
        orders.replica_lookup("alice", "P-2").await.expect("lookup"),
        ReplicaEntry::Known {
            granted: false,
            changed_at: 1,
            seq: 6,
            terms: OrderTerms::default(),
        },
        "applied in order"
    );
}

#[tokio::test]
async fn compaction_and_snapshot_on_sqlite() {
    compaction_and_snapshot("sqlite::memory:", "sqlite::memory:").await;
}

#[tokio::test]
async fn compaction_and_snapshot_on_postgres() {
    let Some(products) = TestDatabase::create().await else {
        return;
    };
    let Some(orders) = TestDatabase::create().await else {
        return;
    };
    compaction_and_snapshot(&products.url, &orders.url).await;
    products.drop_database().await;
    orders.drop_database().await;
}
