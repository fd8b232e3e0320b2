//! proto/ → Rust: one build chain, one descriptor set. protox compiles the protos
//! in pure Rust, so no system protoc is needed.

use std::{env, path::PathBuf};

use protox::prost::Message;

const PROTOS: &[&str] = &[
    "tokenmesh/auth/v1/auth.proto",
    "tokenmesh/claims/v1/claims.proto",
    "tokenmesh/claims/v2/claims.proto",
    "tokenmesh/products/v1/products.proto",
    "tokenmesh/orders/v1/orders.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("tokenmesh_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
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
        .compile_fds(descriptors)?;
    Ok(())
}
