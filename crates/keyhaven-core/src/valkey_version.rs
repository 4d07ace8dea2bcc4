//! Which valkey-server Keyhaven drives: Valkey 8.0 or newer (tested with 9.1). Keyhaven's
//! generated config, ACLs and replication handling are checked against those releases
//! only, and a program that is not a valkey-server at all never becomes a node: every
//! service would stay REBUILDING with no hint why. So `keyhaven server` reads
//! `valkey-server --version` at start and refuses anything else, saying what it found.

use std::fmt;
use thiserror::Error;

/// The oldest Valkey release Keyhaven accepts, as (major, minor).
pub const MIN_VALKEY: (u32, u32) = (8, 0);

/// A Valkey version, as `valkey-server --version` prints it (`v=9.1.2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ValkeyVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl fmt::Display for ValkeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Why a program is not a Valkey Keyhaven can drive; read after the program's path.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VersionError {
    #[error("printed nothing for --version, so it is not a valkey-server")]
    NoOutput,
    #[error("printed {0:?} for --version, which is not a Valkey version")]
    Unrecognised(String),
    #[error("is {product} {version}, not Valkey")]
    NotValkey { product: String, version: String },
    #[error("is Valkey {0}, older than {major}.{minor}", major = MIN_VALKEY.0, minor = MIN_VALKEY.1)]
    TooOld(ValkeyVersion),
}

/// Checks the output of `valkey-server --version`
/// (`Valkey server v=9.1.2 sha=00000000:1 malloc=libc bits=64 build=...`).
pub fn check_valkey_version(output: &str) -> Result<ValkeyVersion, VersionError> {
    let line = output.lines().map(str::trim).find(|l| !l.is_empty());
    let line = line.ok_or(VersionError::NoOutput)?;
    let unrecognised = || VersionError::Unrecognised(line.chars().take(80).collect());
    let mut words = line.split_whitespace();
    let product = words.next().ok_or_else(unrecognised)?;
    if words.next() != Some("server") {
        return Err(unrecognised());
    }
    let version = words
        .next()
        .and_then(|w| w.strip_prefix("v="))
        .ok_or_else(unrecognised)?;
    if product != "Valkey" {
        return Err(VersionError::NotValkey {
            product: product.chars().take(40).collect(),
            version: version.chars().take(40).collect(),
        });
    }
    let mut parts = version.split('.').map(str::parse::<u32>);
    let (Some(Ok(major)), Some(Ok(minor)), Some(Ok(patch)), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(unrecognised());
    };
    let v = ValkeyVersion {
        major,
        minor,
        patch,
    };
    if (major, minor) < MIN_VALKEY {
        return Err(VersionError::TooOld(v));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u32, minor: u32, patch: u32) -> ValkeyVersion {
        ValkeyVersion {
            major,
            minor,
            patch,
        }
    }

    #[test]
    fn valkey_8_and_newer_is_accepted() {
        let cases = [
            (
                "Valkey server v=9.1.2 sha=00000000:1 malloc=libc bits=64 build=1536df31c0395150\n",
                v(9, 1, 2),
            ),
            ("Valkey server v=8.0.0 sha=0 malloc=jemalloc", v(8, 0, 0)),
            ("\n  Valkey server v=10.0.1\n", v(10, 0, 1)),
        ];
        for (out, want) in cases {
            assert_eq!(check_valkey_version(out), Ok(want), "{out:?}");
        }
    }

    #[test]
    fn everything_else_is_refused_saying_what_it_is() {
        assert_eq!(check_valkey_version(""), Err(VersionError::NoOutput));
        assert_eq!(
            check_valkey_version("Valkey server v=7.2.4 sha=0").unwrap_err(),
            VersionError::TooOld(v(7, 2, 4))
        );
        assert_eq!(
            check_valkey_version("Valkey server v=7.2.4 sha=0")
                .unwrap_err()
                .to_string(),
            "is Valkey 7.2.4, older than 8.0"
        );
        assert_eq!(
            check_valkey_version("Redis server v=7.2.4 sha=00000000:0 malloc=jemalloc-5.3.0")
                .unwrap_err()
                .to_string(),
            "is Redis 7.2.4, not Valkey"
        );
        for out in [
            "true (GNU coreutils) 9.1",
            "Valkey server v=9.x.2",
            "Valkey server v=9.1",
            "Valkey v=9.1.2",
        ] {
            assert!(
                matches!(
                    check_valkey_version(out),
                    Err(VersionError::Unrecognised(_))
                ),
                "{out:?}"
            );
        }
    }
}
