//! Counters of what the auth layer decided, by outcome and reason, and their
//! Prometheus text form. Lock-free: one atomic add per request.

use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering},
};

use crate::error::REASONS;

/// Why a request was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// The method is public: no token looked at.
    Public,
    /// The token's signature was checked.
    Verified,
    /// The token was found in the verified-token cache.
    Cached,
}

impl Allowed {
    const ALL: [Allowed; 3] = [Allowed::Public, Allowed::Verified, Allowed::Cached];

    /// The `reason` label.
    pub fn reason(self) -> &'static str {
        match self {
            Allowed::Public => "PUBLIC",
            Allowed::Verified => "VERIFIED",
            Allowed::Cached => "CACHED",
        }
    }
}

/// Request counters of one [`crate::AuthLayer`] (shared by its verifier).
#[derive(Debug, Default)]
pub struct AuthMetrics {
    allowed: [AtomicU64; 3],
    refused: [AtomicU64; REASONS.len()],
}

impl AuthMetrics {
    /// Counts a request let through.
    pub fn allowed(&self, why: Allowed) {
        let index = Allowed::ALL.iter().position(|a| *a == why).unwrap_or(0);
        self.allowed[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request refused for `reason` (an [`crate::AuthError::reason`]).
    pub fn refused(&self, reason: &str) {
        if let Some(index) = REASONS.iter().position(|r| *r == reason) {
            self.refused[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many requests were let through for `why`.
    pub fn allowed_count(&self, why: Allowed) -> u64 {
        let index = Allowed::ALL.iter().position(|a| *a == why).unwrap_or(0);
        self.allowed[index].load(Ordering::Relaxed)
    }

    /// How many requests were refused for `reason`.
    pub fn refused_count(&self, reason: &str) -> u64 {
        REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |index| self.refused[index].load(Ordering::Relaxed))
    }

    /// Adds this layer's counts to `total` (to expose several layers of one
    /// service as one series).
    pub fn add_to(&self, total: &AuthMetrics) {
        for (mine, theirs) in self.allowed.iter().zip(&total.allowed) {
            theirs.fetch_add(mine.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        for (mine, theirs) in self.refused.iter().zip(&total.refused) {
            theirs.fetch_add(mine.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// Appends the counters as Prometheus text samples labelled `service`
    /// (without the `# HELP`/`# TYPE` lines: see [`AuthMetrics::HEADER`]).
    pub fn render_samples(&self, service: &str, out: &mut String) {
        let service = label_value(service);
        for (why, count) in Allowed::ALL.iter().zip(&self.allowed) {
            let _ = writeln!(
                out,
                "{FAMILY}{{service=\"{service}\",outcome=\"allowed\",reason=\"{}\"}} {}",
                why.reason(),
                count.load(Ordering::Relaxed)
            );
        }
        for (reason, count) in REASONS.iter().zip(&self.refused) {
            let count = count.load(Ordering::Relaxed);
            if count > 0 {
                let _ = writeln!(
                    out,
                    "{FAMILY}{{service=\"{service}\",outcome=\"refused\",reason=\"{reason}\"}} {count}"
                );
            }
        }
    }

    /// The `# HELP` and `# TYPE` lines of the family, once per exposition.
    pub const HEADER: &'static str = "# HELP tokenmesh_auth_requests_total Requests seen by the auth layer, by outcome and reason.\n# TYPE tokenmesh_auth_requests_total counter\n";

    /// The whole exposition for one service.
    pub fn render(&self, service: &str) -> String {
        let mut out = String::from(Self::HEADER);
        self.render_samples(service, &mut out);
        out
    }
}

const FAMILY: &str = "tokenmesh_auth_requests_total";

/// `value` safe inside a Prometheus label's quotes: the characters the text
/// format would have to escape (`\`, `"`, newline) become `_`.
pub fn label_value(value: &str) -> String {
    value.replace(['\\', '"', '\n'], "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_as_prometheus_text() {
        let metrics = AuthMetrics::default();
        metrics.allowed(Allowed::Cached);
        metrics.allowed(Allowed::Cached);
        metrics.refused("TOKEN_EXPIRED");
        metrics.refused("NOT_A_REASON");
        let text = metrics.render("orders");
        assert!(text.starts_with("# HELP tokenmesh_auth_requests_total"));
        assert!(text.contains(
            "tokenmesh_auth_requests_total{service=\"orders\",outcome=\"allowed\",reason=\"CACHED\"} 2\n"
        ));
        assert!(text.contains(
            "tokenmesh_auth_requests_total{service=\"orders\",outcome=\"refused\",reason=\"TOKEN_EXPIRED\"} 1\n"
        ));
        assert!(!text.contains("NOT_A_REASON"));
    }
}
