//! Names of projects and services. They end up in directory names, URIs and (later) DNS
//! labels, so they follow the DNS label rule: this is stricter than Aiven's 64 characters,
//! on purpose, because a name that cannot be a label cannot be exposed by hostname later.

use thiserror::Error;

/// Longest accepted name: a DNS label.
pub const MAX_NAME_LEN: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("{kind} name must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} name is {len} characters long; at most {MAX_NAME_LEN} are allowed")]
    TooLong { kind: &'static str, len: usize },
    #[error("{kind} name '{name}' must start with a lowercase letter")]
    BadStart { kind: &'static str, name: String },
    #[error(
        "{kind} name '{name}' may contain only lowercase letters, digits and dashes (found {found:?})"
    )]
    BadChar {
        kind: &'static str,
        name: String,
        found: char,
    },
    #[error("{kind} name '{name}' must not end with a dash")]
    TrailingDash { kind: &'static str, name: String },
}

/// Checks a project or service name; `kind` ("service", "project") only shapes the message.
pub fn validate_name(kind: &'static str, name: &str) -> Result<(), NameError> {
    let shown = || name.chars().take(80).collect::<String>();
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    let len = name.chars().count();
    if len > MAX_NAME_LEN {
        return Err(NameError::TooLong { kind, len });
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(NameError::BadStart {
            kind,
            name: shown(),
        });
    }
    if let Some(found) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(NameError::BadChar {
            kind,
            name: shown(),
            found,
        });
    }
    if name.ends_with('-') {
        return Err(NameError::TrailingDash {
            kind,
            name: shown(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["a", "primary", "my-replica-2", &"a".repeat(63)] {
            assert_eq!(validate_name("service", ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        let cases = [
            "",
            "1abc",
            "-abc",
            "abc-",
            "Abc",
            "a_b",
            "a/b",
            "..",
            "a..b",
            "ä",
            "a b",
            &"a".repeat(64),
        ];
        for bad in cases {
            assert!(validate_name("service", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn message_names_the_problem() {
        let err = validate_name("service", "a/b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "service name 'a/b' may contain only lowercase letters, digits and dashes (found '/')"
        );
    }
}
