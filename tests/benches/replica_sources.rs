//! Entitlement sources on one and two replicas: PlaceOrder throughput and latency
//! per source through HAProxy, and how soon after a RevokeEntitlement an order is
//! refused, on a [`Cluster`] of real processes on PostgreSQL (release binary).
//!
//! `TOKENMESH_BIN=target/release/tokenmesh TOKENMESH_TEST_DATABASE_URL=postgres://…/test
//! cargo bench -p tokenmesh-tests --bench replica_sources
//! [-- --seconds 5 --clients 32 --rounds 10 --window 10]`

// A benchmark's report is its output.
#![allow(clippy::print_stdout)]

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use tokenmesh_proto::{
    orders::v1::{EntitlementSource, orders_service_client::OrdersServiceClient},
    products::v1::{
        EntitlementRequest, ListProductsRequest, products_service_client::ProductsServiceClient,
    },
};
use tokenmesh_tests::bench::arg;
use tokenmesh_tests::{
    calls::{login, with_bearer},
    cluster::{Cluster, Service},
    order,
};
use tonic::{Status, transport::Channel};

/// The demo product alice is entitled to, revoked and granted again.
const PRODUCT: &str = "P-101";
/// How long a round may wait for orders to be accepted again after a re-grant.
const SETTLE_DEADLINE: Duration = Duration::from_secs(60);

/// One entitlement source as Orders is configured for it.
struct Case {
    name: &'static str,
    flags: &'static [&'static str],
    expected: EntitlementSource,
}

const CASES: [Case; 4] = [
    Case {
        name: "grant",
        flags: &["--entitlement-sources", "grant"],
        expected: EntitlementSource::Grant,
    },
    Case {
        name: "replica",
        flags: &["--entitlement-sources", "replica"],
        expected: EntitlementSource::Replica,
    },
    Case {
        name: "rpc cold",
        flags: &["--entitlement-sources", "rpc", "--rpc-cache-ttl", "0s"],
        expected: EntitlementSource::Rpc,
    },
    Case {
        // The shipped default TTL.
        name: "rpc cached",
        flags: &["--entitlement-sources", "rpc", "--rpc-cache-ttl", "2s"],
        expected: EntitlementSource::Rpc,
    },
];

/// Clients of the cluster through the proxy, as alice and as admin.
struct Session {
    orders: OrdersServiceClient<Channel>,
    products: ProductsServiceClient<Channel>,
    alice: String,
    admin: String,
    /// Unique request ids across the whole case.
    sequence: Arc<AtomicU64>,
    /// Failed calls of the throughput run, by code and message.
    errors: Errors,
}

/// Failed calls by code and message, and how many.
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<BTreeMap<String, u64>>>);

impl Errors {
    fn add(&self, status: &Status) {
        let key = format!("{:?}: {}", status.code(), status.message());
        *self.0.lock().expect("errors").entry(key).or_default() += 1;
    }

    /// Takes them all.
    fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.0.lock().expect("errors"))
    }
}

impl Session {
    async fn open(cluster: &Cluster) -> Self {
        let mut auth = cluster.auth();
        let alice = login(&mut auth, "alice", "alice-demo").await;
        let admin = login(&mut auth, "admin", "admin-demo").await;
        let token = |response: Result<_, Status>| {
            let response: tokenmesh_proto::auth::v1::TokenResponse =
                response.expect("login through the proxy");
            response.access_token
        };
        let (alice, admin) = (token(alice), token(admin));
        Self {
            orders: OrdersServiceClient::new(cluster.channel(Service::Orders)),
            products: ProductsServiceClient::new(cluster.channel(Service::Products)),
            alice,
            admin,
            sequence: Arc::default(),
            errors: Errors::default(),
        }
    }

    /// The grant alice's catalogue carries now (the grant source's input).
    async fn grant(&mut self) -> String {
        self.products
            .list_products(with_bearer(ListProductsRequest::default(), &self.alice))
            .await
            .expect("ListProducts through the proxy")
            .into_inner()
            .entitlement_token
    }

    async fn place(
        orders: &mut OrdersServiceClient<Channel>,
        alice: &str,
        sequence: &AtomicU64,
        grant: &str,
    ) -> Result<EntitlementSource, Status> {
        let n = sequence.fetch_add(1, Ordering::Relaxed);
        let request = order(PRODUCT, 1, &format!("bench-{n}"), grant);
        let placed = orders.place_order(with_bearer(request, alice)).await?;
        Ok(placed.into_inner().entitlement_source())
    }

    async fn entitlement(&mut self, grant: bool) {
        let request = with_bearer(
            EntitlementRequest {
                subject: "alice".into(),
                product_id: PRODUCT.into(),
            },
            &self.admin,
        );
        let response = if grant {
            self.products.grant_entitlement(request).await
        } else {
            self.products.revoke_entitlement(request).await
        };
        response.expect("GrantEntitlement / RevokeEntitlement through the proxy");
    }
}

struct Throughput {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

/// `clients` loops, each on its own connection to the proxy, placing orders
/// for `seconds`. Failed calls are counted, not timed.
async fn throughput(
    cluster: &Cluster,
    session: &Session,
    grant: &str,
    case: &Case,
    clients: usize,
    seconds: u64,
) -> Throughput {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut orders = OrdersServiceClient::new(cluster.channel(Service::Orders));
        let (alice, grant) = (session.alice.clone(), grant.to_owned());
        let (sequence, errors) = (session.sequence.clone(), session.errors.clone());
        let expected = case.expected;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Histogram::<u64>::new(3).expect("histogram");
            while Instant::now() < deadline {
                let sent = Instant::now();
                match Session::place(&mut orders, &alice, &sequence, &grant).await {
                    Ok(source) => {
                        assert_eq!(source, expected, "the configured source decided");
                        latencies
                            .record(sent.elapsed().as_micros() as u64)
                            .expect("record");
                    }
                    Err(status) => errors.add(&status),
                }
            }
            latencies
        }));
    }
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    for task in tasks {
        all.add(task.await.expect("client")).expect("merge");
    }
    Throughput {
        per_second: all.len() as f64 / start.elapsed().as_secs_f64(),
        p50: Duration::from_micros(all.value_at_quantile(0.5)),
        p99: Duration::from_micros(all.value_at_quantile(0.99)),
    }
}

struct Freshness {
    /// Revocation acknowledged → first refusal answered, per round in which
    /// one came within the window.
    refused: Histogram<u64>,
    rounds: u64,
    /// Orders still accepted after the revocation, over all rounds.
    accepted_after: u64,
    /// The refusals that ended the rounds, by code and message: a source may
    /// refuse otherwise than PERMISSION_DENIED.
    refusals: Errors,
}

/// `rounds` times: re-grant (after the first), wait until `settle` orders in a
/// row are accepted, revoke through the proxy, then place orders one after the
/// other through the proxy until one is refused (any error: which one is
/// tallied; PERMISSION_DENIED is the expected one) or `window` has passed.
async fn freshness(
    session: &mut Session,
    case: &Case,
    rounds: u64,
    settle: usize,
    window: Duration,
) -> Freshness {
    let mut freshness = Freshness {
        refused: Histogram::<u64>::new(3).expect("histogram"),
        rounds,
        accepted_after: 0,
        refusals: Errors::default(),
    };
    for round in 0..rounds {
        if round > 0 {
            session.entitlement(true).await;
        }
        // What a client holds when the revocation comes: a grant issued while
        // entitled (only the grant source reads it).
        let grant = if case.expected == EntitlementSource::Grant {
            session.grant().await
        } else {
            String::new()
        };
        let started = Instant::now();
        let mut in_a_row = 0;
        while in_a_row < settle {
            let placed = Session::place(
                &mut session.orders,
                &session.alice,
                &session.sequence,
                &grant,
            )
            .await;
            in_a_row = if placed.is_ok() { in_a_row + 1 } else { 0 };
            assert!(
                started.elapsed() < SETTLE_DEADLINE,
                "{}: orders not accepted again within {SETTLE_DEADLINE:?} of the grant: {placed:?}",
                case.name
            );
        }
        session.entitlement(false).await;
        let revoked = Instant::now();
        while revoked.elapsed() < window {
            match Session::place(
                &mut session.orders,
                &session.alice,
                &session.sequence,
                &grant,
            )
            .await
            {
                Ok(_) => freshness.accepted_after += 1,
                Err(status) => {
                    freshness
                        .refused
                        .record(revoked.elapsed().as_micros() as u64)
                        .expect("record");
                    freshness.refusals.add(&status);
                    break;
                }
            }
        }
    }
    freshness
}

fn ms(micros: u64) -> String {
    format!("{:.1} ms", micros as f64 / 1000.0)
}

#[tokio::main]
async fn main() {
    let seconds = arg("--seconds", 5);
    let clients = arg("--clients", 32) as usize;
    let rounds = arg("--rounds", 10);
    let window = Duration::from_secs(arg("--window", 10));
    println!(
        "PlaceOrder through HAProxy by entitlement source: {clients} clients, {seconds} s each; \
         freshness over {rounds} revocations (window {window:?}); one run, PostgreSQL"
    );
    println!(
        "{:<9} {:<11} {:>9} {:>10} {:>10} {:>7} {:>11} {:>11} {:>9} {:>9}",
        "replicas",
        "source",
        "orders/s",
        "p50",
        "p99",
        "errors",
        "fresh p50",
        "fresh p99",
        "refused",
        "accepted"
    );
    for replicas in [1, 2] {
        for case in &CASES {
            let Some(cluster) = Cluster::start_with(replicas, case.flags).await else {
                println!("skipped: TOKENMESH_TEST_DATABASE_URL is not set");
                return;
            };
            let mut session = Session::open(&cluster).await;
            let grant = if case.expected == EntitlementSource::Grant {
                session.grant().await
            } else {
                String::new()
            };
            let run = throughput(&cluster, &session, &grant, case, clients, seconds).await;
            // Two orders in a row per replica: every Orders replica accepts again.
            let fresh = freshness(&mut session, case, rounds, 2 * replicas, window).await;
            let errors = session.errors.take();
            let (p50, p99) = if fresh.refused.is_empty() {
                ("-".to_owned(), "-".to_owned())
            } else {
                (
                    ms(fresh.refused.value_at_quantile(0.5)),
                    ms(fresh.refused.value_at_quantile(0.99)),
                )
            };
            println!(
                "{replicas:<9} {:<11} {:>9.0} {:>10.2?} {:>10.2?} {:>7} {p50:>11} {p99:>11} {:>9} {:>9}",
                case.name,
                run.per_second,
                run.p50,
                run.p99,
                errors.values().sum::<u64>(),
                format!("{}/{}", fresh.refused.len(), fresh.rounds),
                fresh.accepted_after,
            );
            for (error, count) in &errors {
                println!("    error: {count} × {error}");
            }
            for (refusal, count) in &fresh.refusals.take() {
                println!("    refused by: {count} × {refusal}");
            }
            cluster.stop().await;
        }
    }
}
