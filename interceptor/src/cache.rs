//! Tokens already verified, so that a repeat costs a hash and a lookup instead of
//! a signature check. Keyed by the token's SHA-256, never by the token itself; an
//! entry serves only while its token is unexpired and its key still trusted.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::VerificationKey;

/// The SHA-256 of a token: the cache key.
pub(crate) type TokenDigest = [u8; 32];

/// One verified token: its claims, the issuer and key that verified it and when
/// it expires.
pub(crate) struct Verified<C> {
    pub(crate) claims: Arc<C>,
    pub(crate) key: Arc<VerificationKey>,
    /// Index of the issuer in its verifier.
    pub(crate) issuer: usize,
    pub(crate) expires_at: i64,
}

impl<C> Clone for Verified<C> {
    fn clone(&self) -> Self {
        Self {
            claims: self.claims.clone(),
            key: self.key.clone(),
            issuer: self.issuer,
            expires_at: self.expires_at,
        }
    }
}

/// A bounded map from token digest to [`Verified`] claims. quick_cache evicts
/// with S3-FIFO under pressure, so a flood of one-off tokens cannot push out the
/// tokens that keep coming back.
pub(crate) struct VerifiedCache<C> {
    entries: quick_cache::sync::Cache<TokenDigest, Verified<C>>,
}

impl<C: Send + Sync + 'static> VerifiedCache<C> {
    /// A cache of at most `capacity` tokens; `None` for a capacity of 0 (off).
    pub(crate) fn new(capacity: usize) -> Option<Self> {
        (capacity > 0).then(|| Self {
            entries: quick_cache::sync::Cache::new(capacity),
        })
    }

    pub(crate) fn digest(token: &str) -> TokenDigest {
        Sha256::digest(token.as_bytes()).into()
    }

    pub(crate) fn get(&self, digest: &TokenDigest) -> Option<Verified<C>> {
        self.entries.get(digest)
    }

    pub(crate) fn insert(&self, digest: TokenDigest, verified: Verified<C>) {
        self.entries.insert(digest, verified);
    }

    pub(crate) fn remove(&self, digest: &TokenDigest) {
        self.entries.remove(digest);
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}
