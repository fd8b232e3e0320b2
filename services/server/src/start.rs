//! What starting any service shares: the [`Environment`] the binary hands every
//! service (data dir, database, issuers, peer TLS, metrics, clock), the [`Running`]
//! handle each returns, service-client declarations and their secrets, and how a
//! service follows Auth's keys and revocations.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use tokenmesh_interceptor::{FeedFreshness, KeyStore, RevocationSet, SharedClock};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

pub use crate::private_file::write_private_file;
use crate::{
    Addr, GrpcJwksSource, Peer, ServeError, ServiceTokens, SigningKeyError, TlsError,
    db::sqlite_url,
    follow_revocations, metrics,
    private_file::{ExposedFile, PrivateFileError, read_private_file, restrict_to_owner},
    random_token,
    sealing::KekError,
};

/// Why a service could not start, or stopped with an error. Every variant names
/// the path, address or service it is about once.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A file, directory or socket could not be used.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path or address.
        context: String,
        /// The I/O error.
        source: io::Error,
    },
    /// A signing key could not be loaded or created.
    #[error(transparent)]
    SigningKey(#[from] SigningKeyError),
    /// A key or secret file is open to group or others.
    #[error(transparent)]
    Exposed(#[from] ExposedFile),
    /// The key that encrypts private keys at rest could not be used.
    #[error(transparent)]
    KeyEncryptionKey(#[from] KekError),
    /// A TLS certificate, key or CA could not be used.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// A peer address is not a valid endpoint.
    #[error("peer {url}: {source}")]
    Endpoint {
        /// The URL.
        url: String,
        /// Why it is invalid.
        source: tonic::transport::Error,
    },
    /// A service's store could not be opened, migrated or seeded.
    #[error("{service}: database {database}: {source}")]
    Store {
        /// The service.
        service: &'static str,
        /// Its database, without credentials.
        database: String,
        /// What failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A service failed to set itself up (beyond its store).
    #[error("{service}: {source}")]
    Service {
        /// The service.
        service: &'static str,
        /// What failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A service client's secret is shorter than [`MIN_CLIENT_SECRET_LEN`] or
    /// longer than Auth accepts in a request. Only its length is shown.
    #[error(
        "the {client} client's secret is {len} bytes; it must be {MIN_CLIENT_SECRET_LEN} to {max} (make one with `openssl rand -base64 32`)"
    )]
    ClientSecret {
        /// The client id.
        client: &'static str,
        /// The secret's length in bytes.
        len: usize,
        /// The longest Auth accepts.
        max: usize,
    },
    /// A server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// A server task panicked.
    #[error("server task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl StartError {
    /// An I/O error while doing `context`.
    pub fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

/// What the binary gives every service it starts: where state lives, the issuer
/// every service agrees on, resources that outlive one service (metrics), and the
/// clock.
#[derive(Debug, Clone)]
pub struct Environment {
    /// Where keys, secrets and SQLite databases live (created 0700).
    pub data_dir: PathBuf,
    /// The service's database; `None`: SQLite in the data dir.
    pub database_url: Option<String>,
    /// Seed the demo data.
    pub demo: bool,
    /// `iss` of Auth's access tokens.
    pub auth_issuer: String,
    /// How a service calls its peers over TLS; `None`: plaintext.
    pub peer_tls: Option<ClientTlsConfig>,
    /// Where servers register their metrics, rendered at `/metrics`.
    pub metrics: metrics::Registry,
    /// The time every token and revocation check reads.
    pub clock: SharedClock,
    /// What every server bounds: concurrency, time, streams, headers.
    pub limits: crate::ServerLimits,
}

impl Environment {
    /// The database URL of a service whose SQLite file is `file` in the data dir.
    pub fn database_url(&self, file: &str) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| sqlite_url(&self.data_dir.join(file)))
    }

    /// Creates the data dir (and parents), readable by this user only.
    pub fn prepare_data_dir(&self) -> Result<(), StartError> {
        prepare_data_dir(&self.data_dir)
    }

    /// A lazy channel to `peer`: TLS when an address says `https` or peer TLS is
    /// configured; balanced over its replicas when it lists several. A peer that
    /// starts later (or restarts) is reached on first use.
    pub fn channel(&self, peer: &Peer) -> Result<Channel, StartError> {
        let endpoints = peer
            .replicas
            .iter()
            .map(|addr| self.endpoint(addr))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(match <[Endpoint; 1]>::try_from(endpoints) {
            Ok([endpoint]) => endpoint.connect_lazy(),
            // Power of two choices over lazily connected replicas: one that is
            // down fails the calls sent to it and is dialled again on the next.
            Err(endpoints) => Channel::balance_list(endpoints.into_iter()),
        })
    }

    /// The endpoint of one replica of a peer.
    fn endpoint(&self, addr: &Addr) -> Result<Endpoint, StartError> {
        let url = addr.url(self.peer_tls.is_some());
        let invalid = |source| StartError::Endpoint {
            url: url.clone(),
            source,
        };
        let mut endpoint = Endpoint::from_shared(url.clone()).map_err(invalid)?;
        if url.starts_with("https:") {
            let tls = self.peer_tls.clone().unwrap_or_default();
            endpoint = endpoint.tls_config(tls).map_err(invalid)?;
        }
        Ok(endpoint.connect_timeout(Duration::from_secs(2)))
    }
}

/// Creates `path` (and parents) if missing, mode 0700 on Unix; an existing
/// data dir open to group or others (made by hand, or by an older version) is
/// narrowed to 0700.
pub fn prepare_data_dir(path: &Path) -> Result<(), StartError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).map_err(StartError::io(format!(
        "creating data dir {}",
        path.display()
    )))?;
    if restrict_to_owner(path).map_err(StartError::io(format!(
        "making data dir {} private",
        path.display()
    )))? {
        tracing::warn!(path = %path.display(), "data dir was open to group or others: now 0700");
    }
    Ok(())
}

/// A service client a service needs at Auth, declared by that service's crate:
/// its id, the scopes it may hold, the audiences it may ask tokens for, and what
/// it may do with its callers' tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceClient {
    /// The client id, the `sub` of its tokens.
    pub id: &'static str,
    /// Scopes its tokens carry.
    pub scopes: &'static [&'static str],
    /// Audiences it may ask tokens for.
    pub audiences: &'static [&'static str],
    /// The audiences it may exchange a user's token for, and which of the
    /// user's scopes pass on to each; none: it may not exchange.
    pub delegates: &'static [Delegation],
}

/// What a service client may do with a user's token in a token exchange: ask for
/// `audience`, and pass on those of the user's `scopes` listed here — no other
/// (`admin` only if named, which no shipped service does). Auth never issues an
/// exchanged token for itself, whatever is declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delegation {
    /// The downstream service.
    pub audience: &'static str,
    /// The user's scopes the exchanged token may keep.
    pub scopes: &'static [&'static str],
}

/// A [`ServiceClient`] with its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    /// The declaration.
    pub client: ServiceClient,
    /// The secret.
    pub secret: String,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// The shortest client secret accepted, given or in its file. Only a secret's
/// length can be checked; 32 base64 characters are 192 bits, and a secret is
/// tried at IssueServiceToken's budget times the number of Auth replicas.
/// Secrets Auth generates are 43.
pub const MIN_CLIENT_SECRET_LEN: usize = 32;

impl ServiceClient {
    /// The secret `given` (flag or environment), or the one generated once into
    /// `<id>-client-secret` in the data dir (mode 0600), so that Auth and the
    /// service agree across restarts. Either must be
    /// [`MIN_CLIENT_SECRET_LEN`] to `max_len("client_secret")` bytes long: a
    /// short one could be guessed, a longer one Auth would refuse to receive.
    pub fn credentials(
        self,
        data_dir: &Path,
        given: Option<&str>,
    ) -> Result<ClientCredentials, StartError> {
        let secret = match given {
            Some(secret) => secret.to_owned(),
            None => {
                // `serve auth` reads both clients' secrets before anything
                // else has made the data dir.
                prepare_data_dir(data_dir)?;
                read_or_create_secret(&data_dir.join(format!("{}-client-secret", self.id)))?
            }
        };
        let max = crate::validate::max_len("client_secret");
        if !(MIN_CLIENT_SECRET_LEN..=max).contains(&secret.len()) {
            return Err(StartError::ClientSecret {
                client: self.id,
                len: secret.len(),
                max,
            });
        }
        Ok(ClientCredentials {
            client: self,
            secret,
        })
    }
}

/// A secret file's content, or a new random secret written to it (0600) when it
/// does not exist yet. A secret file open to group or others is refused.
pub fn read_or_create_secret(path: &Path) -> Result<String, StartError> {
    match read_secret(path) {
        Err(error) if error.is_not_found() => {}
        read => return read.map_err(|error| secret_error(path, error)),
    }
    let secret = random_token(32);
    match write_private_file(path, secret.as_bytes()) {
        Ok(()) => Ok(secret),
        // Another process of this mesh created it first: use theirs.
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            read_secret(path).map_err(|error| secret_error(path, error))
        }
        Err(error) => Err(StartError::io(format!("secret file {}", path.display()))(
            error,
        )),
    }
}

fn read_secret(path: &Path) -> Result<String, PrivateFileError> {
    let secret = read_private_file(path)?;
    Ok(String::from_utf8_lossy(&secret).trim().to_owned())
}

fn secret_error(path: &Path, error: PrivateFileError) -> StartError {
    match error {
        PrivateFileError::Exposed(exposed) => exposed.into(),
        PrivateFileError::Io { source, .. } => StartError::Io {
            context: format!("secret file {}", path.display()),
            source,
        },
    }
}

/// Binds `addr` (`host:port`, a host name allowed).
pub async fn bind(addr: &Addr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr.authority.as_str())
        .await
        .map_err(StartError::io(format!("binding {addr}")))
}

/// The address a bound listener got (port 0 picks one).
pub fn local_addr(listener: &TcpListener) -> Result<SocketAddr, StartError> {
    listener
        .local_addr()
        .map_err(StartError::io("reading a bound address"))
}

/// What a service needs to verify access tokens: Auth's keys, kept fresh, and
/// Auth's revocations, followed live.
#[derive(Debug)]
pub struct AccessTokens {
    /// Auth's keys.
    pub keys: Arc<KeyStore>,
    /// Revoked tokens and subjects.
    pub revocations: Arc<RevocationSet>,
}

impl AccessTokens {
    /// Fetches Auth's keys from `auth` (refreshed as `verify` says) and follows
    /// its revocation feed as `credentials`' client. The revocations count as
    /// current once replayed, and until the feed has been silent for `verify`'s
    /// bound on `env`'s clock.
    pub fn follow(
        auth: Channel,
        credentials: &ClientCredentials,
        verify: &crate::args::VerifyArgs,
        env: &Environment,
    ) -> Self {
        let keys = KeyStore::remote(GrpcJwksSource::auth(auth.clone()));
        keys.spawn_refresher(verify.key_refresh_interval);
        let freshness = Arc::new(FeedFreshness::new(
            env.clock.clone(),
            verify.feed_silence_bound(),
        ));
        let revocations = Arc::new(RevocationSet::followed(freshness.clone()));
        let tokens = Arc::new(
            ServiceTokens::new(
                auth.clone(),
                credentials.client.id,
                &credentials.secret,
                tokenmesh_proto::names::audience::AUTH,
            )
            .with_clock(env.clock.clone()),
        );
        follow_revocations(auth, tokens, &revocations, freshness);
        Self { keys, revocations }
    }

    /// Whether the revocations are current now (replayed, not stale): what a
    /// service's readiness and health follow.
    pub fn revocations_current(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let revocations = self.revocations.clone();
        move || revocations.current().is_ok()
    }
}

/// A future that resolves when the server should stop.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One running server: its address, the switch that stops it, whether it is
/// ready, and the HTTP routes it adds to the process's HTTP listener.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
    ready: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Routes for the HTTP listener (Auth's JWKS); `None` for most services.
    pub http_routes: Option<axum::Router>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// Spawns `serve`, handing it the future that resolves on [`Running::stop`]
    /// (or when this handle is dropped).
    pub fn spawn<F>(addr: SocketAddr, serve: impl FnOnce(Shutdown) -> F) -> Self
    where
        F: Future<Output = Result<(), ServeError>> + Send + 'static,
    {
        let (stop, mut stopped) = watch::channel(false);
        let shutdown: Shutdown = Box::pin(async move {
            // A dropped sender also means stop.
            let _ = stopped.wait_for(|stop| *stop).await;
        });
        Self {
            addr,
            stop,
            task: Some(tokio::spawn(serve(shutdown))),
            ready: Arc::new(|| true),
            http_routes: None,
        }
    }

    /// Ready only while `ready` says so (e.g. a replica that has caught up).
    pub fn with_readiness(mut self, ready: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.ready = Arc::new(ready);
        self
    }

    /// Adds `routes` to the process's HTTP listener.
    pub fn with_http_routes(mut self, routes: axum::Router) -> Self {
        self.http_routes = Some(routes);
        self
    }

    /// Whether the service is ready to answer.
    pub fn is_ready(&self) -> bool {
        (self.ready)()
    }

    /// Stops accepting, lets in-flight requests finish, and waits.
    /// Stopping a stopped server does nothing.
    pub async fn stop(&mut self) -> Result<(), StartError> {
        self.stop.send_replace(true);
        if self.task.is_none() {
            return Ok(());
        }
        self.finished().await
    }

    /// Waits until the server stops (an error, or [`Running::stop`]); never
    /// returns once it has been waited for.
    pub async fn finished(&mut self) -> Result<(), StartError> {
        match self.task.as_mut() {
            Some(task) => {
                let result = task.await;
                self.task = None;
                Ok(result??)
            }
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: ServiceClient = ServiceClient {
        id: "orders",
        scopes: &[],
        audiences: &[],
        delegates: &[],
    };

    fn secret_of_len(len: usize) -> Result<ClientCredentials, StartError> {
        let data_dir = tempfile::tempdir().expect("tempdir");
        CLIENT.credentials(data_dir.path(), Some(&"s".repeat(len)))
    }

    #[test]
    fn a_client_secret_is_accepted_from_32_to_1024_bytes() {
        for len in [MIN_CLIENT_SECRET_LEN, 1024] {
            assert_eq!(secret_of_len(len).expect("accepted").secret.len(), len);
        }
        for len in [0, MIN_CLIENT_SECRET_LEN - 1, 1025] {
            let error = secret_of_len(len).expect_err("refused");
            assert!(
                matches!(error, StartError::ClientSecret { client: "orders", len: got, max: 1024 } if got == len),
                "{error:?}"
            );
        }
    }

    /// `serve auth` on a new data dir: the secret is generated into a data dir
    /// the call creates, long enough, and read back the same next time.
    #[test]
    fn a_secret_is_generated_once_into_a_data_dir_it_creates() {
        let parent = tempfile::tempdir().expect("tempdir");
        let data_dir = parent.path().join("data");
        let generated = CLIENT.credentials(&data_dir, None).expect("generated");
        assert_eq!(generated.secret.len(), 43);
        let again = CLIENT.credentials(&data_dir, None).expect("read back");
        assert_eq!(again.secret, generated.secret);
    }
}
