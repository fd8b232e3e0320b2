//! Starting services: each one on its own listener, talking to the others only
//! over gRPC — even inside one process — so the same wiring runs split across
//! machines.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokenmesh_auth::{AuthConfig, AuthService, AuthServiceError, ThrottleConfig};
use tokenmesh_interceptor::{KeyStore, RevocationSet};
use tokenmesh_orders::{ChainConfig, OrdersConfig, OrdersDeps, OrdersError, OrdersService};
use tokenmesh_products::{ProductsConfig, ProductsError, ProductsService};
use tokenmesh_server::{
    GrpcJwksSource, Listener, ServeError, ServiceTokens, SigningKey, SigningKeyError, TlsError,
    TokenExchanger, db::sqlite_url, follow_revocations, random_token,
};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, ServerTlsConfig};

use crate::cli::{AuthArgs, EntitlementArgs, TlsArgs, UpArgs};

/// Why the mesh or a service could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// Binding a port, reading a secret or creating the data dir.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A signing key could not be loaded or created.
    #[error(transparent)]
    SigningKey(#[from] SigningKeyError),
    /// Auth's store failed to open or seed.
    #[error("auth: {0}")]
    Auth(#[from] AuthServiceError),
    /// Products' store failed to open or seed.
    #[error("products: {0}")]
    Products(#[from] ProductsError),
    /// Orders' store failed to open.
    #[error("orders: {0}")]
    Orders(#[from] OrdersError),
    /// A TLS certificate, key or CA could not be used.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// A peer URL is not a valid endpoint.
    #[error("endpoint {url}: {source}")]
    Endpoint {
        /// The URL.
        url: String,
        /// Why it is invalid.
        source: tonic::transport::Error,
    },
    /// A server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// A server task panicked.
    #[error("server task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// One running server and the switch that stops it.
#[derive(Debug)]
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl Running {
    fn spawn<F>(serve: impl FnOnce(watch::Receiver<bool>) -> F) -> Self
    where
        F: Future<Output = Result<(), ServeError>> + Send + 'static,
    {
        let (stop, stopped) = watch::channel(false);
        Self {
            stop,
            task: tokio::spawn(serve(stopped)),
        }
    }

    async fn stop(self) -> Result<(), MeshError> {
        self.stop.send_replace(true);
        Ok(self.task.await??)
    }
}

/// The three services running in this process.
#[derive(Debug)]
pub struct Mesh {
    /// Where Auth listens.
    pub auth_addr: SocketAddr,
    /// Where Products listens.
    pub products_addr: SocketAddr,
    /// Where Orders listens.
    pub orders_addr: SocketAddr,
    /// Where Auth serves its JWKS, and every service its `/metrics`, over HTTP.
    pub http_addr: SocketAddr,
    auth: Vec<Running>,
    products: Option<Running>,
    orders: Option<Running>,
    /// A handle on the running Orders, for its readiness.
    orders_service: Option<OrdersService>,
}

impl Mesh {
    /// Stops accepting, lets in-flight requests finish, and waits for all servers.
    pub async fn shutdown(self) -> Result<(), MeshError> {
        let servers = self
            .orders
            .into_iter()
            .chain(self.products)
            .chain(self.auth);
        for server in servers {
            server.stop().await?;
        }
        Ok(())
    }

    /// Stops Auth, gRPC and HTTP (Products and Orders keep running on the keys
    /// they hold).
    pub async fn stop_auth(&mut self) -> Result<(), MeshError> {
        for server in self.auth.drain(..) {
            server.stop().await?;
        }
        Ok(())
    }

    /// Stops Products (Auth and Orders keep running).
    pub async fn stop_products(&mut self) -> Result<(), MeshError> {
        if let Some(products) = self.products.take() {
            products.stop().await?;
        }
        Ok(())
    }

    /// Starts Products again on its address and data (after [`Mesh::stop_products`]).
    pub async fn start_products(&mut self, args: &UpArgs) -> Result<(), MeshError> {
        self.stop_products().await?;
        let listener = bind(self.products_addr).await?;
        let auth_url = format!("{}://{}", scheme(args), self.auth_addr);
        self.products = Some(start_products(args, listener, &auth_url).await?);
        Ok(())
    }

    /// Stops Orders and starts it again on its address and data.
    pub async fn restart_orders(&mut self, args: &UpArgs) -> Result<(), MeshError> {
        if let Some(orders) = self.orders.take() {
            orders.stop().await?;
        }
        let listener = bind(self.orders_addr).await?;
        let (auth_url, products_url) = (
            format!("{}://{}", scheme(args), self.auth_addr),
            format!("{}://{}", scheme(args), self.products_addr),
        );
        let (orders, service) = start_orders(args, listener, &auth_url, &products_url).await?;
        self.orders = Some(orders);
        self.orders_service = Some(service);
        Ok(())
    }

    /// Whether Orders' entitlement replica has caught up with Products' feed.
    pub fn orders_replica_caught_up(&self) -> bool {
        self.orders_service
            .as_ref()
            .is_some_and(OrdersService::replica_caught_up)
    }

    /// Stops Auth (gRPC and HTTP) and starts it again on the same addresses and
    /// data, while Products and Orders keep running.
    pub async fn restart_auth(&mut self, args: &UpArgs) -> Result<(), MeshError> {
        self.stop_auth().await?;
        let auth_listener = bind(self.auth_addr).await?;
        let http_listener = bind(self.http_addr).await?;
        self.auth = start_auth(args, auth_listener, http_listener).await?;
        Ok(())
    }

    /// Runs until a server fails.
    pub async fn wait_for_failure(&mut self) -> Result<(), MeshError> {
        let tasks = self
            .auth
            .iter_mut()
            .chain(self.products.iter_mut())
            .chain(self.orders.iter_mut())
            .map(|s| &mut s.task);
        let (result, _, _) = futures::future::select_all(tasks).await;
        Ok(result??)
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, MeshError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| MeshError::Io {
            context: format!("binding {addr}"),
            source,
        })
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, MeshError> {
    listener.local_addr().map_err(|source| MeshError::Io {
        context: "reading a bound address".into(),
        source,
    })
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    // A dropped sender also means stop.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Starts Auth, Products and Orders on `args`' addresses (port 0 picks a free one).
pub async fn start(args: &UpArgs) -> Result<Mesh, MeshError> {
    std::fs::create_dir_all(&args.data_dir).map_err(|source| MeshError::Io {
        context: format!("creating {}", args.data_dir.display()),
        source,
    })?;
    let auth_listener = bind(args.auth_addr).await?;
    let products_listener = bind(args.products_addr).await?;
    let orders_listener = bind(args.orders_addr).await?;
    let http_listener = bind(args.http_addr).await?;
    let auth_addr = local_addr(&auth_listener)?;
    let products_addr = local_addr(&products_listener)?;
    let orders_addr = local_addr(&orders_listener)?;
    let http_addr = local_addr(&http_listener)?;
    let auth_url = format!("{}://{auth_addr}", scheme(args));
    let products_url = format!("{}://{products_addr}", scheme(args));

    let auth = start_auth(args, auth_listener, http_listener).await?;
    let products = start_products(args, products_listener, &auth_url).await?;
    let (orders, orders_service) =
        start_orders(args, orders_listener, &auth_url, &products_url).await?;
    Ok(Mesh {
        auth_addr,
        products_addr,
        orders_addr,
        http_addr,
        auth,
        products: Some(products),
        orders: Some(orders),
        orders_service: Some(orders_service),
    })
}

/// `https` when the mesh serves TLS: its services then call each other over TLS.
fn scheme(args: &UpArgs) -> &'static str {
    if args.tls.tls_cert.is_some() {
        "https"
    } else {
        "http"
    }
}

async fn start_products(
    args: &UpArgs,
    listener: TcpListener,
    auth_url: &str,
) -> Result<Running, MeshError> {
    let listener = Listener::new(listener, server_tls(&args.tls)?);
    let peer_tls = client_tls(&args.tls)?;
    let products = products_service(
        &args.data_dir,
        None,
        &args.auth,
        &args.entitlements,
        args.demo,
    )
    .await?;
    let access = AccessTokens::follow(
        auth_url,
        &args.data_dir,
        &args.auth,
        "products",
        peer_tls.as_ref(),
    )?;
    Ok(Running::spawn(|stop| {
        products.serve(listener, access.keys, access.revocations, stopped(stop))
    }))
}

async fn start_orders(
    args: &UpArgs,
    listener: TcpListener,
    auth_url: &str,
    products_url: &str,
) -> Result<(Running, OrdersService), MeshError> {
    let listener = Listener::new(listener, server_tls(&args.tls)?);
    let peer_tls = client_tls(&args.tls)?;
    let orders = orders_service(
        &args.data_dir,
        None,
        &args.auth,
        &args.entitlements,
        auth_url,
        products_url,
        peer_tls.as_ref(),
    )
    .await?;
    let access = AccessTokens::follow(
        auth_url,
        &args.data_dir,
        &args.auth,
        "orders",
        peer_tls.as_ref(),
    )?;
    let handle = orders.clone();
    let running = Running::spawn(|stop| {
        orders.serve(listener, access.keys, access.revocations, stopped(stop))
    });
    Ok((running, handle))
}

async fn start_auth(
    args: &UpArgs,
    grpc: TcpListener,
    http: TcpListener,
) -> Result<Vec<Running>, MeshError> {
    let auth = auth_service(
        &args.data_dir,
        args.auth_database_url.as_deref(),
        &args.auth,
        args.demo,
    )
    .await?;
    let grpc = Listener::new(grpc, server_tls(&args.tls)?);
    let http_auth = auth.clone();
    Ok(vec![
        // Auth's JWKS and every service's /metrics share the HTTP listener.
        Running::spawn(|stop| async move {
            tokenmesh_server::metrics::serve_http(
                http,
                Some(http_auth.http_router()),
                stopped(stop),
            )
            .await
            .map_err(ServeError::Http)
        }),
        Running::spawn(|stop| auth.serve(grpc, stopped(stop))),
    ])
}

fn database_url(data_dir: &Path, database_url: Option<&str>, file: &str) -> String {
    database_url.map_or_else(|| sqlite_url(&data_dir.join(file)), str::to_owned)
}

/// The server side of `--tls-cert`, `--tls-key` and `--tls-client-ca`; `None`
/// without a certificate.
pub fn server_tls(args: &TlsArgs) -> Result<Option<ServerTlsConfig>, MeshError> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    Ok(Some(tokenmesh_server::tls::server_tls(
        cert,
        key,
        args.tls_client_ca.as_deref(),
    )?))
}

/// How a service calls its peers: trusting `--tls-ca`, presenting `--tls-cert`
/// when it has one; `None` without a CA.
pub fn client_tls(args: &TlsArgs) -> Result<Option<ClientTlsConfig>, MeshError> {
    let Some(ca) = &args.tls_ca else {
        return Ok(None);
    };
    let identity = args.tls_cert.as_deref().zip(args.tls_key.as_deref());
    Ok(Some(tokenmesh_server::tls::client_tls(ca, identity)?))
}

/// A channel to `url`, over TLS with `tls` when the URL is `https:`.
fn channel(url: &str, tls: Option<&ClientTlsConfig>) -> Result<Channel, MeshError> {
    let invalid = |source| MeshError::Endpoint {
        url: url.to_owned(),
        source,
    };
    let mut endpoint = Endpoint::from_shared(url.to_owned()).map_err(invalid)?;
    if let Some(tls) = tls.filter(|_| url.starts_with("https:")) {
        endpoint = endpoint.tls_config(tls.clone()).map_err(invalid)?;
    }
    // Lazy: a peer that starts later (or restarts) is reached on first use.
    Ok(endpoint
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy())
}

/// The secret of service client `client`: given, or generated once into the
/// data dir (mode 0600) so that Auth and the service agree across restarts.
pub fn client_secret(data_dir: &Path, args: &AuthArgs, client: &str) -> Result<String, MeshError> {
    let given = match client {
        "products" => args.products_client_secret.clone(),
        "orders" => args.orders_client_secret.clone(),
        _ => None,
    };
    if let Some(secret) = given {
        return Ok(secret);
    }
    let path = data_dir.join(format!("{client}-client-secret"));
    let io = |source| MeshError::Io {
        context: format!("secret file {}", path.display()),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(secret) => Ok(secret.trim().to_owned()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(io)?;
            let secret = random_token(32);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path).map_err(io)?;
            std::io::Write::write_all(&mut file, secret.as_bytes()).map_err(io)?;
            Ok(secret)
        }
        Err(error) => Err(io(error)),
    }
}

/// Auth, with its key from `args` or the data dir, its store, and the service
/// clients Products and Orders use.
pub async fn auth_service(
    data_dir: &Path,
    database_url_override: Option<&str>,
    args: &AuthArgs,
    demo: bool,
) -> Result<AuthService, MeshError> {
    let key_path: PathBuf = args
        .auth_signing_key
        .clone()
        .unwrap_or_else(|| data_dir.join("auth-signing-key.pem"));
    let key = if args.auth_signing_key.is_some() {
        SigningKey::load(&key_path)?
    } else {
        SigningKey::load_or_generate_with(&key_path, args.signing_alg)?
    };
    let store =
        tokenmesh_auth::Store::open(&database_url(data_dir, database_url_override, "auth.db"))
            .await?;
    if demo {
        tokenmesh_auth::seed_demo(&store).await?;
    }
    let mut config = AuthConfig::new(&args.auth_issuer);
    config.access_token_ttl = args.access_token_ttl;
    config.signing_algorithm = args.signing_alg;
    config.retired_key_grace = args.retired_key_grace;
    config.throttle = ThrottleConfig {
        free_failures: args.login_throttle_failures,
        base_delay: args.login_throttle_delay,
        ..ThrottleConfig::default()
    };
    let auth = AuthService::open(store, key, config).await?;
    let revocations = tokenmesh_auth::REVOCATIONS_SCOPE;
    let exchange = tokenmesh_auth::EXCHANGE_SCOPE;
    auth.register_service_client(
        "products",
        &client_secret(data_dir, args, "products")?,
        revocations,
        "auth",
    )
    .await?;
    let watch = tokenmesh_products::ENTITLEMENTS_WATCH_SCOPE;
    auth.register_service_client(
        "orders",
        &client_secret(data_dir, args, "orders")?,
        &format!("{revocations} {exchange} {watch}"),
        "auth products",
    )
    .await?;
    Ok(auth)
}

/// Products, with its grant key from the data dir, and its store.
pub async fn products_service(
    data_dir: &Path,
    database_url_override: Option<&str>,
    args: &AuthArgs,
    entitlements: &EntitlementArgs,
    demo: bool,
) -> Result<ProductsService, MeshError> {
    let key = SigningKey::load_or_generate(&data_dir.join("products-signing-key.pem"))?;
    let store = tokenmesh_products::Store::open(&database_url(
        data_dir,
        database_url_override,
        "products.db",
    ))
    .await?;
    if demo {
        tokenmesh_products::seed_demo(&store).await?;
    }
    let mut config = ProductsConfig::new(&args.products_issuer, &args.auth_issuer);
    config.grant_version = entitlements.grant_version;
    config.grant_max_bytes = entitlements.grant_max_bytes;
    Ok(ProductsService::new(store, Arc::new(key), config))
}

/// Orders, calling Products at `products_url` with tokens exchanged at Auth
/// (both over TLS with `tls`).
pub async fn orders_service(
    data_dir: &Path,
    database_url_override: Option<&str>,
    args: &AuthArgs,
    entitlements: &EntitlementArgs,
    auth_url: &str,
    products_url: &str,
    tls: Option<&ClientTlsConfig>,
) -> Result<OrdersService, MeshError> {
    let store =
        tokenmesh_orders::Store::open(&database_url(data_dir, database_url_override, "orders.db"))
            .await?;
    let products = channel(products_url, tls)?;
    let grant_keys = KeyStore::remote(GrpcJwksSource::products(products.clone()));
    grant_keys.spawn_refresher(args.key_refresh_interval);
    let auth = channel(auth_url, tls)?;
    let secret = client_secret(data_dir, args, "orders")?;
    let actor = Arc::new(ServiceTokens::new(auth.clone(), "orders", &secret, "auth"));
    let products_credentials = Arc::new(ServiceTokens::new(
        auth.clone(),
        "orders",
        &secret,
        "products",
    ));
    let deps = OrdersDeps {
        products,
        exchanger: Arc::new(TokenExchanger::new(auth, actor, "products")),
        grant_keys,
        products_credentials,
    };
    let config = OrdersConfig {
        access_token_issuer: args.auth_issuer.clone(),
        grant_issuer: args.products_issuer.clone(),
        chain: ChainConfig {
            sources: entitlements.entitlement_sources.clone(),
            grant_versions: entitlements.grant_versions.clone(),
            rpc_cache_ttl: entitlements.rpc_cache_ttl,
        },
    };
    Ok(OrdersService::new(store, deps, config))
}

/// What a service needs to verify access tokens: Auth's keys, kept fresh, and
/// Auth's revocations, followed live.
#[derive(Debug)]
pub struct AccessTokens {
    /// Auth's keys.
    pub keys: Arc<KeyStore>,
    /// Revoked tokens and subjects.
    pub revocations: Arc<RevocationSet>,
}

impl AccessTokens {
    /// Fetches Auth's keys from `auth_url` (over TLS with `tls`) and follows its
    /// revocation feed as service client `client`.
    pub fn follow(
        auth_url: &str,
        data_dir: &Path,
        args: &AuthArgs,
        client: &str,
        tls: Option<&ClientTlsConfig>,
    ) -> Result<Self, MeshError> {
        let auth = channel(auth_url, tls)?;
        let keys = KeyStore::remote(GrpcJwksSource::auth(auth.clone()));
        keys.spawn_refresher(args.key_refresh_interval);
        let revocations = Arc::new(RevocationSet::new());
        let credentials = Arc::new(ServiceTokens::new(
            auth.clone(),
            client,
            &client_secret(data_dir, args, client)?,
            "auth",
        ));
        follow_revocations(auth, credentials, &revocations);
        Ok(Self { keys, revocations })
    }
}
