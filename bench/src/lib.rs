//! `tokenmesh bench`: a gRPC load generator for any method of the mesh (requests
//! written as JSON, encoded through the protos' descriptors), with the token
//! modes that matter for a verifying mesh — none, one reused, a fresh one per
//! request — and a report of throughput, HDR latency percentiles, errors by
//! status code and the server's CPU and memory. The scenarios that produce the
//! README's results are one command each.

#![forbid(unsafe_code)]

pub mod cli;
mod codec;
mod load;
mod methods;
pub mod plot;
pub mod process;
mod report;
pub mod scenario;
mod tokens;
mod trivial;

pub use codec::RawCodec;
pub use load::{Body, LoadConfig, Outcome, Stop, Target, call, channel, code_name, connect, run};
pub use methods::{Method, Methods};
pub use report::{Latency, Report, ServerUsage, mib, table};
pub use tokens::{TokenMinter, Tokens};
pub use trivial::{TRIVIAL_AUDIENCE, TRIVIAL_METHOD, serve_trivial, trivial_auth_layer};

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The descriptor set did not decode.
    #[error("descriptors: {0}")]
    Descriptor(String),
    /// No such method in the protos.
    #[error("unknown method {0} (expected package.Service/Method)")]
    UnknownMethod(String),
    /// The request JSON does not fit the method's input.
    #[error("request: {0}")]
    Request(String),
    /// A response did not decode.
    #[error("response: {0}")]
    Response(String),
    /// Minting or reading tokens.
    #[error("tokens: {0}")]
    Token(String),
    /// Connecting to the target.
    #[error("connecting: {0}")]
    Connect(String),
    /// A load worker failed.
    #[error("worker: {0}")]
    Worker(String),
    /// Reading a process's usage.
    #[error("process: {0}")]
    Process(String),
    /// Serving the trivial server.
    #[error("serving: {0}")]
    Serve(String),
    /// Starting or talking to a server process.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A call a scenario needs (a login, a grant) failed.
    #[error("{context}: {status}")]
    Call {
        /// What was being done.
        context: String,
        /// The status returned.
        status: tonic::Status,
    },
    /// Drawing the plot.
    #[error("plot: {0}")]
    Plot(String),
    /// A run's every call failed: the report measured refusals, not the server
    /// (a wrong `--login`, an expired `--token`, the wrong address).
    #[error("no call succeeded in {label}: {failed} failed ({errors})")]
    NothingSucceeded {
        /// The run.
        label: String,
        /// Its failed calls.
        failed: u64,
        /// Failed calls by code, `CODE×count, …`.
        errors: String,
    },
}
