//! Entitlement grants: the caller's entitlements with their terms, signed with
//! Products' key in the configured claims version, within the size budget.

use std::sync::Arc;

use tokenmesh_proto::{
    claims::{v1, v2},
    names::{GRANT_TOKEN_TYPE, audience},
    products::v1::GrantStatus,
};
use tokenmesh_server::{SigningKey, random_token};

use crate::{ProductsConfig, ProductsError, Store, cache::RevisionCache, store::EntitlementRecord};

/// Bytes of grants kept (a grant is at most `--grant-max-bytes`, 4 KiB by
/// default); past it the least useful go (a miss costs one signature, not a
/// wrong answer).
const GRANTS_BYTES: u64 = 16 << 20;

/// Grants already signed, reused for the same subject while the feed stays at
/// the revision they were issued at, the signing key is the same and at least
/// half their lifetime is left: `ListProducts` then neither reads the
/// entitlements nor signs. Any change to the catalogue or the entitlements
/// moves the revision — this replica's feed view, or the database's when the
/// view is not current — and so retires every cached grant: a revocation is
/// never hidden behind one.
#[derive(Debug)]
pub struct GrantCache {
    by_subject: RevisionCache<String, Arc<CachedGrant>>,
}

impl Default for GrantCache {
    fn default() -> Self {
        Self {
            by_subject: RevisionCache::new(GRANTS_BYTES),
        }
    }
}

#[derive(Debug)]
struct CachedGrant {
    kid: String,
    /// Unix seconds after which a new grant is issued instead.
    renew_at: i64,
    token: String,
    status: GrantStatus,
}

impl GrantCache {
    fn get(
        &self,
        subject: &str,
        revision: i64,
        kid: &str,
        now: i64,
    ) -> Option<(String, GrantStatus)> {
        let grant = self.by_subject.get(subject, revision)?;
        (grant.kid == kid && now < grant.renew_at).then(|| (grant.token.clone(), grant.status))
    }

    fn put(&self, subject: &str, revision: i64, grant: CachedGrant) {
        let bytes = subject.len() + grant.kid.len() + grant.token.len();
        self.by_subject
            .insert(subject.to_owned(), revision, Arc::new(grant), bytes);
    }
}

/// `subject`'s entitlement grant, or none when it would exceed the size budget:
/// the one in `cache` if still good for the feed's revision, else a new one.
/// `revision` is the request's label from the feed view, read before anything
/// else; `None` (the view is not current): the database's revision.
pub async fn issue(
    store: &Store,
    key: &SigningKey,
    config: &ProductsConfig,
    cache: &GrantCache,
    revision: Option<i64>,
    subject: &str,
) -> Result<(String, GrantStatus), ProductsError> {
    // The revision first: a change landing between the two reads is then after
    // the grant's revision, and Orders treats the grant as older than it (and
    // the cache, keyed by the revision, never serves it after that change).
    let revision = match revision {
        Some(revision) => revision,
        None => store.revision().await?,
    };
    let catalogue_revision = u64::try_from(revision).unwrap_or_default();
    let now = config.clock.now_unix();
    if let Some(cached) = cache.get(subject, revision, key.kid(), now) {
        return Ok(cached);
    }
    let (token, status) = sign(store, key, config, subject, catalogue_revision, now).await?;
    let half_life = i64::try_from(config.grant_ttl.as_secs() / 2).unwrap_or(i64::MAX);
    cache.put(
        subject,
        revision,
        CachedGrant {
            kid: key.kid().to_owned(),
            renew_at: now.saturating_add(half_life),
            token: token.clone(),
            status,
        },
    );
    Ok((token, status))
}

/// A new grant of `subject`'s entitlements as they are now, stating
/// `catalogue_revision`.
async fn sign(
    store: &Store,
    key: &SigningKey,
    config: &ProductsConfig,
    subject: &str,
    catalogue_revision: u64,
    now: i64,
) -> Result<(String, GrantStatus), ProductsError> {
    let entitlements = store.entitlements(subject).await?;
    let (iss, sub, aud) = (
        config.issuer.clone(),
        subject.to_owned(),
        vec![audience::ORDERS.to_owned()],
    );
    let exp = now + config.grant_ttl.as_secs() as i64;
    let jti = random_token(16);
    let token = if config.grant_version == 1 {
        let claims = v1::EntitlementClaims {
            iss,
            sub,
            aud,
            exp,
            iat: now,
            nbf: now,
            jti,
            ver: 1,
            product_ids: v1_product_ids(entitlements),
        };
        key.sign(GRANT_TOKEN_TYPE, &claims)?
    } else {
        let claims = v2::EntitlementClaims {
            iss,
            sub,
            aud,
            exp,
            iat: now,
            nbf: now,
            jti,
            ver: 2,
            grants: entitlements.into_iter().map(v2_grant).collect(),
            catalogue_revision,
        };
        key.sign(GRANT_TOKEN_TYPE, &claims)?
    };
    if token.len() > config.grant_max_bytes {
        tracing::debug!(
            bytes = token.len(),
            budget = config.grant_max_bytes,
            "grant over budget; not issued"
        );
        return Ok((String::new(), GrantStatus::TooLarge));
    }
    Ok((token, GrantStatus::Issued))
}

/// What a v1 grant may list: a v1 product id means view and order without a
/// limit, so an entitlement with other terms is left out — Orders then decides
/// it through its other sources, which know the terms.
fn v1_product_ids(entitlements: Vec<EntitlementRecord>) -> Vec<String> {
    entitlements
        .into_iter()
        .filter(|entitlement| entitlement.terms.is_default())
        .map(|entitlement| entitlement.product_id)
        .collect()
}

fn v2_grant(entitlement: EntitlementRecord) -> v2::ProductGrant {
    v2::ProductGrant {
        actions: entitlement.terms.actions().map(String::from).collect(),
        max_quantity: entitlement.terms.max_quantity(),
        product_id: entitlement.product_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Terms;

    #[test]
    fn a_v1_grant_lists_only_entitlements_it_can_describe() {
        let record = |product_id: &str, terms: Terms| EntitlementRecord {
            product_id: product_id.into(),
            terms,
        };
        let limited = Terms::new(&["view".into(), "order".into()], 2).expect("valid");
        let view_only = Terms::new(&["view".into()], 0).expect("valid");
        let entitlements = vec![
            record("P-100", Terms::default()),
            record("P-101", limited.clone()),
            record("P-102", view_only),
        ];
        assert_eq!(v1_product_ids(entitlements), ["P-100"]);
        assert_eq!(
            v2_grant(record("P-101", limited)),
            v2::ProductGrant {
                product_id: "P-101".into(),
                actions: vec!["view".into(), "order".into()],
                max_quantity: 2,
            }
        );
    }
}
