//! Auth's own counters on `/metrics`, beside its auth layer's: passwords
//! verified (each an argon2id computation) and requests refused by a throttle,
//! per rpc. Per Auth instance, so each mesh (and test) counts only its own.

use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering},
};

use tokenmesh_server::metrics::Samples;

/// The rpcs Auth throttles, as the `rpc` label says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Throttled {
    /// Login and ChangePassword (password checks).
    Login,
    /// Refresh.
    Refresh,
    /// Logout.
    Logout,
    /// IssueServiceToken.
    ServiceToken,
}

impl Throttled {
    const ALL: [Self; 4] = [Self::Login, Self::Refresh, Self::Logout, Self::ServiceToken];

    fn label(self) -> &'static str {
        match self {
            Self::Login => "Login",
            Self::Refresh => "Refresh",
            Self::Logout => "Logout",
            Self::ServiceToken => "IssueServiceToken",
        }
    }
}

/// Auth's counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    password_checks: AtomicU64,
    throttled: [AtomicU64; 4],
}

impl Counters {
    /// One password verified.
    pub(crate) fn password_checked(&self) {
        self.password_checks.fetch_add(1, Ordering::Relaxed);
    }

    /// One request refused by `rpc`'s throttle.
    pub(crate) fn throttled(&self, rpc: Throttled) {
        self.throttled[rpc as usize].fetch_add(1, Ordering::Relaxed);
    }
}

impl Samples for Counters {
    fn render(&self, out: &mut String) {
        let checks = self.password_checks.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "# HELP tokenmesh_auth_password_checks_total Passwords verified by Auth (argon2id).\n\
             # TYPE tokenmesh_auth_password_checks_total counter\n\
             tokenmesh_auth_password_checks_total {checks}\n\
             # HELP tokenmesh_auth_throttled_total Requests Auth refused by a throttle, by rpc.\n\
             # TYPE tokenmesh_auth_throttled_total counter\n"
        );
        for rpc in Throttled::ALL {
            let count = self.throttled[rpc as usize].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "tokenmesh_auth_throttled_total{{rpc=\"{}\"}} {count}",
                rpc.label()
            );
        }
    }
}
