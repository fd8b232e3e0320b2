//! The Python example client (`clients/python/demo.py`, stubs generated from
//! `proto/` by grpcio-tools) walks the demo flow against a live mesh and reads
//! the typed `google.rpc.ErrorInfo` of a refusal with grpcio-status.

use std::path::{Path, PathBuf};

use tokenmesh_tests::{Mesh, output_within_deadline, tool_on_path};
use tokio::process::Command;

/// A Python with `clients/python/requirements.txt` installed: `TOKENMESH_PYTHON`
/// if set (a virtualenv's), else `python3` on PATH. Without the packages the
/// test skips locally and fails in CI (`.ci/run` installs them).
async fn python() -> Option<PathBuf> {
    let python = match std::env::var_os("TOKENMESH_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => tool_on_path("python3", "apt-get install python3")?,
    };
    let mut probe = Command::new(&python);
    probe.args(["-c", "import grpc, grpc_tools, grpc_status"]);
    let probe = output_within_deadline("python import probe", probe)
        .await
        .expect("python runs");
    if !probe.status.success() {
        assert!(
            std::env::var_os("CI").is_none(),
            "grpcio, grpcio-tools and grpcio-status are required in CI (.ci/run installs them)"
        );
        eprintln!(
            "SKIPPED: pip install -r clients/python/requirements.txt (or set TOKENMESH_PYTHON)"
        );
        return None;
    }
    Some(python)
}

#[tokio::test]
async fn the_python_example_walks_the_demo_flow_and_reads_error_info() {
    let Some(python) = python().await else { return };
    let mesh = Mesh::start().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/python/demo.py");
    let mut command = Command::new(python);
    command
        .arg(script)
        .args(["--auth", &mesh.auth_addr().to_string()])
        .args(["--products", &mesh.products_addr().to_string()])
        .args(["--orders", &mesh.orders_addr().to_string()]);
    let output = output_within_deadline("demo.py", command)
        .await
        .expect("demo.py runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    assert!(
        lines[0].starts_with("1. logged in as alice: Bearer token, expires in "),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("2. products: P-100, P-101, P-102; grant of "),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("3. ordered P-100: order ord_")
            && lines[2].ends_with(", decided by ENTITLEMENT_SOURCE_GRANT"),
        "{stdout}"
    );
    assert_eq!(
        lines[3..],
        [
            "4. P-104 refused: PERMISSION_DENIED: not entitled to product P-104",
            "5. no token refused: UNAUTHENTICATED, ErrorInfo reason TOKEN_MISSING (domain tokenmesh.dev)",
        ],
        "{stdout}"
    );
    mesh.shutdown().await;
}
