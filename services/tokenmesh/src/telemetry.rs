//! How the binary reports on itself: its log on stderr, as text for a person or
//! as JSON lines for a pipeline, and, given an OTLP endpoint, its per-request
//! spans as OpenTelemetry traces. Configured once, before any service starts.

use std::io::{self, IsTerminal};

use clap::{Args, ValueEnum};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::Level;
use tracing_subscriber::{
    EnvFilter, Layer, filter::Targets, layer::SubscriberExt, util::SubscriberInitExt,
};

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
    /// Export traces over OTLP/gRPC to this collector (`http://host:4317`): a
    /// span per request and per handler in every service, one trace per call
    /// across services (W3C `traceparent`). Batching follows the standard
    /// `OTEL_BSP_*` variables. Default: no traces, and no per-request spans.
    #[arg(long, global = true, env = "TOKENMESH_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
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

/// Why traces cannot be exported.
#[derive(Debug, thiserror::Error)]
#[error("exporting traces to {endpoint}: {source}")]
pub struct TelemetryError {
    endpoint: String,
    source: opentelemetry_otlp::ExporterBuildError,
}

/// The trace exporter, if any: [`Telemetry::shutdown`] sends what is still
/// batched.
#[derive(Debug)]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the trace exporter (blocking: not on a runtime thread).
    pub async fn shutdown(self) {
        if let Some(traces) = self.traces {
            let flushed = tokio::task::spawn_blocking(move || traces.shutdown()).await;
            if let Ok(Err(error)) = flushed {
                tracing::warn!(%error, "flushing traces failed");
            }
        }
    }
}

/// Installs the process's subscriber: the log on stderr as `args` say and, with
/// an OTLP endpoint, the trace exporter of `service` (`service.name`). Call
/// on the runtime: the exporter's client needs it.
pub fn init(args: &TelemetryArgs, service: &str) -> Result<Telemetry, TelemetryError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let log = tracing_subscriber::fmt::layer().with_writer(io::stderr);
    let log = match args.log_format {
        // Colour codes only for a person at a terminal, never into a log file
        // or a collector.
        LogFormat::Text => log.with_ansi(io::stderr().is_terminal()).boxed(),
        LogFormat::Json => log.json().with_ansi(false).boxed(),
    };
    let traces = match &args.otlp_endpoint {
        Some(endpoint) => {
            Some(
                tracer_provider(endpoint, service).map_err(|source| TelemetryError {
                    endpoint: endpoint.clone(),
                    source,
                })?,
            )
        }
        None => None,
    };
    // Per-layer filters, not a global one: the trace layer sees this project's
    // DEBUG spans (one per request and handler) whatever the log leaves out;
    // without an exporter nothing enables them and they cost nothing.
    let trace_layer = traces.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("tokenmesh"))
            .with_filter(Targets::new().with_target("tokenmesh", Level::DEBUG))
    });
    tracing_subscriber::registry()
        .with(log.with_filter(filter))
        .with(trace_layer)
        .init();
    if traces.is_some() {
        // Read and written by the interceptor's client layer and every server.
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    }
    Ok(Telemetry { traces })
}

/// Spans batched and sent to `endpoint` over OTLP/gRPC as `service`'s.
fn tracer_provider(
    endpoint: &str,
    service: &str,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build())
}
