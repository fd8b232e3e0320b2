//! The command line: `tokenmesh up` and `tokenmesh serve auth|products|orders`.
//! Every flag can also come from a `TOKENMESH_…` environment variable.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

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
    /// HTTP address for Auth's key set, `/.well-known/jwks.json`.
    #[arg(long, env = "TOKENMESH_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Token settings.
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// Flags of the Auth service.
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// Lifetime of access tokens (e.g. `5m`, `30s`).
    #[arg(long, env = "TOKENMESH_ACCESS_TOKEN_TTL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub access_token_ttl: Duration,
    /// Ed25519 signing key (PKCS#8 PEM). Default: `auth-signing-key.pem` in the
    /// data dir, generated on first start.
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
}

/// `tokenmesh serve auth`.
#[derive(Debug, Clone, Args)]
pub struct ServeAuthArgs {
    /// Listener, storage and token settings.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Also serve the key set over HTTP, `/.well-known/jwks.json`, here.
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
}
