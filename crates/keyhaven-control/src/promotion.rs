//! Promotion of a read replica to an independent primary, by deleting its `read_replica`
//! link (`DELETE /v1/project/P/integration/ID`), with no acknowledged write lost.
//!
//! 1. The intent is recorded first, in one transaction: the link becomes `promoting` (with
//!    the request's `lossy` choice) and the replica's desired role becomes primary at the
//!    next generation. Of concurrent requests exactly one moves the link from `active`; the
//!    others get 409 `promotion_in_progress` while it runs, 404 once the link is gone.
//! 2. The replica's snapshot: a node restarted in its staged role starts from it, so it must
//!    hold the data. When the one on disk holds keys (its RDB header says so), or the
//!    replica holds none, a fresh one is started and not waited for; when it is missing or
//!    holds none while the replica has keys, the promotion waits for one. Then the config is staged as a primary (and its staged generation recorded), so
//!    neither a node restart nor a stale reconciler pass brings it back following the old
//!    primary.
//! 3. If the primary answers a PING within the PING timeout: `CLIENT PAUSE <bound> WRITE`
//!    on it, read its replication id and offset once right after the pause, wait until the
//!    replica is linked to that same history and its offset is at or past it (not equal: a
//!    paused primary still sends PINGs), `REPLICAOF NO ONE` on the replica, `CLIENT
//!    UNPAUSE`. Every write acknowledged before the pause is in that offset, so it is on the
//!    promoted node. Keyhaven gives up the catch-up at half the bound, so it always resumes
//!    the primary itself, well before Valkey's own timeout would.
//! 4. If the primary does not answer, the runtime says whether its process exists:
//!    - **down** (no process): the replica is detached at once and the last gap Keyhaven
//!      observed is recorded as `lost_bytes_estimate` (`null` when it never measured one);
//!    - **alive but silent** (a long script, a tenant's pause, SIGSTOP): 503
//!      `primary_unresponsive`, nothing changed. Taking such a primary for down would lose
//!      every write it acknowledged that the replica had not applied yet.
//!
//!    Only a lossy request (`?lossy=true`) detaches without catch-up from a live primary
//!    (silent, or one whose replica cannot catch up within the bound), recording the gap.
//! 5. The promoted node turns its AOF on and the link is deleted; the request answers. The
//!    first AOF is written in the background (`aof_pending` until it is): until then a
//!    restart of the node starts from its last RDB snapshot (DESIGN → Promotion 7), so the
//!    answer never waits for work that grows with the dataset.
//!
//! Answers: a refusal (4xx, 503) always means nothing changed, and nothing will. Once
//! `REPLICAOF NO ONE` may have reached the replica the promotion is only ever rolled
//! **forward**: when the request cannot finish it (a node timed out, the promoted node is
//! restarting) it answers [`Promotion::Finishing`] (202) and the reconciler finishes it. A crash
//! anywhere in 1–5 leaves a `promoting` link that the reconciler rolls forward at the next
//! start; a roll-forward waits for a live primary rather than abandon (the crashed request
//! may have answered 202), and a role's generation only goes up, so a promoted node is never
//! re-attached.

use crate::spec::node_spec;
use crate::{App, AppError, Caller};
use keyhaven_core::time::now_micros;
use keyhaven_core::{Role, ServiceState};
use keyhaven_runtime::admin::Admin;
use keyhaven_runtime::{Ensured, NodeProcess, NodeSpec, RuntimeError};
use keyhaven_store::{IntegrationRow, LinkStatus, ServiceRow};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Connection and command timeout towards the replica during a promotion.
pub(crate) const REPLICA_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for the replica's snapshot before a promotion.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(60);
/// Roll-forward attempts that wait for a primary without a process (the reconciler may be
/// starting it) before it is taken for down.
const ROLL_FORWARD_PRIMARY_ATTEMPTS: u32 = 4;

/// What a promotion request achieved.
#[derive(Debug, Clone)]
pub enum Promotion {
    /// The replica is an independent primary and its link is gone (200).
    Done(Promoted),
    /// `REPLICAOF NO ONE` may have reached the replica but the request could not finish;
    /// the link stays `promoting` and the reconciler finishes the promotion (202).
    Finishing { replica: String, reason: String },
}

/// What a finished promotion reports.
#[derive(Debug, Clone)]
pub struct Promoted {
    pub replica: String,
    pub primary: String,
    /// How long writes on the primary were paused, when it answered.
    pub write_pause: Option<Duration>,
    /// When the pause began (µs since the epoch, read right before `CLIENT PAUSE`): every
    /// write the primary acknowledged before it is on the promoted node.
    pub pause_started_at: Option<i64>,
    /// How far the replica was behind the primary's offset right after the pause: the bytes
    /// the catch-up waited for.
    pub behind_at_pause: Option<i64>,
    /// Why the replica was detached without catching up, when it was.
    pub without_catch_up: Option<NoCatchUp>,
    /// Bytes the promoted node may lack: measured at the pause (a lossy promotion of a
    /// replica that could not catch up), else the last gap Keyhaven observed; `None` when
    /// nothing may be missing or when it is unknown (see `without_catch_up`).
    pub lost_bytes_estimate: Option<i64>,
    /// The new primary's first AOF was still being written when the request answered: until
    /// it is, a crash of the node restarts it from its last snapshot (DESIGN → Promotion 7).
    pub aof_pending: bool,
}

/// Why a promotion detached the replica without catch-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoCatchUp {
    /// The primary's process did not exist.
    PrimaryDown,
    /// The primary runs but did not answer, and the request was lossy.
    PrimaryUnresponsive,
    /// The replica could not catch up within the bound, and the request was lossy.
    ReplicaBehind,
}

impl Promoted {
    /// One sentence for the API's answer and the CLI.
    pub fn describe(&self) -> String {
        let what = self.what_happened();
        if self.aof_pending {
            format!(
                "{what}; its first AOF is being written in the background (until it is, a crash of '{}' restarts it from its last snapshot)",
                self.replica
            )
        } else {
            what
        }
    }

    fn what_happened(&self) -> String {
        let (r, p) = (&self.replica, &self.primary);
        let gap = |lost: Option<i64>| match lost {
            Some(n) => format!(
                "it was {n} bytes behind when Keyhaven last measured; writes '{p}' acknowledged after that may be missing"
            ),
            None => format!(
                "how much it lacks is unknown (Keyhaven never measured its gap); writes '{p}' acknowledged recently may be missing"
            ),
        };
        match (self.without_catch_up, self.write_pause) {
            (None, Some(pause)) => format!(
                "'{r}' is now a primary with every write '{p}' acknowledged (writes on '{p}' paused {:.1} ms while it caught up {} bytes)",
                pause.as_secs_f64() * 1000.0,
                self.behind_at_pause.unwrap_or(0)
            ),
            (None, None) => format!("'{r}' is now a primary (it was detached already)"),
            (Some(NoCatchUp::PrimaryDown), _) => format!(
                "'{r}' is now a primary; '{p}' was down (no valkey-server process), so {}",
                gap(self.lost_bytes_estimate)
            ),
            (Some(NoCatchUp::PrimaryUnresponsive), _) => format!(
                "'{r}' is now a primary (lossy): '{p}' did not answer, so {}",
                gap(self.lost_bytes_estimate)
            ),
            (Some(NoCatchUp::ReplicaBehind), _) => format!(
                "'{r}' is now a primary (lossy): it could not catch up with '{p}' and lacks {} bytes it had acknowledged",
                self.lost_bytes_estimate.unwrap_or(0)
            ),
        }
    }
}

pub(crate) enum Outcome {
    /// The replica was detached.
    Detached(Promoted),
    /// Nothing was changed on the replica; the intent is to be abandoned.
    Abandon(AppError),
    /// `REPLICAOF NO ONE` was sent but not confirmed: only forward from here.
    Uncertain(String),
}

/// How long a promotion's claim in the store holds without its instance: an instance that
/// dies mid-promotion leaves its claim, and another may take the promotion over (roll it
/// forward) once it expired; the same instance started again takes it over at once. Longer
/// than the sum of every bound of a promotion (snapshot, catch-up, AOF, node timeouts).
pub(crate) const CLAIM_TTL: Duration = Duration::from_secs(600);

/// Marks a link's promotion as running in this process, and claimed in the store for this
/// instance (so no other instance runs it); both released on drop.
pub(crate) struct InFlight {
    app: Arc<App>,
    link: String,
    /// The claim's expiry in the store, when this process holds one.
    claimed: Option<i64>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.app
            .promotions_in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.link);
        if let Some(until) = self.claimed {
            let (app, link) = (self.app.clone(), self.link.clone());
            tokio::spawn(async move {
                let owner = app.config.instance_id.clone();
                if let Err(e) = app
                    .store
                    .write(|tx| tx.integration_release(&link, &owner, until))
                    .await
                {
                    warn!(link = %link, error = %e, "could not release a promotion's claim; it expires by itself");
                }
            });
        }
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

fn in_progress(id: &str) -> AppError {
    AppError::conflict(
        "promotion_in_progress",
        format!(
            "Service integration '{}' is being promoted right now; its promotion finishes by itself",
            id.chars().take(64).collect::<String>()
        ),
    )
}

impl App {
    /// Claims a link's promotion for this process and, in the store, for this instance;
    /// `None` when one runs already here or in another instance whose claim holds (or the
    /// link does not exist).
    pub(crate) async fn claim_promotion(self: &Arc<Self>, link: &str) -> Option<InFlight> {
        let inserted = self
            .promotions_in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(link.to_string());
        if !inserted {
            return None;
        }
        let mut held = InFlight {
            app: self.clone(),
            link: link.to_string(),
            claimed: None,
        };
        let now = now_micros();
        let until = now + CLAIM_TTL.as_micros() as i64;
        let owner = &self.config.instance_id;
        match self
            .store
            .write(|tx| tx.integration_claim(link, owner, now, until))
            .await
        {
            Ok(true) => {
                held.claimed = Some(until);
                Some(held)
            }
            Ok(false) | Err(_) => None,
        }
    }

    pub(crate) fn promotion_in_flight(&self, link_id: &str) -> bool {
        self.promotions_in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(link_id)
    }

    /// Whether the primary's process exists. In this instance's cloud its runtime knows.
    /// In another cloud, only that cloud's instance could tell: while it is alive, a
    /// primary that does not answer is taken to run (never down: nothing acknowledged is
    /// thrown away on a guess); once its heartbeat expired and the node refuses the
    /// connection (the caller's PING failed without timing out), nothing vouches for it and
    /// it is down (DESIGN → Promotion 3). A node that timed out may be alive and stalled:
    /// it runs.
    async fn primary_process(&self, primary: &ServiceRow, timed_out: bool) -> NodeProcess {
        if primary.cloud == self.my_cloud() {
            return self.runtime.process(&primary.id).await;
        }
        match self.cloud(&primary.cloud) {
            Some(c) if !c.is_lost() => NodeProcess::Running,
            _ if timed_out => NodeProcess::Running,
            _ => NodeProcess::NotRunning,
        }
    }

    /// `DELETE /v1/project/P/integration/ID`; `lossy` lets it detach without catch-up
    /// from a primary that runs but does not answer, or whose replica cannot catch up.
    pub async fn integration_delete(
        self: &Arc<Self>,
        caller: &Caller,
        project: &str,
        id: &str,
        lossy: bool,
    ) -> Result<Promotion, AppError> {
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
        let Some(_claim) = self.claim_promotion(id).await else {
            let link = self
                .store
                .read(|tx| {
                    crate::identity::visible_project(tx, caller, project)?;
                    Ok::<_, AppError>(tx.integration_get(project, id)?)
                })
                .await?;
            return Err(match link {
                Some(_) => in_progress(id),
                None => not_found(),
            });
        };
        let now = now_micros();
        let link = self.store.write(|tx| {
            crate::identity::visible_project(tx, caller, project)?;
            let link = tx.integration_get(project, id)?.ok_or_else(not_found)?;
            if link.status == LinkStatus::Promoting {
                return Err(in_progress(id));
            }
            let replica = tx
                .service_by_id(&link.dest_service_id)?
                .ok_or_else(|| AppError::Internal("link without replica".into()))?;
            // Only a replica that never held a whole dataset is refused here; one that is
            // merely slow to answer, or resyncing, goes on to the procedure, whose checks
            // name the real reason if it cannot be promoted now.
            if !replica.powered {
                return Err(AppError::conflict(
                    "replica_powered_off",
                    format!(
                        "Replica '{}' is powered off; power it on and promote it once it is RUNNING",
                        replica.name
                    ),
                ));
            }
            if replica.state == ServiceState::Rebuilding
                && !replica.health.synced
                && !replica.health.current
            {
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
            tx.integration_set_lossy(&link.id, lossy)?;
            let generation = tx.service_set_role(&replica.id, Role::Primary, now)?;
            Ok((
                IntegrationRow {
                    status: LinkStatus::Promoting,
                    lossy,
                    ..link
                },
                generation,
            ))
        }).await?;
        let (link, generation) = link;
        info!(project, replica = %link.dest_service, primary = %link.source_service, link = %link.id, lossy, generation, "promotion intent recorded");
        crate::failpoint::hit("promotion.intent_recorded");
        self.promote_steps(&link, None).await
    }

    /// Rolls forward a promotion left `promoting` (by a crash, or by a request that
    /// answered 202); `attempt` counts from 1.
    pub(crate) async fn promote_roll_forward(
        self: &Arc<Self>,
        link: &IntegrationRow,
        attempt: u32,
    ) {
        let Some(_claim) = self.claim_promotion(&link.id).await else {
            return;
        };
        // The link may have been finished since the reconciler read it.
        let link = match self
            .store
            .read(|tx| tx.integration_get(&link.project, &link.id))
            .await
        {
            Ok(Some(l)) if l.status == LinkStatus::Promoting => l,
            _ => return,
        };
        warn!(link = %link.id, replica = %link.dest_service, attempt, "rolling an interrupted promotion forward");
        match self.promote_steps(&link, Some(attempt)).await {
            Ok(Promotion::Done(_)) => {}
            Ok(Promotion::Finishing { reason, .. }) => {
                warn!(link = %link.id, reason = %reason, "roll-forward of a promotion did not finish; it is retried")
            }
            Err(e) => {
                warn!(link = %link.id, error = %e, "roll-forward of a promotion did not finish; it is retried")
            }
        }
    }

    /// Steps 2–5. `roll_forward` (the attempt number) when this process did not record
    /// the intent: it cannot know what was sent to the nodes before, so it never abandons.
    async fn promote_steps(
        &self,
        link: &IntegrationRow,
        roll_forward: Option<u32>,
    ) -> Result<Promotion, AppError> {
        let (replica, primary) = self
            .store
            .read(|tx| {
                Ok::<_, AppError>((
                    tx.service_by_id(&link.dest_service_id)?,
                    tx.service_by_id(&link.source_service_id)?,
                ))
            })
            .await?;
        let replica =
            replica.ok_or_else(|| AppError::Internal("promoting a missing replica".into()))?;
        let primary =
            primary.ok_or_else(|| AppError::Internal("promoting from a missing primary".into()))?;
        let new_spec = node_spec(&replica, None, "");
        // A snapshot first: a node restarted in its staged primary role starts from it, so
        // it must never come back empty. One that holds keys will do (a restart in the
        // window before the new primary's first AOF loses the writes since: DESIGN →
        // Promotion 7), and a fresh one is started without waiting; a replica whose
        // snapshot is missing or empty (it loaded its data straight into memory) waits for
        // its first, which is quick exactly when there is little data.
        let wait = self.runtime.snapshot_holds_keys(&replica.id).await != Some(true);
        if let Err(e) = self.snapshot_replica(&replica, wait).await {
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

        let ping_timeout = Duration::from_millis(self.config.promotion_ping_timeout_ms);
        // Whether the primary's silence was a timeout (it may be alive and stalled) rather
        // than a refused or broken connection.
        let mut timed_out = false;
        let primary_admin = match Admin::connect(
            &self.node_host(&primary),
            primary.port,
            &primary.admin_password,
            ping_timeout,
        )
        .await
        {
            Ok(mut p) => match p.ping().await {
                Ok(()) => Some(p),
                Err(e) => {
                    timed_out = e.is_timeout();
                    None
                }
            },
            Err(e) => {
                timed_out = e.is_timeout();
                None
            }
        };
        let outcome = match primary_admin {
            Some(mut p) => {
                self.detach_in_step(
                    &replica,
                    &primary,
                    &mut p,
                    link.lossy,
                    roll_forward.is_some(),
                )
                .await
            }
            None => match self.primary_process(&primary, timed_out).await {
                // Right after a restart the reconciler may not have started the primary
                // yet: a roll-forward gives it a few attempts before taking it for down.
                NodeProcess::NotRunning
                    if roll_forward.is_some_and(|a| a < ROLL_FORWARD_PRIMARY_ATTEMPTS) =>
                {
                    return Err(AppError::Unavailable {
                        code: "primary_unavailable",
                        message: format!("Primary '{}' does not run yet", primary.name),
                    });
                }
                NodeProcess::NotRunning => {
                    warn!(replica = %replica.name, primary = %primary.name,
                          "primary has no valkey-server process: detaching the replica at once");
                    self.detach_without_catch_up(&replica, &primary, NoCatchUp::PrimaryDown)
                        .await
                }
                NodeProcess::Running if link.lossy => {
                    warn!(replica = %replica.name, primary = %primary.name,
                          "primary runs but does not answer; the promotion is lossy: detaching the replica at once");
                    self.detach_without_catch_up(&replica, &primary, NoCatchUp::PrimaryUnresponsive)
                        .await
                }
                // Alive but silent: its acknowledged writes may not be on the replica yet.
                // A roll-forward waits for it (it is retried with a growing delay).
                NodeProcess::Running => Outcome::Abandon(AppError::Unavailable {
                    code: "primary_unresponsive",
                    message: format!(
                        "Primary '{}' runs but did not answer within {} ms (a long-running script, a pause or a stall); \
                         promoting now could lose writes it acknowledged, so nothing was changed. \
                         Retry when it answers, or promote with lossy=true to detach the replica at once",
                        primary.name, self.config.promotion_ping_timeout_ms
                    ),
                }),
            },
        };
        let promoted = match outcome {
            Outcome::Detached(p) => p,
            Outcome::Abandon(e) => {
                return self
                    .abandon_or_fail(link, &replica, &primary, roll_forward, e)
                    .await;
            }
            Outcome::Uncertain(reason) => return Ok(self.finishing(&replica, reason)),
        };

        // Step 5: the new primary's AOF on (written in the background), then the link goes.
        // From here on every failure is answered "finishing": the replica takes writes.
        let aof_pending = match self.finish_role(&replica, &new_spec).await {
            Ok(pending) => pending,
            Err(e) => return Ok(self.finishing(&replica, e.to_string())),
        };
        let promoted = Promoted {
            aof_pending,
            ..promoted
        };
        crate::failpoint::hit("promotion.node_updated");
        if let Err(e) = self
            .store
            .write(|tx| {
                tx.service_set_lost_bytes(&replica.id, promoted.lost_bytes_estimate)?;
                tx.integration_delete(&link.id)?;
                Ok::<_, AppError>(())
            })
            .await
        {
            return Ok(self.finishing(&replica, e.to_string()));
        }
        info!(project = %link.project, replica = %promoted.replica, primary = %promoted.primary,
              generation = replica.generation,
              write_pause_us = promoted.write_pause.map(|d| d.as_micros() as u64),
              pause_started_at = promoted.pause_started_at,
              behind_at_pause = promoted.behind_at_pause,
              without_catch_up = ?promoted.without_catch_up,
              lost_bytes_estimate = promoted.lost_bytes_estimate,
              "replica promoted to primary");
        Ok(Promotion::Done(promoted))
    }

    fn finishing(&self, replica: &ServiceRow, reason: String) -> Promotion {
        warn!(replica = %replica.name, reason = %reason, "promotion continues in the background");
        self.wake.notify_one();
        Promotion::Finishing {
            replica: replica.name.clone(),
            reason,
        }
    }

    /// Applies the primary role to the detached node (starting it if it died): its AOF is
    /// turned on, and written in the background (returns whether that is still running:
    /// `aof_pending`). The request does not wait for it: its time grows with the dataset
    /// (DESIGN → Promotion 7); the reconciler finishes it.
    async fn finish_role(&self, replica: &ServiceRow, spec: &NodeSpec) -> Result<bool, AppError> {
        match self.runtime.ensure(spec).await.map_err(runtime_error)? {
            Ensured::Running { role_pending, .. } => Ok(role_pending),
            Ensured::BackingOff {
                port_in_use: true, ..
            } => {
                // Another program took its port: move it; the next attempt finishes.
                let port = self.service_move_port(&replica.id).await?;
                Err(AppError::Unavailable {
                    code: "node_unavailable",
                    message: format!("The promoted node's port was taken; it moves to port {port}"),
                })
            }
            Ensured::BackingOff { last_exit, .. } => Err(AppError::Unavailable {
                code: "node_unavailable",
                message: format!(
                    "The promoted node is restarting ({last_exit}); the promotion finishes when it is back"
                ),
            }),
        }
    }

    /// Makes the replica write an RDB snapshot and, with `wait`, waits for it (bounded).
    /// Without, it only starts one (or finds one being written). An unreachable
    /// replica is left for the later steps to handle; a replica already detached (a
    /// roll-forward) needs none.
    async fn snapshot_replica(&self, replica: &ServiceRow, wait: bool) -> Result<(), AppError> {
        let host = self.node_host(replica);
        let Ok(mut r) = Admin::connect(
            &host,
            replica.port,
            &replica.admin_password,
            REPLICA_TIMEOUT,
        )
        .await
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
        let Ok(info) = r.info(&["replication", "persistence", "keyspace"]).await else {
            // Busy or stalled: the detach step tells the caller why.
            return Ok(());
        };
        if !info.is_replica() {
            return Ok(());
        }
        // A replica that holds no key has nothing a restart from an empty snapshot could
        // lose but the writes that reach it from here on, which is the window's promise
        // anyway (DESIGN → Promotion 7): no need to wait. Valkey notices a finished
        // snapshot only at its next cron tick (every 100 ms at `hz 10`), so waiting would
        // cost an empty promotion ~100 ms.
        let wait = wait && info.keys() > 0;
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
            let running = info.snapshot_running();
            if started && !running {
                return match info.last_snapshot_status() {
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
            // A snapshot that holds keys is on disk already: this one only freshens it.
            if !wait {
                return Ok(());
            }
            // Ours is on disk once its file holds keys: Valkey fsyncs a snapshot before it
            // renames it into place, and notices the finished child only at its next cron
            // tick (up to 100 ms later at `hz 10`), so the file tells first.
            if started && self.runtime.snapshot_holds_keys(&replica.id).await == Some(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(failed(format!(
                    "it took longer than {} s",
                    SNAPSHOT_WAIT.as_secs()
                )));
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
    ) -> Result<Promotion, AppError> {
        if roll_forward.is_some() {
            // A replica that is down is started (in its staged primary role) so the next
            // attempt can finish.
            let spec = node_spec(replica, None, "");
            match self.runtime.ensure(&spec).await {
                Ok(Ensured::BackingOff {
                    port_in_use: true, ..
                }) => {
                    if let Err(e) = self.service_move_port(&replica.id).await {
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
        let restored = self
            .store
            .write(|tx| {
                tx.integration_set_status(&link.id, LinkStatus::Promoting, LinkStatus::Active)?;
                tx.integration_set_lossy(&link.id, false)?;
                tx.service_set_role(&replica.id, Role::Replica, now)?;
                // The primary as it is now (its port may have moved meanwhile).
                Ok::<_, AppError>((
                    tx.service_by_id(&replica.id)?,
                    tx.service_by_id(&primary.id)?,
                ))
            })
            .await?;
        if let (Some(row), Some(primary_now)) = restored {
            // Restores the replica config staged away above; the node itself was never
            // detached, so this changes nothing on it.
            let spec = node_spec(&row, Some(&primary_now), &self.node_host(&primary_now));
            if let Err(e) = self.runtime.ensure(&spec).await {
                warn!(replica = %replica.name, error = %e, "could not restore the replica config after an abandoned promotion");
            }
        }
        info!(replica = %replica.name, error = %error, "promotion abandoned; nothing changed");
        Err(error)
    }
}
