//! Key sets fetched over gRPC: Auth's and Products' `GetJwks`, adapted to the
//! interceptor's [`KeySource`].

use futures::{FutureExt, future::BoxFuture};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use serde_json::{Map, Value};
use tokenmesh_interceptor::{KeySource, KeySourceError};
use tokenmesh_proto::{
    auth::v1::{self as auth, GetJwksRequest, auth_service_client::AuthServiceClient},
    products::v1::products_service_client::ProductsServiceClient,
};
use tonic::transport::Channel;

/// A JWKS fetched with a `GetJwks` call.
#[derive(Debug, Clone)]
pub enum GrpcJwksSource {
    /// Auth's access-token keys.
    Auth(AuthServiceClient<Channel>),
    /// Products' entitlement-grant keys.
    Products(ProductsServiceClient<Channel>),
}

impl GrpcJwksSource {
    /// Auth's keys, over `channel`.
    pub fn auth(channel: Channel) -> Self {
        Self::Auth(AuthServiceClient::new(channel))
    }

    /// Products' keys, over `channel`.
    pub fn products(channel: Channel) -> Self {
        Self::Products(ProductsServiceClient::new(channel))
    }
}

impl KeySource for GrpcJwksSource {
    fn fetch(&self) -> BoxFuture<'_, Result<JwkSet, KeySourceError>> {
        let this = self.clone();
        async move {
            let response = match this {
                Self::Auth(mut client) => client.get_jwks(GetJwksRequest {}).await,
                Self::Products(mut client) => client.get_jwks(GetJwksRequest {}).await,
            };
            let jwks = response
                .map_err(|status| KeySourceError(format!("GetJwks: {}", status.message())))?
                .into_inner();
            let keys = jwks
                .keys
                .iter()
                .filter_map(|jwk| jwk_to_jose(jwk).ok())
                .collect();
            Ok(JwkSet { keys })
        }
        .boxed()
    }
}

/// A proto JWK as a JOSE JWK: the same members, empty ones left out.
pub fn jwk_to_jose(jwk: &auth::Jwk) -> Result<Jwk, serde_json::Error> {
    serde_json::from_value(Value::Object(jwk_json(jwk)))
}

/// A proto JWK as the JSON object of RFC 7517, empty members left out.
pub fn jwk_json(jwk: &auth::Jwk) -> Map<String, Value> {
    let members = [
        ("kty", &jwk.kty),
        ("crv", &jwk.crv),
        ("x", &jwk.x),
        ("y", &jwk.y),
        ("n", &jwk.n),
        ("e", &jwk.e),
        ("kid", &jwk.kid),
        ("alg", &jwk.alg),
        ("use", &jwk.r#use),
    ];
    members
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| (name.to_owned(), Value::String(value.clone())))
        .collect()
}
