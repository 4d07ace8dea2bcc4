//! Service integrations: the read-replica links.

use crate::error::HttpError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth};
use crate::forward;
use crate::view;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use keyhaven_api::error::{ErrorBody, MessageBody};
use keyhaven_api::service::{
    IntegrationCreateRequest, IntegrationDeleteQuery, IntegrationList, PromotionPending,
    ServiceIntegration,
};
use keyhaven_control::cloud::Owner;
use keyhaven_control::{App, Promotion};
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
    let rows = app.integration_list(&caller, &project, &service).await?;
    Ok(Json(IntegrationList {
        service_integrations: rows.iter().map(view::integration).collect(),
    }))
}

/// Creating integrations after the fact is refused: a read replica is made at service
/// creation.
#[utoipa::path(post, path = "/v1/project/{project}/integration", tag = "integration",
    params(("project" = String, Path)), request_body = IntegrationCreateRequest,
    responses((status = 400, body = ErrorBody, description = "Always: a read_replica link is made at service creation, and Keyhaven has no other integration type"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn service_integration_create(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    ApiPath(project): ApiPath<String>,
    ApiJson(req): ApiJson<IntegrationCreateRequest>,
) -> Result<Json<ServiceIntegration>, HttpError> {
    let row = app
        .integration_create(&caller, &project, &req.integration_type)
        .await?;
    Ok(Json(view::integration(&row)))
}

/// Deletes an integration. For a `read_replica` link this promotes the replica to an
/// independent primary, losing no write its primary acknowledged (unless `lossy=true`).
#[utoipa::path(delete, path = "/v1/project/{project}/integration/{integration_id}", tag = "integration",
    params(("project" = String, Path), ("integration_id" = String, Path), IntegrationDeleteQuery),
    responses((status = 200, body = MessageBody, description = "Replica promoted"),
        (status = 202, body = PromotionPending, description = "The replica was detached (or may have been); Keyhaven finishes the promotion in the background"),
        (status = 400, body = ErrorBody, description = "A malformed query"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The replica is still in its first sync, or this link is being promoted right now"),
        (status = 503, body = ErrorBody, description = "Nothing changed: the replica could not catch up in time, the primary runs but does not answer, or a node does not answer")))]
pub async fn service_integration_delete(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    ApiPath((project, id)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<IntegrationDeleteQuery>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    // The replica's own instance promotes it: it stages the replica's role on its host.
    if let Owner::Elsewhere { cloud, api_url } =
        app.integration_owner(&caller, &project, &id).await?
    {
        return forward::to(&api_url, &cloud, Method::DELETE, &uri, &headers).await;
    }
    let started = std::time::Instant::now();
    let answer = app
        .integration_delete(&caller, &project, &id, query.lossy)
        .await
        .map_err(HttpError::from);
    // Counted only in a project the caller may see (a 404 could name anyone's).
    let outcome = match &answer {
        Ok(Promotion::Done(_)) => "promoted".to_string(),
        Ok(Promotion::Finishing { .. }) => "pending".to_string(),
        Err(e) => e.0.code.clone(),
    };
    if answer.is_ok()
        || app
            .my_projects(&caller)
            .await
            .is_ok_and(|ps| ps.iter().any(|p| p.name == project))
    {
        app.count_promotion(&project, &outcome);
        let pause = match &answer {
            Ok(Promotion::Done(p)) => p.write_pause,
            _ => None,
        };
        app.promotion_timed(&project, started.elapsed(), pause);
    }
    Ok(
        match answer? {
            Promotion::Done(p) => Json(MessageBody {
                message: format!("Service integration deleted: {}", p.describe()),
            })
            .into_response(),
            Promotion::Finishing { replica, reason } => (
                StatusCode::ACCEPTED,
                Json(PromotionPending {
                    message: format!(
                        "'{replica}' is being promoted; the request could not wait for the last step ({reason}), Keyhaven finishes it in the background"
                    ),
                    state: "promoting".into(),
                }),
            )
                .into_response(),
        },
    )
}
