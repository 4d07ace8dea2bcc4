//! The one place where application errors become HTTP statuses, and every error leaves
//! the server in Aiven's shape: `{"message", "errors": [{"message", "status", "error_code"}]}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyhaven_api::ApiError;
use keyhaven_control::AppError;
use tracing::error;

/// An error response.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl HttpError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        HttpError(ApiError {
            status: status.as_u16(),
            code: code.to_string(),
            message: message.into(),
        })
    }
}

impl From<AppError> for HttpError {
    fn from(e: AppError) -> Self {
        let status = match &e {
            AppError::Invalid { .. } => StatusCode::BAD_REQUEST,
            AppError::Unauthenticated | AppError::Forbidden { .. } => StatusCode::FORBIDDEN,
            AppError::NotFound { .. } => StatusCode::NOT_FOUND,
            AppError::Conflict { .. } => StatusCode::CONFLICT,
            AppError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(detail) => {
                // Logged here, where it is handled; the client gets no internals.
                error!(error = %detail, "internal error");
                return HttpError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    e.code(),
                    "Internal error; the server log has the details",
                );
            }
        };
        HttpError::new(status, e.code(), e.to_string())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.0.body())).into_response()
    }
}
