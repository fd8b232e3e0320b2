//! Child processes in tests (grpcurl, the `tokenmesh` CLI, PyJWT) run with a
//! deadline: a hung child fails its test, naming what hung, instead of hanging
//! the suite. Only tokio and std, so that crates the test crate depends on can
//! share this file (`#[path]`) without a dependency cycle.

use std::{
    process::{Output, Stdio},
    time::Duration,
};

/// How long a test lets a child process run before it kills it and fails:
/// generous, so that only a hang trips it, never a slow machine.
pub const CHILD_DEADLINE: Duration = Duration::from_secs(120);

/// Runs `command` to its end with stdin closed and returns its exit status and
/// output, like [`tokio::process::Command::output`]. An error is returned only
/// if it cannot be started or read. A child still running after
/// [`CHILD_DEADLINE`] is killed and the test fails, naming `what` hung.
pub async fn output_within_deadline(
    what: &str,
    command: impl Into<tokio::process::Command>,
) -> std::io::Result<Output> {
    let mut command = command.into();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn()?;
    // On the deadline the child is dropped with the timed-out future: killed.
    let finished = tokio::time::timeout(CHILD_DEADLINE, child.wait_with_output()).await;
    finished.unwrap_or_else(|_| {
        panic!("{what} hung: still running after {CHILD_DEADLINE:?}; killed it")
    })
}

/// A finished child's exit code, stdout and stderr (both UTF-8), for tests that
/// assert all three.
#[allow(
    dead_code,
    reason = "the binary's test files share this file by path; not each reads output"
)]
pub fn code_and_text(output: Output) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = output;
    (
        status.code().expect("exited, not killed by a signal"),
        String::from_utf8(stdout).expect("UTF-8 stdout"),
        String::from_utf8(stderr).expect("UTF-8 stderr"),
    )
}

/// The outside tool `name` on PATH. Missing in CI (`CI` set) fails the test —
/// `.ci/run` installs every tool a test uses; missing locally, the test skips,
/// loudly, saying how to get it (`install`).
#[allow(
    dead_code,
    reason = "the binary's test files share this file by path; not each runs a tool"
)]
pub fn tool_on_path(name: &str, install: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is required in CI (.ci/run installs it)"
        );
        eprintln!("SKIPPED: {name} not found on PATH; install it with `{install}`");
    }
    found
}
