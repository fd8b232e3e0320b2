//! One `tokenmesh serve …` child process of the built binary: started on a
//! loopback address, its port read back from its own log, stopped with SIGTERM
//! or SIGKILL and started again on the same address, its health asked directly.

use std::{
    fs::OpenOptions,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use tokio::process::{Child, Command};
use tonic::transport::{Channel, Endpoint};
use tonic_health::{
    ServingStatus,
    pb::{HealthCheckRequest, health_client::HealthClient},
};

use crate::CHILD_DEADLINE;

/// The built `tokenmesh` binary: `TOKENMESH_BIN` if set, else the one beside this
/// test binary's directory (`target/debug/tokenmesh`, which `cargo test
/// --workspace` builds). Panics with the command that builds it when missing.
pub fn tokenmesh_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TOKENMESH_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/debug/deps/<test> → target/debug/tokenmesh
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("tokenmesh"))
        .expect("the target directory");
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build -p tokenmesh` (or set TOKENMESH_BIN)",
        binary.display()
    );
    binary
}

/// A running (or stopped) `tokenmesh serve` process.
#[derive(Debug)]
pub struct ReplicaProcess {
    /// A name for messages: `auth-1`.
    pub name: String,
    /// Where it listens (the same across restarts).
    pub addr: SocketAddr,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl ReplicaProcess {
    /// Starts `tokenmesh serve <args…> --listen <ip>:0` with `env` added to its
    /// environment (secrets go there, out of `ps`), logging into `dir`, and waits
    /// until it says where it listens (not yet that it is SERVING).
    pub async fn start(
        name: &str,
        dir: &Path,
        args: Vec<String>,
        env: Vec<(&'static str, String)>,
        ip: IpAddr,
    ) -> Self {
        let mut replica = Self {
            name: name.to_owned(),
            addr: SocketAddr::new(ip, 0),
            args,
            env,
            log: dir.join(format!("{name}.log")),
            child: None,
        };
        replica.spawn().await;
        replica
    }

    /// Starts it again on the same address (after [`ReplicaProcess::kill`] or
    /// [`ReplicaProcess::terminate`]).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "{} is still running", self.name);
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let before = std::fs::metadata(&self.log).map_or(0, |m| m.len() as usize);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("replica log file");
        let mut command = Command::new(tokenmesh_binary());
        command
            .arg("serve")
            .args(&self.args)
            .arg("--listen")
            .arg(self.addr.to_string())
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        self.child = Some(command.spawn().expect("tokenmesh starts"));
        self.addr = self.listening_since(before).await;
    }

    /// The address from the first `serving` line written after byte `offset` of
    /// the log; fails if the process exits first or never says it.
    async fn listening_since(&mut self, offset: usize) -> SocketAddr {
        let (name, log_path) = (self.name.clone(), self.log.clone());
        let written = move || {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            log.get(offset..).unwrap_or_default().to_owned()
        };
        let context = || format!(": {name} did not serve:\n{}", written());
        let child = self.child.as_mut().expect("started");
        let serving = || {
            let new = written();
            let addr = new
                .lines()
                .filter(|line| line.contains("tokenmesh_server::serve: serving"))
                .find_map(|line| line.split_once("address=Some(")?.1.split_once(')'))
                .and_then(|(addr, _)| addr.parse().ok());
            if addr.is_none()
                && let Some(status) = child.try_wait().expect("child status")
            {
                panic!("{name} exited with {status} before serving:\n{new}");
            }
            std::future::ready(addr)
        };
        crate::eventually_or(CHILD_DEADLINE, context, serving)
            .await
            .0
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Sends SIGTERM (what Kubernetes sends) without waiting.
    pub fn signal_terminate(&self) {
        self.signal(rustix::process::Signal::TERM);
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = self.pid().expect("running");
        let pid = rustix::process::Pid::from_raw(pid as i32).expect("a positive pid");
        rustix::process::kill_process(pid, signal).expect("signal sent");
    }

    /// SIGTERM, then waits for the exit: its status.
    pub async fn terminate(&mut self) -> ExitStatus {
        self.signal_terminate();
        self.wait().await
    }

    /// SIGKILL (kill -9): no drain, no goodbye. Waits for the exit.
    pub async fn kill(&mut self) {
        self.signal(rustix::process::Signal::KILL);
        self.wait().await;
    }

    /// Waits for the process to exit, within [`CHILD_DEADLINE`].
    pub async fn wait(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let status = tokio::time::timeout(CHILD_DEADLINE, child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} still running after {CHILD_DEADLINE:?}", self.name))
            .expect("child status");
        self.child = None;
        status
    }

    /// Everything it logged, over all its runs.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A lazy plaintext channel to this replica alone.
    pub fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("url")
            .connect_lazy()
    }

    /// Its health of `service` ("": the server) now; `None` if it cannot be asked.
    pub async fn health(&self, service: &str) -> Option<ServingStatus> {
        let mut health = HealthClient::new(self.channel());
        let request = HealthCheckRequest {
            service: service.into(),
        };
        let status = health.check(request).await.ok()?.into_inner().status;
        Some(match status {
            1 => ServingStatus::Serving,
            2 => ServingStatus::NotServing,
            _ => ServingStatus::Unknown,
        })
    }

    /// Waits until it reports SERVING for the server as a whole; how long that took.
    pub async fn wait_serving(&self) -> Duration {
        let context = || format!(": {} not SERVING:\n{}", self.name, self.log());
        let serving =
            || async { (self.health("").await == Some(ServingStatus::Serving)).then_some(()) };
        crate::eventually_or(CHILD_DEADLINE, context, serving)
            .await
            .1
    }
}
