//! API keys managed at run time (`/v1/account/keys`, `switchboard keys`): only the SHA-256
//! digest of a key's secret is kept, with a short hint for people to recognise it by; the
//! secret itself exists once, in the answer to the request that made it.
//!
//! A deleted key keeps its row (its usage still names it) but never authenticates again.

use serde_json::Value;

use crate::{on_backend, Fields, Store, StoreError};

/// One key as stored (never its secret).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    /// `key_…`, stable across rotations; what usage and stored responses belong to.
    pub id: String,
    pub name: String,
    /// The SHA-256 digest (hex) of the current secret.
    pub digest: String,
    /// The secret's first and last characters (`sk-sb-…a1b2`).
    pub hint: String,
    /// Unix seconds.
    pub created_at: u64,
    pub expires_at: Option<u64>,
    pub is_enabled: bool,
    /// USD the key may spend, in millionths; `None` is no limit.
    pub credit_limit_micros: Option<i64>,
    pub limits: RateLimits,
    /// The catalog ids it may use; `None` is every model.
    pub models: Option<Vec<String>>,
    /// Who the key belongs to (a person, a team, an application); `None` is the account.
    pub owner: Option<String>,
    pub deleted: bool,
}

/// Per-key rate limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    pub max_concurrent: Option<u32>,
}

/// A change to a key: every `Some` field is set (`Some(None)` clears a limit).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyUpdate {
    pub name: Option<String>,
    pub is_enabled: Option<bool>,
    pub expires_at: Option<Option<u64>>,
    pub credit_limit_micros: Option<Option<i64>>,
    pub limits: Option<RateLimits>,
    pub models: Option<Option<Vec<String>>>,
    pub owner: Option<Option<String>>,
    /// A new secret's digest and hint (rotation).
    pub secret: Option<(String, String)>,
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u32(value: Option<i64>) -> Option<u32> {
    value.and_then(|v| u32::try_from(v).ok())
}

fn record(row: &impl Fields) -> Result<KeyRecord, StoreError> {
    let models = match row.maybe_text("models")? {
        Some(text) => Some(serde_json::from_str::<Vec<String>>(&text)?),
        None => None,
    };
    Ok(KeyRecord {
        id: row.text("id")?,
        name: row.text("name")?,
        digest: row.text("digest")?,
        hint: row.text("hint")?,
        created_at: u64::try_from(row.int("created_at")?).unwrap_or(0),
        expires_at: row
            .maybe_int("expires_at")?
            .and_then(|v| u64::try_from(v).ok()),
        is_enabled: row.int("is_enabled")? != 0,
        credit_limit_micros: row.maybe_int("credit_limit_micros")?,
        limits: RateLimits {
            requests_per_minute: to_u32(row.maybe_int("requests_per_minute")?),
            tokens_per_minute: to_u32(row.maybe_int("tokens_per_minute")?),
            max_concurrent: to_u32(row.maybe_int("max_concurrent")?),
        },
        models,
        owner: row.maybe_text("owner")?,
        deleted: row.maybe_int("deleted_at")?.is_some(),
    })
}

fn models_text(models: Option<&Vec<String>>) -> Result<Option<String>, StoreError> {
    Ok(match models {
        Some(list) => Some(serde_json::to_string(&Value::from(list.clone()))?),
        None => None,
    })
}

impl Store {
    /// Saves a new key.
    ///
    /// # Errors
    /// On database failure (a digest already used included).
    pub async fn create_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        self.write_key(
            key,
            "INSERT INTO api_keys (id, name, digest, hint, created_at, expires_at, is_enabled,
                 credit_limit_micros, requests_per_minute, tokens_per_minute, max_concurrent,
                 models, owner, deleted_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, NULL)",
        )
        .await
    }

    /// Runs `sql` with the key's fields bound as `?1`…`?13`, in the column order of
    /// `api_keys` (Postgres wants every one used: an update sets the creation time unchanged).
    async fn write_key(&self, key: &KeyRecord, sql: &str) -> Result<(), StoreError> {
        let models = models_text(key.models.as_ref())?;
        on_backend!(self, |pool, dialect| {
            let sql = dialect.sql(sql);
            sqlx::query(&sql)
                .bind(&key.id)
                .bind(&key.name)
                .bind(&key.digest)
                .bind(&key.hint)
                .bind(to_i64(key.created_at))
                .bind(key.expires_at.map(to_i64))
                .bind(i64::from(key.is_enabled))
                .bind(key.credit_limit_micros)
                .bind(key.limits.requests_per_minute.map(i64::from))
                .bind(key.limits.tokens_per_minute.map(i64::from))
                .bind(key.limits.max_concurrent.map(i64::from))
                .bind(&models)
                .bind(&key.owner)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The keys `sql` selects with `?1` bound to `value`.
    async fn select_keys(
        &self,
        sql: &str,
        value: Option<&str>,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        on_backend!(self, |pool, dialect| {
            let sql = dialect.sql(sql);
            let mut query = sqlx::query(&sql);
            if let Some(value) = value {
                query = query.bind(value);
            }
            let rows = query.fetch_all(pool).await?;
            rows.iter().map(record).collect()
        })
    }

    /// Every key not deleted, oldest first.
    ///
    /// # Errors
    /// On database failure.
    pub async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.select_keys(
            "SELECT * FROM api_keys WHERE deleted_at IS NULL ORDER BY created_at, id",
            None,
        )
        .await
    }

    /// The key with this id, unless deleted.
    ///
    /// # Errors
    /// On database failure.
    pub async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let keys = self
            .select_keys(
                "SELECT * FROM api_keys WHERE id = ?1 AND deleted_at IS NULL",
                Some(id),
            )
            .await?;
        Ok(keys.into_iter().next())
    }

    /// The key whose secret has this digest, deleted or not (the caller decides what a
    /// deleted, disabled or expired key gets).
    ///
    /// # Errors
    /// On database failure.
    pub async fn key_by_digest(&self, digest: &str) -> Result<Option<KeyRecord>, StoreError> {
        let keys = self
            .select_keys("SELECT * FROM api_keys WHERE digest = ?1", Some(digest))
            .await?;
        Ok(keys.into_iter().next())
    }

    /// Whether any key was ever made (then authentication is on).
    ///
    /// # Errors
    /// On database failure.
    pub async fn has_keys(&self) -> Result<bool, StoreError> {
        on_backend!(self, |pool, _dialect| {
            let row = sqlx::query(
                "SELECT COUNT(*) AS keys FROM (SELECT 1 FROM api_keys LIMIT 1) AS any_key",
            )
            .fetch_one(pool)
            .await?;
            Ok(row.int("keys")? != 0)
        })
    }

    /// Applies `update` to the key; the key as it is afterwards, `None` when there is no such
    /// key (or it was deleted).
    ///
    /// # Errors
    /// On database failure.
    pub async fn update_key(
        &self,
        id: &str,
        update: &KeyUpdate,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let Some(mut key) = self.get_key(id).await? else {
            return Ok(None);
        };
        if let Some(name) = &update.name {
            key.name.clone_from(name);
        }
        if let Some(enabled) = update.is_enabled {
            key.is_enabled = enabled;
        }
        if let Some(expires) = update.expires_at {
            key.expires_at = expires;
        }
        if let Some(limit) = update.credit_limit_micros {
            key.credit_limit_micros = limit;
        }
        if let Some(limits) = update.limits {
            key.limits = limits;
        }
        if let Some(models) = &update.models {
            key.models.clone_from(models);
        }
        if let Some(owner) = &update.owner {
            key.owner.clone_from(owner);
        }
        if let Some((digest, hint)) = &update.secret {
            key.digest.clone_from(digest);
            key.hint.clone_from(hint);
        }
        self.write_key(
            &key,
            "UPDATE api_keys SET name = ?2, digest = ?3, hint = ?4, created_at = ?5, expires_at = ?6,
                 is_enabled = ?7, credit_limit_micros = ?8, requests_per_minute = ?9,
                 tokens_per_minute = ?10, max_concurrent = ?11, models = ?12, owner = ?13
             WHERE id = ?1 AND deleted_at IS NULL",
        )
        .await?;
        Ok(Some(key))
    }

    /// Deletes the key (it never authenticates again); whether there was one to delete.
    ///
    /// # Errors
    /// On database failure.
    pub async fn delete_key(&self, id: &str, now: u64) -> Result<bool, StoreError> {
        on_backend!(self, |pool, dialect| {
            let sql = dialect.sql(
                "UPDATE api_keys SET deleted_at = ?2, is_enabled = 0
                 WHERE id = ?1 AND deleted_at IS NULL",
            );
            let done = sqlx::query(&sql)
                .bind(id)
                .bind(to_i64(now))
                .execute(pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn key(id: &str, digest: &str) -> KeyRecord {
        KeyRecord {
            id: id.into(),
            name: format!("{id} name"),
            digest: digest.into(),
            hint: "sk-sb-…0000".into(),
            created_at: 1_700_000_000,
            expires_at: None,
            is_enabled: true,
            credit_limit_micros: Some(5_000_000),
            limits: RateLimits {
                requests_per_minute: Some(60),
                tokens_per_minute: None,
                max_concurrent: Some(2),
            },
            models: Some(vec!["m1".into()]),
            owner: Some("team-a".into()),
            deleted: false,
        }
    }

    #[tokio::test]
    async fn a_keys_life() {
        let store = Store::in_memory().await.unwrap();
        assert!(!store.has_keys().await.unwrap());
        store.create_key(&key("key_a", "d1")).await.unwrap();
        store.create_key(&key("key_b", "d2")).await.unwrap();
        assert!(
            store.create_key(&key("key_c", "d1")).await.is_err(),
            "digests are unique"
        );
        assert!(store.has_keys().await.unwrap());
        assert_eq!(
            store.get_key("key_a").await.unwrap(),
            Some(key("key_a", "d1"))
        );
        assert_eq!(
            store.key_by_digest("d2").await.unwrap().unwrap().id,
            "key_b"
        );

        let updated = store
            .update_key(
                "key_a",
                &KeyUpdate {
                    is_enabled: Some(false),
                    credit_limit_micros: Some(None),
                    models: Some(None),
                    secret: Some(("d9".into(), "sk-sb-…9999".into())),
                    ..KeyUpdate::default()
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert!(!updated.is_enabled && updated.credit_limit_micros.is_none());
        assert_eq!(updated.models, None);
        assert_eq!(store.get_key("key_a").await.unwrap(), Some(updated));
        assert!(
            store.key_by_digest("d1").await.unwrap().is_none(),
            "rotated away"
        );
        assert!(store
            .update_key("key_x", &KeyUpdate::default())
            .await
            .unwrap()
            .is_none());

        assert!(store.delete_key("key_b", 1_700_000_500).await.unwrap());
        assert!(!store.delete_key("key_b", 1_700_000_600).await.unwrap());
        assert!(store.get_key("key_b").await.unwrap().is_none());
        let deleted = store.key_by_digest("d2").await.unwrap().unwrap();
        assert!(deleted.deleted && !deleted.is_enabled);
        let listed: Vec<String> = store
            .list_keys()
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.id)
            .collect();
        assert_eq!(listed, ["key_a"]);
    }
}
