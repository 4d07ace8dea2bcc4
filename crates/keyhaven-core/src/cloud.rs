//! Clouds are named locations from the server's configuration. Each maps to a runtime
//! target; the default configuration has exactly one, `local`, the host Keyhaven runs on.
//! Nothing pretends to be in a region it is not.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cloud {
    pub name: String,
    pub provider: String,
    pub region: String,
    pub description: String,
}

impl Cloud {
    /// The cloud every default configuration has: local valkey-server processes.
    pub fn local() -> Cloud {
        Cloud {
            name: "local".into(),
            provider: "local".into(),
            region: "this-host".into(),
            description: "Local processes on this host".into(),
        }
    }
}
