//! Products' own flags, the service client it needs at Auth, its grant keys
//! (sealed in its database, one set for every replica) and its start-up, the
//! same for `tokenmesh up` and `tokenmesh serve products`.

use std::{sync::Arc, time::Duration};

use tokenmesh_proto::names::{audience, scope};
use tokenmesh_server::{
    AccessTokens, Environment, Gate, KeyRing, KeyRingError, Listener, Peer, RingConfig, Running,
    ServiceClient, SigningAlgorithm, SigningKeys, StartError,
    args::{KekArgs, VerifyArgs},
    key_ring::{LegacyKeyFile, key_encryption_key},
    wakeups::{ENTITLEMENTS, GRANT_SIGNING_KEYS},
};

use crate::{Compaction, ProductsConfig, ProductsService, Store};

/// What Products needs at Auth: follow the revocation feed.
pub const SERVICE_CLIENT: ServiceClient = ServiceClient {
    id: audience::PRODUCTS,
    scopes: &[scope::REVOCATIONS_READ],
    audiences: &[audience::AUTH],
    delegates: &[],
};

/// The flags only Products reads.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Products")]
#[group(id = "products")]
pub struct Args {
    /// The claims version Products emits grants in: 1 or 2. Roll forward by
    /// emitting 1 until every Orders reads 2.
    #[arg(long, env = "TOKENMESH_GRANT_VERSION", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=2))]
    pub grant_version: u32,
    /// Largest grant Products issues, in bytes; above it the caller gets no grant
    /// and Orders decides through its other sources.
    #[arg(long, env = "TOKENMESH_GRANT_MAX_BYTES", default_value_t = 4096)]
    pub grant_max_bytes: usize,
    /// How long entitlement changes stay in the feed; older ones are compacted
    /// into the snapshot (never sooner than a grant expires, plus 60 s). A
    /// replica further behind re-syncs from the snapshot.
    #[arg(long, env = "TOKENMESH_ENTITLEMENT_FEED_RETENTION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub entitlement_feed_retention: Duration,
    /// How often a replica compacts the entitlement feed.
    #[arg(long, env = "TOKENMESH_FEED_COMPACTION_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub feed_compaction_interval: Duration,
    /// How often an entitlement stream reads its table even when nothing woke
    /// it. Default: 500ms on SQLite; 5s on PostgreSQL, where every replica's
    /// writes wake it at once (LISTEN/NOTIFY) and the poll is only a fallback.
    #[arg(long, env = "TOKENMESH_ENTITLEMENT_FEED_POLL", value_parser = humantime::parse_duration)]
    pub entitlement_feed_poll: Option<Duration>,
}

tokenmesh_server::client_secret_args! {
    client: SERVICE_CLIENT,
    heading: "Products",
    group: "products-client-secret",
    flag: products_client_secret,
    env: "TOKENMESH_PRODUCTS_CLIENT_SECRET",
    help: "Secret of the `products` service client, 32 to 1024 bytes. Default: generated once into `products-client-secret` in the data dir.",
}

/// The services Products calls.
#[derive(Debug, Clone)]
pub struct Peers {
    /// Auth: its keys and revocation feed.
    pub auth: Peer,
    /// The issuers' names (Products signs as `products_issuer`) and how often
    /// Auth's keys are refetched.
    pub verify: VerifyArgs,
}

/// Where versions before grant keys were stored in the database kept Products'
/// key, in plaintext: imported once, then removed.
const LEGACY_GRANT_KEY_FILE: &str = "products-signing-key.pem";

/// How often the grant keys are re-read (a rotation by another replica).
const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// Opens Products' grant keys in `store`, sealed under the key-encryption key
/// `kek` gives (or the data dir's): the legacy key file, if any, is imported
/// once and removed. `tokenmesh keys` and tests read the keys with it too.
pub async fn open_keys(
    kek: &KekArgs,
    env: &Environment,
    store: &Store,
    config: &ProductsConfig,
) -> Result<Arc<KeyRing>, StartError> {
    let mut legacy = LegacyKeyFile::read(&env.data_dir, LEGACY_GRANT_KEY_FILE)?;
    let database = tokenmesh_server::db::redacted(&env.database_url("products.db"));
    let key_error = |error: KeyRingError| match error {
        KeyRingError::KeyEncryption(error) => StartError::KeyEncryptionKey(error),
        KeyRingError::Signing(error) => StartError::SigningKey(error),
        error => StartError::Store {
            service: audience::PRODUCTS,
            database: database.clone(),
            source: error.into(),
        },
    };
    let table = store.grant_keys();
    let kek = key_encryption_key(kek, &env.data_dir, &table)
        .await
        .map_err(key_error)?;
    let ring = RingConfig {
        algorithm: SigningAlgorithm::EdDSA,
        // Past its last grant's expiry by the verifiers' leeway.
        publish_retired_for: config.grant_ttl + tokenmesh_interceptor::MAX_LEEWAY,
        clock: config.clock.clone(),
    };
    let keys = SigningKeys {
        kek,
        import: legacy.take_key().into_iter().collect(),
    };
    let ring = KeyRing::open(table, keys, ring).await.map_err(key_error)?;
    legacy.remove("grant key")?;
    Ok(ring)
}

/// Starts Products on `listener`, its grant keys sealed under `kek`'s key.
/// [`Running::is_ready`] says whether Auth's revocations are current
/// (replayed, and not silent past the bound).
pub async fn start(
    args: &Args,
    kek: &KekArgs,
    secret: &ClientSecretArgs,
    peers: &Peers,
    env: &Environment,
    listener: Listener,
) -> Result<Running, StartError> {
    env.prepare_data_dir()?;
    // Refused before the store is opened: a secret too short to keep.
    let credentials = secret.credentials(env)?;
    let url = env.database_url("products.db");
    let store_error = |source: crate::ProductsError| StartError::Store {
        service: audience::PRODUCTS,
        database: tokenmesh_server::db::redacted(&url),
        source: source.into(),
    };
    let store = Store::open(&url)
        .await
        .map_err(|error| store_error(error.into()))?
        .with_clock(env.clock.clone());
    if env.demo {
        crate::seed_demo(&store).await.map_err(store_error)?;
    }
    let mut config = ProductsConfig::new(&peers.verify.products_issuer);
    config.grant_version = args.grant_version;
    config.grant_max_bytes = args.grant_max_bytes;
    config.clock = env.clock.clone();
    config.wakeups = tokenmesh_server::Wakeups::for_database(
        &url,
        &[ENTITLEMENTS, GRANT_SIGNING_KEYS],
        args.entitlement_feed_poll,
    );
    config.compaction = Compaction {
        retention: args.entitlement_feed_retention,
        interval: args.feed_compaction_interval,
    };
    let keys = open_keys(kek, env, &store, &config).await?;
    // Another replica's rotation: at once on its notification, else each interval.
    let reloader = keys.spawn_reloader(
        KEY_RELOAD_INTERVAL,
        config.wakeups.subscribe(GRANT_SIGNING_KEYS),
    );
    let products = ProductsService::new(store, keys, config);
    let access = AccessTokens::follow(env.channel(&peers.auth)?, &credentials, &peers.verify, env);
    let revocations = access.revocations_current();
    let addr = listener.local_addr()?;
    let gate = Gate::new(listener, access, env);
    Ok(Running::spawn(addr, move |shutdown| async move {
        let served = products.serve(gate, shutdown).await;
        reloader.abort();
        served
    })
    .with_readiness(revocations))
}
