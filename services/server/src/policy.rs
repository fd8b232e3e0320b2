//! Every tokenmesh service's access rules, as declared in its proto with
//! `option (tokenmesh.auth.v1.rule)` and read from the compiled-in descriptor set.

use tokenmesh_interceptor::{Policy, RULE_OPTION};

/// The policy of `service` (its full name, e.g. `tokenmesh.orders.v1.OrdersService`)
/// from the proto. Fails closed: should the descriptor set not yield one, the
/// error is logged and every method of the service is denied.
pub fn policy_for(service: &str) -> Policy {
    Policy::from_descriptor_set(
        tokenmesh_proto::FILE_DESCRIPTOR_SET,
        RULE_OPTION,
        &[service],
    )
    .unwrap_or_else(|error| {
        tracing::error!(%error, service, "no access policy: denying every method");
        Policy::new()
    })
}

/// How a service that accepts Auth's access tokens is served: its listener,
/// Auth's keys and revocations, the issuer and clock its verifier reads, and
/// the registry its outcomes are counted in.
#[derive(Debug)]
pub struct Gate {
    listener: crate::Listener,
    access: crate::AccessTokens,
    issuer: String,
    clock: tokenmesh_interceptor::SharedClock,
    metrics: crate::metrics::Registry,
    limits: crate::ServerLimits,
}

impl Gate {
    /// Serving on `listener`, verifying with `access`, as `env` says.
    pub fn new(
        listener: crate::Listener,
        access: crate::AccessTokens,
        env: &crate::Environment,
    ) -> Self {
        Self {
            listener,
            access,
            issuer: env.auth_issuer.clone(),
            clock: env.clock.clone(),
            metrics: env.metrics.clone(),
            limits: env.limits,
        }
    }

    /// Serves `service` until `shutdown`, accepting the issuer's access tokens
    /// for `audience` (not revoked, at the clock's time) where the rules its
    /// proto declares allow the call.
    pub async fn serve<S>(
        self,
        audience: &str,
        service: S,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), crate::ServeError>
    where
        S: crate::serve::Servable,
    {
        let config = tokenmesh_interceptor::VerifierConfig::access_tokens(&self.issuer, audience);
        let verifier =
            tokenmesh_interceptor::Verifier::<crate::Caller>::new(config, self.access.keys)
                .with_revocations(self.access.revocations)
                .with_clock(self.clock);
        let layer = tokenmesh_interceptor::AuthLayer::new(
            std::sync::Arc::new(verifier),
            policy_for(S::NAME),
        );
        crate::serve(
            self.listener,
            service,
            layer,
            &self.metrics,
            self.limits,
            shutdown,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use tokenmesh_interceptor::{Policy, RULE_OPTION, Rule};

    use super::*;

    /// Every rpc of every tokenmesh service declares its rule: a method added
    /// without one would be denied to everybody.
    #[test]
    fn every_rpc_declares_an_access_rule() {
        let set = prost_types::FileDescriptorSet::decode(tokenmesh_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut checked = 0;
        for file in set
            .file
            .iter()
            .filter(|f| f.package().starts_with("tokenmesh."))
        {
            for service in &file.service {
                let name = format!("{}.{}", file.package(), service.name());
                let policy = Policy::from_descriptor_set(
                    tokenmesh_proto::FILE_DESCRIPTOR_SET,
                    RULE_OPTION,
                    &[&name],
                )
                .expect("policy");
                for method in &service.method {
                    let path = format!("/{name}/{}", method.name());
                    assert!(policy.for_path(&path).is_some(), "{path} declares no rule");
                    checked += 1;
                }
            }
        }
        // Auth 13, Products 10, Orders 3: a service or rpc that goes missing from
        // the descriptor set fails here, as does one added without this count.
        assert_eq!(checked, 26, "rpcs with a rule");
    }

    #[test]
    fn login_and_key_sets_are_public_and_the_rest_needs_a_token() {
        let auth = policy_for("tokenmesh.auth.v1.AuthService");
        assert_eq!(
            auth.for_path("/tokenmesh.auth.v1.AuthService/Login"),
            Some(&Rule::Public)
        );
        let products = policy_for("tokenmesh.products.v1.ProductsService");
        assert_eq!(
            products.for_path("/tokenmesh.products.v1.ProductsService/GetJwks"),
            Some(&Rule::Public)
        );
        assert_eq!(
            products.for_path("/tokenmesh.products.v1.ProductsService/ListProducts"),
            Some(&Rule::Authenticated { scopes: vec![] })
        );
        let unknown = policy_for("tokenmesh.nothing.v1.Nothing");
        assert_eq!(
            unknown.for_path("/tokenmesh.nothing.v1.Nothing/Anything"),
            None
        );
    }
}
