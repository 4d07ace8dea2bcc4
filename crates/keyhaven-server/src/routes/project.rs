//! Projects.

use crate::error::HttpError;
use crate::extract::{ApiJson, ApiPath, Auth};
use crate::view;
use axum::Json;
use axum::extract::State;
use keyhaven_api::error::{ErrorBody, MessageBody};
use keyhaven_api::identity::InviteRequest;
use keyhaven_api::project::{ProjectCa, ProjectCreateRequest, ProjectEnvelope, ProjectList};
use keyhaven_control::App;
use std::sync::Arc;

/// Projects the caller is a member of.
#[utoipa::path(get, path = "/v1/project", tag = "project",
    responses((status = 200, body = ProjectList), (status = 403, body = ErrorBody)))]
pub async fn project_list(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
) -> Result<Json<ProjectList>, HttpError> {
    Ok(Json(ProjectList {
        projects: app
            .my_projects(&caller)
            .await?
            .iter()
            .map(view::project)
            .collect(),
    }))
}

/// Creates a project; the caller becomes its member.
#[utoipa::path(post, path = "/v1/project", tag = "project", request_body = ProjectCreateRequest,
    responses((status = 200, body = ProjectEnvelope), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn project_create(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<ProjectCreateRequest>,
) -> Result<Json<ProjectEnvelope>, HttpError> {
    let row = app
        .project_create(&caller, &req.project, req.cloud.as_deref())
        .await?;
    Ok(Json(ProjectEnvelope {
        project: view::project(&row),
    }))
}

/// One project.
#[utoipa::path(get, path = "/v1/project/{project}", tag = "project",
    params(("project" = String, Path)),
    responses((status = 200, body = ProjectEnvelope), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn project_get(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    ApiPath(project): ApiPath<String>,
) -> Result<Json<ProjectEnvelope>, HttpError> {
    let row = app.project_for(&caller, &project).await?;
    Ok(Json(ProjectEnvelope {
        project: view::project(&row),
    }))
}

/// Adds an existing user to the project at once.
#[utoipa::path(post, path = "/v1/project/{project}/invite", tag = "project",
    params(("project" = String, Path)), request_body = InviteRequest,
    responses((status = 200, body = MessageBody), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn project_invite(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    ApiPath(project): ApiPath<String>,
    ApiJson(req): ApiJson<InviteRequest>,
) -> Result<Json<MessageBody>, HttpError> {
    let member_type = req.member_type.as_deref().unwrap_or("developer");
    app.project_invite(&caller, &project, &req.user_email, member_type)
        .await?;
    Ok(Json(MessageBody {
        message: format!("{} is now a member of {project}", req.user_email),
    }))
}

/// The project's CA certificate (PEM), created on first need: the CA of the project's TLS
/// certificates (`avn project ca-get`). Its key is never answered.
#[utoipa::path(get, path = "/v1/project/{project}/kms/ca", tag = "project",
    params(("project" = String, Path)),
    responses((status = 200, body = ProjectCa), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn project_ca_get(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    ApiPath(project): ApiPath<String>,
) -> Result<Json<ProjectCa>, HttpError> {
    Ok(Json(ProjectCa {
        certificate: app.project_ca_get(&caller, &project).await?,
    }))
}
