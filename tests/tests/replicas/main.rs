//! Many processes of the real `tokenmesh` binary: how one stops (SIGTERM, as
//! Kubernetes sends it), and replicas of every service on one PostgreSQL behind
//! HAProxy, through faults. Needs the binary built (`cargo build -p tokenmesh`).

mod drain;
mod faults;
mod load;
mod logs;
