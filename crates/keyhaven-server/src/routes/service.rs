//! Services.

use crate::error::HttpError;
use crate::extract::{ApiJson, ApiPath, Auth};
use crate::{forward, view};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use keyhaven_api::error::{ErrorBody, MessageBody};
use keyhaven_api::service::{
    ServiceCreateRequest, ServiceEnvelope, ServiceList, ServiceUpdateRequest,
};
use keyhaven_control::App;
use keyhaven_control::cloud::Owner;
use keyhaven_control::service::{IntegrationRequest, ServiceCreate};
use keyhaven_control::update::ServiceUpdate;
use std::sync::Arc;

/// Creates a service; with a `read_replica` integration, a read replica of its source.
#[utoipa::path(post, path = "/v1/project/{project}/service", tag = "service",
    params(("project" = String, Path)), request_body = ServiceCreateRequest,
    responses(
        (status = 200, body = ServiceEnvelope, description = "Created; state REBUILDING until it serves"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "Name taken, replica limit or service quota reached"),
        (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn service_create(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    ApiPath(project): ApiPath<String>,
    ApiJson(req): ApiJson<ServiceCreateRequest>,
) -> Result<Json<ServiceEnvelope>, HttpError> {
    let create = ServiceCreate {
        service_name: req.service_name,
        service_type: req.service_type,
        plan: req.plan,
        cloud: req.cloud,
        user_config: req.user_config,
        termination_protection: req.termination_protection.unwrap_or(false),
        body_project: req.project,
        integrations: req
            .service_integrations
            .unwrap_or_default()
            .into_iter()
            .map(|i| IntegrationRequest {
                integration_type: i.integration_type,
                source_service: i.source_service.or(i.source_service_name),
                source_project: i.source_project,
            })
            .collect(),
    };
    let detail = app.service_create(&caller, &project, &create).await?;
    Ok(Json(ServiceEnvelope {
        service: view::service(&app, &detail),
    }))
}

/// Services of a project.
#[utoipa::path(get, path = "/v1/project/{project}/service", tag = "service",
    params(("project" = String, Path)),
    responses((status = 200, body = ServiceList), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn service_list(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    ApiPath(project): ApiPath<String>,
) -> Result<Json<ServiceList>, HttpError> {
    let services = app.service_list(&caller, &project).await?;
    Ok(Json(ServiceList {
        services: services.iter().map(|d| view::service(&app, d)).collect(),
    }))
}

/// One service, with its replication health.
#[utoipa::path(get, path = "/v1/project/{project}/service/{service}", tag = "service",
    params(("project" = String, Path), ("service" = String, Path)),
    responses((status = 200, body = ServiceEnvelope), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn service_get(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    ApiPath((project, service)): ApiPath<(String, String)>,
) -> Result<Json<ServiceEnvelope>, HttpError> {
    let detail = app.service_get(&caller, &project, &service).await?;
    Ok(Json(ServiceEnvelope {
        service: view::service(&app, &detail),
    }))
}

/// Deletes a service (`avn service terminate`); a primary with replicas is refused.
#[utoipa::path(delete, path = "/v1/project/{project}/service/{service}", tag = "service",
    params(("project" = String, Path), ("service" = String, Path)),
    responses((status = 200, body = MessageBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The service still has read replicas")))]
pub async fn service_delete(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    ApiPath((project, service)): ApiPath<(String, String)>,
) -> Result<Json<MessageBody>, HttpError> {
    app.service_delete(&caller, &project, &service).await?;
    Ok(Json(MessageBody {
        message: "Service terminated".into(),
    }))
}

/// Changes a service (`avn service update`): plan, user_config, power and termination
/// protection. The change is recorded at once (a new generation) and applied by the
/// reconciler; the answer shows the desired spec.
#[utoipa::path(put, path = "/v1/project/{project}/service/{service}", tag = "service",
    params(("project" = String, Path), ("service" = String, Path)), request_body = ServiceUpdateRequest,
    responses(
        (status = 200, body = ServiceEnvelope),
        (status = 400, body = ErrorBody, description = "Unknown plan, invalid user_config, a field of the wrong type, or a key Keyhaven cannot honour"),
        (status = 403, body = ErrorBody, description = "Bad token, or termination_protected (powering off a protected service)"),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The data in use does not fit the plan, a replica plan rule, a primary with replicas powered off, or a promotion in progress"),
        (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn service_update(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    ApiPath((project, service)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<serde_json::Map<String, serde_json::Value>>,
) -> Result<Json<ServiceEnvelope>, HttpError> {
    let update = ServiceUpdate::from_body(&body)?;
    let detail = app
        .service_update(&caller, &project, &service, &update)
        .await?;
    Ok(Json(ServiceEnvelope {
        service: view::service(&app, &detail),
    }))
}

/// A new password for the service user (`avn service credentials-reset`), working when
/// the answer arrives; replication keeps running (it has its own user).
#[utoipa::path(put, path = "/v1/project/{project}/service/{service}/credentials/reset", tag = "service",
    params(("project" = String, Path), ("service" = String, Path)),
    responses(
        (status = 200, body = ServiceEnvelope, description = "The service with its new password"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The service is powered off"),
        (status = 503, body = ErrorBody, description = "node_unavailable: the node did not take the password; nothing changed")))]
pub async fn service_credentials_reset(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    ApiPath((project, service)): ApiPath<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    // The node's own instance sets the password on it.
    if let Owner::Elsewhere { cloud, api_url } =
        app.service_owner(&caller, &project, &service).await?
    {
        return forward::to(&api_url, &cloud, Method::PUT, &uri, &headers).await;
    }
    let detail = app
        .service_credentials_reset(&caller, &project, &service)
        .await?;
    Ok(Json(ServiceEnvelope {
        service: view::service(&app, &detail),
    })
    .into_response())
}
