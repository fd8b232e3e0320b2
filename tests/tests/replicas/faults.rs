//! Two replicas of every service on PostgreSQL behind HAProxy, under a steady
//! load, through kill -9 of each service's replica, a rolling restart (SIGTERM)
//! of every replica, and dropped database connections: no acknowledged order is
//! lost or doubled, a retry never makes a second order, a call fails only while
//! its replica dies and its retry succeeds, every restarted replica serves again,
//! and a deactivated user is refused by every replica of Products and Orders.

use std::collections::HashMap;

use tokenmesh_proto::{
    auth::v1::{CreateUserRequest, DeactivateUserRequest, LoginRequest},
    orders::v1::{ListOrdersRequest, orders_service_client::OrdersServiceClient},
    products::v1::{ListProductsRequest, products_service_client::ProductsServiceClient},
};
use tokenmesh_tests::{
    CHILD_DEADLINE,
    calls::with_bearer,
    cluster::{Cluster, Service},
    eventually,
    replica_process::ReplicaProcess,
};
use tonic::{Code, Status};

use crate::load::Load;

/// Orders acknowledged between two steps: a few seconds of load.
const ORDERS_PER_STEP: usize = 15;

#[tokio::test]
async fn replicas_survive_kill_restart_and_dropped_connections_without_losing_or_doubling_an_order()
{
    let Some(mut cluster) = Cluster::start(2).await else {
        return;
    };
    let load = Load::start(&cluster, 3, "alice", "P-100");
    load.more_orders(ORDERS_PER_STEP).await;

    // kill -9 of one replica of each service in turn, then its restart.
    let mut to_serving = Vec::new();
    for service in Service::ALL {
        let name = service.name();
        load.phase(&format!("kill -9 {name}-1"));
        cluster.replica(service, 0).kill().await;
        load.more_orders(ORDERS_PER_STEP).await;
        load.phase(&format!("restart {name}-1"));
        let replica = cluster.replica(service, 0);
        let restarted = tokio::time::Instant::now();
        replica.restart().await;
        replica.wait_serving().await;
        to_serving.push((name, restarted.elapsed()));
        load.more_orders(ORDERS_PER_STEP).await;
    }

    // A rolling restart: SIGTERM each replica (it drains and exits 0), start it
    // again, wait until it serves, then the next.
    for service in Service::ALL {
        for i in 0..cluster.replicas(service).len() {
            let replica = cluster.replica(service, i);
            load.phase(&format!("rolling restart {}", replica.name));
            let status = replica.terminate().await;
            assert!(
                status.success(),
                "{}: {status}\n{}",
                replica.name,
                replica.log()
            );
            replica.restart().await;
            replica.wait_serving().await;
            load.more_orders(ORDERS_PER_STEP).await;
        }
    }

    load.phase("pg_terminate_backend");
    let terminated = cluster.terminate_database_connections().await;
    assert!(terminated > 0, "the services hold database connections");
    load.more_orders(ORDERS_PER_STEP).await;

    load.phase("deactivation");
    let refused_after = deactivated_user_is_refused_by_every_replica(&cluster).await;
    load.more_orders(ORDERS_PER_STEP).await;

    let seen = load.stop().await;
    let errors: Vec<String> = cluster
        .all()
        .flat_map(|replica| {
            let log = replica.log();
            let errors: Vec<String> = log
                .lines()
                .filter(|line| line.contains("ERROR"))
                .map(|line| format!("{}: {line}", replica.name))
                .collect();
            errors
        })
        .collect();
    assert_eq!(
        seen.failures,
        Vec::<String>::new(),
        "calls failed for good; the replicas logged: {errors:#?}"
    );
    for replica in cluster.all() {
        replica.wait_serving().await;
    }

    // Every acknowledged order is stored exactly once, under its request id.
    let stored = orders_of(&cluster, "alice").await;
    let mut by_request: HashMap<&str, Vec<&str>> = HashMap::new();
    for (request_id, id) in &stored {
        by_request.entry(request_id).or_default().push(id);
    }
    for (request_id, id) in &seen.acked {
        assert_eq!(
            by_request.get(request_id.as_str()),
            Some(&vec![id.as_str()]),
            "order of request {request_id}"
        );
    }
    // …and nothing else: every order placed was acknowledged (retried until it was).
    assert_eq!(stored.len(), seen.acked.len(), "stored orders");

    // Figures for the report, not assertions.
    let retried: usize = seen.retried.values().sum();
    eprintln!(
        "FIGURES acked orders {}; calls retried after UNAVAILABLE {retried}: {:?}; \
         refreshes whose retry met reuse detection {}; time to SERVING after kill -9 \
         (start to SERVING): {to_serving:?}; pg connections terminated {terminated}; \
         deactivation refused by every replica after {refused_after:?}",
        seen.acked.len(),
        seen.retried,
        seen.refresh_reuse
    );
    cluster.stop().await;
}

/// Creates a user, logs in, deactivates the user through the proxy, and waits
/// until every replica of Products and Orders refuses the token; how long.
async fn deactivated_user_is_refused_by_every_replica(cluster: &Cluster) -> std::time::Duration {
    let mut auth = cluster.auth();
    let admin = auth
        .login(LoginRequest {
            username: "admin".into(),
            password: "admin-demo".into(),
        })
        .await
        .expect("admin login")
        .into_inner()
        .access_token;
    let create = CreateUserRequest {
        username: "carol".into(),
        password: "carol-password-1".into(),
        scopes: String::new(),
    };
    auth.create_user(with_bearer(create, &admin))
        .await
        .expect("carol created");
    let carol = auth
        .login(LoginRequest {
            username: "carol".into(),
            password: "carol-password-1".into(),
        })
        .await
        .expect("carol logs in")
        .into_inner()
        .access_token;
    for replica in followers(cluster) {
        eventually(CHILD_DEADLINE, || async {
            accepts(replica, &carol).await.ok()
        })
        .await;
    }
    let deactivate = DeactivateUserRequest {
        username: "carol".into(),
    };
    auth.deactivate_user(with_bearer(deactivate, &admin))
        .await
        .expect("carol deactivated");
    let start = tokio::time::Instant::now();
    for replica in followers(cluster) {
        let (refusal, _) = eventually(CHILD_DEADLINE, || async {
            accepts(replica, &carol).await.err()
        })
        .await;
        assert_eq!(
            (refusal.code(), refusal.message()),
            (Code::Unauthenticated, "token revoked"),
            "{}",
            replica.name
        );
    }
    start.elapsed()
}

fn followers(cluster: &Cluster) -> impl Iterator<Item = &ReplicaProcess> {
    cluster
        .replicas(Service::Products)
        .iter()
        .chain(cluster.replicas(Service::Orders))
}

/// Whether `replica` (Products or Orders, asked directly) accepts `token`.
async fn accepts(replica: &ReplicaProcess, token: &str) -> Result<(), Status> {
    if replica.name.starts_with("products") {
        let mut products = ProductsServiceClient::new(replica.channel());
        let request = with_bearer(ListProductsRequest::default(), token);
        products.list_products(request).await.map(|_| ())
    } else {
        let mut orders = OrdersServiceClient::new(replica.channel());
        let request = with_bearer(ListOrdersRequest::default(), token);
        orders.list_orders(request).await.map(|_| ())
    }
}

/// Every order of `user` as ListOrders pages them, through the proxy:
/// (request id, order id).
async fn orders_of(cluster: &Cluster, user: &str) -> Vec<(String, String)> {
    let token = cluster
        .auth()
        .login(LoginRequest {
            username: user.into(),
            password: format!("{user}-demo"),
        })
        .await
        .expect("login")
        .into_inner()
        .access_token;
    let mut orders = OrdersServiceClient::new(cluster.channel(Service::Orders));
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = ListOrdersRequest {
            page_size: 100,
            page_token,
        };
        let page = orders
            .list_orders(with_bearer(request, &token))
            .await
            .expect("ListOrders")
            .into_inner();
        all.extend(page.orders.into_iter().map(|o| (o.request_id, o.id)));
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}
