//! The one error type of the application layer. Each variant is a kind of failure a client
//! can act on; `code` is a fixed machine-readable `error_code` per case and `message` says
//! what was wrong in words. The server maps kinds to HTTP statuses in exactly one place.

use keyhaven_store::StoreError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum AppError {
    /// The request is malformed or breaks a rule (400).
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// No token, or one Keyhaven does not know (403).
    #[error("Authentication failed")]
    Unauthenticated,
    /// The caller is known but may not do this (403).
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// The object does not exist, or the caller may not see it (404).
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// The request conflicts with the current state (409).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The operation could not complete now and changed nothing (503).
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    /// A fault of Keyhaven itself (500); details are logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Invalid {
            code,
            message: message.into(),
        }
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        AppError::NotFound {
            code,
            message: message.into(),
        }
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Conflict {
            code,
            message: message.into(),
        }
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Forbidden {
            code,
            message: message.into(),
        }
    }

    /// The machine-readable `error_code`.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Invalid { code, .. }
            | AppError::Forbidden { code, .. }
            | AppError::NotFound { code, .. }
            | AppError::Conflict { code, .. }
            | AppError::Unavailable { code, .. } => code,
            AppError::Unauthenticated => "authentication_failed",
            AppError::Internal(_) => "internal_error",
        }
    }

    pub(crate) fn project_not_found(project: &str) -> Self {
        AppError::not_found(
            "project_not_found",
            format!("Project '{project}' does not exist"),
        )
    }

    pub(crate) fn service_not_found(project: &str, service: &str) -> Self {
        AppError::not_found(
            "service_not_found",
            format!("Service '{service}' does not exist in project '{project}'"),
        )
    }
}

impl From<StoreError> for AppError {
    /// A full disk, an unwritable data directory or an unreachable database is the
    /// operator's to fix, not a bug: it is answered 503 with what to do, and the
    /// transaction changed nothing.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Full(place) => AppError::Unavailable {
                code: "storage_full",
                message: format!(
                    "The disk of Keyhaven's {place} is full; nothing was changed. Free space and retry."
                ),
            },
            StoreError::Unavailable(_) => AppError::Unavailable {
                code: "storage_unavailable",
                message: format!(
                    "Keyhaven cannot write its database ({e}); nothing was changed. Retry when it is back."
                ),
            },
            StoreError::Database(_) | StoreError::Corrupt(_) | StoreError::Upgrade(_) => {
                AppError::Internal(e.to_string())
            }
        }
    }
}
