//! The data dir as the `tokenmesh` binary leaves it: readable by its owner only,
//! whatever the umask of the shell that started it; key files open to others
//! are refused before anything is served.

use std::{os::unix::fs::PermissionsExt, path::Path, process::Output};

use tokio::process::Command;

// The test crate's child-process and data-dir helpers, shared by path (see bench.rs).
#[path = "../../../tests/src/child.rs"]
mod child;
#[path = "../../../tests/src/files.rs"]
mod files;

/// `tokenmesh keys rotate` — Auth's whole start-up (data dir, database, keys),
/// then one write — started with the permissive umask of a default shell.
async fn keys_rotate(data_dir: &Path, extra: &[&str]) -> Output {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"umask 022 && exec "$@""#)
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_tokenmesh"))
        .args(["keys", "rotate", "--offline", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "warn");
    child::output_within_deadline("tokenmesh keys rotate", command)
        .await
        .expect("tokenmesh runs")
}

#[tokio::test]
async fn the_binary_makes_its_data_dir_0700_and_every_file_in_it_0600() {
    let parent = tempfile::tempdir().expect("tempdir");
    let data_dir = parent.path().join("tokenmesh-data");
    for _ in 0..2 {
        let output = keys_rotate(&data_dir, &[]).await;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let files = files::files_under(&data_dir);
    assert!(
        files.iter().any(|file| file.ends_with("auth.db")),
        "{files:?}"
    );
    assert_eq!(files::exposure_of(&data_dir), ("0700".to_owned(), vec![]));
}

#[tokio::test]
async fn the_binary_refuses_a_signing_key_file_open_to_others_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("operator-key.pem");
    // `openssl genpkey -algorithm ED25519` output, the RFC 8037 key.
    let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";
    std::fs::write(&key, pem).expect("write key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let output = keys_rotate(
        &dir.path().join("data"),
        &["--auth-signing-key", &key.display().to_string()],
    )
    .await;
    assert!(!output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        format!(
            "tokenmesh: opening Auth's store: {} is open to group or others (mode 0644): \
             a key or secret file must be 0600; chmod 600 it, and replace the secret if \
             anyone else may have read it",
            key.display()
        )
    );
}
