//! Flags more than one service reads, each defined once. A service's own flags
//! live in its crate (`tokenmesh_auth::Args`, …); the binary flattens into each
//! command exactly the groups that command's services read.

use std::{path::PathBuf, time::Duration};

use clap::Args;
use tonic::transport::{ClientTlsConfig, ServerTlsConfig};

use crate::TlsError;

/// Where a single service keeps its state.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Storage")]
pub struct StorageArgs {
    /// Where keys, secrets and the SQLite database live (created 0700).
    #[arg(long, env = "TOKENMESH_DATA_DIR", default_value = "./tokenmesh-data")]
    pub data_dir: PathBuf,
    /// Database URL (`sqlite://…` or `postgres://…`). Default: SQLite in the data
    /// dir. On PostgreSQL the service keeps its tables in a schema named after it
    /// (`auth`, `products`, `orders`), so every service (and every replica) may
    /// be given the same database.
    #[arg(long, env = "TOKENMESH_DATABASE_URL")]
    pub database_url: Option<String>,
}

/// The key that encrypts a service's private keys in its database.
#[derive(Debug, Clone, Default, Args)]
pub struct KekArgs {
    /// Key-encryption key: 32 random bytes in base64, mode 0600, e.g.
    /// `(umask 077; openssl rand -base64 32 > FILE)`. Encrypts the service's
    /// private keys in its database (AES-256-GCM); every replica needs the same
    /// one, and a replica whose key cannot open the stored keys refuses to
    /// start. Keep it out of database backups. Default: `key-encryption-key` in
    /// the data dir, generated on first start while the database holds no key.
    #[arg(long, env = "TOKENMESH_KEY_ENCRYPTION_KEY_FILE", value_name = "FILE")]
    pub key_encryption_key: Option<PathBuf>,
    /// The key-encryption key itself (32 random bytes in base64), for where a
    /// file is awkward: a Kubernetes Secret handed over as an environment
    /// variable. Give it in the variable, not the flag: a flag's value is
    /// visible to every local user in the process list.
    #[arg(
        long,
        env = "TOKENMESH_KEY_ENCRYPTION_KEY",
        value_name = "BASE64",
        hide_env_values = true,
        conflicts_with = "key_encryption_key"
    )]
    pub key_encryption_key_base64: Option<KekText>,
}

/// A key-encryption key given as text: never shown by `Debug`.
#[derive(Clone)]
pub struct KekText(pub String);

impl std::fmt::Debug for KekText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KekText(***)")
    }
}

impl std::str::FromStr for KekText {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

/// `iss` of Auth's access tokens: Auth signs it, every verifier checks it.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Tokens")]
pub struct AuthIssuerArgs {
    /// `iss` of access tokens.
    #[arg(long, env = "TOKENMESH_AUTH_ISSUER", default_value = "tokenmesh-auth")]
    pub auth_issuer: String,
}

/// How a service verifies tokens it did not sign: the issuers it trusts and how
/// often it refetches their keys.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Tokens")]
pub struct VerifyArgs {
    /// `iss` of Products' entitlement grants.
    #[arg(
        long,
        env = "TOKENMESH_PRODUCTS_ISSUER",
        default_value = "tokenmesh-products"
    )]
    pub products_issuer: String,
    /// How often verifiers refetch key sets even when no unknown `kid` forces it
    /// (this is how a retired key stops being trusted).
    #[arg(long, env = "TOKENMESH_KEY_REFRESH_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub key_refresh_interval: Duration,
    /// How long a service trusts Auth's revocations (and Orders its replica of
    /// Products' entitlements) once their feed has gone quiet: past it, tokens
    /// are refused with UNAVAILABLE (`REVOCATIONS_STALE`) and the replica hands
    /// the decision to the next source. Default: the access-token lifetime
    /// (`up`), or 5m, Auth's default lifetime (`serve`).
    #[arg(long, env = "TOKENMESH_MAX_FEED_SILENCE", value_parser = humantime::parse_duration)]
    pub max_feed_silence: Option<Duration>,
}

/// [`VerifyArgs::max_feed_silence`] when not given and the access-token
/// lifetime is not known: Auth's default lifetime.
pub const DEFAULT_MAX_FEED_SILENCE: Duration = Duration::from_secs(300);

impl VerifyArgs {
    /// The feed silence bound, given or [`DEFAULT_MAX_FEED_SILENCE`].
    pub fn feed_silence_bound(&self) -> Duration {
        self.max_feed_silence.unwrap_or(DEFAULT_MAX_FEED_SILENCE)
    }
}

/// What every server bounds (see [`crate::limits::ServerLimits`]); the defaults
/// suit one machine, documented in docs/security.md.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// Requests one server handles at once, over all connections; above it a
    /// request is refused at once with UNAVAILABLE (load shedding), not queued.
    #[arg(long, env = "TOKENMESH_MAX_CONCURRENT_REQUESTS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_requests: u32,
    /// Longest a request may take before its response starts; then
    /// DEADLINE_EXCEEDED. Feed streams are not cut by it.
    #[arg(long, env = "TOKENMESH_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// HTTP/2 streams (concurrent calls) one connection may open.
    #[arg(long, env = "TOKENMESH_MAX_CONCURRENT_STREAMS", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,
    /// Largest request header list (metadata, bearer token included), in bytes.
    #[arg(long, env = "TOKENMESH_MAX_HEADER_LIST_SIZE", default_value_t = 16 * 1024, value_parser = clap::value_parser!(u32).range(1024..))]
    pub max_header_list_size: u32,
    /// On SIGTERM, how long to keep serving after health turns NOT_SERVING,
    /// before no new call is accepted: long enough for a load balancer's health
    /// check to take this replica out of rotation.
    #[arg(long, env = "TOKENMESH_SHUTDOWN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub shutdown_delay: Duration,
}

impl LimitArgs {
    /// The limits these flags set.
    pub fn limits(&self) -> crate::limits::ServerLimits {
        crate::limits::ServerLimits {
            max_concurrent_requests: self.max_concurrent_requests as usize,
            request_timeout: self.request_timeout,
            max_concurrent_streams: self.max_concurrent_streams,
            max_header_list_size: self.max_header_list_size,
            shutdown_delay: self.shutdown_delay,
        }
    }
}

/// Serving TLS: off unless `--tls-cert` and `--tls-key` are given.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "TLS")]
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
}

/// Which browser pages may call a server with gRPC-Web.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Browsers")]
pub struct CorsArgs {
    /// A web origin (`https://console.example.com`) whose pages may call the
    /// server from a browser with gRPC-Web (CORS); repeat the flag or separate
    /// origins with commas. Default: none, so no page from another origin may
    /// read an answer (`up --demo` adds the console's own).
    #[arg(
        long = "cors-allowed-origin",
        env = "TOKENMESH_CORS_ALLOWED_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub cors_allowed_origins: Vec<crate::Origin>,
}

/// Calling peers over TLS.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "TLS")]
pub struct PeerTlsArgs {
    /// Call other services over TLS, trusting this CA (PEM); present `--tls-cert`
    /// to peers that require client certificates.
    #[arg(long, env = "TOKENMESH_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The server side; `None` without a certificate.
    pub fn server(&self) -> Result<Option<ServerTlsConfig>, TlsError> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        crate::tls::server_tls(cert, key, self.tls_client_ca.as_deref()).map(Some)
    }

    /// How a service calls its peers: trusting `peer.tls_ca`, presenting this
    /// certificate when there is one; `None` without a CA.
    pub fn client(&self, peer: &PeerTlsArgs) -> Result<Option<ClientTlsConfig>, TlsError> {
        let Some(ca) = &peer.tls_ca else {
            return Ok(None);
        };
        let identity = self.tls_cert.as_deref().zip(self.tls_key.as_deref());
        crate::tls::client_tls(ca, identity).map(Some)
    }
}

/// Declares a service crate's `ClientSecretArgs`: the flag carrying its
/// service client's secret, which Auth (to register the client) and the service
/// (to present it) both read, and `credentials`, the secret given or generated
/// once into the data dir.
#[macro_export]
macro_rules! client_secret_args {
    (
        client: $client:expr,
        heading: $heading:literal,
        group: $group:literal,
        flag: $flag:ident,
        env: $env:literal,
        help: $help:literal $(,)?
    ) => {
        /// The secret of this service's client at Auth.
        #[derive(Debug, Clone, Default, clap::Args)]
        #[command(next_help_heading = $heading)]
        #[group(id = $group)]
        pub struct ClientSecretArgs {
            #[doc = $help]
            // A generated secret is base64url: one in 64 starts with `-`, which
            // must still read as the value, not as a flag.
            #[arg(long, env = $env, hide_env_values = true, allow_hyphen_values = true)]
            pub $flag: Option<String>,
        }

        impl ClientSecretArgs {
            /// The secret, given or from the data dir.
            pub fn credentials(
                &self,
                env: &$crate::Environment,
            ) -> Result<$crate::ClientCredentials, $crate::StartError> {
                $client.credentials(&env.data_dir, self.$flag.as_deref())
            }
        }
    };
}
