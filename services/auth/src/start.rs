//! Auth's own flags and its start-up, the same for `tokenmesh up` and
//! `tokenmesh serve auth`: the key-encryption key, the signing keys, the store,
//! the demo users, the service clients other services declared, and the public
//! URL of its HTTP routes.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use tokenmesh_server::{
    ClientCredentials, Environment, Listener, Running, SigningAlgorithm, SigningKey, StartError,
    key_ring::LegacyKeyFile,
};

use crate::{
    AuthConfig, AuthService, AuthServiceError, PublicUrl, SigningKeys, Store, ThrottleConfig,
};

/// Where versions before keys were sealed kept Auth's first key, in plaintext:
/// imported once, then removed.
const LEGACY_SIGNING_KEY_FILE: &str = "auth-signing-key.pem";

/// The flags only Auth reads.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Auth")]
#[group(id = "auth")]
pub struct Args {
    /// Lifetime of access tokens (e.g. `5m`, `30s`).
    #[arg(long, env = "TOKENMESH_ACCESS_TOKEN_TTL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub access_token_ttl: Duration,
    /// Signing key to import (PKCS#8 PEM: Ed25519, P-256 or RSA; mode 0600).
    /// Imported once, encrypted, into Auth's database, where it signs until the
    /// next rotation; a key imported before is never made to sign again.
    /// Default: Auth generates its first key straight into the database.
    #[arg(long, env = "TOKENMESH_AUTH_SIGNING_KEY", value_name = "FILE")]
    pub auth_signing_key: Option<PathBuf>,
    /// The key-encryption key (shared with Products in `tokenmesh up`).
    #[command(flatten)]
    pub kek: tokenmesh_server::args::KekArgs,
    /// Base URL where clients reach Auth's HTTP routes (e.g.
    /// `https://auth.example.com`): the discovery document's `jwks_uri` is built
    /// from it, never from request headers. Default: the HTTP listen address,
    /// `https` when TLS is on.
    #[arg(long, env = "TOKENMESH_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<PublicUrl>,
    /// Algorithm of Auth's signing keys: EdDSA, ES256 or RS256. A new algorithm
    /// takes effect at the next rotation (or on a fresh data dir).
    #[arg(long, env = "TOKENMESH_SIGNING_ALG", default_value = "EdDSA")]
    pub signing_alg: SigningAlgorithm,
    /// How long a retired signing key stays published after the last token it
    /// signed has expired: at least the verifiers' leeway.
    #[arg(long, env = "TOKENMESH_RETIRED_KEY_GRACE", default_value = "60s", value_parser = humantime::parse_duration)]
    pub retired_key_grace: Duration,
    /// Failed logins allowed per username before delays start.
    #[arg(long, env = "TOKENMESH_LOGIN_THROTTLE_FAILURES", default_value_t = 5)]
    pub login_throttle_failures: u32,
    /// First delay after those failures; each further failure doubles it (max 15 min).
    #[arg(long, env = "TOKENMESH_LOGIN_THROTTLE_DELAY", default_value = "1s", value_parser = humantime::parse_duration)]
    pub login_throttle_delay: Duration,
    /// A login ends this long after it started, however often its refresh
    /// token is rotated (each refresh token alone lives 30 days).
    #[arg(long, env = "TOKENMESH_SESSION_MAX_LIFETIME", default_value = "30d", value_parser = humantime::parse_duration)]
    pub session_max_lifetime: Duration,
    /// Refresh and Logout calls allowed per minute from one client address,
    /// together (0: no limit).
    #[arg(long, env = "TOKENMESH_REFRESH_RATE_LIMIT", default_value_t = 600)]
    pub refresh_rate_limit: u32,
    /// IssueServiceToken calls allowed per minute for one client id, counted
    /// before the secret is checked (0: no limit).
    #[arg(long, env = "TOKENMESH_SERVICE_TOKEN_RATE_LIMIT", default_value_t = 60)]
    pub service_token_rate_limit: u32,
    /// How often a revocation stream reads its table even when nothing woke
    /// it. Default: 500ms on SQLite; 5s on PostgreSQL, where every replica's
    /// writes wake it at once (LISTEN/NOTIFY) and the poll is only a fallback.
    #[arg(long, env = "TOKENMESH_REVOCATION_FEED_POLL", value_parser = humantime::parse_duration)]
    pub revocation_feed_poll: Option<Duration>,
}

/// Opens Auth — keys, store, demo users, `clients` registered — without
/// serving it (`tokenmesh keys rotate` uses it too).
pub async fn open(
    args: &Args,
    env: &Environment,
    clients: &[ClientCredentials],
) -> Result<AuthService, StartError> {
    open_with(args, env, clients, args.public_url.clone()).await
}

async fn open_with(
    args: &Args,
    env: &Environment,
    clients: &[ClientCredentials],
    public_url: Option<PublicUrl>,
) -> Result<AuthService, StartError> {
    env.prepare_data_dir()?;
    let mut legacy = LegacyKeyFile::read(&env.data_dir, LEGACY_SIGNING_KEY_FILE)?;
    let mut import: Vec<SigningKey> = legacy.take_key().into_iter().collect();
    if let Some(path) = &args.auth_signing_key {
        import.push(SigningKey::load(path)?);
    }
    let url = env.database_url("auth.db");
    let store_error = |source: AuthServiceError| match source {
        AuthServiceError::KeyEncryption(error) => StartError::KeyEncryptionKey(error),
        source => StartError::Store {
            service: tokenmesh_proto::names::audience::AUTH,
            database: tokenmesh_server::db::redacted(&url),
            source: source.into(),
        },
    };
    let store = Store::open(&url)
        .await
        .map_err(|error| store_error(error.into()))?;
    let kek = tokenmesh_server::key_ring::key_encryption_key(
        &args.kek,
        &env.data_dir,
        &store.signing_keys(),
    )
    .await
    .map_err(|error| store_error(error.into()))?;
    if env.demo {
        crate::seed_demo(&store).await.map_err(store_error)?;
    }
    let mut config = AuthConfig::new(&env.auth_issuer).with_clock(env.clock.clone());
    config.access_token_ttl = args.access_token_ttl;
    config.signing_algorithm = args.signing_alg;
    config.retired_key_grace = args.retired_key_grace;
    config.session_max_lifetime = args.session_max_lifetime;
    config.refresh_rate_limit = args.refresh_rate_limit;
    config.service_token_rate_limit = args.service_token_rate_limit;
    config.public_url = public_url;
    config.wakeups = tokenmesh_server::Wakeups::for_database(
        &url,
        crate::config::WAKEUP_CHANNELS,
        args.revocation_feed_poll,
    );
    config.throttle = ThrottleConfig {
        free_failures: args.login_throttle_failures,
        base_delay: args.login_throttle_delay,
        ..ThrottleConfig::default()
    };
    let auth = AuthService::open(store, SigningKeys { kek, import }, config)
        .await
        .map_err(store_error)?;
    legacy.remove("signing key")?;
    for credentials in clients {
        auth.register_service_client(credentials)
            .await
            .map_err(store_error)?;
    }
    Ok(auth)
}

/// Starts Auth on `listener`, registering `clients` (the service clients the
/// other services declared, with their secrets). Its JWKS and discovery routes
/// come back in [`Running::http_routes`], for the HTTP listener on `http_addr`:
/// without `--public-url`, discovery names that address (`https` when
/// `listener` serves TLS).
pub async fn start(
    args: &Args,
    env: &Environment,
    clients: &[ClientCredentials],
    listener: Listener,
    http_addr: Option<SocketAddr>,
) -> Result<Running, StartError> {
    let public_url = args.public_url.clone().or_else(|| {
        let addr = http_addr?;
        if addr.ip().is_unspecified() {
            tracing::warn!(%addr, "the HTTP listener's address is a wildcard: discovery names it as is; set --public-url");
        }
        Some(PublicUrl::for_listener(addr, listener.is_tls()))
    });
    let auth = open_with(args, env, clients, public_url).await?;
    let routes = auth.http_router();
    let metrics = env.metrics.clone();
    let limits = env.limits;
    let addr = listener.local_addr()?;
    Ok(Running::spawn(addr, move |shutdown| async move {
        auth.serve(listener, &metrics, limits, shutdown).await
    })
    .with_http_routes(routes))
}
