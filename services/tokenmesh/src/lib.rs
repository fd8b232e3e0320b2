//! The `tokenmesh` binary's library: its command line ([`cli`]), how the
//! services are started, together ([`mesh::start`]) or one at a time, and the
//! web console `up` serves ([`console`]). Tests start the mesh through the same
//! code the binary runs.

#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod console;
pub mod mesh;
pub mod telemetry;
pub mod walkthrough;
