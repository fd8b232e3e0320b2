//! The command line: `tokenmesh up`, `tokenmesh serve auth|products|orders`,
//! `tokenmesh keys rotate` and `tokenmesh bench`. Each service's flags come from
//! its own crate; this file only composes them. Every flag can also come from a
//! `TOKENMESH_…` environment variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use tokenmesh_server::{
    Addr, Peer,
    args::{AuthIssuerArgs, CorsArgs, LimitArgs, PeerTlsArgs, StorageArgs, TlsArgs, VerifyArgs},
};

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
    Up(Box<UpArgs>),
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
    /// Start signing Products' entitlement grants with a new key now; running
    /// Products replicas pick it up within seconds, Orders on the first grant
    /// it signs. The old key stays published until every grant it signed has
    /// expired.
    RotateGrantKey(GrantKeysArgs),
}

/// Where Products' grant keys are stored.
#[derive(Debug, Clone, Args)]
pub struct GrantKeysArgs {
    /// Products' data dir and database.
    #[command(flatten)]
    pub storage: StorageArgs,
    /// The key-encryption key the grant keys are sealed under.
    #[command(flatten)]
    pub kek: tokenmesh_server::args::KekArgs,
}

/// Where Auth's keys are stored.
#[derive(Debug, Clone, Args)]
pub struct KeysArgs {
    /// Auth's data dir and database.
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Auth's issuer name.
    #[command(flatten)]
    pub issuer: AuthIssuerArgs,
    /// Auth's settings (the algorithm of the new key, token lifetimes).
    #[command(flatten)]
    pub auth: tokenmesh_auth::Args,
}

/// `tokenmesh up`: the whole mesh in one process.
#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Seed demo users (alice, bob, admin) and products (P-100…P-104), and print
    /// a grpcurl walkthrough. Seeding is idempotent.
    #[arg(long, env = "TOKENMESH_DEMO")]
    pub demo: bool,
    /// Where keys, secrets and SQLite databases live (created 0700).
    #[arg(long, env = "TOKENMESH_DATA_DIR", default_value = "./tokenmesh-data")]
    pub data_dir: PathBuf,
    /// Auth's gRPC address (`host:port`).
    #[arg(long, env = "TOKENMESH_AUTH_ADDR", default_value = "127.0.0.1:50051")]
    pub auth_addr: Addr,
    /// Products' gRPC address.
    #[arg(
        long,
        env = "TOKENMESH_PRODUCTS_ADDR",
        default_value = "127.0.0.1:50052"
    )]
    pub products_addr: Addr,
    /// Orders' gRPC address.
    #[arg(long, env = "TOKENMESH_ORDERS_ADDR", default_value = "127.0.0.1:50053")]
    pub orders_addr: Addr,
    /// HTTP address for the web console (`/`), Auth's
    /// `/.well-known/jwks.json` and `/.well-known/openid-configuration`, and
    /// every service's Prometheus metrics, `/metrics`.
    #[arg(long, env = "TOKENMESH_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: Addr,
    /// The database of all three services (`postgres://…`), each in its own
    /// schema: `auth`, `products`, `orders`. Default: SQLite in the data dir.
    #[arg(long, env = "TOKENMESH_DATABASE_URL", value_parser = shared_database_url)]
    pub database_url: Option<String>,
    /// Auth's database, instead of `--database-url` (`postgres://…`, schema
    /// `auth`). Default: `--database-url`, or SQLite in the data dir.
    #[arg(long, env = "TOKENMESH_AUTH_DATABASE_URL")]
    pub auth_database_url: Option<String>,
    /// `iss` of access tokens.
    #[command(flatten)]
    pub issuer: AuthIssuerArgs,
    /// What each of the three servers bounds.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Issuers and key refresh, for every verifier.
    #[command(flatten)]
    pub verify: VerifyArgs,
    /// TLS, shared by the three services.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Calling each other over TLS.
    #[command(flatten)]
    pub peer_tls: PeerTlsArgs,
    /// Browser origins the three services answer.
    #[command(flatten)]
    pub cors: CorsArgs,
    /// Auth.
    #[command(flatten)]
    pub auth: tokenmesh_auth::Args,
    /// Products.
    #[command(flatten)]
    pub products: tokenmesh_products::Args,
    /// Products' client secret.
    #[command(flatten)]
    pub products_secret: tokenmesh_products::ClientSecretArgs,
    /// Orders.
    #[command(flatten)]
    pub orders: tokenmesh_orders::Args,
    /// Orders' client secret.
    #[command(flatten)]
    pub orders_secret: tokenmesh_orders::ClientSecretArgs,
}

/// `up --database-url`: PostgreSQL only. SQLite has no schemas, so three
/// services in one file would mix their tables and migration histories.
fn shared_database_url(url: &str) -> Result<String, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(url.to_owned())
    } else {
        Err(
            "the three services share it, each in its own schema: give a postgres:// URL \
             (for SQLite leave it out: each service gets its own file in the data dir)"
                .to_owned(),
        )
    }
}

/// `tokenmesh serve …`: one service per process, for running split.
#[derive(Debug, Subcommand)]
pub enum ServeCommand {
    /// Run Auth.
    Auth(Box<ServeAuthArgs>),
    /// Run Products.
    Products(Box<ServeProductsArgs>),
    /// Run Orders.
    Orders(Box<ServeOrdersArgs>),
}

/// Where a single service listens.
#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    /// Address to listen on (`host:port`).
    #[arg(long, env = "TOKENMESH_LISTEN")]
    pub listen: Addr,
    /// Also serve HTTP here: `/metrics` (and Auth's JWKS).
    #[arg(long, env = "TOKENMESH_HTTP_ADDR")]
    pub http_addr: Option<Addr>,
    /// What the server bounds.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Browser origins it answers.
    #[command(flatten)]
    pub cors: CorsArgs,
}

/// `tokenmesh serve auth`.
#[derive(Debug, Clone, Args)]
pub struct ServeAuthArgs {
    /// Addresses.
    #[command(flatten)]
    pub listen: ListenArgs,
    /// Seed the demo users.
    #[arg(long, env = "TOKENMESH_DEMO")]
    pub demo: bool,
    /// State.
    #[command(flatten)]
    pub storage: StorageArgs,
    /// `iss` of access tokens.
    #[command(flatten)]
    pub issuer: AuthIssuerArgs,
    /// TLS.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Auth's settings.
    #[command(flatten)]
    pub auth: tokenmesh_auth::Args,
    /// The secret of the `products` service client.
    #[command(flatten)]
    pub products_secret: tokenmesh_products::ClientSecretArgs,
    /// The secret of the `orders` service client.
    #[command(flatten)]
    pub orders_secret: tokenmesh_orders::ClientSecretArgs,
}

/// What `serve products` and `serve orders` share: where they listen and keep
/// state, how they follow Auth and verify its tokens, TLS both ways.
#[derive(Debug, Clone, Args)]
pub struct FollowerArgs {
    /// Addresses.
    #[command(flatten)]
    pub listen: ListenArgs,
    /// Auth's gRPC address (`host:port` or `http(s)://host:port`); several,
    /// comma-separated, are balanced over.
    #[arg(
        long,
        env = "TOKENMESH_AUTH_URL",
        default_value = "127.0.0.1:50051",
        help_heading = "Peers"
    )]
    pub auth_url: Peer,
    /// State.
    #[command(flatten)]
    pub storage: StorageArgs,
    /// `iss` of access tokens.
    #[command(flatten)]
    pub issuer: AuthIssuerArgs,
    /// Issuers and key refresh.
    #[command(flatten)]
    pub verify: VerifyArgs,
    /// TLS.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Calling peers over TLS.
    #[command(flatten)]
    pub peer_tls: PeerTlsArgs,
}

/// `tokenmesh serve products`.
#[derive(Debug, Clone, Args)]
pub struct ServeProductsArgs {
    /// Listening, state, Auth and TLS.
    #[command(flatten)]
    pub follower: FollowerArgs,
    /// Seed the demo catalogue.
    #[arg(long, env = "TOKENMESH_DEMO", help_heading = "Products")]
    pub demo: bool,
    /// Products' settings.
    #[command(flatten)]
    pub products: tokenmesh_products::Args,
    /// The key-encryption key of its grant keys.
    #[command(flatten)]
    pub kek: tokenmesh_server::args::KekArgs,
    /// Its client secret.
    #[command(flatten)]
    pub secret: tokenmesh_products::ClientSecretArgs,
}

/// `tokenmesh serve orders`.
#[derive(Debug, Clone, Args)]
pub struct ServeOrdersArgs {
    /// Listening, state, Auth and TLS.
    #[command(flatten)]
    pub follower: FollowerArgs,
    /// Products' gRPC address (`host:port` or `http(s)://host:port`); several,
    /// comma-separated, are balanced over.
    #[arg(
        long,
        env = "TOKENMESH_PRODUCTS_URL",
        default_value = "127.0.0.1:50052",
        help_heading = "Peers"
    )]
    pub products_url: Peer,
    /// Orders' settings.
    #[command(flatten)]
    pub orders: tokenmesh_orders::Args,
    /// Its client secret.
    #[command(flatten)]
    pub secret: tokenmesh_orders::ClientSecretArgs,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Flags flattened from several crates must not collide (clap checks ids and
    /// groups only when the command is built).
    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn up_shares_only_a_postgresql_database_between_the_services() {
        let up = |url: &str| {
            Cli::try_parse_from(["tokenmesh", "up", "--database-url", url]).map(|cli| {
                match cli.command {
                    Command::Up(args) => args.database_url,
                    _ => None,
                }
            })
        };
        let url = "postgres://tokenmesh@db/tokenmesh";
        assert_eq!(up(url).expect("accepted"), Some(url.to_owned()));
        let refused = up("sqlite://mesh.db").expect_err("SQLite refused");
        assert_eq!(refused.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(
            refused.to_string().contains(
                "the three services share it, each in its own schema: give a postgres:// URL"
            ),
            "{refused}"
        );
    }

    /// One generated secret in 64 starts with `-`; it is still the flag's value.
    #[test]
    fn a_client_secret_may_start_with_a_hyphen() {
        let secret = "-o3vG0Xq2v8C1bP3lS2Yt2qk0e8Zr3Q9hK3mW9aD1uE";
        let cli = Cli::try_parse_from([
            "tokenmesh",
            "serve",
            "products",
            "--products-client-secret",
            secret,
            "--listen",
            "127.0.0.1:0",
        ])
        .expect("accepted");
        let Command::Serve(ServeCommand::Products(args)) = cli.command else {
            panic!("not serve products");
        };
        assert_eq!(args.secret.products_client_secret.as_deref(), Some(secret));
    }

    fn long_flags(path: &[&str]) -> Vec<String> {
        let mut command = Cli::command();
        command.build();
        let mut command = &command;
        for name in path {
            command = command.find_subcommand(name).expect("subcommand");
        }
        let mut flags: Vec<String> = command
            .get_arguments()
            .filter_map(|arg| arg.get_long().map(str::to_owned))
            .filter(|flag| flag != "help")
            .collect();
        flags.sort();
        flags
    }

    #[test]
    fn each_serve_command_offers_only_the_flags_its_service_reads() {
        let common = [
            "cors-allowed-origin",
            "data-dir",
            "database-url",
            "http-addr",
            "listen",
            "max-concurrent-requests",
            "max-concurrent-streams",
            "max-header-list-size",
            "request-timeout",
            "shutdown-delay",
            "tls-cert",
            "tls-client-ca",
            "tls-key",
        ];
        let with = |own: &[&str]| {
            let mut flags: Vec<String> = common.iter().chain(own).map(|f| f.to_string()).collect();
            flags.sort();
            flags
        };
        assert_eq!(
            long_flags(&["serve", "auth"]),
            with(&[
                "access-token-ttl",
                "auth-issuer",
                "auth-signing-key",
                "demo",
                "key-encryption-key",
                "key-encryption-key-base64",
                "login-throttle-delay",
                "login-throttle-failures",
                "orders-client-secret",
                "products-client-secret",
                "public-url",
                "refresh-rate-limit",
                "retired-key-grace",
                "revocation-feed-poll",
                "service-token-rate-limit",
                "session-max-lifetime",
                "signing-alg",
            ])
        );
        assert_eq!(
            long_flags(&["serve", "products"]),
            with(&[
                "auth-issuer",
                "auth-url",
                "demo",
                "entitlement-feed-poll",
                "entitlement-feed-retention",
                "feed-compaction-interval",
                "grant-max-bytes",
                "grant-version",
                "key-encryption-key",
                "key-encryption-key-base64",
                "key-refresh-interval",
                "max-feed-silence",
                "products-client-secret",
                "products-issuer",
                "tls-ca",
            ])
        );
        assert_eq!(
            long_flags(&["serve", "orders"]),
            with(&[
                "auth-issuer",
                "auth-url",
                "entitlement-sources",
                "grant-versions",
                "key-refresh-interval",
                "max-feed-silence",
                "orders-client-secret",
                "products-issuer",
                "products-url",
                "rpc-cache-ttl",
                "tls-ca",
            ])
        );
    }
}
