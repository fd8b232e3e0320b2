//! HAProxy (Debian's `/usr/sbin/haproxy`) in front of the replicas: one HTTP/2
//! cleartext frontend per service, round-robin over its replicas, each replica
//! health-checked with a real `grpc.health.v1.Health/Check` call.
//!
//! HAProxy 2.6 cannot send a gRPC request from `option httpchk` (the message's
//! length prefix has NUL bytes, which `http-check send body` cannot carry), and a
//! bare TCP `check` would not see a replica that says NOT_SERVING. So the check is
//! a `tcp-check` that speaks HTTP/2 itself: the connection preface, an empty
//! SETTINGS frame, one HEADERS frame (HPACK literals, no Huffman, no dynamic
//! table) and one DATA frame with an empty `HealthCheckRequest`, expecting the
//! response message `{status: SERVING}` (`00 00000002 0801`). A replica that is
//! down, draining or NOT_SERVING fails it and leaves the rotation.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
};

use tokio::process::{Child, Command};

use crate::CHILD_DEADLINE;

/// Where Debian installs HAProxy.
pub const HAPROXY: &str = "/usr/sbin/haproxy";

/// One service behind the proxy: its frontend address and its replicas.
#[derive(Debug, Clone)]
pub struct Backend {
    /// `auth`, `products`, `orders`.
    pub name: String,
    /// Where clients reach it.
    pub frontend: SocketAddr,
    /// Its replicas.
    pub servers: Vec<SocketAddr>,
}

/// The gRPC health check as raw HTTP/2 client bytes, hex for `send-binary`.
pub fn grpc_health_check_hex() -> String {
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let length = (payload.len() as u32).to_be_bytes();
        let mut frame = length[1..].to_vec();
        frame.extend([kind, flags]);
        frame.extend(stream.to_be_bytes());
        frame.extend(payload);
        frame
    }
    // HPACK: a literal without indexing whose name is static-table entry `index`.
    fn literal(index: u8, value: &str) -> Vec<u8> {
        let mut field = if index < 15 {
            vec![index]
        } else {
            vec![0x0f, index - 15]
        };
        field.push(value.len() as u8);
        field.extend(value.as_bytes());
        field
    }
    let mut headers = vec![0x83, 0x86]; // :method POST, :scheme http
    headers.extend(literal(4, "/grpc.health.v1.Health/Check")); // :path
    headers.extend(literal(1, "haproxy")); // :authority
    headers.extend(literal(31, "application/grpc")); // content-type
    headers.extend([0x00, 2]); // te: trailers, a new name
    headers.extend(b"te");
    headers.push(8);
    headers.extend(b"trailers");
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    bytes.extend(frame(0x1, 0x4, 1, &headers)); // HEADERS, END_HEADERS
    bytes.extend(frame(0x0, 0x1, 1, &[0; 5])); // DATA, END_STREAM: empty request
    bytes.iter().fold(String::new(), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

/// The configuration for `backends`.
pub fn config(backends: &[Backend]) -> String {
    let check = grpc_health_check_hex();
    let mut config = String::from(
        "global
    log stderr format raw local0 notice
    maxconn 4096
defaults
    mode http
    log global
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    timeout check 500ms
    # A request sent to a replica that died since its last check is sent to
    # another — only on a failed connection, when nothing reached a server: a
    # Refresh that did reach one must not be replayed (reuse detection).
    retries 3
    option redispatch 1
    retry-on conn-failure
",
    );
    for Backend {
        name,
        frontend,
        servers,
    } in backends
    {
        let _ = write!(
            config,
            "frontend {name}
    bind {frontend} proto h2
    default_backend {name}
backend {name}
    balance roundrobin
    option tcp-check
    tcp-check connect
    tcp-check send-binary {check}
    tcp-check expect binary 00000000020801
    default-server proto h2 check inter 250ms fall 1 rise 1
"
        );
        for (i, server) in servers.iter().enumerate() {
            let _ = writeln!(config, "    server {name}-{} {server}", i + 1);
        }
    }
    config
}

/// A free port on 127.0.0.1: bound, read and released. HAProxy cannot report a
/// port it picked itself, so the (tiny) race of a released port is accepted.
pub fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("bound address")
}

/// A running HAProxy.
#[derive(Debug)]
pub struct Proxy {
    /// Its configuration file.
    pub config: PathBuf,
    log: PathBuf,
    child: Child,
}

impl Proxy {
    /// Writes the configuration into `dir` and starts HAProxy on it.
    pub async fn start(dir: &Path, backends: &[Backend]) -> Self {
        let config = dir.join("haproxy.cfg");
        std::fs::write(&config, self::config(backends)).expect("haproxy.cfg written");
        let log = dir.join("haproxy.log");
        let output = std::fs::File::create(&log).expect("haproxy log");
        let child = Command::new(HAPROXY)
            .arg("-f")
            .arg(&config)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("log file"))
            .stderr(output)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("{HAPROXY}: {error} (apt-get install -y haproxy; .ci/run does)")
            });
        let proxy = Self { config, log, child };
        for backend in backends {
            proxy.wait_listening(backend.frontend).await;
        }
        proxy
    }

    async fn wait_listening(&self, frontend: SocketAddr) {
        let context = || format!(": HAProxy not listening on {frontend}:\n{}", self.log());
        crate::eventually_or(CHILD_DEADLINE, context, || async {
            tokio::net::TcpStream::connect(frontend)
                .await
                .ok()
                .map(drop)
        })
        .await;
    }

    /// What HAProxy logged (server state changes).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_health_check_is_one_grpc_call_on_stream_one() {
        let hex = grpc_health_check_hex();
        assert!(hex.starts_with("505249202a20485454502f322e30")); // "PRI * HTTP/2.0"
        // The last frame: 5 bytes of DATA, END_STREAM, stream 1, an empty message.
        assert!(hex.ends_with(concat!("000005000100000001", "0000000000")));
    }

    #[test]
    fn the_local_script_sends_the_same_check() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/local/replicas.sh");
        let script = std::fs::read_to_string(script).expect("deploy/local/replicas.sh");
        assert!(script.contains(&format!("CHECK={}\n", grpc_health_check_hex())));
    }
}
