//! Test support for every crate's tests (feature `testing`): a fresh PostgreSQL
//! database per test, and [`on_each_store!`](crate::on_each_store), which runs a
//! store test on SQLite and on PostgreSQL.

/// A fresh PostgreSQL database for one test, on the server named by
/// `TOKENMESH_TEST_DATABASE_URL`. It is dropped when this value is, even when the
/// test panics; [`TestDatabase::drop_database`] drops it explicitly and fails
/// loudly if it cannot.
#[derive(Debug)]
pub struct TestDatabase {
    /// Its URL.
    pub url: String,
    admin_url: String,
    name: String,
    dropped: bool,
}

impl TestDatabase {
    /// Creates the database; `None` (and a loud SKIPPED line) when the variable is
    /// not set. CI sets it, so there a missing variable is a failure.
    pub async fn create() -> Option<Self> {
        Self::create_from("TOKENMESH_TEST_DATABASE_URL").await
    }

    /// Like [`TestDatabase::create`], on the server named by `variable`.
    pub async fn create_from(variable: &str) -> Option<Self> {
        let Ok(admin_url) = std::env::var(variable) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must set {variable} (.ci/run sets TOKENMESH_TEST_DATABASE_URL)"
            );
            eprintln!("SKIPPED: PostgreSQL test; set {variable} to run it");
            return None;
        };
        sqlx::any::install_default_drivers();
        let name = format!(
            "tokenmesh_test_{}",
            crate::random_token(9)
                .to_lowercase()
                .replace(['-', '_'], "x")
        );
        let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url)
            .await
            .expect("PostgreSQL reachable");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        // A test's commits need not survive a crash of the PostgreSQL server,
        // and waiting for each WAL flush was most of a commit here (50 commits:
        // 0.26 s with it, 0.09 s without); a mesh start is dozens of commits.
        sqlx::query(&format!(
            "ALTER DATABASE {name} SET synchronous_commit = off"
        ))
        .execute(&mut admin)
        .await
        .expect("set synchronous_commit");
        let (base, query) = admin_url
            .split_once('?')
            .map_or((admin_url.as_str(), None), |(b, q)| (b, Some(q)));
        let (server, _) = base.rsplit_once('/').expect("URL has a database path");
        let url = match query {
            Some(query) => format!("{server}/{name}?{query}"),
            None => format!("{server}/{name}"),
        };
        Some(Self {
            url,
            admin_url,
            name,
            dropped: false,
        })
    }

    /// Drops the database (connections of the stopped mesh are forced out).
    pub async fn drop_database(mut self) {
        Self::drop_named(&self.admin_url, &self.name)
            .await
            .expect("drop database");
        self.dropped = true;
    }

    async fn drop_named(admin_url: &str, name: &str) -> Result<(), sqlx::Error> {
        let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(admin_url).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await?;
        Ok(())
    }
}

impl Drop for TestDatabase {
    /// A test that panicked never reached `drop_database`: drop the database
    /// here, on a thread of its own with its own runtime (this may run inside
    /// the test's runtime, which is unwinding). Never panics: a panic while
    /// unwinding would abort the whole test binary.
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| error.to_string())?
                .block_on(Self::drop_named(&admin_url, &name))
                .map_err(|error| error.to_string())
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("test database {} not dropped: {error}", self.name),
            Err(_) => eprintln!(
                "test database {} not dropped: the thread panicked",
                self.name
            ),
        }
    }
}

/// Runs each listed test — an `async fn(&str)` taking a database URL, in the
/// calling module — twice: on an in-memory SQLite database (`on_sqlite::…`) and,
/// when `TOKENMESH_TEST_DATABASE_URL` is set, on a fresh PostgreSQL database
/// (`on_postgres::…`, SKIPPED otherwise, dropped even when the test panics).
#[macro_export]
macro_rules! on_each_store {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name("sqlite::memory:").await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(database) = $crate::testing::TestDatabase::create().await else {
                        return;
                    };
                    super::$name(&database.url).await;
                    database.drop_database().await;
                }
            )*
        }
    };
}
