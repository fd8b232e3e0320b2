//! Orders' own flags, the service client it needs at Auth, and its start-up,
//! the same for `tokenmesh up` and `tokenmesh serve orders`.

use std::{sync::Arc, time::Duration};

use tokenmesh_interceptor::KeyStore;
use tokenmesh_proto::names::{audience, scope};
use tokenmesh_server::{
    AccessTokens, Delegation, Environment, Gate, GrpcJwksSource, Listener, Peer, Running,
    ServiceClient, ServiceTokens, StartError, TokenExchanger, args::VerifyArgs,
};

use crate::{ChainConfig, OrdersConfig, OrdersDeps, OrdersService, SourceKind, Store, StoreError};

/// What Orders needs at Auth: follow revocations, exchange users' tokens for
/// Products (to ask CheckEntitlement about the user, which needs none of the
/// user's scopes), and follow Products' entitlement feed.
pub const SERVICE_CLIENT: ServiceClient = ServiceClient {
    id: audience::ORDERS,
    scopes: &[
        scope::REVOCATIONS_READ,
        scope::TOKEN_EXCHANGE,
        scope::ENTITLEMENTS_WATCH,
    ],
    audiences: &[audience::AUTH, audience::PRODUCTS],
    delegates: &[Delegation {
        audience: audience::PRODUCTS,
        scopes: &[],
    }],
};

/// The flags only Orders reads.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Orders")]
#[group(id = "orders")]
pub struct Args {
    /// The sources Orders asks, in order; the first conclusive answer wins. Any
    /// subset of grant, replica, rpc.
    #[arg(
        long,
        env = "TOKENMESH_ENTITLEMENT_SOURCES",
        default_value = "grant,replica,rpc",
        value_delimiter = ','
    )]
    pub entitlement_sources: Vec<SourceKind>,
    /// The grant claims versions Orders reads.
    #[arg(
        long,
        env = "TOKENMESH_GRANT_VERSIONS",
        default_value = "1,2",
        value_delimiter = ','
    )]
    pub grant_versions: Vec<u32>,
    /// How long Orders reuses a CheckEntitlement answer, allowed or refused.
    /// Entitlement changes seen on Products' feed evict it at once — when the
    /// chain also holds grant or replica; an rpc-only chain follows no feed, so
    /// a change waits out this TTL.
    #[arg(long, env = "TOKENMESH_RPC_CACHE_TTL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub rpc_cache_ttl: Duration,
}

tokenmesh_server::client_secret_args! {
    client: SERVICE_CLIENT,
    heading: "Orders",
    group: "orders-client-secret",
    flag: orders_client_secret,
    env: "TOKENMESH_ORDERS_CLIENT_SECRET",
    help: "Secret of the `orders` service client, 32 to 1024 bytes. Default: generated once into `orders-client-secret` in the data dir.",
}

/// The services Orders calls.
#[derive(Debug, Clone)]
pub struct Peers {
    /// Auth: keys, revocations, service tokens and exchange.
    pub auth: Peer,
    /// Products: grant keys, CheckEntitlement and the entitlement feed.
    pub products: Peer,
    /// The issuers' names and how often their keys are refetched.
    pub verify: VerifyArgs,
}

/// Starts Orders on `listener`. [`Running::is_ready`] says whether its
/// entitlement replica has caught up with Products and Auth's revocations
/// are current.
pub async fn start(
    args: &Args,
    secret: &ClientSecretArgs,
    peers: &Peers,
    env: &Environment,
    listener: Listener,
) -> Result<Running, StartError> {
    env.prepare_data_dir()?;
    // Refused before the store is opened: a secret too short to keep.
    let credentials = secret.credentials(env)?;
    let url = env.database_url("orders.db");
    let store_error = |source: StoreError| StartError::Store {
        service: audience::ORDERS,
        database: tokenmesh_server::db::redacted(&url),
        source: source.into(),
    };
    let store = Store::open(&url).await.map_err(store_error)?;
    let products = env.channel(&peers.products)?;
    let grant_keys = KeyStore::remote(GrpcJwksSource::products(products.clone()));
    grant_keys.spawn_refresher(peers.verify.key_refresh_interval);
    let auth = env.channel(&peers.auth)?;
    let service_tokens = |audience| {
        Arc::new(
            ServiceTokens::new(
                auth.clone(),
                credentials.client.id,
                &credentials.secret,
                audience,
            )
            .with_clock(env.clock.clone()),
        )
    };
    let deps = OrdersDeps {
        products,
        exchanger: Arc::new(TokenExchanger::new(
            auth.clone(),
            service_tokens(audience::AUTH),
            audience::PRODUCTS,
        )),
        grant_keys,
        products_credentials: service_tokens(audience::PRODUCTS),
        clock: env.clock.clone(),
    };
    let config = OrdersConfig {
        grant_issuer: peers.verify.products_issuer.clone(),
        chain: ChainConfig {
            sources: args.entitlement_sources.clone(),
            grant_versions: args.grant_versions.clone(),
            rpc_cache_ttl: args.rpc_cache_ttl,
            max_feed_silence: peers.verify.feed_silence_bound(),
        },
    };
    let orders = OrdersService::new(store, deps, config)
        .await
        .map_err(store_error)?;
    env.metrics.register_feed(
        tokenmesh_proto::orders::v1::orders_service_server::SERVICE_NAME,
        "entitlements",
        &orders.replica_freshness(),
    );
    let access = AccessTokens::follow(auth, &credentials, &peers.verify, env);
    let revocations = access.revocations_current();
    let addr = listener.local_addr()?;
    let gate = Gate::new(listener, access, env);
    let readiness = orders.clone();
    Ok(
        Running::spawn(addr, move |shutdown| orders.serve(gate, shutdown))
            .with_readiness(move || readiness.replica_caught_up() && revocations()),
    )
}
