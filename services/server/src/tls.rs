//! TLS from PEM files: a server's certificate and key, optionally requiring
//! client certificates from a CA; a client trusting a CA and, for servers that
//! require one, presenting its own certificate. rustls on aws-lc-rs.

use std::path::{Path, PathBuf};

use tokio::net::TcpListener;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The files were read but rustls refused them.
    #[error("TLS configuration: {0}")]
    Config(#[from] tonic::transport::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Serve TLS with the certificate chain `cert` and private key `key` (PEM); with
/// `client_ca`, also require a client certificate signed by that CA.
pub fn server_tls(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<ServerTlsConfig, TlsError> {
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
    if let Some(ca) = client_ca {
        config = config.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(config)
}

/// Call servers whose certificate `ca` signed; with `identity` (certificate and
/// key), present it to servers that require client certificates.
pub fn client_tls(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientTlsConfig, TlsError> {
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
    if let Some((cert, key)) = identity {
        config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(config)
}

/// Where a server accepts connections: a bound TCP listener, plaintext or TLS,
/// and the browser origins whose pages may call it (gRPC-Web).
#[derive(Debug)]
pub struct Listener {
    pub(crate) listener: TcpListener,
    pub(crate) tls: Option<ServerTlsConfig>,
    pub(crate) origins: Vec<crate::Origin>,
}

impl Listener {
    /// TLS with `tls` on `listener`.
    pub fn tls(listener: TcpListener, tls: ServerTlsConfig) -> Self {
        Self::new(listener, Some(tls))
    }

    /// Where it listens.
    pub fn local_addr(&self) -> Result<std::net::SocketAddr, crate::StartError> {
        crate::start::local_addr(&self.listener)
    }

    /// `listener` as is, or with TLS when `tls` is given.
    pub fn new(listener: TcpListener, tls: Option<ServerTlsConfig>) -> Self {
        Self {
            listener,
            tls,
            origins: Vec::new(),
        }
    }

    /// Lets pages from `origins` call the server from a browser (CORS); by
    /// default none may.
    pub fn with_origins(mut self, origins: impl IntoIterator<Item = crate::Origin>) -> Self {
        self.origins = origins.into_iter().collect();
        self
    }

    /// Whether it serves TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

impl From<TcpListener> for Listener {
    fn from(listener: TcpListener) -> Self {
        Self::new(listener, None)
    }
}
