//! What each gRPC method requires. Methods are named by their HTTP/2 path
//! (`/package.Service/Method`); a method without a rule is denied, a path that
//! names no method of the served services is unknown. Rules are best declared in
//! the proto as a method option and read from the descriptor set.

use std::collections::{HashMap, HashSet};

use prost_reflect::{DescriptorPool, DynamicMessage, Value};

/// The method option tokenmesh's protos declare rules with
/// (`proto/tokenmesh/auth/v1/policy.proto`). Copy that file to use it in yours.
pub const RULE_OPTION: &str = "tokenmesh.auth.v1.rule";

/// Why a policy could not be read from a descriptor set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The bytes are not an encoded `FileDescriptorSet` (with its imports).
    #[error("descriptor set: {0}")]
    Descriptor(String),
    /// The set does not define the rule option.
    #[error("descriptor set defines no method option `{0}`")]
    UnknownOption(String),
    /// The set does not define this service.
    #[error("descriptor set defines no service `{0}`")]
    UnknownService(String),
    /// A rule says both `public` and `scopes`.
    #[error("{0}: a public method cannot require scopes")]
    Contradictory(String),
}

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
    /// Paths of every method the served services declare, ruled or not: a
    /// request for any other path is answered `UNIMPLEMENTED`, not refused as
    /// if a scope could open it.
    known: HashSet<String>,
    public_services: Vec<String>,
}

/// What a [`Policy`] says about a request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access<'a> {
    /// A method of this server, allowed under this rule.
    Rule(&'a Rule),
    /// A method of this server that declares no rule: denied.
    NoRule,
    /// Not a method of this server.
    Unknown,
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
            known: HashSet::new(),
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
        let path = format!("/{service}/{method}");
        self.known.insert(path.clone());
        self.methods.insert(path, rule);
        self
    }

    /// The rules of every method of `services` (full names, `package.Service`),
    /// read from the method option `option` (e.g. [`RULE_OPTION`]) in an encoded
    /// `FileDescriptorSet` that includes its imports. The option's message must
    /// have `bool public` and `repeated string scopes`; a method without the
    /// option gets no rule and is denied. Health and reflection stay public.
    pub fn from_descriptor_set(
        encoded: &[u8],
        option: &str,
        services: &[&str],
    ) -> Result<Self, PolicyError> {
        let pool = DescriptorPool::decode(encoded)
            .map_err(|error| PolicyError::Descriptor(error.to_string()))?;
        let extension = pool
            .get_extension_by_name(option)
            .ok_or_else(|| PolicyError::UnknownOption(option.to_owned()))?;
        let mut policy = Self::new();
        for name in services {
            let service = pool
                .get_service_by_name(name)
                .ok_or_else(|| PolicyError::UnknownService((*name).to_owned()))?;
            for method in service.methods() {
                policy.known.insert(format!("/{name}/{}", method.name()));
                let options = method.options();
                if !options.has_extension(&extension) {
                    tracing::debug!(method = method.full_name(), "no access rule: denied");
                    continue;
                }
                let rule = match options.get_extension(&extension).as_message() {
                    Some(rule) => rule_from_option(rule, method.full_name())?,
                    None => return Err(PolicyError::UnknownOption(option.to_owned())),
                };
                policy = policy.rule(name, method.name(), rule);
            }
        }
        Ok(policy)
    }

    /// The paths (`/pkg.Service/Method`) of the methods with a rule of their own.
    pub fn methods(&self) -> impl Iterator<Item = &str> {
        self.methods.keys().map(String::as_str)
    }

    /// The rule for a request path, or `None`: denied.
    pub fn for_path(&self, path: &str) -> Option<&Rule> {
        match self.access(path) {
            Access::Rule(rule) => Some(rule),
            Access::NoRule | Access::Unknown => None,
        }
    }

    /// What this policy says about a request path: its rule, a known method
    /// without one, or a path this server does not serve. Health and
    /// reflection are public whole (their servers answer unknown methods).
    pub fn access(&self, path: &str) -> Access<'_> {
        if let Some(rule) = self.methods.get(path) {
            return Access::Rule(rule);
        }
        if self
            .public_services
            .iter()
            .any(|prefix| path.starts_with(prefix.as_str()))
        {
            return Access::Rule(&Rule::Public);
        }
        if self.known.contains(path) {
            Access::NoRule
        } else {
            Access::Unknown
        }
    }
}

fn rule_from_option(rule: &DynamicMessage, method: &str) -> Result<Rule, PolicyError> {
    let public = rule
        .get_field_by_name("public")
        .and_then(|value| value.as_bool())
        .unwrap_or(false);
    let scopes: Vec<String> = rule
        .get_field_by_name("scopes")
        .and_then(|value| {
            value.as_list().map(|list| {
                list.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
        })
        .unwrap_or_default();
    match (public, scopes.is_empty()) {
        (true, true) => Ok(Rule::Public),
        (true, false) => Err(PolicyError::Contradictory(method.to_owned())),
        (false, _) => Ok(Rule::Authenticated { scopes }),
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
        assert_eq!(policy.access("/a.v1.S/Other"), Access::Unknown);
        assert_eq!(policy.access("/b.v1.T/Login"), Access::Unknown);
    }
}
