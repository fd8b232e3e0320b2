//! Starting services: each one on its own listener, talking to the others only
//! over gRPC — even inside one process — so the same wiring runs split across
//! machines.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokenmesh_auth::{AuthConfig, AuthService, AuthServiceError};
use tokenmesh_interceptor::KeyStore;
use tokenmesh_orders::{OrdersConfig, OrdersError, OrdersService};
use tokenmesh_products::{ProductsConfig, ProductsError, ProductsService};
use tokenmesh_server::{GrpcJwksSource, ServeError, SigningKey, SigningKeyError, db::sqlite_url};
use tokio::{net::TcpListener, sync::watch, task::JoinSet};
use tonic::transport::{Channel, Endpoint};

use crate::cli::{AuthArgs, UpArgs};

/// How often verifiers refetch key sets when nothing forces them to.
const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// Why the mesh or a service could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// Binding a port or creating the data dir.
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

/// The three services running in this process.
#[derive(Debug)]
pub struct Mesh {
    /// Where Auth listens.
    pub auth_addr: SocketAddr,
    /// Where Products listens.
    pub products_addr: SocketAddr,
    /// Where Orders listens.
    pub orders_addr: SocketAddr,
    /// Where Auth serves its JWKS over HTTP.
    pub http_addr: SocketAddr,
    stop: watch::Sender<bool>,
    servers: JoinSet<Result<(), ServeError>>,
}

impl Mesh {
    /// Stops accepting, lets in-flight requests finish, and waits for all servers.
    pub async fn shutdown(mut self) -> Result<(), MeshError> {
        self.stop.send_replace(true);
        while let Some(result) = self.servers.join_next().await {
            result??;
        }
        Ok(())
    }

    /// Runs until a server fails (or, with `shutdown`, until asked to stop).
    pub async fn wait_for_failure(&mut self) -> Result<(), MeshError> {
        match self.servers.join_next().await {
            Some(result) => Ok(result??),
            None => Ok(()),
        }
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
    let addr = |listener: &TcpListener| {
        listener.local_addr().map_err(|source| MeshError::Io {
            context: "reading a bound address".into(),
            source,
        })
    };
    let (auth_addr, products_addr, orders_addr, http_addr) = (
        addr(&auth_listener)?,
        addr(&products_listener)?,
        addr(&orders_listener)?,
        addr(&http_listener)?,
    );
    let auth_url = format!("http://{auth_addr}");
    let products_url = format!("http://{products_addr}");

    let auth = auth_service(&args.data_dir, None, &args.auth, args.demo).await?;
    let products = products_service(&args.data_dir, None, &args.auth, args.demo).await?;
    let orders = orders_service(&args.data_dir, None, &args.auth, &products_url).await?;
    let products_keys = access_token_keys(&auth_url)?;
    let orders_keys = access_token_keys(&auth_url)?;

    let (stop, stop_rx) = watch::channel(false);
    let mut servers = JoinSet::new();
    let http_auth = auth.clone();
    let http_stop = stopped(stop_rx.clone());
    servers.spawn(async move {
        http_auth
            .serve_http(http_listener, http_stop)
            .await
            .map_err(ServeError::Http)
    });
    servers.spawn(auth.serve(auth_listener, stopped(stop_rx.clone())));
    servers.spawn(products.serve(products_listener, products_keys, stopped(stop_rx.clone())));
    servers.spawn(orders.serve(orders_listener, orders_keys, stopped(stop_rx)));
    Ok(Mesh {
        auth_addr,
        products_addr,
        orders_addr,
        http_addr,
        stop,
        servers,
    })
}

fn database_url(data_dir: &Path, database_url: Option<&str>, file: &str) -> String {
    database_url.map_or_else(|| sqlite_url(&data_dir.join(file)), str::to_owned)
}

fn channel(url: &str) -> Result<Channel, MeshError> {
    // Lazy: a peer that starts later (or restarts) is reached on first use.
    Ok(Endpoint::from_shared(url.to_owned())
        .map_err(|source| MeshError::Endpoint {
            url: url.to_owned(),
            source,
        })?
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy())
}

/// Auth, with its key from `args` or the data dir, and its store.
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
        SigningKey::load_or_generate(&key_path)?
    };
    let store =
        tokenmesh_auth::Store::open(&database_url(data_dir, database_url_override, "auth.db"))
            .await?;
    if demo {
        tokenmesh_auth::seed_demo(&store).await?;
    }
    let mut config = AuthConfig::new(&args.auth_issuer);
    config.access_token_ttl = args.access_token_ttl;
    Ok(AuthService::new(store, Arc::new(key), config))
}

/// Products, with its grant key from the data dir, and its store.
pub async fn products_service(
    data_dir: &Path,
    database_url_override: Option<&str>,
    args: &AuthArgs,
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
    let config = ProductsConfig::new(&args.products_issuer, &args.auth_issuer);
    Ok(ProductsService::new(store, Arc::new(key), config))
}

/// Orders, calling Products at `products_url`.
pub async fn orders_service(
    data_dir: &Path,
    database_url_override: Option<&str>,
    args: &AuthArgs,
    products_url: &str,
) -> Result<OrdersService, MeshError> {
    let store =
        tokenmesh_orders::Store::open(&database_url(data_dir, database_url_override, "orders.db"))
            .await?;
    let products = channel(products_url)?;
    let grant_keys = KeyStore::remote(GrpcJwksSource::products(products.clone()));
    grant_keys.spawn_refresher(KEY_REFRESH_INTERVAL);
    let config = OrdersConfig {
        access_token_issuer: args.auth_issuer.clone(),
        grant_issuer: args.products_issuer.clone(),
    };
    Ok(OrdersService::new(store, products, grant_keys, config))
}

/// Auth's access-token keys, fetched from `auth_url` with `GetJwks` and kept fresh.
pub fn access_token_keys(auth_url: &str) -> Result<Arc<KeyStore>, MeshError> {
    let keys = KeyStore::remote(GrpcJwksSource::auth(channel(auth_url)?));
    keys.spawn_refresher(KEY_REFRESH_INTERVAL);
    Ok(keys)
}
