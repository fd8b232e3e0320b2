//! The chain with in-memory sources: every combination of answers, in every
//! order an operator can configure, and the reasons it gives. No sockets.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use tonic::Code;

use super::{
    Answer, Chain, Decision, Denial, Query, Reason, Source, SourceError, SourceKind, Terms,
    reasons, replica,
};
use crate::{Store, store::ReplicaChange};

use SourceKind::{Grant, Replica, Rpc};

/// A query for alice, one of P-100, without a grant.
pub(super) fn query() -> Query<'static> {
    Query {
        subject: "alice",
        product_id: "P-100",
        quantity: 1,
        grant: None,
        access_token: "",
    }
}

/// A replica in a fresh in-memory database, caught up, that knows P-100.
pub(super) async fn replica() -> replica::Replica {
    replica_on("sqlite::memory:").await
}

/// A replica in the fresh database at `url`, caught up, that knows P-100.
pub(super) async fn replica_on(url: &str) -> replica::Replica {
    let store = Store::open(url).await.expect("store");
    let replica = replica::Replica::load(store).await.expect("loaded");
    let product = ReplicaChange::Product {
        product_id: "P-100".into(),
    };
    replica.apply(&product, 1).await.expect("product");
    replica.mark_caught_up();
    replica
}

/// Feeds alice's entitlement to P-100 as changed at `changed_at`.
pub(super) async fn entitle(
    replica: &replica::Replica,
    granted: bool,
    changed_at: i64,
    cursor: i64,
) {
    let change = ReplicaChange::Entitlement {
        subject: "alice".into(),
        product_id: "P-100".into(),
        granted,
        changed_at,
        terms: Terms::default(),
    };
    replica.apply(&change, cursor).await.expect("entitlement");
}

/// What an in-memory source answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Says {
    Allow,
    Deny,
    Inconclusive,
    Error,
    Unsupported,
}

const EVERY_ANSWER: [Says; 5] = [
    Says::Allow,
    Says::Deny,
    Says::Inconclusive,
    Says::Error,
    Says::Unsupported,
];

/// A source that always says the same, and counts how often it was asked.
#[derive(Debug)]
struct Fixed {
    kind: SourceKind,
    says: Says,
    asked: AtomicUsize,
}

#[tonic::async_trait]
impl Source for Fixed {
    fn kind(&self) -> SourceKind {
        self.kind
    }

    async fn answer(&self, _query: &Query<'_>) -> Result<Answer, SourceError> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        match self.says {
            Says::Allow => Ok(Answer::Allow),
            Says::Deny => Ok(Answer::Deny(Denial::NotEntitled)),
            Says::Inconclusive => Ok(Answer::Inconclusive("knows nothing".into())),
            Says::Error => Err(SourceError::Unavailable(Code::Unavailable)),
            Says::Unsupported => Ok(Answer::UnsupportedVersion {
                found: 3,
                accepted: vec![1, 2],
            }),
        }
    }
}

/// The chain over `sources`, and how often each was asked after one decision.
async fn decide(sources: &[(SourceKind, Says)]) -> (Decision, Vec<usize>) {
    let fixed: Vec<Arc<Fixed>> = sources
        .iter()
        .map(|&(kind, says)| {
            Arc::new(Fixed {
                kind,
                says,
                asked: AtomicUsize::new(0),
            })
        })
        .collect();
    let chain = Chain::new(
        fixed
            .iter()
            .map(|source| source.clone() as Arc<dyn Source>)
            .collect(),
    );
    let decision = chain.decide(&query()).await;
    let asked = fixed
        .iter()
        .map(|source| source.asked.load(Ordering::Relaxed))
        .collect();
    (decision, asked)
}

fn reason(source: SourceKind, reason: &str) -> Reason {
    Reason {
        source,
        reason: reason.into(),
    }
}

#[tokio::test]
async fn the_first_conclusive_answer_wins_and_later_sources_are_not_asked() {
    let (decision, asked) = decide(&[
        (Grant, Says::Inconclusive),
        (Replica, Says::Allow),
        (Rpc, Says::Deny),
    ])
    .await;
    assert_eq!(decision, Decision::Allowed(Replica));
    assert_eq!(asked, [1, 1, 0]);
}

#[tokio::test]
async fn a_denial_ends_the_chain() {
    let (decision, asked) = decide(&[
        (Rpc, Says::Error),
        (Replica, Says::Deny),
        (Grant, Says::Allow),
    ])
    .await;
    assert_eq!(
        decision,
        Decision::Denied {
            by: Replica,
            denial: Denial::NotEntitled
        }
    );
    assert_eq!(asked, [1, 1, 0]);
}

#[tokio::test]
async fn no_source_deciding_lists_each_reason_in_the_order_asked() {
    let (decision, asked) = decide(&[
        (Grant, Says::Unsupported),
        (Replica, Says::Inconclusive),
        (Rpc, Says::Error),
    ])
    .await;
    let Decision::Undecided(undecided) = decision else {
        panic!("decided: {decision:?}");
    };
    assert_eq!(
        reasons(&undecided),
        "grant: grant version 3 unsupported; replica: knows nothing; \
         rpc: Products unavailable (Unavailable)"
    );
    assert_eq!(asked, [1, 1, 1]);
}

#[tokio::test]
async fn an_unsupported_version_from_the_only_source_is_its_own_decision() {
    let (decision, _) = decide(&[(Grant, Says::Unsupported)]).await;
    assert_eq!(
        decision,
        Decision::UnsupportedVersion {
            by: Grant,
            found: 3,
            accepted: vec![1, 2]
        }
    );
}

#[tokio::test]
async fn an_unsupported_version_with_sources_behind_it_moves_the_chain_on() {
    let (decision, _) = decide(&[(Grant, Says::Unsupported), (Rpc, Says::Allow)]).await;
    assert_eq!(decision, Decision::Allowed(Rpc));
}

#[tokio::test]
async fn a_chain_without_sources_cannot_decide() {
    assert_eq!(decide(&[]).await, (Decision::Undecided(vec![]), vec![]));
}

#[test]
fn source_errors_read_as_reasons() {
    let errors = [
        SourceError::Unavailable(Code::Unavailable),
        SourceError::Failed(Code::PermissionDenied),
    ];
    assert_eq!(
        errors.map(|error| error.to_string()),
        [
            "Products unavailable (Unavailable)",
            "CheckEntitlement failed (PermissionDenied)",
        ]
    );
}

/// Every order of distinct sources an operator can configure, one to three long.
fn configurations() -> Vec<Vec<SourceKind>> {
    let kinds = [Grant, Replica, Rpc];
    let mut orders: Vec<Vec<SourceKind>> = kinds.iter().map(|&kind| vec![kind]).collect();
    for length in 2..=kinds.len() {
        let shorter: Vec<Vec<SourceKind>> = orders
            .iter()
            .filter(|order| order.len() == length - 1)
            .cloned()
            .collect();
        for order in shorter {
            for kind in kinds.iter().filter(|kind| !order.contains(kind)) {
                orders.push([order.as_slice(), &[*kind]].concat());
            }
        }
    }
    orders
}

/// Every combination of answers for `count` sources.
fn combinations(count: usize) -> Vec<Vec<Says>> {
    (0..count).fold(vec![vec![]], |combinations, _| {
        combinations
            .iter()
            .flat_map(|prefix| EVERY_ANSWER.map(|says| [prefix.as_slice(), &[says]].concat()))
            .collect()
    })
}

/// The rule, source by source: what the chain must decide, and how many
/// sources it asks.
fn specified(sources: &[(SourceKind, Says)]) -> (Decision, usize) {
    let mut undecided = Vec::new();
    for (position, &(kind, says)) in sources.iter().enumerate() {
        let asked = position + 1;
        match says {
            Says::Allow => return (Decision::Allowed(kind), asked),
            Says::Deny => {
                let denial = Denial::NotEntitled;
                return (Decision::Denied { by: kind, denial }, asked);
            }
            Says::Unsupported if sources.len() == 1 => {
                let accepted = vec![1, 2];
                return (
                    Decision::UnsupportedVersion {
                        by: kind,
                        found: 3,
                        accepted,
                    },
                    1,
                );
            }
            Says::Unsupported => {
                undecided.push(reason(kind, &format!("{kind} version 3 unsupported")))
            }
            Says::Inconclusive => undecided.push(reason(kind, "knows nothing")),
            Says::Error => undecided.push(reason(kind, "Products unavailable (Unavailable)")),
        }
    }
    (Decision::Undecided(undecided), sources.len())
}

#[tokio::test]
async fn every_combination_of_answers_in_every_configured_order() {
    let mut cases = 0;
    for order in configurations() {
        for answers in combinations(order.len()) {
            let sources: Vec<(SourceKind, Says)> =
                order.iter().copied().zip(answers.iter().copied()).collect();
            let (decision, asked) = decide(&sources).await;
            let (expected, expected_asked) = specified(&sources);
            assert_eq!(decision, expected, "{sources:?}");
            let expected_asked: Vec<usize> = (0..sources.len())
                .map(|position| usize::from(position < expected_asked))
                .collect();
            assert_eq!(asked, expected_asked, "{sources:?}: who was asked");
            cases += 1;
        }
    }
    // 3 orders of one source × 5 answers, 6 of two × 25, 6 of three × 125.
    assert_eq!(cases, 15 + 150 + 750);
}
