//! API-key authentication. Keys are compared by SHA-256 digest in constant time, so neither the
//! content nor the length of a configured key leaks through timing. Keys are never logged.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use switchboard_model::{Error, ErrorKind};

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
    ///
    /// # Errors
    /// `Unauthorized` when a key is required and missing or wrong.
    pub fn check(&self, presented: Option<&str>) -> Result<(), Error> {
        if self.digests.is_empty() {
            return Ok(());
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
            Ok(())
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
    use super::*;

    #[test]
    fn keys_gate_access() {
        assert!(ApiKeys::default().check(None).is_ok());
        let keys = ApiKeys::new(["alpha", "beta"]);
        assert!(keys.check(Some("beta")).is_ok());
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
