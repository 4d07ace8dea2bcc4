//! Clouds: where nodes run. Each Keyhaven instance serves one cloud (its host): it
//! registers the cloud in the store at start, keeps a heartbeat on it, and is the only
//! instance that starts, stops, adopts and observes that cloud's nodes. Every instance
//! keeps a copy of the registered clouds (refreshed with its own heartbeat), so that it can
//! say where any node is reached and whether its cloud is alive.
//!
//! A cloud whose heartbeat is older than [`LOST_AFTER`] has lost its instance: nothing
//! vouches for its nodes, so a promotion treats a primary there that refuses or does not
//! answer connections as down (DESIGN → Promotion 3).

use crate::{App, AppError};
use keyhaven_core::time::now_micros;
use keyhaven_store::CloudRow;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{error, info, warn};

/// How often an instance renews its cloud's heartbeat.
pub const HEARTBEAT_PERIOD: Duration = Duration::from_secs(2);
/// A cloud whose heartbeat is older than this has lost its instance.
pub const LOST_AFTER: Duration = Duration::from_secs(10);
/// How often an instance on a shared store looks for changes other instances made to its
/// cloud's nodes.
const CHANGE_POLL: Duration = Duration::from_millis(100);
/// How often an instance on a shared store re-reads the registered clouds (hosts joining,
/// heartbeats of the others).
const CLOUDS_REFRESH: Duration = Duration::from_millis(500);

/// What an instance knows of a cloud right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudView {
    pub row: CloudRow,
    /// Seconds since its last heartbeat, when that is more than [`LOST_AFTER`].
    pub lost_for_s: Option<i64>,
}

impl CloudView {
    pub fn is_lost(&self) -> bool {
        self.lost_for_s.is_some()
    }
}

fn view(row: CloudRow, now: i64) -> CloudView {
    let age = now.saturating_sub(row.heartbeat_at);
    CloudView {
        lost_for_s: (age > LOST_AFTER.as_micros() as i64).then_some(age / 1_000_000),
        row,
    }
}

impl App {
    /// The cloud this instance serves.
    pub fn my_cloud(&self) -> &str {
        &self.config.cloud.name
    }

    /// Whether the nodes of `cloud` are this instance's to run.
    pub fn is_mine(&self, cloud: &str) -> bool {
        cloud == self.my_cloud()
    }

    /// Every registered cloud, as of the last heartbeat.
    pub fn clouds(&self) -> Vec<CloudView> {
        let now = now_micros();
        self.clouds
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .map(|row| view(row, now))
            .collect()
    }

    /// Every registered cloud, read from the store now (and this instance's copy
    /// refreshed with it).
    pub async fn clouds_now(&self) -> Result<Vec<CloudView>, AppError> {
        let rows = self.store.read(|tx| tx.clouds()).await?;
        *self.clouds.write().unwrap_or_else(|p| p.into_inner()) = rows;
        Ok(self.clouds())
    }

    pub fn cloud(&self, name: &str) -> Option<CloudView> {
        self.clouds().into_iter().find(|c| c.row.name == name)
    }

    /// Where the node of `service` is reached: the host its cloud's instance registered
    /// (recorded on the service), else what this instance knows of its cloud.
    pub fn node_host(&self, service: &keyhaven_store::ServiceRow) -> String {
        if !service.host.is_empty() {
            return service.host.clone();
        }
        self.cloud_host(&service.cloud)
    }

    /// Where the nodes of `cloud` are reached: its instance's advertised host.
    pub fn cloud_host(&self, cloud: &str) -> String {
        if self.is_mine(cloud) {
            return self.config.advertise_host.clone();
        }
        self.cloud(cloud)
            .map(|c| c.row.host)
            .unwrap_or_else(|| self.config.advertise_host.clone())
    }

    /// Registers this instance's cloud. Refused while another instance that is alive
    /// serves it: two instances running one cloud's nodes would fight over them.
    pub async fn register_cloud(&self) -> Result<(), AppError> {
        let now = now_micros();
        let c = &self.config.cloud;
        let row = CloudRow {
            name: c.name.clone(),
            provider: c.provider.clone(),
            region: c.region.clone(),
            description: c.description.clone(),
            host: self.config.advertise_host.clone(),
            api_url: self.config.api_url.clone(),
            port_min: *self.config.valkey_ports.start(),
            port_max: *self.config.valkey_ports.end(),
            instance_id: self.config.instance_id.clone(),
            started_at: now,
            heartbeat_at: now,
        };
        let rows = self
            .store
            .write(|tx| {
                // The same data directory on the same host is the same instance started
                // again: its lock proves the old process is gone.
                let same_home = |id: &str| id.rsplit_once('/').map(|(home, _)| home.to_string());
                if self.store.is_shared()
                    && let Some(old) = tx.cloud_get(&row.name)?
                    && same_home(&old.instance_id) != same_home(&row.instance_id)
                    && !view(old.clone(), now).is_lost()
                {
                    return Err(AppError::conflict(
                        "cloud_served",
                        format!(
                            "Cloud '{}' is served by a running Keyhaven at {} (its last heartbeat {} ms ago); one instance per cloud",
                            row.name,
                            old.api_url,
                            now.saturating_sub(old.heartbeat_at) / 1000
                        ),
                    ));
                }
                // Back from lost: nothing vouched for its nodes meanwhile, so they show
                // REBUILDING until this start has observed them.
                if tx
                    .cloud_get(&row.name)?
                    .is_some_and(|old| view(old, now).is_lost())
                {
                    tx.services_unobserved(&row.name, now)?;
                }
                tx.cloud_register(&row)?;
                tx.services_set_host(&row.name, &row.host)?;
                // The data directory's lock says every earlier start of this instance is
                // gone: the promotions it claimed are this start's to roll forward.
                if let Some((home, _)) = row.instance_id.rsplit_once('/') {
                    tx.integration_release_home(&format!("{home}/"))?;
                }
                Ok(tx.clouds()?)
            })
            .await?;
        *self.clouds.write().unwrap_or_else(|p| p.into_inner()) = rows;
        info!(cloud = %row.name, host = %row.host, api_url = %row.api_url, "cloud registered");
        Ok(())
    }

    /// Renews this instance's heartbeat and refreshes its copy of every cloud.
    async fn cloud_heartbeat(&self) -> Result<bool, AppError> {
        let now = now_micros();
        let (mine, rows) = self
            .store
            .write(|tx| {
                let mine =
                    tx.cloud_heartbeat(&self.config.cloud.name, &self.config.instance_id, now)?;
                Ok::<_, AppError>((mine, tx.clouds()?))
            })
            .await?;
        *self.clouds.write().unwrap_or_else(|p| p.into_inner()) = rows;
        Ok(mine)
    }
}

/// Keeps this instance's cloud alive in the store and, on a shared store, wakes the
/// reconciler when another instance changed this cloud's nodes. Runs until `shutdown`.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut heartbeat = tokio::time::interval(HEARTBEAT_PERIOD);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut poll = tokio::time::interval(CHANGE_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refresh = tokio::time::interval(CLOUDS_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen: Option<i64> = None;
    let mut failing = false;
    loop {
        tokio::select! {
            _ = heartbeat.tick() => match app.cloud_heartbeat().await {
                Ok(true) => {
                    if failing {
                        info!(cloud = app.my_cloud(), "cloud heartbeat renewed again");
                    }
                    failing = false;
                }
                Ok(false) => {
                    error!(cloud = app.my_cloud(),
                           "another Keyhaven took this cloud over; this instance no longer owns its nodes' registration");
                }
                Err(e) => {
                    if !failing {
                        warn!(cloud = app.my_cloud(), error = %e, "cannot renew the cloud's heartbeat");
                    }
                    failing = true;
                }
            },
            _ = poll.tick(), if app.store.is_shared() => {
                let cloud = app.my_cloud().to_string();
                if let Ok(n) = app.store.read(|tx| tx.cloud_change_count(&cloud)).await {
                    if seen.is_some_and(|s| s != n) {
                        app.wake.notify_one();
                    }
                    seen = Some(n);
                }
            }
            _ = refresh.tick(), if app.store.is_shared() => {
                if let Ok(rows) = app.store.read(|tx| tx.clouds()).await {
                    *app.clouds.write().unwrap_or_else(|p| p.into_inner()) = rows;
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Where an operation that needs a node's runtime must run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Here: the node is in this instance's cloud (or the target does not exist, and the
    /// operation answers that itself).
    Here,
    /// At the instance of another cloud, reached at its API URL.
    Elsewhere { cloud: String, api_url: String },
}

impl App {
    fn owner_of(&self, cloud: Option<String>) -> Result<Owner, AppError> {
        let Some(cloud) = cloud.filter(|c| !self.is_mine(c)) else {
            return Ok(Owner::Here);
        };
        match self.cloud(&cloud) {
            Some(c) if !c.is_lost() => Ok(Owner::Elsewhere {
                cloud,
                api_url: c.row.api_url,
            }),
            Some(c) => Err(AppError::Unavailable {
                code: "cloud_unavailable",
                message: format!(
                    "Cloud '{cloud}' is lost: its Keyhaven instance has sent no heartbeat for {} s, and only it can change its nodes; nothing was changed",
                    c.lost_for_s.unwrap_or_default()
                ),
            }),
            None => Err(AppError::Unavailable {
                code: "cloud_unavailable",
                message: format!(
                    "Cloud '{cloud}' has no registered Keyhaven instance; nothing was changed"
                ),
            }),
        }
    }

    /// Which instance promotes the replica of integration `id`: the one of the replica's
    /// cloud (the promotion stages the replica's role through its runtime).
    pub async fn integration_owner(
        &self,
        caller: &crate::Caller,
        project: &str,
        id: &str,
    ) -> Result<Owner, AppError> {
        let cloud = self
            .store
            .read(|tx| {
                crate::identity::visible_project(tx, caller, project)?;
                let Some(link) = tx.integration_get(project, id)? else {
                    return Ok::<_, AppError>(None);
                };
                Ok(tx.service_by_id(&link.dest_service_id)?.map(|s| s.cloud))
            })
            .await?;
        self.owner_of(cloud)
    }

    /// Which instance runs the node of service `name` (for changes made on the node
    /// itself, such as a credentials reset).
    pub async fn service_owner(
        &self,
        caller: &crate::Caller,
        project: &str,
        name: &str,
    ) -> Result<Owner, AppError> {
        let cloud = self
            .store
            .read(|tx| {
                crate::identity::visible_project(tx, caller, project)?;
                Ok::<_, AppError>(tx.service_by_name(project, name)?.map(|s| s.cloud))
            })
            .await?;
        self.owner_of(cloud)
    }
}
