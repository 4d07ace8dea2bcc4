//! Services: the desired state of each valkey-server (spec, credentials, role and its
//! generation) beside its last observed state.

use crate::sql::{Row, p};
use crate::{Result, StoreError, Tx};
use keyhaven_core::{NodeHealth, Role, ServiceState};
use std::collections::BTreeSet;

#[derive(Debug, Clone)]
pub struct ServiceRow {
    /// Stable id; the node's directory is keyed by it, so a name is free again at once.
    pub id: String,
    pub project: String,
    pub name: String,
    pub service_type: String,
    pub plan: String,
    pub cloud: String,
    pub user_config: serde_json::Value,
    pub termination_protection: bool,
    pub port: u16,
    /// Password of the service user (`default`) that clients use.
    pub service_password: String,
    /// Password of Keyhaven's own admin user on the node.
    pub admin_password: String,
    /// Password of the replication user that this node's replicas authenticate with.
    pub repl_password: String,
    /// Desired role and its generation: a role is only ever replaced by a newer one.
    pub role: Role,
    pub generation: i64,
    /// Last observed state and health.
    pub state: ServiceState,
    pub health: NodeHealth,
    /// Set when a replica was promoted while its primary was down: the bytes it may lack.
    pub lost_bytes_estimate: Option<i64>,
    pub create_time: i64,
    pub update_time: i64,
    /// Desired power: false means the node is stopped with its data and port kept.
    pub powered: bool,
    /// Where the node is reached: its cloud's host, as that cloud's instance registered it.
    pub host: String,
}

/// The desired spec an update writes (`PUT .../service/S`): the whole of it, the unchanged
/// parts copied from the row the update read.
#[derive(Debug, Clone)]
pub struct ServiceChange {
    pub plan: String,
    pub user_config: serde_json::Value,
    pub powered: bool,
    pub termination_protection: bool,
}

/// What a create inserts; the rest is derived.
#[derive(Debug, Clone)]
pub struct NewService {
    pub id: String,
    pub project: String,
    pub name: String,
    pub service_type: String,
    pub plan: String,
    pub cloud: String,
    pub user_config: serde_json::Value,
    pub termination_protection: bool,
    pub port: u16,
    pub service_password: String,
    pub admin_password: String,
    pub repl_password: String,
    pub role: Role,
    /// The host of its cloud.
    pub host: String,
}

/// A deleted service whose process and port are not released yet.
#[derive(Debug, Clone)]
pub struct RetiredNode {
    pub service_id: String,
    pub port: u16,
    /// The cloud whose instance releases it.
    pub cloud: String,
}

const COLS: &str = "id, project, name, service_type, plan, cloud, user_config, \
    termination_protection, port, service_password, admin_password, repl_password, role, \
    generation, state, health, lost_bytes_estimate, create_time, update_time, powered, host";

fn from_row(r: Row) -> Result<ServiceRow> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("bad {what}"));
    Ok(ServiceRow {
        id: r.text(0)?,
        project: r.text(1)?,
        name: r.text(2)?,
        service_type: r.text(3)?,
        plan: r.text(4)?,
        cloud: r.text(5)?,
        user_config: serde_json::from_str(&r.text(6)?).map_err(|_| corrupt("user_config"))?,
        termination_protection: r.bool(7)?,
        port: r.port(8)?,
        service_password: r.text(9)?,
        admin_password: r.text(10)?,
        repl_password: r.text(11)?,
        role: Role::parse(&r.text(12)?).ok_or_else(|| corrupt("role"))?,
        generation: r.int(13)?,
        state: ServiceState::parse(&r.text(14)?).ok_or_else(|| corrupt("state"))?,
        health: serde_json::from_str(&r.text(15)?).map_err(|_| corrupt("health"))?,
        lost_bytes_estimate: r.opt_int(16)?,
        create_time: r.int(17)?,
        update_time: r.int(18)?,
        powered: r.bool(19)?,
        host: r.text(20)?,
    })
}

impl Tx<'_> {
    /// Inserts a new service: state REBUILDING, generation 1.
    pub fn service_insert(&self, s: &NewService, now: i64) -> Result<ServiceRow> {
        self.exec(
            &format!("INSERT INTO services ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 1, ?14, ?15, NULL, ?16, ?16, 1, ?17)"),
            p![
                s.id,
                s.project,
                s.name,
                s.service_type,
                s.plan,
                s.cloud,
                &s.user_config.to_string(),
                s.termination_protection,
                s.port,
                s.service_password,
                s.admin_password,
                s.repl_password,
                s.role.as_str(),
                ServiceState::Rebuilding.as_str(),
                &serde_json::to_string(&NodeHealth::default()).expect("health serializes"),
                now,
                &s.host,
            ],
        )?;
        self.node_changed(&s.id)?;
        self.service_by_id(&s.id)?
            .ok_or_else(|| StoreError::Corrupt("inserted service vanished".into()))
    }

    pub fn service_by_name(&self, project: &str, name: &str) -> Result<Option<ServiceRow>> {
        self.row(
            &format!("SELECT {COLS} FROM services WHERE project = ?1 AND name = ?2"),
            p![project, name],
        )?
        .map(from_row)
        .transpose()
    }

    pub fn service_by_id(&self, id: &str) -> Result<Option<ServiceRow>> {
        self.row(
            &format!("SELECT {COLS} FROM services WHERE id = ?1"),
            p![id],
        )?
        .map(from_row)
        .transpose()
    }

    /// Services of a project, by name.
    pub fn services_of_project(&self, project: &str) -> Result<Vec<ServiceRow>> {
        self.rows(
            &format!("SELECT {COLS} FROM services WHERE project = ?1 ORDER BY name"),
            p![project],
        )?
        .into_iter()
        .map(from_row)
        .collect()
    }

    /// Every service of every project (the reconciler's view).
    pub fn services_all(&self) -> Result<Vec<ServiceRow>> {
        self.rows(
            &format!("SELECT {COLS} FROM services ORDER BY create_time"),
            p![],
        )?
        .into_iter()
        .map(from_row)
        .collect()
    }

    pub fn service_count(&self, project: &str) -> Result<usize> {
        let n = self
            .row(
                "SELECT COUNT(*) FROM services WHERE project = ?1",
                p![project],
            )?
            .map_or(Ok(0), |r| r.int(0))?;
        Ok(n as usize)
    }

    /// Ports held by services and by retired nodes not yet released.
    pub fn ports_in_use(&self) -> Result<BTreeSet<u16>> {
        self.rows(
            "SELECT port FROM services UNION SELECT port FROM retired_nodes",
            p![],
        )?
        .into_iter()
        .map(|r| r.port(0))
        .collect()
    }

    /// Records what was observed of a service's node.
    /// Records what was observed of a service's node, unless the service's role changed
    /// (a newer generation) since the observation began: that one is stale.
    pub fn service_set_observed(
        &self,
        id: &str,
        generation: i64,
        state: ServiceState,
        health: &NodeHealth,
        now: i64,
    ) -> Result<()> {
        let health = serde_json::to_string(health).expect("health serializes");
        // update_time moves only when the state changes, as Aiven's does.
        self.exec(
            "UPDATE services SET update_time = CASE WHEN state = ?2 THEN update_time ELSE ?4 END,
                 state = ?2, health = ?3 WHERE id = ?1 AND generation = ?5",
            p![id, state.as_str(), health, now, generation],
        )?;
        Ok(())
    }

    /// Sets a new desired role; the generation goes up by one. Returns the new generation.
    pub fn service_set_role(&self, id: &str, role: Role, now: i64) -> Result<i64> {
        self.exec(
            "UPDATE services SET role = ?2, generation = generation + 1, update_time = ?3 WHERE id = ?1",
            p![id, role.as_str(), now],
        )?;
        self.node_changed(id)?;
        self.row("SELECT generation FROM services WHERE id = ?1", p![id])?
            .ok_or_else(|| StoreError::Corrupt(format!("service {id} vanished")))?
            .int(0)
    }

    /// Writes a changed spec by compare-and-set: only when the generation is still
    /// `expected` (the one the update read), and then one higher. Returns the new
    /// generation, or `None` when another change came first. A service powered on again
    /// shows REBUILDING until the reconciler sees it serve.
    pub fn service_update(
        &self,
        id: &str,
        expected: i64,
        change: &ServiceChange,
        now: i64,
    ) -> Result<Option<i64>> {
        let changed = self.exec(
            "UPDATE services SET plan = ?3, user_config = ?4, termination_protection = ?6,
                 state = CASE WHEN powered = 0 AND ?5 = 1 THEN ?7 ELSE state END,
                 powered = ?5, generation = generation + 1, update_time = ?8
             WHERE id = ?1 AND generation = ?2",
            p![
                id,
                expected,
                change.plan,
                &change.user_config.to_string(),
                change.powered,
                change.termination_protection,
                ServiceState::Rebuilding.as_str(),
                now
            ],
        )?;
        if changed == 1 {
            self.node_changed(id)?;
        }
        Ok((changed == 1).then_some(expected + 1))
    }

    /// A new password for the service user (a credentials reset).
    pub fn service_set_password(&self, id: &str, password: &str, now: i64) -> Result<()> {
        self.exec(
            "UPDATE services SET service_password = ?2, update_time = ?3 WHERE id = ?1",
            p![id, password, now],
        )?;
        self.node_changed(id)?;
        Ok(())
    }

    /// Moves a service to another port (its old one is held by another program).
    pub fn service_set_port(&self, id: &str, port: u16, now: i64) -> Result<()> {
        self.exec(
            "UPDATE services SET port = ?2, update_time = ?3 WHERE id = ?1",
            p![id, port, now],
        )?;
        self.node_changed(id)?;
        Ok(())
    }

    pub fn service_set_lost_bytes(&self, id: &str, lost: Option<i64>) -> Result<()> {
        self.exec(
            "UPDATE services SET lost_bytes_estimate = ?2 WHERE id = ?1",
            p![id, lost],
        )?;
        Ok(())
    }

    /// Deletes a service and records its node as retired, in the same transaction, so
    /// the reconciler releases the process and port later.
    pub fn service_delete(&self, id: &str, now: i64) -> Result<()> {
        self.exec(
            "INSERT INTO retired_nodes (service_id, port, retire_time, cloud)
             SELECT id, port, CAST(?2 AS BIGINT), cloud FROM services WHERE id = ?1
             ON CONFLICT (service_id) DO UPDATE SET port = excluded.port,
                 retire_time = excluded.retire_time, cloud = excluded.cloud",
            p![id, now],
        )?;
        self.node_changed(id)?;
        self.exec("DELETE FROM services WHERE id = ?1", p![id])?;
        Ok(())
    }

    /// Counts a change to the node of service `id` for the instance of its cloud, which
    /// may be another instance than the one writing it (`cloud_changes`).
    fn node_changed(&self, id: &str) -> Result<()> {
        self.exec(
            "INSERT INTO cloud_changes (cloud, seq) SELECT cloud, 1 FROM services WHERE id = ?1
             ON CONFLICT (cloud) DO UPDATE SET seq = cloud_changes.seq + 1",
            p![id],
        )?;
        Ok(())
    }

    /// Records where the nodes of `cloud` are reached now (its instance registered anew).
    pub fn services_set_host(&self, cloud: &str, host: &str) -> Result<u64> {
        self.exec(
            "UPDATE services SET host = ?2 WHERE cloud = ?1 AND host <> ?2",
            p![cloud, host],
        )
    }

    /// A new generation of the role of every replica that follows a primary of `cloud`
    /// through an active link, so its running node is pointed at the primary's new address.
    pub fn replicas_repoint(&self, cloud: &str, now: i64) -> Result<()> {
        let dests = self.rows(
            "SELECT i.dest_service_id FROM integrations i
             JOIN services s ON s.id = i.source_service_id
             WHERE s.cloud = ?1 AND i.status = 'active' ORDER BY i.dest_service_id",
            p![cloud],
        )?;
        for d in dests {
            self.service_set_role(&d.text(0)?, Role::Replica, now)?;
        }
        Ok(())
    }

    /// Marks the RUNNING services of `cloud` REBUILDING until they are observed again: their
    /// cloud was lost, and what was last recorded of them is no longer known to be true.
    pub fn services_unobserved(&self, cloud: &str, now: i64) -> Result<u64> {
        self.exec(
            "UPDATE services SET state = ?2, update_time = ?3 WHERE cloud = ?1 AND state = ?4",
            p![
                cloud,
                ServiceState::Rebuilding.as_str(),
                now,
                ServiceState::Running.as_str()
            ],
        )
    }

    pub fn retired_nodes(&self) -> Result<Vec<RetiredNode>> {
        self.rows(
            "SELECT service_id, port, cloud FROM retired_nodes ORDER BY retire_time",
            p![],
        )?
        .into_iter()
        .map(|r| {
            Ok(RetiredNode {
                service_id: r.text(0)?,
                port: r.port(1)?,
                cloud: r.text(2)?,
            })
        })
        .collect()
    }

    /// The node of a deleted service is gone and its port free again.
    pub fn retired_node_released(&self, service_id: &str) -> Result<()> {
        self.exec(
            "DELETE FROM retired_nodes WHERE service_id = ?1",
            p![service_id],
        )?;
        Ok(())
    }
}
