//! The grant source: the entitlement grant Products signed and the caller sent in
//! the request body. It proves entitlement but cannot disprove it, and a
//! revocation the replica has seen since the grant was issued overrides it.

use std::sync::Arc;

use serde::Deserialize;
use tokenmesh_interceptor::{Claims, KeyStore, Verifier, VerifierConfig};
use tokenmesh_proto::{
    claims::v2::ProductGrant,
    names::{GRANT_TOKEN_TYPE, action, audience},
};

use super::{Answer, Denial, Query, Source, SourceError, SourceKind, replica::Replica};

/// An entitlement grant from Products, of any claims version this build parses:
/// v1 (`product_ids`) and v2 (`grants`). Unknown fields are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Grant {
    /// The user the grant is about.
    pub sub: String,
    /// Claims contract version.
    pub ver: u32,
    /// When Products issued it.
    pub iat: i64,
    /// When it expires.
    pub exp: i64,
    /// Not valid before this.
    pub nbf: i64,
    /// v1: product ids.
    pub product_ids: Vec<String>,
    /// v2: per-product grants.
    pub grants: Vec<ProductGrant>,
}

impl Claims for Grant {
    fn subject(&self) -> &str {
        &self.sub
    }

    fn issued_at(&self) -> i64 {
        self.iat
    }

    fn expires_at(&self) -> i64 {
        self.exp
    }

    fn not_before(&self) -> i64 {
        self.nbf
    }
}

impl Grant {
    /// The grant as v2 product grants: v1 ids mean the default actions, no limit.
    pub fn upcast(&self) -> Vec<ProductGrant> {
        if self.ver == 1 {
            return self
                .product_ids
                .iter()
                .map(|product_id| ProductGrant {
                    product_id: product_id.clone(),
                    actions: action::DEFAULT.map(String::from).to_vec(),
                    max_quantity: 0,
                })
                .collect();
        }
        self.grants.clone()
    }
}

/// Answers from the request's grant.
#[derive(Debug)]
pub struct GrantSource {
    verifier: Verifier<Grant>,
    versions: Vec<u32>,
    replica: Arc<Replica>,
}

impl GrantSource {
    /// Trusts grants for Orders from `issuer`, signed with `keys`, in one of
    /// `versions`, unless `replica` has seen a revocation since.
    pub fn new(
        issuer: &str,
        keys: Arc<KeyStore>,
        versions: Vec<u32>,
        replica: Arc<Replica>,
    ) -> Self {
        let config = VerifierConfig::access_tokens(issuer, audience::ORDERS)
            .with_token_type(GRANT_TOKEN_TYPE);
        Self {
            verifier: Verifier::new(config, keys),
            versions,
            replica,
        }
    }
}

fn inconclusive(reason: impl Into<String>) -> Result<Answer, SourceError> {
    Ok(Answer::Inconclusive(reason.into()))
}

#[tonic::async_trait]
impl Source for GrantSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Grant
    }

    async fn answer(&self, query: &Query<'_>) -> Result<Answer, SourceError> {
        let Some(token) = query.grant else {
            return inconclusive("none in the request");
        };
        let grant = match self.verifier.verify(token).await {
            Ok(grant) => grant,
            Err(error) => return inconclusive(format!("refused ({})", error.reason())),
        };
        if !self.versions.contains(&grant.ver) {
            return Ok(Answer::UnsupportedVersion {
                found: grant.ver,
                accepted: self.versions.clone(),
            });
        }
        if grant.sub != query.subject {
            return inconclusive("issued to another subject");
        }
        let covering = grant.upcast().into_iter().find(|g| {
            g.product_id == query.product_id && g.actions.iter().any(|a| a == action::ORDER)
        });
        let Some(covering) = covering else {
            return inconclusive("does not cover this product");
        };
        // A store error reads as "not revoked": the grant is honoured (fail-open).
        let revoked = self
            .replica
            .revoked_since(query.subject, query.product_id, grant.iat)
            .await
            .unwrap_or(false);
        if revoked {
            return inconclusive("revoked since it was issued");
        }
        let limit = covering.max_quantity;
        if limit > 0 && i64::from(query.quantity) > i64::from(limit) {
            return Ok(Answer::Deny(Denial::OverLimit(limit)));
        }
        Ok(Answer::Allow)
    }
}

