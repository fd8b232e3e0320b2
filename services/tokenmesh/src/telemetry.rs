//! How the binary reports on itself: its log on stderr, as text for a person or
//! as JSON lines for a pipeline, configured once before any service starts.

use std::io::{self, IsTerminal};

use clap::{Args, ValueEnum};
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

/// What the log looks like and where traces go; flags of every subcommand.
#[derive(Debug, Clone, Args)]
pub struct TelemetryArgs {
    /// The log's format on stderr: `text`, one line per event for a person, or
    /// `json`, one JSON object per line for a log pipeline. `RUST_LOG` picks
    /// what is logged (default `info`).
    #[arg(
        long,
        global = true,
        env = "TOKENMESH_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
}

/// See [`TelemetryArgs::log_format`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; coloured only on a terminal.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`
    /// (with `message`) and the enclosing `spans`.
    Json,
}

/// Installs the process's subscriber: the log on stderr as `args` say.
pub fn init(args: &TelemetryArgs) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let log = tracing_subscriber::fmt::layer().with_writer(io::stderr);
    let log = match args.log_format {
        // Colour codes only for a person at a terminal, never into a log file
        // or a collector.
        LogFormat::Text => log.with_ansi(io::stderr().is_terminal()).boxed(),
        LogFormat::Json => log.json().with_ansi(false).boxed(),
    };
    // A per-layer filter, not a global one: a trace exporter beside the log
    // sees what it enables, whatever the log leaves out.
    tracing_subscriber::registry()
        .with(log.with_filter(filter))
        .init();
}
