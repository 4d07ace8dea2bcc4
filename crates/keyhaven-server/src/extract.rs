//! Extractors whose rejections come back in Aiven's error shape, never the framework's
//! plain text: JSON bodies (with a size limit), path parameters and the caller's token.

use crate::error::HttpError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use keyhaven_control::{App, Caller};
use keyhaven_core::limits::MAX_BODY_BYTES;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// A JSON body. Any content type is accepted (clients differ); the body must parse.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| {
                HttpError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request_too_large",
                    format!("Request body is larger than the limit of {MAX_BODY_BYTES} bytes"),
                )
            })?;
        // Every body is a JSON object. (serde would also take a struct from a positional
        // array, `["name", "valkey", "hobbyist"]`, which no client means.)
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(HttpError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "Request body must be a JSON object",
            ));
        }
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| {
            let what = if e.is_data() {
                "has a wrong field"
            } else {
                "is not valid JSON"
            };
            HttpError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("Request body {what}: {e}"),
            )
        })
    }
}

/// Path parameters.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| HttpError::new(StatusCode::BAD_REQUEST, "invalid_path", e.body_text()))
    }
}

/// Query parameters.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| HttpError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))
    }
}

/// The authenticated caller (`Authorization: aivenv1 T` or `bearer T`).
pub struct Auth(pub Caller);

impl FromRequestParts<Arc<App>> for Auth {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        Ok(Auth(app.authenticate(header).await?))
    }
}
