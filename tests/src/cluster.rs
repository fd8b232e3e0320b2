//! A mesh as it scales out: N `tokenmesh serve` processes of each service on
//! loopback (127.0.0.2, .3, …), on PostgreSQL, behind HAProxy; replicas call each
//! other over balanced channels, outside clients go through the proxy. Faults:
//! kill -9, SIGTERM, restart of one replica, and dropped database connections.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    time::Duration,
};

use tokenmesh_proto::auth::v1::auth_service_client::AuthServiceClient;
use tonic::transport::{Channel, Endpoint};
use tonic_health::{
    ServingStatus,
    pb::{HealthCheckRequest, health_client::HealthClient},
};

use crate::{
    CHILD_DEADLINE, TestDatabase,
    haproxy::{Backend, Proxy, free_port},
    replica_process::ReplicaProcess,
};

/// The three services, in the order they start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `serve auth`.
    Auth,
    /// `serve products`.
    Products,
    /// `serve orders`.
    Orders,
}

impl Service {
    /// All of them, in start order.
    pub const ALL: [Self; 3] = [Self::Auth, Self::Products, Self::Orders];

    /// The `serve` subcommand and backend name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Products => "products",
            Self::Orders => "orders",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// N replicas of every service behind HAProxy, all on one PostgreSQL database
/// (fresh for the test), each service in its own schema.
#[derive(Debug)]
pub struct Cluster {
    /// Replicas per service, indexed by [`Service`].
    replicas: [Vec<ReplicaProcess>; 3],
    frontends: [SocketAddr; 3],
    /// The proxy in front.
    pub proxy: Proxy,
    database: TestDatabase,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` replicas of each service and the proxy, and waits until every
    /// replica and every frontend answers SERVING. `None` (the test is skipped)
    /// without `TOKENMESH_TEST_DATABASE_URL`.
    pub async fn start(n: usize) -> Option<Self> {
        Self::start_with(n, &[]).await
    }

    /// [`Cluster::start`], every Orders replica also given `orders_flags`
    /// (`--entitlement-sources rpc`, `--rpc-cache-ttl 0s`, …).
    pub async fn start_with(n: usize, orders_flags: &[&str]) -> Option<Self> {
        let database = TestDatabase::create().await?;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = |name: &str| dir.path().join(name).display().to_string();
        // Every replica of Auth (and of Products) must seal and unseal the same
        // signing keys.
        let kek = path("key-encryption-key");
        let key = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            rand::random::<[u8; 32]>(),
        );
        tokenmesh_server::start::write_private_file(Path::new(&kek), key.as_bytes())
            .expect("key-encryption key written");
        let products_secret = tokenmesh_server::random_token(32);
        let orders_secret = tokenmesh_server::random_token(32);

        let mut next_ip = 2u8;
        let mut ip = || {
            next_ip += 1;
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, next_ip - 1))
        };
        let mut replicas: [Vec<ReplicaProcess>; 3] = Default::default();
        let list = |replicas: &[ReplicaProcess]| {
            let addrs: Vec<String> = replicas.iter().map(|r| r.addr.to_string()).collect();
            addrs.join(",")
        };
        for service in Service::ALL {
            let name = service.name();
            let mut args = vec![
                name.to_owned(),
                "--data-dir".into(),
                // Shared by the service's replicas (nothing in it is needed
                // once keys live in the database; harmless until then).
                path(name),
                "--database-url".into(),
                database.url.clone(),
            ];
            let flags: Vec<String> = match service {
                Service::Auth => vec![
                    "--demo".into(),
                    "--key-encryption-key".into(),
                    kek.clone(),
                    // Through the proxy every client has the proxy's address.
                    "--refresh-rate-limit".into(),
                    "0".into(),
                    "--service-token-rate-limit".into(),
                    "0".into(),
                ],
                Service::Products => vec![
                    "--demo".into(),
                    // Its grant keys are sealed in its database under it too.
                    "--key-encryption-key".into(),
                    kek.clone(),
                    "--auth-url".into(),
                    list(&replicas[0]),
                ],
                Service::Orders => [
                    "--auth-url".into(),
                    list(&replicas[0]),
                    "--products-url".into(),
                    list(&replicas[1]),
                ]
                .into_iter()
                .chain(orders_flags.iter().map(|flag| flag.to_string()))
                .collect(),
            };
            args.extend(flags);
            let (products, orders) = (
                ("TOKENMESH_PRODUCTS_CLIENT_SECRET", products_secret.clone()),
                ("TOKENMESH_ORDERS_CLIENT_SECRET", orders_secret.clone()),
            );
            let secrets = match service {
                Service::Auth => vec![products, orders],
                Service::Products => vec![products],
                Service::Orders => vec![orders],
            };
            // Past HAProxy's check interval and timeout: a stopping replica
            // leaves the rotation before it stops accepting.
            args.extend(["--shutdown-delay".into(), "1s".into()]);
            // One after the other: the first creates what the others share.
            for i in 1..=n {
                let replica = ReplicaProcess::start(
                    &format!("{name}-{i}"),
                    dir.path(),
                    args.clone(),
                    secrets.clone(),
                    ip(),
                )
                .await;
                replica.wait_serving().await;
                replicas[service.index()].push(replica);
            }
        }
        let frontends = [free_port(), free_port(), free_port()];
        let backends: Vec<Backend> = Service::ALL
            .iter()
            .map(|service| Backend {
                name: service.name().into(),
                frontend: frontends[service.index()],
                servers: replicas[service.index()].iter().map(|r| r.addr).collect(),
            })
            .collect();
        let proxy = Proxy::start(dir.path(), &backends).await;
        let cluster = Self {
            replicas,
            frontends,
            proxy,
            database,
            dir,
        };
        for service in Service::ALL {
            cluster.wait_frontend_serving(service).await;
        }
        Some(cluster)
    }

    /// The replicas of `service`.
    pub fn replicas(&self, service: Service) -> &[ReplicaProcess] {
        &self.replicas[service.index()]
    }

    /// ReplicaProcess `i` of `service`.
    pub fn replica(&mut self, service: Service, i: usize) -> &mut ReplicaProcess {
        &mut self.replicas[service.index()][i]
    }

    /// Every replica of every service.
    pub fn all(&self) -> impl Iterator<Item = &ReplicaProcess> {
        self.replicas.iter().flatten()
    }

    /// Where outside clients reach `service`: its HAProxy frontend.
    pub fn frontend(&self, service: Service) -> SocketAddr {
        self.frontends[service.index()]
    }

    /// A lazy channel to `service` through the proxy.
    pub fn channel(&self, service: Service) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.frontend(service)))
            .expect("url")
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy()
    }

    /// Auth through the proxy.
    pub fn auth(&self) -> AuthServiceClient<Channel> {
        AuthServiceClient::new(self.channel(Service::Auth))
    }

    /// Waits until a health check through `service`'s frontend says SERVING: the
    /// proxy has a replica in rotation.
    pub async fn wait_frontend_serving(&self, service: Service) {
        let health = HealthClient::new(self.channel(service));
        let context = || {
            let name = service.name();
            format!(
                ": {name} not SERVING through the proxy:\n{}",
                self.proxy.log()
            )
        };
        crate::eventually_or(CHILD_DEADLINE, context, || {
            let mut health = health.clone();
            async move {
                let request = HealthCheckRequest { service: "".into() };
                let status = health.check(request).await.ok()?.into_inner().status;
                (status == ServingStatus::Serving as i32).then_some(())
            }
        })
        .await;
    }

    /// Ends every PostgreSQL connection of every service (`pg_terminate_backend`):
    /// how many there were.
    pub async fn terminate_database_connections(&self) -> i64 {
        let database = &self.database;
        let url = database.url.split('?').next().unwrap_or_default();
        let name = url.rsplit('/').next().unwrap_or_default();
        let mut connection = <sqlx::AnyConnection as sqlx::Connection>::connect(&database.url)
            .await
            .expect("PostgreSQL reachable");
        // Every other connection to the database: the services' pools.
        let (terminated,): (i64,) = sqlx::query_as(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(name)
        .fetch_one(&mut connection)
        .await
        .expect("pg_terminate_backend");
        terminated
    }

    /// Where the replicas' logs and the proxy's configuration are.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops every replica with SIGTERM (each must exit 0), the proxy, and drops
    /// the database.
    pub async fn stop(mut self) {
        for replica in self.replicas.iter_mut().flatten() {
            if replica.pid().is_some() {
                let status = replica.terminate().await;
                assert!(
                    status.success(),
                    "{} exited with {status}:\n{}",
                    replica.name,
                    replica.log()
                );
            }
        }
        self.proxy.stop().await;
        self.database.drop_database().await;
    }
}
