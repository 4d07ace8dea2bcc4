//! Routes, one file per noun. Endpoint function names are the operation names
//! (`service_create`, `service_integration_delete`), matching the CLI's verbs.

pub mod identity;
pub mod integration;
pub mod meta;
pub mod project;
pub mod service;

use crate::error::HttpError;
use axum::Router;
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::routing::{MethodFilter, MethodRouter, on};
use keyhaven_control::App;
use std::sync::Arc;

/// One route of the API: a method and a path answered by one handler.
pub(crate) struct Route {
    pub method: Method,
    pub path: &'static str,
    /// The handler, routed for the method the router gives it (this route's).
    handler: Box<dyn FnOnce(MethodFilter) -> MethodRouter<Arc<App>>>,
}

fn route<H, T>(method: Method, path: &'static str, handler: H) -> Route
where
    H: Handler<T, Arc<App>>,
    T: 'static,
{
    Route {
        method,
        path,
        handler: Box::new(move |filter| on(filter, handler)),
    }
}

/// Every route of the API. The router is built from this table and nothing else, so the
/// test that compares it with the OpenAPI document compares the real routes.
pub(crate) fn routes() -> Vec<Route> {
    use Method as M;
    vec![
        route(M::GET, "/healthz", meta::healthz),
        route(M::GET, "/readyz", meta::readyz),
        route(M::GET, "/metrics", meta::metrics),
        route(M::GET, "/v1/clouds", meta::cloud_list),
        route(M::GET, "/v1/service_types", meta::service_type_list),
        route(
            M::GET,
            "/v1/project/{project}/service_types",
            meta::project_service_type_list,
        ),
        route(
            M::GET,
            "/v1/project/{project}/service-types/{service_type}",
            meta::project_service_type_get,
        ),
        route(M::GET, "/v1/project/{project}/vpcs", meta::vpc_list),
        route(
            M::GET,
            "/v1/project/{project}/clouds",
            meta::project_cloud_list,
        ),
        route(
            M::GET,
            "/v1/project//clouds",
            meta::unnamed_project_cloud_list,
        ),
        route(M::POST, "/v1/user", identity::user_create),
        route(M::POST, "/v1/userauth", identity::user_auth),
        route(M::GET, "/v1/me", identity::me),
        route(M::GET, "/v1/access_token", identity::access_token_list),
        route(M::POST, "/v1/access_token", identity::access_token_create),
        route(
            M::DELETE,
            "/v1/access_token/{token_prefix}",
            identity::access_token_revoke,
        ),
        route(M::GET, "/v1/project", project::project_list),
        route(M::POST, "/v1/project", project::project_create),
        route(M::GET, "/v1/project/{project}", project::project_get),
        route(
            M::POST,
            "/v1/project/{project}/invite",
            project::project_invite,
        ),
        route(
            M::GET,
            "/v1/project/{project}/kms/ca",
            project::project_ca_get,
        ),
        route(
            M::GET,
            "/v1/project/{project}/service",
            service::service_list,
        ),
        route(
            M::POST,
            "/v1/project/{project}/service",
            service::service_create,
        ),
        route(
            M::GET,
            "/v1/project/{project}/service/{service}",
            service::service_get,
        ),
        route(
            M::DELETE,
            "/v1/project/{project}/service/{service}",
            service::service_delete,
        ),
        route(
            M::PUT,
            "/v1/project/{project}/service/{service}",
            service::service_update,
        ),
        route(
            M::PUT,
            "/v1/project/{project}/service/{service}/credentials/reset",
            service::service_credentials_reset,
        ),
        route(
            M::GET,
            "/v1/project/{project}/service/{service}/integration",
            integration::service_integration_list,
        ),
        route(
            M::POST,
            "/v1/project/{project}/integration",
            integration::service_integration_create,
        ),
        route(
            M::DELETE,
            "/v1/project/{project}/integration/{integration_id}",
            integration::service_integration_delete,
        ),
    ]
}

pub fn router() -> Router<Arc<App>> {
    // Routes of one path merge into one method router (axum panics on a method twice).
    routes()
        .into_iter()
        .fold(Router::new(), |router, r| {
            let filter = MethodFilter::try_from(r.method).expect("a method axum can route");
            router.route(r.path, (r.handler)(filter))
        })
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(crate::metrics::track))
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
