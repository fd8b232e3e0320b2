//! Fixtures for the integration tests: [`Mesh`] starts the real services on
//! `127.0.0.1:0` through the same code as `tokenmesh up`, with a fresh data dir
//! and, in the `mesh_postgres` binary, a fresh PostgreSQL database ([`Storage`]);
//! clients are the generated tonic stubs; [`Minter`] forges tokens with the
//! mesh's own keys (or others) to test what the verifiers refuse.

#![forbid(unsafe_code)]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use clap::{Args, FromArgMatches};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;
use tokenmesh::cli::UpArgs;
pub use tokenmesh_interceptor::ManualClock;
pub use tokenmesh_orders::SourceKind;
use tokenmesh_proto::{
    auth::v1::{GetJwksRequest, Jwks, LoginRequest, auth_service_client::AuthServiceClient},
    orders::v1::{
        ListOrdersRequest, PlaceOrderRequest, orders_service_client::OrdersServiceClient,
    },
    products::v1::{
        ListProductsRequest, ListProductsResponse, products_service_client::ProductsServiceClient,
    },
};
use tonic::{
    Request, Status,
    metadata::{AsciiMetadataValue, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

/// Issuer names the fixture mesh uses (the CLI defaults).
pub const AUTH_ISSUER: &str = "tokenmesh-auth";
/// `iss` of Products' grants.
pub const PRODUCTS_ISSUER: &str = "tokenmesh-products";

/// Products' client carrying a bearer token.
pub type ProductsClient = ProductsServiceClient<InterceptedService<Channel, Bearer>>;
/// Orders' client carrying a bearer token.
pub type OrdersClient = OrdersServiceClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <token>` to every call (nothing if `None`).
#[derive(Debug, Clone)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl Bearer {
    /// Sends `token`.
    pub fn token(token: &str) -> Self {
        Self(Some(
            format!("Bearer {token}").parse().expect("token is ASCII"),
        ))
    }

    /// Sends this exact `authorization` value.
    pub fn raw(value: &str) -> Self {
        Self(Some(value.parse().expect("ASCII")))
    }

    /// Sends no token.
    pub fn none() -> Self {
        Self(None)
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Builds a [`Mesh`]: the flags of `tokenmesh up --demo` on a fresh data dir and
/// free ports, plus whatever the test sets, parsed by the binary's own parser.
#[derive(Debug, Clone)]
pub struct MeshBuilder {
    flags: Vec<String>,
    signing_key_pem: Option<String>,
    clock: Option<ManualClock>,
    storage: Storage,
}

/// Where a test mesh keeps its services' state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// SQLite files in the data dir (`tokenmesh up`'s default).
    Sqlite,
    /// One fresh PostgreSQL database on the server `TOKENMESH_TEST_DATABASE_URL`
    /// names, shared by the three services (each in its schema), dropped with
    /// the mesh.
    Postgres,
}

/// The test binary whose meshes run on PostgreSQL: `tests/mesh_postgres.rs`,
/// the mesh suite compiled a second time.
const POSTGRES_SUITE: &str = "mesh_postgres";

impl Storage {
    /// This test binary's storage: PostgreSQL in `mesh_postgres`, SQLite in
    /// every other. Every `tests/mesh` test thus runs on both without naming
    /// either (the binary's file name is `<target>-<hash>`).
    pub fn of_this_binary() -> Self {
        let binary = std::env::current_exe().ok();
        let name = binary
            .as_deref()
            .and_then(Path::file_stem)
            .and_then(|stem| stem.to_str())
            .unwrap_or_default();
        match name.rsplit_once('-') {
            Some((target, _hash)) if target == POSTGRES_SUITE => Self::Postgres,
            _ if name == POSTGRES_SUITE => Self::Postgres,
            _ => Self::Sqlite,
        }
    }
}

impl MeshBuilder {
    /// Runs every service on a fresh PostgreSQL database (each in its schema)
    /// in any binary: for benchmarks that compare the stores.
    pub fn postgres(mut self) -> Self {
        self.storage = Storage::Postgres;
        self
    }

    /// Runs on SQLite even in the PostgreSQL suite: for tests about SQLite's
    /// files in the data dir (their modes, what a copy of them holds).
    pub fn sqlite_only(mut self) -> Self {
        self.storage = Storage::Sqlite;
        self
    }

    /// Every service reads the time from `clock`: the test moves it instead of
    /// sleeping until something expires.
    pub fn clock(mut self, clock: ManualClock) -> Self {
        self.clock = Some(clock);
        self
    }

    fn flag(mut self, name: &str, value: impl ToString) -> Self {
        self.flags.push(format!("--{name}"));
        self.flags.push(value.to_string());
        self
    }

    fn duration(self, name: &str, value: Duration) -> Self {
        let text = humantime::format_duration(value).to_string();
        self.flag(name, text)
    }

    /// Access tokens live this long.
    pub fn access_token_ttl(self, ttl: Duration) -> Self {
        self.duration("access-token-ttl", ttl)
    }

    /// Auth signs with this PKCS#8 PEM key, passed as `--auth-signing-key`.
    pub fn auth_signing_key(mut self, pem: &str) -> Self {
        self.signing_key_pem = Some(pem.to_owned());
        self
    }

    /// Pages from `origin` may call the services from a browser,
    /// `--cors-allowed-origin`.
    pub fn cors_allowed_origin(self, origin: &str) -> Self {
        self.flag("cors-allowed-origin", origin)
    }

    /// Auth's public base URL, `--public-url` (discovery's `jwks_uri`).
    pub fn public_url(self, url: &str) -> Self {
        self.flag("public-url", url)
    }

    /// Auth stores its state in this database instead of the mesh's.
    pub fn auth_database_url(self, url: Option<String>) -> Self {
        match url {
            Some(url) => self.flag("auth-database-url", url),
            None => self,
        }
    }

    /// Auth signs new keys with this algorithm.
    pub fn signing_alg(self, algorithm: tokenmesh_server::SigningAlgorithm) -> Self {
        self.flag("signing-alg", algorithm.as_str())
    }

    /// Verifiers refetch key sets this often.
    pub fn key_refresh_interval(self, interval: Duration) -> Self {
        self.duration("key-refresh-interval", interval)
    }

    /// A retired key stays published this long after its last token expired.
    pub fn retired_key_grace(self, grace: Duration) -> Self {
        self.duration("retired-key-grace", grace)
    }

    /// Failed logins allowed before delays start, and the first delay.
    pub fn login_throttle(self, free_failures: u32, first_delay: Duration) -> Self {
        self.flag("login-throttle-failures", free_failures)
            .duration("login-throttle-delay", first_delay)
    }

    /// A login ends this long after it started, however often it refreshes.
    pub fn session_max_lifetime(self, lifetime: Duration) -> Self {
        self.duration("session-max-lifetime", lifetime)
    }

    /// Refresh and Logout calls allowed per minute from one client address.
    pub fn refresh_rate_limit(self, per_minute: u32) -> Self {
        self.flag("refresh-rate-limit", per_minute)
    }

    /// IssueServiceToken calls allowed per minute for one client id.
    pub fn service_token_rate_limit(self, per_minute: u32) -> Self {
        self.flag("service-token-rate-limit", per_minute)
    }

    /// Orders asks these entitlement sources, in this order.
    pub fn entitlement_sources(self, sources: &[SourceKind]) -> Self {
        let names: Vec<&str> = sources
            .iter()
            .map(|source| match source {
                SourceKind::Grant => "grant",
                SourceKind::Replica => "replica",
                SourceKind::Rpc => "rpc",
            })
            .collect();
        self.flag("entitlement-sources", names.join(","))
    }

    /// Products emits grants of this claims version; Orders reads these.
    pub fn grant_versions(self, emitted: u32, read: &[u32]) -> Self {
        let read: Vec<String> = read.iter().map(u32::to_string).collect();
        self.flag("grant-version", emitted)
            .flag("grant-versions", read.join(","))
    }

    /// Products issues no grant above this many bytes.
    pub fn grant_max_bytes(self, bytes: usize) -> Self {
        self.flag("grant-max-bytes", bytes)
    }

    /// Products keeps entitlement changes this long before compacting them, and
    /// compacts this often.
    pub fn entitlement_feed_compaction(self, retention: Duration, every: Duration) -> Self {
        self.duration("entitlement-feed-retention", retention)
            .duration("feed-compaction-interval", every)
    }

    /// Orders reuses CheckEntitlement answers this long (0: never).
    pub fn rpc_cache_ttl(self, ttl: Duration) -> Self {
        if ttl.is_zero() {
            return self.flag("rpc-cache-ttl", "0s");
        }
        self.duration("rpc-cache-ttl", ttl)
    }

    /// Serves TLS with these files (`--tls-cert`, `--tls-key`,
    /// `--tls-client-ca`), and calls peers trusting `ca` (`--tls-ca`).
    pub fn tls(self, cert: &Path, key: &Path, client_ca: Option<&Path>, ca: &Path) -> Self {
        let builder = self
            .flag("tls-cert", cert.display())
            .flag("tls-key", key.display())
            .flag("tls-ca", ca.display());
        match client_ca {
            Some(client_ca) => builder.flag("tls-client-ca", client_ca.display()),
            None => builder,
        }
    }

    /// Starts the demo mesh.
    pub async fn start(mut self) -> Mesh {
        let data_dir = tempfile::tempdir().expect("temp data dir");
        let database = match self.storage {
            Storage::Sqlite => None,
            Storage::Postgres => Some(TestDatabase::create().await.expect(
                "the PostgreSQL suite is built only when TOKENMESH_TEST_DATABASE_URL is set: \
                 set it when running it too",
            )),
        };
        if let Some(database) = &database {
            self = self.flag("database-url", &database.url);
        }
        // An operator's key file: outside the data dir, readable by its owner only.
        let given_key_dir = match self.signing_key_pem.take() {
            Some(pem) => {
                let dir = tempfile::tempdir().expect("temp key dir");
                let path = dir.path().join("given-key.pem");
                tokenmesh_server::start::write_private_file(&path, pem.as_bytes())
                    .expect("write key");
                self = self.flag("auth-signing-key", path.display());
                Some(dir)
            }
            None => None,
        };
        let mut argv: Vec<String> = ["up", "--demo", "--data-dir"].map(String::from).into();
        argv.push(data_dir.path().display().to_string());
        for flag in ["auth-addr", "products-addr", "orders-addr", "http-addr"] {
            argv.extend([format!("--{flag}"), "127.0.0.1:0".into()]);
        }
        argv.extend(self.flags);
        let args = parse_up_args(&argv).expect("valid up flags");
        let mut env = tokenmesh::mesh::environment(&args).expect("environment");
        if let Some(clock) = self.clock.take() {
            env.clock = Arc::new(clock);
        }
        let mesh = tokenmesh::mesh::start(&args, env)
            .await
            .expect("mesh starts");
        let mut mesh = Mesh {
            mesh: Some(mesh),
            data_dir,
            _given_key_dir: given_key_dir,
            argv,
            args,
            auth_key_pem: String::new(),
            products_key_pem: String::new(),
            database,
        };
        // Auth keeps its key only in its database, encrypted: read it as
        // `tokenmesh keys rotate` would open it; Products' grant key too.
        mesh.auth_key_pem = mesh.auth_offline().await.signing_key().pem().to_owned();
        mesh.products_key_pem = mesh.products_keys().await.signer().pem().to_owned();
        mesh.wait_for_replica().await;
        mesh
    }
}

/// `tokenmesh up` flags parsed by the binary's own parser.
fn parse_up_args(argv: &[String]) -> Result<UpArgs, clap::Error> {
    let command = UpArgs::augment_args(clap::Command::new("up"));
    let matches = command.try_get_matches_from(argv)?;
    UpArgs::from_arg_matches(&matches)
}

/// The three services, running on loopback with the demo data.
#[derive(Debug)]
pub struct Mesh {
    mesh: Option<tokenmesh::mesh::Mesh>,
    data_dir: tempfile::TempDir,
    /// Holds the `--auth-signing-key` file, if one was given.
    _given_key_dir: Option<tempfile::TempDir>,
    /// The command line, `up` first.
    argv: Vec<String>,
    args: UpArgs,
    /// The key Auth signed with when the mesh started (PKCS#8 PEM).
    auth_key_pem: String,
    /// The key Products signed grants with when the mesh started.
    products_key_pem: String,
    /// The PostgreSQL database of every service, if not SQLite; declared
    /// after `mesh` so that a panicking test drops it after the services.
    database: Option<TestDatabase>,
}

impl Mesh {
    /// A mesh with the defaults of `tokenmesh up --demo`.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// A builder for other settings.
    pub fn builder() -> MeshBuilder {
        MeshBuilder {
            flags: Vec::new(),
            signing_key_pem: None,
            clock: None,
            storage: Storage::of_this_binary(),
        }
    }

    fn inner(&self) -> &tokenmesh::mesh::Mesh {
        self.mesh.as_ref().expect("mesh running")
    }

    fn inner_mut(&mut self) -> &mut tokenmesh::mesh::Mesh {
        self.mesh.as_mut().expect("mesh running")
    }

    /// Auth's address.
    pub fn auth_addr(&self) -> SocketAddr {
        self.inner().auth.addr
    }

    /// Products' address.
    pub fn products_addr(&self) -> SocketAddr {
        self.inner().products.addr
    }

    /// Orders' address.
    pub fn orders_addr(&self) -> SocketAddr {
        self.inner().orders.addr
    }

    /// The HTTP address: Auth's JWKS, every service's `/metrics`.
    pub fn http_addr(&self) -> SocketAddr {
        self.inner().http.addr
    }

    /// The data dir (keys, databases).
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.path().to_owned()
    }

    /// A plaintext channel to `addr`.
    pub async fn channel(addr: SocketAddr) -> Channel {
        Channel::from_shared(format!("http://{addr}"))
            .expect("url")
            .connect()
            .await
            .expect("connects")
    }

    /// A client of Auth.
    pub async fn auth(&self) -> AuthServiceClient<Channel> {
        AuthServiceClient::new(Self::channel(self.auth_addr()).await)
    }

    /// A client of Products sending `bearer`.
    pub async fn products(&self, bearer: Bearer) -> ProductsClient {
        ProductsServiceClient::with_interceptor(Self::channel(self.products_addr()).await, bearer)
    }

    /// A client of Orders sending `bearer`.
    pub async fn orders(&self, bearer: Bearer) -> OrdersClient {
        OrdersServiceClient::with_interceptor(Self::channel(self.orders_addr()).await, bearer)
    }

    /// Logs in a demo user (password `<user>-demo`) and returns the access token.
    pub async fn login(&self, user: &str) -> String {
        self.auth()
            .await
            .login(LoginRequest {
                username: user.into(),
                password: format!("{user}-demo"),
            })
            .await
            .expect("demo login")
            .into_inner()
            .access_token
    }

    /// Products' client as a logged-in demo user.
    pub async fn products_as(&self, user: &str) -> ProductsClient {
        let token = self.login(user).await;
        self.products(Bearer::token(&token)).await
    }

    /// The catalogue as a logged-in demo user sees it, with the grant
    /// Products hands out beside it.
    pub async fn catalogue_of(&self, user: &str) -> ListProductsResponse {
        self.products_as(user)
            .await
            .list_products(ListProductsRequest::default())
            .await
            .expect("list")
            .into_inner()
    }

    /// The entitlement grant Products hands a logged-in demo user.
    pub async fn grant_of(&self, user: &str) -> String {
        self.catalogue_of(user).await.entitlement_token
    }

    /// The keys Auth publishes over gRPC.
    pub async fn jwks(&self) -> Jwks {
        self.auth()
            .await
            .get_jwks(GetJwksRequest {})
            .await
            .expect("jwks")
            .into_inner()
    }

    /// Orders' client as a logged-in demo user.
    pub async fn orders_as(&self, user: &str) -> OrdersClient {
        let token = self.login(user).await;
        self.orders(Bearer::token(&token)).await
    }

    /// Whether `token` is accepted by Products (ListProducts) and by Orders
    /// (ListOrders) right now.
    pub async fn accepted_by(&self, token: &str) -> (Result<(), Status>, Result<(), Status>) {
        let mut products = self.products(Bearer::token(token)).await;
        let mut orders = self.orders(Bearer::token(token)).await;
        let products = products.list_products(ListProductsRequest::default()).await;
        let orders = orders.list_orders(ListOrdersRequest::default()).await;
        (products.map(|_| ()), orders.map(|_| ()))
    }

    /// Waits (up to `deadline`) until Products and Orders both refuse `token`;
    /// their two refusals.
    pub async fn refusals_of(&self, token: &str, deadline: Duration) -> [Status; 2] {
        let (refusals, _) = eventually(deadline, || async {
            match self.accepted_by(token).await {
                (Err(products), Err(orders)) => Some([products, orders]),
                _ => None,
            }
        })
        .await;
        refusals
    }

    /// A minter holding Auth's real signing key (the one it signed with when
    /// the mesh started).
    pub fn auth_minter(&self) -> Minter {
        Minter::from_pem(&self.auth_key_pem)
    }

    /// A minter holding Products' real grant key (the one it signed with when
    /// the mesh started).
    pub fn products_minter(&self) -> Minter {
        Minter::from_pem(&self.products_key_pem)
    }

    /// Products' grant keys, read from its database beside the running
    /// Products.
    pub async fn products_keys(&self) -> Arc<tokenmesh_server::KeyRing> {
        let env = &self.inner().env;
        let store = tokenmesh_products::Store::open(&env.database_url("products.db"))
            .await
            .expect("opens Products' store");
        let config = tokenmesh_products::ProductsConfig::new(PRODUCTS_ISSUER);
        tokenmesh_products::open_keys(&self.args.auth.kek, env, &store, &config)
            .await
            .expect("opens Products' grant keys")
    }

    /// The clock every service of the mesh reads (the builder's, or the
    /// system's): a service started beside the mesh reads it too.
    pub fn clock(&self) -> tokenmesh_interceptor::SharedClock {
        self.inner().env.clock.clone()
    }

    /// The mesh's `/metrics` text, from its own registry (other meshes in this
    /// process are not counted).
    pub fn metrics(&self) -> String {
        self.inner().env.metrics.render()
    }

    /// Stops the services and starts them again on the same data dir (new ports),
    /// as a second `tokenmesh up --demo` would.
    pub async fn restart(mut self) -> Self {
        let mesh = self.mesh.take().expect("mesh running");
        let env = mesh.env.clone();
        mesh.shutdown().await.expect("clean shutdown");
        self.mesh = Some(
            tokenmesh::mesh::start(&self.args, env)
                .await
                .expect("mesh restarts"),
        );
        self.wait_for_replica().await;
        self
    }

    /// Stops every service, keeping the data dir for [`Mesh::try_start_again`].
    pub async fn stop(&mut self) {
        if let Some(mesh) = self.mesh.take() {
            mesh.shutdown().await.expect("clean shutdown");
        }
    }

    /// Starts the stopped services again on the same data dir and flags (new
    /// ports), as a second `tokenmesh up --demo` would; the error if they refuse.
    pub async fn try_start_again(&mut self) -> Result<(), tokenmesh_server::StartError> {
        assert!(self.mesh.is_none(), "stop the mesh first");
        let env = tokenmesh::mesh::environment(&self.args)?;
        self.mesh = Some(tokenmesh::mesh::start(&self.args, env).await?);
        self.wait_for_replica().await;
        Ok(())
    }

    /// Opens Auth as this mesh's command line plus `flags` would, but on
    /// `data_dir` (Auth's database stays this mesh's when it is PostgreSQL).
    pub async fn open_auth_on(
        &self,
        data_dir: &Path,
        flags: &[&str],
    ) -> Result<tokenmesh_auth::AuthService, tokenmesh_server::StartError> {
        let mut argv = self.argv.clone();
        let at = argv
            .iter()
            .position(|arg| arg == "--data-dir")
            .expect("--data-dir given");
        argv[at + 1] = data_dir.display().to_string();
        argv.extend(flags.iter().map(|flag| flag.to_string()));
        let args = parse_up_args(&argv).expect("valid up flags");
        let env = tokenmesh::mesh::environment(&args)?;
        let env = tokenmesh::mesh::auth_environment(&args, &env);
        tokenmesh_auth::open(&args.auth, &env, &[]).await
    }

    /// Stops Auth (gRPC and HTTP); Products and Orders keep running on the keys
    /// they hold.
    pub async fn stop_auth(&mut self) {
        let mesh = self.inner_mut();
        mesh.auth.stop().await.expect("auth stops");
        mesh.http.stop().await.expect("HTTP stops");
    }

    /// Restarts Auth alone, on the same addresses and data; Products and Orders
    /// keep running.
    pub async fn restart_auth(&mut self) {
        self.stop_auth().await;
        let args = self.args.clone();
        let mesh = self.inner_mut();
        let grpc = tokenmesh::mesh::listener(&args, &mesh.auth.addr.into(), &mesh.origins)
            .await
            .expect("binds Auth's address again");
        let http = tokenmesh_server::start::bind(&mesh.http.addr.into())
            .await
            .expect("binds the HTTP address again");
        mesh.auth = tokenmesh::mesh::start_auth(&args, &mesh.env, grpc, mesh.http.addr)
            .await
            .expect("auth restarts");
        mesh.http = tokenmesh::mesh::serve_http(http, &mesh.env, mesh.auth.http_routes.take())
            .expect("HTTP restarts");
        self.wait_for_replica().await;
    }

    /// Stops Orders; Auth and Products keep running.
    pub async fn stop_orders(&mut self) {
        let mesh = self.inner_mut();
        mesh.orders.stop().await.expect("orders stops");
    }

    /// Stops Products; Auth and Orders keep running.
    pub async fn stop_products(&mut self) {
        let mesh = self.inner_mut();
        mesh.products.stop().await.expect("products stops");
    }

    /// Starts Products again on the same address and data.
    pub async fn start_products(&mut self) {
        self.stop_products().await;
        let args = self.args.clone();
        let mesh = self.inner_mut();
        let listener = tokenmesh::mesh::listener(&args, &mesh.products.addr.into(), &mesh.origins)
            .await
            .expect("binds Products' address again");
        mesh.products = tokenmesh::mesh::start_products(&args, &mesh.env, mesh.auth.addr, listener)
            .await
            .expect("products starts");
        self.wait_for_replica().await;
    }

    /// Restarts Orders on the same address and data.
    pub async fn restart_orders(&mut self) {
        let args = self.args.clone();
        let mesh = self.inner_mut();
        mesh.orders.stop().await.expect("orders stops");
        let listener = tokenmesh::mesh::listener(&args, &mesh.orders.addr.into(), &mesh.origins)
            .await
            .expect("binds Orders' address again");
        let peers = (mesh.auth.addr, mesh.products.addr);
        mesh.orders = tokenmesh::mesh::start_orders(&args, &mesh.env, peers, listener)
            .await
            .expect("orders restarts");
        self.wait_for_replica().await;
    }

    /// Waits until Products and Orders are ready: Auth's revocations replayed
    /// and current (they refuse every token before), and Orders' entitlement
    /// replica caught up with Products when Orders follows the feed, so that
    /// which source decides is deterministic.
    pub async fn wait_for_replica(&self) {
        eventually(Duration::from_secs(30), || async {
            let mesh = self.inner();
            (mesh.products.is_ready() && mesh.orders.is_ready()).then_some(())
        })
        .await;
    }

    /// Opens Auth's store beside the running Auth, as `tokenmesh keys rotate`
    /// does.
    pub async fn auth_offline(&self) -> tokenmesh_auth::AuthService {
        let env = tokenmesh::mesh::auth_environment(&self.args, &self.inner().env);
        tokenmesh_auth::open(&self.args.auth, &env, &[])
            .await
            .expect("opens Auth's store")
    }

    /// The command line this mesh was started with (`tokenmesh up …`).
    pub fn up_args(&self) -> &UpArgs {
        &self.args
    }

    /// Where the services keep their state.
    pub fn storage(&self) -> Storage {
        match self.database {
            Some(_) => Storage::Postgres,
            None => Storage::Sqlite,
        }
    }

    /// The PostgreSQL database every service uses, if not SQLite.
    pub fn database_url(&self) -> Option<&str> {
        self.database.as_ref().map(|database| database.url.as_str())
    }

    /// Stops the services and waits for them, then drops their database.
    pub async fn shutdown(mut self) {
        if let Some(mesh) = self.mesh.take() {
            mesh.shutdown().await.expect("clean shutdown");
        }
        if let Some(database) = self.database.take() {
            database.drop_database().await;
        }
    }
}

/// Signs arbitrary headers and claims with an Ed25519 key, to forge the tokens
/// verifiers must refuse (and the valid ones they must accept).
#[derive(Debug)]
pub struct Minter {
    pem: String,
    kid: String,
}

impl Minter {
    /// The key in a PKCS#8 PEM file, with its real `kid`.
    pub fn from_pem_file(path: &std::path::Path) -> Self {
        let pem = std::fs::read_to_string(path).expect("key file");
        Self::from_pem(&pem)
    }

    /// The key in `pem`, with its real `kid`.
    pub fn from_pem(pem: &str) -> Self {
        let kid = tokenmesh_server::SigningKey::from_pem(pem)
            .expect("Ed25519 key")
            .kid()
            .to_owned();
        Self {
            pem: pem.to_owned(),
            kid,
        }
    }

    /// A fresh key nobody trusts.
    pub fn foreign() -> Self {
        let (_, pem) = tokenmesh_server::SigningKey::generate().expect("key");
        Self::from_pem(&pem)
    }

    /// This key's public JWK (JSON), for a key set.
    pub fn public_jwk(&self) -> Value {
        let key = tokenmesh_server::SigningKey::from_pem(&self.pem).expect("key");
        Value::Object(tokenmesh_server::jwk_json(key.public_jwk()))
    }

    /// The private key, PKCS#8 PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// This key's thumbprint `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Claims of a valid access token for `sub`, to alter before minting.
    pub fn access_claims(sub: &str) -> Value {
        let now = tokenmesh_server::now_unix();
        serde_json::json!({
            "iss": AUTH_ISSUER,
            "sub": sub,
            "aud": ["products", "orders"],
            "exp": now + 300,
            "iat": now,
            "nbf": now,
            "jti": tokenmesh_server::random_token(16),
            "scope": "",
            "ver": 1,
        })
    }

    /// Signs `claims` with header `typ` and `kid` (this key's unless given).
    pub fn mint(&self, typ: &str, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(typ.to_owned());
        header.kid = Some(kid.unwrap_or(&self.kid).to_owned());
        let key = EncodingKey::from_ed_pem(self.pem.as_bytes()).expect("Ed25519 PEM");
        jsonwebtoken::encode(&header, claims, &key).expect("signs")
    }

    /// An access token (`typ: at+jwt`) with `claims`.
    pub fn access_token(&self, claims: &Value) -> String {
        self.mint("at+jwt", None, claims)
    }

    /// Signs an arbitrary JOSE `header` over `claims` with this key (EdDSA).
    pub fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        let signing_input = format!("{}.{}", b64_json(header), b64_json(claims));
        let key = EncodingKey::from_ed_pem(self.pem.as_bytes()).expect("Ed25519 PEM");
        let signature =
            jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::EdDSA)
                .expect("signs");
        format!("{signing_input}.{signature}")
    }
}

/// Base64url (no padding) of `value`'s JSON.
pub fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
}

/// Base64url (no padding) of `bytes`.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The metadata value `Bearer <token>`.
pub fn bearer_value(token: &str) -> MetadataValue<tonic::metadata::Ascii> {
    format!("Bearer {token}").parse().expect("ascii")
}

pub use tokenmesh_server::testing::TestDatabase;

/// The JSON of a JWT's payload (not verified: for asserting what was issued).
pub fn claims_of(token: &str) -> Value {
    decode_segment(token, 1)
}

/// The JSON of a JWT's JOSE header.
pub fn header_of(token: &str) -> Value {
    decode_segment(token, 0)
}

fn decode_segment(token: &str, index: usize) -> Value {
    let segment = token.split('.').nth(index).expect("JWS segment");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).expect("base64url")).expect("JSON")
}

/// The secret of a demo service client, as the mesh generated it.
pub fn client_secret(mesh: &Mesh, client: &str) -> String {
    std::fs::read_to_string(mesh.data_dir().join(format!("{client}-client-secret")))
        .expect("client secret file")
        .trim()
        .to_owned()
}

/// Polls `check` until it returns `Some`, failing after `deadline`; returns the
/// value and how long it took. For effects that propagate (revocations, keys).
pub async fn eventually<T, F, Fut>(deadline: Duration, check: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_or(deadline, String::new, check).await
}

/// [`eventually`], whose failure also shows `context()` (what it waited for, a
/// child's log): the one poll-with-deadline of the test crate.
pub async fn eventually_or<T, F, Fut>(
    deadline: Duration,
    context: impl Fn() -> String,
    mut check: F,
) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return (value, start.elapsed());
        }
        assert!(
            start.elapsed() < deadline,
            "not within {deadline:?}{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A PlaceOrder request for `quantity` of `product_id`, idempotent on
/// `request_id`, carrying `grant` (empty: none).
pub fn order(product_id: &str, quantity: i32, request_id: &str, grant: &str) -> PlaceOrderRequest {
    PlaceOrderRequest {
        product_id: product_id.into(),
        quantity,
        request_id: request_id.into(),
        entitlement_token: grant.into(),
    }
}

/// A plain HTTP/1.1 GET on `addr`: the response head and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    http_exchange(addr, &request).await
}

/// Sends `request` (a whole HTTP/1.1 request, headers as an attacker may
/// choose them, with `Connection: close`) to `addr`: the response head and body.
pub async fn http_exchange(addr: SocketAddr, request: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    (head.to_owned(), body.to_owned())
}

pub mod bench;
pub mod calls;
mod child;
pub mod cluster;
pub mod files;
pub mod grpc_web;
pub mod haproxy;
pub mod pki;
pub mod relay;
mod replica;
pub mod replica_process;
pub mod up_process;
pub use child::{CHILD_DEADLINE, code_and_text, output_within_deadline, tool_on_path};
pub use replica::Replica;

/// Runs each listed test — an `async fn(MeshBuilder)` in the calling module —
/// with [`Mesh::builder`]: on SQLite in the `mesh` binary and on PostgreSQL in
/// `mesh_postgres`, like every other mesh test. (It predates that; a plain
/// `#[tokio::test]` calling [`Mesh::builder`] does the same.)
#[macro_export]
macro_rules! on_sqlite_and_postgres {
    ($($name:ident),* $(,)?) => {
        mod on_this_binarys_store {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::Mesh::builder()).await;
                }
            )*
        }
    };
}
