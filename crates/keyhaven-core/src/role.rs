//! Roles and states of a service.

use serde::{Deserialize, Serialize};

/// What a service's valkey-server is meant to be. Desired roles carry a generation in the
/// store; a runtime never applies a role older than one it has applied already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "primary" => Some(Role::Primary),
            "replica" => Some(Role::Replica),
            _ => None,
        }
    }
}

/// Aiven's service states that Keyhaven uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ServiceState {
    /// Being built: the process is starting, or a replica is in its first sync.
    Rebuilding,
    /// Serving: answers an authenticated PING, and a replica is current with its primary.
    Running,
    /// Powered off on request (`powered: false`): no process, data and port kept.
    Poweroff,
}

impl ServiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Rebuilding => "REBUILDING",
            ServiceState::Running => "RUNNING",
            ServiceState::Poweroff => "POWEROFF",
        }
    }

    pub fn parse(s: &str) -> Option<ServiceState> {
        match s {
            "REBUILDING" => Some(ServiceState::Rebuilding),
            "RUNNING" => Some(ServiceState::Running),
            "POWEROFF" => Some(ServiceState::Poweroff),
            _ => None,
        }
    }
}
