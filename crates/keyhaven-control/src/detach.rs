//! Steps 3 and 4 of a promotion (see `promotion.rs`): detaching the replica, after a
//! catch-up with the primary's writes paused, or at once when the primary is down or the
//! request is lossy. Each returns an [`Outcome`] that says whether anything may have reached
//! the replica, which decides between abandoning (nothing changed) and rolling forward.

use crate::App;
use crate::AppError;
use crate::promotion::{NoCatchUp, Outcome, Promoted, REPLICA_TIMEOUT};
use keyhaven_core::time::now_micros;
use keyhaven_runtime::admin::{Admin, RedisError};
use keyhaven_store::ServiceRow;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Share of the pause bound the catch-up may use: Keyhaven resumes the primary itself at
/// half the bound, so the bound given to `CLIENT PAUSE` only matters if Keyhaven dies.
const CATCH_UP_SHARE: u32 = 2;
/// How often the catch-up reads the replica's offset.
const CATCH_UP_POLL: Duration = Duration::from_micros(500);

impl App {
    /// Step 4: detaches the replica at once, without catch-up (the primary is down, or the
    /// request is lossy). The gap recorded is the last one Keyhaven observed.
    pub(crate) async fn detach_without_catch_up(
        &self,
        replica: &ServiceRow,
        primary: &ServiceRow,
        why: NoCatchUp,
    ) -> Outcome {
        let mut r = match Admin::connect(
            &self.node_host(replica),
            replica.port,
            &replica.admin_password,
            REPLICA_TIMEOUT,
        )
        .await
        {
            Ok(r) => r,
            Err(e) => return replica_unreachable(replica, e),
        };
        let already = match r.info(&["replication"]).await {
            Ok(info) => info.is_primary(),
            Err(e) => return replica_unreachable(replica, e),
        };
        if !already && let Err(e) = r.detach().await {
            return Outcome::Uncertain(format!(
                "REPLICAOF NO ONE on '{}' was not confirmed ({e})",
                replica.name
            ));
        }
        crate::failpoint::hit("promotion.detached");
        Outcome::Detached(Promoted {
            replica: replica.name.clone(),
            primary: primary.name.clone(),
            write_pause: None,
            pause_started_at: None,
            behind_at_pause: None,
            without_catch_up: Some(why),
            lost_bytes_estimate: replica.health.bytes_behind.map(|b| b.max(0)),
            aof_pending: false,
        })
    }

    /// Step 3: pause writes on the primary, wait for the replica, detach, resume.
    pub(crate) async fn detach_in_step(
        &self,
        replica: &ServiceRow,
        primary: &ServiceRow,
        p: &mut Admin,
        lossy: bool,
        roll_forward: bool,
    ) -> Outcome {
        let host = self.node_host(replica);
        let mut r = match Admin::connect(
            &host,
            replica.port,
            &replica.admin_password,
            REPLICA_TIMEOUT,
        )
        .await
        {
            Ok(r) => r,
            Err(e) => return replica_unreachable(replica, e),
        };
        let info = match r.info(&["replication"]).await {
            Ok(i) => i,
            Err(e) => return replica_unreachable(replica, e),
        };
        if info.is_primary() {
            if !roll_forward {
                return Outcome::Abandon(AppError::Internal(format!(
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
            return Outcome::Detached(Promoted {
                replica: replica.name.clone(),
                primary: primary.name.clone(),
                write_pause: None,
                pause_started_at: None,
                behind_at_pause: None,
                without_catch_up: None,
                lost_bytes_estimate: None,
                aof_pending: false,
            });
        }

        // Pause only a primary whose replica is linked to it and replicating: otherwise the
        // catch-up cannot succeed and the pause would only block the primary's clients.
        let linked = async {
            let pinfo = p.info(&["replication"]).await?;
            Ok::<_, RedisError>(
                pinfo.replication_id().is_some()
                    && info.replication_id() == pinfo.replication_id()
                    && info.streaming(),
            )
        }
        .await;
        if !matches!(linked, Ok(true)) && !lossy {
            return Outcome::Abandon(AppError::Unavailable {
                code: "replica_not_linked",
                message: format!(
                    "Replica '{}' is not replicating from '{}' right now (link down or resyncing); nothing was changed, try again",
                    replica.name, primary.name
                ),
            });
        }
        if crate::failpoint::active("promotion.replica_stalls") {
            stall_replica(&mut r).await;
        }

        let bound = Duration::from_millis(self.config.promotion_pause_ms);
        let catch_up_budget = bound / CATCH_UP_SHARE;
        let paused_at = Instant::now();
        let pause_started_at = now_micros();
        info!(primary = %primary.name, replica = %replica.name, pause_started_at,
              bound_ms = self.config.promotion_pause_ms, "pausing writes on the primary for the catch-up");
        if let Err(e) = p.pause_writes(self.config.promotion_pause_ms).await {
            let _ = p.unpause().await;
            return Outcome::Abandon(AppError::Unavailable {
                code: "primary_unresponsive",
                message: format!(
                    "Could not pause writes on '{}' ({e}); nothing was changed, try again",
                    primary.name
                ),
            });
        }
        enum CatchUp {
            /// Caught up and detached; how far behind it was at the pause.
            Detached(i64),
            Behind(i64),
            /// The replica stopped answering before anything was sent to it.
            Unreachable(RedisError),
            /// `REPLICAOF NO ONE` was sent and not confirmed.
            Uncertain(RedisError),
        }
        let result = async {
            let pinfo = match p.info(&["replication"]).await {
                Ok(i) => i,
                Err(_) => return CatchUp::Behind(-1),
            };
            let target = pinfo.primary_offset();
            let history = pinfo.replication_id().unwrap_or_default().to_string();
            let mut behind_at_pause = None;
            loop {
                crate::failpoint::hit("promotion.writes_paused");
                let rinfo = match r.info(&["replication"]).await {
                    Ok(i) => i,
                    Err(e) => return CatchUp::Unreachable(e),
                };
                let offset = rinfo.replica_offset().unwrap_or(-1);
                // Only an offset in the primary's current history counts (a primary
                // restarted from its AOF starts a new one at offset 0).
                let same_history = rinfo.replication_id() == Some(history.as_str());
                let behind_now = (target - offset).max(0);
                let behind_at_pause = *behind_at_pause.get_or_insert(behind_now);
                // What an answer reports: bytes, or -1 when the replica is not in the
                // primary's current history (no byte count means anything then).
                let gap = if same_history { behind_now } else { -1 };
                let caught_up = same_history && rinfo.streaming() && offset >= target;
                let give_up = paused_at.elapsed() >= catch_up_budget;
                if caught_up || (give_up && lossy) {
                    let detached = match r.detach().await {
                        Ok(()) if crate::failpoint::active("promotion.detach_unconfirmed") => {
                            Err(RedisError::from(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "fault point promotion.detach_unconfirmed",
                            )))
                        }
                        other => other,
                    };
                    return match detached {
                        Ok(()) if caught_up => CatchUp::Detached(behind_at_pause),
                        Ok(()) => CatchUp::Behind(gap),
                        Err(e) => CatchUp::Uncertain(e),
                    };
                }
                if give_up {
                    return CatchUp::Behind(gap);
                }
                tokio::time::sleep(CATCH_UP_POLL).await;
            }
        }
        .await;
        let unpaused = p.unpause().await;
        let pause = paused_at.elapsed();
        if let Err(e) = unpaused {
            warn!(primary = %primary.name, error = %e, "could not unpause the primary; its pause ends by itself within the bound");
        }
        let behind_text = |bytes: i64| {
            if bytes >= 0 {
                format!("{bytes} bytes behind")
            } else {
                "not in its current replication history".to_string()
            }
        };
        match result {
            CatchUp::Detached(behind) => {
                crate::failpoint::hit("promotion.detached");
                Outcome::Detached(Promoted {
                    replica: replica.name.clone(),
                    primary: primary.name.clone(),
                    write_pause: Some(pause),
                    pause_started_at: Some(pause_started_at),
                    behind_at_pause: Some(behind),
                    without_catch_up: None,
                    lost_bytes_estimate: None,
                    aof_pending: false,
                })
            }
            // Lossy: detached although behind.
            CatchUp::Behind(bytes) if lossy => Outcome::Detached(Promoted {
                replica: replica.name.clone(),
                primary: primary.name.clone(),
                write_pause: Some(pause),
                pause_started_at: Some(pause_started_at),
                behind_at_pause: (bytes >= 0).then_some(bytes),
                without_catch_up: Some(NoCatchUp::ReplicaBehind),
                lost_bytes_estimate: (bytes >= 0).then_some(bytes),
                aof_pending: false,
            }),
            CatchUp::Behind(bytes) => Outcome::Abandon(AppError::Unavailable {
                code: "replica_behind",
                message: format!(
                    "Replica '{}' could not catch up with '{}' within {} ms ({}); writes on '{}' resumed and nothing was changed, try again (or promote with lossy=true)",
                    replica.name,
                    primary.name,
                    catch_up_budget.as_millis(),
                    behind_text(bytes),
                    primary.name
                ),
            }),
            CatchUp::Unreachable(e) => replica_unreachable(replica, e),
            CatchUp::Uncertain(e) => Outcome::Uncertain(format!(
                "REPLICAOF NO ONE on '{}' was not confirmed ({e})",
                replica.name
            )),
        }
    }
}

pub(crate) fn replica_unreachable(replica: &ServiceRow, e: RedisError) -> Outcome {
    Outcome::Abandon(AppError::Unavailable {
        code: "replica_unreachable",
        message: format!(
            "Replica '{}' does not answer ({e}); nothing was changed, try again",
            replica.name
        ),
    })
}

/// Fault point `promotion.replica_stalls`: cuts the replica off its primary (a wrong
/// replication password, its link closed), so it answers but cannot catch up.
async fn stall_replica(r: &mut Admin) {
    let _ = r.config_set("primaryauth", "stalled-by-failpoint").await;
    let _ = r.client_kill_primary().await;
    // Writes acknowledged by the primary meanwhile are what the replica lacks.
    tokio::time::sleep(Duration::from_millis(50)).await;
}
