//! Any method by name: the descriptor pool of tokenmesh's protos and gRPC health,
//! used to encode a request from JSON and to read a response back as JSON — so a
//! method added to the protos later is benchable with no change here.

use bytes::Bytes;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};

use crate::BenchError;

/// The methods the bench knows, by fully-qualified name.
#[derive(Debug, Clone)]
pub struct Methods {
    pool: DescriptorPool,
}

/// One resolved method.
#[derive(Debug, Clone)]
pub struct Method {
    descriptor: MethodDescriptor,
    path: String,
}

impl Methods {
    /// tokenmesh's descriptor set plus `grpc.health.v1`.
    pub fn tokenmesh() -> Result<Self, BenchError> {
        let mut pool = DescriptorPool::decode(tokenmesh_proto::FILE_DESCRIPTOR_SET)
            .map_err(|e| BenchError::Descriptor(e.to_string()))?;
        pool.decode_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .map_err(|e| BenchError::Descriptor(e.to_string()))?;
        Ok(Self { pool })
    }

    /// The method named `package.Service/Method` (or `package.Service.Method`,
    /// a leading `/` allowed).
    pub fn method(&self, name: &str) -> Result<Method, BenchError> {
        let name = name.trim_start_matches('/');
        let (service, method) = name
            .rsplit_once('/')
            .or_else(|| name.rsplit_once('.'))
            .ok_or_else(|| BenchError::UnknownMethod(name.to_owned()))?;
        let descriptor = self
            .pool
            .get_service_by_name(service)
            .and_then(|s| s.methods().find(|m| m.name() == method))
            .ok_or_else(|| BenchError::UnknownMethod(name.to_owned()))?;
        Ok(Method {
            path: format!("/{service}/{method}"),
            descriptor,
        })
    }
}

impl Method {
    /// The HTTP/2 path, `/package.Service/Method`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Encodes a request from its JSON form (proto field names or lowerCamelCase).
    pub fn encode_json(&self, json: &str) -> Result<Bytes, BenchError> {
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let message = DynamicMessage::deserialize(self.descriptor.input(), &mut deserializer)
            .and_then(|m| deserializer.end().map(|()| m))
            .map_err(|e| BenchError::Request(format!("{}: {e}", self.path)))?;
        Ok(message.encode_to_vec().into())
    }

    /// Checks that `field` is a field of both the request and the response, of
    /// one kind, so that [`Method::follow`] can carry it from one to the next.
    pub fn check_follow(&self, field: &str) -> Result<(), BenchError> {
        let input = self.descriptor.input().get_field_by_name(field);
        let output = self.descriptor.output().get_field_by_name(field);
        match (input, output) {
            (Some(input), Some(output))
                if input.kind() == output.kind() && input.cardinality() == output.cardinality() =>
            {
                Ok(())
            }
            _ => Err(BenchError::Request(format!(
                "{}: `{field}` is not a field of both the request and the response",
                self.path
            ))),
        }
    }

    /// The request that carries `field` of `response` on, every other field
    /// unset: e.g. the next `Refresh`, with the refresh token the last one returned.
    pub fn follow(&self, response: &[u8], field: &str) -> Result<Bytes, BenchError> {
        let response = DynamicMessage::decode(self.descriptor.output(), response)
            .map_err(|e| BenchError::Response(format!("{}: {e}", self.path)))?;
        let value = response.get_field_by_name(field).ok_or_else(|| {
            BenchError::Response(format!("{}: no `{field}` in the response", self.path))
        })?;
        let mut request = DynamicMessage::new(self.descriptor.input());
        request
            .try_set_field_by_name(field, value.into_owned())
            .map_err(|e| BenchError::Request(format!("{}: {e}", self.path)))?;
        Ok(request.encode_to_vec().into())
    }

    /// Decodes a response into JSON (proto field names), e.g. to pick a token out
    /// of a `Login` response.
    pub fn decode_response(&self, bytes: &[u8]) -> Result<serde_json::Value, BenchError> {
        let message = DynamicMessage::decode(self.descriptor.output(), bytes)
            .map_err(|e| BenchError::Response(format!("{}: {e}", self.path)))?;
        let options = prost_reflect::SerializeOptions::new().use_proto_field_name(true);
        message
            .serialize_with_options(serde_json::value::Serializer, &options)
            .map_err(|e| BenchError::Response(format!("{}: {e}", self.path)))
    }
}

#[cfg(test)]
mod tests {
    use tokenmesh_proto::{orders::v1::PlaceOrderRequest, products::v1::GetProductRequest};

    use super::*;

    #[test]
    fn json_requests_encode_exactly_as_the_generated_types_do() {
        let methods = Methods::tokenmesh().expect("pool");
        let get = methods
            .method("tokenmesh.products.v1.ProductsService/GetProduct")
            .expect("known");
        assert_eq!(
            get.path(),
            "/tokenmesh.products.v1.ProductsService/GetProduct"
        );
        assert_eq!(
            get.encode_json(r#"{"id":"P-100"}"#).expect("encodes"),
            GetProductRequest { id: "P-100".into() }.encode_to_vec()
        );
        let place = methods
            .method("tokenmesh.orders.v1.OrdersService.PlaceOrder")
            .expect("dotted form");
        let expected = PlaceOrderRequest {
            product_id: "P-101".into(),
            quantity: 2,
            request_id: "r".into(),
            entitlement_token: String::new(),
        };
        assert_eq!(
            place
                .encode_json(r#"{"productId":"P-101","quantity":2,"request_id":"r"}"#)
                .expect("either spelling"),
            expected.encode_to_vec()
        );
        assert!(methods.method("grpc.health.v1.Health/Check").is_ok());
    }

    #[test]
    fn unknown_methods_and_fields_are_refused() {
        let methods = Methods::tokenmesh().expect("pool");
        assert!(matches!(
            methods.method("tokenmesh.products.v1.ProductsService/Nope"),
            Err(BenchError::UnknownMethod(_))
        ));
        let get = methods
            .method("tokenmesh.products.v1.ProductsService/GetProduct")
            .expect("known");
        assert!(matches!(
            get.encode_json(r#"{"nope":1}"#),
            Err(BenchError::Request(_))
        ));
    }
}
