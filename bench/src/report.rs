//! What a run reports, as JSON (`--json`) or as a table for people.

use std::{collections::BTreeMap, fmt::Write};

use serde::Serialize;

use crate::{Outcome, process::ProcessSample};

/// Latency percentiles of successful calls, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

/// What the server process used during the measured run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ServerUsage {
    /// The server's pid.
    pub pid: u32,
    /// CPU seconds (user + system) spent during the run, warm-up included.
    pub cpu_seconds: f64,
    /// CPU µs per successful call.
    pub cpu_us_per_call: f64,
    /// RSS before the run, MiB.
    pub rss_before_mib: f64,
    /// RSS after the run, MiB.
    pub rss_after_mib: f64,
    /// Peak RSS of the process so far, MiB.
    pub peak_rss_mib: f64,
}

impl ServerUsage {
    /// The usage between two samples of one process, for `calls` successful calls.
    pub fn between(pid: u32, before: ProcessSample, after: ProcessSample, calls: u64) -> Self {
        let cpu_seconds = after.cpu.saturating_sub(before.cpu).as_secs_f64();
        Self {
            pid,
            cpu_seconds,
            cpu_us_per_call: if calls == 0 {
                0.0
            } else {
                cpu_seconds * 1e6 / calls as f64
            },
            rss_before_mib: mib(before.rss_bytes),
            rss_after_mib: mib(after.rss_bytes),
            peak_rss_mib: mib(after.peak_rss_bytes),
        }
    }
}

/// Bytes in MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// One measured run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// What was measured, in a few words.
    pub label: String,
    /// `/package.Service/Method`.
    pub method: String,
    /// HTTP/2 connections.
    pub connections: usize,
    /// Requests in flight.
    pub in_flight: usize,
    /// `none`, `reuse` or `fresh`.
    pub token_mode: String,
    /// Distinct tokens sent (0 for none).
    pub distinct_tokens: usize,
    /// Measured seconds, warm-up excluded.
    pub seconds: f64,
    /// Successful calls.
    pub ok: u64,
    /// Failed calls.
    pub failed: u64,
    /// Successful calls per second: failures never count.
    pub requests_per_second: f64,
    /// Latency of successful calls.
    pub latency: Latency,
    /// Failed calls by status code.
    pub errors: BTreeMap<String, u64>,
    /// The server's CPU and memory, when it is a local process.
    pub server: Option<ServerUsage>,
}

impl Report {
    /// A report of `outcome`, labelled.
    pub fn new(label: &str, method: &str, outcome: &Outcome) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        let h = &outcome.latency;
        let latency = if h.is_empty() {
            Latency::default()
        } else {
            Latency {
                p50_ms: ms(h.value_at_quantile(0.50)),
                p90_ms: ms(h.value_at_quantile(0.90)),
                p99_ms: ms(h.value_at_quantile(0.99)),
                max_ms: ms(h.max()),
                mean_ms: h.mean() / 1000.0,
            }
        };
        Self {
            label: label.to_owned(),
            method: method.to_owned(),
            connections: 0,
            in_flight: 0,
            token_mode: "none".into(),
            distinct_tokens: 0,
            seconds: outcome.elapsed.as_secs_f64(),
            ok: outcome.ok,
            failed: outcome.failed(),
            requests_per_second: outcome.rate(),
            latency,
            errors: outcome.errors.clone(),
            server: None,
        }
    }
}

/// The reports as a plain-text table, one row each.
pub fn table(reports: &[Report]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<34} {:>5} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}  errors",
        "run",
        "infl",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "srv cpu",
        "µs/call",
        "peak MiB"
    );
    for r in reports {
        let (cpu, per_call, peak) = r.server.map_or_else(
            || ("-".to_owned(), "-".to_owned(), "-".to_owned()),
            |s| {
                (
                    format!("{:.2}s", s.cpu_seconds),
                    format!("{:.1}", s.cpu_us_per_call),
                    format!("{:.1}", s.peak_rss_mib),
                )
            },
        );
        let errors = if r.errors.is_empty() {
            "none".to_owned()
        } else {
            r.errors
                .iter()
                .map(|(code, n)| format!("{code}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let l = r.latency;
        let _ = writeln!(
            out,
            "{:<34} {:>5} {:>9.0} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8} {:>9} {:>9}  {errors}",
            r.label,
            r.in_flight,
            r.requests_per_second,
            l.p50_ms,
            l.p90_ms,
            l.p99_ms,
            l.max_ms,
            cpu,
            per_call,
            peak
        );
    }
    out
}
