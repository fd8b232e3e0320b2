//! Key sets fetched over HTTP(S): an issuer's `/.well-known/jwks.json`, as any
//! OpenID provider publishes it. Bounded in time and size; redirects not followed.

use std::time::Duration;

use futures::{FutureExt, future::BoxFuture};
use jsonwebtoken::jwk::JwkSet;

use crate::{KeySource, KeySourceError};

/// Key sets larger than this are refused.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// A JWKS fetched with `GET` from a URL. Use it with [`crate::KeyStore::remote`].
#[derive(Debug, Clone)]
pub struct HttpJwksSource {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl HttpJwksSource {
    /// Fetches from `url` (`https://…/.well-known/jwks.json`) with a client that
    /// trusts the platform's roots, times out after 5 s and follows no redirect.
    pub fn new(url: &str) -> Result<Self, KeySourceError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| KeySourceError(format!("HTTP client: {error}")))?;
        Self::with_client(client, url)
    }

    /// Fetches from `url` with `client` (to trust a private CA, use a proxy…).
    pub fn with_client(client: reqwest::Client, url: &str) -> Result<Self, KeySourceError> {
        let url = reqwest::Url::parse(url)
            .map_err(|error| KeySourceError(format!("JWKS URL {url}: {error}")))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(KeySourceError(format!("JWKS URL {url}: not http(s)")));
        }
        Ok(Self { client, url })
    }

    async fn get(&self) -> Result<JwkSet, KeySourceError> {
        let failed = |error: reqwest::Error| KeySourceError(format!("GET {}: {error}", self.url));
        let mut response = self
            .client
            .get(self.url.clone())
            .send()
            .await
            .map_err(failed)?;
        if !response.status().is_success() {
            return Err(KeySourceError(format!(
                "GET {}: HTTP {}",
                self.url,
                response.status()
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(KeySourceError(format!(
                    "GET {}: key set larger than {MAX_JWKS_BYTES} bytes",
                    self.url
                )));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body)
            .map_err(|error| KeySourceError(format!("GET {}: not a JWKS: {error}", self.url)))
    }
}

impl KeySource for HttpJwksSource {
    fn fetch(&self) -> BoxFuture<'_, Result<JwkSet, KeySourceError>> {
        self.get().boxed()
    }
}
