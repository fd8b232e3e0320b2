//! The read caches through the handlers, called directly (no socket), on SQLite
//! and PostgreSQL: a write here is read here at once, a write elsewhere once
//! the follower reads it, and a view past its bound reads the database.

use std::{sync::Arc, time::Duration};

use tokenmesh_interceptor::ManualClock;
use tokenmesh_proto::{
    claims::v1::AccessClaims,
    names::scope,
    products::v1::{
        CreateProductRequest, EntitlementRequest, GetProductRequest, ListProductsRequest,
        SetEntitlementLimitsRequest, products_service_server::ProductsService as _,
    },
};
use tokenmesh_server::{
    Caller, KeyEncryptionKey, KeyRing, RingConfig, SigningAlgorithm, SigningKeys, Wakeups,
    wakeups::{ENTITLEMENTS, SQLITE_POLL},
};
use tonic::{Code, Request};

use crate::{ProductsConfig, ProductsService, Store, view};

/// Demo Products over the fresh database at a URL, on a clock that moves
/// only when told, with no follower: each test reads the feed as it needs.
struct Fixture {
    products: ProductsService,
    store: Store,
    clock: ManualClock,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start(url: &str) -> Self {
        let clock = ManualClock::new();
        let store = Store::open(url)
            .await
            .expect("store opens")
            .with_clock(Arc::new(clock.clone()));
        crate::seed_demo(&store).await.expect("demo seeded");
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = SigningKeys {
            kek: KeyEncryptionKey::from_bytes(&[7; 32], &dir.path().join("kek")).expect("kek"),
            import: Vec::new(),
        };
        let ring = RingConfig {
            algorithm: SigningAlgorithm::EdDSA,
            publish_retired_for: Duration::from_secs(600),
            clock: Arc::new(clock.clone()),
        };
        let keys = KeyRing::open(store.grant_keys(), keys, ring)
            .await
            .expect("keys");
        let mut config = ProductsConfig::new("products-test");
        config.clock = Arc::new(clock.clone());
        Self {
            products: ProductsService::new(store.clone(), keys, config),
            store,
            clock,
            _dir: dir,
        }
    }

    /// The follower has read the feed to its end, now.
    async fn feed_read(&self) {
        let revision = self.store.revision().await.expect("revision");
        let view = self.products.reads.view();
        view.read_through(revision, view.now());
    }

    /// `subject`'s `GetProduct` of `id`: the product's name, or the status.
    async fn get(&self, subject: &str, id: &str) -> Result<String, (Code, String)> {
        let request = GetProductRequest { id: id.into() };
        self.products
            .get_product(from(subject, request))
            .await
            .map(|response| response.into_inner().name)
            .map_err(|status| (status.code(), status.message().to_owned()))
    }

    /// `subject`'s first page of products (ids), and the grant beside it.
    async fn list(&self, subject: &str) -> (Vec<String>, String) {
        let response = self
            .products
            .list_products(from(subject, ListProductsRequest::default()))
            .await
            .expect("listed")
            .into_inner();
        let ids = response.products.into_iter().map(|p| p.id).collect();
        (ids, response.entitlement_token)
    }

    async fn grant(&self, subject: &str, product_id: &str) {
        let request = from("admin", entitlement(subject, product_id));
        let granted = self.products.grant_entitlement(request).await;
        assert!(granted.expect("granted").into_inner().changed);
    }

    async fn revoke(&self, subject: &str, product_id: &str) {
        let request = from("admin", entitlement(subject, product_id));
        let revoked = self.products.revoke_entitlement(request).await;
        assert!(revoked.expect("revoked").into_inner().changed);
    }
}

fn entitlement(subject: &str, product_id: &str) -> EntitlementRequest {
    EntitlementRequest {
        subject: subject.into(),
        product_id: product_id.into(),
    }
}

/// `message` from `subject` (with the admin scope if it is `admin`), as the
/// auth layer hands it over.
fn from<T>(subject: &str, message: T) -> Request<T> {
    let claims = AccessClaims {
        sub: subject.into(),
        scope: if subject == "admin" {
            scope::ADMIN.into()
        } else {
            String::new()
        },
        ver: 1,
        ..AccessClaims::default()
    };
    let mut request = Request::new(message);
    request.extensions_mut().insert(Arc::new(Caller(claims)));
    request
}

fn not_entitled(id: &str) -> Result<String, (Code, String)> {
    Err((
        Code::PermissionDenied,
        format!("not entitled to product {id}"),
    ))
}

/// Waits until the follower has read the feed through a position `reached`
/// accepts, failing after a generous deadline.
async fn read_until(
    reads: &mut tokio::sync::watch::Receiver<Option<i64>>,
    what: &str,
    reached: impl FnMut(&Option<i64>) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(30), reads.wait_for(reached))
        .await
        .unwrap_or_else(|_| panic!("never: {what}"))
        .expect("the view outlives the test");
}

/// No follower runs here: only the write handlers themselves can move the
/// view past their writes, and the answers cached before each write would be
/// served if they did not.
async fn a_write_here_is_read_here_at_once(url: &str) {
    let fixture = Fixture::start(url).await;
    fixture.feed_read().await;
    assert_eq!(fixture.get("bob", "P-104").await, not_entitled("P-104"));
    let (bob_before, grant_before) = fixture.list("bob").await;
    assert_eq!(bob_before, ["P-101"]);

    fixture.grant("bob", "P-104").await;
    assert_eq!(
        fixture.get("bob", "P-104").await,
        Ok("Enterprise plan".into())
    );
    let (bob_after, grant_after) = fixture.list("bob").await;
    assert_eq!(bob_after, ["P-101", "P-104"]);
    assert_ne!(grant_after, grant_before, "a new grant");

    let order_only = SetEntitlementLimitsRequest {
        subject: "bob".into(),
        product_id: "P-104".into(),
        actions: vec!["order".into()],
        max_quantity: 0,
    };
    fixture
        .products
        .set_entitlement_limits(from("admin", order_only))
        .await
        .expect("limits set");
    assert_eq!(
        fixture.get("bob", "P-104").await,
        Err((
            Code::PermissionDenied,
            "not allowed to view product P-104".into()
        ))
    );

    fixture.revoke("bob", "P-104").await;
    assert_eq!(fixture.get("bob", "P-104").await, not_entitled("P-104"));
    assert_eq!(fixture.list("bob").await.0, ["P-101"]);

    assert_eq!(
        fixture.get("admin", "P-200").await,
        Err((Code::NotFound, "product P-200 not found".into()))
    );
    let product = CreateProductRequest {
        id: "P-200".into(),
        name: "Audit log".into(),
        price_cents: 100,
        description: String::new(),
    };
    fixture
        .products
        .create_product(from("admin", product))
        .await
        .expect("created");
    assert_eq!(fixture.get("admin", "P-200").await, Ok("Audit log".into()));
}

/// Another replica's write (straight to the store: nothing here hears of
/// it) is served from the caches only while the view is within its bound;
/// past it, and before the feed was ever read, reads go to the database.
async fn a_view_past_its_bound_reads_the_database(url: &str) {
    let fixture = Fixture::start(url).await;
    assert_eq!(
        fixture.get("alice", "P-100").await,
        Ok("Starter plan".into())
    );
    fixture
        .store
        .revoke("alice", "P-100")
        .await
        .expect("revoked");
    assert_eq!(
        fixture.get("alice", "P-100").await,
        not_entitled("P-100"),
        "never read: no cache"
    );
    fixture
        .store
        .grant("alice", "P-100")
        .await
        .expect("granted");

    fixture.feed_read().await;
    assert_eq!(
        fixture.get("alice", "P-100").await,
        Ok("Starter plan".into())
    );
    let (listed, grant) = fixture.list("alice").await;
    assert_eq!(listed, ["P-100", "P-101", "P-102"]);
    fixture
        .store
        .revoke("alice", "P-100")
        .await
        .expect("revoked");
    assert_eq!(
        fixture.get("alice", "P-100").await,
        Ok("Starter plan".into()),
        "within the bound: cached"
    );
    assert_eq!(fixture.list("alice").await, (listed, grant.clone()));

    let bound = fixture.products.reads.view().bound();
    fixture.clock.advance(bound + Duration::from_secs(1));
    assert_eq!(fixture.get("alice", "P-100").await, not_entitled("P-100"));
    let (listed, renewed) = fixture.list("alice").await;
    assert_eq!(listed, ["P-101", "P-102"]);
    assert_ne!(renewed, grant, "the database's revision: a new grant");
}

/// The follower reads the feed when woken, as another replica's NOTIFY
/// wakes it, and moves the view: the write reaches this replica's caches.
async fn the_follower_brings_another_replicas_write_to_the_caches(url: &str) {
    let fixture = Fixture::start(url).await;
    let wakeups = Wakeups::local(&[ENTITLEMENTS], SQLITE_POLL);
    let view = fixture.products.reads.view().clone();
    let mut reads = view.reads();
    tokio::spawn(view::follow(
        Arc::downgrade(&view),
        fixture.store.clone(),
        wakeups.subscribe(ENTITLEMENTS),
        wakeups.poll(),
    ));
    read_until(&mut reads, "the follower read the feed", Option::is_some).await;
    assert_eq!(
        fixture.get("alice", "P-100").await,
        Ok("Starter plan".into())
    );

    let revoked = fixture
        .store
        .revoke("alice", "P-100")
        .await
        .expect("revoked");
    wakeups.wake(ENTITLEMENTS);
    read_until(&mut reads, "the view reached the revocation", |read| {
        *read >= Some(revoked.cursor)
    })
    .await;
    assert_eq!(fixture.get("alice", "P-100").await, not_entitled("P-100"));
}

tokenmesh_server::on_each_store!(
    a_write_here_is_read_here_at_once,
    a_view_past_its_bound_reads_the_database,
    the_follower_brings_another_replicas_write_to_the_caches,
);
