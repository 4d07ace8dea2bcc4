//! Parses `INFO` replies (`key:value` lines under `# Section` headers).

use std::collections::HashMap;

#[derive(Debug, Clone, Default)]
pub struct Info {
    fields: HashMap<String, String>,
}

/// One `slaveN:` line of a primary's INFO replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaLine {
    pub ip: String,
    pub port: u16,
    /// `wait_bgsave`, `send_bulk` or `online`.
    pub state: String,
    /// Offset the replica last acknowledged (refreshed only by its once-a-second ACK).
    pub offset: i64,
}

impl Info {
    pub fn parse(text: &str) -> Info {
        let fields = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Info { fields }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// Keys in every database (`dbN:keys=K,expires=..` lines of INFO keyspace; 0 when none).
    pub fn keys(&self) -> i64 {
        (0..16)
            .filter_map(|n| self.get(&format!("db{n}")))
            .filter_map(|v| v.split(',').find_map(|kv| kv.strip_prefix("keys=")))
            .filter_map(|k| k.parse::<i64>().ok())
            .sum()
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        self.get(key)?.parse().ok()
    }

    /// Whether the node is a primary (`role:master`).
    pub fn is_primary(&self) -> bool {
        self.get("role") == Some("master")
    }

    /// Whether the node is a replica (`role:slave`).
    pub fn is_replica(&self) -> bool {
        self.get("role") == Some("slave")
    }

    /// A primary's replication offset (`master_repl_offset`; 0 when missing).
    pub fn primary_offset(&self) -> i64 {
        self.int("master_repl_offset").unwrap_or(0)
    }

    /// A replica's replication offset (`slave_repl_offset`), when it reports one.
    pub fn replica_offset(&self) -> Option<i64> {
        self.int("slave_repl_offset")
    }

    /// The replication history id (`master_replid`): a replica shares its primary's while
    /// it follows it.
    pub fn replication_id(&self) -> Option<&str> {
        self.get("master_replid")
    }

    /// A replica's link to its primary is up and no full sync runs: it streams writes.
    pub fn streaming(&self) -> bool {
        self.get("master_link_status") == Some("up")
            && self.int("master_sync_in_progress") == Some(0)
    }

    /// A snapshot (BGSAVE) is being written.
    pub fn snapshot_running(&self) -> bool {
        self.int("rdb_bgsave_in_progress") == Some(1)
    }

    /// The last snapshot's status (`rdb_last_bgsave_status`: `ok` or `err`).
    pub fn last_snapshot_status(&self) -> Option<&str> {
        self.get("rdb_last_bgsave_status")
    }

    /// The replicas a primary lists, in `slaveN` order.
    pub fn replicas(&self) -> Vec<ReplicaLine> {
        let mut lines: Vec<(usize, ReplicaLine)> = self
            .fields
            .iter()
            .filter_map(|(k, v)| {
                let n = k.strip_prefix("slave")?.parse::<usize>().ok()?;
                let kv: HashMap<&str, &str> =
                    v.split(',').filter_map(|p| p.split_once('=')).collect();
                Some((
                    n,
                    ReplicaLine {
                        ip: kv.get("ip")?.to_string(),
                        port: kv.get("port")?.parse().ok()?,
                        state: kv.get("state")?.to_string(),
                        offset: kv.get("offset")?.parse().ok()?,
                    },
                ))
            })
            .collect();
        lines.sort_by_key(|(n, _)| *n);
        lines.into_iter().map(|(_, l)| l).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_primary_reply() {
        let info = Info::parse(
            "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
             slave0:ip=127.0.0.1,port=17002,state=online,offset=42,lag=1,type=replica\r\n\
             slave1:ip=127.0.0.1,port=17003,state=wait_bgsave,offset=0,lag=0,type=replica\r\n\
             master_repl_offset:42\r\n",
        );
        assert_eq!(info.get("role"), Some("master"));
        assert_eq!(info.int("master_repl_offset"), Some(42));
        let replicas = info.replicas();
        assert_eq!(replicas.len(), 2);
        assert_eq!(replicas[0].port, 17002);
        assert_eq!(replicas[0].state, "online");
        assert_eq!(replicas[1].state, "wait_bgsave");
    }
}
