//! The command line: `tokenmesh up` and `tokenmesh serve auth|products|orders`.
//! Every flag can also come from a `TOKENMESH_…` environment variable.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use tokenmesh_orders::SourceKind;
use tokenmesh_server::SigningAlgorithm;

/// tokenmesh: a gRPC service mesh where identity and entitlements travel as
/// signed, versioned tokens.
#[derive(Debug, Parser)]
#[command(name = "tokenmesh", version)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// A tokenmesh subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run Auth, Products and Orders in one process, each on its own port.
    Up(UpArgs),
    /// Run one service.
    #[command(subcommand)]
    Serve(ServeCommand),
    /// Manage Auth's signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Load-test a method or run a benchmark scenario.
    Bench(tokenmesh_bench::cli::BenchArgs),
}

/// `tokenmesh keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Start signing with a new key now; running Auth replicas pick it up within
    /// seconds, verifiers on the first token it signs. The old key stays published
    /// until every token it signed has expired.
    Rotate(KeysArgs),
}

/// Where Auth's keys are stored.
#[derive(Debug, Clone, Args)]
pub struct KeysArgs {
    /// Auth's data dir (its SQLite database and initial key).
    #[arg(long, env = "TOKENMESH_DATA_DIR", default_value = "./tokenmesh-data")]
    pub data_dir: PathBuf,
    /// Auth's database URL. Default: SQLite in the data dir.
    #[arg(long, env = "TOKENMESH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Token settings (the algorithm of the new key, token lifetimes).
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// `tokenmesh up`.
#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Seed demo users (alice, bob, admin) and products (P-100…P-104), and print
    /// a grpcurl walkthrough. Seeding is idempotent.
    #[arg(long, env = "TOKENMESH_DEMO")]
    pub demo: bool,
    /// Where keys and SQLite databases live.
    #[arg(long, env = "TOKENMESH_DATA_DIR", default_value = "./tokenmesh-data")]
    pub data_dir: PathBuf,
    /// Auth's gRPC address.
    #[arg(long, env = "TOKENMESH_AUTH_ADDR", default_value = "127.0.0.1:50051")]
    pub auth_addr: SocketAddr,
    /// Products' gRPC address.
    #[arg(
        long,
        env = "TOKENMESH_PRODUCTS_ADDR",
        default_value = "127.0.0.1:50052"
    )]
    pub products_addr: SocketAddr,
    /// Orders' gRPC address.
    #[arg(long, env = "TOKENMESH_ORDERS_ADDR", default_value = "127.0.0.1:50053")]
    pub orders_addr: SocketAddr,
    /// HTTP address for Auth's `/.well-known/jwks.json` and
    /// `/.well-known/openid-configuration`, and every service's Prometheus
    /// metrics, `/metrics`.
    #[arg(long, env = "TOKENMESH_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Auth's database (`postgres://…`). Default: SQLite in the data dir.
    #[arg(long, env = "TOKENMESH_AUTH_DATABASE_URL")]
    pub auth_database_url: Option<String>,
    /// Token settings.
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Entitlement settings.
    #[command(flatten)]
    pub entitlements: EntitlementArgs,
    /// TLS settings, shared by the three services.
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// How Products issues grants and how Orders decides entitlement.
#[derive(Debug, Clone, Args)]
pub struct EntitlementArgs {
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
    /// The claims version Products emits grants in: 1 or 2. Roll forward by
    /// emitting 1 until every Orders reads 2.
    #[arg(long, env = "TOKENMESH_GRANT_VERSION", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=2))]
    pub grant_version: u32,
    /// Largest grant Products issues, in bytes; above it the caller gets no grant
    /// and Orders decides through its other sources.
    #[arg(long, env = "TOKENMESH_GRANT_MAX_BYTES", default_value_t = 4096)]
    pub grant_max_bytes: usize,
    /// How long Orders reuses a CheckEntitlement answer (entitlement changes
    /// seen on Products' feed evict it at once).
    #[arg(long, env = "TOKENMESH_RPC_CACHE_TTL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub rpc_cache_ttl: Duration,
}

/// TLS flags: off unless `--tls-cert` and `--tls-key` are given.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// Serve TLS with this certificate chain (PEM). Needs `--tls-key`.
    #[arg(
        long,
        env = "TOKENMESH_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(
        long,
        env = "TOKENMESH_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM). Services present
    /// `--tls-cert` when they call each other.
    #[arg(
        long,
        env = "TOKENMESH_TLS_CLIENT_CA",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_client_ca: Option<PathBuf>,
    /// Trust this CA (PEM) when calling other services over TLS (`https://` URLs).
    #[arg(long, env = "TOKENMESH_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
}

/// Flags of the Auth service.
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// Lifetime of access tokens (e.g. `5m`, `30s`).
    #[arg(long, env = "TOKENMESH_ACCESS_TOKEN_TTL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub access_token_ttl: Duration,
    /// Signing key (PKCS#8 PEM: Ed25519, P-256 or RSA). Default:
    /// `auth-signing-key.pem` in the data dir, generated on first start. Imported
    /// into Auth's database, where rotation keeps it from then on.
    #[arg(long, env = "TOKENMESH_AUTH_SIGNING_KEY", value_name = "FILE")]
    pub auth_signing_key: Option<PathBuf>,
    /// `iss` of access tokens.
    #[arg(long, env = "TOKENMESH_AUTH_ISSUER", default_value = "tokenmesh-auth")]
    pub auth_issuer: String,
    /// `iss` of Products' entitlement grants.
    #[arg(
        long,
        env = "TOKENMESH_PRODUCTS_ISSUER",
        default_value = "tokenmesh-products"
    )]
    pub products_issuer: String,
    /// Algorithm of Auth's signing keys: EdDSA, ES256 or RS256. A new algorithm
    /// takes effect at the next rotation (or on a fresh data dir).
    #[arg(long, env = "TOKENMESH_SIGNING_ALG", default_value = "EdDSA")]
    pub signing_alg: SigningAlgorithm,
    /// How long a retired signing key stays published after the last token it
    /// signed has expired: at least the verifiers' leeway.
    #[arg(long, env = "TOKENMESH_RETIRED_KEY_GRACE", default_value = "60s", value_parser = humantime::parse_duration)]
    pub retired_key_grace: Duration,
    /// How often verifiers refetch key sets even when no unknown `kid` forces it
    /// (this is how a retired key stops being trusted).
    #[arg(long, env = "TOKENMESH_KEY_REFRESH_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub key_refresh_interval: Duration,
    /// Failed logins allowed per username before delays start.
    #[arg(long, env = "TOKENMESH_LOGIN_THROTTLE_FAILURES", default_value_t = 5)]
    pub login_throttle_failures: u32,
    /// First delay after those failures; each further failure doubles it (max 15 min).
    #[arg(long, env = "TOKENMESH_LOGIN_THROTTLE_DELAY", default_value = "1s", value_parser = humantime::parse_duration)]
    pub login_throttle_delay: Duration,
    /// Secret of the `products` service client. Default: generated once into
    /// `products-client-secret` in the data dir.
    #[arg(long, env = "TOKENMESH_PRODUCTS_CLIENT_SECRET", hide_env_values = true)]
    pub products_client_secret: Option<String>,
    /// Secret of the `orders` service client. Default: generated once into
    /// `orders-client-secret` in the data dir.
    #[arg(long, env = "TOKENMESH_ORDERS_CLIENT_SECRET", hide_env_values = true)]
    pub orders_client_secret: Option<String>,
}

/// `tokenmesh serve …`: one service per process, for running split.
#[derive(Debug, Subcommand)]
pub enum ServeCommand {
    /// Run Auth.
    Auth(ServeAuthArgs),
    /// Run Products.
    Products(ServeProductsArgs),
    /// Run Orders.
    Orders(ServeOrdersArgs),
}

/// Flags every single-service process has.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Address to listen on.
    #[arg(long, env = "TOKENMESH_LISTEN")]
    pub listen: SocketAddr,
    /// Where keys and the SQLite database live.
    #[arg(long, env = "TOKENMESH_DATA_DIR", default_value = "./tokenmesh-data")]
    pub data_dir: PathBuf,
    /// Database URL (`sqlite://…` or `postgres://…`). Default: SQLite in the data dir.
    #[arg(long, env = "TOKENMESH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Seed the demo data.
    #[arg(long, env = "TOKENMESH_DEMO")]
    pub demo: bool,
    /// Token settings.
    #[command(flatten)]
    pub auth: AuthArgs,
    /// TLS settings.
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// `tokenmesh serve auth`.
#[derive(Debug, Clone, Args)]
pub struct ServeAuthArgs {
    /// Listener, storage and token settings.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Also serve HTTP here: the key set, `/.well-known/jwks.json`, and `/metrics`.
    #[arg(long, env = "TOKENMESH_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
}

/// `tokenmesh serve products`.
#[derive(Debug, Clone, Args)]
pub struct ServeProductsArgs {
    /// Listener, storage and token settings.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Auth's gRPC URL, for its keys.
    #[arg(
        long,
        env = "TOKENMESH_AUTH_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub auth_url: String,
    /// Entitlement settings.
    #[command(flatten)]
    pub entitlements: EntitlementArgs,
    /// Also serve Prometheus metrics over HTTP here, at `/metrics`.
    #[arg(long, env = "TOKENMESH_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
}

/// `tokenmesh serve orders`.
#[derive(Debug, Clone, Args)]
pub struct ServeOrdersArgs {
    /// Listener, storage and token settings.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Auth's gRPC URL, for its keys.
    #[arg(
        long,
        env = "TOKENMESH_AUTH_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub auth_url: String,
    /// Products' gRPC URL, for grant keys and entitlement checks.
    #[arg(
        long,
        env = "TOKENMESH_PRODUCTS_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    pub products_url: String,
    /// Entitlement settings.
    #[command(flatten)]
    pub entitlements: EntitlementArgs,
    /// Also serve Prometheus metrics over HTTP here, at `/metrics`.
    #[arg(long, env = "TOKENMESH_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
}
