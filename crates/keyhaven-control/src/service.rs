//! Services: create (primary or read replica), list, get and delete.

use crate::identity::visible_project;
use crate::secret::new_password;
use crate::{App, AppError, Caller};
use keyhaven_core::limits::MAX_READ_REPLICAS;
use keyhaven_core::time::now_micros;
use keyhaven_core::{Plan, Role, UserConfig, validate_name};
use keyhaven_store::{IntegrationRow, LinkStatus, NewService, ServiceRow, Tx};
use std::collections::BTreeSet;
use tracing::info;

pub const SERVICE_TYPES: &[&str] = &["valkey"];
pub const READ_REPLICA: &str = "read_replica";

/// What a client asks for when creating a service (already parsed from JSON).
#[derive(Debug, Clone, Default)]
pub struct ServiceCreate {
    pub service_name: String,
    pub service_type: String,
    pub plan: String,
    pub cloud: Option<String>,
    pub user_config: Option<serde_json::Value>,
    pub termination_protection: bool,
    /// The body's optional top-level `project` (the docs' curl sends it).
    pub body_project: Option<String>,
    pub integrations: Vec<IntegrationRequest>,
}

/// One `service_integrations` item of a create request.
#[derive(Debug, Clone, Default)]
pub struct IntegrationRequest {
    pub integration_type: String,
    /// `source_service`, or the docs' `source_service_name`.
    pub source_service: Option<String>,
    pub source_project: Option<String>,
}

/// A service with what its views need: its links, and for a primary its replicas.
#[derive(Debug, Clone)]
pub struct ServiceDetail {
    pub row: ServiceRow,
    pub integrations: Vec<IntegrationRow>,
    /// Replicas of this service (dest of a link whose source is this service).
    pub replicas: Vec<ServiceRow>,
}

impl App {
    pub async fn service_create(
        &self,
        caller: &Caller,
        project: &str,
        req: &ServiceCreate,
    ) -> Result<ServiceDetail, AppError> {
        // Everything that needs no state is checked before the transaction.
        validate_name("service", &req.service_name)
            .map_err(|e| AppError::invalid("invalid_name", e.to_string()))?;
        if let Some(p) = &req.body_project
            && p != project
        {
            return Err(AppError::invalid(
                "project_mismatch",
                format!(
                    "Body project '{}' differs from the project '{project}' in the URL",
                    p.chars().take(64).collect::<String>()
                ),
            ));
        }
        if !SERVICE_TYPES.contains(&req.service_type.as_str()) {
            return Err(AppError::invalid(
                "unknown_service_type",
                format!(
                    "Unknown service type '{}'; valid service types: {}",
                    req.service_type.chars().take(64).collect::<String>(),
                    SERVICE_TYPES.join(", ")
                ),
            ));
        }
        let plan = Plan::find(&req.plan).ok_or_else(|| {
            AppError::invalid(
                "unknown_plan",
                format!(
                    "Unknown plan '{}' for service type valkey; valid plans: {}",
                    req.plan.chars().take(64).collect::<String>(),
                    Plan::all_names()
                ),
            )
        })?;
        let user_config = UserConfig::from_json(req.user_config.as_ref())
            .map_err(|e| AppError::invalid("invalid_user_config", e.to_string()))?;
        let replica_of = replica_source(project, &req.integrations)?;
        if replica_of.is_some() && !plan.allows_read_replica() {
            return Err(AppError::invalid(
                "replica_plan_not_allowed",
                format!(
                    "A read replica's plan must be a Startup plan; the replica's plan '{}' is not one (valid: {})",
                    plan.name,
                    Plan::replica_plan_names()
                ),
            ));
        }

        let now = now_micros();
        let id = uuid::Uuid::new_v4().to_string();
        let detail = self.store.write(|tx| {
            let project_row = visible_project(tx, caller, project)?;
            let cloud =
                self.resolve_cloud(tx, req.cloud.as_deref(), Some(&project_row.default_cloud))?;
            if tx.service_by_name(project, &req.service_name)?.is_some() {
                return Err(AppError::conflict(
                    "service_exists",
                    format!(
                        "Service '{}' already exists in project '{project}'",
                        req.service_name
                    ),
                ));
            }
            if tx.service_count(project)? >= self.config.max_services_per_project {
                return Err(AppError::conflict(
                    "service_quota_exceeded",
                    format!(
                        "Project '{project}' already has the maximum of {} services",
                        self.config.max_services_per_project
                    ),
                ));
            }
            let source = match &replica_of {
                Some(source_name) => Some(check_replica_source(tx, project, source_name)?),
                None => None,
            };
            // A replica must hold its primary's data, or it would refuse writes (OOM) the
            // moment it is promoted.
            if let Some(source) = &source
                && let Some(source_plan) = Plan::find(&source.plan)
                && plan.node_memory_mb < source_plan.node_memory_mb
            {
                return Err(AppError::invalid(
                    "replica_plan_too_small",
                    format!(
                        "A read replica must hold its primary's data: plan {} ({} MiB) is smaller than the plan {} ({} MiB) of its primary '{}'",
                        plan.name,
                        plan.node_memory_mb,
                        source_plan.name,
                        source_plan.node_memory_mb,
                        source.name
                    ),
                ));
            }
            let port = self.allocate_port(tx, &cloud)?;
            let host = match tx.cloud_get(&cloud)? {
                Some(c) => c.host,
                None => self.cloud_host(&cloud),
            };
            let row = tx.service_insert(
                &NewService {
                    id: id.clone(),
                    project: project.to_string(),
                    name: req.service_name.clone(),
                    service_type: req.service_type.clone(),
                    plan: plan.name.to_string(),
                    cloud,
                    user_config: user_config.to_json(),
                    termination_protection: req.termination_protection,
                    port,
                    service_password: new_password(32),
                    admin_password: new_password(32),
                    repl_password: new_password(32),
                    role: if source.is_some() {
                        Role::Replica
                    } else {
                        Role::Primary
                    },
                    host,
                },
                now,
            )?;
            if let Some(source) = &source {
                tx.integration_insert(
                    &uuid::Uuid::new_v4().to_string(),
                    project,
                    READ_REPLICA,
                    &source.id,
                    &row.id,
                    now,
                )?;
            }
            detail_of(tx, row)
        }).await?;
        crate::failpoint::hit("service_create.committed");
        info!(project, service = %req.service_name, plan = plan.name, port = detail.row.port,
              replica_of = replica_of.as_deref().unwrap_or("-"), "service created");
        self.wake.notify_one();
        Ok(detail)
    }

    pub async fn service_list(
        &self,
        caller: &Caller,
        project: &str,
    ) -> Result<Vec<ServiceDetail>, AppError> {
        self.store
            .read(|tx| {
                visible_project(tx, caller, project)?;
                tx.services_of_project(project)?
                    .into_iter()
                    .map(|row| detail_of(tx, row))
                    .collect()
            })
            .await
    }

    pub async fn service_get(
        &self,
        caller: &Caller,
        project: &str,
        name: &str,
    ) -> Result<ServiceDetail, AppError> {
        self.store
            .read(|tx| {
                visible_project(tx, caller, project)?;
                let row = tx
                    .service_by_name(project, name)?
                    .ok_or_else(|| AppError::service_not_found(project, name))?;
                detail_of(tx, row)
            })
            .await
    }

    /// Deletes a service. Its node is retired in the same transaction; the reconciler
    /// stops the process and frees the port right after.
    pub async fn service_delete(
        &self,
        caller: &Caller,
        project: &str,
        name: &str,
    ) -> Result<(), AppError> {
        let now = now_micros();
        self.store.write(|tx| {
            visible_project(tx, caller, project)?;
            let row = tx
                .service_by_name(project, name)?
                .ok_or_else(|| AppError::service_not_found(project, name))?;
            if row.termination_protection {
                return Err(AppError::forbidden(
                    "termination_protected",
                    "Service is protected against termination and shutdown. Remove termination protection first.",
                ));
            }
            let links = tx.integrations_of_service(&row.id)?;
            let replicas: Vec<&str> = links
                .iter()
                .filter(|l| l.source_service_id == row.id)
                .map(|l| l.dest_service.as_str())
                .collect();
            if !replicas.is_empty() {
                return Err(AppError::conflict(
                    "service_has_replicas",
                    format!(
                        "Service '{name}' has read replicas ({}); promote or delete them first",
                        replicas.join(", ")
                    ),
                ));
            }
            for link in &links {
                if link.status == LinkStatus::Promoting {
                    return Err(AppError::conflict(
                        "promotion_in_progress",
                        format!("Service '{name}' is being promoted; try again when it is done"),
                    ));
                }
                tx.integration_delete(&link.id)?;
            }
            tx.service_delete(&row.id, now)?;
            Ok(())
        }).await?;
        info!(project, service = name, "service deleted");
        self.wake.notify_one();
        Ok(())
    }

    /// Moves a service whose port another program took to a free port. Its replicas get a
    /// new generation of their role, so their running nodes are re-pointed at the new port.
    pub(crate) async fn service_move_port(&self, service_id: &str) -> Result<u16, AppError> {
        let now = now_micros();
        self.store.write(|tx| {
            let row = tx
                .service_by_id(service_id)?
                .ok_or_else(|| AppError::Internal("moving a missing service".into()))?;
            let port = self.allocate_port(tx, &row.cloud)?;
            tx.service_set_port(&row.id, port, now)?;
            for link in tx.integrations_of_service(&row.id)? {
                // Not a link being promoted: its replica's role is the promotion's.
                if link.source_service_id == row.id && link.status == LinkStatus::Active {
                    tx.service_set_role(&link.dest_service_id, Role::Replica, now)?;
                }
            }
            info!(service = %format!("{}/{}", row.project, row.name), from = row.port, to = port,
                  "port held by another program: service moved to another port");
            Ok(port)
        }).await
    }

    /// The lowest port of `cloud`'s range that no service holds. On this instance's own
    /// cloud the runtime also says whether anything else on the host holds it (or its
    /// endpoints' ports) now, so a
    /// port taken by another program is skipped instead of making the node fail to start;
    /// another cloud's instance moves a node whose port turns out taken
    /// ([`App::service_move_port`]).
    fn allocate_port(&self, tx: &Tx<'_>, cloud: &str) -> Result<u16, AppError> {
        let taken: BTreeSet<u16> = tx.ports_in_use()?;
        let range = if self.is_mine(cloud) {
            self.config.valkey_ports.clone()
        } else {
            let row = tx.cloud_get(cloud)?.ok_or_else(|| {
                AppError::invalid(
                    "unknown_cloud",
                    format!("Cloud '{cloud}' is not registered"),
                )
            })?;
            row.port_min..=row.port_max
        };
        let local = self.is_mine(cloud);
        let bounds = (*range.start(), *range.end());
        // The node's endpoints take fixed offsets from its port (`endpoints.rs`): they must
        // be free too (a service's own endpoints are its own, so only other programs).
        let free = |p: u16| {
            self.runtime.port_available(p)
                && crate::endpoints::endpoint_ports(p, bounds).is_some_and(|e| {
                    self.runtime.port_available(e.service) && self.runtime.port_available(e.reader)
                })
        };
        range
            .clone()
            .filter(|p| !taken.contains(p))
            .find(|p| !local || free(*p))
            .ok_or_else(|| AppError::Unavailable {
                code: "no_free_port",
                message: format!(
                    "No free port left in the valkey port range {}-{} of cloud '{cloud}'",
                    range.start(),
                    range.end()
                ),
            })
    }
}

/// The primary named by a create request's `read_replica` integration, if any.
fn replica_source(project: &str, items: &[IntegrationRequest]) -> Result<Option<String>, AppError> {
    let mut source = None;
    for item in items {
        if item.integration_type != READ_REPLICA {
            return Err(AppError::invalid(
                "unsupported_integration",
                format!(
                    "Integration type '{}' is not supported; Keyhaven supports: {READ_REPLICA}",
                    item.integration_type.chars().take(64).collect::<String>()
                ),
            ));
        }
        if source.is_some() {
            return Err(AppError::invalid(
                "too_many_sources",
                "A service can be the read replica of one primary only",
            ));
        }
        if let Some(p) = &item.source_project
            && p != project
        {
            return Err(AppError::invalid(
                "cross_project_replica",
                "A read replica must be in the same project as its primary",
            ));
        }
        let name = item
            .source_service
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                AppError::invalid(
                    "missing_source_service",
                    "A read_replica integration needs source_service (the primary's name)",
                )
            })?;
        source = Some(name);
    }
    Ok(source)
}

/// The primary a new replica may follow, checked inside the creating transaction so the
/// replica limit holds under concurrent creates.
fn check_replica_source(tx: &Tx<'_>, project: &str, name: &str) -> Result<ServiceRow, AppError> {
    let source = tx.service_by_name(project, name)?.ok_or_else(|| {
        AppError::not_found(
            "source_service_not_found",
            format!("Source service '{name}' does not exist in project '{project}'"),
        )
    })?;
    if source.service_type != "valkey" {
        return Err(AppError::invalid(
            "source_type_mismatch",
            format!("Source service '{name}' is not a valkey service"),
        ));
    }
    if !source.powered {
        return Err(AppError::conflict(
            "source_powered_off",
            format!("Service '{name}' is powered off; power it on before creating its replicas"),
        ));
    }
    let links = tx.integrations_of_service(&source.id)?;
    if links.iter().any(|l| l.dest_service_id == source.id) || source.role == Role::Replica {
        return Err(AppError::invalid(
            "replica_of_replica",
            format!(
                "Service '{name}' is itself a read replica; create the replica from its primary"
            ),
        ));
    }
    let replicas: Vec<&str> = links
        .iter()
        .filter(|l| l.source_service_id == source.id)
        .map(|l| l.dest_service.as_str())
        .collect();
    if replicas.len() >= MAX_READ_REPLICAS {
        return Err(AppError::conflict(
            "replica_limit_reached",
            format!(
                "Service '{name}' already has the maximum of {MAX_READ_REPLICAS} read replicas ({})",
                replicas.join(", ")
            ),
        ));
    }
    Ok(source)
}

pub(crate) fn detail_of(tx: &Tx<'_>, row: ServiceRow) -> Result<ServiceDetail, AppError> {
    let integrations = tx.integrations_of_service(&row.id)?;
    let mut replicas = Vec::new();
    for link in integrations
        .iter()
        .filter(|l| l.source_service_id == row.id)
    {
        if let Some(r) = tx.service_by_id(&link.dest_service_id)? {
            replicas.push(r);
        }
    }
    Ok(ServiceDetail {
        row,
        integrations,
        replicas,
    })
}
