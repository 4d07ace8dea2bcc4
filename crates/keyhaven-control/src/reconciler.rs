//! The reconciler: compares the desired state in the store with what runs, drives the
//! runtime to close the gap, and writes what it observed back to the store.
//!
//! It takes no input from requests: it is woken (after a change, or when a node exits)
//! and also runs on a timer, faster while some service is still being built. Each
//! activation is idempotent and returns a [`Report`] an operator can read in the logs.
//!
//! Each activation loads (the store's rows, the nodes' answers), asks the pure decisions of
//! `plan.rs` what to do (which action for each node, which state to record, whether a
//! record is worth a write, whether a roll-forward is due), and applies them: runtime calls
//! and one store write. It touches only the nodes of this instance's cloud.
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
use crate::plan::{self, NodeAction};
use keyhaven_core::time::now_micros;
use keyhaven_core::{NodeHealth, Role, ServiceState};
use keyhaven_runtime::Ensured;
use keyhaven_runtime::info::Info;
use keyhaven_store::{IntegrationRow, ServiceRow};
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
    // Primaries whose first AOF is still being written (a promoted replica, right after).
    let mut aof_pending: HashSet<String> = HashSet::new();
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
        let source_host = source
            .as_ref()
            .map(|s| app.node_host(s))
            .unwrap_or_default();
        let promotion_running = link
            .as_ref()
            .is_some_and(|l| app.promotion_in_flight(&l.id));
        let spec = match plan::node_action(
            &row,
            link.as_ref(),
            source.as_ref(),
            promotion_running,
            &source_host,
        ) {
            NodeAction::LeaveToPromotion => continue,
            NodeAction::Stop => {
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
            NodeAction::Ensure(spec) => spec,
        };
        match app.runtime.ensure(&spec).await {
            Ok(Ensured::Running {
                just_started,
                role_pending,
                ..
            }) => {
                if role_pending && row.role == Role::Primary {
                    aof_pending.insert(row.id.clone());
                }
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
            let now = Instant::now();
            let Some(attempt) = plan::roll_forward_attempt(attempts.get(&link.id).copied(), now)
            else {
                continue;
            };
            attempts.insert(link.id.clone(), (now, attempt));
            attempt
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
    // Each once, and not those that cannot answer (powered off, or in a lost cloud): their
    // replicas here then show no gap rather than every activation waiting on a timeout.
    let remote_ids: HashSet<&str> = sources
        .values()
        .map(|l| l.source_service_id.as_str())
        .collect();
    let remote_primaries = all.iter().filter(|s| {
        remote_ids.contains(s.id.as_str())
            && !app.is_mine(&s.cloud)
            && s.powered
            && app.cloud(&s.cloud).is_some_and(|c| !c.is_lost())
    });
    for service in services
        .iter()
        .filter(|s| s.role == Role::Primary && s.powered)
        .chain(remote_primaries)
    {
        let (host, service) = (app.node_host(service), service.clone());
        primaries.spawn(async move { (service.id.clone(), observe(&host, &service, None).await) });
    }
    collect_observations(&mut primaries, &mut observed).await;
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
    collect_observations(&mut replicas, &mut observed).await;

    let now = now_micros();
    let mut updates = Vec::new();
    for service in &services {
        let (state, health) = if service.powered {
            let Some((health, _)) = observed.remove(&service.id) else {
                continue;
            };
            let (mut state, mut health) =
                plan::record_observed(service, health, ensure_errors.remove(&service.id), now);
            // A service says RUNNING once its URI works: with TLS, through its endpoint.
            if state == ServiceState::Running
                && service.state != ServiceState::Running
                && !app.endpoint_serves(service)
            {
                state = ServiceState::Rebuilding;
            }
            health.aof_pending = aof_pending.contains(&service.id);
            (state, health)
        } else if stopped.contains(&service.id) {
            report.powered_off += 1;
            plan::record_powered_off(service)
        } else {
            plan::record_stop_failed(service, ensure_errors.remove(&service.id))
        };
        if state == ServiceState::Running {
            report.running += 1;
        }
        if state != service.state {
            info!(project = %service.project, service = %service.name, generation = service.generation, from = service.state.as_str(), to = state.as_str(), "service state changed");
        }
        if plan::worth_writing(service, state, &health, now) {
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

/// Gathers the observations of a group of nodes. A task that panicked is logged and costs
/// only its own node's observation, never the others'.
async fn collect_observations(
    tasks: &mut tokio::task::JoinSet<(String, (NodeHealth, Option<Info>))>,
    observed: &mut HashMap<String, (NodeHealth, Option<Info>)>,
) {
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((id, result)) => {
                observed.insert(id, result);
            }
            Err(e) => {
                warn!(error = %e, "an observation task failed; its node is observed again next time")
            }
        }
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

/// Observes one node through the runtime crate's observation (`keyhaven_runtime::observe`).
async fn observe(
    host: &str,
    service: &ServiceRow,
    primary_info: Option<&Info>,
) -> (NodeHealth, Option<Info>) {
    keyhaven_runtime::observe::observe(
        &keyhaven_runtime::observe::Target {
            host,
            port: service.port,
            admin_password: &service.admin_password,
            label: &service.name,
        },
        &service.health,
        primary_info,
        OBSERVE_TIMEOUT,
    )
    .await
}
