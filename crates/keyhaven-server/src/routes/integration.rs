//! Service integrations: the read-replica links.

use crate::error::HttpError;
use crate::extract::{ApiJson, ApiPath, Auth};
use crate::view;
use axum::Json;
use axum::extract::State;
use keyhaven_api::error::{ErrorBody, MessageBody};
use keyhaven_api::service::{IntegrationCreateRequest, IntegrationList, ServiceIntegration};
use keyhaven_control::App;
use std::sync::Arc;

/// Integrations of a service, as source (a primary lists all its replicas) or destination.
#[utoipa::path(get, path = "/v1/project/{project}/service/{service}/integration", tag = "integration",
    params(("project" = String, Path), ("service" = String, Path)),
    responses((status = 200, body = IntegrationList), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn service_integration_list(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    ApiPath((project, service)): ApiPath<(String, String)>,
) -> Result<Json<IntegrationList>, HttpError> {
    let rows = app.integration_list(&caller, &project, &service)?;
    Ok(Json(IntegrationList {
        service_integrations: rows.iter().map(view::integration).collect(),
    }))
}

/// Creating integrations after the fact is refused: a read replica is made at service
/// creation.
#[utoipa::path(post, path = "/v1/project/{project}/integration", tag = "integration",
    params(("project" = String, Path)), request_body = IntegrationCreateRequest,
    responses((status = 200, body = ServiceIntegration), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn service_integration_create(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    ApiPath(project): ApiPath<String>,
    ApiJson(req): ApiJson<IntegrationCreateRequest>,
) -> Result<Json<ServiceIntegration>, HttpError> {
    let row = app.integration_create(&caller, &project, &req.integration_type)?;
    Ok(Json(view::integration(&row)))
}

/// Deletes an integration. For a `read_replica` link this promotes the replica to an
/// independent primary, losing no write its primary acknowledged.
#[utoipa::path(delete, path = "/v1/project/{project}/integration/{integration_id}", tag = "integration",
    params(("project" = String, Path), ("integration_id" = String, Path)),
    responses((status = 200, body = MessageBody, description = "Replica promoted"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The replica is still in its first sync"),
        (status = 503, body = ErrorBody, description = "The replica could not catch up in time; nothing changed")))]
pub async fn service_integration_delete(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    ApiPath((project, id)): ApiPath<(String, String)>,
) -> Result<Json<MessageBody>, HttpError> {
    let p = app.integration_delete(&caller, &project, &id).await?;
    let detail = match (p.write_pause, p.lost_bytes_estimate) {
        (Some(pause), _) => format!(
            "writes on '{}' paused {:.1} ms",
            p.primary,
            pause.as_secs_f64() * 1000.0
        ),
        (None, Some(lost)) => format!(
            "'{}' did not answer; up to {lost} bytes may be missing",
            p.primary
        ),
        (None, None) => "it was detached already".into(),
    };
    Ok(Json(MessageBody {
        message: format!(
            "Service integration deleted: '{}' is now a primary ({detail})",
            p.replica
        ),
    }))
}
