//! "Should state travel in the token?" — PlaceOrder throughput and latency per
//! entitlement source (grant, replica, rpc without cache, rpc cached), and what
//! a grant costs to verify and to carry for 1 to 1,000 products. Real mesh on
//! loopback, real sockets and signatures, SQLite.
//!
//! `cargo bench -p tokenmesh-tests --bench entitlement_sources [-- --seconds 5 --clients 32]`

// A benchmark's report is its output.
#![allow(clippy::print_stdout)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use serde_json::json;
use tokenmesh_interceptor::{KeySet, KeyStore, Verifier, VerifierConfig};
use tokenmesh_orders::Grant;
use tokenmesh_proto::{
    orders::v1::{EntitlementSource, PlaceOrderRequest},
    products::v1::ListProductsRequest,
};
use tokenmesh_tests::bench::arg;
use tokenmesh_tests::{Mesh, Minter, PRODUCTS_ISSUER, SourceKind};

struct Run {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

/// `clients` loops placing orders of P-101 as alice for `seconds`.
async fn place_orders(
    mesh: &Mesh,
    grant: &str,
    expected: EntitlementSource,
    clients: usize,
    seconds: u64,
) -> Run {
    let token = mesh.login("alice").await;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let sequence = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let mut orders = mesh.orders(tokenmesh_tests::Bearer::token(&token)).await;
        let (grant, sequence) = (grant.to_owned(), sequence.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Histogram::<u64>::new(3).expect("histogram");
            while Instant::now() < deadline {
                let n = sequence.fetch_add(1, Ordering::Relaxed);
                let request = PlaceOrderRequest {
                    product_id: "P-101".into(),
                    quantity: 1,
                    request_id: format!("bench-{client}-{n}"),
                    entitlement_token: grant.clone(),
                };
                let sent = Instant::now();
                let order = orders
                    .place_order(request)
                    .await
                    .expect("a failing call is not throughput")
                    .into_inner();
                latencies
                    .record(sent.elapsed().as_micros() as u64)
                    .expect("record");
                assert_eq!(order.entitlement_source(), expected);
            }
            latencies
        }));
    }
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    for task in tasks {
        all.add(task.await.expect("client")).expect("merge");
    }
    Run {
        per_second: all.len() as f64 / start.elapsed().as_secs_f64(),
        p50: Duration::from_micros(all.value_at_quantile(0.5)),
        p99: Duration::from_micros(all.value_at_quantile(0.99)),
    }
}

#[tokio::main]
async fn main() {
    let seconds = arg("--seconds", 5);
    let clients = arg("--clients", 32) as usize;
    println!(
        "PlaceOrder by entitlement source: {clients} clients, {seconds} s each, one run, SQLite"
    );
    println!(
        "{:<14} {:>10} {:>10} {:>10}",
        "source", "orders/s", "p50", "p99"
    );
    let cases: [(&str, &[SourceKind], Option<Duration>, EntitlementSource); 4] = [
        (
            "grant",
            &[SourceKind::Grant],
            None,
            EntitlementSource::Grant,
        ),
        (
            "replica",
            &[SourceKind::Replica],
            None,
            EntitlementSource::Replica,
        ),
        (
            "rpc (no cache)",
            &[SourceKind::Rpc],
            Some(Duration::ZERO),
            EntitlementSource::Rpc,
        ),
        (
            "rpc (cached)",
            &[SourceKind::Rpc],
            Some(Duration::from_secs(60)),
            EntitlementSource::Rpc,
        ),
    ];
    for (name, sources, rpc_cache_ttl, expected) in cases {
        let mut builder = Mesh::builder().entitlement_sources(sources);
        if let Some(ttl) = rpc_cache_ttl {
            builder = builder.rpc_cache_ttl(ttl);
        }
        let mesh = builder.start().await;
        let mut products = mesh.products_as("alice").await;
        let grant = products
            .list_products(ListProductsRequest::default())
            .await
            .expect("list")
            .into_inner()
            .entitlement_token;
        let grant = if sources == [SourceKind::Grant] {
            grant
        } else {
            String::new()
        };
        let run = place_orders(&mesh, &grant, expected, clients, seconds).await;
        println!(
            "{name:<14} {:>10.0} {:>10.2?} {:>10.2?}",
            run.per_second, run.p50, run.p99
        );
        mesh.shutdown().await;
    }

    // Grant cost: verify (signature, claims, upcast) and size, by products listed.
    let minter = Minter::foreign();
    let jwks = serde_json::json!({"keys": [minter.public_jwk()]});
    let keys = KeyStore::fixed(KeySet::from_jwks(
        &serde_json::from_value(jwks).expect("jwks"),
    ));
    let mut config =
        VerifierConfig::access_tokens(PRODUCTS_ISSUER, "orders").with_token_type("entitlement+jwt");
    // Measure past the 4 KiB grant budget, to show what it protects against.
    config.max_token_bytes = 1 << 20;
    // Cold path: every grant is checked in full (no verified-token cache), as a
    // fresh grant is on its first use.
    let verifier = Verifier::<Grant>::new(config, keys).with_cache_capacity(0);
    println!();
    println!("Grant (claims v2, EdDSA) verification without the cache, one run");
    println!("{:<10} {:>10} {:>14}", "products", "bytes", "verify+upcast");
    let now = tokenmesh_server::now_unix();
    for count in [1usize, 10, 100, 1000] {
        let grants: Vec<_> = (0..count)
            .map(|i| json!({"product_id": format!("P-{i:05}"), "actions": ["view", "order"], "max_quantity": 0}))
            .collect();
        let token = minter.mint(
            "entitlement+jwt",
            None,
            &json!({"iss": PRODUCTS_ISSUER, "sub": "alice", "aud": ["orders"], "exp": now + 300, "iat": now,
                    "nbf": now, "jti": "j", "ver": 2, "grants": grants, "catalogue_revision": 1}),
        );
        let rounds = (20_000 / count).max(200);
        let start = Instant::now();
        for _ in 0..rounds {
            let grant = verifier.verify(&token).await.expect("verifies");
            assert_eq!(grant.upcast().len(), count);
        }
        let each = start.elapsed() / rounds as u32;
        println!("{count:<10} {:>10} {:>14.2?}", token.len(), each);
    }
}
