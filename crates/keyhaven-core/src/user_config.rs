//! `user_config` of a Valkey service: the keys Keyhaven understands. Unknown keys are
//! refused (400) rather than silently ignored, so a user never believes a setting took
//! effect when it did not.

use serde_json::Value;
use thiserror::Error;

/// Eviction policies Valkey accepts for `maxmemory-policy`.
pub const MAXMEMORY_POLICIES: &[&str] = &[
    "noeviction",
    "allkeys-lru",
    "volatile-lru",
    "allkeys-random",
    "volatile-random",
    "volatile-ttl",
    "allkeys-lfu",
    "volatile-lfu",
];

/// The longest `valkey_reader_max_lag_ms` accepted: an hour.
pub const MAX_READER_LAG_MS: u64 = 3_600_000;
/// The reader endpoint's lag bound when none is set.
pub const DEFAULT_READER_LAG_MS: u64 = 1000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserConfig {
    /// `valkey_maxmemory_policy`: what Valkey does when `maxmemory` is reached.
    pub maxmemory_policy: Option<String>,
    /// `valkey_ssl` (Aiven's key, default true): clients reach the service through its TLS
    /// endpoint (`rediss://`); false gives the plain valkey-server (`redis://`).
    pub ssl: Option<bool>,
    /// `valkey_reader_max_lag_ms` (a Keyhaven extension, default 1000): the reader endpoint
    /// sends new connections only to replicas whose measured lag is within it.
    pub reader_max_lag_ms: Option<u64>,
    /// `valkey_reader_fallback` (a Keyhaven extension): with no replica within the bound,
    /// new reader connections go to the `primary` (the default) or are `refuse`d.
    pub reader_fallback: Option<ReaderFallback>,
}

/// What the reader endpoint does with a new connection when no replica is within the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderFallback {
    Primary,
    Refuse,
}

impl ReaderFallback {
    pub fn as_str(self) -> &'static str {
        match self {
            ReaderFallback::Primary => "primary",
            ReaderFallback::Refuse => "refuse",
        }
    }
}

/// The keys Keyhaven understands, as error messages list them.
pub const KEYS: &str =
    "valkey_maxmemory_policy, valkey_ssl, valkey_reader_max_lag_ms, valkey_reader_fallback";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UserConfigError {
    #[error("user_config must be a JSON object")]
    NotAnObject,
    #[error("unknown user_config key '{0}'; supported keys: {KEYS}")]
    UnknownKey(String),
    #[error("user_config.valkey_maxmemory_policy must be one of: {}", MAXMEMORY_POLICIES.join(", "))]
    BadPolicy,
    #[error("user_config.valkey_ssl must be true or false")]
    BadSsl,
    #[error(
        "user_config.valkey_reader_max_lag_ms must be an integer from 1 to {MAX_READER_LAG_MS}"
    )]
    BadReaderLag,
    #[error("user_config.valkey_reader_fallback must be \"primary\" or \"refuse\"")]
    BadReaderFallback,
}

impl UserConfig {
    /// Parses what a client sent. `null`, a missing key and `{}` all mean "defaults".
    pub fn from_json(value: Option<&Value>) -> Result<Self, UserConfigError> {
        let mut cfg = UserConfig::default();
        let map = match value {
            None | Some(Value::Null) => return Ok(cfg),
            Some(Value::Object(map)) => map,
            Some(_) => return Err(UserConfigError::NotAnObject),
        };
        for (key, value) in map {
            match key.as_str() {
                "valkey_maxmemory_policy" => match value.as_str() {
                    Some(s) if MAXMEMORY_POLICIES.contains(&s) => {
                        cfg.maxmemory_policy = Some(s.to_string())
                    }
                    _ => return Err(UserConfigError::BadPolicy),
                },
                "valkey_ssl" => {
                    cfg.ssl = Some(value.as_bool().ok_or(UserConfigError::BadSsl)?);
                }
                "valkey_reader_max_lag_ms" => match value.as_u64() {
                    Some(ms) if (1..=MAX_READER_LAG_MS).contains(&ms) => {
                        cfg.reader_max_lag_ms = Some(ms)
                    }
                    _ => return Err(UserConfigError::BadReaderLag),
                },
                "valkey_reader_fallback" => {
                    cfg.reader_fallback = Some(match value.as_str() {
                        Some("primary") => ReaderFallback::Primary,
                        Some("refuse") => ReaderFallback::Refuse,
                        _ => return Err(UserConfigError::BadReaderFallback),
                    })
                }
                other => {
                    return Err(UserConfigError::UnknownKey(
                        other.chars().take(64).collect(),
                    ));
                }
            }
        }
        Ok(cfg)
    }

    /// The JSON object stored and shown back to clients: the keys that were set.
    pub fn to_json(&self) -> Value {
        let mut map = serde_json::Map::new();
        if let Some(p) = &self.maxmemory_policy {
            map.insert("valkey_maxmemory_policy".into(), Value::String(p.clone()));
        }
        if let Some(ssl) = self.ssl {
            map.insert("valkey_ssl".into(), Value::Bool(ssl));
        }
        if let Some(ms) = self.reader_max_lag_ms {
            map.insert("valkey_reader_max_lag_ms".into(), ms.into());
        }
        if let Some(f) = self.reader_fallback {
            map.insert("valkey_reader_fallback".into(), f.as_str().into());
        }
        Value::Object(map)
    }

    /// The keys `other` sets replace this one's; the others stay (a service update).
    pub fn merged(&self, other: &UserConfig) -> UserConfig {
        UserConfig {
            maxmemory_policy: other
                .maxmemory_policy
                .clone()
                .or_else(|| self.maxmemory_policy.clone()),
            ssl: other.ssl.or(self.ssl),
            reader_max_lag_ms: other.reader_max_lag_ms.or(self.reader_max_lag_ms),
            reader_fallback: other.reader_fallback.or(self.reader_fallback),
        }
    }

    pub fn maxmemory_policy(&self) -> &str {
        self.maxmemory_policy.as_deref().unwrap_or("noeviction")
    }

    /// Whether clients reach the service over TLS (Aiven's default: yes).
    pub fn ssl(&self) -> bool {
        self.ssl.unwrap_or(true)
    }

    pub fn reader_max_lag_ms(&self) -> u64 {
        self.reader_max_lag_ms.unwrap_or(DEFAULT_READER_LAG_MS)
    }

    pub fn reader_fallback(&self) -> ReaderFallback {
        self.reader_fallback.unwrap_or(ReaderFallback::Primary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_known_keys_and_refuses_unknown_ones() {
        let cfg = UserConfig::from_json(Some(&json!({"valkey_maxmemory_policy": "allkeys-lru"})))
            .unwrap();
        assert_eq!(cfg.maxmemory_policy(), "allkeys-lru");
        assert_eq!(
            UserConfig::from_json(None).unwrap().maxmemory_policy(),
            "noeviction"
        );
        assert_eq!(
            UserConfig::from_json(Some(&json!({"nope": 1}))),
            Err(UserConfigError::UnknownKey("nope".into()))
        );
        assert_eq!(
            UserConfig::from_json(Some(&json!({"valkey_maxmemory_policy": 3}))),
            Err(UserConfigError::BadPolicy)
        );
        assert_eq!(
            UserConfig::from_json(Some(&json!([]))),
            Err(UserConfigError::NotAnObject)
        );
    }

    #[test]
    fn endpoint_keys_default_to_tls_and_a_one_second_bound_and_refuse_bad_values() {
        let d = UserConfig::from_json(None).unwrap();
        assert!(d.ssl());
        assert_eq!(d.reader_max_lag_ms(), 1000);
        assert_eq!(d.reader_fallback(), ReaderFallback::Primary);
        let all = json!({"valkey_ssl": false, "valkey_reader_max_lag_ms": 250,
                         "valkey_reader_fallback": "refuse"});
        let cfg = UserConfig::from_json(Some(&all)).unwrap();
        assert!(!cfg.ssl());
        assert_eq!(cfg.reader_max_lag_ms(), 250);
        assert_eq!(cfg.reader_fallback(), ReaderFallback::Refuse);
        assert_eq!(cfg.to_json(), all);
        for (bad, err) in [
            (json!({"valkey_ssl": "yes"}), UserConfigError::BadSsl),
            (json!({"valkey_ssl": 1}), UserConfigError::BadSsl),
            (
                json!({"valkey_reader_max_lag_ms": 0}),
                UserConfigError::BadReaderLag,
            ),
            (
                json!({"valkey_reader_max_lag_ms": -5}),
                UserConfigError::BadReaderLag,
            ),
            (
                json!({"valkey_reader_max_lag_ms": 1.5}),
                UserConfigError::BadReaderLag,
            ),
            (
                json!({"valkey_reader_max_lag_ms": 3_600_001}),
                UserConfigError::BadReaderLag,
            ),
            (
                json!({"valkey_reader_fallback": "replica"}),
                UserConfigError::BadReaderFallback,
            ),
        ] {
            assert_eq!(UserConfig::from_json(Some(&bad)), Err(err), "{bad}");
        }
        let merged =
            cfg.merged(&UserConfig::from_json(Some(&json!({"valkey_ssl": true}))).unwrap());
        assert!(merged.ssl());
        assert_eq!(merged.reader_max_lag_ms(), 250);
    }
}
