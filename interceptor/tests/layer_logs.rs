//! The auth layer's decisions in metrics always, in logs at DEBUG only (a flood of
//! bad tokens must not become a flood of logs). Alone in its binary: a
//! thread-local subscriber misses events when parallel tests register the same
//! callsites first (tokio-rs/tracing#3611).

mod support;

use std::sync::{Arc, Mutex};

use support::{PING, TestKey, TestServer, call, claims, key_set, now, policy, verifier};
use tokenmesh_interceptor::{Allowed, AuthLayer, AuthMetrics, KeyStore};

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

/// A fmt subscriber at `level` for this thread, and what it writes.
fn capture(level: tracing::Level) -> (tracing::subscriber::DefaultGuard, Captured) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(level)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    // A parallel test may have registered these callsites while no subscriber
    // was interested (tokio-rs/tracing#3611): recompute, or events are lost.
    tracing::callsite::rebuild_interest_cache();
    (guard, captured)
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("lock").clone()).expect("utf-8")
    }
}

/// A server behind the layer that has verified a valid token once and answered
/// it once from the cache; its metrics, that token and an expired one.
async fn serve_and_verify_once() -> (TestServer, Arc<AuthMetrics>, String, String) {
    let key = TestKey::ed25519("k1");
    let layer = AuthLayer::new(verifier(KeyStore::fixed(key_set(&[&key]))), policy());
    let metrics = layer.metrics();
    let server = TestServer::start(Some(layer)).await;
    let channel = server.channel().await;
    let token = key.sign(&claims("alice"));
    call(&channel, PING, Some(&token)).await.expect("verified");
    call(&channel, PING, Some(&token)).await.expect("cached");
    let mut expired = claims("bob");
    expired["exp"] = (now() - 60).into();
    (server, metrics, token, key.sign(&expired))
}

// Current-thread runtime: the subscriber set for this thread sees the server too.
#[tokio::test(flavor = "current_thread")]
async fn outcomes_are_counted_by_reason_and_recorded_in_a_debug_span() {
    let (_guard, captured) = capture(tracing::Level::DEBUG);

    let (server, metrics, token, expired) = serve_and_verify_once().await;
    let channel = server.channel().await;
    call(&channel, PING, None).await.expect_err("missing");
    call(&channel, PING, Some(&expired))
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

    let logs = captured.text();
    assert!(
        logs.contains("outcome=\"refused\" reason=\"TOKEN_EXPIRED\""),
        "{logs}"
    );
    assert!(!logs.contains(&token), "a token was logged");
}

#[tokio::test(flavor = "current_thread")]
async fn at_info_no_request_is_logged_but_every_refusal_is_counted() {
    let (_guard, captured) = capture(tracing::Level::INFO);

    let (server, metrics, _, expired) = serve_and_verify_once().await;
    let channel = server.channel().await;
    for _ in 0..50 {
        call(&channel, PING, Some(&expired))
            .await
            .expect_err("expired");
        call(&channel, PING, None).await.expect_err("missing");
    }
    server.stop().await;

    assert_eq!(
        (
            metrics.refused_count("TOKEN_EXPIRED"),
            metrics.refused_count("TOKEN_MISSING"),
            metrics.allowed_count(Allowed::Cached),
        ),
        (50, 50, 1)
    );
    let logs = captured.text();
    assert!(
        !logs.contains("refused") && !logs.contains("auth{"),
        "a request was logged at INFO:\n{logs}"
    );
}
