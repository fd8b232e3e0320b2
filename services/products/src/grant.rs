//! Entitlement grants: the caller's entitlements with their terms, signed with
//! Products' key in the configured claims version, within the size budget.

use tokenmesh_proto::{
    claims::{v1, v2},
    names::{GRANT_TOKEN_TYPE, audience},
    products::v1::GrantStatus,
};
use tokenmesh_server::{SigningKey, random_token};

use crate::{ProductsConfig, ProductsError, Store, store::EntitlementRecord};

/// `subject`'s entitlement grant, or none when it would exceed the size budget.
pub async fn issue(
    store: &Store,
    key: &SigningKey,
    config: &ProductsConfig,
    subject: &str,
) -> Result<(String, GrantStatus), ProductsError> {
    // The revision first: a change landing between the two reads is then after
    // the grant's revision, and Orders treats the grant as older than it.
    let catalogue_revision = u64::try_from(store.revision().await?).unwrap_or_default();
    let entitlements = store.entitlements(subject).await?;
    let now = config.clock.now_unix();
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
