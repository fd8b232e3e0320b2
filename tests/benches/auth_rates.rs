//! Auth's issuing rates on this machine: logins (argon2id-bound), refresh
//! rotations and client-credential tokens per second, against the real mesh on
//! loopback (real sockets, real signatures, the SQLite store by default; set
//! TOKENMESH_BENCH_DATABASE_URL for PostgreSQL).
//!
//! `cargo bench -p tokenmesh-tests --bench auth_rates [-- --seconds 5 --clients 16]`

// A benchmark's report is its output.
#![allow(clippy::print_stdout)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokenmesh_proto::auth::v1::{IssueServiceTokenRequest, LoginRequest, RefreshRequest};
use tokenmesh_tests::{Mesh, TestDatabase, client_secret};

struct Options {
    seconds: u64,
    clients: usize,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str, default: u64| {
        args.iter()
            .position(|arg| arg == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    Options {
        seconds: value("--seconds", 5),
        clients: value("--clients", 16) as usize,
    }
}

/// Runs `clients` loops of `step` for `seconds`; returns completed steps per second.
async fn rate<S, F>(options: &Options, setup: impl Fn() -> S, step: F) -> f64
where
    S: Send + 'static,
    F: Fn(&mut S) -> futures_like::BoxFuture<'_, bool> + Send + Sync + Copy + 'static,
{
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(options.seconds);
    let start = Instant::now();
    let tasks: Vec<_> = (0..options.clients)
        .map(|_| {
            let mut state = setup();
            let (done, failed) = (done.clone(), failed.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    if step(&mut state).await {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client task");
    }
    let failed = failed.load(Ordering::Relaxed);
    assert_eq!(
        failed, 0,
        "{failed} calls failed: a failing call is not throughput"
    );
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

mod futures_like {
    pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
}

#[tokio::main]
async fn main() {
    let options = options();
    let database = match std::env::var("TOKENMESH_BENCH_DATABASE_URL") {
        Ok(_) => TestDatabase::create_from("TOKENMESH_BENCH_DATABASE_URL").await,
        Err(_) => None,
    };
    let store = if database.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let mesh = Mesh::builder()
        .auth_database_url(database.as_ref().map(|d| d.url.clone()))
        .login_throttle(u32::MAX, Duration::from_secs(1))
        // Rates, not limits, are measured here.
        .refresh_rate_limit(0)
        .service_token_rate_limit(0)
        .start()
        .await;
    let auth = mesh.auth().await;
    let secret = client_secret(&mesh, "orders");

    let logins = rate(
        &options,
        || auth.clone(),
        |auth| {
            Box::pin(async move {
                auth.login(LoginRequest {
                    username: "alice".into(),
                    password: "alice-demo".into(),
                })
                .await
                .is_ok()
            })
        },
    )
    .await;

    // Each client rotates its own family: refresh with the token the last refresh returned.
    let mut families = Vec::new();
    for _ in 0..options.clients {
        let first = auth
            .clone()
            .login(LoginRequest {
                username: "bob".into(),
                password: "bob-demo".into(),
            })
            .await
            .expect("login")
            .into_inner()
            .refresh_token;
        families.push(first);
    }
    let families = Arc::new(std::sync::Mutex::new(families));
    let refreshes = rate(
        &options,
        || {
            (
                auth.clone(),
                families
                    .lock()
                    .expect("lock")
                    .pop()
                    .expect("a family per client"),
            )
        },
        |(auth, token)| {
            Box::pin(async move {
                match auth
                    .refresh(RefreshRequest {
                        refresh_token: token.clone(),
                    })
                    .await
                {
                    Ok(response) => {
                        *token = response.into_inner().refresh_token;
                        true
                    }
                    Err(_) => false,
                }
            })
        },
    )
    .await;

    let service_tokens = rate(
        &options,
        || (auth.clone(), secret.clone()),
        |(auth, secret)| {
            Box::pin(async move {
                auth.issue_service_token(IssueServiceTokenRequest {
                    client_id: "orders".into(),
                    client_secret: secret.clone(),
                    audience: "products".into(),
                })
                .await
                .is_ok()
            })
        },
    )
    .await;

    println!(
        "Auth rates on {store}, {} clients, {} s each, one run:",
        options.clients, options.seconds
    );
    println!("  logins/s          {logins:>10.0}");
    println!("  refreshes/s       {refreshes:>10.0}");
    println!("  service tokens/s  {service_tokens:>10.0}");
    mesh.shutdown().await;
    if let Some(database) = database {
        database.drop_database().await;
    }
}
