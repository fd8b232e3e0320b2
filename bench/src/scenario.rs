//! The scenarios behind the README's results, each one command: they start the
//! servers they need as child processes of this binary (so each server's CPU
//! time and memory are its own), load them, and return the reports.

use std::{
    net::{SocketAddr, TcpListener as StdListener},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokenmesh_server::SigningKey;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    time::Instant,
};

use crate::{
    BenchError, Body, LoadConfig, Methods, Report, ServerUsage, Target, TokenMinter, Tokens, call,
    channel, process, run,
};

/// How long a started server may take to answer its health check.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// A server running as a child process; killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    /// What it is (`auth`, `trivial+layer`, …).
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its pid, for `/proc`.
    pub pid: u32,
    _child: Child,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let context = context.into();
    move |source| BenchError::Io { context, source }
}

/// This executable: the `tokenmesh` binary, whose `serve` and `bench
/// trivial-server` subcommands are the servers.
fn exe() -> Result<PathBuf, BenchError> {
    std::env::current_exe().map_err(io("finding this executable"))
}

fn command(args: &[&str]) -> Result<Command, BenchError> {
    let mut command = Command::new(exe()?);
    command
        .args(args)
        // Servers log warnings only: a log line per request would be measured too.
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    Ok(command)
}

/// Starts `tokenmesh bench trivial-server` (behind the auth layer if `key_file`
/// is given) on a free port, and waits for it to say where it listens.
pub async fn spawn_trivial(key_file: Option<&Path>) -> Result<ServerProcess, BenchError> {
    let mut args = vec!["bench", "trivial-server", "--listen", "127.0.0.1:0"];
    let key = key_file.map(|p| p.display().to_string());
    if let Some(key) = &key {
        args.extend(["--key-file", key]);
    }
    let mut child = command(&args)?
        .stdout(Stdio::piped())
        .spawn()
        .map_err(io("starting the trivial server"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| BenchError::Serve("no stdout".into()))?;
    let mut line = String::new();
    tokio::time::timeout(
        STARTUP_DEADLINE,
        BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .map_err(|_| BenchError::Serve("trivial server did not start".into()))?
    .map_err(io("reading the trivial server's address"))?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| BenchError::Serve(format!("unexpected first line {line:?}")))?;
    let name = if key_file.is_some() {
        "trivial+layer"
    } else {
        "trivial"
    };
    process_of(name, addr, child)
}

fn process_of(name: &str, addr: SocketAddr, child: Child) -> Result<ServerProcess, BenchError> {
    let pid = child
        .id()
        .ok_or_else(|| BenchError::Serve(format!("{name} exited at once")))?;
    Ok(ServerProcess {
        name: name.to_owned(),
        addr,
        pid,
        _child: child,
    })
}

/// A port free right now (the child binds it a moment later: good enough for a
/// benchmark on loopback, never used by tests).
fn free_port() -> Result<SocketAddr, BenchError> {
    let listener = StdListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    listener.local_addr().map_err(io("finding a free port"))
}

/// Waits until `addr` answers `grpc.health.v1.Health/Check` with `OK`.
pub async fn wait_healthy(addr: SocketAddr) -> Result<(), BenchError> {
    let check = Methods::tokenmesh()?.method("grpc.health.v1.Health/Check")?;
    let body = check.encode_json("{}")?;
    let deadline = Instant::now() + STARTUP_DEADLINE;
    loop {
        if let Ok(channel) = channel(addr).await
            && call(channel, check.path(), body.clone(), None)
                .await
                .is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BenchError::Serve(format!("{addr} never became healthy")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Auth, Products and Orders as three `tokenmesh serve` processes with the demo
/// data in a fresh data dir, whose Auth key is known to the bench.
#[derive(Debug)]
pub struct MeshProcesses {
    /// `tokenmesh serve auth`.
    pub auth: ServerProcess,
    /// `tokenmesh serve products`.
    pub products: ServerProcess,
    /// `tokenmesh serve orders`.
    pub orders: ServerProcess,
    /// Mints alice's access tokens with Auth's key.
    pub minter: TokenMinter,
    data_dir: tempfile::TempDir,
}

impl MeshProcesses {
    /// Starts the three services on SQLite and waits until each is healthy.
    pub async fn start() -> Result<Self, BenchError> {
        Self::start_on(None).await
    }

    /// Starts the three services, on `database_url` if given (each service in
    /// its own schema there) or each on its SQLite file, and waits until each
    /// is healthy.
    pub async fn start_on(database_url: Option<&str>) -> Result<Self, BenchError> {
        let data_dir = tempfile::tempdir().map_err(io("creating a data dir"))?;
        let key_path = data_dir.path().join("auth-signing-key.pem");
        let key = SigningKey::load_or_generate(&key_path)
            .map_err(|e| BenchError::Token(e.to_string()))?;
        let dir = data_dir.path().display().to_string();
        let start = |name: &'static str, extra: Vec<String>| {
            let dir = dir.clone();
            async move {
                let addr = free_port()?;
                let listen = addr.to_string();
                let mut args = vec!["serve", name, "--listen", &listen, "--data-dir", &dir];
                args.extend(extra.iter().map(String::as_str));
                if let Some(url) = database_url {
                    args.extend(["--database-url", url]);
                }
                let child = command(&args)?
                    .stdout(Stdio::null())
                    .spawn()
                    .map_err(io(format!("starting {name}")))?;
                let process = process_of(name, addr, child)?;
                wait_healthy(addr).await?;
                Ok::<_, BenchError>(process)
            }
        };
        // Rates are measured, not limits: the rate scenarios log alice in 32
        // at a time (more attempts in flight than the login throttle's default
        // budget lets through) and refresh thousands of times a second.
        let auth = start(
            "auth",
            vec![
                "--demo".into(),
                "--login-throttle-failures".into(),
                "1000000".into(),
                "--refresh-rate-limit".into(),
                "0".into(),
                "--service-token-rate-limit".into(),
                "0".into(),
            ],
        )
        .await?;
        let auth_url = format!("http://{}", auth.addr);
        let products = start(
            "products",
            vec!["--demo".into(), "--auth-url".into(), auth_url.clone()],
        )
        .await?;
        let products_url = format!("http://{}", products.addr);
        let orders = start(
            "orders",
            vec![
                "--auth-url".into(),
                auth_url,
                "--products-url".into(),
                products_url,
            ],
        )
        .await?;
        Ok(Self {
            auth,
            products,
            orders,
            minter: TokenMinter::new(key, "alice"),
            data_dir,
        })
    }
}

impl MeshProcesses {
    /// The data dir the three services share (keys, client secrets, databases).
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// `count` refresh tokens of alice's, from as many logins (32 at a time):
    /// `Refresh` rotates its token, so each chain of refreshes needs its own login.
    pub async fn refresh_tokens(&self, count: usize) -> Result<Vec<String>, BenchError> {
        use futures::{StreamExt, TryStreamExt};
        let login = Methods::tokenmesh()?.method("tokenmesh.auth.v1.AuthService/Login")?;
        let body = login.encode_json(r#"{"username":"alice","password":"alice-demo"}"#)?;
        let channel = channel(self.auth.addr).await?;
        futures::stream::iter(0..count)
            .map(|_| {
                let (channel, body, login) = (channel.clone(), body.clone(), &login);
                async move {
                    let response =
                        call(channel, login.path(), body, None)
                            .await
                            .map_err(|status| BenchError::Call {
                                context: "Login for a refresh token".into(),
                                status,
                            })?;
                    let json = login.decode_response(&response)?;
                    json["refresh_token"]
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| BenchError::Token("Login returned no refresh_token".into()))
                }
            })
            .buffer_unordered(32)
            .try_collect()
            .await
    }
}

/// Runs one load and reports it, with the server's usage if `server` is local.
pub async fn measure(
    label: &str,
    target: &Target,
    tokens: &Tokens,
    token_mode: &str,
    load: &LoadConfig,
    server: Option<u32>,
) -> Result<Report, BenchError> {
    let before = server.map(process::sample).transpose()?;
    tracing::info!(label, "measuring");
    let outcome = run(target, tokens, load).await?;
    let mut report = Report::new(label, &target.path, &outcome);
    report.connections = load.connections;
    report.in_flight = load.in_flight;
    report.token_mode = token_mode.to_owned();
    report.distinct_tokens = tokens.len();
    if let (Some(pid), Some(before)) = (server, before) {
        let after = process::sample(pid)?;
        report.server = Some(ServerUsage::between(pid, before, after, outcome.ok));
    }
    Ok(report)
}

/// A target on `addr`: `method` with the JSON request `json`.
pub fn target(addr: SocketAddr, method: &str, json: &str) -> Result<Target, BenchError> {
    let method = Methods::tokenmesh()?.method(method)?;
    Ok(Target {
        addr,
        path: method.path().to_owned(),
        body: Body::json(&method, json)?,
    })
}

/// A new Ed25519 key in a temporary dir (kept while the dir lives), for a
/// trivial server to trust and the bench to mint with.
fn fresh_key() -> Result<(tempfile::TempDir, PathBuf, SigningKey), BenchError> {
    let dir = tempfile::tempdir().map_err(io("creating a key dir"))?;
    let path = dir.path().join("key.pem");
    let key = SigningKey::load_or_generate(&path).map_err(|e| BenchError::Token(e.to_string()))?;
    Ok((dir, path, key))
}

/// The layer's overhead: the trivial method bare, behind the layer with one
/// reused token, behind the layer with a fresh token per request (`distinct`
/// pre-minted tokens). Returns the three reports, in that order.
pub async fn overhead(load: &LoadConfig, distinct: usize) -> Result<Vec<Report>, BenchError> {
    let (_dir, key_path, key) = fresh_key()?;
    let minter = TokenMinter::new(key, "alice");
    let bare = spawn_trivial(None).await?;
    let layered = spawn_trivial(Some(&key_path)).await?;
    let one = Tokens::pool([minter.mint()?])?;
    tracing::info!(distinct, "minting");
    let fresh = Tokens::pool(minter.mint_many(distinct)?)?;
    let method = crate::TRIVIAL_METHOD;
    let bare_target = target(bare.addr, method, "{}")?;
    let layered_target = target(layered.addr, method, "{}")?;
    Ok(vec![
        measure(
            "trivial, no layer",
            &bare_target,
            &Tokens::none(),
            "none",
            load,
            Some(bare.pid),
        )
        .await?,
        measure(
            "trivial, layer, one token",
            &layered_target,
            &one,
            "reuse",
            load,
            Some(layered.pid),
        )
        .await?,
        measure(
            "trivial, layer, fresh tokens",
            &layered_target,
            &fresh,
            "fresh",
            load,
            Some(layered.pid),
        )
        .await?,
    ])
}

/// Throughput against the number of distinct tokens cycled through, behind the
/// layer (cache pressure, once the layer has a verified-token cache).
pub async fn distinct_tokens(
    load: &LoadConfig,
    levels: &[usize],
) -> Result<Vec<Report>, BenchError> {
    let (_dir, key_path, key) = fresh_key()?;
    let minter = TokenMinter::new(key, "alice");
    let layered = spawn_trivial(Some(&key_path)).await?;
    let target = target(layered.addr, crate::TRIVIAL_METHOD, "{}")?;
    let mut reports = Vec::new();
    for &distinct in levels {
        tracing::info!(distinct, "minting");
        let tokens = Tokens::pool(minter.mint_many(distinct)?)?;
        let label = format!("layer, {distinct} distinct tokens");
        reports.push(measure(&label, &target, &tokens, "fresh", load, Some(layered.pid)).await?);
    }
    Ok(reports)
}

/// Requests-in-flight sweep, one series each: the trivial method without the
/// layer, the same behind the layer with one token, and Products' `GetProduct`
/// with one token.
pub async fn in_flight(
    load: &LoadConfig,
    levels: &[usize],
) -> Result<Vec<crate::plot::Series>, BenchError> {
    let (_dir, key_path, key) = fresh_key()?;
    let trivial_token = Tokens::pool([TokenMinter::new(key, "alice").mint()?])?;
    let bare = spawn_trivial(None).await?;
    let layered = spawn_trivial(Some(&key_path)).await?;
    let mesh = MeshProcesses::start().await?;
    let mesh_token = Tokens::pool([mesh.minter.mint()?])?;
    let runs = [
        (
            "Health/Check, no layer",
            target(bare.addr, crate::TRIVIAL_METHOD, "{}")?,
            Tokens::none(),
            bare.pid,
        ),
        (
            "Health/Check behind the auth layer, one token",
            target(layered.addr, crate::TRIVIAL_METHOD, "{}")?,
            trivial_token,
            layered.pid,
        ),
        (
            "Products GetProduct, one token",
            target(
                mesh.products.addr,
                "tokenmesh.products.v1.ProductsService/GetProduct",
                r#"{"id":"P-100"}"#,
            )?,
            mesh_token,
            mesh.products.pid,
        ),
    ];
    let mut series: Vec<crate::plot::Series> = runs
        .iter()
        .map(|(name, ..)| crate::plot::Series {
            name: (*name).to_owned(),
            reports: Vec::new(),
        })
        .collect();
    for &in_flight in levels {
        let load = LoadConfig { in_flight, ..*load };
        for ((name, target, tokens, pid), line) in runs.iter().zip(&mut series) {
            let mode = if tokens.is_empty() { "none" } else { "reuse" };
            let label = format!("{name}, {in_flight} in flight");
            let report = measure(&label, target, tokens, mode, &load, Some(*pid)).await?;
            line.reports.push(report);
        }
    }
    Ok(series)
}

/// Memory of one service: before any load, and its peak after the mesh scenario.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Memory {
    /// `auth`, `products` or `orders`.
    pub service: String,
    /// RSS after start-up, before any load, MiB.
    pub idle_rss_mib: f64,
    /// Peak RSS over the whole scenario, MiB.
    pub peak_rss_mib: f64,
}

/// The mesh's own methods as separate processes: `Login`, `GetProduct`,
/// `ListProducts`, `PlaceOrder` with a grant and without one (a distinct
/// `request_id` each, so every call writes an order), `IssueServiceToken`, and
/// `Refresh` — one login per request in flight, each refreshed again and again
/// with the successor its last response carried; then each service's idle and
/// peak memory.
///
/// The first report is the trivial call without the layer, measured in the same
/// run: the base every other row's ratio is taken against.
pub async fn mesh(
    load: &LoadConfig,
    database_url: Option<&str>,
) -> Result<(Vec<Report>, Vec<Memory>), BenchError> {
    let bare = spawn_trivial(None).await?;
    let mesh = MeshProcesses::start_on(database_url).await?;
    let services = [&mesh.auth, &mesh.products, &mesh.orders];
    let idle = services
        .iter()
        .map(|s| process::sample(s.pid))
        .collect::<Result<Vec<_>, _>>()?;
    let token = mesh.minter.mint()?;
    let tokens = Tokens::pool([token.clone()])?;

    let list =
        Methods::tokenmesh()?.method("tokenmesh.products.v1.ProductsService/ListProducts")?;
    let channel = channel(mesh.products.addr).await?;
    let response = call(channel, list.path(), list.encode_json("{}")?, Some(&token))
        .await
        .map_err(|status| BenchError::Call {
            context: "ListProducts for a grant".into(),
            status,
        })?;
    let grant = list.decode_response(&response)?["entitlement_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let auth = mesh.auth.addr;
    let products = mesh.products.addr;
    let orders = mesh.orders.addr;
    let place = "tokenmesh.orders.v1.OrdersService/PlaceOrder";
    let runs = [
        (
            "Login (argon2id)",
            target(
                auth,
                "tokenmesh.auth.v1.AuthService/Login",
                r#"{"username":"alice","password":"alice-demo"}"#,
            )?,
            false,
            mesh.auth.pid,
        ),
        (
            "GetProduct",
            target(
                products,
                "tokenmesh.products.v1.ProductsService/GetProduct",
                r#"{"id":"P-100"}"#,
            )?,
            true,
            mesh.products.pid,
        ),
        (
            "ListProducts",
            target(
                products,
                "tokenmesh.products.v1.ProductsService/ListProducts",
                "{}",
            )?,
            true,
            mesh.products.pid,
        ),
        (
            "PlaceOrder, grant",
            target(
                orders,
                place,
                &format!(
                    r#"{{"product_id":"P-100","quantity":1,"request_id":"g-{{{{seq}}}}","entitlement_token":"{grant}"}}"#
                ),
            )?,
            true,
            mesh.orders.pid,
        ),
        (
            "PlaceOrder, no grant (default chain: replica)",
            target(
                orders,
                place,
                r#"{"product_id":"P-101","quantity":1,"request_id":"r-{{seq}}"}"#,
            )?,
            true,
            mesh.orders.pid,
        ),
    ];
    let trivial = target(bare.addr, crate::TRIVIAL_METHOD, "{}")?;
    let mut reports = vec![
        measure(
            "trivial Health/Check, no layer",
            &trivial,
            &Tokens::none(),
            "none",
            load,
            Some(bare.pid),
        )
        .await?,
    ];
    for (label, target, with_token, pid) in runs {
        let (tokens, mode) = if with_token {
            (&tokens, "reuse")
        } else {
            (&Tokens::none(), "none")
        };
        reports.push(measure(label, &target, tokens, mode, load, Some(pid)).await?);
    }

    // Client credentials: Products' own secret, for a token to call Auth.
    let secret_path = mesh.data_dir().join("products-client-secret");
    let secret = std::fs::read_to_string(&secret_path)
        .map_err(io(format!("reading {}", secret_path.display())))?;
    let issue = serde_json::json!({"client_id": "products", "client_secret": secret.trim(), "audience": "auth"});
    let issue = target(
        auth,
        "tokenmesh.auth.v1.AuthService/IssueServiceToken",
        &issue.to_string(),
    )?;
    reports.push(
        measure(
            "IssueServiceToken",
            &issue,
            &Tokens::none(),
            "none",
            load,
            Some(mesh.auth.pid),
        )
        .await?,
    );

    // Refresh rotates: each request in flight follows its own login's chain of
    // refresh tokens, for as long as the other runs (Auth's refresh rate limit
    // is off, see `MeshProcesses::start_on`).
    let lines: Vec<String> = mesh
        .refresh_tokens(load.in_flight.max(1))
        .await?
        .into_iter()
        .map(|token| serde_json::json!({ "refresh_token": token }).to_string())
        .collect();
    let refresh = Methods::tokenmesh()?.method("tokenmesh.auth.v1.AuthService/Refresh")?;
    let target = Target {
        addr: auth,
        path: refresh.path().to_owned(),
        body: Body::chain(&refresh, "refresh_token", &lines.join("\n"))?,
    };
    reports.push(
        measure(
            "Refresh (a login per request in flight, each token's successor next)",
            &target,
            &Tokens::none(),
            "none",
            load,
            Some(mesh.auth.pid),
        )
        .await?,
    );
    let memory = services
        .iter()
        .zip(idle)
        .map(|(s, idle)| {
            Ok(Memory {
                service: s.name.clone(),
                idle_rss_mib: crate::mib(idle.rss_bytes),
                peak_rss_mib: crate::mib(process::sample(s.pid)?.peak_rss_bytes),
            })
        })
        .collect::<Result<Vec<_>, BenchError>>()?;
    Ok((reports, memory))
}
