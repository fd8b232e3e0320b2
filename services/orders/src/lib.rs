//! tokenmesh's Orders service: places orders only for products the caller is
//! entitled to, decided by the entitlement grant in the request body when it is
//! conclusive, else by asking Products; idempotent by `request_id`.

#![forbid(unsafe_code)]

mod entitlement;
mod error;
mod service;
mod store;

pub use entitlement::Grant;
pub use error::OrdersError;
pub use service::{OrdersConfig, OrdersService};
pub use store::Store;
