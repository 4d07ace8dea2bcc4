//! Turns stored services into the [`NodeSpec`]s a runtime runs.

use keyhaven_core::{Plan, Role, UserConfig};
use keyhaven_runtime::{NodeSpec, SourceEndpoint};
use keyhaven_store::ServiceRow;

/// The node spec of `service`; `source` is its primary when it is meant to be a replica,
/// reached at `source_host` (its cloud's host).
pub fn node_spec(service: &ServiceRow, source: Option<&ServiceRow>, source_host: &str) -> NodeSpec {
    let plan = Plan::find(&service.plan);
    let user_config = UserConfig::from_json(Some(&service.user_config)).unwrap_or_default();
    NodeSpec {
        id: service.id.clone(),
        label: format!("{}/{}", service.project, service.name),
        port: service.port,
        role: service.role,
        generation: service.generation,
        source: match service.role {
            Role::Replica => source.map(|s| SourceEndpoint {
                host: source_host.to_string(),
                port: s.port,
                repl_password: s.repl_password.clone(),
                service_password: s.service_password.clone(),
            }),
            Role::Primary => None,
        },
        service_password: service.service_password.clone(),
        admin_password: service.admin_password.clone(),
        repl_password: service.repl_password.clone(),
        // Plans are validated at creation; the fallback only guards a hand-edited store.
        maxmemory_bytes: plan.map(|p| p.maxmemory_bytes()).unwrap_or(1 << 30),
        maxmemory_policy: user_config.maxmemory_policy().to_string(),
    }
}
