//! What an entitlement allows — its actions and the most units per order — as
//! Products stores it, feeds it, answers it and puts it in grants: one value,
//! checked once on the admin's way in.

use tokenmesh_proto::{names::action, products::v1::EntitlementTerms};
use tokenmesh_server::FieldViolation;

/// The actions Products knows, in the order they are stored and sent.
const KNOWN_ACTIONS: [&str; 2] = [action::VIEW, action::ORDER];

/// An entitlement's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    /// Known actions, each once, in [`KNOWN_ACTIONS`] order.
    actions: Vec<&'static str>,
    /// Most units per order; 0 means no limit.
    max_quantity: u32,
}

impl Default for Terms {
    /// What a new entitlement allows: view and order, no limit.
    fn default() -> Self {
        Self {
            actions: action::DEFAULT.to_vec(),
            max_quantity: 0,
        }
    }
}

impl Terms {
    /// Terms an admin asked for: at least one action, each a known one.
    pub fn new(actions: &[String], max_quantity: u32) -> Result<Self, FieldViolation> {
        if actions.is_empty() {
            return Err(FieldViolation::new(
                "actions",
                "at least one is required (revoke the entitlement to allow nothing)",
            ));
        }
        if let Some(at) = actions
            .iter()
            .position(|name| !KNOWN_ACTIONS.contains(&name.as_str()))
        {
            // The value itself is client input of any length: name its position.
            return Err(FieldViolation::new(
                "actions",
                format!("actions[{at}] is not one of view, order"),
            ));
        }
        Ok(Self::known(
            actions.iter().map(String::as_str),
            max_quantity,
        ))
    }

    /// The known actions among `names`, in canonical order.
    fn known<'a>(names: impl Iterator<Item = &'a str> + Clone, max_quantity: u32) -> Self {
        let actions = KNOWN_ACTIONS
            .into_iter()
            .filter(|known| names.clone().any(|name| name == *known))
            .collect();
        Self {
            actions,
            max_quantity,
        }
    }

    /// Whether these are a new entitlement's terms (all a v1 grant can say).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The actions, in canonical order.
    pub fn actions(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.actions.iter().copied()
    }

    /// Whether `action` is granted.
    pub fn allows(&self, action: &str) -> bool {
        self.actions.contains(&action)
    }

    /// Most units per order; 0 means no limit.
    pub fn max_quantity(&self) -> u32 {
        self.max_quantity
    }

    /// The `actions` column: space-separated.
    pub(crate) fn actions_column(&self) -> String {
        self.actions.join(" ")
    }

    /// The terms as stored; unknown words (none are written) are dropped.
    pub(crate) fn from_columns(actions: &str, max_quantity: i64) -> Self {
        // Written from a u32: out of range only if the row was edited by hand,
        // and then the strictest limit is the safe reading.
        let max_quantity = u32::try_from(max_quantity).unwrap_or(1);
        Self::known(actions.split(' '), max_quantity)
    }

    /// The wire form.
    pub fn to_proto(&self) -> EntitlementTerms {
        EntitlementTerms {
            actions: self.actions().map(String::from).collect(),
            max_quantity: self.max_quantity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(actions: &[&str]) -> Vec<String> {
        actions.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn actions_are_kept_once_in_canonical_order() {
        let terms = Terms::new(&names(&["order", "view", "order"]), 2).expect("valid");
        assert_eq!(terms.actions().collect::<Vec<_>>(), ["view", "order"]);
        assert_eq!(terms.actions_column(), "view order");
        assert_eq!(Terms::from_columns("view order", 2), terms);
        assert!(!terms.is_default(), "limited");
        assert!(
            Terms::new(&names(&["view", "order"]), 0)
                .expect("valid")
                .is_default()
        );
        assert_eq!(
            Terms::new(&names(&["order"]), 0).expect("valid").to_proto(),
            EntitlementTerms {
                actions: names(&["order"]),
                max_quantity: 0
            }
        );
    }

    #[test]
    fn no_action_or_an_unknown_one_is_invalid() {
        assert_eq!(
            Terms::new(&[], 2).expect_err("empty").to_string(),
            "actions: at least one is required (revoke the entitlement to allow nothing)"
        );
        assert_eq!(
            Terms::new(&names(&["view", "teleport"]), 0)
                .expect_err("unknown")
                .to_string(),
            "actions: actions[1] is not one of view, order"
        );
    }

    #[test]
    fn a_hand_edited_row_reads_as_strictly_as_possible() {
        let terms = Terms::from_columns("order fly", -5);
        assert_eq!(terms.actions().collect::<Vec<_>>(), ["order"]);
        assert_eq!(terms.max_quantity(), 1);
    }
}
