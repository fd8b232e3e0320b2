//! The mesh suite again — every module `tests/mesh/main.rs` lists — with every
//! service on PostgreSQL: each test's [`tokenmesh_tests::Mesh`] gets a fresh
//! database, shared by the three services (each in its schema), dropped after it
//! even when the test panics. The choice is this binary's
//! ([`tokenmesh_tests::Storage::of_this_binary`]), so a test written once runs on
//! both stores. Built only when `TOKENMESH_TEST_DATABASE_URL` is set.

#[cfg(postgres_suite)]
#[path = "mesh/main.rs"]
mod mesh;

/// What only PostgreSQL has: schemas shared in one database.
#[cfg(postgres_suite)]
#[path = "postgres/schemas.rs"]
mod schemas;

/// Without a PostgreSQL server there is nothing to run: say so (CI must have one).
#[cfg(not(postgres_suite))]
#[test]
fn skipped_without_tokenmesh_test_database_url() {
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must set TOKENMESH_TEST_DATABASE_URL (.ci/run sets it)"
    );
    eprintln!(
        "SKIPPED: the PostgreSQL mesh suite; set TOKENMESH_TEST_DATABASE_URL and build again to run it"
    );
}
