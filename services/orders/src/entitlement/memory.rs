//! The replica's copy in memory: every product and every (subject, product)
//! entry the feed carried — what its tables hold — so that deciding an order
//! reads no database. The store stays the durable copy it is loaded from.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use crate::store::{ReplicaChange, ReplicaEntry};

use super::Terms;

/// The replica's tables, in memory, at a feed position.
#[derive(Debug, Default)]
pub struct Memory {
    /// The feed position applied.
    cursor: i64,
    /// Every product the feed created; entries share these ids.
    products: HashSet<Arc<str>>,
    /// Each subject's entries, sorted by product id: few per subject, so a
    /// sorted vector costs less than a map per subject.
    subjects: HashMap<Box<str>, Vec<(Arc<str>, Entry)>>,
}

/// One row of `replica_entitlements`, without its key.
#[derive(Debug, Clone, Copy)]
struct Entry {
    granted: bool,
    changed_at: i64,
    seq: i64,
    terms: Terms,
}

impl Memory {
    /// The copy that `changes` (each at its feed position, in order) build,
    /// caught up at `cursor`.
    pub fn from_changes(changes: &[(ReplicaChange, i64)], cursor: i64) -> Self {
        let mut memory = Self::default();
        for (change, seq) in changes {
            memory.apply(change, *seq);
        }
        memory.cursor = cursor;
        memory
    }

    /// The feed position applied.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// Applies `change`, made at feed position `seq`, as the store's upsert does.
    pub fn apply(&mut self, change: &ReplicaChange, seq: i64) {
        self.cursor = seq;
        match change {
            ReplicaChange::Product { product_id } => {
                if !self.products.contains(product_id.as_str()) {
                    self.products.insert(Arc::from(product_id.as_str()));
                }
            }
            ReplicaChange::Entitlement {
                subject,
                product_id,
                granted,
                changed_at,
                terms,
            } => {
                let entry = Entry {
                    granted: *granted,
                    changed_at: *changed_at,
                    seq,
                    terms: *terms,
                };
                let product = self.product_id(product_id);
                let entries = match self.subjects.get_mut(subject.as_str()) {
                    Some(entries) => entries,
                    None => self.subjects.entry(subject.as_str().into()).or_default(),
                };
                match entries.binary_search_by(|(id, _)| id.as_ref().cmp(product_id)) {
                    Ok(at) => entries[at].1 = entry,
                    Err(at) => entries.insert(at, (product, entry)),
                }
            }
        }
    }

    /// What the store's `replica_lookup` answers for `subject` and `product_id`.
    pub fn lookup(&self, subject: &str, product_id: &str) -> ReplicaEntry {
        if !self.products.contains(product_id) {
            return ReplicaEntry::UnknownProduct;
        }
        let entry = self.subjects.get(subject).and_then(|entries| {
            let at = entries
                .binary_search_by(|(id, _)| id.as_ref().cmp(product_id))
                .ok()?;
            Some(entries[at].1)
        });
        match entry {
            None => ReplicaEntry::NeverGranted,
            Some(entry) => ReplicaEntry::Known {
                granted: entry.granted,
                changed_at: entry.changed_at,
                seq: entry.seq,
                terms: entry.terms,
            },
        }
    }

    /// The shared id of a known product, else a new one.
    fn product_id(&self, product_id: &str) -> Arc<str> {
        self.products
            .get(product_id)
            .cloned()
            .unwrap_or_else(|| Arc::from(product_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: &str) -> ReplicaChange {
        ReplicaChange::Product {
            product_id: id.into(),
        }
    }

    fn entitlement(subject: &str, product_id: &str, granted: bool) -> ReplicaChange {
        ReplicaChange::Entitlement {
            subject: subject.into(),
            product_id: product_id.into(),
            granted,
            changed_at: 100,
            terms: Terms::default(),
        }
    }

    #[test]
    fn the_copy_answers_as_the_tables_do() {
        let mut memory = Memory::from_changes(
            &[
                (product("P-2"), 1),
                (product("P-1"), 2),
                (entitlement("alice", "P-2", true), 3),
                (entitlement("alice", "P-1", true), 4),
            ],
            4,
        );
        assert_eq!(memory.cursor(), 4);
        assert_eq!(memory.lookup("alice", "P-9"), ReplicaEntry::UnknownProduct);
        assert_eq!(memory.lookup("bob", "P-1"), ReplicaEntry::NeverGranted);
        let known = |granted, seq| ReplicaEntry::Known {
            granted,
            changed_at: 100,
            seq,
            terms: Terms::default(),
        };
        assert_eq!(memory.lookup("alice", "P-1"), known(true, 4));
        assert_eq!(memory.lookup("alice", "P-2"), known(true, 3));

        memory.apply(&entitlement("alice", "P-1", false), 5);
        assert_eq!(memory.lookup("alice", "P-1"), known(false, 5), "upserted");
        assert_eq!(memory.lookup("alice", "P-2"), known(true, 3));
        assert_eq!(memory.cursor(), 5);

        // An entitlement the feed carried before its product: the product is
        // still unknown until created, as in the tables' join.
        memory.apply(&entitlement("bob", "P-3", true), 6);
        assert_eq!(memory.lookup("bob", "P-3"), ReplicaEntry::UnknownProduct);
        memory.apply(&product("P-3"), 7);
        assert_eq!(memory.lookup("bob", "P-3"), known(true, 6));
    }
}
