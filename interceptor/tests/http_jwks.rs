//! The HTTP(S) key source against a real HTTP server on loopback: a good key
//! set is taken; an error status, a redirect, an oversized or non-JWKS body is
//! refused, and the store keeps its last good set.

mod support;

use support::{TestKey, jwks};
use tokenmesh_interceptor::{HttpJwksSource, KeyStore, MAX_JWKS_BYTES};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    task::JoinHandle,
};

/// Answers every connection with `status` and `body`, until dropped.
async fn serve(
    status: &'static str,
    headers: &'static str,
    body: String,
) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().expect("addr")
    );
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    (url, task)
}

#[tokio::test]
async fn a_served_key_set_is_fetched() {
    let key = TestKey::es256("k1");
    let body = serde_json::to_string(&jwks(&[&key])).expect("json");
    let (url, server) = serve("200 OK", "content-type: application/json\r\n", body).await;
    let store = KeyStore::remote(HttpJwksSource::new(&url).expect("source"));
    assert_eq!(store.refresh().await.expect("fetched"), 1);
    assert!(store.current().get("k1").is_some());
    server.abort();
}

#[tokio::test]
async fn bad_answers_are_refused_and_the_last_good_set_stays() {
    let key = TestKey::ed25519("k1");
    let good = serde_json::to_string(&jwks(&[&key])).expect("json");
    let cases = [
        ("404 Not Found", "", "{}".to_owned(), "HTTP 404 Not Found"),
        (
            "302 Found",
            "location: http://127.0.0.1:1/evil\r\n",
            String::new(),
            "HTTP 302 Found",
        ),
        ("200 OK", "", "<html>".to_owned(), "not a JWKS"),
        ("200 OK", "", " ".repeat(MAX_JWKS_BYTES + 1), "larger than"),
    ];
    for (status, headers, body, expected) in cases {
        let (good_url, good_server) = serve("200 OK", "", good.clone()).await;
        let (bad_url, bad_server) = serve(status, headers, body).await;
        let store = KeyStore::remote(Switch::new(&good_url, &bad_url));
        store.refresh().await.expect("good fetch");
        let error = store.refresh().await.expect_err(status).to_string();
        assert!(error.contains(expected), "{status}: {error}");
        assert!(
            store.current().get("k1").is_some(),
            "{status}: last good set kept"
        );
        good_server.abort();
        bad_server.abort();
    }
}

#[test]
fn only_http_urls_are_sources() {
    for url in ["file:///etc/passwd", "ftp://example.test/jwks", "not a url"] {
        assert!(HttpJwksSource::new(url).is_err(), "{url}");
    }
}

/// The first fetch from one URL, every later one from another.
struct Switch {
    first: HttpJwksSource,
    then: HttpJwksSource,
    fetched: std::sync::atomic::AtomicBool,
}

impl Switch {
    fn new(first: &str, then: &str) -> Self {
        Self {
            first: HttpJwksSource::new(first).expect("source"),
            then: HttpJwksSource::new(then).expect("source"),
            fetched: Default::default(),
        }
    }
}

impl tokenmesh_interceptor::KeySource for Switch {
    fn fetch(
        &self,
    ) -> futures::future::BoxFuture<
        '_,
        Result<jsonwebtoken::jwk::JwkSet, tokenmesh_interceptor::KeySourceError>,
    > {
        if self.fetched.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.then.fetch()
        } else {
            self.first.fetch()
        }
    }
}
