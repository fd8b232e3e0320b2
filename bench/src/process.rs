//! CPU time and memory of a local server process, read from `/proc`.

use std::time::Duration;

use serde::Serialize;

use crate::BenchError;

/// Linux reports CPU times in clock ticks of `USER_HZ`, which is 100 on every
/// architecture Linux supports for user space.
const USER_HZ: u64 = 100;

/// A process's resource use at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProcessSample {
    /// User plus system CPU time since the process started.
    pub cpu: Duration,
    /// Resident set size now, bytes.
    pub rss_bytes: u64,
    /// Peak resident set size since the process started (`VmHWM`), bytes.
    pub peak_rss_bytes: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`.
pub fn sample(pid: u32) -> Result<ProcessSample, BenchError> {
    let read = |file: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .map_err(|e| BenchError::Process(format!("/proc/{pid}/{file}: {e}")))
    };
    let stat = read("stat")?;
    let status = read("status")?;
    let bad = || BenchError::Process(format!("/proc/{pid}/stat: unexpected format"));
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .ok_or_else(bad)?
        .1
        .split_whitespace()
        .collect();
    // Fields 14 and 15 of proc(5), utime and stime; `fields[0]` is field 3.
    let ticks = |index: usize| -> Result<u64, BenchError> {
        fields
            .get(index)
            .and_then(|v| v.parse().ok())
            .ok_or_else(bad)
    };
    let cpu_ticks = ticks(11)? + ticks(12)?;
    let kib = |name: &str| -> Result<u64, BenchError> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| BenchError::Process(format!("/proc/{pid}/status: no {name}")))
    };
    Ok(ProcessSample {
        cpu: Duration::from_millis(cpu_ticks * 1000 / USER_HZ),
        rss_bytes: kib("VmRSS:")? * 1024,
        peak_rss_bytes: kib("VmHWM:")? * 1024,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_a_peak_at_least_as_high() {
        let sample = sample(std::process::id()).expect("readable");
        assert!(sample.rss_bytes > 0);
        assert!(sample.peak_rss_bytes >= sample.rss_bytes);
        assert!(super::sample(u32::MAX).is_err());
    }
}
