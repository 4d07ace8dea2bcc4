//! Secrets that must never be printed: a private key's PEM is held in [`PrivateKeyPem`],
//! whose `Debug` shows no part of it, which has no `Display` and no `Serialize`, so it can
//! reach neither a log line (`{:?}` of a row or an error) nor an API answer by accident.

use std::fmt;

/// A PEM-encoded private key (PKCS#8). Read it with [`PrivateKeyPem::expose`], only where
/// the key is used (to sign).
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKeyPem(String);

impl PrivateKeyPem {
    pub fn new(pem: String) -> Self {
        PrivateKeyPem(pem)
    }

    /// The PEM text itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKeyPem(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_part_of_the_key() {
        let key = PrivateKeyPem::new(
            "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n-----END PRIVATE KEY-----\n".into(),
        );
        let shown = format!("{key:?} {:#?}", Some(&key));
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(!shown.contains("MIGH"), "{shown}");
        assert!(key.expose().contains("MIGHAgEAMBMG"));
    }
}
