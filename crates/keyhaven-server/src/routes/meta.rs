//! Health checks, clouds, service types and VPCs.

use crate::error::HttpError;
use crate::extract::{ApiPath, Auth};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use keyhaven_api::error::ErrorBody;
use keyhaven_api::project::{Cloud, CloudList, ServicePlan, ServiceType, ServiceTypeList, VpcList};
use keyhaven_control::App;
use keyhaven_core::Plan;
use keyhaven_core::plan::PLANS;
use keyhaven_core::user_config::MAXMEMORY_POLICIES;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "meta", security(()), responses((status = 200, description = "Keyhaven runs")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The store takes writes and the reconciler runs.
///
/// 200 when the store answers and commits a write and the reconciler finished an
/// activation within its last three idle periods (3 s); else 503 `not_ready` naming why.
#[utoipa::path(get, path = "/readyz", tag = "meta", security(()), responses((status = 200, description = "Ready"), (status = 503, body = ErrorBody)))]
pub async fn readyz(State(app): State<Arc<App>>) -> Result<Json<serde_json::Value>, HttpError> {
    app.readiness()
        .await
        .map_err(|why| HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", why))?;
    Ok(Json(json!({"status": "ready"})))
}

/// The services of the caller's projects in the Prometheus exposition format (OpenMetrics
/// text): state, role, memory, clients, keys, replica link and lag, promotions. A token sees
/// only its own projects' series (docs/metrics.md lists every metric).
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String),
        (status = 403, body = ErrorBody)))]
pub async fn metrics(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
) -> Result<axum::response::Response, HttpError> {
    use axum::response::IntoResponse;
    let projects: Vec<String> = app
        .my_projects(&caller)
        .await?
        .into_iter()
        .map(|p| p.name)
        .collect();
    let mut services = Vec::new();
    for project in &projects {
        services.extend(app.service_list(&caller, project).await?);
    }
    let body = crate::metrics::render(&app, &services, &projects, caller.user.is_admin);
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

/// The registered clouds, in Aiven's fields; with `with_hosts` (a token) also where each
/// cloud's nodes and API are and whether its instance is alive, never for anonymous callers.
/// A token holder's list is read from the store; an anonymous one is this instance's copy
/// (refreshed twice a second), so anonymous callers never reach the database.
async fn clouds(app: &App, with_hosts: bool) -> Result<CloudList, HttpError> {
    let views = if with_hosts {
        app.clouds_now().await?
    } else {
        app.clouds()
    };
    Ok(CloudList {
        clouds: views
            .into_iter()
            .map(|c| Cloud {
                keyhaven_host: with_hosts.then(|| c.row.host.clone()),
                keyhaven_api_url: with_hosts.then(|| c.row.api_url.clone()),
                keyhaven_alive: with_hosts.then(|| !c.is_lost()),
                keyhaven_heartbeat_age_ms: with_hosts.then_some(c.heartbeat_age_us / 1000),
                cloud_name: c.row.name,
                cloud_description: c.row.description,
                geo_region: c.row.region,
                provider: c.row.provider,
            })
            .collect(),
    })
}

/// Clouds of this server's configuration (no token needed).
#[utoipa::path(get, path = "/v1/clouds", tag = "meta", security(()), responses((status = 200, body = CloudList)))]
pub async fn cloud_list(State(app): State<Arc<App>>) -> Result<Json<CloudList>, HttpError> {
    Ok(Json(clouds(&app, false).await?))
}

/// Clouds a project's services can be placed in (`avn cloud list --project P`): every
/// cloud of this server, for members of the project (404 otherwise).
#[utoipa::path(get, path = "/v1/project/{project}/clouds", tag = "meta",
    params(("project" = String, Path)),
    responses((status = 200, body = CloudList), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn project_cloud_list(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    ApiPath(project): ApiPath<String>,
) -> Result<Json<CloudList>, HttpError> {
    app.project_for(&caller, &project).await?;
    Ok(Json(clouds(&app, true).await?))
}

/// `avn cloud list` without a project: aiven-client 4.18 asks for
/// `/v1/project//clouds` (an empty project name, never `/v1/clouds`) whenever no
/// `--project` and no `default_project` is set. An empty name is no project, so this is
/// the server's cloud list; it takes a token like every `/v1/project` path.
#[utoipa::path(get, path = "/v1/project//clouds", tag = "meta",
    responses((status = 200, body = CloudList), (status = 403, body = ErrorBody)))]
pub async fn unnamed_project_cloud_list(
    State(app): State<Arc<App>>,
    Auth(_): Auth,
) -> Result<Json<CloudList>, HttpError> {
    Ok(Json(clouds(&app, true).await?))
}

fn valkey_type(app: &App) -> ServiceType {
    ServiceType {
        description: "Valkey - In-memory data store".into(),
        default_version: "9.1".into(),
        latest_available_version: "9.1".into(),
        user_config_schema: json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "valkey_maxmemory_policy": {
                    "type": "string",
                    "title": "Valkey maxmemory-policy",
                    "enum": MAXMEMORY_POLICIES,
                    "default": "noeviction",
                },
                "valkey_ssl": {
                    "type": "boolean",
                    "title": "Require SSL to access Valkey",
                    "description": "Clients reach the service through its TLS endpoint (rediss://); false gives the plain valkey-server (redis://)",
                    "default": true,
                },
                "valkey_reader_max_lag_ms": {
                    "type": "integer",
                    "title": "Reader endpoint lag bound (ms)",
                    "description": "The reader endpoint gives new connections only to replicas whose measured replication lag is within this bound (Keyhaven extension)",
                    "minimum": 1,
                    "maximum": keyhaven_core::user_config::MAX_READER_LAG_MS,
                    "default": keyhaven_core::user_config::DEFAULT_READER_LAG_MS,
                },
                "valkey_reader_fallback": {
                    "type": "string",
                    "title": "Reader endpoint with no replica within the bound",
                    "description": "primary: new connections go to the primary; refuse: they are closed (Keyhaven extension)",
                    "enum": ["primary", "refuse"],
                    "default": "primary",
                },
            }
        }),
        service_plans: PLANS
            .iter()
            .map(|(name, _)| {
                let plan = Plan::find(name).expect("listed plans exist");
                let regions: BTreeMap<String, serde_json::Value> = app
                    .clouds()
                    .into_iter()
                    .map(|c| {
                        (
                            c.row.name,
                            json!({
                                "price_usd": "0.000",
                                "node_memory_mb": plan.node_memory_mb,
                                "disk_space_mb": plan.disk_space_mb(),
                                "node_cpu_count": 1,
                            }),
                        )
                    })
                    .collect();
                ServicePlan {
                    service_plan: plan.name.into(),
                    service_type: "valkey".into(),
                    node_count: 1,
                    node_memory_mb: plan.node_memory_mb,
                    disk_space_mb: plan.disk_space_mb(),
                    max_memory_percent: keyhaven_core::plan::MAXMEMORY_PERCENT,
                    read_replica_allowed: plan.allows_read_replica(),
                    regions,
                }
            })
            .collect(),
    }
}

fn type_list(app: &App) -> ServiceTypeList {
    ServiceTypeList {
        service_types: BTreeMap::from([("valkey".to_string(), valkey_type(app))]),
    }
}

/// Service types and their plans.
#[utoipa::path(get, path = "/v1/service_types", tag = "meta",
    responses((status = 200, body = ServiceTypeList), (status = 403, body = ErrorBody)))]
pub async fn service_type_list(
    State(app): State<Arc<App>>,
    Auth(_): Auth,
) -> Json<ServiceTypeList> {
    Json(type_list(&app))
}

/// Service types of a project (avn ≤ 4.15 reads this on every create).
#[utoipa::path(get, path = "/v1/project/{project}/service_types", tag = "meta",
    params(("project" = String, Path)),
    responses((status = 200, body = ServiceTypeList), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn project_service_type_list(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    ApiPath(project): ApiPath<String>,
) -> Result<Json<ServiceTypeList>, HttpError> {
    app.project_for(&caller, &project).await?;
    Ok(Json(type_list(&app)))
}

/// One service type (avn ≥ 4.16 reads this on every create).
#[utoipa::path(get, path = "/v1/project/{project}/service-types/{service_type}", tag = "meta",
    params(("project" = String, Path), ("service_type" = String, Path)),
    responses((status = 200, body = ServiceType), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn project_service_type_get(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    ApiPath((project, service_type)): ApiPath<(String, String)>,
) -> Result<Json<ServiceType>, HttpError> {
    app.project_for(&caller, &project).await?;
    if service_type != "valkey" {
        return Err(HttpError::new(
            StatusCode::NOT_FOUND,
            "unknown_service_type",
            format!(
                "Unknown service type '{}'; valid service types: valkey",
                service_type.chars().take(64).collect::<String>()
            ),
        ));
    }
    Ok(Json(valkey_type(&app)))
}

/// VPCs of a project: Keyhaven has none.
#[utoipa::path(get, path = "/v1/project/{project}/vpcs", tag = "meta",
    params(("project" = String, Path)),
    responses((status = 200, body = VpcList), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn vpc_list(
    State(app): State<Arc<App>>,
    Auth(caller): Auth,
    ApiPath(project): ApiPath<String>,
) -> Result<Json<VpcList>, HttpError> {
    app.project_for(&caller, &project).await?;
    Ok(Json(VpcList { vpcs: Vec::new() }))
}
