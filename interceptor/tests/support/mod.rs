//! Test fixtures: real keys of each algorithm signing real tokens, and a real
//! tonic server (a trivial `test.v1.Ping` service) behind the auth layer on
//! `127.0.0.1:0`, called through a real tonic client.

#![allow(dead_code, missing_docs)] // each test binary uses a part

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    encoding::AsDer,
    rand::SystemRandom,
    rsa::KeySize,
    signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
        Ed25519KeyPair, KeyPair, RsaKeyPair,
    },
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use futures::future::BoxFuture;
use http::uri::PathAndQuery;
use jsonwebtoken::{Algorithm, EncodingKey, jwk::JwkSet};
use serde::Deserialize;
use serde_json::{Value, json};
use tokenmesh_interceptor::{
    AuthLayer, Claims, KeySet, KeyStore, Policy, Verifier, VerifierConfig,
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::{
    Status,
    body::Body,
    server::NamedService,
    transport::{Channel, Server, server::TcpIncoming},
};
use tonic_prost::ProstCodec;
use tower::Service;

pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "ping";
/// The method any valid token may call.
pub const PING: &str = "/test.v1.Ping/Ping";
/// The method that needs scope `admin`.
pub const ADMIN: &str = "/test.v1.Ping/Admin";

/// The claims the test server reads.
#[derive(Debug, Clone, Deserialize)]
pub struct TestClaims {
    pub iss: String,
    pub sub: String,
    pub exp: i64,
    #[serde(default)]
    pub iat: i64,
    #[serde(default)]
    pub nbf: i64,
    #[serde(default)]
    pub jti: String,
    #[serde(default)]
    pub scope: String,
}

impl Claims for TestClaims {
    fn subject(&self) -> &str {
        &self.sub
    }

    fn expires_at(&self) -> i64 {
        self.exp
    }

    fn not_before(&self) -> i64 {
        self.nbf
    }

    fn scope(&self) -> &str {
        &self.scope
    }

    fn token_id(&self) -> &str {
        &self.jti
    }

    fn issued_at(&self) -> i64 {
        self.iat
    }
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Claims of a valid token for `sub`, to alter before signing.
pub fn claims(sub: &str) -> Value {
    let now = now();
    json!({
        "iss": ISSUER, "sub": sub, "aud": [AUDIENCE],
        "exp": now + 300, "iat": now, "nbf": now,
        "jti": format!("{sub}-{}", rand_id()), "scope": "",
    })
}

fn rand_id() -> String {
    let mut bytes = [0u8; 12];
    aws_lc_rs::rand::fill(&mut bytes).expect("random");
    b64(&bytes)
}

/// A private key of one algorithm and its public JWK.
pub struct TestKey {
    pub kid: String,
    pub algorithm: Algorithm,
    encoding: EncodingKey,
    pub jwk: Value,
}

impl TestKey {
    pub fn ed25519(kid: &str) -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()),
            "kid": kid, "alg": "EdDSA", "use": "sig"});
        Self::new(
            kid,
            Algorithm::EdDSA,
            EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk,
        )
    }

    pub fn es256(kid: &str) -> Self {
        let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).expect("key");
        // Uncompressed point: 0x04 ‖ x ‖ y.
        let point = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..]),
            "kid": kid, "alg": "ES256", "use": "sig"});
        Self::new(
            kid,
            Algorithm::ES256,
            EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk,
        )
    }

    pub fn es384(kid: &str) -> Self {
        let alg = &ECDSA_P384_SHA384_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).expect("key");
        let point = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-384", "x": b64(&point[1..49]), "y": b64(&point[49..]),
            "kid": kid, "alg": "ES384", "use": "sig"});
        Self::new(
            kid,
            Algorithm::ES384,
            EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk,
        )
    }

    pub fn rs256(kid: &str) -> Self {
        Self::rsa(kid, Algorithm::RS256)
    }

    /// A fresh 2048-bit RSA key for `algorithm` (RS256/384/512, PS256/384/512).
    pub fn rsa(kid: &str, algorithm: Algorithm) -> Self {
        let alg = serde_json::to_value(algorithm).expect("alg");
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("key");
        let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).expect("der");
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
        let public = pair.public_key();
        let jwk = json!({"kty": "RSA",
            "n": b64(public.modulus().big_endian_without_leading_zero()),
            "e": b64(public.exponent().big_endian_without_leading_zero()),
            "kid": kid, "alg": alg, "use": "sig"});
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("rsa pem");
        Self::new(kid, algorithm, encoding, jwk)
    }

    fn new(kid: &str, algorithm: Algorithm, encoding: EncodingKey, jwk: Value) -> Self {
        Self {
            kid: kid.to_owned(),
            algorithm,
            encoding,
            jwk,
        }
    }

    /// The standard header: this key's `alg` and `kid`, `typ: at+jwt`.
    pub fn header(&self) -> Value {
        let alg = serde_json::to_value(self.algorithm).expect("alg");
        json!({"alg": alg, "typ": "at+jwt", "kid": self.kid})
    }

    /// A token with the standard header over `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_raw(&self.header().to_string(), &claims.to_string())
    }

    /// Signs the exact JSON texts `header` and `claims` (duplicate members and
    /// all) with this key's algorithm.
    pub fn sign_raw(&self, header: &str, claims: &str) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, self.algorithm)
                .expect("signs");
        format!("{input}.{signature}")
    }
}

/// The JWKS publishing `keys`.
pub fn jwks(keys: &[&TestKey]) -> JwkSet {
    let keys: Vec<Value> = keys.iter().map(|key| key.jwk.clone()).collect();
    serde_json::from_value(json!({ "keys": keys })).expect("jwks")
}

/// A key set trusting `keys`, built from their JWKS as a remote store would.
pub fn key_set(keys: &[&TestKey]) -> KeySet {
    KeySet::from_jwks(&jwks(keys))
}

/// Ping is open to any valid token; Admin needs scope `admin`.
pub fn policy() -> Policy {
    Policy::new()
        .authenticated("test.v1.Ping", "Ping", &[])
        .authenticated("test.v1.Ping", "Admin", &["admin"])
}

/// A verifier of [`ISSUER`]'s access tokens for [`AUDIENCE`], with the defaults.
pub fn verifier(keys: Arc<KeyStore>) -> Arc<Verifier<TestClaims>> {
    Arc::new(Verifier::new(
        VerifierConfig::access_tokens(ISSUER, AUDIENCE),
        keys,
    ))
}

/// `test.v1.Ping`: every method answers an empty message, and counts its calls.
#[derive(Debug, Clone, Default)]
pub struct Ping {
    pub calls: Arc<AtomicUsize>,
}

impl NamedService for Ping {
    const NAME: &'static str = "test.v1.Ping";
}

struct Empty;

impl tonic::server::UnaryService<()> for Empty {
    type Response = ();
    type Future = std::future::Ready<Result<tonic::Response<()>, Status>>;

    fn call(&mut self, _: tonic::Request<()>) -> Self::Future {
        std::future::ready(Ok(tonic::Response::new(())))
    }
}

impl Service<http::Request<Body>> for Ping {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<(), ()>::default());
            Ok(grpc.unary(Empty, request).await)
        })
    }
}

/// A running test server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub calls: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl TestServer {
    /// Serves [`Ping`] behind `layer` (or bare, with `None`) on `127.0.0.1:0`.
    pub async fn start(layer: Option<AuthLayer<TestClaims>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let ping = Ping::default();
        let calls = ping.calls.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        // TCP_NODELAY: tonic sets it only on listeners it binds itself.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let shutdown = async {
            let _ = stopped.await;
        };
        let task = match layer {
            Some(layer) => tokio::spawn(
                Server::builder()
                    .layer(layer)
                    .add_service(ping)
                    .serve_with_incoming_shutdown(incoming, shutdown),
            ),
            None => tokio::spawn(
                Server::builder()
                    .add_service(ping)
                    .serve_with_incoming_shutdown(incoming, shutdown),
            ),
        };
        Self {
            addr,
            calls,
            stop: Some(stop),
            task,
        }
    }

    /// A connected channel.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("url")
            .connect()
            .await
            .expect("connects")
    }

    /// How many requests reached the handler.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("join").expect("serves");
    }
}

/// Calls `path` on `channel` with `authorization: Bearer <token>` (none if `None`).
pub async fn call(
    channel: &Channel,
    path: &'static str,
    token: Option<&str>,
) -> Result<(), Status> {
    let mut request = tonic::Request::new(());
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().expect("ascii");
        request.metadata_mut().insert("authorization", value);
    }
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|error| Status::unavailable(error.to_string()))?;
    grpc.unary(
        request,
        PathAndQuery::from_static(path),
        ProstCodec::<(), ()>::default(),
    )
    .await
    .map(|_| ())
}
