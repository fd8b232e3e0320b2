//! tokenmesh's Orders service: places orders only for products the caller is
//! entitled to — decided by a chain of sources (the grant in the request body,
//! a replica of Products' entitlements, a call to Products) — idempotent by
//! `request_id`.

#![forbid(unsafe_code)]

mod entitlement;
mod error;
mod group_commit;
mod service;
mod start;
mod store;

pub use entitlement::{ChainConfig, Grant, SourceKind, Terms};
pub use error::OrdersError;
pub use service::{OrdersConfig, OrdersDeps, OrdersService};
pub use start::{Args, ClientSecretArgs, Peers, SERVICE_CLIENT, start};
pub use store::{ReplicaChange, ReplicaEntry, SCHEMA, Store, StoreError};
