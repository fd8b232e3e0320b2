//! Auth's own flags and its start-up, the same for `tokenmesh up` and
//! `tokenmesh serve auth`: the signing key, the store, the demo users, and the
//! service clients other services declared.

use std::{path::PathBuf, time::Duration};

use tokenmesh_server::{
    ClientCredentials, Environment, Listener, Running, SigningAlgorithm, SigningKey, StartError,
};

use crate::{AuthConfig, AuthService, Store, ThrottleConfig};

/// The flags only Auth reads.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Auth")]
#[group(id = "auth")]
pub struct Args {
    /// Lifetime of access tokens (e.g. `5m`, `30s`).
    #[arg(long, env = "TOKENMESH_ACCESS_TOKEN_TTL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub access_token_ttl: Duration,
    /// Signing key (PKCS#8 PEM: Ed25519, P-256 or RSA). Default:
    /// `auth-signing-key.pem` in the data dir, generated on first start. Imported
    /// into Auth's database, where rotation keeps it from then on.
    #[arg(long, env = "TOKENMESH_AUTH_SIGNING_KEY", value_name = "FILE")]
    pub auth_signing_key: Option<PathBuf>,
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
}

/// Opens Auth — key, store, demo users, `clients` registered — without serving
/// it (`tokenmesh keys rotate` uses it too).
pub async fn open(
    args: &Args,
    env: &Environment,
    clients: &[ClientCredentials],
) -> Result<AuthService, StartError> {
    env.prepare_data_dir()?;
    let key = match &args.auth_signing_key {
        Some(path) => SigningKey::load(path)?,
        None => SigningKey::load_or_generate_with(
            &env.data_dir.join("auth-signing-key.pem"),
            args.signing_alg,
        )?,
    };
    let url = env.database_url("auth.db");
    let store_error = |source: crate::AuthServiceError| StartError::Store {
        service: tokenmesh_proto::names::audience::AUTH,
        database: tokenmesh_server::db::redacted(&url),
        source: source.into(),
    };
    let store = Store::open(&url)
        .await
        .map_err(|error| store_error(error.into()))?;
    if env.demo {
        crate::seed_demo(&store).await.map_err(store_error)?;
    }
    let mut config = AuthConfig::new(&env.auth_issuer).with_clock(env.clock.clone());
    config.access_token_ttl = args.access_token_ttl;
    config.signing_algorithm = args.signing_alg;
    config.retired_key_grace = args.retired_key_grace;
    config.throttle = ThrottleConfig {
        free_failures: args.login_throttle_failures,
        base_delay: args.login_throttle_delay,
        ..ThrottleConfig::default()
    };
    let auth = AuthService::open(store, key, config)
        .await
        .map_err(store_error)?;
    for credentials in clients {
        let client = credentials.client;
        auth.register_service_client(
            client.id,
            &credentials.secret,
            &client.scopes.join(" "),
            &client.audiences.join(" "),
        )
        .await
        .map_err(store_error)?;
    }
    Ok(auth)
}

/// Starts Auth on `listener`, registering `clients` (the service clients the
/// other services declared, with their secrets). Its JWKS and discovery routes
/// come back in [`Running::http_routes`].
pub async fn start(
    args: &Args,
    env: &Environment,
    clients: &[ClientCredentials],
    listener: Listener,
) -> Result<Running, StartError> {
    let auth = open(args, env, clients).await?;
    let routes = auth.http_router();
    let metrics = env.metrics.clone();
    let addr = listener.local_addr()?;
    Ok(Running::spawn(addr, move |shutdown| async move {
        auth.serve(listener, &metrics, shutdown).await
    })
    .with_http_routes(routes))
}
