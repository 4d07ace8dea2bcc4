//! Service plans. A plan fixes the node memory a service may use; Keyhaven turns that into
//! `maxmemory` (70 % of it, leaving room for replication buffers, fork copy-on-write and
//! fragmentation). Keyhaven does not check the host's RAM against the sum of plans.

/// Plans a Valkey service can have, smallest first: (name, node memory in MiB).
pub const PLANS: &[(&str, u64)] = &[
    ("hobbyist", 1024),
    ("startup-4", 4 * 1024),
    ("startup-8", 8 * 1024),
    ("startup-14", 14 * 1024),
    ("startup-28", 28 * 1024),
    ("startup-56", 56 * 1024),
    ("startup-112", 112 * 1024),
    ("startup-200", 200 * 1024),
];

/// Share of the node memory given to Valkey's `maxmemory`, in percent.
pub const MAXMEMORY_PERCENT: u64 = 70;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub name: &'static str,
    pub node_memory_mb: u64,
}

impl Plan {
    /// Looks a plan up by name; `None` when no such plan exists.
    pub fn find(name: &str) -> Option<Plan> {
        PLANS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(name, node_memory_mb)| Plan {
                name,
                node_memory_mb,
            })
    }

    /// Every plan name, comma-separated, for error messages.
    pub fn all_names() -> String {
        PLANS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
    }

    /// Names of the plans a read replica may have (Aiven: "Startup plans only").
    pub fn replica_plan_names() -> String {
        PLANS
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| n.starts_with("startup-"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Read replicas are offered on Startup plans only.
    pub fn allows_read_replica(&self) -> bool {
        self.name.starts_with("startup-")
    }

    /// The `maxmemory` given to valkey-server, in bytes.
    pub fn maxmemory_bytes(&self) -> u64 {
        self.node_memory_mb * 1024 * 1024 * MAXMEMORY_PERCENT / 100
    }

    /// Disk space a plan advertises; Keyhaven does not enforce it.
    pub fn disk_space_mb(&self) -> u64 {
        self.node_memory_mb * 20
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_plans_allow_replicas_and_hobbyist_does_not() {
        assert!(Plan::find("startup-4").unwrap().allows_read_replica());
        assert!(!Plan::find("hobbyist").unwrap().allows_read_replica());
        assert_eq!(Plan::find("business-4"), None);
    }

    #[test]
    fn maxmemory_is_seventy_percent_of_node_memory() {
        assert_eq!(
            Plan::find("startup-4").unwrap().maxmemory_bytes(),
            4 * 1024 * 1024 * 1024 * 7 / 10
        );
    }
}
