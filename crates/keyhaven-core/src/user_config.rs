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

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserConfig {
    /// `valkey_maxmemory_policy`: what Valkey does when `maxmemory` is reached.
    pub maxmemory_policy: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UserConfigError {
    #[error("user_config must be a JSON object")]
    NotAnObject,
    #[error("unknown user_config key '{0}'; supported keys: valkey_maxmemory_policy")]
    UnknownKey(String),
    #[error("user_config.valkey_maxmemory_policy must be one of: {}", MAXMEMORY_POLICIES.join(", "))]
    BadPolicy,
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
                other => {
                    return Err(UserConfigError::UnknownKey(
                        other.chars().take(64).collect(),
                    ));
                }
            }
        }
        Ok(cfg)
    }

    /// The JSON object stored and shown back to clients.
    pub fn to_json(&self) -> Value {
        let mut map = serde_json::Map::new();
        if let Some(p) = &self.maxmemory_policy {
            map.insert("valkey_maxmemory_policy".into(), Value::String(p.clone()));
        }
        Value::Object(map)
    }

    pub fn maxmemory_policy(&self) -> &str {
        self.maxmemory_policy.as_deref().unwrap_or("noeviction")
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
}
