//! Aiven's error body: `{"message", "errors": [{"message", "status", "error_code"}]}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in words.
    pub message: String,
    pub errors: Vec<ErrorItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorItem {
    pub message: String,
    /// The HTTP status of the response.
    pub status: u16,
    /// A fixed machine-readable code per case, e.g. `service_exists`.
    pub error_code: String,
}

/// An error as status, code and message; `body()` renders it in Aiven's shape.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            message: self.message.clone(),
            errors: vec![ErrorItem {
                message: self.message.clone(),
                status: self.status,
                error_code: self.code.clone(),
            }],
        }
    }
}

/// The body of a success that carries no object (deletes): avn needs a JSON object.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageBody {
    pub message: String,
}
