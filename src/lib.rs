//! tokenmesh's gRPC contract: the code generated from `proto/`, one module per
//! versioned package, and the file descriptor set that server reflection serves.
//! No logic lives here.

#![allow(missing_docs)] // generated code carries the proto comments it has

#[warn(missing_docs)]
pub mod names;

/// `tokenmesh.auth.v1`: login and the key set.
pub mod auth {
    pub mod v1 {
        tonic::include_proto!("tokenmesh.auth.v1");
    }
}

/// `tokenmesh.products.v1`: the catalogue and entitlements.
pub mod products {
    pub mod v1 {
        tonic::include_proto!("tokenmesh.products.v1");
    }
}

/// `tokenmesh.orders.v1`: orders.
pub mod orders {
    pub mod v1 {
        tonic::include_proto!("tokenmesh.orders.v1");
    }
}

/// `tokenmesh.claims.v*`: token payloads, serialised as JSON into JWTs.
pub mod claims {
    pub mod v1 {
        tonic::include_proto!("tokenmesh.claims.v1");
    }
    pub mod v2 {
        tonic::include_proto!("tokenmesh.claims.v2");
    }
}

/// The encoded `FileDescriptorSet` of every tokenmesh proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tokenmesh_descriptor.bin"));

#[cfg(test)]
mod tests {
    use prost::Message;

    #[test]
    fn descriptor_set_decodes_and_names_every_service() {
        let set = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET)
            .expect("descriptor set decodes");
        let services: Vec<String> = set
            .file
            .iter()
            .flat_map(|file| {
                let package = file.package().to_owned();
                file.service
                    .iter()
                    .map(move |s| format!("{package}.{}", s.name()))
            })
            .collect();
        for expected in [
            "tokenmesh.auth.v1.AuthService",
            "tokenmesh.products.v1.ProductsService",
            "tokenmesh.orders.v1.OrdersService",
        ] {
            assert!(
                services.iter().any(|s| s == expected),
                "{expected} missing from {services:?}"
            );
        }
    }

    #[test]
    fn claims_json_uses_proto_field_names_and_ignores_unknown_fields() {
        let claims: super::claims::v1::AccessClaims =
            serde_json::from_str(r#"{"sub":"alice","ver":1,"scope":"a b","future_claim":true}"#)
                .expect("tolerant reader");
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.ver, 1);
        assert_eq!(claims.exp, 0);
        let json = serde_json::to_value(&claims).expect("serialises");
        assert_eq!(json["scope"], "a b");
        assert_eq!(json["client_id"], "");
    }
}
