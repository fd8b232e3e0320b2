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

/// The auth layer of a service that accepts Auth's access tokens: `issuer`'s
/// tokens for `audience`, verified with `access`' keys at `clock`'s time, refused
/// once in its revocations, allowed by `service`'s rules from the proto.
pub fn access_token_layer(
    issuer: &str,
    audience: &str,
    access: crate::AccessTokens,
    clock: tokenmesh_interceptor::SharedClock,
    service: &str,
) -> tokenmesh_interceptor::AuthLayer<crate::Caller> {
    let config = tokenmesh_interceptor::VerifierConfig::access_tokens(issuer, audience);
    let verifier = tokenmesh_interceptor::Verifier::new(config, access.keys)
        .with_revocations(access.revocations)
        .with_clock(clock);
    tokenmesh_interceptor::AuthLayer::new(std::sync::Arc::new(verifier), policy_for(service))
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
        // Auth 11, Products 8, Orders 3: a service or rpc that goes missing from
        // the descriptor set fails here, as does one added without this count.
        assert_eq!(checked, 22, "rpcs with a rule");
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
