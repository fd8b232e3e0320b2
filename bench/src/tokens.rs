//! Which token each request carries: none, one token reused (what a
//! verified-token cache sees as a hit), or the next one of a pre-minted pool of
//! distinct tokens (the cold path: every token is new to the verifier until the
//! pool wraps around).

use std::{path::Path, sync::Arc, time::Duration};

use tokenmesh_proto::claims::v1::AccessClaims;
use tokenmesh_server::{SigningKey, now_unix, random_token};
use tonic::metadata::AsciiMetadataValue;

use crate::BenchError;

/// The `authorization` values requests carry, chosen round-robin by request number.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    values: Arc<[AsciiMetadataValue]>,
}

impl Tokens {
    /// Requests carry no token.
    pub fn none() -> Self {
        Self::default()
    }

    /// Every request carries `Bearer <token>` for one of `tokens`, in turn.
    pub fn pool<I: IntoIterator<Item = String>>(tokens: I) -> Result<Self, BenchError> {
        let values = tokens
            .into_iter()
            .map(|token| {
                format!("Bearer {token}")
                    .parse()
                    .map_err(|_| BenchError::Token("token is not valid metadata".into()))
            })
            .collect::<Result<Arc<[_]>, _>>()?;
        Ok(Self { values })
    }

    /// How many distinct tokens (0: none).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether requests carry no token.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The value request number `n` carries, if any.
    pub fn get(&self, n: u64) -> Option<&AsciiMetadataValue> {
        if self.values.is_empty() {
            return None;
        }
        let index = usize::try_from(n % self.values.len() as u64).unwrap_or_default();
        self.values.get(index)
    }
}

/// Mints access tokens with Auth's own signing key (read from its key file, as
/// any holder of the data dir could): the same claims Auth's `Login` issues.
#[derive(Debug)]
pub struct TokenMinter {
    key: SigningKey,
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: Vec<String>,
    /// `sub`.
    pub subject: String,
    /// `scope`.
    pub scope: String,
    /// Lifetime of each token.
    pub ttl: Duration,
}

impl TokenMinter {
    /// A minter with the Ed25519 PKCS#8 PEM key in `path`, for tokenmesh's
    /// default issuer, Products and Orders as audiences, subject `subject`.
    pub fn from_key_file(path: &Path, subject: &str) -> Result<Self, BenchError> {
        let key = SigningKey::load(path).map_err(|e| BenchError::Token(e.to_string()))?;
        Ok(Self::new(key, subject))
    }

    /// A minter signing with `key`.
    pub fn new(key: SigningKey, subject: &str) -> Self {
        Self {
            key,
            issuer: "tokenmesh-auth".into(),
            audience: vec!["products".into(), "orders".into()],
            subject: subject.to_owned(),
            scope: String::new(),
            ttl: Duration::from_secs(3600),
        }
    }

    /// One fresh access token (a new `jti`).
    pub fn mint(&self) -> Result<String, BenchError> {
        let now = now_unix();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: self.subject.clone(),
            aud: self.audience.clone(),
            exp: now + i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2),
            iat: now,
            nbf: now,
            jti: random_token(16),
            scope: self.scope.clone(),
            ver: tokenmesh_server::ACCESS_CLAIMS_VERSION,
            // Anything Auth adds later (client_id, act, …) stays empty.
            ..AccessClaims::default()
        };
        self.key
            .sign("at+jwt", &claims)
            .map_err(|e| BenchError::Token(e.to_string()))
    }

    /// `count` distinct tokens, signed on every core.
    pub fn mint_many(&self, count: usize) -> Result<Vec<String>, BenchError> {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let per_thread = count.div_ceil(threads.max(1));
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|i| {
                    let n = per_thread.min(count.saturating_sub(i * per_thread));
                    scope.spawn(move || (0..n).map(|_| self.mint()).collect::<Result<Vec<_>, _>>())
                })
                .collect();
            let mut tokens = Vec::with_capacity(count);
            for worker in workers {
                let minted = worker
                    .join()
                    .map_err(|_| BenchError::Token("a minting thread panicked".into()))??;
                tokens.extend(minted);
            }
            Ok(tokens)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_hands_out_distinct_tokens_in_turn() {
        let (key, _) = SigningKey::generate().expect("key");
        let minted = TokenMinter::new(key, "alice").mint_many(5).expect("mints");
        let unique: std::collections::HashSet<_> = minted.iter().collect();
        assert_eq!(unique.len(), 5);
        let tokens = Tokens::pool(minted).expect("ascii");
        assert_eq!(tokens.get(0), tokens.get(5));
        assert_ne!(tokens.get(0), tokens.get(1));
        assert!(Tokens::none().get(0).is_none());
    }
}
