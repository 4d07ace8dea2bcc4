//! Observing a node: what its INFO says, as Keyhaven's [`NodeHealth`]. The control plane
//! decides what an observation means for a service's state (`keyhaven-control/src/plan.rs`);
//! reading Valkey's fields is done here, once.

use crate::admin::Admin;
use crate::info::Info;
use keyhaven_core::NodeHealth;
use keyhaven_core::time::now_micros;
use std::time::Duration;
use tracing::debug;

/// The node to observe.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub host: &'a str,
    pub port: u16,
    pub admin_password: &'a str,
    /// For logs.
    pub label: &'a str,
}

/// Observes one node: one INFO, read into a [`NodeHealth`]. For a replica, `primary_info`
/// is its primary's INFO read just before (offsets are compared in that order, so a
/// replica is never taken for ahead of its primary), and `last` its previous observation,
/// whose lasting figures are carried forward. Also returns the INFO, which a replica's
/// observation needs from its primary.
pub async fn observe(
    node: &Target<'_>,
    last: &NodeHealth,
    primary_info: Option<&Info>,
    timeout: Duration,
) -> (NodeHealth, Option<Info>) {
    let mut health = NodeHealth {
        observed_at: now_micros(),
        // Carry the last known gap forward so a promotion with the primary down can
        // report it, and whether the replica ever held a whole dataset.
        bytes_behind: last.bytes_behind,
        synced: last.synced,
        // The last figure stays when the node does not answer: a plan change is checked
        // against it.
        used_memory: last.used_memory,
        ..NodeHealth::default()
    };
    let observed = async {
        let mut admin = Admin::connect(node.host, node.port, node.admin_password, timeout).await?;
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
        Ok::<_, crate::admin::RedisError>((admin, info))
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
            .any(|r| r.port == node.port && r.state == "online");
        health.current = health.link_up == Some(true)
            && !health.sync_in_progress
            && offset >= primary_offset
            && listed_online;
    }
    health.synced = last.synced || health.current;
    // A replica that loaded its data straight into memory has no snapshot on disk: one,
    // once it is current, lets it resume with a partial resync after a restart, and lets
    // a promotion that finds it restarted start it from its data.
    if health.current
        && info.int("rdb_saves") == Some(0)
        && info.int("rdb_bgsave_in_progress") == Some(0)
        && let Err(e) = admin.bgsave_scheduled().await
    {
        debug!(node = node.label, error = %e, "could not start a snapshot");
    }
    (health, Some(info))
}
