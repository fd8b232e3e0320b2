//! The grant source: the entitlement grant Products signed and the caller sent in
//! the request body. It proves entitlement, and its terms (the `order` action,
//! the limit) decide the order as any source's would; it cannot prove the
//! absence of an entitlement. A revocation or change of terms the replica has
//! seen since the grant was issued overrides it.

use std::sync::Arc;

use serde::Deserialize;
use tokenmesh_interceptor::{Claims, KeyStore, Verifier, VerifierConfig};
use tokenmesh_proto::{
    claims::v2::ProductGrant,
    names::{GRANT_TOKEN_TYPE, action, audience},
};

use super::{
    Answer, Query, Source, SourceError, SourceKind, Terms,
    replica::{Issued, Replica, Since},
};

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
    /// v2: Products' feed position the grant reflects.
    pub catalogue_revision: u64,
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

    /// Checks expiry against `clock`.
    pub fn with_clock(mut self, clock: tokenmesh_interceptor::SharedClock) -> Self {
        self.verifier = self.verifier.with_clock(clock);
        self
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
        let covering = grant
            .upcast()
            .into_iter()
            .find(|g| g.product_id == query.product_id);
        let Some(covering) = covering else {
            return inconclusive("does not cover this product");
        };
        let terms = Terms::of_grant(&covering);
        let issued = Issued {
            at: grant.iat,
            revision: grant.catalogue_revision,
        };
        match self.replica.since(query.subject, query.product_id, issued) {
            Since::Revoked => return inconclusive("revoked since it was issued"),
            // Granted again on the same terms: the grant still says what holds.
            Since::Changed(now) if now != terms => {
                return inconclusive("its terms changed since it was issued");
            }
            Since::Unchanged | Since::Changed(_) => {}
        }
        Ok(terms.answer(query.quantity))
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::jwk::JwkSet;
    use serde_json::{Value, json};
    use tokenmesh_interceptor::KeySet;
    use tokenmesh_server::{SigningKey, now_unix};

    use super::*;
    use crate::{
        entitlement::{
            Chain, Decision, Denial, Reason,
            tests::{entitle, query, replica},
        },
        store::ReplicaChange,
    };

    const ISSUER: &str = "https://products.test";

    /// Products' key, and a grant source trusting it that reads `versions`.
    struct Fixture {
        key: SigningKey,
        source: GrantSource,
        replica: Arc<Replica>,
        now: i64,
    }

    async fn setup(versions: &[u32]) -> Fixture {
        let (key, _) = SigningKey::generate().expect("key");
        let replica = Arc::new(replica().await);
        let source = GrantSource::new(ISSUER, trusting(&key), versions.to_vec(), replica.clone());
        Fixture {
            key,
            source,
            replica,
            now: now_unix(),
        }
    }

    fn trusting(key: &SigningKey) -> Arc<KeyStore> {
        let jwk = tokenmesh_server::jwk_to_jose(key.public_jwk()).expect("jwk");
        KeyStore::fixed(KeySet::from_jwks(&JwkSet { keys: vec![jwk] }))
    }

    impl Fixture {
        /// A grant for alice, valid for a minute, with `claims` on top.
        fn grant(&self, claims: Value) -> String {
            let mut payload = json!({
                "iss": ISSUER, "sub": "alice", "aud": ["orders"], "jti": "g",
                "iat": self.now, "nbf": self.now, "exp": self.now + 60, "ver": 2,
                "grants": [{"product_id": "P-100", "actions": ["view", "order"]}],
            });
            for (name, value) in claims.as_object().expect("claims").clone() {
                payload[name] = value;
            }
            self.key.sign(GRANT_TOKEN_TYPE, &payload).expect("signed")
        }

        async fn answer(&self, grant: &str, quantity: i32) -> Answer {
            let query = Query {
                grant: Some(grant),
                quantity,
                ..query()
            };
            self.source.answer(&query).await.expect("grants never fail")
        }
    }

    fn inconclusive(reason: &str) -> Answer {
        Answer::Inconclusive(reason.into())
    }

    #[tokio::test]
    async fn without_a_grant_the_source_cannot_tell() {
        let fixture = setup(&[1, 2]).await;
        let answer = fixture.source.answer(&query()).await.expect("answer");
        assert_eq!(answer, inconclusive("none in the request"));
    }

    #[tokio::test]
    async fn a_grant_the_verifier_refuses_is_inconclusive_with_its_reason() {
        let fixture = setup(&[1, 2]).await;
        let (stranger, _) = SigningKey::generate().expect("key");
        let an_hour_ago = fixture.now - 3600;
        let cases = [
            ("not a jwt".to_owned(), "refused (TOKEN_MALFORMED)"),
            (
                fixture.key.sign("at+jwt", &json!({})).expect("signed"),
                "refused (TOKEN_TYPE_MISMATCH)",
            ),
            (
                stranger
                    .sign(GRANT_TOKEN_TYPE, &json!({"sub": "alice"}))
                    .expect("signed"),
                "refused (KEY_UNKNOWN)",
            ),
            (
                fixture.grant(json!({"iss": "https://elsewhere.test"})),
                "refused (ISSUER_MISMATCH)",
            ),
            (
                fixture.grant(json!({"aud": ["products"]})),
                "refused (AUDIENCE_MISMATCH)",
            ),
            (
                fixture.grant(
                    json!({"iat": an_hour_ago, "nbf": an_hour_ago, "exp": an_hour_ago + 60}),
                ),
                "refused (TOKEN_EXPIRED)",
            ),
        ];
        for (grant, reason) in cases {
            assert_eq!(fixture.answer(&grant, 1).await, inconclusive(reason));
        }
    }

    #[tokio::test]
    async fn a_version_the_reader_does_not_accept_is_unsupported() {
        let fixture = setup(&[1, 2]).await;
        assert_eq!(
            fixture.answer(&fixture.grant(json!({"ver": 3})), 1).await,
            Answer::UnsupportedVersion {
                found: 3,
                accepted: vec![1, 2]
            }
        );
        let v1_reader = setup(&[1]).await;
        assert_eq!(
            v1_reader.answer(&v1_reader.grant(json!({})), 1).await,
            Answer::UnsupportedVersion {
                found: 2,
                accepted: vec![1]
            }
        );
    }

    #[tokio::test]
    async fn a_grant_issued_to_another_subject_proves_nothing() {
        let fixture = setup(&[1, 2]).await;
        let bobs = fixture.grant(json!({"sub": "bob"}));
        assert_eq!(
            fixture.answer(&bobs, 1).await,
            inconclusive("issued to another subject")
        );
    }

    #[tokio::test]
    async fn a_v1_grant_allows_ordering_its_products_without_limit() {
        let fixture = setup(&[1, 2]).await;
        let v1 = fixture.grant(json!({"ver": 1, "product_ids": ["P-100"], "grants": []}));
        assert_eq!(fixture.answer(&v1, 1_000).await, Answer::Allow);
        let other = fixture.grant(json!({"ver": 1, "product_ids": ["P-101"], "grants": []}));
        assert_eq!(
            fixture.answer(&other, 1).await,
            inconclusive("does not cover this product")
        );
    }

    #[tokio::test]
    async fn a_v2_grant_without_the_order_action_refuses_the_order() {
        let fixture = setup(&[1, 2]).await;
        let grant = |actions: Value| {
            fixture.grant(json!({"grants": [{"product_id": "P-100", "actions": actions}]}))
        };
        // The same answer the replica and Products give for a view-only entitlement.
        assert_eq!(
            fixture.answer(&grant(json!(["view"])), 1).await,
            Answer::Deny(Denial::OrderNotAllowed)
        );
        assert_eq!(
            fixture
                .answer(&grant(json!(["order", "teleport"])), 1)
                .await,
            Answer::Allow
        );
    }

    #[tokio::test]
    async fn a_quantity_limit_denies_more_and_allows_up_to_it() {
        let fixture = setup(&[1, 2]).await;
        let limited = fixture.grant(
            json!({"grants": [{"product_id": "P-100", "actions": ["order"], "max_quantity": 2}]}),
        );
        assert_eq!(
            fixture.answer(&limited, 3).await,
            Answer::Deny(Denial::OverLimit(2))
        );
        assert_eq!(fixture.answer(&limited, 2).await, Answer::Allow);
    }

    #[tokio::test]
    async fn a_revocation_the_replica_saw_since_issue_overrides_the_grant() {
        let fixture = setup(&[1, 2]).await;
        let grant = fixture.grant(json!({}));
        entitle(&fixture.replica, false, fixture.now - 1, 2).await;
        assert_eq!(
            fixture.answer(&grant, 1).await,
            Answer::Allow,
            "revoked before"
        );
        entitle(&fixture.replica, false, fixture.now, 3).await;
        assert_eq!(
            fixture.answer(&grant, 1).await,
            inconclusive("revoked since it was issued")
        );
        entitle(&fixture.replica, true, fixture.now + 1, 4).await;
        assert_eq!(
            fixture.answer(&grant, 1).await,
            Answer::Allow,
            "granted again"
        );
    }

    #[tokio::test]
    async fn terms_the_replica_saw_change_since_issue_override_the_grant() {
        let fixture = setup(&[1, 2]).await;
        let grant = fixture.grant(json!({"catalogue_revision": 3}));
        let limited = Terms {
            order: true,
            max_quantity: 2,
        };
        let set = |terms: Terms| ReplicaChange::Entitlement {
            subject: "alice".into(),
            product_id: "P-100".into(),
            granted: true,
            changed_at: fixture.now,
            terms,
        };
        let replica = &fixture.replica;
        replica.apply(&set(limited), 3).await.expect("applied");
        assert_eq!(
            fixture.answer(&grant, 5).await,
            Answer::Allow,
            "the grant reflects position 3"
        );
        replica.apply(&set(limited), 4).await.expect("applied");
        assert_eq!(
            fixture.answer(&grant, 5).await,
            inconclusive("its terms changed since it was issued")
        );
        replica
            .apply(&set(Terms::default()), 5)
            .await
            .expect("applied");
        assert_eq!(
            fixture.answer(&grant, 5).await,
            Answer::Allow,
            "back to the terms the grant states"
        );
    }

    #[tokio::test]
    async fn the_grant_alone_cannot_deny_entitlement() {
        let fixture = setup(&[1, 2]).await;
        let other =
            fixture.grant(json!({"grants": [{"product_id": "P-101", "actions": ["order"]}]}));
        let chain = Chain::new(vec![Arc::new(fixture.source)]);
        let query = Query {
            grant: Some(&other),
            ..query()
        };
        assert_eq!(
            chain.decide(&query).await,
            Decision::Undecided(vec![Reason {
                source: SourceKind::Grant,
                reason: "does not cover this product".into()
            }])
        );
    }
}
