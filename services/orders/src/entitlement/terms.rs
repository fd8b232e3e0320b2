//! What an entitlement allows an order, however a source learnt it — a grant,
//! the replica, CheckEntitlement — and the one rule every source answers with,
//! so that the same state gets the same decision through each.

use tokenmesh_proto::{claims::v2::ProductGrant, names::action, products::v1::EntitlementTerms};

use super::{Answer, Denial};

/// The part of an entitlement's terms an order depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    /// Whether the `order` action is granted.
    pub order: bool,
    /// Most units per order; 0 means no limit.
    pub max_quantity: u32,
}

impl Default for Terms {
    /// What an entitlement allows unless Products says otherwise (and all a v1
    /// grant or a Products that predates terms can say): order, no limit.
    fn default() -> Self {
        Self {
            order: true,
            max_quantity: 0,
        }
    }
}

impl Terms {
    /// Terms with these actions (unknown ones ignored) and limit.
    pub fn new<'a>(mut actions: impl Iterator<Item = &'a str>, max_quantity: u32) -> Self {
        Self {
            order: actions.any(|name| name == action::ORDER),
            max_quantity,
        }
    }

    /// The terms on the wire; absent means the default.
    pub fn from_proto(terms: Option<&EntitlementTerms>) -> Self {
        terms.map_or_else(Self::default, |terms| {
            Self::new(terms.actions.iter().map(String::as_str), terms.max_quantity)
        })
    }

    /// The terms a v2 product grant states.
    pub fn of_grant(grant: &ProductGrant) -> Self {
        Self::new(grant.actions.iter().map(String::as_str), grant.max_quantity)
    }

    /// The terms as the replica stores them (portable BIGINTs; `may_order` 0/1).
    pub fn from_columns(may_order: i64, max_quantity: i64) -> Self {
        // Written from a u32: anything else is a hand-edited row, read strictly.
        let max_quantity = u32::try_from(max_quantity).unwrap_or(1);
        Self {
            order: may_order != 0,
            max_quantity,
        }
    }

    /// The answer to ordering `quantity` under these terms.
    pub fn answer(&self, quantity: i32) -> Answer {
        if !self.order {
            return Answer::Deny(Denial::OrderNotAllowed);
        }
        let limit = self.max_quantity;
        if limit > 0 && i64::from(quantity) > i64::from(limit) {
            return Answer::Deny(Denial::OverLimit(limit));
        }
        Answer::Allow
    }
}

/// A subject's standing on a product, as the replica or Products knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// No such product.
    UnknownProduct,
    /// Not entitled (never, or revoked).
    NotEntitled,
    /// Entitled, on these terms.
    Entitled(Terms),
}

impl Standing {
    /// The answer to ordering `quantity`.
    pub fn answer(&self, quantity: i32) -> Answer {
        match self {
            Self::UnknownProduct => Answer::Deny(Denial::UnknownProduct),
            Self::NotEntitled => Answer::Deny(Denial::NotEntitled),
            Self::Entitled(terms) => terms.answer(quantity),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_action_then_the_limit_decide() {
        let terms =
            |actions: &[&str], max_quantity| Terms::new(actions.iter().copied(), max_quantity);
        let cases = [
            (terms(&["view", "order"], 0), 1_000, Answer::Allow),
            (terms(&["order", "teleport"], 2), 2, Answer::Allow),
            (terms(&["order"], 2), 3, Answer::Deny(Denial::OverLimit(2))),
            (
                terms(&["view"], 0),
                1,
                Answer::Deny(Denial::OrderNotAllowed),
            ),
            (
                terms(&["view"], 2),
                3,
                Answer::Deny(Denial::OrderNotAllowed),
            ),
        ];
        for (terms, quantity, answer) in cases {
            assert_eq!(terms.answer(quantity), answer, "{terms:?} × {quantity}");
        }
        assert_eq!(
            Standing::NotEntitled.answer(1),
            Answer::Deny(Denial::NotEntitled)
        );
        assert_eq!(
            Standing::UnknownProduct.answer(1),
            Answer::Deny(Denial::UnknownProduct)
        );
    }

    #[test]
    fn absent_terms_are_the_default_and_columns_round_trip() {
        assert_eq!(Terms::from_proto(None), Terms::default());
        let limited = EntitlementTerms {
            actions: vec!["view".into()],
            max_quantity: 2,
        };
        let terms = Terms::from_proto(Some(&limited));
        assert_eq!(
            terms,
            Terms {
                order: false,
                max_quantity: 2
            }
        );
        assert_eq!(Terms::from_columns(0, 2), terms);
        assert_eq!(Terms::from_columns(1, 0), Terms::default());
        assert_eq!(Terms::from_columns(1, -1).max_quantity, 1);
    }
}
