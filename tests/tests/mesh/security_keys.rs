//! Auth's keys at rest and its discovery document, attacked as a local user or
//! a client would: through the files of the data dir and real sockets. A key
//! is never readable from the data dir or a database dump, a key rotation
//! survives restarts, and discovery never echoes request headers.

use std::{os::unix::fs::PermissionsExt, path::Path, time::Duration};

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use serde_json::Value;
use tokenmesh_interceptor::Clock;
use tokenmesh_proto::auth::v1::{RotateSigningKeyRequest, RotateSigningKeyResponse};
use tokenmesh_tests::{
    ManualClock, Mesh, MeshBuilder, Minter, Storage, bearer_value,
    files::{exposure_of, files_under},
    header_of, http_exchange, http_get, on_sqlite_and_postgres,
};
use tonic::Request;

on_sqlite_and_postgres!(
    a_copied_database_without_its_key_encryption_key_yields_no_signing_key,
    a_restart_after_rotation_never_reactivates_the_retired_key,
    a_key_given_by_flag_is_imported_once_and_never_reactivated,
);

// === keys at rest ===

/// Every form Auth's private key could take in a file: the PEM and each line of
/// its base64 body, the PKCS#8 DER, and the raw Ed25519 seed in binary, base64
/// and base64url (a JWK's `d`).
fn key_material(pem: &str) -> Vec<(String, Vec<u8>)> {
    let lines: Vec<&str> = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let der = STANDARD.decode(lines.concat()).expect("PEM body is base64");
    // PKCS#8 v1 or v2: the seed is the OCTET STRING inside the privateKey
    // OCTET STRING (04 22 04 20 <32 bytes>).
    let at = der
        .windows(4)
        .position(|window| window == [0x04, 0x22, 0x04, 0x20])
        .expect("an Ed25519 PKCS#8 key")
        + 4;
    let seed = der[at..at + 32].to_vec();
    let mut forms = vec![
        ("PEM".to_owned(), pem.as_bytes().to_vec()),
        ("PKCS#8 DER".to_owned(), der),
        (
            "seed base64".to_owned(),
            STANDARD.encode(&seed).into_bytes(),
        ),
        (
            "seed base64url".to_owned(),
            URL_SAFE_NO_PAD.encode(&seed).into_bytes(),
        ),
        ("seed".to_owned(), seed),
    ];
    for (number, line) in lines.iter().enumerate() {
        forms.push((format!("PEM line {}", number + 1), line.as_bytes().to_vec()));
    }
    forms
}

fn name_in(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir)
        .expect("under dir")
        .display()
        .to_string()
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[tokio::test]
async fn no_file_in_the_data_dir_holds_auths_private_key() {
    let mesh = Mesh::start().await;
    // Writes after start-up, so the WAL holds fresh pages as well.
    for user in ["alice", "bob", "admin"] {
        mesh.login(user).await;
    }
    let key = mesh.auth_minter();
    let needles = key_material(key.pem());
    let dir = mesh.data_dir();
    let files = files_under(&dir);
    let names: Vec<String> = files.iter().map(|file| name_in(&dir, file)).collect();
    // On PostgreSQL the database is not in the data dir: the rest holds.
    if mesh.storage() == Storage::Sqlite {
        for expected in ["auth.db", "auth.db-wal", "auth.db-shm"] {
            assert!(names.iter().any(|name| name == expected), "{names:?}");
        }
    }
    let mut found = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).expect("read");
        for (form, needle) in &needles {
            if bytes.windows(needle.len()).any(|window| window == needle) {
                found.push(format!("{} holds the {form}", name_in(&dir, file)));
            }
        }
    }
    assert_eq!(found, Vec::<String>::new());
    mesh.shutdown().await;
}

#[tokio::test]
async fn the_data_dir_is_0700_and_every_file_in_it_0600() {
    let mesh = Mesh::start().await;
    mesh.login("alice").await;
    assert_eq!(exposure_of(&mesh.data_dir()), ("0700".to_owned(), vec![]));
    mesh.shutdown().await;
}

/// What the refusal of a key or secret file open to others says.
fn exposed(path: &Path) -> String {
    format!(
        "{} is open to group or others (mode 0644): a key or secret file must be 0600; \
         chmod 600 it, and replace the secret if anyone else may have read it",
        path.display()
    )
}

#[tokio::test]
async fn a_key_or_secret_file_open_to_others_is_refused_naming_it() {
    let mut mesh = Mesh::start().await;
    let dir = mesh.data_dir();
    mesh.stop().await;
    for name in [
        "products-client-secret",
        "orders-client-secret",
        "key-encryption-key",
    ] {
        let path = dir.join(name);
        set_mode(&path, 0o644);
        let error = mesh.try_start_again().await.expect_err(name);
        assert_eq!(error.to_string(), exposed(&path));
        set_mode(&path, 0o600);
    }
    mesh.try_start_again()
        .await
        .expect("starts with every file 0600");

    // An operator's `--auth-signing-key` must be 0600 too.
    let given = tempfile::tempdir().expect("tempdir");
    let path = given.path().join("auth-key.pem");
    let (_, pem) = tokenmesh_server::SigningKey::generate().expect("key");
    std::fs::write(&path, pem).expect("write key");
    set_mode(&path, 0o644);
    let flag = path.display().to_string();
    let error = mesh
        .open_auth_on(&dir, &["--auth-signing-key", &flag])
        .await
        .expect_err("key open to others");
    assert_eq!(error.to_string(), exposed(&path));
    mesh.shutdown().await;
}

async fn a_copied_database_without_its_key_encryption_key_yields_no_signing_key(
    builder: MeshBuilder,
) {
    let mesh = builder.start().await;
    let kid = mesh.auth_minter().kid().to_owned();
    // The attacker's copy: Auth's database (on PostgreSQL, the database
    // itself), nothing else of the data dir.
    let copy = tempfile::tempdir().expect("tempdir");
    for name in ["auth.db", "auth.db-wal"] {
        let source = mesh.data_dir().join(name);
        if source.exists() {
            std::fs::copy(&source, copy.path().join(name)).expect("copy");
        }
    }
    let error = mesh
        .open_auth_on(copy.path(), &[])
        .await
        .expect_err("no key-encryption key");
    assert_eq!(
        error.to_string(),
        format!(
            "key-encryption key {} does not exist, but the database holds signing keys \
             encrypted under one: give that key (--key-encryption-key FILE)",
            copy.path().join("key-encryption-key").display()
        )
    );
    assert_eq!(
        files_under(copy.path())
            .iter()
            .map(|file| name_in(copy.path(), file))
            .filter(|name| !name.starts_with("auth.db"))
            .collect::<Vec<_>>(),
        Vec::<String>::new(),
        "nothing generated in its place"
    );

    // A key-encryption key of the attacker's own does not open it either.
    let guess = copy.path().join("guessed-kek");
    std::fs::write(&guess, format!("{}\n", STANDARD.encode([7u8; 32]))).expect("write");
    set_mode(&guess, 0o600);
    let flag = guess.display().to_string();
    let error = mesh
        .open_auth_on(copy.path(), &["--key-encryption-key", &flag])
        .await
        .expect_err("wrong key-encryption key");
    assert_eq!(
        error.to_string(),
        format!(
            "signing key {kid}: cannot be decrypted with the key-encryption key {flag}: \
             not the key that encrypted it, or the stored key was altered"
        )
    );
    mesh.shutdown().await;
}

#[tokio::test]
async fn the_key_file_of_an_earlier_version_is_imported_once_then_removed() {
    let mut mesh = Mesh::start().await;
    let legacy = mesh.data_dir().join("auth-signing-key.pem");
    let (_, pem) = tokenmesh_server::SigningKey::generate().expect("key");
    let kid = Minter::from_pem(&pem).kid().to_owned();
    mesh.stop().await;
    tokenmesh_server::start::write_private_file(&legacy, pem.as_bytes()).expect("write");
    mesh.try_start_again().await.expect("starts");
    assert!(!legacy.exists(), "removed once imported");
    assert_eq!(kid_of(&mesh.login("alice").await), kid);

    // The same file put back after a rotation does not take over again.
    let rotated = rotate(&mesh).await;
    mesh.stop().await;
    tokenmesh_server::start::write_private_file(&legacy, pem.as_bytes()).expect("write");
    mesh.try_start_again().await.expect("starts");
    assert!(!legacy.exists(), "removed again");
    assert_eq!(kid_of(&mesh.login("alice").await), rotated.kid);
    mesh.shutdown().await;
}

// === rotation across restarts ===

fn kid_of(token: &str) -> String {
    header_of(token)["kid"].as_str().expect("kid").to_owned()
}

async fn published_kids(mesh: &Mesh) -> (Vec<String>, Vec<String>) {
    let grpc = mesh
        .jwks()
        .await
        .keys
        .into_iter()
        .map(|key| key.kid)
        .collect();
    let (_, body) = http_get(mesh.http_addr(), "/.well-known/jwks.json").await;
    let http: Value = serde_json::from_str(&body).expect("JWKS JSON");
    let http = http["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|key| key["kid"].as_str().expect("kid").to_owned())
        .collect();
    (grpc, http)
}

/// Rotates Auth's signing key as the admin.
async fn rotate(mesh: &Mesh) -> RotateSigningKeyResponse {
    let admin = mesh.login("admin").await;
    let mut request = Request::new(RotateSigningKeyRequest {});
    request
        .metadata_mut()
        .insert("authorization", bearer_value(&admin));
    mesh.auth()
        .await
        .rotate_signing_key(request)
        .await
        .expect("rotates")
        .into_inner()
}

/// Rotates, lets every token of the old key expire (moving the clock), restarts
/// Auth twice: it keeps signing with the rotated-in key and publishes only it.
/// The first key is `given` (by flag), or the one Auth made.
async fn rotate_expire_and_restart(builder: MeshBuilder, given: Option<&str>) {
    let clock = ManualClock::new();
    let ttl = Duration::from_secs(60);
    let mut mesh = builder
        .clock(clock.clone())
        .access_token_ttl(ttl)
        .retired_key_grace(Duration::ZERO)
        .start()
        .await;
    let retired = kid_of(&mesh.login("alice").await);
    if let Some(given) = given {
        assert_eq!(retired, given, "signs with the key given by flag");
    }
    let rotated = rotate(&mesh).await;
    assert_eq!(
        (rotated.retired_kid.as_str(), rotated.retired_kid_expires_at),
        (retired.as_str(), clock.now_unix() + 60)
    );
    clock.advance(ttl + Duration::from_secs(1));

    for _ in 0..2 {
        mesh.restart_auth().await;
        let token = mesh.login("alice").await;
        assert_eq!(kid_of(&token), rotated.kid, "signs with the rotated-in key");
        let only_new = vec![rotated.kid.clone()];
        assert_eq!(published_kids(&mesh).await, (only_new.clone(), only_new));
    }
    mesh.shutdown().await;
}

async fn a_restart_after_rotation_never_reactivates_the_retired_key(builder: MeshBuilder) {
    rotate_expire_and_restart(builder, None).await;
}

async fn a_key_given_by_flag_is_imported_once_and_never_reactivated(builder: MeshBuilder) {
    let (_, pem) = tokenmesh_server::SigningKey::generate().expect("key");
    let given = Minter::from_pem(&pem).kid().to_owned();
    rotate_expire_and_restart(builder.auth_signing_key(&pem), Some(&given)).await;
}

// === discovery ===

/// A GET on Auth's HTTP listener with the `Host` and `X-Forwarded-*` headers an
/// attacker chose.
async fn discovery_with_forged_host(mesh: &Mesh) -> Value {
    let request = "GET /.well-known/openid-configuration HTTP/1.1\r\n\
                   Host: evil.example\r\n\
                   X-Forwarded-Host: evil.example\r\n\
                   X-Forwarded-Proto: http\r\n\
                   Connection: close\r\n\r\n";
    let (head, body) = http_exchange(mesh.http_addr(), request).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(&body).expect("JSON")
}

#[tokio::test]
async fn discovery_ignores_a_forged_host_header() {
    let mesh = Mesh::start().await;
    let discovery = discovery_with_forged_host(&mesh).await;
    assert_eq!(
        (&discovery["issuer"], &discovery["jwks_uri"]),
        (
            &Value::from(tokenmesh_tests::AUTH_ISSUER),
            &Value::from(format!("http://{}/.well-known/jwks.json", mesh.http_addr()))
        )
    );
    mesh.shutdown().await;
}

#[tokio::test]
async fn discovery_answers_the_configured_public_url() {
    let mesh = Mesh::builder()
        .public_url("https://auth.example.com/")
        .start()
        .await;
    let discovery = discovery_with_forged_host(&mesh).await;
    assert_eq!(
        (&discovery["issuer"], &discovery["jwks_uri"]),
        (
            &Value::from(tokenmesh_tests::AUTH_ISSUER),
            &Value::from("https://auth.example.com/.well-known/jwks.json")
        )
    );
    mesh.shutdown().await;
}
