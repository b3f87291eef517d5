//! API-key authentication. Keys are compared by SHA-256 digest in constant time, so neither the
//! content nor the length of a configured key leaks through timing. Keys are never logged.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use switchboard_model::{Error, ErrorKind};

/// Who made a request: the SHA-256 digest (hex) of the API key it presented, or empty when the
/// server has no keys. Never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub owner: String,
}

impl Caller {
    #[must_use]
    pub fn anonymous() -> Self {
        Self {
            owner: String::new(),
        }
    }
}

/// The configured keys; empty means authentication is off.
#[derive(Default)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
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
        }
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Accepts any request when no keys are configured; otherwise the presented key must match.
    /// Returns who is calling, so per-key state (stored responses) stays with its key.
    ///
    /// # Errors
    /// `Unauthorized` when a key is required and missing or wrong.
    pub fn check(&self, presented: Option<&str>) -> Result<Caller, Error> {
        if self.digests.is_empty() {
            return Ok(Caller::anonymous());
        }
        let Some(presented) = presented.filter(|k| !k.is_empty()) else {
            return Err(Error::new(
                ErrorKind::Unauthorized,
                "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the x-api-key header.",
            )
            .with_code("missing_api_key"));
        };
        let presented = digest(presented);
        let matched = self
            .digests
            .iter()
            .fold(subtle::Choice::from(0u8), |acc, d| {
                acc | d.ct_eq(&presented)
            });
        if bool::from(matched) {
            Ok(Caller {
                owner: presented.iter().map(|byte| format!("{byte:02x}")).collect(),
            })
        } else {
            Err(
                Error::new(ErrorKind::Unauthorized, "Incorrect API key provided.")
                    .with_code("invalid_api_key"),
            )
        }
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn keys_gate_access() {
        assert!(ApiKeys::default().check(None).is_ok());
        let keys = ApiKeys::new(["alpha", "beta"]);
        assert!(keys.check(Some("beta")).is_ok());
        let alpha = keys.check(Some("alpha")).unwrap();
        let beta = keys.check(Some("beta")).unwrap();
        assert_ne!(alpha, beta, "each key is its own caller");
        assert_eq!(alpha.owner.len(), 64);
        assert!(!alpha.owner.contains("alpha"));
        assert_eq!(
            ApiKeys::default().check(Some("x")).unwrap(),
            Caller::anonymous()
        );
        assert_eq!(
            keys.check(Some("gamma")).map_err(|e| e.kind),
            Err(ErrorKind::Unauthorized)
        );
        assert_eq!(
            keys.check(None).map_err(|e| e.kind),
            Err(ErrorKind::Unauthorized)
        );
        assert_eq!(
            keys.check(Some("")).map_err(|e| e.kind),
            Err(ErrorKind::Unauthorized)
        );
    }
}
