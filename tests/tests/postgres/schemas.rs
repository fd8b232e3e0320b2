//! Scaling out on PostgreSQL: the three services share one database, each in its
//! own schema with its own migrations, and replicas starting at once on an empty
//! database all come up.

use std::path::Path;

use sqlx::{Connection, PgConnection};
use tokenmesh_tests::{Mesh, TestDatabase};

/// Each service's schema, and its migrations directory under `services/`.
const SERVICES: [(&str, &str); 3] = [
    (tokenmesh_auth::SCHEMA, "auth"),
    (tokenmesh_orders::SCHEMA, "orders"),
    (tokenmesh_products::SCHEMA, "products"),
];

/// The versions of `service`'s migration files (`0001_….sql` → 1), in order.
fn migration_versions(service: &str) -> Vec<i64> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../services")
        .join(service)
        .join("migrations");
    let mut versions: Vec<i64> = std::fs::read_dir(&dir)
        .expect("migrations dir")
        .map(|entry| {
            let name = entry.expect("entry").file_name();
            let name = name.to_str().expect("UTF-8 name").to_owned();
            let (version, _) = name.split_once('_').expect("NNNN_name.sql");
            version.parse().expect("numbered migration")
        })
        .collect();
    versions.sort_unstable();
    versions
}

/// The schemas holding tables in the database at `url` (system ones aside),
/// each with its tables, in name order.
async fn tables_by_schema(connection: &mut PgConnection) -> Vec<(String, Vec<String>)> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables \
         WHERE table_schema NOT IN ('pg_catalog', 'information_schema') \
         ORDER BY table_schema, table_name",
    )
    .fetch_all(&mut *connection)
    .await
    .expect("tables");
    let mut schemas: Vec<(String, Vec<String>)> = Vec::new();
    for (schema, table) in rows {
        match schemas.last_mut() {
            Some((last, tables)) if *last == schema => tables.push(table),
            _ => schemas.push((schema, vec![table])),
        }
    }
    schemas
}

/// The migrations applied in `schema`, successful ones only.
async fn applied(connection: &mut PgConnection, schema: &str) -> Vec<i64> {
    sqlx::query_scalar(&format!(
        "SELECT version FROM {schema}._sqlx_migrations WHERE success ORDER BY version"
    ))
    .fetch_all(&mut *connection)
    .await
    .expect("migrations table")
}

/// Every service's schema holds its tables and every one of its migrations, and
/// nothing else is in the database.
async fn assert_one_schema_per_service(url: &str) {
    let mut connection = PgConnection::connect(url).await.expect("connects");
    let schemas = tables_by_schema(&mut connection).await;
    let names: Vec<&str> = schemas.iter().map(|(schema, _)| schema.as_str()).collect();
    assert_eq!(names, ["auth", "orders", "products"], "nothing in public");
    for ((schema, tables), (expected, dir)) in schemas.iter().zip(SERVICES) {
        assert_eq!(schema, expected);
        assert!(
            tables.iter().any(|table| table == "_sqlx_migrations") && tables.len() > 1,
            "{schema}: {tables:?}"
        );
        assert_eq!(
            applied(&mut connection, schema).await,
            migration_versions(dir),
            "{schema}'s migrations"
        );
    }
    connection.close().await.expect("closes");
}

#[tokio::test]
async fn the_three_services_share_one_database_each_in_its_schema() {
    let mesh = Mesh::start().await;
    let url = mesh
        .database_url()
        .expect("the PostgreSQL suite")
        .to_owned();
    assert_one_schema_per_service(&url).await;
    // The mesh works across them: Products' catalogue and an order in Orders
    // for a user Auth logged in.
    let grant = mesh.grant_of("alice").await;
    let mut orders = mesh.orders_as("alice").await;
    orders
        .place_order(tokenmesh_tests::order("P-100", 1, "shared-db", &grant))
        .await
        .expect("order placed");
    mesh.shutdown().await;
}

#[tokio::test]
async fn replicas_of_every_service_opening_one_empty_database_at_once_all_come_up() {
    const REPLICAS: usize = 3;
    let database = TestDatabase::create()
        .await
        .expect("the PostgreSQL suite has a server");
    let url = database.url.as_str();
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..REPLICAS {
        let [auth, products, orders] = [(); 3].map(|()| url.to_owned());
        opening.spawn(async move { tokenmesh_auth::Store::open(&auth).await.map(drop) });
        opening.spawn(async move { tokenmesh_products::Store::open(&products).await.map(drop) });
        opening.spawn(async move { tokenmesh_orders::Store::open(&orders).await.map(drop) });
    }
    let mut opened = 0;
    while let Some(result) = opening.join_next().await {
        result
            .expect("task")
            .expect("store opens beside the others");
        opened += 1;
    }
    assert_eq!(opened, 3 * REPLICAS);
    assert_one_schema_per_service(url).await;
    database.drop_database().await;
}

/// The schemas in the database at `url`, of those the services use.
async fn service_schemas(url: &str) -> Vec<String> {
    let mut connection = PgConnection::connect(url).await.expect("connects");
    let schemas = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace \
         WHERE nspname IN ('auth', 'products', 'orders') ORDER BY nspname",
    )
    .fetch_all(&mut connection)
    .await
    .expect("schemas");
    connection.close().await.expect("closes");
    schemas
}

#[tokio::test]
async fn auth_database_url_moves_auth_alone_to_another_database() {
    let auth_database = TestDatabase::create()
        .await
        .expect("the PostgreSQL suite has a server");
    let mesh = Mesh::builder()
        .auth_database_url(Some(auth_database.url.clone()))
        .start()
        .await;
    mesh.login("alice").await;
    let shared = mesh
        .database_url()
        .expect("the PostgreSQL suite")
        .to_owned();
    assert_eq!(service_schemas(&shared).await, ["orders", "products"]);
    assert_eq!(service_schemas(&auth_database.url).await, ["auth"]);
    mesh.shutdown().await;
    auth_database.drop_database().await;
}
