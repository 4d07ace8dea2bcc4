//! What the reconciler last observed of a service's valkey-server. It is written to the
//! store after every observation, so GET requests can show live replication health without
//! ever talking to a valkey-server themselves.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeHealth {
    /// When this observation was made (µs since the epoch); 0 means "never observed".
    pub observed_at: i64,
    /// The node answered an authenticated PING.
    pub answered: bool,
    /// Role Valkey reports (`master` / `slave`), as opposed to the role Keyhaven wants.
    pub valkey_role: Option<String>,
    /// `master_repl_offset` on a primary, `slave_repl_offset` on a replica.
    pub repl_offset: Option<i64>,
    /// Replica only: `master_link_status` is `up`.
    pub link_up: Option<bool>,
    /// Replica only: seconds since the primary last sent anything.
    pub last_io_seconds_ago: Option<i64>,
    /// Replica only: seconds the link has been down, when it is.
    pub link_down_since_seconds: Option<i64>,
    /// Replica only: a full sync is running.
    pub sync_in_progress: bool,
    /// Replica only: progress of the running sync, in bytes: of the snapshot received
    /// (a sync through disk) or of the dataset loaded so far (a diskless sync).
    pub sync_read_bytes: Option<i64>,
    /// Replica only: the total those bytes grow towards: the snapshot's size, or the
    /// primary's dataset size (a diskless sync reports no total).
    pub sync_total_bytes: Option<i64>,
    /// Replica only: the primary's offset minus this replica's, read in that order.
    pub bytes_behind: Option<i64>,
    /// Replica only: the replica has completed a sync and caught up with its primary at
    /// least once since it was (re)attached; it then serves reads.
    pub current: bool,
    /// Replica only: it has been current at least once since it was created, so it holds
    /// a whole dataset (a prefix of its primary's history) even while it is slow to answer
    /// or resyncing. Carried from one observation to the next; a replica without it is in
    /// its first sync and cannot be promoted.
    #[serde(default)]
    pub synced: bool,
    /// `used_memory` of INFO memory, in bytes: the data in use that a plan change must
    /// leave room for (checked against the last observation, never by asking the node).
    #[serde(default)]
    pub used_memory: Option<i64>,
    /// `connected_clients` of INFO clients (Keyhaven's own connections included).
    #[serde(default)]
    pub connected_clients: Option<i64>,
    /// Primary: its first AOF is not written yet (a promoted replica, right after), as its
    /// runtime reported when it was last ensured.
    #[serde(default)]
    pub aof_pending: bool,
    /// Keys in all of the node's databases (INFO keyspace).
    #[serde(default)]
    pub keys: Option<i64>,
    /// `total_commands_processed` of INFO stats (Keyhaven's own commands included).
    #[serde(default)]
    pub commands_processed: Option<i64>,
    /// Primary only: full syncs it served (`sync_full`) and partial resyncs it accepted
    /// (`sync_partial_ok`) since its valkey-server started.
    #[serde(default)]
    pub full_syncs: Option<i64>,
    #[serde(default)]
    pub partial_syncs: Option<i64>,
    /// Primary only: replicas the primary reports as `online`.
    pub online_replicas: Option<i64>,
    /// Why the node could not be observed or started, in words.
    pub error: Option<String>,
}

impl NodeHealth {
    /// Sync progress in percent, when a sync is running and its size is known or estimated.
    pub fn sync_progress_percent(&self) -> Option<u8> {
        if !self.sync_in_progress {
            return None;
        }
        let read = self.sync_read_bytes.unwrap_or(0).max(0) as f64;
        let total = self.sync_total_bytes.filter(|t| *t > 0)? as f64;
        Some(((read / total) * 100.0).clamp(0.0, 99.0) as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::NodeHealth;

    #[test]
    fn sync_progress_is_bounded_and_only_while_syncing() {
        let mut h = NodeHealth {
            sync_in_progress: true,
            sync_read_bytes: Some(250),
            sync_total_bytes: Some(1000),
            ..NodeHealth::default()
        };
        assert_eq!(h.sync_progress_percent(), Some(25));
        h.sync_read_bytes = Some(5000);
        assert_eq!(
            h.sync_progress_percent(),
            Some(99),
            "never 100 % before it is done"
        );
        h.sync_total_bytes = None;
        assert_eq!(h.sync_progress_percent(), None);
        h.sync_in_progress = false;
        assert_eq!(h.sync_progress_percent(), None);
    }
}
