//! One `tokenmesh up --demo` child process of the built binary, logging JSON
//! lines: its addresses read back from its own `mesh up` line, its log parsed
//! line by line, what it printed for a person kept, stopped with SIGTERM. For
//! what only a whole process shows: its log, its traces, its console, the
//! README run against it.

use std::{
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
};

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::{CHILD_DEADLINE, replica_process::tokenmesh_binary};

/// A running `tokenmesh --log-format json up --demo` on free loopback ports.
#[derive(Debug)]
pub struct UpProcess {
    /// Auth's gRPC address.
    pub auth: SocketAddr,
    /// Products' gRPC address.
    pub products: SocketAddr,
    /// Orders' gRPC address.
    pub orders: SocketAddr,
    /// `/metrics` and Auth's JWKS.
    pub http: SocketAddr,
    log: PathBuf,
    stdout: PathBuf,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl UpProcess {
    /// Starts it with `flags` after `up --demo` and `env` (`RUST_LOG`…) added to
    /// its environment, and waits until it logs that the mesh is up. It runs in
    /// [`UpProcess::dir`], its data in `./tokenmesh-data` as after `up` in a
    /// checkout.
    pub async fn start(flags: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("up.log");
        let stdout = dir.path().join("up.out");
        let mut command = Command::new(tokenmesh_binary());
        command
            .args(["--log-format", "json", "up", "--demo"])
            .args(["--data-dir", "tokenmesh-data"])
            .current_dir(dir.path());
        for flag in ["auth-addr", "products-addr", "orders-addr", "http-addr"] {
            command.arg(format!("--{flag}")).arg("127.0.0.1:0");
        }
        command
            .args(flags)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("stdout file"))
            .stderr(File::create(&log).expect("log file"))
            .kill_on_drop(true);
        let mut child = command.spawn().expect("tokenmesh starts");
        let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
        let context = || format!(": the mesh did not come up:\n{}", read_log());
        let up = || {
            let text = read_log();
            let up = text
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .find(|line| line["fields"]["message"] == "mesh up");
            if up.is_none()
                && let Some(status) = child.try_wait().expect("child status")
            {
                panic!("tokenmesh up exited with {status} before the mesh was up:\n{text}");
            }
            std::future::ready(up)
        };
        let (up, _) = crate::eventually_or(CHILD_DEADLINE, context, up).await;
        let addr = |name: &str| -> SocketAddr {
            up["fields"][name]
                .as_str()
                .and_then(|addr| addr.parse().ok())
                .unwrap_or_else(|| panic!("`mesh up` names {name}'s address: {up}"))
        };
        Self {
            auth: addr("auth"),
            products: addr("products"),
            orders: addr("orders"),
            http: addr("http"),
            log,
            stdout,
            child: Some(child),
            dir,
        }
    }

    /// The directory it runs in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The line it printed for a person that starts with `prefix`, without the
    /// prefix: waits for it (`up` prints after it logs `mesh up`).
    pub async fn printed(&self, prefix: &str) -> String {
        let context = || {
            format!(
                ": tokenmesh up printed no {prefix:?} line:\n{}",
                self.stdout()
            )
        };
        let line = || {
            std::future::ready(
                self.stdout()
                    .lines()
                    .find_map(|line| line.strip_prefix(prefix))
                    .map(str::to_owned),
            )
        };
        crate::eventually_or(CHILD_DEADLINE, context, line).await.0
    }

    /// Everything it printed for a person so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Everything it logged so far, as written.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every line it logged so far, each parsed as JSON; fails naming the
    /// first line that is not a JSON object.
    pub fn log_lines(&self) -> Vec<Value> {
        self.log()
            .lines()
            .map(|line| match serde_json::from_str::<Value>(line) {
                Ok(value) if value.is_object() => value,
                _ => panic!("a log line that is not a JSON object: {line:?}"),
            })
            .collect()
    }

    /// SIGTERM, then waits for the exit: its status.
    pub async fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id().expect("running") as i32;
        let pid = rustix::process::Pid::from_raw(pid).expect("a positive pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("signal sent");
        tokio::time::timeout(CHILD_DEADLINE, child.wait())
            .await
            .unwrap_or_else(|_| panic!("tokenmesh up still running after {CHILD_DEADLINE:?}"))
            .expect("child status")
    }
}
