//! What the real `tokenmesh` binary tells an operator's tools: its log as JSON
//! lines for a pipeline, its traces over OTLP, its metrics for a dashboard.
//! Needs the binary built (`cargo build -p tokenmesh`).

mod dashboard;
mod logs;
mod traces;
