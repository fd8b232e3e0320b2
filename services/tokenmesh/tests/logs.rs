//! What the binary writes to a log that is not a terminal: plain text, no
//! colour codes for a log pipeline to choke on.

use tokio::process::Command;

// The test crate's child-process helper, shared by path (see bench.rs).
#[path = "../../../tests/src/child.rs"]
mod child;

#[tokio::test]
async fn logs_written_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokenmesh"));
    command
        .args(["keys", "rotate", "--offline", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info");
    let output = child::output_within_deadline("tokenmesh keys rotate", command)
        .await
        .expect("tokenmesh runs");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("INFO"), "an INFO line is logged: {log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a piped log: {log:?}"
    );
}
