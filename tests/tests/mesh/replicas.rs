//! Two Auth replicas on one store agree on everything shared: one signing key
//! set (generated once, under the store's one-signer index), rotation,
//! revocations enforced by every replica's own checks, one login throttle.
//! Products' grant keys: `replicas_products`.

use std::time::Duration;

use tokenmesh_proto::auth::v1::{
    CreateUserRequest, DeactivateUserRequest, GetJwksRequest, RotateSigningKeyRequest,
    auth_service_client::AuthServiceClient,
};
use tokenmesh_server::KeyEncryptionKey;
use tokenmesh_tests::calls::{assert_status, assert_throttled, login, with_bearer};
use tokenmesh_tests::{
    ManualClock, MeshBuilder, Replica, TestDatabase, eventually, header_of, on_sqlite_and_postgres,
};
use tonic::{Code, transport::Channel};

on_sqlite_and_postgres!(
    rotation_on_one_replica_is_seen_by_the_other,
    a_deactivated_admin_cannot_create_users_through_another_replica,
    a_replica_whose_key_encryption_key_cannot_open_the_keys_refuses_to_start,
    failed_logins_split_across_replicas_hit_one_budget,
);

/// How long a test waits for something another replica wrote to arrive: a
/// bound for what never arrives, not a speed goal.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

pub(crate) fn kid_of(token: &str) -> String {
    header_of(token)["kid"].as_str().expect("kid").to_owned()
}

async fn published_kids(auth: &mut AuthServiceClient<Channel>) -> Vec<String> {
    let jwks = auth
        .get_jwks(GetJwksRequest {})
        .await
        .expect("jwks")
        .into_inner();
    jwks.keys.into_iter().map(|key| key.kid).collect()
}

fn create(username: &str, scopes: &str) -> CreateUserRequest {
    CreateUserRequest {
        username: username.into(),
        password: format!("{username}-password"),
        scopes: scopes.into(),
    }
}

/// Starts two Auth replicas at once on the empty database `url`, sharing one
/// key-encryption key: both publish the one key exactly one of them generated.
async fn replicas_started_at_once_share_one_key(url: &str) {
    let kek_dir = tempfile::tempdir().expect("tempdir");
    let kek = kek_dir.path().join("kek");
    KeyEncryptionKey::create(&kek).expect("kek");
    let flags = [
        "--auth-database-url".to_owned(),
        url.to_owned(),
        "--key-encryption-key".to_owned(),
        kek.display().to_string(),
    ];
    let start = || Replica::start_auth(tempfile::tempdir().expect("tempdir"), &flags, None);
    let (first, second) = tokio::join!(start(), start());
    let (first, second) = (first.expect("first starts"), second.expect("second starts"));
    let first_kids = published_kids(&mut first.auth().await).await;
    assert_eq!(first_kids.len(), 1, "one key generated: {first_kids:?}");
    assert_eq!(published_kids(&mut second.auth().await).await, first_kids);
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn replicas_started_at_once_on_an_empty_sqlite_database_sign_with_one_key() {
    for _ in 0..3 {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = tokenmesh_server::db::sqlite_url(&dir.path().join("auth.db"));
        // Migrated but empty: sqlx takes no lock to migrate an SQLite file, so
        // two processes cannot migrate one at once (PostgreSQL's migrations
        // take an advisory lock).
        tokenmesh_auth::Store::open(&url).await.expect("migrated");
        replicas_started_at_once_share_one_key(&url).await;
    }
}

#[tokio::test]
async fn replicas_started_at_once_on_an_empty_postgres_database_sign_with_one_key() {
    for _ in 0..3 {
        let Some(database) = TestDatabase::create().await else {
            return;
        };
        replicas_started_at_once_share_one_key(&database.url).await;
        database.drop_database().await;
    }
}

async fn rotation_on_one_replica_is_seen_by_the_other(builder: MeshBuilder) {
    let mesh = builder.start().await;
    let replica = mesh.start_auth_replica().await;
    let (mut first, mut second) = (mesh.auth().await, replica.auth().await);
    let before = login(&mut second, "admin", "admin-demo")
        .await
        .expect("login at replica 2");
    let old_kid = kid_of(&before.access_token);

    let rotated = first
        .rotate_signing_key(with_bearer(
            RotateSigningKeyRequest {},
            &before.access_token,
        ))
        .await
        .expect("rotate at replica 1")
        .into_inner();
    assert_eq!(rotated.retired_kid, old_kid);
    let admin = login(&mut first, "admin", "admin-demo")
        .await
        .expect("login at replica 1")
        .access_token;
    assert_eq!(
        kid_of(&admin),
        rotated.kid,
        "replica 1 signs with its new key"
    );

    // Replica 2 meets the new key in a token it must verify: it reloads the
    // store's keys (it would on its reload interval anyway), accepts the token
    // and signs with that key from then on.
    second
        .create_user(with_bearer(create("carol", ""), &admin))
        .await
        .expect("replica 2 accepts a token signed by the key replica 1 rotated to");
    let after = login(&mut second, "carol", "carol-password")
        .await
        .expect("login at replica 2");
    assert_eq!(kid_of(&after.access_token), rotated.kid);
    let mut published = published_kids(&mut second).await;
    published.sort();
    let mut expected = [rotated.kid.clone(), old_kid];
    expected.sort();
    assert_eq!(
        published, expected,
        "the retired key stays published beside the new one"
    );
    replica.stop().await;
    mesh.shutdown().await;
}

/// The attack: an admin deactivated on replica 1 keeps using a token against
/// replica 2, which loaded its revocations once at start-up.
async fn a_deactivated_admin_cannot_create_users_through_another_replica(builder: MeshBuilder) {
    let mesh = builder.start().await;
    let replica = mesh.start_auth_replica().await;
    let (mut first, mut second) = (mesh.auth().await, replica.auth().await);
    let admin = mesh.login("admin").await;
    first
        .create_user(with_bearer(create("mallory", "admin"), &admin))
        .await
        .expect("second admin created");
    let mallory = login(&mut second, "mallory", "mallory-password")
        .await
        .expect("mallory logs in at replica 2")
        .access_token;
    second
        .create_user(with_bearer(create("before", ""), &mallory))
        .await
        .expect("mallory is an admin at replica 2");

    first
        .deactivate_user(with_bearer(
            DeactivateUserRequest {
                username: "mallory".into(),
            },
            &admin,
        ))
        .await
        .expect("deactivated at replica 1");
    let mut attempt = 0;
    let (refusal, took) = eventually(DEADLINE, || {
        attempt += 1;
        let request = with_bearer(create(&format!("sneaky{attempt}"), "admin"), &mallory);
        let mut second = second.clone();
        async move { second.create_user(request).await.err() }
    })
    .await;
    assert_status(
        Err::<(), _>(refusal),
        Code::Unauthenticated,
        "token revoked",
    );
    eprintln!(
        "MEASURED: a deactivation on replica 1 reached replica 2's own checks in {took:?} \
         ({attempt} CreateUser attempts)"
    );
    replica.stop().await;
    mesh.shutdown().await;
}

async fn a_replica_whose_key_encryption_key_cannot_open_the_keys_refuses_to_start(
    builder: MeshBuilder,
) {
    let mesh = builder.start().await;
    let kid = mesh.jwks().await.keys[0].kid.clone();

    // A fresh data dir and no --key-encryption-key: no new key is made up.
    let data_dir = tempfile::tempdir().expect("tempdir");
    let own = data_dir.path().join("key-encryption-key");
    let error = mesh
        .try_start_auth_replica(data_dir, None)
        .await
        .expect_err("no key-encryption key");
    assert_eq!(
        error.to_string(),
        format!(
            "key-encryption key {} does not exist, but the database holds signing keys \
             encrypted under one: give that key (--key-encryption-key FILE)",
            own.display()
        )
    );

    // Another key-encryption key: the stored keys do not open.
    let kek_dir = tempfile::tempdir().expect("tempdir");
    let other = kek_dir.path().join("other-kek");
    KeyEncryptionKey::create(&other).expect("kek");
    let error = mesh
        .try_start_auth_replica(tempfile::tempdir().expect("tempdir"), Some(&other))
        .await
        .expect_err("another key-encryption key");
    assert_eq!(
        error.to_string(),
        format!(
            "signing key {kid}: cannot be decrypted with the key-encryption key {}: not the \
             key that encrypted it, or the stored key was altered",
            other.display()
        )
    );
    mesh.shutdown().await;
}

/// The attack: guesses spread over two replicas, each of which counted only
/// its own share, never reached the budget.
async fn failed_logins_split_across_replicas_hit_one_budget(builder: MeshBuilder) {
    const FREE_FAILURES: u32 = 4;
    const DELAY: Duration = Duration::from_secs(60);
    let clock = ManualClock::new();
    let mesh = builder
        .clock(clock.clone())
        .login_throttle(FREE_FAILURES, DELAY)
        .start()
        .await;
    let replica = mesh.start_auth_replica().await;
    let mut replicas = [mesh.auth().await, replica.auth().await];
    for guess in 0..FREE_FAILURES as usize {
        assert_status(
            login(&mut replicas[guess % 2], "Alice", "guess").await,
            Code::Unauthenticated,
            "invalid username or password",
        );
    }
    for auth in &mut replicas {
        // The budget is used up on every replica.
        let retry = assert_throttled(
            login(auth, "alice", "alice-demo").await,
            "too many failed logins",
        );
        assert_eq!(retry, DELAY, "on the mesh's clock");
    }
    clock.advance(DELAY);
    login(&mut replicas[1], "alice", "alice-demo")
        .await
        .expect("the lock lapsed on the shared clock");

    // One failure fewer, split alike, is within the budget, as on one replica.
    for guess in 0..FREE_FAILURES as usize - 1 {
        assert_status(
            login(&mut replicas[guess % 2], "bob", "guess").await,
            Code::Unauthenticated,
            "invalid username or password",
        );
    }
    login(&mut replicas[0], "bob", "bob-demo")
        .await
        .expect("within the budget");
    replica.stop().await;
    mesh.shutdown().await;
}
