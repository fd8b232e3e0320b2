//! The Kubernetes manifests in `deploy/kubernetes`: valid against the
//! Kubernetes schemas (`kubernetes-validate`, strict), and every variable they
//! set is one the service they run reads.

use std::path::{Path, PathBuf};

use tokio::process::Command;

// The test crate's child-process helper, shared by path (see bench.rs).
#[path = "../../../tests/src/child.rs"]
mod child;

fn manifests() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// `kubernetes-validate` on PATH (CI installs it).
fn kubernetes_validate() -> Option<PathBuf> {
    child::tool_on_path("kubernetes-validate", "pip install kubernetes-validate")
}

#[tokio::test]
async fn the_manifests_are_valid_against_the_kubernetes_schemas() {
    let Some(validate) = kubernetes_validate() else {
        return;
    };
    let files = manifests();
    let mut command = Command::new(validate);
    command.arg("--strict").args(&files);
    let output = child::output_within_deadline("kubernetes-validate", command)
        .await
        .expect("kubernetes-validate runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Every object of every file was checked, not skipped.
    let passed = report
        .lines()
        .filter(|line| line.contains(" passed "))
        .count();
    let kinds = [
        "kind: Deployment",
        "kind: Service",
        "kind: PodDisruptionBudget",
    ];
    let objects: usize = files
        .iter()
        .map(|file| {
            std::fs::read_to_string(file)
                .expect("manifest")
                .lines()
                .filter(|line| line.starts_with("kind: "))
                .count()
        })
        .sum();
    assert_eq!(passed, objects, "{report}");
    for service in ["auth", "products", "orders"] {
        for kind in kinds {
            let object = format!("{}/{service} ", kind["kind: ".len()..].to_lowercase());
            assert!(report.contains(&object), "{object} validated: {report}");
        }
    }
}

/// The `TOKENMESH_…` names a manifest sets, and the service it serves.
fn service_and_variables(manifest: &str) -> Option<(String, Vec<String>)> {
    let service = manifest.lines().find_map(|line| {
        let args = line.trim().strip_prefix("args: [\"serve\", \"")?;
        Some(args.strip_suffix("\"]")?.to_owned())
    })?;
    let variables = manifest
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- name: TOKENMESH_"))
        .map(|name| format!("TOKENMESH_{name}"))
        .collect();
    Some((service, variables))
}

#[tokio::test]
async fn every_variable_a_deployment_sets_is_read_by_its_service() {
    let mut deployments = Vec::new();
    for file in manifests() {
        let text = std::fs::read_to_string(&file).expect("manifest");
        if let Some(found) = service_and_variables(&text) {
            deployments.push(found);
        }
    }
    let services: Vec<&str> = deployments.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(services, ["auth", "orders", "products"]);
    for (service, variables) in deployments {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tokenmesh"));
        command.args(["serve", &service, "--help"]);
        let output = child::output_within_deadline("tokenmesh serve --help", command)
            .await
            .expect("tokenmesh runs");
        assert!(output.status.success());
        let help = String::from_utf8_lossy(&output.stdout);
        for variable in &variables {
            // `[env: NAME=value]`, or `[env: NAME]` for a hidden value.
            let read = [format!("[env: {variable}="), format!("[env: {variable}]")];
            assert!(
                read.iter().any(|shown| help.contains(shown)),
                "serve {service} does not read {variable}"
            );
        }
        // What a replica cannot run without: its address, its database.
        for needed in ["TOKENMESH_LISTEN", "TOKENMESH_DATABASE_URL"] {
            assert!(variables.iter().any(|v| v == needed), "{service}: {needed}");
        }
    }
}

/// `tokenmesh keys rotate` on `data_dir` with `kek` in the environment, as a
/// Deployment hands it over from a Secret.
async fn rotate_with_kek_in_environment(data_dir: &Path, kek: &str) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokenmesh"));
    command
        .args(["keys", "rotate", "--offline", "--data-dir"])
        .arg(data_dir)
        .env("TOKENMESH_KEY_ENCRYPTION_KEY", kek)
        .env("RUST_BACKTRACE", "0");
    child::output_within_deadline("tokenmesh keys rotate", command)
        .await
        .expect("tokenmesh runs")
}

#[tokio::test]
async fn a_key_encryption_key_in_the_environment_seals_the_keys_and_no_file_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let kek = "q3Jd0VYQbJ6g8m1h6P2xk0Q7mZ1nS4tU9vW2yA5bC8E=";
    for _ in 0..2 {
        let output = rotate_with_kek_in_environment(&data_dir, kek).await;
        let log = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{log}");
        assert!(!log.contains(kek), "the key is never logged: {log}");
    }
    assert!(
        !data_dir.join("key-encryption-key").exists(),
        "no key-encryption key file beside the one given"
    );

    let other = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let output = rotate_with_kek_in_environment(&data_dir, other).await;
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        log.contains(
            "cannot be decrypted with the key-encryption key $TOKENMESH_KEY_ENCRYPTION_KEY"
        ),
        "{log}"
    );
    let output = rotate_with_kek_in_environment(&data_dir, "not a key").await;
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        log.contains("key-encryption key $TOKENMESH_KEY_ENCRYPTION_KEY: not 32 bytes in base64"),
        "{log}"
    );
    assert!(
        !log.contains("not a key"),
        "the value is never echoed: {log}"
    );
}
