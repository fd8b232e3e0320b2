//! What the benches in `tests/benches/` share: their command-line options.

/// The number after the option `name` on the bench's command line
/// (`cargo bench … -- --seconds 5`), or `default`.
pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
