//! What each gRPC method requires. Methods are named by their HTTP/2 path
//! (`/package.Service/Method`); a method without a rule is denied.

use std::collections::HashMap;

/// The access rule of one method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// No token needed (login, key sets, health, reflection).
    Public,
    /// A valid token carrying every one of these scopes (none: any valid token).
    Authenticated {
        /// Scopes the token must all carry.
        scopes: Vec<String>,
    },
}

/// Per-method access rules; default deny.
#[derive(Debug, Clone)]
pub struct Policy {
    methods: HashMap<String, Rule>,
    public_services: Vec<String>,
}

/// Services every tokenmesh server exposes without a token.
const PUBLIC_INFRASTRUCTURE: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

impl Default for Policy {
    fn default() -> Self {
        Self::new()
    }
}

impl Policy {
    /// A policy where health and reflection are public and nothing else is allowed.
    pub fn new() -> Self {
        Self {
            methods: HashMap::new(),
            public_services: PUBLIC_INFRASTRUCTURE
                .iter()
                .map(|s| format!("/{s}/"))
                .collect(),
        }
    }

    /// `service`'s `method` needs no token.
    pub fn public(self, service: &str, method: &str) -> Self {
        self.rule(service, method, Rule::Public)
    }

    /// `service`'s `method` needs a valid token with every scope in `scopes`.
    pub fn authenticated(self, service: &str, method: &str, scopes: &[&str]) -> Self {
        let scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self.rule(service, method, Rule::Authenticated { scopes })
    }

    fn rule(mut self, service: &str, method: &str, rule: Rule) -> Self {
        self.methods.insert(format!("/{service}/{method}"), rule);
        self
    }

    /// The rule for a request path, or `None`: denied.
    pub fn for_path(&self, path: &str) -> Option<&Rule> {
        if let Some(rule) = self.methods.get(path) {
            return Some(rule);
        }
        self.public_services
            .iter()
            .any(|prefix| path.starts_with(prefix.as_str()))
            .then_some(&Rule::Public)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlisted_methods_are_denied_and_infrastructure_is_public() {
        let policy =
            Policy::new()
                .public("a.v1.S", "Login")
                .authenticated("a.v1.S", "Admin", &["admin"]);
        assert_eq!(policy.for_path("/a.v1.S/Login"), Some(&Rule::Public));
        assert_eq!(
            policy.for_path("/a.v1.S/Admin"),
            Some(&Rule::Authenticated {
                scopes: vec!["admin".into()]
            })
        );
        assert_eq!(policy.for_path("/a.v1.S/Other"), None);
        assert_eq!(policy.for_path("/a.v1.S/LoginX"), None);
        assert_eq!(
            policy.for_path("/grpc.health.v1.Health/Check"),
            Some(&Rule::Public)
        );
        assert_eq!(policy.for_path("/grpc.health.v1.HealthX/Check"), None);
    }
}
