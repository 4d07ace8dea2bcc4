//! Replication lag in milliseconds, measured by Keyhaven (DESIGN → Observing).
//!
//! Every [`PERIOD`], Keyhaven publishes a heartbeat on its [`channel`] on each primary it runs
//! and on each primary in another cloud that a replica it runs follows,
//! through its own admin user: `v1 <primary id> <send time, µs> <HMAC-SHA256>`. Valkey
//! replicates a PUBLISH to the primary's replicas, which deliver it to their own
//! subscribers when they *apply* it; the same process subscribes on every replica and
//! records the send time of the newest heartbeat each replica has applied. Then `lag_ms` is
//! `now − send time of the newest heartbeat applied`, counted from the moment the next one
//! was sent (before that there was nothing to miss), and, while the replica has applied
//! every heartbeat sent, the time the newest one took to be applied (`Heartbeats::lag_ms`):
//! DESIGN's figure less at most one [`PERIOD`], so an idle replica reads its real delivery
//! time (~1 ms on loopback), not a 0–100 ms sawtooth of the period.
//! The figure keeps rising while a replica is stalled or cut off, and one clock (this
//! process's) is on both sides of the subtraction. Nothing is written into the tenant's
//! keyspace: a PUBLISH is not a key (it does advance the replication offset by its size,
//! ~160 bytes with its framing, and shows in `INFO commandstats` as `cmdstat_publish`; docs/metrics.md).
//!
//! A tenant may PUBLISH on any channel (the service user keeps `&*`: Valkey's ACL has no
//! "all channels but one", and the glob patterns that spell it out deny every PSUBSCRIBE
//! whose pattern is not literally one of them). So heartbeats are authenticated: the MAC
//! is keyed with a key derived from the primary's admin password, a secret the tenant
//! never sees, and covers the primary's id and the send time. A forged heartbeat, or one of another primary, is
//! ignored; a replayed old one changes nothing, since only a newer send time counts. The
//! limit: a tenant who subscribes on the primary and re-publishes each heartbeat on a
//! replica whose link is cut (its process still answering) could make that replica look
//! current; a stalled replica (SIGSTOP, a long script) cannot be spoofed, since it applies
//! nothing, the tenant's PUBLISH included.

use crate::App;
use keyhaven_core::Role;
use keyhaven_core::time::now_micros;
use keyhaven_runtime::admin::{Admin, Subscription};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::debug;

/// The reserved channel prefix. Keyhaven alone publishes on it.
pub const CHANNEL: &str = "__keyhaven:heartbeat";

/// The channel of the instance serving `cloud`: `__keyhaven:heartbeat:<cloud>`. Each
/// instance publishes and observes its own, so a replica's lag is always one instance's
/// clock minus the same clock, even when instances in two clouds publish on one primary.
pub fn channel(cloud: &str) -> String {
    format!("{CHANNEL}:{cloud}")
}
/// How often each primary gets a heartbeat: the resolution of `lag_ms` on an idle replica.
pub const PERIOD: Duration = Duration::from_millis(100);
/// How often the set of nodes is read again from the store (new, deleted, promoted ones).
const REFRESH: Duration = Duration::from_secs(1);
/// Bound on connecting to a node; a node that does not answer is retried after [`RETRY`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RETRY: Duration = Duration::from_millis(200);

/// Heartbeats sent and applied, in this process's memory: a measurement, kept no longer
/// than the process that can take it (DESIGN: the process that sends a heartbeat is the
/// one that observes it, so one clock is on both sides).
#[derive(Default)]
pub struct Heartbeats {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Primary id → send times (µs) of its last heartbeats, oldest first.
    sent: HashMap<String, VecDeque<i64>>,
    /// Replica id → the newest heartbeat it applied.
    applied: HashMap<String, Applied>,
    /// Replica id → how long each heartbeat it applied took, send to apply.
    delays: HashMap<String, Delays>,
}

/// Upper bounds (seconds) of the buckets of [`Delays`].
pub const DELAY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram of the send-to-apply times of a replica's heartbeats.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delays {
    /// Heartbeats at or under each bound of [`DELAY_BUCKETS`] (not cumulative).
    pub buckets: [u64; DELAY_BUCKETS.len()],
    pub count: u64,
    pub sum_seconds: f64,
}

impl Delays {
    pub(crate) fn observe(&mut self, seconds: f64) {
        if let Some(i) = DELAY_BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_seconds += seconds;
    }
}

struct Applied {
    primary_id: String,
    /// Send time (µs).
    sent: i64,
    /// When this process received it from the replica (µs).
    received: i64,
}

/// Send times kept per primary: a minute of heartbeats.
const SENT_KEPT: usize = 600;

impl Heartbeats {
    /// The replica's lag in ms, `None` until it applied a heartbeat:
    /// - while a heartbeat sent after the newest one it applied is still missing:
    ///   `now − send time of the newest applied`, less the time until the next one was
    ///   sent (`now − send time of the oldest one missing`): how long the replica has been
    ///   missing something its primary was sent, rising for as long as it stays stalled;
    /// - once it has applied the newest heartbeat sent: how long that one took to apply.
    pub fn lag_ms(&self, replica_id: &str) -> Option<i64> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let a = inner.applied.get(replica_id)?;
        let sent = inner.sent.get(&a.primary_id);
        let missing_since = match sent {
            // Older than anything kept: the oldest missing one is gone from the window.
            Some(q) if q.front().is_some_and(|first| *first > a.sent) => Some(a.sent),
            Some(q) => q.iter().find(|t| **t > a.sent).copied(),
            None => None,
        };
        let micros = match missing_since {
            Some(t) => now_micros() - t,
            None => a.received - a.sent,
        };
        Some((micros / 1000).max(0))
    }

    /// The send-to-apply times of the replica's heartbeats so far (this process's).
    pub fn delays(&self, replica_id: &str) -> Option<Delays> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.delays.get(replica_id).cloned()
    }

    /// Records a heartbeat just before it is sent to the primary.
    fn sent(&self, primary_id: &str, sent: i64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let q = inner.sent.entry(primary_id.to_string()).or_default();
        q.push_back(sent);
        if q.len() > SENT_KEPT {
            q.pop_front();
        }
    }

    /// Records a heartbeat the replica applied; only a newer one counts.
    fn applied(&self, replica_id: &str, primary_id: &str, sent: i64) {
        let received = now_micros();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match inner.applied.get(replica_id) {
            Some(a) if a.primary_id == primary_id && a.sent >= sent => {}
            _ => {
                inner
                    .delays
                    .entry(replica_id.to_string())
                    .or_default()
                    .observe((received - sent).max(0) as f64 / 1e6);
                inner.applied.insert(
                    replica_id.to_string(),
                    Applied {
                        primary_id: primary_id.to_string(),
                        sent,
                        received,
                    },
                );
            }
        }
    }

    /// Forgets replicas no longer linked as `keep` says (replica → primary), and
    /// primaries no longer published to.
    fn forget_others(&self, keep: &HashMap<String, String>, primaries: &HashSet<String>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .applied
            .retain(|replica, a| keep.get(replica) == Some(&a.primary_id));
        inner.sent.retain(|primary, _| primaries.contains(primary));
        let inner = &mut *inner;
        inner
            .delays
            .retain(|replica, _| inner.applied.contains_key(replica));
    }
}

/// HMAC-SHA256 (RFC 2104), a few lines over `sha2`.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| block.map(|k| k ^ b);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The MAC key, derived from the primary's admin password so that the password itself
/// keys nothing but authentication.
fn mac_key(secret: &str) -> [u8; 32] {
    hmac_sha256(secret.as_bytes(), b"keyhaven heartbeat key v1")
}

/// The heartbeat of `primary_id` sent at `sent` (µs), signed with the primary's `key`.
pub fn payload(primary_id: &str, sent: i64, key: &str) -> String {
    let body = format!("v1 {primary_id} {sent}");
    let mac = hmac_sha256(&mac_key(key), body.as_bytes());
    format!("{body} {}", hex(&mac))
}

/// The send time of a heartbeat, if it is a genuine one of `primary_id`.
pub fn verify(payload: &[u8], primary_id: &str, key: &str) -> Option<i64> {
    let text = std::str::from_utf8(payload).ok()?;
    let (body, mac) = text.rsplit_once(' ')?;
    let mut parts = body.split(' ');
    if parts.next()? != "v1" || parts.next()? != primary_id {
        return None;
    }
    let sent: i64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    let expected = hex(&hmac_sha256(&mac_key(key), body.as_bytes()));
    // Equal length, compared without an early exit.
    (mac.len() == expected.len()
        && mac
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0)
        .then_some(sent)
}

/// One task per node: a publisher per primary, a subscriber per replica. The key says
/// everything the task was started with, so a changed port or password restarts it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Job {
    Publish {
        id: String,
        host: String,
        port: u16,
        admin_password: String,
    },
    Subscribe {
        id: String,
        host: String,
        port: u16,
        admin_password: String,
        primary_id: String,
        primary_admin_password: String,
    },
}

/// Runs the heartbeats until `shutdown` turns true.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut tasks: HashMap<Job, JoinHandle<()>> = HashMap::new();
    loop {
        let wanted = wanted_jobs(&app).await;
        tasks.retain(|job, task| {
            let keep = wanted.contains(job) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        let replicas: HashMap<String, String> = wanted
            .iter()
            .filter_map(|j| match j {
                Job::Subscribe { id, primary_id, .. } => Some((id.clone(), primary_id.clone())),
                Job::Publish { .. } => None,
            })
            .collect();
        let primaries: HashSet<String> = wanted
            .iter()
            .filter_map(|j| match j {
                Job::Publish { id, .. } => Some(id.clone()),
                Job::Subscribe { .. } => None,
            })
            .collect();
        app.heartbeats.forget_others(&replicas, &primaries);
        for job in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = tasks.entry(job) {
                let task = tokio::spawn(run_job(app.clone(), slot.key().clone()));
                slot.insert(task);
            }
        }
        tokio::select! {
            // Not on `app.wake`: that wakes the reconciler, and a waiter here could take it.
            _ = tokio::time::sleep(REFRESH) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            for task in tasks.values() {
                task.abort();
            }
            return;
        }
    }
}

/// The powered primaries, and the powered replicas with their primary.
async fn wanted_jobs(app: &App) -> Vec<Job> {
    let loaded = app
        .store
        .read(|tx| {
            let services = tx.services_all()?;
            let mut links = Vec::new();
            for s in services.iter().filter(|s| s.role == Role::Replica) {
                links.extend(
                    tx.integrations_of_service(&s.id)?
                        .into_iter()
                        .filter(|l| l.dest_service_id == s.id),
                );
            }
            Ok::<_, crate::AppError>((services, links))
        })
        .await;
    let (services, links) = match loaded {
        Ok(v) => v,
        Err(e) => {
            debug!(error = %e, "heartbeats: could not read the services");
            return Vec::new();
        }
    };
    let by_id: HashMap<&str, _> = services.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut jobs = Vec::new();
    // Primaries elsewhere that a replica here follows.
    let followed: HashSet<&str> = services
        .iter()
        .filter(|s| s.role == Role::Replica && app.is_mine(&s.cloud))
        .filter_map(|s| links.iter().find(|l| l.dest_service_id == s.id))
        .map(|l| l.source_service_id.as_str())
        .collect();
    for s in services.iter().filter(|s| s.powered) {
        match s.role {
            Role::Primary if app.is_mine(&s.cloud) || followed.contains(s.id.as_str()) => jobs
                .push(Job::Publish {
                    id: s.id.clone(),
                    host: app.node_host(s),
                    port: s.port,
                    admin_password: s.admin_password.clone(),
                }),
            Role::Primary => {}
            Role::Replica if !app.is_mine(&s.cloud) => {}
            Role::Replica => {
                let Some(primary) = links
                    .iter()
                    .find(|l| l.dest_service_id == s.id)
                    .and_then(|l| by_id.get(l.source_service_id.as_str()))
                else {
                    continue;
                };
                jobs.push(Job::Subscribe {
                    id: s.id.clone(),
                    host: app.node_host(s),
                    port: s.port,
                    admin_password: s.admin_password.clone(),
                    primary_id: primary.id.clone(),
                    primary_admin_password: primary.admin_password.clone(),
                });
            }
        }
    }
    jobs
}

async fn run_job(app: Arc<App>, job: Job) {
    loop {
        let result = match &job {
            Job::Publish {
                id,
                host,
                port,
                admin_password,
            } => publish(&app, host, id, *port, admin_password).await,
            Job::Subscribe {
                id,
                host,
                port,
                admin_password,
                primary_id,
                primary_admin_password,
            } => {
                subscribe(
                    &app,
                    host,
                    id,
                    *port,
                    admin_password,
                    primary_id,
                    primary_admin_password,
                )
                .await
            }
        };
        debug!(?result, "heartbeat connection ended; reconnecting");
        tokio::time::sleep(RETRY).await;
    }
}

/// Publishes a heartbeat every [`PERIOD`] until the connection fails.
async fn publish(app: &App, host: &str, id: &str, port: u16, key: &str) -> Result<(), String> {
    let mut admin = Admin::connect(host, port, key, CONNECT_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        // A primary whose writes are paused (a promotion) holds the PUBLISH until the
        // pause ends; the connection's own timeout bounds it.
        // Recorded before it is sent: a primary that stalls holds it unapplied, and the
        // lag of its replicas rises from this moment.
        let sent = now_micros();
        app.heartbeats.sent(id, sent);
        admin
            .publish(&channel(app.my_cloud()), &payload(id, sent, key))
            .await
            .map_err(|e| e.to_string())?;
    }
}

/// Records every genuine heartbeat the replica applies until the connection ends.
async fn subscribe(
    app: &App,
    host: &str,
    id: &str,
    port: u16,
    admin_password: &str,
    primary_id: &str,
    primary_key: &str,
) -> Result<(), String> {
    let mut sub = Subscription::connect(
        host,
        port,
        admin_password,
        &channel(app.my_cloud()),
        CONNECT_TIMEOUT,
    )
    .await
    .map_err(|e| e.to_string())?;
    while let Some(msg) = sub.next().await {
        match verify(&msg, primary_id, primary_key) {
            Some(sent) => app.heartbeats.applied(id, primary_id, sent),
            None => debug!(replica = %id, "ignored a heartbeat that is not genuine"),
        }
    }
    Err("subscription closed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn only_genuine_heartbeats_of_the_primary_verify() {
        let p = payload("prim-id", 1234, "secret");
        assert_eq!(verify(p.as_bytes(), "prim-id", "secret"), Some(1234));
        assert_eq!(verify(p.as_bytes(), "prim-id", "other"), None);
        assert_eq!(verify(p.as_bytes(), "other-id", "secret"), None);
        let forged = p.replace(" 1234 ", " 9999 ");
        assert_eq!(verify(forged.as_bytes(), "prim-id", "secret"), None);
        assert_eq!(verify(b"v1 prim-id 5 00", "prim-id", "secret"), None);
        assert_eq!(verify(b"", "prim-id", "secret"), None);
    }

    #[test]
    fn lag_is_the_apply_time_when_current_and_rises_while_a_heartbeat_is_missing() {
        let h = Heartbeats::default();
        assert_eq!(h.lag_ms("r"), None);
        let now = now_micros();
        h.sent("p", now - 9_000_000);
        h.sent("p", now - 5_000_000);
        h.applied("r", "p", now - 9_000_000);
        // Missing the one sent 5 s ago.
        let lag = h.lag_ms("r").unwrap();
        assert!((5000..6000).contains(&lag), "{lag}");
        // Applied the newest sent: current; its apply time is ~5 s here.
        h.applied("r", "p", now - 5_000_000);
        let lag = h.lag_ms("r").unwrap();
        assert!((5000..6000).contains(&lag), "{lag}");
        // An older one (a replay) changes nothing, not even the histogram.
        h.applied("r", "p", now - 9_000_000);
        assert!(h.lag_ms("r").unwrap() >= 5000);
        let d = h.delays("r").unwrap();
        assert_eq!(d.count, 2);
        // 9 s and 5 s: both in the 10 s bucket.
        assert_eq!(d.buckets[DELAY_BUCKETS.len() - 1], 2);
        assert!((13.9..14.1).contains(&d.sum_seconds), "{d:?}");
        h.sent("p", now_micros());
        h.applied("r", "p", now_micros() - 1000);
        assert!(h.lag_ms("r").unwrap() < 1000);
        h.forget_others(
            &HashMap::from([("r".to_string(), "q".to_string())]),
            &HashSet::new(),
        );
        assert_eq!(h.lag_ms("r"), None);
    }
}
