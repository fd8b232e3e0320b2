//! proto/ → Rust: one build chain, one descriptor set. protox compiles the protos
//! in pure Rust, so no system protoc is needed.

use std::{env, path::PathBuf};

use protox::prost::Message;

const PROTOS: &[&str] = &[
    "tokenmesh/auth/v1/policy.proto",
    "tokenmesh/auth/v1/auth.proto",
    "tokenmesh/claims/v1/claims.proto",
    "tokenmesh/claims/v2/claims.proto",
    "tokenmesh/products/v1/products.proto",
    "tokenmesh/orders/v1/orders.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    // The encoded set keeps custom options (the access rules of every rpc, read
    // by the interceptor); prost's FileDescriptorSet would drop them.
    let encoded = protox::Compiler::new(["proto"])?
        .include_source_info(true)
        .include_imports(true)
        .open_files(PROTOS)?
        .encode_file_descriptor_set();
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("tokenmesh_descriptor.bin"), &encoded)?;
    let descriptors = prost_types::FileDescriptorSet::decode(encoded.as_slice())?;
    tonic_prost_build::configure()
        // Claims are token payloads: their JSON form is the JWT body. Readers are
        // tolerant: missing fields take defaults, unknown fields are ignored.
        .type_attribute(
            ".tokenmesh.claims",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]",
        )
        // `act` appears only on exchanged tokens.
        .field_attribute(
            ".tokenmesh.claims.v1.AccessClaims.act",
            "#[serde(skip_serializing_if = \"Option::is_none\")]",
        )
        // `sid` appears only on tokens minted for a login.
        .field_attribute(
            ".tokenmesh.claims.v1.AccessClaims.sid",
            "#[serde(skip_serializing_if = \"String::is_empty\")]",
        )
        .compile_fds(descriptors)?;
    Ok(())
}
