//! The LAN face's tables: consent requests, one-time provisioning tokens and the credentials each
//! device was provisioned with. Tokens are stored as SHA-256 digests, passwords as DM digest keys.

use omadm::auth::DigestKey;
use omadm::secret::Secret;
use sha2::{Digest, Sha256};
use sqlx::FromRow;
use sqlx::sqlite::SqliteConnection;
use tracing::instrument;

use super::{Store, StoreError};
use crate::domain::Millis;

/// The hex SHA-256 of a token: what the store keeps of it.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh random token (128 bits, URL-safe).
pub fn new_token() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

/// What the device answered to a consent request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentAnswer {
    /// The user allowed management through the gateway.
    Allowed,
    /// The user refused.
    Refused,
}

/// The credentials a device was provisioned with.
#[derive(Clone)]
pub struct DeviceCredentials {
    /// The device.
    pub dev_id: String,
    /// Its account name at the gateway (CLCRED AAuthName).
    pub auth_name: String,
    /// `b64(md5(name:password))`.
    pub digest_key: DigestKey,
    /// The nonce the gateway issued last (b64).
    pub nonce: Option<String>,
    /// The gateway's name towards the device (SRVCRED).
    pub server_name: String,
    /// The gateway's password towards the device (SRVCRED).
    pub server_secret: Secret,
}

impl std::fmt::Debug for DeviceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCredentials")
            .field("dev_id", &self.dev_id)
            .field("auth_name", &self.auth_name)
            .finish_non_exhaustive()
    }
}

#[derive(FromRow)]
struct CredRow {
    dev_id: String,
    auth_name: String,
    digest_key: String,
    nonce: Option<String>,
    server_name: String,
    server_secret: String,
}

/// Record that the device was asked for consent with a token (replacing an earlier request).
#[instrument(skip_all, fields(dev_id))]
pub async fn ask_consent(
    conn: &mut SqliteConnection,
    dev_id: &str,
    token: &str,
    now: Millis,
    expires_at: Millis,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO consent_requests (dev_id, token_hash, state, asked_at, expires_at) \
         VALUES (?1, ?2, 'asked', ?3, ?4) \
         ON CONFLICT (dev_id) DO UPDATE SET token_hash = excluded.token_hash, state = 'asked', \
           asked_at = excluded.asked_at, answered_at = NULL, expires_at = excluded.expires_at",
    )
    .bind(dev_id)
    .bind(token_hash(token))
    .bind(now.0)
    .bind(expires_at.0)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Take the device's answer: the token must be the one sent, unanswered and unexpired.
#[instrument(skip_all, fields(dev_id, allow))]
pub async fn answer_consent(
    conn: &mut SqliteConnection,
    dev_id: &str,
    token: &str,
    allow: bool,
    now: Millis,
) -> Result<ConsentAnswer, StoreError> {
    let state = if allow { "allowed" } else { "refused" };
    let done = sqlx::query(
        "UPDATE consent_requests SET state = ?3, answered_at = ?4 \
         WHERE dev_id = ?1 AND token_hash = ?2 AND state = 'asked' AND expires_at >= ?4",
    )
    .bind(dev_id)
    .bind(token_hash(token))
    .bind(state)
    .bind(now.0)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound {
            what: "open consent request for that token",
            key: dev_id.to_owned(),
        });
    }
    Ok(if allow {
        ConsentAnswer::Allowed
    } else {
        ConsentAnswer::Refused
    })
}

/// Store a one-time provisioning token for a device.
#[instrument(skip_all, fields(dev_id))]
pub async fn create_provisioning_token(
    conn: &mut SqliteConnection,
    dev_id: &str,
    token: &str,
    now: Millis,
    expires_at: Millis,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO provisioning_tokens (token_hash, dev_id, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4)",
    )
    .bind(token_hash(token))
    .bind(dev_id)
    .bind(now.0)
    .bind(expires_at.0)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Use a provisioning token: returns its device, or `NotFound` when unknown, used or expired.
#[instrument(skip_all)]
pub async fn consume_provisioning_token(
    conn: &mut SqliteConnection,
    token: &str,
    now: Millis,
) -> Result<String, StoreError> {
    let dev: Option<String> = sqlx::query_scalar(
        "UPDATE provisioning_tokens SET used_at = ?2 \
         WHERE token_hash = ?1 AND used_at IS NULL AND expires_at >= ?2 RETURNING dev_id",
    )
    .bind(token_hash(token))
    .bind(now.0)
    .fetch_optional(&mut *conn)
    .await?;
    dev.ok_or_else(|| StoreError::NotFound {
        what: "provisioning token",
        key: "(unknown, used or expired)".into(),
    })
}

/// Store (or replace) a device's credentials.
#[instrument(skip_all, fields(dev_id = %c.dev_id))]
pub async fn put_credentials(
    conn: &mut SqliteConnection,
    c: &DeviceCredentials,
    now: Millis,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO device_credentials \
           (dev_id, auth_name, digest_key, nonce, server_name, server_secret, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (dev_id) DO UPDATE SET auth_name = excluded.auth_name, \
           digest_key = excluded.digest_key, nonce = excluded.nonce, \
           server_name = excluded.server_name, server_secret = excluded.server_secret, \
           created_at = excluded.created_at",
    )
    .bind(&c.dev_id)
    .bind(&c.auth_name)
    .bind(c.digest_key.to_stored().expose())
    .bind(c.nonce.as_deref())
    .bind(&c.server_name)
    .bind(c.server_secret.expose())
    .bind(now.0)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A device's credentials, if it was provisioned.
#[instrument(skip_all, fields(dev_id))]
pub async fn credentials(
    conn: &mut SqliteConnection,
    dev_id: &str,
) -> Result<Option<DeviceCredentials>, StoreError> {
    let row: Option<CredRow> = sqlx::query_as(
        "SELECT dev_id, auth_name, digest_key, nonce, server_name, server_secret \
         FROM device_credentials WHERE dev_id = ?1",
    )
    .bind(dev_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| {
        Ok(DeviceCredentials {
            digest_key: DigestKey::from_stored(&Secret::new(r.digest_key))
                .map_err(|e| StoreError::corrupt("device_credentials.digest_key", e.to_string()))?,
            dev_id: r.dev_id,
            auth_name: r.auth_name,
            nonce: r.nonce,
            server_name: r.server_name,
            server_secret: Secret::new(r.server_secret),
        })
    })
    .transpose()
}

/// Keep the nonce the gateway issued to a device.
#[instrument(skip_all, fields(dev_id))]
pub async fn set_nonce(
    conn: &mut SqliteConnection,
    dev_id: &str,
    nonce_b64: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE device_credentials SET nonce = ?2 WHERE dev_id = ?1")
        .bind(dev_id)
        .bind(nonce_b64)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Store {
    /// A device's credentials, if it was provisioned.
    pub async fn device_credentials(
        &self,
        dev_id: &str,
    ) -> Result<Option<DeviceCredentials>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        credentials(&mut conn, dev_id).await
    }

    /// Keep the nonce issued to a device.
    pub async fn set_device_nonce(&self, dev_id: &str, nonce_b64: &str) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        set_nonce(&mut tx, dev_id, nonce_b64).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db"), &Default::default())
            .await
            .unwrap();
        (dir, s)
    }

    #[tokio::test]
    async fn consent_needs_the_right_open_token() {
        let (_d, s) = store().await;
        let mut tx = s.begin().await.unwrap();
        ask_consent(&mut tx, "d1", "tok", Millis(0), Millis(100))
            .await
            .unwrap();
        assert!(
            answer_consent(&mut tx, "d1", "wrong", true, Millis(1))
                .await
                .is_err()
        );
        assert!(
            answer_consent(&mut tx, "d1", "tok", true, Millis(101))
                .await
                .is_err()
        );
        assert_eq!(
            answer_consent(&mut tx, "d1", "tok", false, Millis(2))
                .await
                .unwrap(),
            ConsentAnswer::Refused
        );
        // Answered once: a replay fails.
        assert!(
            answer_consent(&mut tx, "d1", "tok", true, Millis(3))
                .await
                .is_err()
        );
        tx.commit().await.unwrap();
    }

    #[tokio::test]
    async fn provisioning_tokens_are_one_time() {
        let (_d, s) = store().await;
        let mut tx = s.begin().await.unwrap();
        create_provisioning_token(&mut tx, "d1", "p", Millis(0), Millis(10))
            .await
            .unwrap();
        create_provisioning_token(&mut tx, "d1", "q", Millis(0), Millis(10))
            .await
            .unwrap();
        assert_eq!(
            consume_provisioning_token(&mut tx, "p", Millis(5))
                .await
                .unwrap(),
            "d1"
        );
        assert!(
            consume_provisioning_token(&mut tx, "p", Millis(6))
                .await
                .is_err()
        );
        assert!(
            consume_provisioning_token(&mut tx, "q", Millis(11))
                .await
                .is_err()
        );
        tx.commit().await.unwrap();
    }

    #[tokio::test]
    async fn credentials_round_trip_without_the_password() {
        let (_d, s) = store().await;
        let key = DigestKey::new("dev-1", &Secret::new("pw"));
        let c = DeviceCredentials {
            dev_id: "d1".into(),
            auth_name: "dev-1".into(),
            digest_key: key.clone(),
            nonce: None,
            server_name: "gw".into(),
            server_secret: Secret::new("srv"),
        };
        let mut tx = s.begin().await.unwrap();
        put_credentials(&mut tx, &c, Millis(0)).await.unwrap();
        tx.commit().await.unwrap();
        s.set_device_nonce("d1", "AAAA").await.unwrap();
        let back = s.device_credentials("d1").await.unwrap().unwrap();
        assert_eq!(back.digest_key, key);
        assert_eq!(back.nonce.as_deref(), Some("AAAA"));
        assert!(!format!("{back:?}").contains("srv"));
        assert!(s.device_credentials("d2").await.unwrap().is_none());
    }
}
