//! The `tokenmesh` binary's library: its command line ([`cli`]) and how the
//! services are started, together ([`mesh::start`]) or one at a time. Tests start
//! the mesh through the same code the binary runs.

#![forbid(unsafe_code)]

pub mod cli;
pub mod mesh;
pub mod walkthrough;
