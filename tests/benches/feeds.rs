//! Feeds across replicas (issue 11, items 3 and 4), on a real mesh on loopback.
//!
//! `propagation` (PostgreSQL): two Auth replicas on one database; Products and
//! Orders follow replica A; each user is deactivated through replica B, and the
//! time from sending DeactivateUser to the user's token being refused by both
//! Products and Orders is recorded: p50, p99, max.
//! `catchup` (SQLite, then PostgreSQL when the variable is set): Products holds
//! N entitlements; Orders' replica restarts empty (snapshot) and with its
//! state kept (tail): time to ready.
//!
//! `TOKENMESH_TEST_DATABASE_URL=postgres://… cargo bench -p tokenmesh-tests --bench feeds -- propagation --revocations 200`
//! `TOKENMESH_TEST_DATABASE_URL=postgres://… cargo bench -p tokenmesh-tests --bench feeds -- catchup --entitlements 100000`

// A benchmark's report is its output.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use hdrhistogram::Histogram;
use tokenmesh_proto::{
    auth::v1::{CreateUserRequest, DeactivateUserRequest},
    orders::v1::ListOrdersRequest,
    products::v1::ListProductsRequest,
};
use tokenmesh_tests::bench::arg;
use tokenmesh_tests::{Bearer, Mesh, TestDatabase, calls::with_bearer};
use tonic::Code;

fn wants(part: &str) -> bool {
    let args: Vec<String> = std::env::args().collect();
    let named = ["propagation", "catchup"];
    args.iter().any(|arg| arg == part) || !args.iter().any(|arg| named.contains(&arg.as_str()))
}

#[tokio::main]
async fn main() {
    if wants("propagation") {
        propagation(arg("--revocations", 200) as usize).await;
    }
    if wants("catchup") {
        let entitlements = arg("--entitlements", 100_000) as i64;
        catch_up(Mesh::start().await, entitlements).await;
        if std::env::var_os("TOKENMESH_TEST_DATABASE_URL").is_some() {
            catch_up(Mesh::builder().postgres().start().await, entitlements).await;
        }
    }
}

/// Polls `call` until it answers UNAUTHENTICATED; when it did.
async fn refused_at<F, Fut>(mut call: F) -> Instant
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), tonic::Status>>,
{
    loop {
        match call().await {
            Err(status) if status.code() == Code::Unauthenticated => return Instant::now(),
            Err(status) => panic!("unexpected {status:?}"),
            Ok(()) => tokio::task::yield_now().await,
        }
    }
}

async fn propagation(revocations: usize) {
    let Some(database) = TestDatabase::create().await else {
        println!("propagation: skipped (set TOKENMESH_TEST_DATABASE_URL)");
        return;
    };
    let mesh = Mesh::builder()
        .auth_database_url(Some(database.url.clone()))
        .start()
        .await;
    // Default poll (5 s on PostgreSQL): a wake-up must come by NOTIFY.
    let replica_b = mesh.start_auth_replica_with(&[]).await;
    let mut auth_b = replica_b.auth().await;
    let admin = mesh.login("admin").await;
    let mut tokens = Vec::with_capacity(revocations);
    for i in 0..revocations {
        let username = format!("leaver-{i}");
        auth_b
            .create_user(with_bearer(
                CreateUserRequest {
                    username: username.clone(),
                    password: format!("{username}-password"),
                    scopes: String::new(),
                },
                &admin,
            ))
            .await
            .expect("user created");
        let token = tokenmesh_tests::calls::login(
            &mut mesh.auth().await,
            &username,
            &format!("{username}-password"),
        )
        .await
        .expect("logged in")
        .access_token;
        tokens.push((username, token));
    }
    let mut latencies = Histogram::<u64>::new(3).expect("histogram");
    for (username, token) in &tokens {
        let products = mesh.products(Bearer::token(token)).await;
        let orders = mesh.orders(Bearer::token(token)).await;
        let list_products = || {
            let mut products = products.clone();
            async move {
                products
                    .list_products(ListProductsRequest::default())
                    .await
                    .map(|_| ())
            }
        };
        let list_orders = || {
            let mut orders = orders.clone();
            async move {
                orders
                    .list_orders(ListOrdersRequest::default())
                    .await
                    .map(|_| ())
            }
        };
        list_products().await.expect("accepted before");
        list_orders().await.expect("accepted before");
        let mut auth_b = auth_b.clone();
        let request = with_bearer(
            DeactivateUserRequest {
                username: username.clone(),
            },
            &admin,
        );
        let sent = Instant::now();
        let (deactivated, at_products, at_orders) = tokio::join!(
            auth_b.deactivate_user(request),
            refused_at(list_products),
            refused_at(list_orders),
        );
        deactivated.expect("deactivated through B");
        let refused_everywhere = at_products.max(at_orders);
        latencies
            .record(refused_everywhere.duration_since(sent).as_micros() as u64)
            .expect("record");
    }
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "propagation (PostgreSQL, write through Auth B, Products and Orders following Auth A): {} revocations, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        ms(latencies.value_at_quantile(0.50)),
        ms(latencies.value_at_quantile(0.99)),
        ms(latencies.max()),
    );
    replica_b.stop().await;
    mesh.shutdown().await;
    database.drop_database().await;
}

/// A connection to `service`'s database (SQLite file `file`, or its schema in
/// the mesh's PostgreSQL database), and the prefix naming its tables.
async fn database(mesh: &Mesh, file: &str, schema: &str) -> (sqlx::AnyPool, String) {
    sqlx::any::install_default_drivers();
    let (url, prefix) = match mesh.database_url() {
        Some(url) => (url.to_owned(), format!("{schema}.")),
        None => (
            tokenmesh_server::db::sqlite_url(&mesh.data_dir().join(file)),
            String::new(),
        ),
    };
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("database");
    (pool, prefix)
}

async fn catch_up(mut mesh: Mesh, entitlements: i64) {
    let store = match mesh.database_url() {
        Some(_) => "PostgreSQL",
        None => "SQLite",
    };
    mesh.stop_orders().await;
    // N entitlements (subjects user-0… × the 5 demo products), and their
    // feed events after the demo's 9, written straight into Products' tables.
    let (products, p) = database(&mesh, "products.db", tokenmesh_products::SCHEMA).await;
    let last = entitlements - 1;
    let now = tokenmesh_server::now_unix();
    let mut tx = products.begin().await.expect("tx");
    sqlx::query(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {last}) \
         INSERT INTO {p}entitlements (subject, product_id, granted_at, actions, max_quantity) \
         SELECT 'user-' || (i / 5), 'P-10' || (i % 5), {now}, 'view order', 0 FROM n"
    ))
    .execute(&mut *tx)
    .await
    .expect("entitlements");
    sqlx::query(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {last}) \
         INSERT INTO {p}entitlement_events \
             (seq, kind, subject, product_id, granted, changed_at, actions, max_quantity) \
         SELECT 10 + i, 'entitlement', 'user-' || (i / 5), 'P-10' || (i % 5), 1, {now}, 'view order', 0 FROM n"
    ))
    .execute(&mut *tx)
    .await
    .expect("events");
    tx.commit().await.expect("commit");
    products.close().await;

    // An empty replica (a new Orders, or one whose cursor was compacted away):
    // the snapshot, applied in one transaction.
    let (orders, o) = database(&mesh, "orders.db", tokenmesh_orders::SCHEMA).await;
    for table in ["replica_cursor", "replica_entitlements", "replica_products"] {
        sqlx::query(&format!("DELETE FROM {o}{table}"))
            .execute(&orders)
            .await
            .expect("emptied");
    }
    let started = Instant::now();
    mesh.restart_orders().await;
    let from_snapshot = started.elapsed();
    let held: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {o}replica_entitlements"))
        .fetch_one(&orders)
        .await
        .expect("count");
    // The replica kept: the tail after its cursor (nothing new).
    let started = Instant::now();
    mesh.restart_orders().await;
    let from_state = started.elapsed();
    println!(
        "catch-up ({store}) at {entitlements} entitlements: restart to ready from the snapshot {:.2} s ({held} entitlements held); from the kept state + tail {:.3} s",
        from_snapshot.as_secs_f64(),
        from_state.as_secs_f64(),
    );
    orders.close().await;
    mesh.shutdown().await;
}
