//! The whole mesh in one process (`tokenmesh up`): each service started by its
//! own crate on its own listener, talking to the others only over gRPC — even
//! here — so the same wiring runs split across machines.

use std::net::SocketAddr;

use tokenmesh_interceptor::system_clock;
use tokenmesh_server::{
    Addr, ClientCredentials, Environment, Listener, Origin, Peer, Running, ServeError,
    ServerLimits, StartError,
    args::{StorageArgs, VerifyArgs},
    metrics::Registry,
    start::{bind, local_addr},
};
use tokio::net::TcpListener;
use tonic::transport::ClientTlsConfig;

use crate::{cli::UpArgs, console::ConsoleConfig};

/// The three services and the HTTP listener, running in this process.
#[derive(Debug)]
pub struct Mesh {
    /// What every service was started with (tests restart services with it).
    pub env: Environment,
    /// Auth.
    pub auth: Running,
    /// Products.
    pub products: Running,
    /// Orders.
    pub orders: Running,
    /// The console, Auth's JWKS and every service's `/metrics`.
    pub http: Running,
    /// The browser origins the three services answer (tests restart services
    /// with them).
    pub origins: Vec<Origin>,
}

/// The environment `up` gives its services: the data dir, the database (each
/// service in its schema), Auth's issuer, peer TLS and limits.
pub fn environment(args: &UpArgs) -> Result<Environment, StartError> {
    Ok(process_environment(
        &StorageArgs {
            data_dir: args.data_dir.clone(),
            database_url: args.database_url.clone(),
        },
        args.demo,
        &args.issuer.auth_issuer,
        args.tls.client(&args.peer_tls)?,
        args.limits.limits(),
    ))
}

/// The environment of the services of one process (`up`, or one `serve`):
/// a fresh metrics registry and the system clock.
pub fn process_environment(
    storage: &StorageArgs,
    demo: bool,
    auth_issuer: &str,
    peer_tls: Option<ClientTlsConfig>,
    limits: ServerLimits,
) -> Environment {
    Environment {
        data_dir: storage.data_dir.clone(),
        database_url: storage.database_url.clone(),
        demo,
        auth_issuer: auth_issuer.to_owned(),
        peer_tls,
        metrics: Registry::new(),
        clock: system_clock(),
        limits,
    }
}

/// The service clients Auth registers: those Products and Orders declare, with
/// their secrets.
pub fn service_clients(
    products: &tokenmesh_products::ClientSecretArgs,
    orders: &tokenmesh_orders::ClientSecretArgs,
    env: &Environment,
) -> Result<Vec<ClientCredentials>, StartError> {
    Ok(vec![products.credentials(env)?, orders.credentials(env)?])
}

/// Binds `addr` for a gRPC server, with TLS when `up` serves it, answering
/// pages from `origins`.
pub async fn listener(
    args: &UpArgs,
    addr: &Addr,
    origins: &[Origin],
) -> Result<Listener, StartError> {
    Ok(Listener::new(bind(addr).await?, args.tls.server()?).with_origins(origins.iter().cloned()))
}

/// The browser origins `up` lets call its services: those flagged, and with
/// `--demo` the console's own, served on `http`.
pub fn origins(args: &UpArgs, http: SocketAddr) -> Vec<Origin> {
    let mut origins = args.cors.cors_allowed_origins.clone();
    if args.demo {
        origins.push(Origin::http(http));
    }
    origins
}

/// Auth's environment: `env` with Auth's own database URL, if given.
pub fn auth_environment(args: &UpArgs, env: &Environment) -> Environment {
    Environment {
        database_url: args
            .auth_database_url
            .clone()
            .or_else(|| env.database_url.clone()),
        ..env.clone()
    }
}

/// Starts Auth on `listener` with `up`'s settings; its HTTP routes are served
/// on `http_addr`.
pub async fn start_auth(
    args: &UpArgs,
    env: &Environment,
    listener: Listener,
    http_addr: SocketAddr,
) -> Result<Running, StartError> {
    let clients = service_clients(&args.products_secret, &args.orders_secret, env)?;
    let env = auth_environment(args, env);
    tokenmesh_auth::start(&args.auth, &env, &clients, listener, Some(http_addr)).await
}

/// Starts Products on `listener`, calling Auth at `auth`.
pub async fn start_products(
    args: &UpArgs,
    env: &Environment,
    auth: SocketAddr,
    listener: Listener,
) -> Result<Running, StartError> {
    let peers = tokenmesh_products::Peers {
        auth: peer(args, auth),
        verify: verify_args(args),
    };
    // One process, one data dir: Products shares Auth's key-encryption key.
    tokenmesh_products::start(
        &args.products,
        &args.auth.kek,
        &args.products_secret,
        &peers,
        env,
        listener,
    )
    .await
}

/// Starts Orders on `listener`, calling Auth at `auth` and Products at `products`.
pub async fn start_orders(
    args: &UpArgs,
    env: &Environment,
    (auth, products): (SocketAddr, SocketAddr),
    listener: Listener,
) -> Result<Running, StartError> {
    let peers = tokenmesh_orders::Peers {
        auth: peer(args, auth),
        products: peer(args, products),
        verify: verify_args(args),
    };
    tokenmesh_orders::start(&args.orders, &args.orders_secret, &peers, env, listener).await
}

/// How Products and Orders verify in `up`: as flagged, and trusting a quiet
/// feed for no longer than Auth's access-token lifetime unless told otherwise.
fn verify_args(args: &UpArgs) -> VerifyArgs {
    let mut verify = args.verify.clone();
    verify
        .max_feed_silence
        .get_or_insert(args.auth.access_token_ttl);
    verify
}

/// A peer in this process: over TLS when `up` serves TLS.
fn peer(args: &UpArgs, addr: SocketAddr) -> Peer {
    Peer::from(Addr {
        tls: args.tls.tls_cert.is_some(),
        ..Addr::from(addr)
    })
}

/// Serves `/metrics` of `env`'s registry, and `routes` (Auth's JWKS, the
/// console), on `listener`.
pub fn serve_http(
    listener: TcpListener,
    env: &Environment,
    routes: Option<axum::Router>,
) -> Result<Running, StartError> {
    let addr = local_addr(&listener)?;
    let registry = env.metrics.clone();
    Ok(Running::spawn(addr, move |shutdown| async move {
        tokenmesh_server::metrics::serve_http(listener, &registry, routes, shutdown)
            .await
            .map_err(ServeError::Http)
    }))
}

/// Starts Auth, Products and Orders on `args`' addresses (port 0 picks a free
/// one), with `env` (see [`environment`]).
pub async fn start(args: &UpArgs, env: Environment) -> Result<Mesh, StartError> {
    env.prepare_data_dir()?;
    // First: the console's origin is the HTTP listener's address.
    let http_listener = bind(&args.http_addr).await?;
    let origins = origins(args, local_addr(&http_listener)?);
    let auth_listener = listener(args, &args.auth_addr, &origins).await?;
    let products_listener = listener(args, &args.products_addr, &origins).await?;
    let orders_listener = listener(args, &args.orders_addr, &origins).await?;
    let console = ConsoleConfig::new(
        (
            auth_listener.local_addr()?,
            products_listener.local_addr()?,
            orders_listener.local_addr()?,
        ),
        auth_listener.is_tls(),
    );
    let mut auth = start_auth(args, &env, auth_listener, local_addr(&http_listener)?).await?;
    let routes = auth.http_routes.take().unwrap_or_default();
    let http = serve_http(
        http_listener,
        &env,
        Some(routes.merge(crate::console::router(console))),
    )?;
    let products = start_products(args, &env, auth.addr, products_listener).await?;
    let orders = start_orders(args, &env, (auth.addr, products.addr), orders_listener).await?;
    Ok(Mesh {
        env,
        auth,
        products,
        orders,
        http,
        origins,
    })
}

impl Mesh {
    /// Stops accepting, lets in-flight requests finish, and waits for every server.
    pub async fn shutdown(mut self) -> Result<(), StartError> {
        for server in [
            &mut self.orders,
            &mut self.products,
            &mut self.auth,
            &mut self.http,
        ] {
            server.stop().await?;
        }
        Ok(())
    }

    /// Runs until a server fails.
    pub async fn wait_for_failure(&mut self) -> Result<(), StartError> {
        tokio::select! {
            result = self.auth.finished() => result,
            result = self.products.finished() => result,
            result = self.orders.finished() => result,
            result = self.http.finished() => result,
        }
    }
}
