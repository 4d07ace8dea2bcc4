//! Changing a service after it exists (`PUT /v1/project/P/service/S`, what `avn service
//! update` sends) and resetting its service user's password.
//!
//! An update is a change of the *desired* spec only: it is checked and written in one store
//! transaction by compare-and-set on the service's generation (so concurrent updates of one
//! service are serialised and none is lost), then the reconciler applies it — `maxmemory`
//! and `maxmemory-policy` live on the running node, a power change by stopping or starting
//! the node. The request never waits on a valkey-server, and a Keyhaven crash right after
//! the answer converges on the accepted spec at the next start (it is in the store).
//!
//! Figures a plan change needs (the data in use) are the reconciler's last observation,
//! never a question to the node.
//!
//! A credentials reset is the exception: its promise is that the new password works when
//! the answer arrives, so it sets it on the node first (bounded, through the runtime) and
//! records it only once the node took it; a node that does not answer gets 503 with
//! nothing changed.

use crate::identity::visible_project;
use crate::secret::new_password;
use crate::service::{ServiceDetail, detail_of};
use crate::spec::node_spec;
use crate::{App, AppError, Caller};
use keyhaven_core::time::now_micros;
use keyhaven_core::{Plan, Role, UserConfig};
use keyhaven_store::{LinkStatus, ServiceChange, ServiceRow};
use serde_json::Value;
use std::sync::Arc;
use tracing::info;

/// What a client asks to change; `None` means "leave as it is". Keys Keyhaven cannot honour
/// are collected by the caller (the HTTP layer knows the body) into `unsupported`.
#[derive(Debug, Clone, Default)]
pub struct ServiceUpdate {
    pub plan: Option<String>,
    pub user_config: Option<Value>,
    pub powered: Option<bool>,
    pub termination_protection: Option<bool>,
    pub cloud: Option<String>,
    /// Keys of the body that were set (not null) and that Keyhaven cannot honour.
    pub unsupported: Vec<String>,
}

/// Keys of Aiven's update body that Keyhaven honours; any other key that is set (not null)
/// is refused by name, so nobody believes a setting took effect when it did not.
pub const UPDATE_KEYS: &[&str] = &[
    "plan",
    "user_config",
    "powered",
    "termination_protection",
    "cloud",
];

impl ServiceUpdate {
    /// Reads an update body. Absent and null keys change nothing; a key of the wrong
    /// type is refused naming it.
    pub fn from_body(body: &serde_json::Map<String, Value>) -> Result<ServiceUpdate, AppError> {
        let wrong = |key: &str, what: &str| {
            AppError::invalid(
                "invalid_field",
                format!("'{key}' must be {what} (or null to leave it unchanged)"),
            )
        };
        let get = |key: &str| body.get(key).filter(|v| !v.is_null());
        let string = |key: &str| match get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(wrong(key, "a string")),
        };
        let boolean = |key: &str| match get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(wrong(key, "true or false")),
        };
        let mut unsupported: Vec<String> = body
            .iter()
            .filter(|(k, v)| !v.is_null() && !UPDATE_KEYS.contains(&k.as_str()))
            .map(|(k, _)| k.clone())
            .collect();
        unsupported.sort();
        Ok(ServiceUpdate {
            plan: string("plan")?,
            user_config: get("user_config").cloned(),
            powered: boolean("powered")?,
            termination_protection: boolean("termination_protection")?,
            cloud: string("cloud")?,
            unsupported,
        })
    }
}

/// Mebibytes with one decimal, for messages.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl App {
    pub async fn service_update(
        &self,
        caller: &Caller,
        project: &str,
        name: &str,
        req: &ServiceUpdate,
    ) -> Result<ServiceDetail, AppError> {
        if let Some(key) = req.unsupported.first() {
            return Err(AppError::invalid(
                "unsupported_update_key",
                format!(
                    "Keyhaven cannot change '{}' of a service; it can change plan, user_config, powered and termination_protection",
                    key.chars().take(64).collect::<String>()
                ),
            ));
        }
        let plan = match &req.plan {
            Some(p) => Some(Plan::find(p).ok_or_else(|| {
                AppError::invalid(
                    "unknown_plan",
                    format!(
                        "Unknown plan '{}' for service type valkey; valid plans: {}",
                        p.chars().take(64).collect::<String>(),
                        Plan::all_names()
                    ),
                )
            })?),
            None => None,
        };
        // Validated exactly as at creation; an empty object (what avn sends without -c)
        // changes nothing.
        let user_config = match &req.user_config {
            Some(v) => Some(
                UserConfig::from_json(Some(v))
                    .map_err(|e| AppError::invalid("invalid_user_config", e.to_string()))?,
            ),
            None => None,
        }
        .filter(|c| *c != UserConfig::default());

        let now = now_micros();
        let detail = self.store.write(|tx| {
            visible_project(tx, caller, project)?;
            let row = tx
                .service_by_name(project, name)?
                .ok_or_else(|| AppError::service_not_found(project, name))?;
            if let Some(cloud) = &req.cloud
                && *cloud != row.cloud
            {
                return Err(AppError::invalid(
                    "cloud_change_unsupported",
                    format!(
                        "Keyhaven cannot move a service to another cloud ('cloud': '{}'); service '{name}' stays in '{}'",
                        cloud.chars().take(64).collect::<String>(),
                        row.cloud
                    ),
                ));
            }
            let links = tx.integrations_of_service(&row.id)?;
            if links.iter().any(|l| l.status == LinkStatus::Promoting) {
                return Err(AppError::conflict(
                    "promotion_in_progress",
                    format!("Service '{name}' is being promoted; change it once that is done"),
                ));
            }
            let replicas: Vec<ServiceRow> = links
                .iter()
                .filter(|l| l.source_service_id == row.id)
                .filter_map(|l| tx.service_by_id(&l.dest_service_id).transpose())
                .collect::<Result<_, _>>()?;
            let primary = match links.iter().find(|l| l.dest_service_id == row.id) {
                Some(l) => tx.service_by_id(&l.source_service_id)?,
                None => None,
            };

            let mut change = ServiceChange {
                plan: row.plan.clone(),
                user_config: row.user_config.clone(),
                powered: row.powered,
                termination_protection: row.termination_protection,
            };
            if let Some(p) = plan
                && p.name != row.plan
            {
                check_plan(&row, p, primary.as_ref(), &replicas)?;
                change.plan = p.name.to_string();
            }
            if let Some(c) = &user_config {
                // Keys the update names replace the stored ones; the others stay.
                let stored = UserConfig::from_json(Some(&row.user_config)).unwrap_or_default();
                change.user_config = stored.merged(c).to_json();
            }
            if let Some(t) = req.termination_protection {
                change.termination_protection = t;
            }
            if let Some(powered) = req.powered
                && powered != row.powered
            {
                if !powered {
                    check_power_off(&row, &replicas, change.termination_protection)?;
                }
                change.powered = powered;
            }
            let unchanged = change.plan == row.plan
                && change.user_config == row.user_config
                && change.powered == row.powered
                && change.termination_protection == row.termination_protection;
            if unchanged {
                return detail_of(tx, row);
            }
            let generation = tx
                .service_update(&row.id, row.generation, &change, now)?
                .ok_or_else(|| {
                    // Unreachable while writes are serialised; kept as the rule.
                    AppError::conflict(
                        "concurrent_update",
                        format!("Service '{name}' was changed meanwhile; read it and retry"),
                    )
                })?;
            info!(project, service = name, generation, plan = %change.plan, powered = change.powered,
                  termination_protection = change.termination_protection,
                  user_config = %change.user_config, "service updated");
            let row = tx
                .service_by_id(&row.id)?
                .ok_or_else(|| AppError::Internal("updated service vanished".into()))?;
            detail_of(tx, row)
        }).await?;
        crate::failpoint::hit("service_update.committed");
        self.wake.notify_one();
        Ok(detail)
    }

    /// `PUT .../service/S/credentials/reset`: a new password for the service user, set on
    /// the running node before it is recorded, so it works when the answer arrives. The
    /// node's lock (shared with the reconciler) keeps a reconciler pass that read the old
    /// password from putting it back meanwhile.
    pub async fn service_credentials_reset(
        self: &Arc<Self>,
        caller: &Caller,
        project: &str,
        name: &str,
    ) -> Result<ServiceDetail, AppError> {
        let read = async || {
            self.store
                .read(|tx| {
                    visible_project(tx, caller, project)?;
                    tx.service_by_name(project, name)?
                        .ok_or_else(|| AppError::service_not_found(project, name))
                })
                .await
        };
        let id = read().await?.id;
        let guard = self.node_guard(&id);
        let _held = guard.lock().await;
        let row = read().await?;
        if row.id != id {
            return Err(AppError::service_not_found(project, name));
        }
        if !row.powered {
            return Err(AppError::conflict(
                "service_powered_off",
                format!("Service '{name}' is powered off; power it on to reset its credentials"),
            ));
        }
        let source = self
            .store
            .read(|tx| {
                let link = tx
                    .integrations_of_service(&row.id)?
                    .into_iter()
                    .find(|l| l.dest_service_id == row.id);
                Ok::<_, AppError>(match link {
                    Some(l) => tx.service_by_id(&l.source_service_id)?,
                    None => None,
                })
            })
            .await?;
        let password = new_password(32);
        let new_row = ServiceRow {
            service_password: password.clone(),
            ..row.clone()
        };
        let source_host = source
            .as_ref()
            .map(|s| self.node_host(s))
            .unwrap_or_default();
        let spec = node_spec(&new_row, source.as_ref(), &source_host);
        let started = std::time::Instant::now();
        self.runtime
            .set_service_password(&spec)
            .await
            .map_err(|e| AppError::Unavailable {
                code: "node_unavailable",
                message: format!(
                    "The valkey-server of service '{name}' did not take the new password ({e}); nothing was changed"
                ),
            })?;
        let now = now_micros();
        let detail = self
            .store
            .write(|tx| {
                tx.service_set_password(&row.id, &password, now)?;
                let row = tx
                    .service_by_id(&row.id)?
                    .ok_or_else(|| AppError::Internal("reset service vanished".into()))?;
                detail_of(tx, row)
            })
            .await?;
        info!(
            project,
            service = name,
            role = row.role.as_str(),
            micros = started.elapsed().as_micros() as u64,
            "service user's password reset"
        );
        Ok(detail)
    }
}

/// The rules of a plan change: the data in use must fit the new plan's `maxmemory`, a
/// replica keeps a Startup plan at least as big as its primary's, and a primary cannot
/// grow past what its replicas can hold.
fn check_plan(
    row: &ServiceRow,
    plan: Plan,
    primary: Option<&ServiceRow>,
    replicas: &[ServiceRow],
) -> Result<(), AppError> {
    if let Some(used) = row.health.used_memory.filter(|u| *u > 0) {
        let used = used as u64;
        if used > plan.maxmemory_bytes() {
            return Err(AppError::conflict(
                "plan_too_small",
                format!(
                    "Service '{}' holds {} ({used} bytes) of data; plan {} holds at most {} ({} bytes, {} % of its {} MiB)",
                    row.name,
                    mib(used),
                    plan.name,
                    mib(plan.maxmemory_bytes()),
                    plan.maxmemory_bytes(),
                    keyhaven_core::plan::MAXMEMORY_PERCENT,
                    plan.node_memory_mb
                ),
            ));
        }
    }
    if row.role == Role::Replica {
        if !plan.allows_read_replica() {
            return Err(AppError::invalid(
                "replica_plan_not_allowed",
                format!(
                    "A read replica's plan must be a Startup plan; '{}' is not one (valid: {})",
                    plan.name,
                    Plan::replica_plan_names()
                ),
            ));
        }
        if let Some(primary) = primary
            && let Some(pp) = Plan::find(&primary.plan)
            && plan.node_memory_mb < pp.node_memory_mb
        {
            return Err(AppError::conflict(
                "replica_plan_too_small",
                format!(
                    "Replica '{}' must hold its primary's data: plan {} ({} MiB) is smaller than the plan {} ({} MiB) of its primary '{}'",
                    row.name,
                    plan.name,
                    plan.node_memory_mb,
                    pp.name,
                    pp.node_memory_mb,
                    primary.name
                ),
            ));
        }
    }
    let too_small: Vec<String> = replicas
        .iter()
        .filter_map(|r| {
            let rp = Plan::find(&r.plan)?;
            (rp.node_memory_mb < plan.node_memory_mb).then(|| format!("{} ({})", r.name, rp.name))
        })
        .collect();
    if !too_small.is_empty() {
        return Err(AppError::conflict(
            "replica_plan_too_small",
            format!(
                "Service '{}' cannot grow to plan {} ({} MiB): its read replicas could not hold its data: {}; change their plans first",
                row.name,
                plan.name,
                plan.node_memory_mb,
                too_small.join(", ")
            ),
        ));
    }
    Ok(())
}

/// `powered: false`: refused for a protected service and for a primary with replicas.
fn check_power_off(
    row: &ServiceRow,
    replicas: &[ServiceRow],
    protected: bool,
) -> Result<(), AppError> {
    if protected {
        return Err(AppError::forbidden(
            "termination_protected",
            "Service is protected against termination and shutdown. Remove termination protection first.",
        ));
    }
    if !replicas.is_empty() {
        return Err(AppError::conflict(
            "service_has_replicas",
            format!(
                "Service '{}' has read replicas ({}); it cannot be powered off while they follow it",
                row.name,
                replicas
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyhaven_core::{NodeHealth, ServiceState};
    use serde_json::json;

    fn body(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn row(name: &str, plan: &str, role: Role, used: Option<i64>) -> ServiceRow {
        ServiceRow {
            id: name.into(),
            project: "p".into(),
            name: name.into(),
            service_type: "valkey".into(),
            plan: plan.into(),
            cloud: "local".into(),
            host: "127.0.0.1".into(),
            user_config: json!({}),
            termination_protection: false,
            port: 16000,
            service_password: String::new(),
            admin_password: String::new(),
            repl_password: String::new(),
            role,
            generation: 1,
            state: ServiceState::Running,
            health: NodeHealth {
                used_memory: used,
                ..NodeHealth::default()
            },
            lost_bytes_estimate: None,
            create_time: 0,
            update_time: 0,
            powered: true,
        }
    }

    fn code(r: Result<(), AppError>) -> &'static str {
        r.err().map(|e| e.code()).unwrap_or("ok")
    }

    #[test]
    fn nulls_change_nothing_and_unhonoured_keys_are_named() {
        let u = ServiceUpdate::from_body(&body(json!({
            "plan": null, "powered": null, "disk_space_mb": null, "user_config": {}
        })))
        .unwrap();
        assert_eq!((u.plan, u.powered), (None, None));
        assert!(u.unsupported.is_empty());
        let u = ServiceUpdate::from_body(&body(json!({"karapace": true, "cmk_id": "k"}))).unwrap();
        assert_eq!(u.unsupported, ["cmk_id", "karapace"]);
        for bad in [
            json!({"powered": "yes"}),
            json!({"plan": 4}),
            json!({"cloud": []}),
        ] {
            let key = bad.as_object().unwrap().keys().next().unwrap().clone();
            let e = ServiceUpdate::from_body(&body(bad)).unwrap_err();
            assert_eq!(e.code(), "invalid_field");
            assert!(e.to_string().contains(&key), "{e}");
        }
    }

    #[test]
    fn plan_rules() {
        let gib = 1024 * 1024 * 1024;
        let find = |n| Plan::find(n).unwrap();
        let primary = row("prim", "startup-8", Role::Primary, Some(gib));
        // The data in use must fit 70 % of the new plan.
        assert_eq!(
            code(check_plan(&primary, find("hobbyist"), None, &[])),
            "plan_too_small"
        );
        assert_eq!(
            code(check_plan(&primary, find("startup-4"), None, &[])),
            "ok"
        );
        // Never observed: nothing to hold against the plan.
        let fresh = row("new", "startup-8", Role::Primary, None);
        assert_eq!(code(check_plan(&fresh, find("hobbyist"), None, &[])), "ok");
        // A replica keeps a Startup plan at least as big as its primary's.
        let replica = row("rep", "startup-8", Role::Replica, None);
        let to = |plan| code(check_plan(&replica, find(plan), Some(&primary), &[]));
        assert_eq!(to("startup-4"), "replica_plan_too_small");
        assert_eq!(to("hobbyist"), "replica_plan_not_allowed");
        assert_eq!(to("startup-14"), "ok");
        // A primary cannot outgrow its replicas.
        let grow = |plan| {
            code(check_plan(
                &primary,
                find(plan),
                None,
                std::slice::from_ref(&replica),
            ))
        };
        assert_eq!(grow("startup-14"), "replica_plan_too_small");
        assert_eq!(grow("startup-4"), "ok");
    }
}
