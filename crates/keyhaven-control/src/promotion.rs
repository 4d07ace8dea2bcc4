//! Promotion of a read replica to an independent primary, by deleting its `read_replica`
//! link (`DELETE /v1/project/P/integration/ID`), with no acknowledged write lost.
//!
//! 1. The intent is recorded first, in one transaction: the link becomes `promoting` and
//!    the replica's desired role becomes primary at the next generation. Of concurrent
//!    requests exactly one moves the link from `active`; the others get 404.
//! 2. The replica's config is staged as a primary (and its staged generation recorded), so
//!    neither a node restart nor a stale reconciler pass brings it back following the old
//!    primary.
//! 3. If the primary answers a PING within 1 s: `CLIENT PAUSE <bound> WRITE` on it, read
//!    its replication id and offset once right after the pause, wait until the replica is
//!    linked to that same history (same replication id, link up, no sync running) and its
//!    offset is at or past it (not equal: a paused primary still sends PINGs), `REPLICAOF NO
//!    ONE` on the replica, `CLIENT UNPAUSE`. Every write acknowledged before the pause is in
//!    that offset, so it is on the promoted node. When the replica cannot catch up within the
//!    bound, or cannot be reached before anything was sent to it, the primary is resumed and
//!    the intent abandoned: nothing changed, and the caller gets 503.
//! 4. If the primary does not answer, the replica is detached at once and the last known
//!    gap is recorded as `lost_bytes_estimate`.
//! 5. The promoted node turns its AOF on; once its first AOF is written (until then a
//!    restart could only start from its last RDB snapshot), the link is deleted.
//!
//! A crash anywhere in 1–5 leaves a `promoting` link that the reconciler rolls forward
//! (never back: `REPLICAOF NO ONE` may have been sent) at the next start; a role's
//! generation only goes up, so a promoted node is never re-attached.

use crate::spec::node_spec;
use crate::{App, AppError, Caller};
use keyhaven_core::time::now_micros;
use keyhaven_core::{Role, ServiceState};
use keyhaven_runtime::admin::{Admin, RedisError};
use keyhaven_runtime::{Ensured, NodeSpec, RuntimeError};
use keyhaven_store::{IntegrationRow, LinkStatus, ServiceRow};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a promotion waits for the promoted node's first AOF before it answers anyway
/// (the reconciler finishes it; see RELIABILITY.md).
const AOF_WAIT: Duration = Duration::from_secs(60);
/// Longest wait for the replica's snapshot before a promotion.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(60);
/// Roll-forward attempts that wait for a primary that does not answer (it may be starting)
/// before it is taken for down.
const ROLL_FORWARD_PRIMARY_ATTEMPTS: u32 = 4;

/// What a finished promotion reports.
#[derive(Debug, Clone)]
pub struct Promoted {
    pub replica: String,
    pub primary: String,
    /// How long writes on the primary were paused, when it answered.
    pub write_pause: Option<Duration>,
    /// Bytes the promoted node may lack, when the primary was down.
    pub lost_bytes_estimate: Option<i64>,
}

enum Outcome {
    Done(Promoted),
    /// Nothing was changed on the replica; the intent is to be abandoned.
    Abandon(AppError),
}

/// Marks a link's promotion as running in this process; released on drop.
pub(crate) struct InFlight {
    app: Arc<App>,
    link: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.app
            .promotions_in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.link);
        self.app.wake.notify_one();
    }
}

fn runtime_error(e: RuntimeError) -> AppError {
    match e {
        RuntimeError::Io { .. } | RuntimeError::Apply { .. } | RuntimeError::Start { .. } => {
            AppError::Unavailable {
                code: "node_unavailable",
                message: e.to_string(),
            }
        }
        RuntimeError::StaleGeneration { .. } => AppError::Internal(e.to_string()),
    }
}

impl App {
    /// Claims a link's promotion for this process; `None` when one runs already.
    pub(crate) fn claim_promotion(self: &Arc<Self>, link: &str) -> Option<InFlight> {
        let mut inflight = self
            .promotions_in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        inflight.insert(link.to_string()).then(|| InFlight {
            app: self.clone(),
            link: link.to_string(),
        })
    }

    pub(crate) fn promotion_in_flight(&self, link_id: &str) -> bool {
        self.promotions_in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(link_id)
    }

    /// `DELETE /v1/project/P/integration/ID`.
    pub async fn integration_delete(
        self: &Arc<Self>,
        caller: &Caller,
        project: &str,
        id: &str,
    ) -> Result<Promoted, AppError> {
        let not_found = || {
            AppError::not_found(
                "integration_not_found",
                format!(
                    "Service integration '{}' does not exist in project '{project}'",
                    id.chars().take(64).collect::<String>()
                ),
            )
        };
        // Claimed before the intent is recorded, so the reconciler never takes this
        // promotion over between the two.
        let Some(_claim) = self.claim_promotion(id) else {
            self.project_for(caller, project)?;
            return Err(not_found());
        };
        let now = now_micros();
        let link = self.store.write(|tx| {
            crate::identity::visible_project(tx, caller, project)?;
            let link = tx.integration_get(project, id)?.ok_or_else(not_found)?;
            if link.status != LinkStatus::Active {
                return Err(not_found());
            }
            let replica = tx
                .service_by_id(&link.dest_service_id)?
                .ok_or_else(|| AppError::Internal("link without replica".into()))?;
            if replica.state == ServiceState::Rebuilding && !replica.health.current {
                return Err(AppError::conflict(
                    "replica_not_ready",
                    format!(
                        "Replica '{}' is still in its first sync and holds a partial dataset; promote it once it is RUNNING",
                        replica.name
                    ),
                ));
            }
            if !tx.integration_set_status(&link.id, LinkStatus::Active, LinkStatus::Promoting)? {
                return Err(not_found());
            }
            tx.service_set_role(&replica.id, Role::Primary, now)?;
            Ok(link)
        })?;
        info!(project, replica = %link.dest_service, primary = %link.source_service, link = %link.id, "promotion intent recorded");
        crate::failpoint::hit("promotion.intent_recorded");
        self.promote_steps(&link, None).await
    }

    /// Rolls forward a promotion left `promoting` (by a crash, or by a failed attempt);
    /// `attempt` counts from 1.
    pub(crate) async fn promote_roll_forward(
        self: &Arc<Self>,
        link: &IntegrationRow,
        attempt: u32,
    ) {
        let Some(_claim) = self.claim_promotion(&link.id) else {
            return;
        };
        // The link may have been finished since the reconciler read it.
        match self
            .store
            .read(|tx| tx.integration_get(&link.project, &link.id))
        {
            Ok(Some(l)) if l.status == LinkStatus::Promoting => {}
            _ => return,
        }
        warn!(link = %link.id, replica = %link.dest_service, attempt, "rolling an interrupted promotion forward");
        if let Err(e) = self.promote_steps(link, Some(attempt)).await {
            warn!(link = %link.id, error = %e, "roll-forward of a promotion did not finish; it is retried");
        }
    }

    /// Steps 2–5. `roll_forward` (the attempt number) when this process did not record
    /// the intent: it cannot know what was sent to the nodes before, so it never abandons.
    async fn promote_steps(
        &self,
        link: &IntegrationRow,
        roll_forward: Option<u32>,
    ) -> Result<Promoted, AppError> {
        let (replica, primary) = self.store.read(|tx| {
            Ok::<_, AppError>((
                tx.service_by_id(&link.dest_service_id)?,
                tx.service_by_id(&link.source_service_id)?,
            ))
        })?;
        let replica =
            replica.ok_or_else(|| AppError::Internal("promoting a missing replica".into()))?;
        let primary =
            primary.ok_or_else(|| AppError::Internal("promoting from a missing primary".into()))?;
        let host = self.service_host().to_string();
        let new_spec = node_spec(&replica, None, &host);
        // A snapshot first: a replica that loaded its data straight into memory has none,
        // and a node restarted in its staged primary role starts from it.
        if let Err(e) = self.snapshot_replica(&replica).await {
            return self
                .abandon_or_fail(link, &replica, &primary, roll_forward, e)
                .await;
        }
        if let Err(e) = self.runtime.stage(&new_spec).await {
            return self
                .abandon_or_fail(link, &replica, &primary, roll_forward, runtime_error(e))
                .await;
        }
        crate::failpoint::hit("promotion.staged");

        let primary_admin = match Admin::connect(
            &host,
            primary.port,
            &primary.admin_password,
            PING_TIMEOUT,
        )
        .await
        {
            Ok(mut p) => p.ping().await.is_ok().then_some(p),
            Err(_) => None,
        };
        let outcome = match primary_admin {
            Some(mut p) => {
                self.detach_in_step(&replica, &primary, &mut p, roll_forward.is_some())
                    .await?
            }
            // Right after a restart the primary may simply not be up yet: a roll-forward
            // gives it a few attempts before it takes the primary for down.
            None if roll_forward.is_some_and(|a| a < ROLL_FORWARD_PRIMARY_ATTEMPTS) => {
                return Err(AppError::Unavailable {
                    code: "primary_unavailable",
                    message: format!("Primary '{}' does not answer yet", primary.name),
                });
            }
            None => {
                let lost = replica.health.bytes_behind.unwrap_or(0).max(0);
                warn!(replica = %replica.name, primary = %primary.name, lost_bytes_estimate = lost,
                      "primary does not answer: detaching the replica at once");
                self.runtime
                    .ensure(&new_spec)
                    .await
                    .map_err(runtime_error)?;
                Outcome::Done(Promoted {
                    replica: replica.name.clone(),
                    primary: primary.name.clone(),
                    write_pause: None,
                    lost_bytes_estimate: Some(lost),
                })
            }
        };
        let promoted = match outcome {
            Outcome::Done(p) => p,
            Outcome::Abandon(e) => {
                return self
                    .abandon_or_fail(link, &replica, &primary, roll_forward, e)
                    .await;
            }
        };

        // Step 5: the new primary's AOF on, and written, before the link goes.
        self.finish_role(&replica, &new_spec).await?;
        crate::failpoint::hit("promotion.node_updated");
        self.store.write(|tx| {
            tx.service_set_lost_bytes(&replica.id, promoted.lost_bytes_estimate)?;
            tx.integration_delete(&link.id)?;
            Ok::<_, AppError>(())
        })?;
        info!(replica = %promoted.replica, primary = %promoted.primary,
              write_pause_us = promoted.write_pause.map(|d| d.as_micros() as u64),
              "replica promoted to primary");
        Ok(promoted)
    }

    /// Applies the primary role to the detached node (starting it if it died) and waits,
    /// bounded, until its first AOF is written.
    async fn finish_role(&self, replica: &ServiceRow, spec: &NodeSpec) -> Result<(), AppError> {
        let deadline = Instant::now() + AOF_WAIT;
        loop {
            match self.runtime.ensure(spec).await.map_err(runtime_error)? {
                Ensured::Running {
                    role_pending: false,
                    ..
                } => return Ok(()),
                Ensured::Running { .. } if Instant::now() >= deadline => {
                    warn!(node = %spec.label, "the promoted node's first AOF is still being written; the reconciler finishes it");
                    return Ok(());
                }
                Ensured::Running { .. } => {}
                Ensured::BackingOff {
                    port_in_use: true, ..
                } => {
                    // Another program took its port: move it; the next attempt finishes.
                    let port = self.service_move_port(&replica.id)?;
                    return Err(AppError::Unavailable {
                        code: "node_unavailable",
                        message: format!(
                            "The promoted node's port was taken; it moves to port {port}"
                        ),
                    });
                }
                Ensured::BackingOff { last_exit, .. } => {
                    return Err(AppError::Unavailable {
                        code: "node_unavailable",
                        message: format!(
                            "The promoted node is restarting ({last_exit}); the promotion finishes when it is back"
                        ),
                    });
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Makes the replica write an RDB snapshot and waits for it (bounded). An unreachable
    /// replica is left for the later steps to handle; a replica already detached (a
    /// roll-forward) needs none.
    async fn snapshot_replica(&self, replica: &ServiceRow) -> Result<(), AppError> {
        let host = self.service_host();
        let Ok(mut r) =
            Admin::connect(host, replica.port, &replica.admin_password, PING_TIMEOUT).await
        else {
            return Ok(());
        };
        let failed = |e: String| AppError::Unavailable {
            code: "snapshot_failed",
            message: format!(
                "Replica '{}' could not write its snapshot ({e}); nothing was changed, try again",
                replica.name
            ),
        };
        let info = r
            .info(&["replication", "persistence"])
            .await
            .map_err(|e| failed(e.to_string()))?;
        if info.get("role") != Some("slave") {
            return Ok(());
        }
        // Our own snapshot, started after any that runs now has finished (`rdb_saves`
        // counts snapshots when they start, so only "none in progress" after our own
        // started tells that it is on disk).
        let deadline = Instant::now() + SNAPSHOT_WAIT;
        let mut started = false;
        loop {
            let info = r
                .info(&["persistence"])
                .await
                .map_err(|e| failed(e.to_string()))?;
            let running = info.int("rdb_bgsave_in_progress") == Some(1);
            if started && !running {
                return match info.get("rdb_last_bgsave_status") {
                    Some("ok") => Ok(()),
                    other => Err(failed(format!(
                        "rdb_last_bgsave_status: {}",
                        other.unwrap_or("?")
                    ))),
                };
            }
            if !started && !running {
                match r.bgsave().await {
                    Ok(()) => started = true,
                    Err(e) if e.to_string().contains("already in progress") => {}
                    Err(e) => return Err(failed(e.to_string())),
                }
                continue;
            }
            if Instant::now() > deadline {
                return Err(failed("it took longer than 60 s".into()));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A failure before anything reached the replica: in a request, the intent is
    /// abandoned and the caller told nothing changed; in a roll-forward it stays, to be
    /// retried.
    async fn abandon_or_fail(
        &self,
        link: &IntegrationRow,
        replica: &ServiceRow,
        primary: &ServiceRow,
        roll_forward: Option<u32>,
        error: AppError,
    ) -> Result<Promoted, AppError> {
        if roll_forward.is_some() {
            // A replica that is down is started (in its staged primary role) so the next
            // attempt can finish.
            let spec = node_spec(replica, None, self.service_host());
            match self.runtime.ensure(&spec).await {
                Ok(Ensured::BackingOff {
                    port_in_use: true, ..
                }) => {
                    if let Err(e) = self.service_move_port(&replica.id) {
                        warn!(replica = %replica.name, error = %e, "could not move the replica off a taken port");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(replica = %replica.name, error = %e, "could not start the replica being promoted")
                }
            }
            return Err(error);
        }
        let now = now_micros();
        let restored = self.store.write(|tx| {
            tx.integration_set_status(&link.id, LinkStatus::Promoting, LinkStatus::Active)?;
            tx.service_set_role(&replica.id, Role::Replica, now)?;
            // The primary as it is now (its port may have moved meanwhile).
            Ok::<_, AppError>((
                tx.service_by_id(&replica.id)?,
                tx.service_by_id(&primary.id)?,
            ))
        })?;
        if let (Some(row), Some(primary_now)) = restored {
            // Restores the replica config staged away above; the node itself was never
            // detached, so this changes nothing on it.
            let spec = node_spec(&row, Some(&primary_now), self.service_host());
            if let Err(e) = self.runtime.ensure(&spec).await {
                warn!(replica = %replica.name, error = %e, "could not restore the replica config after an abandoned promotion");
            }
        }
        info!(replica = %replica.name, error = %error, "promotion abandoned; nothing changed");
        Err(error)
    }

    /// Step 3: pause writes on the primary, wait for the replica, detach, resume.
    async fn detach_in_step(
        &self,
        replica: &ServiceRow,
        primary: &ServiceRow,
        p: &mut Admin,
        roll_forward: bool,
    ) -> Result<Outcome, AppError> {
        let host = self.service_host().to_string();
        let unreachable = |e: RedisError| {
            Outcome::Abandon(AppError::Unavailable {
                code: "replica_unreachable",
                message: format!(
                    "Replica '{}' does not answer ({e}); nothing was changed, try again",
                    replica.name
                ),
            })
        };
        let mut r = match Admin::connect(&host, replica.port, &replica.admin_password, PING_TIMEOUT)
            .await
        {
            Ok(r) => r,
            Err(e) => return Ok(unreachable(e)),
        };
        let info = match r.info(&["replication"]).await {
            Ok(i) => i,
            Err(e) => return Ok(unreachable(e)),
        };
        if info.get("role") == Some("master") {
            if !roll_forward {
                return Err(AppError::Internal(format!(
                    "replica '{}' is a primary already, before its promotion",
                    replica.name
                )));
            }
            // Detached already (a roll-forward after a crash past REPLICAOF NO ONE): the
            // crash may have left the primary paused, so resume it now rather than at the
            // end of its bound.
            if let Err(e) = p.unpause().await {
                warn!(primary = %primary.name, error = %e, "could not unpause the primary");
            }
            return Ok(Outcome::Done(Promoted {
                replica: replica.name.clone(),
                primary: primary.name.clone(),
                write_pause: None,
                lost_bytes_estimate: None,
            }));
        }

        // Pause only a primary whose replica is linked to it and replicating: otherwise the
        // catch-up cannot succeed and the pause would only block the primary's clients.
        let linked = async {
            let pinfo = p.info(&["replication"]).await?;
            Ok::<_, RedisError>(
                pinfo.get("master_replid").is_some()
                    && info.get("master_replid") == pinfo.get("master_replid")
                    && info.get("master_link_status") == Some("up")
                    && info.int("master_sync_in_progress") == Some(0),
            )
        }
        .await;
        if !matches!(linked, Ok(true)) {
            return Ok(Outcome::Abandon(AppError::Unavailable {
                code: "replica_not_linked",
                message: format!(
                    "Replica '{}' is not replicating from '{}' right now (link down or resyncing); nothing was changed, try again",
                    replica.name, primary.name
                ),
            }));
        }

        let bound = Duration::from_millis(self.config.promotion_pause_ms);
        let paused_at = Instant::now();
        if let Err(e) = p.pause_writes(self.config.promotion_pause_ms).await {
            let _ = p.unpause().await;
            return Ok(Outcome::Abandon(AppError::Unavailable {
                code: "primary_unavailable",
                message: format!(
                    "Could not pause writes on '{}' ({e}); nothing was changed, try again",
                    primary.name
                ),
            }));
        }
        let result = async {
            let pinfo = p.info(&["replication"]).await?;
            let target = pinfo.int("master_repl_offset").unwrap_or(0);
            let history = pinfo.get("master_replid").unwrap_or_default().to_string();
            loop {
                crate::failpoint::hit("promotion.writes_paused");
                let rinfo = r.info(&["replication"]).await?;
                let offset = rinfo.int("slave_repl_offset").unwrap_or(-1);
                // Only an offset in the primary's current history counts (a primary
                // restarted from its AOF starts a new one at offset 0).
                let same_history = rinfo.get("master_replid") == Some(history.as_str())
                    && rinfo.get("master_link_status") == Some("up")
                    && rinfo.int("master_sync_in_progress") == Some(0);
                if same_history && offset >= target {
                    r.detach().await?;
                    crate::failpoint::hit("promotion.detached");
                    return Ok::<_, RedisError>(None);
                }
                // Leave a margin so the primary is unpaused by us, not by the timeout.
                if paused_at.elapsed() + Duration::from_millis(50) >= bound {
                    let behind = if same_history {
                        target - offset
                    } else {
                        target
                    };
                    return Ok(Some(behind));
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        }
        .await;
        let unpaused = p.unpause().await;
        let pause = paused_at.elapsed();
        if let Err(e) = unpaused {
            warn!(primary = %primary.name, error = %e, "could not unpause the primary; its pause ends by itself within the bound");
        }
        match result {
            Ok(None) => Ok(Outcome::Done(Promoted {
                replica: replica.name.clone(),
                primary: primary.name.clone(),
                write_pause: Some(pause),
                lost_bytes_estimate: None,
            })),
            Ok(Some(bytes)) => Ok(Outcome::Abandon(AppError::Unavailable {
                code: "replica_behind",
                message: format!(
                    "Replica '{}' could not catch up with '{}' within {} ms ({bytes} bytes behind); nothing was changed, try again",
                    replica.name, primary.name, self.config.promotion_pause_ms
                ),
            })),
            // REPLICAOF NO ONE may have been sent: only ever forward from here.
            Err(e) => Err(AppError::Unavailable {
                code: "promotion_interrupted",
                message: format!(
                    "The promotion of '{}' was interrupted ({e}); Keyhaven finishes it in the background",
                    replica.name
                ),
            }),
        }
    }
}
