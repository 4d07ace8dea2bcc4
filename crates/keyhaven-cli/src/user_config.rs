//! `-c KEY=VALUE` into a `user_config` object, the way avn converts it: the service
//! type's `user_config_schema` (`GET .../service-types/valkey`, what avn reads) gives each
//! key's type, so `-c x=10` sends the number 10 to an integer key and the string "10" to a
//! string key. A dotted key (`a.b=1`) fills a nested object.
//!
//! A key the schema does not list is sent with its value's own type (an integer, a number,
//! `true`/`false`, else a string) instead of being refused here as avn refuses it: the
//! server validates `user_config` and its 400 names the key and the keys it supports.

use serde_json::{Map, Number, Value};

/// The `user_config` object for `pairs` (each `KEY=VALUE`), typed by `schema`.
pub fn parse(pairs: &[String], schema: &Value) -> Result<Map<String, Value>, String> {
    let mut config = Map::new();
    for pair in pairs {
        let (key, raw) = pair
            .split_once('=')
            .ok_or_else(|| format!("-c expects KEY=VALUE, got '{pair}'"))?;
        if key.is_empty() {
            return Err(format!("-c expects KEY=VALUE, got '{pair}'"));
        }
        let value = match key_schema(schema, key) {
            Some(s) => typed(s, raw).map_err(|e| format!("invalid value '{pair}': {e}"))?,
            None => inferred(raw),
        };
        insert(&mut config, key, value)?;
    }
    Ok(config)
}

/// The schema of a dotted key, walking `properties`.
fn key_schema<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.')
        .try_fold(schema, |s, part| s.get("properties")?.get(part))
}

/// Whether the schema's `type` (a string or a list of them) includes `name`.
fn has_type(schema: &Value, name: &str) -> bool {
    match &schema["type"] {
        Value::String(t) => t == name,
        Value::Array(ts) => ts.iter().any(|t| t == name),
        _ => false,
    }
}

/// avn's `convert_str_to_value`: strings (and objects) as given, integers in any base
/// Python's `int(v, 0)` reads, numbers, booleans as 1/0/true/false.
fn typed(schema: &Value, raw: &str) -> Result<Value, String> {
    if has_type(schema, "string") || has_type(schema, "object") {
        Ok(Value::String(raw.to_string()))
    } else if has_type(schema, "integer") {
        integer(raw)
            .map(Value::from)
            .ok_or_else(|| format!("'{raw}' is not an integer"))
    } else if has_type(schema, "number") {
        raw.parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("'{raw}' is not a number"))
    } else if has_type(schema, "boolean") {
        boolean(raw).map(Value::Bool).ok_or_else(|| {
            format!("invalid boolean value '{raw}': expected one of 1, 0, true, false")
        })
    } else if has_type(schema, "null") {
        Ok(Value::Null)
    } else {
        Err(format!(
            "values of type {} are not supported",
            schema["type"]
        ))
    }
}

/// A value whose key the schema does not know: the type it reads as.
fn inferred(raw: &str) -> Value {
    if let Some(i) = integer(raw) {
        Value::from(i)
    } else if let Some(n) = raw.parse::<f64>().ok().and_then(Number::from_f64) {
        Value::Number(n)
    } else if raw == "true" || raw == "false" {
        Value::Bool(raw == "true")
    } else {
        Value::String(raw.to_string())
    }
}

fn boolean(raw: &str) -> Option<bool> {
    match raw {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// An integer as Python's `int(raw, 0)` reads it: decimal, `0x`, `0o`, `0b`, a sign,
/// underscores between digits.
fn integer(raw: &str) -> Option<i64> {
    let (negative, rest) = match raw.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, raw.strip_prefix('+').unwrap_or(raw)),
    };
    let lower = rest.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else {
        (10, lower.as_str())
    };
    let digits = digits.strip_prefix('_').unwrap_or(digits);
    // Python refuses a decimal with a leading zero ("010"); zeros alone ("00") are zero.
    let leading_zero =
        radix == 10 && digits.starts_with('0') && !digits.trim_start_matches(['0', '_']).is_empty();
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || leading_zero
    {
        return None;
    }
    let n = i64::from_str_radix(&digits.replace('_', ""), radix).ok()?;
    Some(if negative { -n } else { n })
}

/// Puts `value` at the dotted `key`, creating the objects on the way.
fn insert(config: &mut Map<String, Value>, key: &str, value: Value) -> Result<(), String> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let leaf = parts.pop().expect("split yields one part at least");
    let mut map = config;
    for part in parts {
        let entry = map
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        map = entry
            .as_object_mut()
            .ok_or_else(|| format!("-c {key}: '{part}' is already set to a value"))?;
    }
    map.insert(leaf.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "valkey_maxmemory_policy": {"type": "string"},
            "valkey_timeout": {"type": "integer"},
            "valkey_ssl": {"type": "boolean"},
            "ratio": {"type": ["number", "null"]},
            "nested": {"type": "object", "properties": {"depth": {"type": "integer"}}},
        }})
    }

    fn parse_all(pairs: &[&str]) -> Result<Value, String> {
        let pairs: Vec<String> = pairs.iter().map(|p| p.to_string()).collect();
        parse(&pairs, &schema()).map(Value::Object)
    }

    #[test]
    fn values_take_the_type_the_schema_gives_their_key() {
        assert_eq!(
            parse_all(&[
                "valkey_maxmemory_policy=allkeys-lru",
                "valkey_timeout=0x10",
                "valkey_ssl=0",
                "ratio=0.5",
                "nested.depth=3",
            ])
            .unwrap(),
            json!({"valkey_maxmemory_policy": "allkeys-lru", "valkey_timeout": 16,
                   "valkey_ssl": false, "ratio": 0.5, "nested": {"depth": 3}})
        );
        // A string key keeps digits as a string.
        assert_eq!(
            parse_all(&["valkey_maxmemory_policy=10"]).unwrap(),
            json!({"valkey_maxmemory_policy": "10"})
        );
        // The value may contain '='.
        assert_eq!(
            parse_all(&["valkey_maxmemory_policy=a=b"]).unwrap(),
            json!({"valkey_maxmemory_policy": "a=b"})
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused_here() {
        assert!(
            parse_all(&["valkey_timeout=ten"])
                .unwrap_err()
                .contains("not an integer")
        );
        assert!(
            parse_all(&["valkey_ssl=yes"])
                .unwrap_err()
                .contains("expected one of 1, 0, true, false")
        );
        assert!(
            parse_all(&["valkey_timeout=010"])
                .unwrap_err()
                .contains("not an integer")
        );
        assert!(
            parse_all(&["no-equals-sign"])
                .unwrap_err()
                .contains("KEY=VALUE")
        );
        assert!(parse_all(&["=1"]).unwrap_err().contains("KEY=VALUE"));
    }

    #[test]
    fn keys_the_schema_does_not_know_are_sent_as_their_values_read_for_the_server_to_judge() {
        assert_eq!(
            parse_all(&["a=1", "b=-2.5", "c=true", "d=x", "e=1_000", "f=0"]).unwrap(),
            json!({"a": 1, "b": -2.5, "c": true, "d": "x", "e": 1000, "f": 0})
        );
    }
}
