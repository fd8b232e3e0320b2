//! Database pools. One code path for SQLite (embedded default) and PostgreSQL:
//! sqlx's `Any` driver, with SQL that both dialects accept. On PostgreSQL each
//! service lives in its own schema (`auth`, `products`, `orders`), so all three
//! can share one database; their `_sqlx_migrations` tables never meet.

use std::{path::Path, str::FromStr};

use futures::FutureExt;
use sqlx::{
    AnyConnection, AnyPool, Connection, Executor, any::AnyPoolOptions, sqlite::SqliteConnectOptions,
};

use crate::private_file::restrict_to_owner;

/// Why a service's store operation failed: every store speaks this.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Too many concurrent writers kept colliding.
    #[error("contention on {0}")]
    Contention(&'static str),
}

impl StoreError {
    /// Whether the database was out of reach rather than the operation wrong: a
    /// connection lost or refused (a restarted or failed-over server,
    /// `pg_terminate_backend`), or no connection free in time. A retry may
    /// succeed, so services answer it with UNAVAILABLE, not INTERNAL.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Database(error) => match error {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
                // SQLSTATE class 08 (connection exception) and 57P01–57P03
                // (admin shutdown, crash shutdown, cannot connect now).
                sqlx::Error::Database(error) => error
                    .code()
                    .is_some_and(|code| code.starts_with("08") || code.starts_with("57P0")),
                _ => false,
            },
            Self::Migrate(_) | Self::Contention(_) => false,
        }
    }

    /// The status of an unavailable database (see [`StoreError::is_unavailable`]),
    /// logged once here.
    pub fn unavailable_status(&self) -> tonic::Status {
        tracing::warn!(error = %self, "database unavailable");
        tonic::Status::unavailable("database unavailable; retry")
    }
}

/// Opens `schema`'s pool on `url` (`sqlite://…` or `postgres://…`).
///
/// On PostgreSQL the schema is created if missing and is the only one on every
/// connection's `search_path`, so the service's tables and its
/// `_sqlx_migrations` live there, whatever else shares the database. SQLite has
/// one file per service and ignores `schema`: its files are created if missing,
/// readable by this user only, and switched to WAL, so readers never wait for a
/// writer; deleted rows are overwritten (`secure_delete`), so that what was
/// deleted cannot be read back from the file.
pub async fn connect(url: &str, schema: &'static str) -> Result<AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    assert!(
        !schema.is_empty() && schema.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        "schema names are lowercase identifiers"
    );
    let sqlite = url.starts_with("sqlite:");
    if sqlite {
        make_sqlite_files_private(url)?;
    } else {
        create_schema(url, schema).await?;
    }
    let pool = AnyPoolOptions::new()
        .max_connections(if sqlite { 1 } else { 16 })
        .after_connect(move |connection, _| {
            async move {
                if sqlite {
                    connection.execute("PRAGMA secure_delete = ON").await?;
                } else {
                    connection
                        .execute(format!("SET search_path TO \"{schema}\"").as_str())
                        .await?;
                }
                Ok(())
            }
            .boxed()
        })
        .connect(url)
        .await?;
    if sqlite {
        sqlx::query("PRAGMA journal_mode=WAL")
            .execute(&pool)
            .await?;
    }
    Ok(pool)
}

/// Creates `schema` if missing. Two replicas starting at once would both try
/// (`IF NOT EXISTS` does not stop the loser of that race failing on the
/// catalogue's unique index), so the creation holds a transaction-scoped
/// advisory lock; migrations then take sqlx's own lock.
async fn create_schema(url: &str, schema: &str) -> Result<(), sqlx::Error> {
    /// The advisory lock key of schema creation ("tokenmesh" in ASCII, folded).
    const SCHEMA_LOCK: i64 = 0x746f_6b65_6e6d_6573;
    let mut connection = AnyConnection::connect(url).await?;
    let mut transaction = connection.begin().await?;
    sqlx::query("SELECT 1 FROM pg_advisory_xact_lock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *transaction)
        .await?;
    transaction
        .execute(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"").as_str())
        .await?;
    transaction.commit().await?;
    connection.close().await
}

/// Creates the SQLite database file 0600 before SQLite does (it would make it
/// 0644 less the umask), and narrows an existing one and its `-wal` and `-shm`
/// files to 0600: SQLite gives the `-wal` and `-shm` files it creates the
/// database file's mode.
fn make_sqlite_files_private(url: &str) -> Result<(), sqlx::Error> {
    let options = SqliteConnectOptions::from_str(url)?;
    let path = options.get_filename();
    if url.contains("mode=memory") || path.to_string_lossy().starts_with(':') {
        return Ok(());
    }
    let io = |source: std::io::Error| sqlx::Error::Io(source);
    let mut create = std::fs::OpenOptions::new();
    create.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut create, 0o600);
    if !path.exists() && url.contains("mode=rwc") {
        create.open(path).map_err(io)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        if restrict_to_owner(Path::new(&file)).map_err(io)? {
            tracing::warn!(path = %Path::new(&file).display(), "database file was open to group or others: now 0600");
        }
    }
    Ok(())
}

/// The URL of an SQLite database file, created on first connect.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// `url` without its password, for messages and logs.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => format!("{scheme}://{credentials}@{host}"),
    }
}

/// How many times a feed write is tried while other writers take its sequence
/// number.
pub const FEED_APPEND_ATTEMPTS: usize = 8;

/// Feeds (revocations, entitlement events) append at `MAX(seq) + 1` — portable
/// across SQLite and PostgreSQL — so two concurrent writers may pick the same
/// number. `attempt` runs one whole transaction ending in the append and answers
/// `Ok(None)` when the append lost that race ([`appended`]); it is tried again,
/// up to [`FEED_APPEND_ATTEMPTS`] times. `Ok(None)` after that: contention.
pub async fn retry_feed_write<T, E, Fut>(mut attempt: impl FnMut() -> Fut) -> Result<Option<T>, E>
where
    Fut: Future<Output = Result<Option<T>, E>>,
{
    for _ in 0..FEED_APPEND_ATTEMPTS {
        if let Some(done) = attempt().await? {
            return Ok(Some(done));
        }
    }
    Ok(None)
}

/// Makes this transaction's append to the feed `table` wait until every other
/// appender has committed; call it right before the append, the transaction's
/// last write. On PostgreSQL concurrent appenders otherwise all read the same
/// `MAX(seq)`, and under load one loses that race [`FEED_APPEND_ATTEMPTS`]
/// times (16 concurrent grants were answered INTERNAL). The lock mode conflicts
/// with writers of the table only, not readers. SQLite has one writer
/// connection: nothing to do.
pub async fn lock_feed(
    transaction: &mut AnyConnection,
    table: &'static str,
) -> Result<(), sqlx::Error> {
    if transaction.backend_name() == "PostgreSQL" {
        transaction
            .execute(format!("LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE").as_str())
            .await?;
    }
    Ok(())
}

/// A feed append's result: `Ok(None)` when another writer took the sequence
/// number (a unique violation), for [`retry_feed_write`] to try again.
pub fn appended<T>(result: Result<T, sqlx::Error>) -> Result<Option<T>, sqlx::Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(error) if is_unique_violation(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Whether `error` is a unique-constraint violation (a lost insert race).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_is_unavailable_and_a_wrong_query_is_not() {
        let lost = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(StoreError::Database(sqlx::Error::Io(lost)).is_unavailable());
        assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(!StoreError::Database(sqlx::Error::RowNotFound).is_unavailable());
        assert!(!StoreError::Contention("orders").is_unavailable());
        let status = StoreError::Database(sqlx::Error::PoolClosed).unavailable_status();
        assert_eq!(
            (status.code(), status.message()),
            (tonic::Code::Unavailable, "database unavailable; retry")
        );
    }
}
