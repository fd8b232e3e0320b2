//! The auth layer's decisions in logs and metrics. Alone in its binary: a
//! thread-local subscriber misses events when parallel tests register the same
//! callsites first (tokio-rs/tracing#3611).

mod support;

use std::sync::{Arc, Mutex};

use support::{PING, TestKey, TestServer, call, claims, key_set, now, policy, verifier};
use tokenmesh_interceptor::{Allowed, AuthLayer, KeyStore};

/// Collects what the fmt subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// Current-thread runtime: the subscriber set for this thread sees the server too.
#[tokio::test(flavor = "current_thread")]
async fn outcomes_are_counted_by_reason_and_recorded_in_a_span() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // A parallel test may have registered these callsites while no subscriber
    // was interested (tokio-rs/tracing#3611): recompute, or events are lost.
    tracing::callsite::rebuild_interest_cache();

    let key = TestKey::ed25519("k1");
    let layer = AuthLayer::new(verifier(KeyStore::fixed(key_set(&[&key]))), policy());
    let metrics = layer.metrics();
    let server = TestServer::start(Some(layer)).await;
    let channel = server.channel().await;
    let token = key.sign(&claims("alice"));
    call(&channel, PING, Some(&token)).await.expect("verified");
    call(&channel, PING, Some(&token)).await.expect("cached");
    call(&channel, PING, None).await.expect_err("missing");
    let mut expired = claims("bob");
    expired["exp"] = (now() - 60).into();
    call(&channel, PING, Some(&key.sign(&expired)))
        .await
        .expect_err("expired");
    call(&channel, "/test.v1.Ping/Other", Some(&token))
        .await
        .expect_err("unknown method");
    server.stop().await;

    let counts = (
        metrics.allowed_count(Allowed::Verified),
        metrics.allowed_count(Allowed::Cached),
        metrics.refused_count("TOKEN_MISSING"),
        metrics.refused_count("TOKEN_EXPIRED"),
        metrics.refused_count("METHOD_UNKNOWN"),
    );
    assert_eq!(counts, (1, 1, 1, 1, 1));
    let text = metrics.render("ping");
    assert!(text.contains(
        "tokenmesh_auth_requests_total{service=\"ping\",outcome=\"refused\",reason=\"TOKEN_EXPIRED\"} 1"
    ), "{text}");

    let logs = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
    assert!(
        logs.contains("outcome=\"refused\" reason=\"TOKEN_EXPIRED\""),
        "{logs}"
    );
    assert!(!logs.contains(&token), "a token was logged");
}
