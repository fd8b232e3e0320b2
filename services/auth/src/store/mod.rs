//! Auth's tables — users, sessions (refresh-token families), the revocation feed,
//! service clients and signing keys — on SQLite or PostgreSQL with the same SQL.
//! The store speaks in its own records and [`StoreError`]: it neither hashes nor
//! reads the clock; callers hand it hashes and times.
//!
//! Every write transaction starts with a write, so that SQLite takes its write
//! lock up front (a read-then-write transaction can fail with "database is
//! locked" under concurrency) and PostgreSQL row locks order concurrent spends.
//!
//! Rows are read into `sqlx::FromRow` records. Under sqlx's `Any` driver `i64`,
//! `String` and `Option<i64>` decode from both databases, but `bool` does not
//! decode from an integer column, so flags such as `users.active` stay `i64`.

mod clients;
mod revocations;
mod sessions;
mod throttle;
mod users;

use sqlx::AnyPool;
use tokenmesh_server::group_commit::GroupCommit;

pub use clients::{DelegationRecord, ServiceClient};
pub use revocations::{Epoch, Revocation};
pub use sessions::{NewRefreshToken, SessionRules, Spend};
pub use throttle::{Lock, Reservation};
pub use users::{NewUserRecord, UserRecord};

pub use tokenmesh_server::db::StoreError;

/// Auth's PostgreSQL schema: its tables and migrations live there, so it can
/// share a database with the other services.
pub const SCHEMA: &str = "auth";

/// Auth's storage.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// Refresh-token spends, committed in groups.
    rotations: GroupCommit<sessions::Rotation>,
}

impl Store {
    /// The signing keys' table, for the key ring.
    pub fn signing_keys(&self) -> tokenmesh_server::KeyTable {
        tokenmesh_server::KeyTable::new(self.pool.clone(), tokenmesh_server::wakeups::SIGNING_KEYS)
    }

    /// Connects to `database_url` and brings the schema up to date (on
    /// PostgreSQL, in the schema [`SCHEMA`]).
    pub async fn open(database_url: &str) -> Result<Self, StoreError> {
        let pool = tokenmesh_server::db::connect(database_url, SCHEMA).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self {
            rotations: GroupCommit::start(pool.clone()),
            pool,
        })
    }
}
