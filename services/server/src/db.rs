//! Database pools. One code path for SQLite (embedded default) and PostgreSQL:
//! sqlx's `Any` driver, with SQL that both dialects accept.

use std::path::Path;

use sqlx::{AnyPool, any::AnyPoolOptions};

/// Opens a pool on `url` (`sqlite://…` or `postgres://…`). SQLite files are
/// created if missing and switched to WAL, so readers never wait for a writer.
pub async fn connect(url: &str) -> Result<AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let sqlite = url.starts_with("sqlite:");
    let pool = AnyPoolOptions::new()
        .max_connections(if sqlite { 1 } else { 16 })
        .connect(url)
        .await?;
    if sqlite {
        sqlx::query("PRAGMA journal_mode=WAL")
            .execute(&pool)
            .await?;
    }
    Ok(pool)
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

/// Whether `error` is a unique-constraint violation (a lost insert race).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}
