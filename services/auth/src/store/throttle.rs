//! The login throttle's rows: per name hash, failures since the last success,
//! attempts in flight and the lock, each change one atomic statement that
//! SQLite and PostgreSQL both run (`INSERT … ON CONFLICT … DO UPDATE … WHERE`),
//! so that concurrent attempts on every replica share one budget.

use super::{Store, StoreError};

/// How a failure locks a name.
#[derive(Debug, Clone, Copy)]
pub struct Lock {
    /// Now, Unix milliseconds.
    pub now_ms: i64,
    /// Failures allowed before each failure locks.
    pub free_failures: i64,
    /// The delay of the first failure that locks, in milliseconds.
    pub first_delay_ms: i64,
    /// The longest delay, in milliseconds.
    pub max_delay_ms: i64,
}

/// The times and limits of one reservation.
#[derive(Debug, Clone, Copy)]
pub struct Reservation {
    /// Now, Unix seconds.
    pub now: i64,
    /// Now, Unix milliseconds (locks are kept in milliseconds).
    pub now_ms: i64,
    /// Failures allowed before each failure locks.
    pub free_failures: i64,
    /// A reservation made before this is presumed lost (its replica died).
    pub stale_before: i64,
    /// When the row is forgotten if nothing touches it again.
    pub expires_at: i64,
}

impl Store {
    /// Takes an attempt's slot for `name_hash`: `true`, or `false` while it is
    /// locked or the attempts in flight would, if they all failed, use up the
    /// free failures (after those, one attempt at a time).
    pub async fn reserve_login_attempt(
        &self,
        name_hash: &str,
        at: Reservation,
    ) -> Result<bool, StoreError> {
        let reserved: Option<String> = sqlx::query_scalar(
            "INSERT INTO login_throttle \
                 (name_hash, failures, in_flight, reserved_at, delay_ms, locked_until, expires_at) \
             VALUES ($1, 0, 1, $2, 0, 0, $6) \
             ON CONFLICT (name_hash) DO UPDATE SET \
                 failures = CASE WHEN login_throttle.expires_at <= $2 THEN 0 \
                            ELSE login_throttle.failures END, \
                 in_flight = CASE WHEN login_throttle.expires_at <= $2 \
                                    OR login_throttle.reserved_at < $5 THEN 1 \
                             ELSE login_throttle.in_flight + 1 END, \
                 delay_ms = CASE WHEN login_throttle.expires_at <= $2 THEN 0 \
                            ELSE login_throttle.delay_ms END, \
                 locked_until = CASE WHEN login_throttle.expires_at <= $2 THEN 0 \
                                ELSE login_throttle.locked_until END, \
                 reserved_at = $2, \
                 expires_at = $6 \
             WHERE login_throttle.expires_at <= $2 \
                OR (login_throttle.locked_until <= $3 \
                    AND (CASE WHEN login_throttle.reserved_at < $5 THEN 0 \
                         ELSE login_throttle.in_flight END) \
                        < (CASE WHEN login_throttle.failures + 1 < $4 \
                           THEN $4 - login_throttle.failures ELSE 1 END)) \
             RETURNING name_hash",
        )
        .bind(name_hash)
        .bind(at.now)
        .bind(at.now_ms)
        .bind(at.free_failures)
        .bind(at.stale_before)
        .bind(at.expires_at)
        .fetch_optional(&self.pool)
        .await?;
        Ok(reserved.is_some())
    }

    /// Until when (Unix milliseconds) `name_hash` is locked; 0: not locked.
    pub async fn login_locked_until(&self, name_hash: &str) -> Result<i64, StoreError> {
        let until: Option<i64> =
            sqlx::query_scalar("SELECT locked_until FROM login_throttle WHERE name_hash = $1")
                .bind(name_hash)
                .fetch_optional(&self.pool)
                .await?;
        Ok(until.unwrap_or(0))
    }

    /// Settles an attempt as failed, in one statement (no reservation slips in
    /// between the count and its lock): once the free failures are used up,
    /// each failure locks the name for `lock.first_delay_ms`, then twice the
    /// last delay, up to `lock.max_delay_ms`. The delay imposed, if any
    /// (milliseconds; 0: none).
    pub async fn login_attempt_failed(
        &self,
        name_hash: &str,
        lock: Lock,
    ) -> Result<i64, StoreError> {
        const DELAY: &str = "CASE WHEN failures + 1 < $3 THEN 0 \
             WHEN delay_ms = 0 THEN $4 \
             WHEN delay_ms * 2 > $5 THEN $5 ELSE delay_ms * 2 END";
        let delay: Option<i64> = sqlx::query_scalar(&format!(
            "UPDATE login_throttle SET failures = failures + 1, \
                 in_flight = CASE WHEN in_flight > 0 THEN in_flight - 1 ELSE 0 END, \
                 delay_ms = {DELAY}, \
                 locked_until = CASE WHEN failures + 1 < $3 THEN locked_until \
                                ELSE $2 + ({DELAY}) END \
             WHERE name_hash = $1 RETURNING delay_ms"
        ))
        .bind(name_hash)
        .bind(lock.now_ms)
        .bind(lock.free_failures)
        .bind(lock.first_delay_ms)
        .bind(lock.max_delay_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(delay.unwrap_or(0))
    }

    /// Settles an attempt: a success (`failures` and the lock forgotten) or a
    /// cancellation (`succeeded` false: only its slot is freed).
    pub async fn login_attempt_ended(
        &self,
        name_hash: &str,
        succeeded: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE login_throttle SET \
                 in_flight = CASE WHEN in_flight > 0 THEN in_flight - 1 ELSE 0 END, \
                 failures = CASE WHEN $2 = 1 THEN 0 ELSE failures END, \
                 delay_ms = CASE WHEN $2 = 1 THEN 0 ELSE delay_ms END, \
                 locked_until = CASE WHEN $2 = 1 THEN 0 ELSE locked_until END \
             WHERE name_hash = $1",
        )
        .bind(name_hash)
        .bind(i64::from(succeeded))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets the rows untouched past their expiry; how many.
    pub async fn prune_login_throttle(&self, now: i64) -> Result<u64, StoreError> {
        let pruned = sqlx::query("DELETE FROM login_throttle WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(pruned.rows_affected())
    }
}
