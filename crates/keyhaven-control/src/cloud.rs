//! Clouds: where nodes run. Each Keyhaven instance serves one cloud (its host): it
//! registers the cloud in the store at start, keeps a heartbeat on it, and is the only
//! instance that starts, stops, adopts and observes that cloud's nodes. Every instance
//! keeps a copy of the registered clouds (refreshed twice a second on a shared store), so
//! that it can say where any node is reached and whether its cloud is alive.
//!
//! A cloud whose heartbeat is older than [`LOST_AFTER`] has lost its instance: nothing
//! vouches for its nodes, so a promotion treats a primary there that refuses connections
//! as down (DESIGN → Promotion 3). Ages are measured on the database's clock (the
//! heartbeat is written with it, and read back as an age), never by comparing two hosts'
//! clocks. An instance whose cloud another instance has taken over is fenced: it stops
//! acting on the cloud's nodes at once and reports itself unready.

use crate::{App, AppError};
use keyhaven_core::time::now_micros;
use keyhaven_store::CloudRow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
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

/// This instance's copy of the registered clouds, and when it was read.
#[derive(Debug)]
pub(crate) struct CloudCache {
    read_at: Instant,
    rows: Vec<CloudRow>,
}

impl Default for CloudCache {
    fn default() -> Self {
        CloudCache {
            read_at: Instant::now(),
            rows: Vec::new(),
        }
    }
}

/// What an instance knows of a cloud right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudView {
    pub row: CloudRow,
    /// µs since its last heartbeat: its age when read, plus how long ago it was read.
    pub heartbeat_age_us: i64,
    /// Seconds since its last heartbeat, when that is more than [`LOST_AFTER`].
    pub lost_for_s: Option<i64>,
}

impl CloudView {
    pub fn is_lost(&self) -> bool {
        self.lost_for_s.is_some()
    }
}

fn view(row: CloudRow, since_read: Duration) -> CloudView {
    let age = row
        .heartbeat_age_us
        .saturating_add(since_read.as_micros() as i64);
    CloudView {
        heartbeat_age_us: age,
        lost_for_s: (age > LOST_AFTER.as_micros() as i64).then_some(age / 1_000_000),
        row,
    }
}

/// The part of an instance id that names its host and data directory (`HOST:DIR` of
/// `HOST:DIR/UUID`); `None` for an id without one, which never counts as the same home.
fn home(instance_id: &str) -> Option<&str> {
    instance_id.rsplit_once('/').map(|(home, _)| home)
}

impl App {
    /// The cloud this instance serves.
    pub fn my_cloud(&self) -> &str {
        &self.config.cloud.name
    }

    /// Whether the nodes of `cloud` are this instance's to run: its own cloud, unless
    /// another instance took the cloud over (then it runs nothing).
    pub fn is_mine(&self, cloud: &str) -> bool {
        cloud == self.my_cloud() && !self.is_fenced()
    }

    /// Another instance took this instance's cloud over: it acts on no node any more.
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::SeqCst)
    }

    /// Every registered cloud, as of this instance's copy. This instance's own cloud is
    /// never lost to itself while it is not fenced: it runs, whatever its last heartbeat
    /// write managed.
    pub fn clouds(&self) -> Vec<CloudView> {
        let cache = self.clouds.read().unwrap_or_else(|p| p.into_inner());
        let since = cache.read_at.elapsed();
        cache
            .rows
            .iter()
            .cloned()
            .map(|row| {
                let mine = row.name == self.my_cloud() && !self.is_fenced();
                let mut v = view(row, since);
                if mine {
                    v.lost_for_s = None;
                }
                v
            })
            .collect()
    }

    fn set_clouds(&self, rows: Vec<CloudRow>) {
        *self.clouds.write().unwrap_or_else(|p| p.into_inner()) = CloudCache {
            read_at: Instant::now(),
            rows,
        };
    }

    /// Every registered cloud, read from the store now (and this instance's copy
    /// refreshed with it).
    pub async fn clouds_now(&self) -> Result<Vec<CloudView>, AppError> {
        let rows = self.store.read(|tx| tx.clouds()).await?;
        self.set_clouds(rows);
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
        if cloud == self.my_cloud() {
            return self.config.advertise_host.clone();
        }
        self.cloud(cloud)
            .map(|c| c.row.host)
            .unwrap_or_else(|| self.config.advertise_host.clone())
    }

    /// Registers this instance's cloud. Refused while another instance that is alive
    /// serves it: two instances running one cloud's nodes would fight over them. The same
    /// host and data directory started again is the same instance (the directory's lock
    /// proves the old process gone): it takes over at once, with the promotions it had
    /// claimed.
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
            heartbeat_at: 0,
            heartbeat_age_us: 0,
        };
        let my_home = home(&row.instance_id);
        let rows = self
            .store
            .write(|tx| {
                let old = tx.cloud_get(&row.name)?;
                let same_home = old
                    .as_ref()
                    .is_some_and(|o| my_home.is_some() && home(&o.instance_id) == my_home);
                if self.store.is_shared()
                    && let Some(old) = &old
                    && !same_home
                    && !view(old.clone(), Duration::ZERO).is_lost()
                {
                    return Err(AppError::conflict(
                        "cloud_served",
                        format!(
                            "Cloud '{}' is served by a running Keyhaven at {} (its last heartbeat {} ms ago); one instance per cloud",
                            row.name,
                            old.api_url,
                            old.heartbeat_age_us / 1000
                        ),
                    ));
                }
                // Back from lost: nothing vouched for its nodes meanwhile, so they show
                // REBUILDING until this start has observed them.
                if old
                    .as_ref()
                    .is_some_and(|o| view(o.clone(), Duration::ZERO).is_lost())
                {
                    tx.services_unobserved(&row.name, now)?;
                }
                tx.cloud_register(&row)?;
                // A new address reaches the replicas that follow this cloud's primaries
                // through a new generation of their role.
                if tx.services_set_host(&row.name, &row.host)? > 0 {
                    tx.replicas_repoint(&row.name, now)?;
                }
                // The promotions an earlier start of this instance claimed are this
                // start's to roll forward, at once.
                if same_home && let Some(old) = &old {
                    tx.integration_release_owner(&old.instance_id)?;
                }
                Ok(tx.clouds()?)
            })
            .await?;
        self.set_clouds(rows);
        info!(cloud = %row.name, host = %row.host, api_url = %row.api_url, "cloud registered");
        Ok(())
    }
}

/// Keeps this instance's cloud alive in the store (a task of its own, so no slow read
/// delays it) and, on a shared store, refreshes the copy of every cloud and wakes the
/// reconciler when another instance changed this cloud's nodes. Runs until `shutdown`.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let heartbeats = tokio::spawn(keep_alive(app.clone(), shutdown.clone()));
    let mut poll = tokio::time::interval(CHANGE_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refresh = tokio::time::interval(CLOUDS_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen: Option<i64> = None;
    loop {
        tokio::select! {
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
                let _ = app.clouds_now().await;
            }
            _ = shutdown.changed() => break,
        }
    }
    let _ = heartbeats.await;
}

async fn keep_alive(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(HEARTBEAT_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let (name, id) = (app.my_cloud().to_string(), app.config.instance_id.clone());
        match app
            .store
            .write_row(|tx| tx.cloud_heartbeat(&name, &id))
            .await
        {
            Ok(true) => {
                if failing {
                    info!(cloud = %name, "cloud heartbeat renewed again");
                }
                failing = false;
                // This instance's copy with the heartbeat just written (on one host, the
                // only refresh there is).
                let _ = app.clouds_now().await;
            }
            Ok(false) => {
                if !app.fenced.swap(true, Ordering::SeqCst) {
                    error!(cloud = %name,
                           "another Keyhaven took this cloud over: this instance no longer acts on its nodes; stop it");
                }
            }
            Err(e) => {
                if !failing {
                    warn!(cloud = %name, error = %e, "cannot renew the cloud's heartbeat");
                }
                failing = true;
            }
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
