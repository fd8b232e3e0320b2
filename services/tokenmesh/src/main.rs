//! `tokenmesh`: run the whole mesh (`up`) or one service (`serve`), or administer
//! a running one. It parses, binds and composes; each service starts itself from
//! its own crate.

use std::{
    io::{self, Write},
    process::ExitCode,
};

use anyhow::Context;
use tokenmesh::{
    admin::{self, AdminError},
    cli::{
        Command, FollowerArgs, GrantKeysArgs, KeysArgs, KeysCommand, ListenArgs, ServeCommand,
        UpArgs,
    },
    config::{self, ConfigError},
    mesh::{self, Mesh},
    walkthrough,
};
use tokenmesh_server::{
    Environment, Listener,
    args::TlsArgs,
    start::{bind, local_addr},
};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> ExitCode {
    // Before any file is created: whatever this process (SQLite, a library)
    // creates is readable by this user only, whatever the umask of the shell
    // that started it. Files holding keys and secrets are created 0600
    // explicitly as well.
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o077));
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // A sentence, not a Debug dump (RUST_BACKTRACE may be set).
            eprintln!("tokenmesh: {}", sentence(&error));
            ExitCode::from(exit_code(&error))
        }
    }
}

/// The exit code of a failure, as the README documents them: 1 a refused or
/// failed call (and any other failure), 2 a usage error, 3 the mesh cannot be
/// reached.
fn exit_code(error: &anyhow::Error) -> u8 {
    if let Some(error) = error.downcast_ref::<AdminError>() {
        return error.exit_code();
    }
    if error.downcast_ref::<ConfigError>().is_some() {
        return 2;
    }
    1
}

/// `error` and its causes in one line, each cause only once: a cause whose text
/// the message already quotes is not repeated.
fn sentence(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

async fn run() -> anyhow::Result<()> {
    let cli = match config::parse(std::env::args_os()) {
        Ok(cli) => cli,
        // Help, version and clap's usage errors print and exit as clap does (2).
        Err(ConfigError::Clap(error)) => error.exit(),
        Err(error) => return Err(error.into()),
    };
    let telemetry = tokenmesh::telemetry::init(&cli.telemetry, cli.command.service_name())?;
    // Not locked: `up` prints from other tasks while this waits.
    let mut out = io::stdout();
    let result = match cli.command {
        Command::Up(args) => up(&args).await,
        Command::Serve(command) => serve(command).await,
        Command::Keys(KeysCommand::Rotate(args)) => {
            if args.offline {
                rotate_keys(*args).await
            } else {
                Ok(admin::rotate_online(&args.connect, &mut out).await?)
            }
        }
        Command::Users(command) => Ok(admin::users(command, &mut out).await?),
        Command::Entitlements(command) => Ok(admin::entitlements(command, &mut out).await?),
        Command::Token(admin::TokenCommand::Decode(args)) => {
            Ok(admin::decode(args, &mut out).await?)
        }
        Command::Config(config::ConfigCommand::Print { command }) => {
            match config::print(cli.config.as_deref(), &command, &mut out) {
                // The shown command's own usage error, as clap prints it.
                Err(ConfigError::Clap(error)) => error.exit(),
                result => Ok(result?),
            }
        }
        Command::Keys(KeysCommand::RotateGrantKey(args)) => rotate_grant_key(args).await,
        Command::Bench(args) => Ok(tokenmesh_bench::cli::main(args).await?),
    };
    // The last spans too, whether it stopped on a signal or on an error.
    telemetry.shutdown().await;
    result
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM, what Kubernetes sends.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
}

async fn up(args: &UpArgs) -> anyhow::Result<()> {
    let env = mesh::environment(args)?;
    let mut mesh = mesh::start(args, env).await.context("starting the mesh")?;
    tracing::info!(auth = %mesh.auth.addr, products = %mesh.products.addr, orders = %mesh.orders.addr, http = %mesh.http.addr, "mesh up");
    print_console(&mesh).context("printing the console's address")?;
    if args.demo {
        print_walkthrough(args, &mesh).context("printing the walkthrough")?;
    }
    tokio::select! {
        result = mesh.wait_for_failure() => result.context("a service stopped")?,
        _ = stop_signal() => mesh.shutdown().await?,
    }
    Ok(())
}

async fn serve(command: ServeCommand) -> anyhow::Result<()> {
    let (mut running, env, http) = match command {
        ServeCommand::Auth(args) => {
            let limits = args.listen.limits.limits();
            let env = mesh::process_environment(
                &args.storage,
                args.demo,
                &args.issuer.auth_issuer,
                None,
                limits,
            );
            let clients = mesh::service_clients(&args.products_secret, &args.orders_secret, &env)?;
            let listener = listen(&args.listen, &args.tls).await?;
            // Bound before Auth starts: discovery names its address.
            let http = bind_http(args.listen.http_addr.as_ref()).await?;
            let http_addr = http.as_ref().map(local_addr).transpose()?;
            let running =
                tokenmesh_auth::start(&args.auth, &env, &clients, listener, http_addr).await?;
            (running, env, http)
        }
        ServeCommand::Products(args) => {
            let (env, listener, http) = start_follower(&args.follower, args.demo).await?;
            let peers = tokenmesh_products::Peers {
                auth: args.follower.auth_url.clone(),
                verify: args.follower.verify.clone(),
            };
            let running = tokenmesh_products::start(
                &args.products,
                &args.kek,
                &args.secret,
                &peers,
                &env,
                listener,
            )
            .await?;
            (running, env, http)
        }
        ServeCommand::Orders(args) => {
            let (env, listener, http) = start_follower(&args.follower, false).await?;
            let peers = tokenmesh_orders::Peers {
                auth: args.follower.auth_url.clone(),
                products: args.products_url.clone(),
                verify: args.follower.verify.clone(),
            };
            let running =
                tokenmesh_orders::start(&args.orders, &args.secret, &peers, &env, listener).await?;
            (running, env, http)
        }
    };
    let mut http = match http {
        Some(listener) => Some(mesh::serve_http(
            listener,
            &env,
            running.http_routes.take(),
        )?),
        None => None,
    };
    tokio::select! {
        result = running.finished() => result?,
        _ = stop_signal() => running.stop().await?,
    }
    if let Some(http) = http.as_mut() {
        http.stop().await?;
    }
    Ok(())
}

/// The environment and bound listeners of `serve products|orders`.
async fn start_follower(
    args: &FollowerArgs,
    demo: bool,
) -> anyhow::Result<(Environment, Listener, Option<TcpListener>)> {
    let peer_tls = args.tls.client(&args.peer_tls)?;
    let limits = args.listen.limits.limits();
    let env = mesh::process_environment(
        &args.storage,
        demo,
        &args.issuer.auth_issuer,
        peer_tls,
        limits,
    );
    let listener = listen(&args.listen, &args.tls).await?;
    let http = bind_http(args.listen.http_addr.as_ref()).await?;
    Ok((env, listener, http))
}

/// Binds the gRPC listener of `serve`, with TLS and browser origins as
/// configured.
async fn listen(listen: &ListenArgs, tls: &TlsArgs) -> anyhow::Result<Listener> {
    Ok(Listener::new(bind(&listen.listen).await?, tls.server()?)
        .with_origins(listen.cors.cors_allowed_origins.iter().cloned()))
}

/// `tokenmesh keys rotate-grant-key`: a new grant key in Products' store;
/// running replicas pick it up within seconds.
async fn rotate_grant_key(args: GrantKeysArgs) -> anyhow::Result<()> {
    // Serves nothing and verifies nothing: no limits, no issuer.
    let env = mesh::process_environment(
        &args.storage,
        false,
        "",
        None,
        tokenmesh_server::ServerLimits::default(),
    );
    env.prepare_data_dir()?;
    let store = tokenmesh_products::Store::open(&env.database_url("products.db"))
        .await
        .context("opening Products' store")?;
    let config = tokenmesh_products::ProductsConfig::new("");
    let keys = tokenmesh_products::open_keys(&args.kek, &env, &store, &config).await?;
    let rotated = keys.rotate().await?;
    let mut out = io::stdout().lock();
    writeln!(out, "signing grants with {}", rotated.kid)?;
    if let Some(retired) = rotated.retired_kid {
        writeln!(
            out,
            "retired {retired}: published until {}",
            admin::rfc3339(rotated.retired_kid_expires_at)
        )?;
    }
    Ok(())
}

/// Binds the HTTP listener of `serve`, if it has one.
async fn bind_http(addr: Option<&tokenmesh_server::Addr>) -> anyhow::Result<Option<TcpListener>> {
    Ok(match addr {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    })
}

/// `tokenmesh keys rotate`: a new signing key in Auth's store; running replicas
/// pick it up within seconds.
async fn rotate_keys(args: KeysArgs) -> anyhow::Result<()> {
    // Serves nothing: the limits are never applied.
    let env = mesh::process_environment(
        &args.storage,
        false,
        &args.issuer.auth_issuer,
        None,
        tokenmesh_server::ServerLimits::default(),
    );
    let auth = tokenmesh_auth::open(&args.auth, &env, &[])
        .await
        .context("opening Auth's store")?;
    let rotated = auth.rotate_signing_key().await?;
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "signing with {} ({})",
        rotated.kid, args.auth.signing_alg
    )?;
    if !rotated.retired_kid.is_empty() {
        writeln!(
            out,
            "retired {}: published until {}",
            rotated.retired_kid,
            admin::rfc3339(rotated.retired_kid_expires_at)
        )?;
    }
    Ok(())
}

/// Where the web console is, and which origins may use it.
fn print_console(mesh: &Mesh) -> io::Result<()> {
    let mut out = io::stdout().lock();
    let url = format!("http://{}/", mesh.http.addr);
    let console = tokenmesh_server::Origin::http(mesh.http.addr);
    if mesh.origins.contains(&console) {
        writeln!(out, "Web console: {url}")?;
    } else {
        writeln!(
            out,
            "Web console: {url} (let it call the services: --cors-allowed-origin http://{})",
            mesh.http.addr
        )?;
    }
    out.flush()
}

/// Ready-to-paste grpcurl commands for the whole demo flow, with the mesh's
/// transport flags.
fn print_walkthrough(args: &UpArgs, mesh: &Mesh) -> io::Result<()> {
    let flags = walkthrough::grpcurl_flags(&args.tls, &args.peer_tls);
    let text = walkthrough::walkthrough(
        &flags,
        [
            mesh.auth.addr,
            mesh.products.addr,
            mesh.orders.addr,
            mesh.http.addr,
        ],
    );
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}
