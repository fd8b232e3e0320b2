//! One more replica of a service beside a running [`Mesh`], on the mesh's
//! store: in a data dir of its own, started by the service crate's own `start`
//! as `tokenmesh up` starts it, as a second process on another machine would be.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use tokenmesh_interceptor::SharedClock;
use tokenmesh_proto::auth::v1::auth_service_client::AuthServiceClient;
use tokenmesh_server::{Running, StartError, start::bind};
use tonic::transport::Channel;

use crate::{Mesh, parse_up_args};

/// A replica started beside a mesh; stopped when dropped.
#[derive(Debug)]
pub struct Replica {
    server: Running,
    /// Auth's HTTP routes (JWKS, discovery); `None` for Products.
    http: Option<Running>,
    data_dir: tempfile::TempDir,
}

/// `up <flags> --data-dir <data_dir>` with `addr_flags` on free ports, parsed
/// by the binary's own parser, and its environment on `clock`.
fn replica_args(
    data_dir: &Path,
    flags: &[String],
    addr_flags: &[&str],
    clock: Option<SharedClock>,
) -> Result<(tokenmesh::cli::UpArgs, tokenmesh_server::Environment), StartError> {
    let mut argv: Vec<String> = vec!["up".into()];
    argv.extend(flags.iter().cloned());
    argv.extend(["--data-dir".into(), data_dir.display().to_string()]);
    for flag in addr_flags {
        argv.extend([format!("--{flag}"), "127.0.0.1:0".into()]);
    }
    let args = parse_up_args(&argv).expect("valid up flags");
    let mut env = tokenmesh::mesh::environment(&args)?;
    if let Some(clock) = clock {
        env.clock = clock;
    }
    env.prepare_data_dir()?;
    Ok((args, env))
}

impl Replica {
    /// Starts Auth as `tokenmesh up <flags>` would, in `data_dir`, on free
    /// ports, reading the time from `clock` (the system's if `None`).
    pub async fn start_auth(
        data_dir: tempfile::TempDir,
        flags: &[String],
        clock: Option<SharedClock>,
    ) -> Result<Self, StartError> {
        let (args, env) = replica_args(data_dir.path(), flags, &["auth-addr", "http-addr"], clock)?;
        let listener =
            tokenmesh::mesh::listener(&args, &args.auth_addr, &args.cors.cors_allowed_origins)
                .await?;
        let http_listener = bind(&args.http_addr).await?;
        let http_addr = tokenmesh_server::start::local_addr(&http_listener)?;
        let mut server = tokenmesh::mesh::start_auth(&args, &env, listener, http_addr).await?;
        let http = tokenmesh::mesh::serve_http(http_listener, &env, server.http_routes.take())?;
        Ok(Self {
            server,
            http: Some(http),
            data_dir,
        })
    }

    /// Starts Products as `tokenmesh up <flags>` would, in `data_dir`, on a
    /// free port, on the database `database_url`, calling Auth at `auth`.
    pub async fn start_products(
        data_dir: tempfile::TempDir,
        flags: &[String],
        clock: Option<SharedClock>,
        database_url: &str,
        auth: SocketAddr,
    ) -> Result<Self, StartError> {
        let (args, mut env) = replica_args(data_dir.path(), flags, &["products-addr"], clock)?;
        env.database_url = Some(database_url.to_owned());
        let listener =
            tokenmesh::mesh::listener(&args, &args.products_addr, &args.cors.cors_allowed_origins)
                .await?;
        let server = tokenmesh::mesh::start_products(&args, &env, auth, listener).await?;
        Ok(Self {
            server,
            http: None,
            data_dir,
        })
    }

    /// Whether the replica is ready (Products: Auth's revocations replayed).
    pub fn is_ready(&self) -> bool {
        self.server.is_ready()
    }

    /// Where the replica listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Its own data dir.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// A client of this Auth replica.
    pub async fn auth(&self) -> AuthServiceClient<Channel> {
        AuthServiceClient::new(Mesh::channel(self.addr()).await)
    }

    /// Stops the replica and waits for it.
    pub async fn stop(mut self) {
        self.server.stop().await.expect("replica stops");
        if let Some(http) = &mut self.http {
            http.stop().await.expect("replica's HTTP stops");
        }
    }
}

impl Mesh {
    /// The flags of another Auth replica sharing this mesh's state: this
    /// mesh's own flags, its Auth database, the service clients' secrets and,
    /// if `kek` is given, that key-encryption key (`None`: the replica's own
    /// data dir's, generated on first start).
    pub fn auth_replica_flags(&self, kek: Option<&Path>) -> Vec<String> {
        let mut flags: Vec<String> = Vec::new();
        let mut argv = self.argv.iter().skip(1);
        while let Some(arg) = argv.next() {
            match arg.as_str() {
                // The replica's own data dir and ports.
                "--data-dir" | "--auth-addr" | "--products-addr" | "--http-addr" => {
                    argv.next();
                }
                _ => flags.push(arg.clone()),
            }
        }
        if self.args.auth_database_url.is_none() && self.args.database_url.is_none() {
            let url = tokenmesh_server::db::sqlite_url(&self.data_dir().join("auth.db"));
            flags.extend(["--auth-database-url".into(), url]);
        }
        for client in ["products", "orders"] {
            // `=`: a random secret may start with `-`.
            let secret = crate::client_secret(self, client);
            flags.push(format!("--{client}-client-secret={secret}"));
        }
        if let Some(kek) = kek {
            flags.extend(["--key-encryption-key".into(), kek.display().to_string()]);
        }
        flags
    }

    /// Starts another Products replica on this mesh's store (its PostgreSQL
    /// database, or its SQLite file), key-encryption key and clock, following
    /// this mesh's Auth.
    pub async fn start_products_replica(&self) -> Replica {
        self.start_products_on(&self.products_database_url()).await
    }

    /// Products' database: the mesh's PostgreSQL database, or its SQLite file.
    pub fn products_database_url(&self) -> String {
        self.store_url("products.db")
    }

    /// A service's database: the mesh's PostgreSQL database, or the SQLite
    /// `file` in its data dir.
    pub fn store_url(&self, file: &str) -> String {
        match self.database_url() {
            Some(url) => url.to_owned(),
            None => tokenmesh_server::db::sqlite_url(&self.data_dir().join(file)),
        }
    }

    /// Starts a Products replica on the database `url` with this mesh's
    /// key-encryption key, clock and client secret, following this mesh's
    /// Auth; waits until it is ready.
    pub async fn start_products_on(&self, url: &str) -> Replica {
        let replica = self
            .try_start_products_on(url, &self.key_encryption_key())
            .await
            .expect("products replica starts");
        crate::eventually(std::time::Duration::from_secs(30), || async {
            replica.is_ready().then_some(())
        })
        .await;
        replica
    }

    /// Starts a Products replica on the database `url` with the key-encryption
    /// key `kek` and this mesh's clock and client secret, following this mesh's
    /// Auth; the error if it refuses.
    pub async fn try_start_products_on(
        &self,
        url: &str,
        kek: &Path,
    ) -> Result<Replica, StartError> {
        let mut flags = self.auth_replica_flags(Some(kek));
        // Products' flags need no Auth database.
        if let Some(at) = flags.iter().position(|flag| flag == "--auth-database-url") {
            flags.drain(at..at + 2);
        }
        let clock = self.clock();
        let data_dir = tempfile::tempdir().expect("temp data dir");
        Replica::start_products(data_dir, &flags, Some(clock), url, self.auth_addr()).await
    }

    /// The key-encryption key Auth's data dir holds.
    pub fn key_encryption_key(&self) -> PathBuf {
        self.data_dir()
            .join(tokenmesh_server::key_ring::KEY_ENCRYPTION_KEY_FILE)
    }

    /// Starts another Auth replica on this mesh's store, key-encryption key and
    /// clock.
    pub async fn start_auth_replica(&self) -> Replica {
        let data_dir = tempfile::tempdir().expect("temp data dir");
        self.try_start_auth_replica(data_dir, Some(&self.key_encryption_key()))
            .await
            .expect("auth replica starts")
    }

    /// Starts another Auth replica on this mesh's store, key-encryption key and
    /// clock, with `flags` added (e.g. `--revocation-feed-poll`).
    pub async fn start_auth_replica_with(&self, flags: &[&str]) -> Replica {
        let mut all = self.auth_replica_flags(Some(&self.key_encryption_key()));
        all.extend(flags.iter().map(|flag| flag.to_string()));
        let clock = self.clock();
        let data_dir = tempfile::tempdir().expect("temp data dir");
        Replica::start_auth(data_dir, &all, Some(clock))
            .await
            .expect("auth replica starts")
    }

    /// Starts another Auth replica in `data_dir` on this mesh's store and
    /// clock, with the key-encryption key `kek` (`None`: its data dir's); the
    /// error if it refuses.
    pub async fn try_start_auth_replica(
        &self,
        data_dir: tempfile::TempDir,
        kek: Option<&Path>,
    ) -> Result<Replica, StartError> {
        let clock = self.clock();
        Replica::start_auth(data_dir, &self.auth_replica_flags(kek), Some(clock)).await
    }
}
