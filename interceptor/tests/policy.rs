//! Access rules declared in the proto as a method option become the policy:
//! public, scoped or any valid token as declared, and a method without a rule
//! is denied; a path that is no method of the served services is unknown.

use tokenmesh_interceptor::{Access, Policy, PolicyError, RULE_OPTION, Rule};

/// `tests/data/ping.proto`, compiled with its imports as a build script would.
fn descriptor_set() -> Vec<u8> {
    let root = env!("CARGO_MANIFEST_DIR");
    protox::Compiler::new([format!("{root}/tests/data"), format!("{root}/../proto")])
        .expect("includes")
        .include_imports(true)
        .open_files(["ping.proto"])
        .expect("compiles")
        .encode_file_descriptor_set()
}

#[test]
fn rules_declared_in_the_proto_become_the_policy() {
    let policy = Policy::from_descriptor_set(&descriptor_set(), RULE_OPTION, &["test.v1.Ping"])
        .expect("policy");
    let authenticated = |scopes: &[&str]| Rule::Authenticated {
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    };
    assert_eq!(
        policy.for_path("/test.v1.Ping/Ping"),
        Some(&authenticated(&[]))
    );
    assert_eq!(
        policy.for_path("/test.v1.Ping/Admin"),
        Some(&authenticated(&["admin"]))
    );
    assert_eq!(policy.for_path("/test.v1.Ping/Hello"), Some(&Rule::Public));
    assert_eq!(
        policy.for_path("/test.v1.Ping/Forgotten"),
        None,
        "no rule: denied"
    );
    assert_eq!(policy.access("/test.v1.Ping/Forgotten"), Access::NoRule);
    assert_eq!(policy.access("/test.v1.Ping/Nowhere"), Access::Unknown);
    assert_eq!(policy.access("/test.v1.Pong/Ping"), Access::Unknown);
    assert_eq!(
        policy.for_path("/grpc.health.v1.Health/Check"),
        Some(&Rule::Public)
    );
}

#[test]
fn an_unknown_service_or_option_is_an_error_not_an_open_door() {
    let set = descriptor_set();
    assert_eq!(
        Policy::from_descriptor_set(&set, RULE_OPTION, &["test.v1.Pong"]).expect_err("service"),
        PolicyError::UnknownService("test.v1.Pong".into())
    );
    assert_eq!(
        Policy::from_descriptor_set(&set, "acme.v1.rule", &["test.v1.Ping"]).expect_err("option"),
        PolicyError::UnknownOption("acme.v1.rule".into())
    );
    assert!(matches!(
        Policy::from_descriptor_set(b"not a descriptor", RULE_OPTION, &["test.v1.Ping"]),
        Err(PolicyError::Descriptor(_))
    ));
}
