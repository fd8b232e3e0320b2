//! Service clients: the ids, secret hashes, scopes and audiences of the services
//! that get tokens with client credentials, and what each may delegate in a
//! token exchange.

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

/// An audience a client may exchange users' tokens for.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DelegationRecord {
    /// The downstream audience.
    pub audience: String,
    /// Space-separated user scopes that pass on to it.
    pub scopes: String,
}

impl Store {
    /// Registers (or replaces) a service client and everything it may delegate,
    /// in one transaction: a delegation no longer declared is gone.
    pub async fn upsert_service_client(
        &self,
        client: &ServiceClient,
        delegations: &[DelegationRecord],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO service_clients (client_id, secret_hash, scopes, audiences) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (client_id) DO UPDATE SET secret_hash = excluded.secret_hash, \
             scopes = excluded.scopes, audiences = excluded.audiences",
        )
        .bind(&client.client_id)
        .bind(&client.secret_hash)
        .bind(&client.scopes)
        .bind(&client.audiences)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM service_client_delegations WHERE client_id = $1")
            .bind(&client.client_id)
            .execute(&mut *tx)
            .await?;
        for delegation in delegations {
            sqlx::query(
                "INSERT INTO service_client_delegations (client_id, audience, scopes) VALUES ($1, $2, $3)",
            )
            .bind(&client.client_id)
            .bind(&delegation.audience)
            .bind(&delegation.scopes)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
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

    /// What `client_id` may delegate to `audience`; `None`: it may not exchange
    /// tokens for it.
    pub async fn delegation(
        &self,
        client_id: &str,
        audience: &str,
    ) -> Result<Option<DelegationRecord>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT audience, scopes FROM service_client_delegations \
             WHERE client_id = $1 AND audience = $2",
        )
        .bind(client_id)
        .bind(audience)
        .fetch_optional(&self.pool)
        .await?)
    }
}
