//! The reconciler: compares the desired state in the store with what runs, drives the
//! runtime to close the gap, and writes what it observed back to the store.
//!
//! It takes no input from requests: it is woken (after a change, or when a node exits)
//! and also runs on a timer, faster while some service is still being built. Each
//! activation is idempotent and returns a [`Report`] an operator can read in the logs.
//!
//! One activation:
//! 1. releases retired nodes (deleted services): stop the process, free the port;
//! 2. rolls forward promotions left `promoting` by a crash;
//! 3. ensures every service's node runs in its desired role (generations only go up), with
//!    its plan's `maxmemory` and its `maxmemory-policy` applied live; a powered-off
//!    service's node is stopped instead (its data and port kept) and never started;
//! 4. observes every powered node (primaries first, so a replica's offset is compared with
//!    an offset its primary had *before*) and records state and replication health; a
//!    powered-off one is recorded POWEROFF once its process is gone.

use crate::App;
use crate::spec::node_spec;
use keyhaven_core::time::now_micros;
use keyhaven_core::{NodeHealth, Role, ServiceState};
use keyhaven_runtime::Ensured;
use keyhaven_runtime::admin::Admin;
use keyhaven_runtime::info::Info;
use keyhaven_store::{IntegrationRow, LinkStatus, ServiceRow};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Period while everything is RUNNING.
pub const IDLE_PERIOD: Duration = Duration::from_secs(1);
/// Period while some service is being built or a node is starting: short, because a new
/// node answers ~35 ms after its start and a replica is current a few ms later.
const BUSY_PERIOD: Duration = Duration::from_millis(10);
/// Period once something has been busy for a second.
const SLOW_BUSY_PERIOD: Duration = Duration::from_millis(100);
const OBSERVE_TIMEOUT: Duration = Duration::from_secs(1);
/// First delay before a failed roll-forward of a promotion is retried; it doubles.
const ROLL_FORWARD_RETRY: Duration = Duration::from_secs(2);
const ROLL_FORWARD_MAX_DELAY: Duration = Duration::from_secs(60);
/// How often an unchanged observation is written again (to refresh `observed_at`, and the
/// offset and command count, which change on every observation).
const UNCHANGED_REWRITE: Duration = Duration::from_secs(5);
/// How long a node that has not answered since it was created (or powered on) is taken to
/// be starting: its "connection refused" is then no error to show. A node still silent
/// after this long shows why.
const FIRST_START_GRACE: Duration = Duration::from_secs(10);

/// What one activation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub services: usize,
    pub running: usize,
    /// Powered-off services whose node is stopped, as desired.
    pub powered_off: usize,
    pub started: usize,
    /// Deleted services whose node release was started.
    pub released: usize,
    pub rolled_forward: usize,
    pub errors: Vec<String>,
}

impl Report {
    fn busy(&self) -> bool {
        self.running + self.powered_off < self.services
            || self.started > 0
            || !self.errors.is_empty()
    }
}

/// Runs the reconciler until `shutdown` turns true.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut last: Option<Report> = None;
    let mut busy_since: Option<Instant> = None;
    loop {
        let started = Instant::now();
        let report = activate(&app).await;
        app.reconciler_activation(started.elapsed(), report.errors.len());
        app.reconciler_ran();
        if crate::failpoint::active("reconciler.stalls") {
            let _ = shutdown.wait_for(|stop| *stop).await;
            return;
        }
        if last.as_ref() != Some(&report) {
            info!(services = report.services, running = report.running,
                  powered_off = report.powered_off, started = report.started,
                  released = report.released, rolled_forward = report.rolled_forward,
                  errors = ?report.errors, "reconciler activation");
        }
        // Fast while something is starting; after a second of it (a long sync, a node in
        // backoff) a calmer pace, so a slow operation does not cost every node 100 INFOs
        // a second.
        let period = if report.busy() {
            let since = *busy_since.get_or_insert_with(Instant::now);
            if since.elapsed() < Duration::from_secs(1) {
                BUSY_PERIOD
            } else {
                SLOW_BUSY_PERIOD
            }
        } else {
            busy_since = None;
            IDLE_PERIOD
        };
        last = Some(report);
        tokio::select! {
            _ = app.wake.notified() => {}
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// One activation of the reconciler.
pub async fn activate(app: &Arc<App>) -> Report {
    let mut report = Report::default();
    let loaded = app
        .store
        .read(|tx| {
            Ok::<_, crate::AppError>((
                tx.retired_nodes()?,
                tx.services_all()?,
                tx.integrations_promoting()?,
            ))
        })
        .await;
    let (retired, all, promoting) = match loaded {
        Ok(v) => v,
        Err(e) => {
            report.errors.push(e.to_string());
            return report;
        }
    };
    // This instance runs the nodes of its own cloud only; the others' instances run theirs.
    let services: Vec<ServiceRow> = all
        .iter()
        .filter(|s| app.is_mine(&s.cloud))
        .cloned()
        .collect();
    let retired = retired.into_iter().filter(|n| app.is_mine(&n.cloud));
    let promoting: Vec<IntegrationRow> = promoting
        .into_iter()
        .filter(|l| {
            all.iter()
                .any(|s| s.id == l.dest_service_id && app.is_mine(&s.cloud))
        })
        .collect();

    // Stopping a node can take seconds (a clean shutdown writes its data): in the
    // background, one task per node, so new services are not held up behind it.
    for node in retired {
        if !app
            .removals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.service_id.clone())
        {
            continue;
        }
        report.released += 1;
        let app = app.clone();
        tokio::spawn(async move {
            let result = match app.runtime.remove(&node.service_id).await {
                Ok(()) => app
                    .store
                    .write(|tx| tx.retired_node_released(&node.service_id))
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = result {
                warn!(node = %node.service_id, error = %e, "could not release a deleted service's node; retried");
            }
            app.removals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&node.service_id);
        });
    }

    let sources = sources_by_replica(app, &services).await;
    report.services = services.len();
    let mut ensure_errors: HashMap<String, String> = HashMap::new();
    // Powered-off services whose node was found stopped or was stopped in this activation.
    let mut stopped: HashSet<String> = HashSet::new();
    for service in &services {
        // Held from the read to the ensure: a credentials reset never has its new password
        // overwritten by a spec read before it.
        let guard = app.node_guard(&service.id);
        let _held = guard.lock().await;
        // Read again right before acting: a promotion may have started since the load,
        // and a stale spec must never be applied to a node under promotion.
        let fresh = app
            .store
            .read(|tx| {
                let Some(row) = tx.service_by_id(&service.id)? else {
                    return Ok::<_, crate::AppError>(None);
                };
                let links = tx.integrations_of_service(&row.id)?;
                let link = links.into_iter().find(|l| l.dest_service_id == row.id);
                let source = match &link {
                    Some(l) => tx.service_by_id(&l.source_service_id)?,
                    None => None,
                };
                Ok(Some((row, link, source)))
            })
            .await;
        let (row, link, source) = match fresh {
            Ok(Some(v)) => v,
            Ok(None) => continue,
            Err(e) => {
                ensure_errors.insert(service.id.clone(), e.to_string());
                continue;
            }
        };
        // A node under promotion belongs to the promotion procedure.
        if link
            .as_ref()
            .is_some_and(|l| l.status == LinkStatus::Promoting || app.promotion_in_flight(&l.id))
        {
            continue;
        }
        if !row.powered {
            // Stopped, never started: its data and port stay for the power-on.
            match app.runtime.stop(&row.id).await {
                Ok(_) => {
                    stopped.insert(row.id.clone());
                }
                Err(e) => {
                    ensure_errors.insert(service.id.clone(), e.to_string());
                }
            }
            continue;
        }
        let source_host = source
            .as_ref()
            .map(|s| app.node_host(s))
            .unwrap_or_default();
        let spec = node_spec(&row, source.as_ref(), &source_host);
        match app.runtime.ensure(&spec).await {
            Ok(Ensured::Running { just_started, .. }) => {
                if just_started {
                    crate::failpoint::hit("reconciler.node_started");
                }
                report.started += just_started as usize
            }
            Ok(Ensured::BackingOff {
                port_in_use: true, ..
            }) => {
                let note = match app.service_move_port(&service.id).await {
                    Ok(port) => format!(
                        "port {} is held by another program; moved to port {port}",
                        service.port
                    ),
                    Err(e) => format!(
                        "port {} is held by another program and no other port is free: {e}",
                        service.port
                    ),
                };
                ensure_errors.insert(service.id.clone(), note);
            }
            Ok(Ensured::BackingOff { last_exit, .. }) => {
                ensure_errors.insert(
                    service.id.clone(),
                    format!("valkey-server exited ({last_exit}); restarting after a backoff"),
                );
            }
            Err(e) => {
                ensure_errors.insert(service.id.clone(), e.to_string());
            }
        }
    }
    report.errors.extend(ensure_errors.values().cloned());

    // After the nodes were ensured, so a primary restarted above can answer the
    // roll-forward of its replica's promotion.
    app.roll_forward_attempts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|id, _| promoting.iter().any(|l| &l.id == id));
    for link in promoting.iter().filter(|l| !app.promotion_in_flight(&l.id)) {
        // A roll-forward that failed is retried with a growing delay, never in a hot loop
        // (each attempt may pause the primary's writes).
        let attempt = {
            let mut attempts = app
                .roll_forward_attempts
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let (last, count) = attempts
                .get(&link.id)
                .copied()
                .unwrap_or((Instant::now(), 0));
            let delay = ROLL_FORWARD_RETRY
                .saturating_mul(1 << count.saturating_sub(1).min(5))
                .min(ROLL_FORWARD_MAX_DELAY);
            if count > 0 && last.elapsed() < delay {
                continue;
            }
            attempts.insert(link.id.clone(), (Instant::now(), count + 1));
            count + 1
        };
        let app = app.clone();
        let link = link.clone();
        // In the background: the roll-forward waits on nodes and must not hold up others.
        tokio::spawn(async move { app.promote_roll_forward(&link, attempt).await });
        report.rolled_forward += 1;
    }

    // Observe primaries first, then replicas against their primary's earlier offset; the
    // nodes of each group in parallel, so one hung node costs one timeout, not one each.
    let mut observed: HashMap<String, (NodeHealth, Option<Info>)> = HashMap::new();
    let mut primaries = tokio::task::JoinSet::new();
    // A replica here may follow a primary in another cloud: that one is observed too (to
    // compare offsets), and recorded by its own instance.
    let remote_primaries = sources
        .values()
        .filter_map(|l| all.iter().find(|s| s.id == l.source_service_id))
        .filter(|s| !app.is_mine(&s.cloud));
    for service in services
        .iter()
        .filter(|s| s.role == Role::Primary && s.powered)
        .chain(remote_primaries)
    {
        let (host, service) = (app.node_host(service), service.clone());
        primaries.spawn(async move { (service.id.clone(), observe(&host, &service, None).await) });
    }
    while let Some(Ok((id, result))) = primaries.join_next().await {
        observed.insert(id, result);
    }
    let mut replicas = tokio::task::JoinSet::new();
    for service in services
        .iter()
        .filter(|s| s.role == Role::Replica && s.powered)
    {
        let primary_info = sources
            .get(service.id.as_str())
            .and_then(|l| observed.get(&l.source_service_id))
            .and_then(|(_, i)| i.clone());
        let (host, service) = (app.node_host(service), service.clone());
        replicas.spawn(async move {
            let result = observe(&host, &service, primary_info.as_ref()).await;
            (service.id.clone(), result)
        });
    }
    while let Some(Ok((id, result))) = replicas.join_next().await {
        observed.insert(id, result);
    }

    let now = now_micros();
    let mut updates = Vec::new();
    for service in &services {
        let (state, health) = if service.powered {
            let Some((mut health, _)) = observed.remove(&service.id) else {
                continue;
            };
            if !health.answered && starting(service, now) {
                // Not answering yet is what a starting node does: no error to show.
                health.error = None;
            }
            // Why the node could not be started explains "does not answer" better.
            if let Some(e) = ensure_errors.remove(&service.id) {
                health.error = Some(e);
            }
            (state_of(service, &health), health)
        } else if stopped.contains(&service.id) {
            report.powered_off += 1;
            (ServiceState::Poweroff, powered_off_health(service))
        } else {
            // Not stopped yet (the stop failed): the state stays, the error shows why.
            let mut health = service.health.clone();
            health.error = ensure_errors.remove(&service.id);
            (service.state, health)
        };
        if state == ServiceState::Running {
            report.running += 1;
        }
        if state != service.state {
            info!(project = %service.project, service = %service.name, generation = service.generation, from = service.state.as_str(), to = state.as_str(), "service state changed");
        }
        // Unchanged health is rewritten only every few seconds (each write is an fsync).
        // Figures that move on an idle node too (its offset with every heartbeat, its
        // command count with every INFO) are refreshed with `observed_at` only.
        let steady = |h: &NodeHealth| NodeHealth {
            observed_at: 0,
            repl_offset: None,
            commands_processed: None,
            ..h.clone()
        };
        let unchanged = state == service.state
            && steady(&health) == steady(&service.health)
            && now - service.health.observed_at < UNCHANGED_REWRITE.as_micros() as i64;
        if !unchanged {
            updates.push((service.id.clone(), service.generation, state, health));
        }
    }
    if let Err(e) = app
        .store
        .write(|tx| {
            for (id, generation, state, health) in &updates {
                // Skipped when the role changed since the load: the observation is stale.
                tx.service_set_observed(id, *generation, *state, health, now)?;
            }
            Ok::<_, crate::AppError>(())
        })
        .await
    {
        report.errors.push(e.to_string());
    }
    report
}

/// Whether a node that does not answer is still in its first start: it has not answered
/// since the service was created or powered on (the last observation did not answer and
/// showed no error either), and that was less than [`FIRST_START_GRACE`] ago.
fn starting(service: &ServiceRow, now: i64) -> bool {
    service.state != ServiceState::Running
        && !service.health.answered
        && service.health.error.is_none()
        && now - service.update_time < FIRST_START_GRACE.as_micros() as i64
}

/// What is shown of a powered-off node: nothing runs, and what a later check needs (the
/// data in use, whether a replica ever held a whole dataset) is kept.
fn powered_off_health(service: &ServiceRow) -> NodeHealth {
    let h = &service.health;
    NodeHealth {
        observed_at: h.observed_at,
        used_memory: h.used_memory,
        synced: h.synced,
        bytes_behind: h.bytes_behind,
        ..NodeHealth::default()
    }
}

/// The read_replica link of each replica, keyed by the replica's id.
async fn sources_by_replica<'a>(
    app: &App,
    services: &'a [ServiceRow],
) -> HashMap<&'a str, IntegrationRow> {
    let mut map = HashMap::new();
    for s in services.iter().filter(|s| s.role == Role::Replica) {
        match app.store.read(|tx| tx.integrations_of_service(&s.id)).await {
            Ok(links) => {
                if let Some(l) = links.into_iter().find(|l| l.dest_service_id == s.id) {
                    map.insert(s.id.as_str(), l);
                }
            }
            Err(e) => debug!(error = %e, "could not read links"),
        }
    }
    map
}

/// RUNNING once the node answers in its desired role; a replica also needs to have
/// completed its sync and caught up with its primary. A replica that was RUNNING stays
/// RUNNING while its link is briefly down (its health shows it), unless a full sync starts.
fn state_of(service: &ServiceRow, health: &NodeHealth) -> ServiceState {
    if !health.answered {
        return ServiceState::Rebuilding;
    }
    match service.role {
        Role::Primary if health.valkey_role.as_deref() == Some("master") => ServiceState::Running,
        Role::Primary => ServiceState::Rebuilding,
        Role::Replica if health.current => ServiceState::Running,
        Role::Replica
            if service.state == ServiceState::Running
                && health.valkey_role.as_deref() == Some("slave")
                && !health.sync_in_progress =>
        {
            ServiceState::Running
        }
        Role::Replica => ServiceState::Rebuilding,
    }
}

/// Observes one node. For a replica, `primary_info` is its primary's INFO read just before.
async fn observe(
    host: &str,
    service: &ServiceRow,
    primary_info: Option<&Info>,
) -> (NodeHealth, Option<Info>) {
    let mut health = NodeHealth {
        observed_at: now_micros(),
        // Carry the last known gap forward so a promotion with the primary down can
        // report it, and whether the replica ever held a whole dataset.
        bytes_behind: service.health.bytes_behind,
        synced: service.health.synced,
        // The last figure stays when the node does not answer: a plan change is checked
        // against it.
        used_memory: service.health.used_memory,
        ..NodeHealth::default()
    };
    let observed = async {
        let mut admin =
            Admin::connect(host, service.port, &service.admin_password, OBSERVE_TIMEOUT).await?;
        let info = admin
            .info(&[
                "replication",
                "memory",
                "persistence",
                "clients",
                "keyspace",
                "stats",
            ])
            .await?;
        Ok::<_, keyhaven_runtime::admin::RedisError>((admin, info))
    }
    .await;
    let (mut admin, info) = match observed {
        Ok(v) => v,
        Err(e) => {
            health.error = Some(format!("valkey-server does not answer: {e}"));
            return (health, None);
        }
    };
    health.answered = true;
    if info.get("aof_last_write_status") == Some("err") {
        health.error = Some("valkey-server cannot write its AOF (is the disk full?); it refuses writes until it can".into());
    } else if info.get("rdb_last_bgsave_status") == Some("err") {
        health.error = Some("valkey-server could not save its snapshot (is the disk full?)".into());
    }
    health.used_memory = info.int("used_memory");
    health.connected_clients = info.int("connected_clients");
    health.keys = Some(info.keys());
    health.commands_processed = info.int("total_commands_processed");
    health.valkey_role = info.get("role").map(str::to_string);
    if health.valkey_role.as_deref() == Some("master") {
        health.repl_offset = info.int("master_repl_offset");
        health.full_syncs = info.int("sync_full");
        health.partial_syncs = info.int("sync_partial_ok");
        health.online_replicas = Some(
            info.replicas()
                .iter()
                .filter(|r| r.state == "online")
                .count() as i64,
        );
        health.bytes_behind = None;
        return (health, Some(info));
    }

    health.repl_offset = info.int("slave_repl_offset");
    health.link_up = Some(info.get("master_link_status") == Some("up"));
    health.last_io_seconds_ago = info.int("master_last_io_seconds_ago").filter(|v| *v >= 0);
    health.link_down_since_seconds = info
        .int("master_link_down_since_seconds")
        .filter(|v| *v >= 0);
    // A diskless load shows its progress as `loading_*` (the `master_sync_*` byte counts
    // stay 0 with dual-channel replication), so both are read.
    let loading = info.int("loading") == Some(1);
    health.sync_in_progress = info.int("master_sync_in_progress") == Some(1) || loading;
    if health.sync_in_progress {
        let positive = |key: &str| info.int(key).filter(|v| *v > 0);
        match positive("master_sync_total_bytes") {
            // A sync through disk knows its size.
            Some(total) => {
                health.sync_read_bytes = info.int("master_sync_read_bytes");
                health.sync_total_bytes = Some(total);
            }
            // A diskless sync does not, and its byte counters count compressed snapshot
            // bytes: progress is the dataset loaded so far against the primary's dataset.
            None => {
                health.sync_read_bytes = info.int("used_memory_dataset");
                health.sync_total_bytes = primary_info
                    .and_then(|p| p.int("used_memory_dataset"))
                    .or_else(|| positive("loading_rdb_used_mem"));
            }
        }
    }
    if let (Some(pinfo), Some(offset)) = (primary_info, health.repl_offset) {
        let primary_offset = pinfo.int("master_repl_offset").unwrap_or(0);
        health.bytes_behind = Some((primary_offset - offset).max(0));
        let listed_online = pinfo
            .replicas()
            .iter()
            .any(|r| r.port == service.port && r.state == "online");
        health.current = health.link_up == Some(true)
            && !health.sync_in_progress
            && offset >= primary_offset
            && listed_online;
    }
    health.synced = service.health.synced || health.current;
    // A replica that loaded its data straight into memory has no snapshot on disk: one,
    // once it is current, lets it resume with a partial resync after a restart, and lets
    // a promotion that finds it restarted start it from its data.
    if health.current
        && info.int("rdb_saves") == Some(0)
        && info.int("rdb_bgsave_in_progress") == Some(0)
        && let Err(e) = admin.bgsave_scheduled().await
    {
        debug!(service = %service.name, error = %e, "could not start a snapshot");
    }
    (health, Some(info))
}
