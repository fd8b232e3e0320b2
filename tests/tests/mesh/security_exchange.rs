//! Issue 10, item 6: token exchange only narrows. The audit's escalation — an
//! admin's token exchanged by Orders' client, then CreateProduct on Products —
//! and its variants (audience `auth`, re-exchange), through real sockets on
//! SQLite and PostgreSQL (delegations are stored by Auth).

use serde_json::json;
use tokenmesh_proto::{
    auth::v1::{ExchangeTokenRequest, IssueServiceTokenRequest},
    products::v1::{CheckEntitlementRequest, CreateProductRequest},
};
use tokenmesh_tests::calls::assert_status;
use tokenmesh_tests::{
    Bearer, Mesh, MeshBuilder, Minter, bearer_value, claims_of, client_secret,
    on_sqlite_and_postgres,
};
use tonic::{Code, Request, Status};

on_sqlite_and_postgres!(
    an_admins_token_exchanged_by_orders_cannot_create_a_product,
    exchange_refuses_audience_auth,
    exchange_refuses_a_subject_token_that_already_has_an_actor,
);

/// Orders' own client-credentials token for Auth: what lets it call ExchangeToken.
async fn orders_actor(mesh: &Mesh) -> String {
    mesh.auth()
        .await
        .issue_service_token(IssueServiceTokenRequest {
            client_id: "orders".into(),
            client_secret: client_secret(mesh, "orders"),
            audience: "auth".into(),
        })
        .await
        .expect("Orders' service token")
        .into_inner()
        .access_token
}

/// `subject` exchanged for `audience` by `actor`.
async fn exchange(
    mesh: &Mesh,
    actor: &str,
    subject: &str,
    audience: &str,
) -> Result<tokenmesh_proto::auth::v1::TokenResponse, Status> {
    let mut request = Request::new(ExchangeTokenRequest {
        subject_token: subject.into(),
        audience: audience.into(),
    });
    request
        .metadata_mut()
        .insert("authorization", bearer_value(actor));
    mesh.auth()
        .await
        .exchange_token(request)
        .await
        .map(|response| response.into_inner())
}

async fn create_product(
    products: &mut tokenmesh_tests::ProductsClient,
    id: &str,
) -> Result<(), Status> {
    products
        .create_product(CreateProductRequest {
            id: id.into(),
            name: "escalated".into(),
            price_cents: 1,
            description: String::new(),
        })
        .await
        .map(drop)
}

async fn an_admins_token_exchanged_by_orders_cannot_create_a_product(builder: MeshBuilder) {
    let mesh = builder.start().await;
    let actor = orders_actor(&mesh).await;
    let admin = mesh.login("admin").await;
    assert_eq!(claims_of(&admin)["scope"], "admin");

    let exchanged = exchange(&mesh, &actor, &admin, "products")
        .await
        .expect("Orders may exchange a user's token for Products");
    let mut products = mesh.products(Bearer::token(&exchanged.access_token)).await;
    assert_status(
        create_product(&mut products, "P-ESCALATED").await,
        Code::PermissionDenied,
        "insufficient scope: this method requires `admin`",
    );
    assert_eq!(exchanged.scope, "", "Orders delegates no scope to Products");
    let claims = claims_of(&exchanged.access_token);
    assert_eq!(
        (
            claims["sub"].clone(),
            claims["scope"].clone(),
            claims["act"].clone()
        ),
        (json!("admin"), json!(""), json!({"sub": "orders"}))
    );
    // What Orders needs the exchanged token for still works.
    products
        .check_entitlement(CheckEntitlementRequest {
            subject: "admin".into(),
            product_id: "P-100".into(),
        })
        .await
        .expect("CheckEntitlement with the exchanged token");
    // And the admin's own token still can.
    let mut as_admin = mesh.products(Bearer::token(&admin)).await;
    create_product(&mut as_admin, "P-BY-ADMIN")
        .await
        .expect("the admin's own token creates a product");
    mesh.shutdown().await;
}

async fn exchange_refuses_audience_auth(builder: MeshBuilder) {
    let mesh = builder.start().await;
    let actor = orders_actor(&mesh).await;
    let admin = mesh.login("admin").await;
    // The audit's chain: admin → auth (as Orders), then → products.
    assert_status(
        exchange(&mesh, &actor, &admin, "auth").await,
        Code::InvalidArgument,
        "audience: an exchanged token is never issued for auth",
    );
    mesh.shutdown().await;
}

async fn exchange_refuses_a_subject_token_that_already_has_an_actor(builder: MeshBuilder) {
    let mesh = builder.start().await;
    let actor = orders_actor(&mesh).await;
    // What an exchange for `auth` used to yield: Auth's own signature, audience
    // auth, an actor, the admin's scope.
    let mut claims = Minter::access_claims("admin");
    claims["aud"] = json!(["auth"]);
    claims["scope"] = json!("admin");
    claims["client_id"] = json!("orders");
    claims["act"] = json!({"sub": "orders"});
    let exchanged_once = mesh.auth_minter().access_token(&claims);
    assert_status(
        exchange(&mesh, &actor, &exchanged_once, "products").await,
        Code::InvalidArgument,
        "subject_token: already exchanged (has `act`); exchange the user's own token",
    );
    mesh.shutdown().await;
}

// === Issue 10, item 5: bounded input, bounded servers ===

mod bounds {
    //! Every string field is bounded before any work and never logged whole;
    //! an oversized message is RESOURCE_EXHAUSTED; a full server sheds, and a
    //! slow request ends at the server's timeout.

    use std::{
        convert::Infallible,
        io::Write,
        sync::{Arc, Mutex},
        time::Duration,
    };

    use futures::future::BoxFuture;
    use prost::Message;
    use tokenmesh_interceptor::{AuthLayer, KeySet, KeyStore, Policy, Verifier, VerifierConfig};
    use tokenmesh_proto::auth::v1::LoginRequest;
    use tokenmesh_server::{Caller, ServerLimits, metrics::Registry, validate::SHOWN_MAX};
    use tokenmesh_tests::Mesh;
    use tokio::sync::{Semaphore, watch};
    use tonic::{
        Code, Status, body::Body, codegen::http::uri::PathAndQuery, server::NamedService,
        transport::Channel,
    };
    use tower::Service;

    /// Everything the services log on this test's thread (a current-thread
    /// runtime: the mesh's tasks run here too), spans included.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn start() -> (Self, tracing::subscriber::DefaultGuard) {
            let captured = Self::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish();
            (captured, tracing::subscriber::set_default(subscriber))
        }

        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
        }
    }

    async fn login(mesh: &Mesh, username: &str) -> Result<(), Status> {
        mesh.auth()
            .await
            .login(LoginRequest {
                username: username.into(),
                password: "password".into(),
            })
            .await
            .map(drop)
    }

    fn assert_status(result: Result<(), Status>, code: Code, message: &str) {
        let status = result.expect_err(message);
        assert_eq!((status.code(), status.message()), (code, message));
    }

    #[tokio::test]
    async fn an_overlong_username_is_refused_naming_the_field_and_never_logged_whole() {
        let (log, _guard) = Captured::start();
        let mesh = Mesh::start().await;
        let username = format!(
            "{}-{}",
            tokenmesh_server::random_token(8),
            "u".repeat(16 * 1024)
        );
        assert_status(
            login(&mesh, &username).await,
            Code::InvalidArgument,
            "username: longer than 128 bytes",
        );
        mesh.shutdown().await;
        let log = log.text();
        assert!(log.contains("username="), "the login span was logged");
        assert!(
            !log.contains(&username[..SHOWN_MAX + 1]),
            "more than {SHOWN_MAX} bytes of the username in the log"
        );
        // Refused before any work: no password hashed, no throttle entry.
        assert!(!log.contains("login refused"), "no login was attempted");
    }

    #[tokio::test]
    async fn a_message_over_the_services_limit_is_resource_exhausted_and_not_logged() {
        let (log, _guard) = Captured::start();
        let mesh = Mesh::start().await;
        let username = format!(
            "{}-{}",
            tokenmesh_server::random_token(8),
            "u".repeat(4 << 20)
        );
        let encoded = LoginRequest {
            username: username.clone(),
            password: "password".into(),
        }
        .encoded_len();
        assert_status(
            login(&mesh, &username).await,
            Code::ResourceExhausted,
            &format!(
                "Error, decoded message length too large: found {encoded} bytes, the limit is: {} bytes",
                tokenmesh_auth::MAX_REQUEST_BYTES
            ),
        );
        // The server is still serving.
        mesh.login("alice").await;
        mesh.shutdown().await;
        assert!(!log.text().contains(&username[..SHOWN_MAX + 1]));
    }

    /// A service whose every call waits in its handler until released, then
    /// answers ABORTED "released": the handler was reached.
    #[derive(Clone)]
    struct Held {
        entered: Arc<Semaphore>,
        release: watch::Receiver<bool>,
    }

    impl NamedService for Held {
        const NAME: &'static str = "tokenmesh.test.Held";
    }

    impl Service<http::Request<Body>> for Held {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

        fn poll_ready(
            &mut self,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Infallible>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, _request: http::Request<Body>) -> Self::Future {
            let held = self.clone();
            Box::pin(async move {
                held.entered.add_permits(1);
                let mut release = held.release;
                let _ = release.wait_for(|released| *released).await;
                Ok(Status::aborted("released").into_http())
            })
        }
    }

    /// A server made by `tokenmesh_server::serve` — what every service runs —
    /// around [`Held`], within `limits`; returns its address and the switches.
    async fn held_server(
        limits: ServerLimits,
    ) -> (std::net::SocketAddr, Arc<Semaphore>, watch::Sender<bool>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let (release, released) = watch::channel(false);
        let entered = Arc::new(Semaphore::new(0));
        let held = Held {
            entered: entered.clone(),
            release: released,
        };
        let verifier = Verifier::<Caller>::new(
            VerifierConfig::access_tokens("nobody", "nothing"),
            KeyStore::fixed(KeySet::new([])),
        );
        let layer = AuthLayer::new(Arc::new(verifier), Policy::new().public(Held::NAME, "Wait"));
        tokio::spawn(async move {
            let metrics = Registry::new();
            tokenmesh_server::serve(
                listener,
                held,
                layer,
                &metrics,
                limits,
                std::future::pending(),
            )
            .await
        });
        (addr, entered, release)
    }

    async fn wait(channel: Channel) -> Status {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.expect("ready");
        let codec = tonic_prost::ProstCodec::<(), ()>::default();
        grpc.unary(
            tonic::Request::new(()),
            PathAndQuery::from_static("/tokenmesh.test.Held/Wait"),
            codec,
        )
        .await
        .expect_err("Held never answers OK")
    }

    #[tokio::test]
    async fn a_server_at_its_concurrency_limit_sheds_at_once_instead_of_queueing() {
        let limits = ServerLimits {
            max_concurrent_requests: 2,
            ..ServerLimits::default()
        };
        let (addr, entered, release) = held_server(limits).await;
        let held: Vec<_> = (0..2)
            .map(|_| tokio::spawn(async move { wait(Mesh::channel(addr).await).await }))
            .collect();
        // Both are in the handler, holding the server's two permits.
        let _both = entered.acquire_many(2).await.expect("two calls entered");
        let shed = wait(Mesh::channel(addr).await).await;
        assert_eq!(
            (shed.code(), shed.message()),
            (Code::Unavailable, "server overloaded; retry with backoff")
        );
        release.send_replace(true);
        for call in held {
            let status = call.await.expect("call task");
            assert_eq!(
                (status.code(), status.message()),
                (Code::Aborted, "released")
            );
        }
        // Permits came back: the next call is served.
        let served = wait(Mesh::channel(addr).await).await;
        assert_eq!(
            (served.code(), served.message()),
            (Code::Aborted, "released")
        );
    }

    #[tokio::test]
    async fn a_header_list_over_the_limit_never_reaches_the_handler() {
        let limits = ServerLimits {
            max_header_list_size: 2048,
            ..ServerLimits::default()
        };
        let (addr, entered, release) = held_server(limits).await;
        release.send_replace(true);
        let mut grpc = tonic::client::Grpc::new(Mesh::channel(addr).await);
        grpc.ready().await.expect("ready");
        let mut request = tonic::Request::new(());
        let padding = "p".repeat(4096).parse().expect("ASCII");
        request.metadata_mut().insert("x-padding", padding);
        let refused = grpc
            .unary(
                request,
                PathAndQuery::from_static("/tokenmesh.test.Held/Wait"),
                tonic_prost::ProstCodec::<(), ()>::default(),
            )
            .await
            .expect_err("refused");
        // hyper answers before any layer: which code the client reads depends on
        // how it refuses (TRAPS.md); the handler never ran.
        assert_ne!(refused.code(), Code::Aborted, "{refused:?}");
        assert_eq!(entered.available_permits(), 0, "the handler was reached");
        // Still serving.
        let served = wait(Mesh::channel(addr).await).await;
        assert_eq!(
            (served.code(), served.message()),
            (Code::Aborted, "released")
        );
    }

    #[tokio::test]
    async fn a_request_past_the_servers_timeout_is_deadline_exceeded() {
        let limits = ServerLimits {
            request_timeout: Duration::from_millis(200),
            ..ServerLimits::default()
        };
        let (addr, _entered, _release) = held_server(limits).await;
        let status = wait(Mesh::channel(addr).await).await;
        assert_eq!(
            (status.code(), status.message()),
            (
                Code::DeadlineExceeded,
                "request took longer than the server's limit of 200ms"
            )
        );
    }
}
