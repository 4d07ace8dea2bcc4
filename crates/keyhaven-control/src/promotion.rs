//! Promotion of a read replica to an independent primary, by deleting its `read_replica`
//! link (`DELETE /v1/project/P/integration/ID`), with no acknowledged write lost.
//!
//! 1. The intent is recorded first, in one transaction: the link becomes `promoting` and
//!    the replica's desired role becomes primary at the next generation. Of concurrent
//!    requests exactly one moves the link from `active`; the others get 404.
//! 2. The replica's config is staged as a primary, so a node restart from here on never
//!    brings it back following the old primary.
//! 3. If the primary answers a PING within 1 s: `CLIENT PAUSE <bound> WRITE` on it, read
//!    its offset once right after the pause, wait until the replica's offset is at or past
//!    it (not equal: a paused primary still sends PINGs to replicas), `REPLICAOF NO ONE`
//!    on the replica, `CLIENT UNPAUSE`. Every write acknowledged before the pause is in
//!    the offset, so it is on the promoted node. When the replica cannot catch up within
//!    the bound, the primary is resumed and the intent abandoned: the replica was never
//!    detached, nothing changed, and the caller gets 503 with the bytes behind.
//! 4. If the primary does not answer, the replica is detached at once and the last known
//!    gap is recorded as `lost_bytes_estimate`.
//! 5. The link is deleted. A crash anywhere in 1–4 leaves a `promoting` link that the
//!    reconciler rolls forward at the next start; a role's generation only goes up, so a
//!    promoted node is never re-attached.

use crate::spec::node_spec;
use crate::{App, AppError, Caller};
use keyhaven_core::time::now_micros;
use keyhaven_core::{Role, ServiceState};
use keyhaven_runtime::admin::Admin;
use keyhaven_store::{IntegrationRow, LinkStatus, ServiceRow};
use std::time::{Duration, Instant};
use tracing::{info, warn};

const PING_TIMEOUT: Duration = Duration::from_secs(1);

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
    /// The replica could not catch up in time; nothing was changed.
    Behind {
        bytes: i64,
    },
}

impl App {
    /// `DELETE /v1/project/P/integration/ID`.
    pub async fn integration_delete(
        &self,
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
        self.promote_recorded(&link).await
    }

    /// Runs steps 2–5 for a link already marked `promoting`; used by the request above and
    /// by the reconciler's roll-forward after a crash.
    pub(crate) async fn promote_recorded(
        &self,
        link: &IntegrationRow,
    ) -> Result<Promoted, AppError> {
        {
            let mut inflight = self
                .promotions_in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !inflight.insert(link.id.clone()) {
                return Err(AppError::conflict(
                    "promotion_in_progress",
                    "This promotion is already running",
                ));
            }
        }
        let result = self.promote_steps(link).await;
        self.promotions_in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&link.id);
        self.wake.notify_one();
        result
    }

    pub(crate) fn promotion_in_flight(&self, link_id: &str) -> bool {
        self.promotions_in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(link_id)
    }

    async fn promote_steps(&self, link: &IntegrationRow) -> Result<Promoted, AppError> {
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
        self.runtime
            .stage(&new_spec)
            .await
            .map_err(|e| AppError::Internal(e.to_string()))?;
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
            Some(mut p) => self.detach_in_step(&replica, &primary, &mut p).await?,
            None => {
                let lost = replica.health.bytes_behind.unwrap_or(0).max(0);
                warn!(replica = %replica.name, primary = %primary.name, lost_bytes_estimate = lost,
                      "primary does not answer: detaching the replica at once");
                self.runtime
                    .ensure(&new_spec)
                    .await
                    .map_err(|e| AppError::Internal(e.to_string()))?;
                Outcome::Done(Promoted {
                    replica: replica.name.clone(),
                    primary: primary.name.clone(),
                    write_pause: None,
                    lost_bytes_estimate: Some(lost),
                })
            }
        };

        match outcome {
            Outcome::Done(promoted) => {
                // Record the new generation on the node (AOF on, config) before the link
                // goes: until then a crash rolls this promotion forward again.
                self.runtime
                    .ensure(&new_spec)
                    .await
                    .map_err(|e| AppError::Internal(e.to_string()))?;
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
            Outcome::Behind { bytes } => {
                let now = now_micros();
                let gen_spec = self.store.write(|tx| {
                    tx.integration_set_status(&link.id, LinkStatus::Promoting, LinkStatus::Active)?;
                    tx.service_set_role(&replica.id, Role::Replica, now)?;
                    let row = tx.service_by_id(&replica.id)?;
                    Ok::<_, AppError>(row)
                })?;
                if let Some(row) = gen_spec {
                    // Restores the replica config staged away above; the node itself was
                    // never detached, so this changes nothing on it.
                    let spec = node_spec(&row, Some(&primary), &host);
                    if let Err(e) = self.runtime.ensure(&spec).await {
                        warn!(replica = %replica.name, error = %e, "could not restore the replica config after an abandoned promotion");
                    }
                }
                Err(AppError::Unavailable {
                    code: "replica_behind",
                    message: format!(
                        "Replica '{}' could not catch up with '{}' within {} ms ({bytes} bytes behind); nothing was changed, try again",
                        replica.name, primary.name, self.config.promotion_pause_ms
                    ),
                })
            }
        }
    }

    /// Step 3: pause writes on the primary, wait for the replica, detach, resume.
    async fn detach_in_step(
        &self,
        replica: &ServiceRow,
        primary: &ServiceRow,
        p: &mut Admin,
    ) -> Result<Outcome, AppError> {
        let host = self.service_host().to_string();
        let mut r = Admin::connect(&host, replica.port, &replica.admin_password, PING_TIMEOUT)
            .await
            .map_err(|e| AppError::Unavailable {
                code: "replica_unreachable",
                message: format!(
                    "Replica '{}' does not answer ({e}); nothing was changed",
                    replica.name
                ),
            })?;
        let info = r
            .info(&["replication"])
            .await
            .map_err(|e| AppError::Internal(e.to_string()))?;
        if info.get("role") == Some("master") {
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

        let bound = Duration::from_millis(self.config.promotion_pause_ms);
        let paused_at = Instant::now();
        p.pause_writes(self.config.promotion_pause_ms)
            .await
            .map_err(|e| AppError::Internal(format!("pausing writes on the primary: {e}")))?;
        let result = async {
            let target = p
                .info(&["replication"])
                .await?
                .int("master_repl_offset")
                .unwrap_or(0);
            loop {
                let offset = r
                    .info(&["replication"])
                    .await?
                    .int("slave_repl_offset")
                    .unwrap_or(-1);
                crate::failpoint::hit("promotion.writes_paused");
                if offset >= target {
                    r.detach().await?;
                    crate::failpoint::hit("promotion.detached");
                    return Ok::<_, keyhaven_runtime::admin::RedisError>(None);
                }
                // Leave a margin so the primary is unpaused by us, not by the timeout.
                if paused_at.elapsed() + Duration::from_millis(50) >= bound {
                    return Ok(Some(target - offset));
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
            Ok(Some(bytes)) => Ok(Outcome::Behind { bytes }),
            Err(e) => Err(AppError::Internal(format!("promotion step failed: {e}"))),
        }
    }
}
