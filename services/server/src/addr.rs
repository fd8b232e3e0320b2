//! Addresses as operators type them: `host:port` with a name or an IP, or the URL
//! form `http://host:port` / `https://host:port`, for listeners and for peers alike.

use std::{fmt, str::FromStr};

/// Why an address flag could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not an address: {reason} (use host:port or http(s)://host:port)")]
pub struct AddrError {
    input: String,
    reason: &'static str,
}

/// `host:port`, parsed from either form; `tls` when the URL said `https`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    /// `host:port` (an IPv6 host keeps its brackets).
    pub authority: String,
    /// Whether the URL form asked for TLS.
    pub tls: bool,
}

impl FromStr for Addr {
    type Err = AddrError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = |reason| AddrError {
            input: input.to_owned(),
            reason,
        };
        let (tls, rest) = if let Some(rest) = input.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = input.strip_prefix("http://") {
            (false, rest)
        } else if input.contains("://") {
            return Err(error("only http and https URLs"));
        } else {
            (false, input)
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('/') {
            return Err(error("a path is not allowed"));
        }
        let (host, port) = authority.rsplit_once(':').ok_or_else(|| error("no port"))?;
        if host.is_empty() {
            return Err(error("no host"));
        }
        port.parse::<u16>()
            .map_err(|_| error("the port is not a number up to 65535"))?;
        let bracketed = host.starts_with('[') && host.ends_with(']');
        if host.contains(':') && !bracketed {
            return Err(error("write an IPv6 host in brackets, [::1]:port"));
        }
        Ok(Self {
            authority: authority.to_owned(),
            tls,
        })
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.authority)
    }
}

impl Addr {
    /// The URL a client dials: `https` when this address or the caller asks for
    /// TLS.
    pub fn url(&self, tls: bool) -> String {
        let scheme = if self.tls || tls { "https" } else { "http" };
        format!("{scheme}://{}", self.authority)
    }
}

/// A peer service's replicas: one address, or several separated by commas, which
/// a client balances over (`--auth-url a:1,b:1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its replicas, at least one, at most [`Peer::MAX_REPLICAS`].
    pub replicas: Vec<Addr>,
}

impl Peer {
    /// The most replicas one flag may list.
    pub const MAX_REPLICAS: usize = 64;
}

impl FromStr for Peer {
    type Err = AddrError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = input.split(',').map(str::trim).collect();
        if parts.len() > Self::MAX_REPLICAS {
            return Err(AddrError {
                input: crate::shown(input).to_string(),
                reason: "more than 64 replicas",
            });
        }
        let replicas = parts
            .into_iter()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        Ok(Self { replicas })
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, addr) in self.replicas.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{addr}")?;
        }
        Ok(())
    }
}

impl From<Addr> for Peer {
    fn from(addr: Addr) -> Self {
        Self {
            replicas: vec![addr],
        }
    }
}

/// A clap value parser for tools that need one socket address now: either form,
/// the host name resolved (the first address it has).
pub fn socket_addr(input: &str) -> Result<std::net::SocketAddr, String> {
    let addr: Addr = input.parse().map_err(|e: AddrError| e.to_string())?;
    std::net::ToSocketAddrs::to_socket_addrs(addr.authority.as_str())
        .map_err(|e| format!("{input:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{input:?}: the name has no address"))
}

impl From<std::net::SocketAddr> for Addr {
    fn from(addr: std::net::SocketAddr) -> Self {
        Self {
            authority: addr.to_string(),
            tls: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &str) -> Result<(String, bool), String> {
        input
            .parse::<Addr>()
            .map(|addr| (addr.authority, addr.tls))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn host_port_and_url_forms_are_the_same_address() {
        let plain = Ok(("localhost:50051".to_owned(), false));
        assert_eq!(parse("localhost:50051"), plain);
        assert_eq!(parse("http://localhost:50051"), plain);
        assert_eq!(parse("http://localhost:50051/"), plain);
        assert_eq!(
            parse("https://auth.internal:443"),
            Ok(("auth.internal:443".to_owned(), true))
        );
        assert_eq!(parse("127.0.0.1:0"), Ok(("127.0.0.1:0".to_owned(), false)));
        assert_eq!(parse("[::1]:8080"), Ok(("[::1]:8080".to_owned(), false)));
    }

    #[test]
    fn what_is_not_an_address_says_why() {
        assert_eq!(
            parse("localhost"),
            Err(
                r#""localhost" is not an address: no port (use host:port or http(s)://host:port)"#
                    .into()
            )
        );
        assert_eq!(
            parse("ftp://x:1"),
            Err(r#""ftp://x:1" is not an address: only http and https URLs (use host:port or http(s)://host:port)"#.into())
        );
        assert_eq!(
            parse("x:99999"),
            Err(r#""x:99999" is not an address: the port is not a number up to 65535 (use host:port or http(s)://host:port)"#.into())
        );
        assert_eq!(
            parse("http://x:1/path"),
            Err(r#""http://x:1/path" is not an address: a path is not allowed (use host:port or http(s)://host:port)"#.into())
        );
        assert_eq!(
            parse("::1:80"),
            Err(r#""::1:80" is not an address: write an IPv6 host in brackets, [::1]:port (use host:port or http(s)://host:port)"#.into())
        );
    }

    #[test]
    fn a_peer_lists_its_replicas_separated_by_commas() {
        let peer: Peer = "127.0.0.2:1, http://127.0.0.3:1"
            .parse()
            .expect("two replicas");
        assert_eq!(peer.to_string(), "127.0.0.2:1,127.0.0.3:1");
        assert_eq!(peer.replicas.len(), 2);
        assert_eq!(
            "a:1,".parse::<Peer>().map_err(|e| e.to_string()),
            Err(r#""" is not an address: no port (use host:port or http(s)://host:port)"#.into())
        );
        let many = vec!["a:1"; 65].join(",");
        assert!(
            many.parse::<Peer>()
                .expect_err("65 replicas")
                .to_string()
                .contains("more than 64 replicas")
        );
    }
}
