//! tokenmesh's Products service: the catalogue and who is entitled to what. It
//! lists each caller's products with an entitlement grant — a JWT signed with
//! Products' own key that Orders can verify without calling back.

#![forbid(unsafe_code)]

mod cache;
mod error;
mod grant;
mod service;
mod start;
mod store;
mod terms;
#[cfg(test)]
mod tests;
mod view;
mod watch;

pub use error::ProductsError;
pub use service::{ProductsConfig, ProductsService};
pub use store::{
    ChangeRecord, EntitlementRecord, FeedChange, GrantedRecord, ProductRecord, SCHEMA,
    SnapshotAfter, Store, StoreError,
};
pub use terms::Terms;
pub use watch::Compaction;
// Kept for the crates that name them here; their home is `tokenmesh_proto::names`.
pub use start::{Args, ClientSecretArgs, Peers, SERVICE_CLIENT, open_keys, start};
pub use tokenmesh_proto::names::{
    GRANT_TOKEN_TYPE,
    scope::{
        ENTITLEMENTS_CHECK as ENTITLEMENT_CHECK_SCOPE,
        ENTITLEMENTS_WATCH as ENTITLEMENTS_WATCH_SCOPE,
    },
};

/// The demo catalogue: (id, name, price in cents).
pub const DEMO_PRODUCTS: [(&str, &str, i64); 5] = [
    ("P-100", "Starter plan", 900),
    ("P-101", "Team plan", 4_900),
    ("P-102", "Analytics add-on", 1_500),
    ("P-103", "Priority support", 9_900),
    ("P-104", "Enterprise plan", 49_900),
];

/// The demo entitlements: (subject, product id).
pub const DEMO_ENTITLEMENTS: [(&str, &str); 4] = [
    ("alice", "P-100"),
    ("alice", "P-101"),
    ("alice", "P-102"),
    ("bob", "P-101"),
];

/// Seeds the demo catalogue and entitlements; existing rows are left alone.
pub async fn seed_demo(store: &Store) -> Result<(), ProductsError> {
    for (id, name, price_cents) in DEMO_PRODUCTS {
        let product = ProductRecord {
            id: id.into(),
            name: name.into(),
            description: String::new(),
            price_cents,
        };
        store.create_product(&product).await?;
    }
    for (subject, product_id) in DEMO_ENTITLEMENTS {
        store.grant(subject, product_id).await?;
    }
    Ok(())
}
