//! `tokenmesh bench …`: the command line of the load generator, its trivial
//! server and its scenarios. Reports go to stdout, as a table or (`--json`) as
//! JSON; progress goes to the log on stderr.

use std::{
    io::{self, Write},
    net::SocketAddr,
    path::PathBuf,
    time::Duration,
};

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use tokenmesh_server::SigningKey;
use tokio::net::TcpListener;

use crate::{
    BenchError, Body, LoadConfig, Methods, Report, Stop, Target, TokenMinter, Tokens, call,
    channel, plot, scenario, serve_trivial, table, trivial_auth_layer,
};

/// Load generator and benchmark scenarios.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to run.
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// A `tokenmesh bench` subcommand.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Load any unary method of a running server (request given as JSON).
    Run(Box<RunArgs>),
    /// Scenario: the auth layer's overhead on a trivial method — no layer, the
    /// layer with one reused token, the layer with a fresh token per request.
    Overhead(OverheadArgs),
    /// Scenario: Login, GetProduct, ListProducts and PlaceOrder against Auth,
    /// Products and Orders started as three processes; their idle and peak RSS.
    Mesh(MeshArgs),
    /// Scenario: throughput and p99 against requests in flight; draws the plot.
    InFlight(InFlightArgs),
    /// Scenario: throughput against the number of distinct tokens cycled through.
    Tokens(TokensArgs),
    /// The trivial server the scenarios start: `grpc.health.v1.Health/Check`,
    /// behind the auth layer when given a key. Prints `listening on ADDR`.
    TrivialServer(TrivialServerArgs),
    /// Mint access tokens with a key file and print them, one a line (for
    /// h2load, grpcurl, or `run --token`).
    Mint(MintArgs),
}

/// `tokenmesh bench mint`.
#[derive(Debug, Clone, Args)]
pub struct MintArgs {
    /// Auth's signing key (PKCS#8 PEM): the file given to Auth as `--auth-signing-key`.
    #[arg(long)]
    pub key_file: PathBuf,
    /// `sub` of the tokens.
    #[arg(long, default_value = "alice")]
    pub subject: String,
    /// How many tokens.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
}

/// How hard and how long to load.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 2)]
    pub connections: usize,
    /// Requests in flight (concurrent workers, spread over the connections).
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
    /// How long to measure, after the warm-up.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Measure this many requests instead of a duration.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Load sent before measuring starts.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// A call taking longer counts as `DEADLINE_EXCEEDED`.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl LoadArgs {
    /// The load configuration.
    pub fn config(&self) -> LoadConfig {
        LoadConfig {
            connections: self.connections,
            in_flight: self.in_flight,
            stop: self
                .requests
                .map_or(Stop::After(self.duration), Stop::Requests),
            warmup: self.warmup,
            timeout: self.timeout,
        }
    }
}

/// Which token requests carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenMode {
    /// No `authorization` header.
    None,
    /// One token on every request (`--token`, `--login` or minted with `--key-file`).
    Reuse,
    /// A different token per request, from `--distinct` tokens minted with `--key-file`.
    Fresh,
}

/// `tokenmesh bench run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The server, e.g. `127.0.0.1:50052` (`host:port` or `http://host:port`).
    #[arg(long, value_parser = tokenmesh_server::addr::socket_addr)]
    pub addr: SocketAddr,
    /// The method, fully qualified: `tokenmesh.products.v1.ProductsService/GetProduct`.
    /// Any method of tokenmesh's protos or `grpc.health.v1.Health`.
    #[arg(long)]
    pub method: String,
    /// The request as JSON (proto or lowerCamelCase names).
    /// `{{seq}}` is replaced by the request number, e.g. for a distinct `request_id` per call.
    #[arg(long, default_value = "{}")]
    pub data: String,
    /// Requests as JSON lines instead of `--data`: request n sends line n (cycling),
    /// e.g. one refresh token per `Refresh` call.
    #[arg(long, conflicts_with = "data")]
    pub data_file: Option<PathBuf>,
    /// Chain requests on this field: each request in flight starts with its own
    /// line of `--data-file` and sends next the request carrying this field of
    /// the response it got (e.g. `refresh_token`: each `Refresh` with the
    /// successor the last one returned). Needs a line per request in flight.
    #[arg(long, requires = "data_file")]
    pub chain: Option<String>,
    /// Which token requests carry.
    #[arg(long, value_enum, default_value_t = TokenMode::None)]
    pub token_mode: TokenMode,
    /// The token to reuse.
    #[arg(long, env = "TOKENMESH_BENCH_TOKEN")]
    pub token: Option<String>,
    /// Log in as `user:password` to get the token to reuse.
    #[arg(long)]
    pub login: Option<String>,
    /// Auth's address for `--login` (`up`'s Auth by default: `--addr` is usually
    /// Products or Orders, which have no Login).
    #[arg(long, default_value = "127.0.0.1:50051", value_parser = tokenmesh_server::addr::socket_addr)]
    pub auth_addr: SocketAddr,
    /// Auth's signing key (the file given to Auth as `--auth-signing-key`), to mint tokens.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// `sub` of minted tokens.
    #[arg(long, default_value = "alice")]
    pub subject: String,
    /// How many distinct tokens `--token-mode fresh` mints and cycles through.
    #[arg(long, default_value_t = 100_000)]
    pub distinct: usize,
    /// The server's pid, to report its CPU time and memory from `/proc`.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The report's label.
    #[arg(long)]
    pub label: Option<String>,
    /// Load settings.
    #[command(flatten)]
    pub load: LoadArgs,
}

/// `tokenmesh bench overhead`.
#[derive(Debug, Clone, Args)]
pub struct OverheadArgs {
    /// Distinct tokens minted for the fresh-token run (more than it sends: none repeats).
    #[arg(long, default_value_t = 300_000)]
    pub distinct: usize,
    /// Load settings.
    #[command(flatten)]
    pub load: LoadArgs,
}

/// `tokenmesh bench mesh`.
#[derive(Debug, Clone, Args)]
pub struct MeshArgs {
    /// Run the three services on this database (`postgres://…`; each in its own
    /// schema) instead of each on its own SQLite file.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Load settings.
    #[command(flatten)]
    pub load: LoadArgs,
}

/// `tokenmesh bench in-flight`.
#[derive(Debug, Clone, Args)]
pub struct InFlightArgs {
    /// Requests-in-flight levels.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64,256")]
    pub levels: Vec<usize>,
    /// Where to write the SVG plot.
    #[arg(long, default_value = "docs/in-flight.svg")]
    pub plot: PathBuf,
    /// Load settings (`--in-flight` is replaced by each level).
    #[command(flatten)]
    pub load: LoadArgs,
}

/// `tokenmesh bench tokens`.
#[derive(Debug, Clone, Args)]
pub struct TokensArgs {
    /// Numbers of distinct tokens.
    #[arg(long, value_delimiter = ',', default_value = "10,1000,100000,1000000")]
    pub levels: Vec<usize>,
    /// Load settings.
    #[command(flatten)]
    pub load: LoadArgs,
}

/// `tokenmesh bench trivial-server`.
#[derive(Debug, Clone, Args)]
pub struct TrivialServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0", value_parser = tokenmesh_server::addr::socket_addr)]
    pub listen: SocketAddr,
    /// Put the auth layer in front, trusting this Ed25519 key (PKCS#8 PEM; created
    /// if missing, so `bench run --key-file` can mint tokens with it).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
}

/// Runs a `tokenmesh bench` subcommand.
pub async fn main(args: BenchArgs) -> Result<(), BenchError> {
    match args.command {
        BenchCommand::Run(args) => {
            let report = run_one(&args).await?;
            print_reports(std::slice::from_ref(&report), args.load.json, json!({}))
        }
        BenchCommand::Overhead(args) => {
            let reports = scenario::overhead(&args.load.config(), args.distinct).await?;
            let base = reports[0].requests_per_second;
            let ratio = |r: &Report| over(r.requests_per_second, base);
            let ratios = json!({
                "reuse_over_none": ratio(&reports[1]),
                "fresh_over_none": ratio(&reports[2]),
            });
            print_reports(&reports, args.load.json, ratios)
        }
        BenchCommand::Mesh(args) => {
            let (reports, memory) =
                scenario::mesh(&args.load.config(), args.database_url.as_deref()).await?;
            // Each call's throughput and p99 over the trivial call's, same run.
            let base = &reports[0];
            let ratios: Vec<_> = reports
                .iter()
                .map(|r| {
                    json!({
                        "label": r.label,
                        "throughput_ratio": over(r.requests_per_second, base.requests_per_second),
                        "p99_ratio": over(r.latency.p99_ms, base.latency.p99_ms),
                    })
                })
                .collect();
            print_reports(
                &reports,
                args.load.json,
                json!({ "memory": memory, "over_trivial": ratios }),
            )
        }
        BenchCommand::InFlight(args) => {
            let series = scenario::in_flight(&args.load.config(), &args.levels).await?;
            plot::draw_in_flight(
                &args.plot,
                "tokenmesh: throughput and p99 against requests in flight (2 cores, loopback)",
                &series,
            )?;
            let reports: Vec<Report> = series.into_iter().flat_map(|s| s.reports).collect();
            print_reports(&reports, args.load.json, json!({ "plot": args.plot }))
        }
        BenchCommand::Tokens(args) => {
            let reports = scenario::distinct_tokens(&args.load.config(), &args.levels).await?;
            print_reports(&reports, args.load.json, json!({}))
        }
        BenchCommand::TrivialServer(args) => trivial_server(args).await,
        BenchCommand::Mint(args) => {
            let tokens =
                TokenMinter::from_key_file(&args.key_file, &args.subject)?.mint_many(args.count)?;
            let mut out = io::stdout().lock();
            tokens
                .iter()
                .try_for_each(|token| writeln!(out, "{token}"))
                .map_err(|source| BenchError::Io {
                    context: "writing tokens".into(),
                    source,
                })
        }
    }
}

async fn run_one(args: &RunArgs) -> Result<Report, BenchError> {
    let target = match &args.data_file {
        None => scenario::target(args.addr, &args.method, &args.data)?,
        Some(path) => {
            let method = Methods::tokenmesh()?.method(&args.method)?;
            let lines = std::fs::read_to_string(path).map_err(|source| BenchError::Io {
                context: format!("reading {}", path.display()),
                source,
            })?;
            let body = match &args.chain {
                Some(field) => Body::chain(&method, field, &lines)?,
                None => Body::json_lines(&method, &lines)?,
            };
            Target {
                addr: args.addr,
                path: method.path().to_owned(),
                body,
            }
        }
    };
    let minter = || {
        let path = args
            .key_file
            .as_deref()
            .ok_or_else(|| BenchError::Token("minting needs --key-file".into()))?;
        TokenMinter::from_key_file(path, &args.subject)
    };
    let tokens = match args.token_mode {
        TokenMode::None => Tokens::none(),
        TokenMode::Reuse => match (&args.token, &args.login) {
            (Some(token), _) => Tokens::pool([token.clone()])?,
            (None, Some(login)) => Tokens::pool([login_token(args.auth_addr, login).await?])?,
            (None, None) => Tokens::pool([minter()?.mint()?])?,
        },
        TokenMode::Fresh => Tokens::pool(minter()?.mint_many(args.distinct)?)?,
    };
    let mode = match args.token_mode {
        TokenMode::None => "none",
        TokenMode::Reuse => "reuse",
        TokenMode::Fresh => "fresh",
    };
    let label = args.label.clone().unwrap_or_else(|| target.path.clone());
    scenario::measure(
        &label,
        &target,
        &tokens,
        mode,
        &args.load.config(),
        args.server_pid,
    )
    .await
}

/// Logs in with `user:password` and returns the access token.
async fn login_token(auth: SocketAddr, login: &str) -> Result<String, BenchError> {
    let (username, password) = login
        .split_once(':')
        .ok_or_else(|| BenchError::Token("--login takes user:password".into()))?;
    let method = Methods::tokenmesh()?.method("tokenmesh.auth.v1.AuthService/Login")?;
    let body =
        method.encode_json(&json!({"username": username, "password": password}).to_string())?;
    let channel = channel(auth).await?;
    let response = call(channel, method.path(), body, None)
        .await
        .map_err(|status| BenchError::Call {
            context: "Login".into(),
            status,
        })?;
    method.decode_response(&response)?["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| BenchError::Token("Login returned no access_token".into()))
}

async fn trivial_server(args: TrivialServerArgs) -> Result<(), BenchError> {
    let auth = match &args.key_file {
        Some(path) => {
            let key =
                SigningKey::load_or_generate(path).map_err(|e| BenchError::Token(e.to_string()))?;
            Some(trivial_auth_layer(&key)?)
        }
        None => None,
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|source| BenchError::Io {
            context: format!("binding {}", args.listen),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| BenchError::Io {
        context: "reading the bound address".into(),
        source,
    })?;
    let mut out = io::stdout().lock();
    writeln!(out, "listening on {addr}")
        .and_then(|()| out.flush())
        .map_err(|source| BenchError::Io {
            context: "writing the address".into(),
            source,
        })?;
    drop(out);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve_trivial(listener, auth, shutdown).await
}

fn print_reports(
    reports: &[Report],
    as_json: bool,
    extra: serde_json::Value,
) -> Result<(), BenchError> {
    let text = if as_json {
        let mut value = json!({ "reports": reports });
        if let (Some(object), serde_json::Value::Object(extra)) = (value.as_object_mut(), extra) {
            object.extend(extra);
        }
        serde_json::to_string_pretty(&value).unwrap_or_default()
    } else {
        let mut text = table(reports);
        if extra.as_object().is_some_and(|o| !o.is_empty()) {
            text.push_str(&serde_json::to_string_pretty(&extra).unwrap_or_default());
        }
        text
    };
    let mut out = io::stdout().lock();
    writeln!(out, "{text}").map_err(|source| BenchError::Io {
        context: "writing the report".into(),
        source,
    })?;
    // The report is printed either way (its errors say why); the exit status
    // tells a script that it measured nothing.
    match reports.iter().find(|report| report.ok == 0) {
        Some(report) => Err(BenchError::NothingSucceeded {
            label: report.label.clone(),
            failed: report.failed,
            errors: report
                .errors
                .iter()
                .map(|(code, count)| format!("{code}×{count}"))
                .collect::<Vec<_>>()
                .join(", "),
        }),
        None => Ok(()),
    }
}

/// `value / base`, 0 when there is no base.
fn over(value: f64, base: f64) -> f64 {
    if base > 0.0 { value / base } else { 0.0 }
}
