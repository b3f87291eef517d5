//! API-key authentication. Keys are compared by SHA-256 digest in constant time, so neither the
//! content nor the length of a configured key leaks through timing. Keys are never logged.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use switchboard_model::{Error, ErrorKind};

/// Who made a request: `owner` scopes what it keeps (stored responses) — the SHA-256 digest
/// (hex) of a key from flags, environment or config, a managed key's id, or empty when the
/// server has no keys. Never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Caller {
    pub owner: String,
    /// A managed key's id (`key_…`); `None` for keys from flags, environment or config.
    pub key_id: Option<String>,
    /// The catalog ids this caller may use; `None` is every model.
    pub models: Option<Vec<String>>,
    /// The admin key: it manages keys (`/v1/account/…`) and generates nothing.
    pub admin: bool,
    /// What a managed key may spend, in micro-USD; `None` is no limit.
    pub credit_limit_micros: Option<i64>,
    /// A managed key's rate limits.
    pub limits: KeyLimits,
}

/// Per-key rate limits (also the server's and each model's, `[limits]` in the config file);
/// `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyLimits {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    pub max_concurrent: Option<u32>,
}

impl Caller {
    #[must_use]
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// Whether this caller may use `model`, worded as OpenAI words a model one may not use.
    ///
    /// # Errors
    /// `ModelNotFound` outside the caller's models.
    pub fn may_use(&self, model: &str) -> Result<(), Error> {
        match &self.models {
            Some(models) if !models.iter().any(|m| m == model) => Err(Error::new(
                ErrorKind::ModelNotFound,
                format!("The model `{model}` does not exist or you do not have access to it."),
            )
            .with_code("model_not_found")),
            _ => Ok(()),
        }
    }
}

/// What a presented key is to the keys this server knows from its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No key is configured anywhere: every request is anonymous.
    Open,
    /// No key was presented (or an empty one).
    Missing,
    /// A configured key.
    Known(Caller),
    /// The admin key.
    Admin(Caller),
    /// Not a configured key: its digest (hex), for looking up managed keys.
    Unknown(String),
}

/// The keys from flags, environment and config, and the admin key; empty means
/// authentication is off (unless managed keys exist, which the server knows).
#[derive(Default)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
    admin: Option<[u8; 32]>,
}

impl ApiKeys {
    #[must_use]
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(keys: I) -> Self {
        Self {
            digests: keys
                .into_iter()
                .filter(|k| !k.as_ref().is_empty())
                .map(|k| digest(k.as_ref()))
                .collect(),
            admin: None,
        }
    }

    /// The key that manages keys over `/v1/account/…`.
    #[must_use]
    pub fn with_admin_key(mut self, key: &str) -> Self {
        self.admin = (!key.is_empty()).then(|| digest(key));
        self
    }

    /// Whether no key is configured (flags, environment, config, admin).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty() && self.admin.is_none()
    }

    #[must_use]
    pub fn has_admin_key(&self) -> bool {
        self.admin.is_some()
    }

    /// What `presented` is, compared in constant time with every configured key.
    #[must_use]
    pub fn identify(&self, presented: Option<&str>, managed_keys_exist: bool) -> Identity {
        if self.is_empty() && !managed_keys_exist {
            return Identity::Open;
        }
        let Some(presented) = presented.filter(|k| !k.is_empty()) else {
            return Identity::Missing;
        };
        let presented = digest(presented);
        let hex = hex(&presented);
        if let Some(admin) = &self.admin {
            if bool::from(admin.ct_eq(&presented)) {
                return Identity::Admin(Caller {
                    owner: hex,
                    admin: true,
                    ..Caller::default()
                });
            }
        }
        let matched = self
            .digests
            .iter()
            .fold(subtle::Choice::from(0u8), |acc, d| {
                acc | d.ct_eq(&presented)
            });
        if bool::from(matched) {
            Identity::Known(Caller {
                owner: hex,
                ..Caller::default()
            })
        } else {
            Identity::Unknown(hex)
        }
    }
}

/// No key where one is required.
#[must_use]
pub fn missing_key() -> Error {
    Error::new(
        ErrorKind::Unauthorized,
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the x-api-key header.",
    )
    .with_code("missing_api_key")
}

/// A key this server does not accept.
#[must_use]
pub fn wrong_key() -> Error {
    Error::new(ErrorKind::Unauthorized, "Incorrect API key provided.").with_code("invalid_api_key")
}

/// The SHA-256 digest (hex) of a key, as managed keys are stored.
#[must_use]
pub fn key_digest(key: &str) -> String {
    hex(&digest(key))
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn keys_gate_access() {
        assert_eq!(ApiKeys::default().identify(None, false), Identity::Open);
        assert_eq!(
            ApiKeys::default().identify(Some("x"), false),
            Identity::Open
        );
        let keys = ApiKeys::new(["alpha", "beta"]);
        let caller = |key| match keys.identify(Some(key), false) {
            Identity::Known(caller) => caller,
            other => panic!("{key}: {other:?}"),
        };
        let (alpha, beta) = (caller("alpha"), caller("beta"));
        assert_ne!(alpha, beta, "each key is its own caller");
        assert_eq!(alpha.owner.len(), 64);
        assert!(!alpha.owner.contains("alpha"));
        assert_eq!(
            keys.identify(Some("gamma"), false),
            Identity::Unknown(key_digest("gamma"))
        );
        assert_eq!(keys.identify(None, false), Identity::Missing);
        assert_eq!(keys.identify(Some(""), false), Identity::Missing);
        // Managed keys exist: nothing is open even without configured keys.
        assert_eq!(ApiKeys::default().identify(None, true), Identity::Missing);
        let admin = ApiKeys::default().with_admin_key("root");
        assert!(matches!(admin.identify(Some("root"), false), Identity::Admin(c) if c.admin));
    }
}
