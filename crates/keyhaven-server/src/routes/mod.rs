//! Routes, one file per noun. Endpoint function names are the operation names
//! (`service_create`, `service_integration_delete`), matching the CLI's verbs.

pub mod identity;
pub mod integration;
pub mod meta;
pub mod project;
pub mod service;

use crate::error::HttpError;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use keyhaven_control::App;
use std::sync::Arc;

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/healthz", get(meta::healthz))
        .route("/readyz", get(meta::readyz))
        .route("/v1/clouds", get(meta::cloud_list))
        .route("/v1/service_types", get(meta::service_type_list))
        .route(
            "/v1/project/{project}/service_types",
            get(meta::project_service_type_list),
        )
        .route(
            "/v1/project/{project}/service-types/{service_type}",
            get(meta::project_service_type_get),
        )
        .route("/v1/project/{project}/vpcs", get(meta::vpc_list))
        .route("/v1/user", post(identity::user_create))
        .route("/v1/userauth", post(identity::user_auth))
        .route("/v1/me", get(identity::me))
        .route(
            "/v1/access_token",
            get(identity::access_token_list).post(identity::access_token_create),
        )
        .route(
            "/v1/access_token/{token_prefix}",
            delete(identity::access_token_revoke),
        )
        .route(
            "/v1/project",
            get(project::project_list).post(project::project_create),
        )
        .route("/v1/project/{project}", get(project::project_get))
        .route(
            "/v1/project/{project}/invite",
            post(project::project_invite),
        )
        .route(
            "/v1/project/{project}/service",
            get(service::service_list).post(service::service_create),
        )
        .route(
            "/v1/project/{project}/service/{service}",
            get(service::service_get).delete(service::service_delete),
        )
        .route(
            "/v1/project/{project}/service/{service}/integration",
            get(integration::service_integration_list),
        )
        .route(
            "/v1/project/{project}/integration",
            post(integration::service_integration_create),
        )
        .route(
            "/v1/project/{project}/integration/{integration_id}",
            delete(integration::service_integration_delete),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found() -> HttpError {
    HttpError::new(StatusCode::NOT_FOUND, "not_found", "No such endpoint")
}

async fn method_not_allowed() -> HttpError {
    HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed on this endpoint",
    )
}
