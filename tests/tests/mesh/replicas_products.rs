//! Two Products replicas on one store sign grants with one key set: generated
//! once under the store's one-signer index, rotated as a row, every live key
//! published, so Orders following either replica verifies grants from both;
//! and a write at one reaches the other's read caches.

use tokenmesh_proto::{
    auth::v1::GetJwksRequest,
    orders::v1::EntitlementSource,
    products::v1::{
        EntitlementRequest, GetProductRequest, ListProductsRequest,
        products_service_client::ProductsServiceClient,
    },
};
use tokenmesh_tests::{Bearer, Mesh, SourceKind, TestDatabase, claims_of, eventually, order};
use tonic::Code;

use super::replicas::{DEADLINE, kid_of};

/// Orders follows the first Products replica's keys; a grant the second one
/// signed must verify there: before, each replica signed with a key of its
/// own data dir, and the grant source silently never decided.
#[tokio::test]
async fn a_grant_from_another_products_replica_is_accepted_by_orders() {
    let mesh = Mesh::builder()
        .entitlement_sources(&[SourceKind::Grant])
        .start()
        .await;
    let replica = mesh.start_products_replica().await;
    let token = mesh.login("alice").await;
    let mut second = ProductsServiceClient::with_interceptor(
        Mesh::channel(replica.addr()).await,
        Bearer::token(&token),
    );
    let grant = second
        .list_products(ListProductsRequest::default())
        .await
        .expect("listed at replica 2")
        .into_inner()
        .entitlement_token;
    assert_eq!(
        kid_of(&grant),
        mesh.products_minter().kid(),
        "one grant key"
    );
    let jwks = second
        .get_jwks(GetJwksRequest {})
        .await
        .expect("replica 2's keys")
        .into_inner();
    let first_jwks = mesh
        .products(Bearer::token(&token))
        .await
        .get_jwks(GetJwksRequest {})
        .await
        .expect("replica 1's keys")
        .into_inner();
    assert_eq!(jwks, first_jwks, "both publish the same live keys");

    let placed = mesh
        .orders(Bearer::token(&token))
        .await
        .place_order(order("P-100", 1, "grant-from-replica-2", &grant))
        .await
        .expect("Orders verifies replica 2's grant")
        .into_inner();
    assert_eq!(placed.entitlement_source(), EntitlementSource::Grant);
    replica.stop().await;
    mesh.shutdown().await;
}

/// A grant key rotated as a row (here by a process opening Products' store
/// beside the running replicas, as a CLI would) reaches both replicas at their
/// next reload, and Orders accepts grants signed with it.
#[tokio::test]
async fn a_grant_key_rotated_in_the_store_reaches_every_products_replica() {
    let mesh = Mesh::builder()
        .entitlement_sources(&[SourceKind::Grant])
        .start()
        .await;
    let replica = mesh.start_products_replica().await;
    let token = mesh.login("alice").await;
    let rotated = mesh
        .products_keys()
        .await
        .rotate()
        .await
        .expect("rotated in the store");
    assert_eq!(
        rotated.retired_kid.as_deref(),
        Some(mesh.products_minter().kid())
    );
    let mut clients = [
        mesh.products(Bearer::token(&token)).await,
        ProductsServiceClient::with_interceptor(
            Mesh::channel(replica.addr()).await,
            Bearer::token(&token),
        ),
    ];
    for (index, products) in clients.iter_mut().enumerate() {
        // Each replica re-reads its keys every 2 s: wait for its next reload.
        let (grant, _) = eventually(DEADLINE, || {
            let mut products = products.clone();
            let new_kid = rotated.kid.clone();
            async move {
                let grant = products
                    .list_products(ListProductsRequest::default())
                    .await
                    .expect("listed")
                    .into_inner()
                    .entitlement_token;
                (kid_of(&grant) == new_kid).then_some(grant)
            }
        })
        .await;
        let placed = mesh
            .orders(Bearer::token(&token))
            .await
            .place_order(order("P-100", 1, &format!("rotated-{index}"), &grant))
            .await
            .expect("Orders verifies a grant signed with the new key")
            .into_inner();
        assert_eq!(placed.entitlement_source(), EntitlementSource::Grant);
    }
    replica.stop().await;
    mesh.shutdown().await;
}

/// Two Products replicas started at once on the empty database `url` (the
/// mesh's own Products is on SQLite in its data dir) publish one grant key, and
/// each signs with it.
async fn products_replicas_started_at_once_share_one_grant_key(mesh: &Mesh, url: &str) {
    let (first, second) = tokio::join!(mesh.start_products_on(url), mesh.start_products_on(url));
    let token = mesh.login("alice").await;
    let mut kids = Vec::new();
    for replica in [&first, &second] {
        let mut products = ProductsServiceClient::with_interceptor(
            Mesh::channel(replica.addr()).await,
            Bearer::token(&token),
        );
        let jwks = products
            .get_jwks(GetJwksRequest {})
            .await
            .expect("keys")
            .into_inner();
        let published: Vec<String> = jwks.keys.into_iter().map(|key| key.kid).collect();
        let grant = products
            .list_products(ListProductsRequest::default())
            .await
            .expect("listed")
            .into_inner()
            .entitlement_token;
        assert_eq!(published, [kid_of(&grant)], "one key, and it signs");
        kids.push(kid_of(&grant));
    }
    assert_eq!(kids[0], kids[1], "both replicas sign with one key");
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn products_replicas_started_at_once_on_an_empty_sqlite_database_share_one_grant_key() {
    let mesh = Mesh::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = tokenmesh_server::db::sqlite_url(&dir.path().join("products.db"));
    // Migrated but empty: sqlx takes no lock to migrate an SQLite file.
    tokenmesh_products::Store::open(&url)
        .await
        .expect("migrated");
    products_replicas_started_at_once_share_one_grant_key(&mesh, &url).await;
    mesh.shutdown().await;
}

#[tokio::test]
async fn products_replicas_started_at_once_on_an_empty_postgres_database_share_one_grant_key() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let mesh = Mesh::start().await;
    products_replicas_started_at_once_share_one_grant_key(&mesh, &database.url).await;
    mesh.shutdown().await;
    database.drop_database().await;
}

#[tokio::test]
async fn a_products_replica_whose_key_encryption_key_cannot_open_the_grant_keys_refuses_to_start() {
    let mesh = Mesh::start().await;
    let kek_dir = tempfile::tempdir().expect("tempdir");
    let other = kek_dir.path().join("other-kek");
    tokenmesh_server::KeyEncryptionKey::create(&other).expect("kek");
    let url = mesh.products_database_url();
    let error = mesh
        .try_start_products_on(&url, &other)
        .await
        .expect_err("another key-encryption key");
    assert_eq!(
        error.to_string(),
        format!(
            "signing key {}: cannot be decrypted with the key-encryption key {}: not the \
             key that encrypted it, or the stored key was altered",
            mesh.products_minter().kid(),
            other.display()
        )
    );
    mesh.shutdown().await;
}

/// A revocation at one Products replica reaches `GetProduct` and `ListProducts`
/// at another once that one hears of it (NOTIFY on PostgreSQL, its 500 ms poll
/// on SQLite) and its follower reads it: its read caches, filled before the
/// revocation, stop answering from before it.
#[tokio::test]
async fn a_revocation_at_one_products_replica_reaches_the_read_caches_of_another() {
    let mesh = Mesh::start().await;
    let replica = mesh.start_products_replica().await;
    let token = mesh.login("alice").await;
    let mut second = ProductsServiceClient::with_interceptor(
        Mesh::channel(replica.addr()).await,
        Bearer::token(&token),
    );
    let p100 = || GetProductRequest { id: "P-100".into() };
    for _ in 0..2 {
        let product = second.get_product(p100()).await.expect("entitled");
        assert_eq!(product.into_inner().id, "P-100");
        let listed = second
            .list_products(ListProductsRequest::default())
            .await
            .expect("listed")
            .into_inner();
        assert!(listed.products.iter().any(|product| product.id == "P-100"));
    }

    let revoked = mesh
        .products_as("admin")
        .await
        .revoke_entitlement(EntitlementRequest {
            subject: "alice".into(),
            product_id: "P-100".into(),
        })
        .await
        .expect("revoked at the first replica")
        .into_inner();
    assert!(revoked.changed);
    let (status, took) = eventually(DEADLINE, || {
        let mut second = second.clone();
        async move { second.get_product(p100()).await.err() }
    })
    .await;
    eprintln!("MEASURED: GetProduct at replica 2 saw replica 1's revocation after {took:?}");
    assert_eq!(
        (status.code(), status.message()),
        (Code::PermissionDenied, "not entitled to product P-100")
    );
    // Its own wait: a follower read that started before the revocation may
    // land after a GetProduct that read the database (the view past its bound).
    let (grant, _) = eventually(DEADLINE, || {
        let mut second = second.clone();
        async move {
            let listed = second
                .list_products(ListProductsRequest::default())
                .await
                .expect("listed")
                .into_inner();
            let without = listed.products.iter().all(|product| product.id != "P-100");
            without.then(|| claims_of(&listed.entitlement_token))
        }
    })
    .await;
    assert!(
        grant["catalogue_revision"].as_u64() >= Some(revoked.cursor),
        "a grant from before the revocation: {grant}"
    );
    replica.stop().await;
    mesh.shutdown().await;
}
