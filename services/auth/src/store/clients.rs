//! Service clients: the ids, secret hashes, scopes and audiences of the services
//! that get tokens with client credentials and exchange user tokens.

use super::{Store, StoreError};

/// A registered service client.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ServiceClient {
    /// Its id, the `sub` of its tokens.
    pub client_id: String,
    /// SHA-256 of the secret, hex.
    pub secret_hash: String,
    /// Space-separated scopes it may hold.
    pub scopes: String,
    /// Space-separated audiences it may ask tokens for.
    pub audiences: String,
}

impl Store {
    /// Registers (or replaces) a service client.
    pub async fn upsert_service_client(&self, client: &ServiceClient) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO service_clients (client_id, secret_hash, scopes, audiences) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (client_id) DO UPDATE SET secret_hash = excluded.secret_hash, \
             scopes = excluded.scopes, audiences = excluded.audiences",
        )
        .bind(&client.client_id)
        .bind(&client.secret_hash)
        .bind(&client.scopes)
        .bind(&client.audiences)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The service client `client_id`.
    pub async fn service_client(
        &self,
        client_id: &str,
    ) -> Result<Option<ServiceClient>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT client_id, secret_hash, scopes, audiences FROM service_clients WHERE client_id = $1",
        )
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?)
    }
}
