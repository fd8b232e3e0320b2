//! Issue 10, item 10: an entitlement's limit and actions are Products' state —
//! set by an admin, carried by the feed into Orders' replica, answered by
//! CheckEntitlement, put in grants — so leaving the grant out of PlaceOrder
//! gets the same decision as sending it, through every source.

use std::time::Duration;

use serde_json::json;
use tokenmesh_proto::{
    orders::v1::{EntitlementSource, PlaceOrderRequest},
    products::v1::{
        CheckEntitlementRequest, CreateProductRequest, EntitlementRequest, EntitlementResponse,
        EntitlementTerms, GetProductRequest, SetEntitlementLimitsRequest,
    },
};
use tokenmesh_tests::{
    Mesh, OrdersClient, ProductsClient, SourceKind, claims_of, eventually, order,
};
use tonic::{Code, Status};

/// A bound for a Products change that never reaches Orders, not a speed goal.
const PROPAGATION_DEADLINE: Duration = Duration::from_secs(60);

/// What PlaceOrder answered: the deciding source, or the status.
type Outcome = Result<EntitlementSource, (Code, String)>;

async fn place(orders: &mut OrdersClient, request: PlaceOrderRequest) -> Outcome {
    orders
        .place_order(request)
        .await
        .map(|placed| placed.into_inner().entitlement_source())
        .map_err(|status| (status.code(), status.message().to_owned()))
}

fn refused(code: Code, message: &str) -> Outcome {
    Err((code, message.to_owned()))
}

async fn set_limits(
    admin: &mut ProductsClient,
    subject: &str,
    product_id: &str,
    actions: &[&str],
    max_quantity: u32,
) -> Result<EntitlementResponse, Status> {
    admin
        .set_entitlement_limits(SetEntitlementLimitsRequest {
            subject: subject.into(),
            product_id: product_id.into(),
            actions: actions.iter().map(|action| action.to_string()).collect(),
            max_quantity,
        })
        .await
        .map(|response| response.into_inner())
}

async fn grant_entitlement(admin: &mut ProductsClient, subject: &str, product_id: &str) {
    admin
        .grant_entitlement(EntitlementRequest {
            subject: subject.into(),
            product_id: product_id.into(),
        })
        .await
        .expect("granted");
}

async fn create_product(admin: &mut ProductsClient, id: &str) {
    let create = CreateProductRequest {
        id: id.into(),
        name: format!("Product {id}"),
        price_cents: 100,
        description: String::new(),
    };
    admin.create_product(create).await.expect("created");
}

/// Grants bob P-104 as the last change and waits until Orders allows it
/// without a grant: the feed is applied in order, so every change before it
/// has reached the replica (an Orders without a replica source sees Products'
/// state at once through rpc).
async fn wait_until_orders_saw_every_change(mesh: &Mesh, admin: &mut ProductsClient) {
    grant_entitlement(admin, "bob", "P-104").await;
    let orders = mesh.orders_as("bob").await;
    let mut tries = 0;
    eventually(PROPAGATION_DEADLINE, || {
        tries += 1;
        let request_id = format!("sentinel-{tries}");
        let mut orders = orders.clone();
        async move {
            place(&mut orders, order("P-104", 1, &request_id, ""))
                .await
                .ok()
        }
    })
    .await;
}

#[tokio::test]
async fn an_order_over_the_limit_is_refused_with_or_without_the_grant() {
    let mesh = Mesh::start().await;
    let mut admin = mesh.products_as("admin").await;
    let set = set_limits(&mut admin, "alice", "P-100", &["view", "order"], 2)
        .await
        .expect("limit set");
    assert!(set.changed);
    wait_until_orders_saw_every_change(&mesh, &mut admin).await;

    let grant = mesh.grant_of("alice").await;
    assert_eq!(
        claims_of(&grant)["grants"][0],
        json!({"product_id": "P-100", "actions": ["view", "order"], "max_quantity": 2})
    );
    let mut alice = mesh.products_as("alice").await;
    let checked = alice
        .check_entitlement(CheckEntitlementRequest {
            subject: "alice".into(),
            product_id: "P-100".into(),
        })
        .await
        .expect("check")
        .into_inner();
    assert!(checked.allowed);
    assert_eq!(
        checked.terms,
        Some(EntitlementTerms {
            actions: vec!["view".into(), "order".into()],
            max_quantity: 2
        })
    );

    let over = refused(
        Code::PermissionDenied,
        "quantity exceeds the limit of 2 for product P-100",
    );
    let mut orders = mesh.orders_as("alice").await;
    assert_eq!(
        place(&mut orders, order("P-100", 3, "with-grant", &grant)).await,
        over
    );
    // The attack: the same order with the grant left out.
    assert_eq!(
        place(&mut orders, order("P-100", 3, "without-grant", "")).await,
        over
    );
    assert_eq!(
        place(&mut orders, order("P-100", 2, "within", "")).await,
        Ok(EntitlementSource::Replica)
    );
    mesh.shutdown().await;
}

/// The entitlements of the matrix: (product, actions, limit).
const TERMS: [(&str, &[&str], u32); 6] = [
    ("M-1", &["view", "order"], 0),
    ("M-2", &["view", "order"], 2),
    ("M-3", &["order"], 0),
    ("M-4", &["order"], 2),
    ("M-5", &["view"], 0),
    ("M-6", &["view"], 2),
];

/// What the state says of ordering `quantity` of a product with these terms.
fn specified(product_id: &str, actions: &[&str], limit: u32, quantity: i32) -> Outcome {
    if !actions.contains(&"order") {
        return refused(
            Code::PermissionDenied,
            &format!("not allowed to order product {product_id}"),
        );
    }
    if limit > 0 && i64::from(quantity) > i64::from(limit) {
        return refused(
            Code::PermissionDenied,
            &format!("quantity exceeds the limit of {limit} for product {product_id}"),
        );
    }
    Ok(EntitlementSource::Unspecified)
}

/// Every (product, quantity) of the matrix through an Orders that asks only
/// `source`, the grant sent only to the grant source.
async fn decisions(source: SourceKind) -> Vec<(String, i32, Outcome)> {
    let mesh = Mesh::builder().entitlement_sources(&[source]).start().await;
    let mut admin = mesh.products_as("admin").await;
    for (product_id, actions, limit) in TERMS {
        create_product(&mut admin, product_id).await;
        grant_entitlement(&mut admin, "alice", product_id).await;
        let set = set_limits(&mut admin, "alice", product_id, actions, limit)
            .await
            .expect("terms set");
        assert_eq!(set.changed, actions != ["view", "order"] || limit != 0);
    }
    if source != SourceKind::Grant {
        wait_until_orders_saw_every_change(&mesh, &mut admin).await;
    }
    // A grant-only Orders needs no wait: the grant is issued after every change.
    let grant = match source {
        SourceKind::Grant => mesh.grant_of("alice").await,
        SourceKind::Replica | SourceKind::Rpc => String::new(),
    };
    let mut orders = mesh.orders_as("alice").await;
    let mut decided = Vec::new();
    for (product_id, _, _) in TERMS {
        for quantity in 1..=3 {
            let request_id = format!("{product_id}-{quantity}");
            let outcome = place(
                &mut orders,
                order(product_id, quantity, &request_id, &grant),
            )
            .await;
            decided.push((product_id.to_owned(), quantity, outcome));
        }
    }
    mesh.shutdown().await;
    decided
}

#[tokio::test]
async fn one_state_gives_the_same_decision_through_every_source() {
    let mut expected = Vec::new();
    for (product_id, actions, limit) in TERMS {
        for quantity in 1..=3 {
            let outcome = specified(product_id, actions, limit, quantity);
            expected.push((product_id.to_owned(), quantity, outcome));
        }
    }
    for (source, wire) in [
        (SourceKind::Grant, EntitlementSource::Grant),
        (SourceKind::Replica, EntitlementSource::Replica),
        (SourceKind::Rpc, EntitlementSource::Rpc),
    ] {
        let expected: Vec<_> = expected
            .iter()
            .map(|(product_id, quantity, outcome)| {
                let outcome = outcome.clone().map(|_| wire);
                (product_id.clone(), *quantity, outcome)
            })
            .collect();
        assert_eq!(decisions(source).await, expected, "{source:?} alone");
    }
}

#[tokio::test]
async fn a_v1_grant_never_speaks_for_a_limited_entitlement() {
    let mesh = Mesh::builder().grant_versions(1, &[1, 2]).start().await;
    let older = mesh.grant_of("alice").await;
    let mut admin = mesh.products_as("admin").await;
    set_limits(&mut admin, "alice", "P-100", &["view", "order"], 2)
        .await
        .expect("limit set");
    wait_until_orders_saw_every_change(&mesh, &mut admin).await;

    // Products leaves it out of v1 grants issued from now on.
    let newer = mesh.grant_of("alice").await;
    assert_eq!(claims_of(&newer)["product_ids"], json!(["P-101", "P-102"]));
    let mut orders = mesh.orders_as("alice").await;
    for (grant, name) in [(&newer, "newer"), (&older, "older")] {
        // A grant issued before the change, listing P-100, no longer speaks for it.
        assert_eq!(
            place(&mut orders, order("P-100", 3, &format!("{name}-3"), grant)).await,
            refused(
                Code::PermissionDenied,
                "quantity exceeds the limit of 2 for product P-100"
            ),
            "{name} v1 grant"
        );
        assert_eq!(
            place(&mut orders, order("P-100", 1, &format!("{name}-1"), grant)).await,
            Ok(EntitlementSource::Replica),
            "{name} v1 grant"
        );
    }
    assert_eq!(
        place(&mut orders, order("P-101", 5, "unlimited", &newer)).await,
        Ok(EntitlementSource::Grant)
    );
    mesh.shutdown().await;
}

#[tokio::test]
async fn setting_limits_is_checked() {
    let mesh = Mesh::start().await;
    let mut admin = mesh.products_as("admin").await;
    let status = |result: Result<EntitlementResponse, Status>| {
        let status = result.expect_err("refused");
        (status.code(), status.message().to_owned())
    };
    let expect = |code, message: &str| (code, message.to_owned());
    let mut alice = mesh.products_as("alice").await;
    assert_eq!(
        status(set_limits(&mut alice, "alice", "P-100", &["order"], 0).await),
        expect(
            Code::PermissionDenied,
            "insufficient scope: this method requires `admin`"
        )
    );
    assert_eq!(
        status(set_limits(&mut admin, "alice", "P-100", &[], 1).await),
        expect(
            Code::InvalidArgument,
            "actions: at least one is required (revoke the entitlement to allow nothing)"
        )
    );
    assert_eq!(
        status(set_limits(&mut admin, "alice", "P-100", &["order", "resell"], 1).await),
        expect(
            Code::InvalidArgument,
            "actions: actions[1] is not one of view, order"
        )
    );
    assert_eq!(
        status(set_limits(&mut admin, "", "P-100", &["order"], 1).await),
        expect(Code::InvalidArgument, "subject: required")
    );
    assert_eq!(
        status(set_limits(&mut admin, "alice", "P-999", &["order"], 1).await),
        expect(Code::NotFound, "product P-999 not found")
    );
    assert_eq!(
        status(set_limits(&mut admin, "alice", "P-104", &["order"], 1).await),
        expect(
            Code::NotFound,
            "no entitlement to product P-104 for this subject: grant it first"
        )
    );
    let first = set_limits(&mut admin, "alice", "P-100", &["order"], 1)
        .await
        .expect("set");
    let again = set_limits(&mut admin, "alice", "P-100", &["order", "order"], 1)
        .await
        .expect("set again");
    assert!(first.changed && !again.changed);
    assert_eq!(again.cursor, first.cursor, "nothing new on the feed");
    mesh.shutdown().await;
}

#[tokio::test]
async fn without_view_products_hides_the_product_and_the_order_still_goes_through() {
    let mesh = Mesh::start().await;
    let mut admin = mesh.products_as("admin").await;
    set_limits(&mut admin, "alice", "P-100", &["order"], 0)
        .await
        .expect("set");
    let listed = mesh.catalogue_of("alice").await;
    let mut alice = mesh.products_as("alice").await;
    let ids: Vec<&str> = listed.products.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["P-101", "P-102"]);
    assert_eq!(
        claims_of(&listed.entitlement_token)["grants"][0],
        json!({"product_id": "P-100", "actions": ["order"], "max_quantity": 0})
    );
    let get = |id: &str| GetProductRequest { id: id.into() };
    let hidden = alice.get_product(get("P-100")).await.expect_err("hidden");
    assert_eq!(
        (hidden.code(), hidden.message()),
        (Code::PermissionDenied, "not allowed to view product P-100")
    );
    alice.get_product(get("P-101")).await.expect("visible");
    let mut orders = mesh.orders_as("alice").await;
    assert_eq!(
        place(
            &mut orders,
            order("P-100", 1, "order-only", &listed.entitlement_token)
        )
        .await,
        Ok(EntitlementSource::Grant)
    );
    mesh.shutdown().await;
}

// === storage, on SQLite and PostgreSQL ===

/// Products keeps terms, feeds them and filters its listing by `view`; Orders'
/// replica keeps them with the feed position — on `products_url` and
/// `orders_url`, fresh databases.
async fn terms_are_stored_and_fed(products_url: &str, orders_url: &str) {
    use tokenmesh_orders::{ReplicaChange, ReplicaEntry, Terms as OrderTerms};
    use tokenmesh_products::{EntitlementRecord, FeedChange, ProductRecord, Store, Terms};

    let products = Store::open(products_url).await.expect("products store");
    let product = ProductRecord {
        id: "P-1".into(),
        name: "One".into(),
        description: String::new(),
        price_cents: 1,
    };
    products.create_product(&product).await.expect("created");
    products.grant("alice", "P-1").await.expect("granted");
    let order_only = Terms::new(&["order".into()], 2).expect("valid");
    let set = products.set_terms("alice", "P-1", &order_only).await;
    assert!(set.expect("set").changed);
    let again = products.set_terms("alice", "P-1", &order_only).await;
    assert!(!again.expect("set again").changed, "the same terms");
    let nobody = products.set_terms("bob", "P-1", &order_only).await;
    assert!(!nobody.expect("no entitlement").changed);
    assert_eq!(
        products.entitlements("alice").await.expect("read"),
        [EntitlementRecord {
            product_id: "P-1".into(),
            terms: order_only.clone()
        }]
    );
    let visible = products.list_products(Some("alice"), "", 10).await;
    assert_eq!(visible.expect("list"), [], "no `view`");
    let feed = products.changes_since(0, 10).await.expect("feed");
    assert_eq!(feed.len(), 3, "created, granted, terms set");
    assert_eq!(
        feed[2].change,
        FeedChange::Entitlement {
            subject: "alice".into(),
            product_id: "P-1".into(),
            granted: true,
            terms: order_only,
        }
    );

    let orders = tokenmesh_orders::Store::open(orders_url)
        .await
        .expect("orders store");
    let replica_product = ReplicaChange::Product {
        product_id: "P-1".into(),
    };
    orders
        .apply_replica_change(&replica_product, 1)
        .await
        .expect("applied");
    let limited = OrderTerms {
        order: true,
        max_quantity: 2,
    };
    for cursor in [2, 3] {
        let change = ReplicaChange::Entitlement {
            subject: "alice".into(),
            product_id: "P-1".into(),
            granted: true,
            changed_at: 100,
            terms: if cursor == 2 {
                OrderTerms::default()
            } else {
                limited
            },
        };
        orders
            .apply_replica_change(&change, cursor)
            .await
            .expect("applied");
    }
    assert_eq!(
        orders.replica_lookup("alice", "P-1").await.expect("lookup"),
        ReplicaEntry::Known {
            granted: true,
            changed_at: 100,
            seq: 3,
            terms: limited
        }
    );
    assert_eq!(orders.replica_cursor().await.expect("cursor"), 3);
}

#[tokio::test]
async fn terms_are_stored_and_fed_on_sqlite() {
    terms_are_stored_and_fed("sqlite::memory:", "sqlite::memory:").await;
}

#[tokio::test]
async fn terms_are_stored_and_fed_on_postgres() {
    let Some(products) = tokenmesh_tests::TestDatabase::create().await else {
        return;
    };
    let Some(orders) = tokenmesh_tests::TestDatabase::create().await else {
        return;
    };
    terms_are_stored_and_fed(&products.url, &orders.url).await;
    products.drop_database().await;
    orders.drop_database().await;
}
