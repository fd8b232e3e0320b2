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
    http: Running,
    data_dir: tempfile::TempDir,
}

impl Replica {
    /// Starts Auth as `tokenmesh up <flags>` would, in `data_dir`, on free
    /// ports, reading the time from `clock` (the system's if `None`).
    pub async fn start_auth(
        data_dir: tempfile::TempDir,
        flags: &[String],
        clock: Option<SharedClock>,
    ) -> Result<Self, StartError> {
        let mut argv: Vec<String> = vec!["up".into()];
        argv.extend(flags.iter().cloned());
        argv.extend(["--data-dir".into(), data_dir.path().display().to_string()]);
        for flag in ["auth-addr", "http-addr"] {
            argv.extend([format!("--{flag}"), "127.0.0.1:0".into()]);
        }
        let args = parse_up_args(&argv).expect("valid up flags");
        let mut env = tokenmesh::mesh::environment(&args)?;
        if let Some(clock) = clock {
            env.clock = clock;
        }
        env.prepare_data_dir()?;
        let listener = tokenmesh::mesh::listener(&args, &args.auth_addr).await?;
        let http_listener = bind(&args.http_addr).await?;
        let http_addr = tokenmesh_server::start::local_addr(&http_listener)?;
        let mut server = tokenmesh::mesh::start_auth(&args, &env, listener, http_addr).await?;
        let http = tokenmesh::mesh::serve_http(http_listener, &env, server.http_routes.take())?;
        Ok(Self {
            server,
            http,
            data_dir,
        })
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
        self.http.stop().await.expect("replica's HTTP stops");
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
                "--data-dir" | "--auth-addr" | "--http-addr" => {
                    argv.next();
                }
                _ => flags.push(arg.clone()),
            }
        }
        if self.args.auth_database_url.is_none() {
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

    /// The key-encryption key Auth's data dir holds.
    pub fn key_encryption_key(&self) -> PathBuf {
        self.data_dir().join("key-encryption-key")
    }

    /// Starts another Auth replica on this mesh's store, key-encryption key and
    /// clock.
    pub async fn start_auth_replica(&self) -> Replica {
        let data_dir = tempfile::tempdir().expect("temp data dir");
        self.try_start_auth_replica(data_dir, Some(&self.key_encryption_key()))
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
        let clock = self.inner().env.clock.clone();
        Replica::start_auth(data_dir, &self.auth_replica_flags(kek), Some(clock)).await
    }
}
