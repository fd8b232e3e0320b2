//! `tokenmesh`: run the whole mesh (`up`) or one service (`serve`).

use std::io::{self, Write};

use anyhow::Context;
use clap::Parser;
use tokenmesh::{
    cli::{Cli, Command, CommonArgs, KeysArgs, KeysCommand, ServeCommand, UpArgs},
    mesh::{self, AccessTokens, Mesh},
};
use tokenmesh_server::Listener;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(io::stderr)
        .init();
    match Cli::parse().command {
        Command::Up(args) => up(args).await,
        Command::Serve(command) => serve(command).await,
        Command::Keys(KeysCommand::Rotate(args)) => rotate_keys(args).await,
        Command::Bench(args) => Ok(tokenmesh_bench::cli::main(args).await?),
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let mut mesh = mesh::start(&args).await.context("starting the mesh")?;
    tracing::info!(auth = %mesh.auth_addr, products = %mesh.products_addr, orders = %mesh.orders_addr, "mesh up");
    if args.demo {
        print_walkthrough(&mesh).context("printing the walkthrough")?;
    }
    tokio::select! {
        result = mesh.wait_for_failure() => result.context("a service stopped")?,
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("shutting down");
            mesh.shutdown().await?;
        }
    }
    Ok(())
}

async fn serve(command: ServeCommand) -> anyhow::Result<()> {
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    };
    let listen = |common: &CommonArgs| {
        let addr = common.listen;
        let tls = mesh::server_tls(&common.tls);
        async move {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?;
            anyhow::Ok(Listener::new(listener, tls?))
        }
    };
    match command {
        ServeCommand::Auth(args) => {
            let c = &args.common;
            let auth =
                mesh::auth_service(&c.data_dir, c.database_url.as_deref(), &c.auth, c.demo).await?;
            if let Some(addr) = args.http_addr {
                spawn_http(bind_http(addr).await?, Some(auth.http_router()));
            }
            auth.serve(listen(c).await?, shutdown).await?;
        }
        ServeCommand::Products(args) => {
            let c = &args.common;
            let products = mesh::products_service(
                &c.data_dir,
                c.database_url.as_deref(),
                &c.auth,
                &args.entitlements,
                c.demo,
            )
            .await?;
            let peer_tls = mesh::client_tls(&c.tls)?;
            let access = AccessTokens::follow(
                &args.auth_url,
                &c.data_dir,
                &c.auth,
                "products",
                peer_tls.as_ref(),
            )?;
            if let Some(addr) = args.http_addr {
                spawn_http(bind_http(addr).await?, None);
            }
            products
                .serve(listen(c).await?, access.keys, access.revocations, shutdown)
                .await?;
        }
        ServeCommand::Orders(args) => {
            let c = &args.common;
            let orders = mesh::orders_service(
                &c.data_dir,
                c.database_url.as_deref(),
                &c.auth,
                &args.entitlements,
                &args.auth_url,
                &args.products_url,
                mesh::client_tls(&c.tls)?.as_ref(),
            )
            .await?;
            let access = AccessTokens::follow(
                &args.auth_url,
                &c.data_dir,
                &c.auth,
                "orders",
                mesh::client_tls(&c.tls)?.as_ref(),
            )?;
            if let Some(addr) = args.http_addr {
                spawn_http(bind_http(addr).await?, None);
            }
            orders
                .serve(listen(c).await?, access.keys, access.revocations, shutdown)
                .await?;
        }
    }
    Ok(())
}

async fn bind_http(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}

/// Serves `/metrics` (and `routes`, Auth's JWKS) on `listener` for as long as
/// the process runs.
fn spawn_http(listener: TcpListener, routes: Option<axum::Router>) {
    tokio::spawn(async move {
        let forever = std::future::pending::<()>();
        if let Err(error) = tokenmesh_server::metrics::serve_http(listener, routes, forever).await {
            tracing::error!(%error, "HTTP listener stopped");
        }
    });
}

/// `tokenmesh keys rotate`: a new signing key in Auth's store; running replicas
/// pick it up within seconds.
async fn rotate_keys(args: KeysArgs) -> anyhow::Result<()> {
    let auth = mesh::auth_service(
        &args.data_dir,
        args.database_url.as_deref(),
        &args.auth,
        false,
    )
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
            "retired {}: published until {} (Unix time)",
            rotated.retired_kid, rotated.retired_kid_expires_at
        )?;
    }
    Ok(())
}

/// Ready-to-paste grpcurl commands for the whole demo flow.
fn print_walkthrough(mesh: &Mesh) -> io::Result<()> {
    let (auth, products, orders) = (mesh.auth_addr, mesh.products_addr, mesh.orders_addr);
    let mut out = io::stdout().lock();
    writeln!(
        out,
        r#"
tokenmesh is up: auth {auth}, products {products}, orders {orders}
Demo users: alice/alice-demo, bob/bob-demo, admin/admin-demo. Paste into a shell (needs grpcurl and jq):

# 1. log in as alice
TOKEN=$(grpcurl -plaintext -d '{{"username":"alice","password":"alice-demo"}}' {auth} tokenmesh.auth.v1.AuthService/Login | jq -r .accessToken)

# 2. list alice's products, keeping the entitlement grant
grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{{}}' {products} tokenmesh.products.v1.ProductsService/ListProducts
GRANT=$(grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{{}}' {products} tokenmesh.products.v1.ProductsService/ListProducts | jq -r .entitlementToken)

# 3. order P-100 with the grant (entitlement_source GRANT); run it twice: same order
grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{{"product_id":"P-100","quantity":1,"request_id":"demo-1","entitlement_token":"'"$GRANT"'"}}' {orders} tokenmesh.orders.v1.OrdersService/PlaceOrder

# 4. order P-101 without a grant: Orders' replica of Products' entitlements decides (REPLICA)
grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{{"product_id":"P-101","quantity":2,"request_id":"demo-2"}}' {orders} tokenmesh.orders.v1.OrdersService/PlaceOrder

# 5. P-104 is not alice's: PermissionDenied
grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{{"product_id":"P-104","quantity":1,"request_id":"demo-3"}}' {orders} tokenmesh.orders.v1.OrdersService/PlaceOrder

# 6. no token: Unauthenticated
grpcurl -plaintext -d '{{}}' {orders} tokenmesh.orders.v1.OrdersService/ListOrders

# 7. alice's orders
grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{{}}' {orders} tokenmesh.orders.v1.OrdersService/ListOrders

# Every service lists itself, health and reflection:
grpcurl -plaintext {orders} list
"#
    )?;
    out.flush()
}
