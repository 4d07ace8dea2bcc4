//! Renders application rows as Aiven-shaped wire objects.

use keyhaven_api::project::Project;
use keyhaven_api::service::{
    Component, ConnectionInfo, NodeState, ProgressUpdate, ReplicaSummary, Replication, Service,
    ServiceIntegration, ServiceUser,
};
use keyhaven_control::service::ServiceDetail;
use keyhaven_control::{App, endpoints};
use keyhaven_core::time::iso8601;
use keyhaven_core::{NodeHealth, Plan, Role, ServiceState};
use keyhaven_store::{IntegrationRow, LinkStatus, ProjectRow, ServiceRow};
use serde_json::json;

pub fn project(row: &ProjectRow) -> Project {
    Project {
        project_name: row.name.clone(),
        default_cloud: row.default_cloud.clone(),
        billing_currency: "USD".into(),
        vat_id: String::new(),
        billing_extra_text: None,
        project_membership: "admin".into(),
        create_time: iso8601(row.create_time),
    }
}

pub fn integration(row: &IntegrationRow) -> ServiceIntegration {
    let promoting = row.status == LinkStatus::Promoting;
    ServiceIntegration {
        service_integration_id: row.id.clone(),
        integration_type: row.integration_type.clone(),
        source_project: row.project.clone(),
        source_service: row.source_service.clone(),
        source_service_type: "valkey".into(),
        source_endpoint_id: None,
        dest_project: row.project.clone(),
        dest_service: row.dest_service.clone(),
        dest_service_type: "valkey".into(),
        dest_endpoint_id: None,
        enabled: true,
        active: !promoting,
        description: format!(
            "Replicate data from {} to {} (read replica)",
            row.source_service, row.dest_service
        ),
        user_config: json!({}),
        integration_status: json!({
            "state": {"status": if promoting { "starting" } else { "running" }, "errors": []},
            "status_user_desc": if promoting { "Promotion in progress" } else { "Replicating" },
        }),
        source_service_name: row.source_service.clone(),
        dest_service_name: row.dest_service.clone(),
    }
}

fn link_status(h: &NodeHealth) -> Option<String> {
    h.link_up
        .map(|up| if up { "up" } else { "down" }.to_string())
}

/// A service's state as shown: its last observed one, unless its cloud is lost (its
/// instance's heartbeat expired), when nothing vouches for its node: REBUILDING, with the
/// reason in `keyhaven_replication.error`.
fn shown_state(app: &App, row: &ServiceRow) -> (&'static str, Option<String>) {
    match app.cloud(&row.cloud).and_then(|c| c.lost_for_s) {
        Some(s) if row.state != ServiceState::Poweroff => (
            ServiceState::Rebuilding.as_str(),
            Some(format!(
                "cloud '{}' is lost: its Keyhaven instance has sent no heartbeat for {s} s, so this node is not observed; a replica of it in another cloud can be promoted",
                row.cloud
            )),
        ),
        _ => (row.state.as_str(), None),
    }
}

pub fn service(app: &App, d: &ServiceDetail) -> Service {
    let row = &d.row;
    let (host, port, ssl) = app.client_address(row);
    let (state, lost) = shown_state(app, row);
    let plan = Plan::find(&row.plan);
    let uri = endpoints::uri(&host, port, ssl, &row.service_password);
    // A primary's reader endpoint: its replicas within the lag bound, else itself. The
    // `default` user's password works there (replicas accept their primary's).
    let reader = app.reader_address(row);
    let h = &row.health;
    let primary = d
        .integrations
        .iter()
        .find(|l| l.dest_service_id == row.id)
        .map(|l| l.source_service.clone());
    let replication = Replication {
        observed_role: h
            .valkey_role
            .as_deref()
            .map(|r| if r == "master" { "primary" } else { "replica" }.to_string()),
        offset: h.repl_offset,
        primary_service: primary.clone(),
        link_status: link_status(h),
        bytes_behind: h.bytes_behind.filter(|_| primary.is_some()),
        seconds_since_last_contact: h.last_io_seconds_ago,
        lag_ms: primary
            .is_some()
            .then(|| app.heartbeats.lag_ms(&row.id))
            .flatten(),
        sync_in_progress: h.sync_in_progress,
        sync_progress_percent: h.sync_progress_percent(),
        lost_bytes_estimate: row.lost_bytes_estimate,
        aof_pending: h.aof_pending,
        replicas: d
            .replicas
            .iter()
            .map(|r| ReplicaSummary {
                service_name: r.name.clone(),
                state: shown_state(app, r).0.into(),
                link_status: link_status(&r.health),
                bytes_behind: r.health.bytes_behind,
                seconds_since_last_contact: r.health.last_io_seconds_ago,
                lag_ms: app.heartbeats.lag_ms(&r.id),
            })
            .collect(),
        observed_at: (h.observed_at > 0).then(|| iso8601(h.observed_at)),
        error: lost.or_else(|| h.error.clone()),
    };

    let node_state = if state == ServiceState::Running.as_str() {
        "running"
    } else if h.sync_in_progress || (h.answered && row.role == Role::Replica) {
        "syncing_data"
    } else {
        "setting_up_vm"
    };
    let progress_updates = if h.sync_in_progress {
        vec![ProgressUpdate {
            phase: "basebackup".into(),
            completed: false,
            current: h.sync_read_bytes,
            max: h.sync_total_bytes,
            min: Some(0),
            unit: "bytes".into(),
        }]
    } else {
        Vec::new()
    };
    let replica_uris: Vec<String> = d
        .replicas
        .iter()
        .map(|r| {
            let (h, p, tls) = app.client_address(r);
            endpoints::uri(&h, p, tls, &r.service_password)
        })
        .collect();
    let mut components = vec![Component {
        component: "valkey".into(),
        host: host.clone(),
        port,
        route: "dynamic".into(),
        usage: "primary".into(),
        ssl,
    }];
    if let Some((h, p, tls)) = &reader {
        components.push(Component {
            component: "valkey".into(),
            host: h.clone(),
            port: *p,
            route: "dynamic".into(),
            usage: "replica".into(),
            ssl: *tls,
        });
    }

    Service {
        service_name: row.name.clone(),
        service_type: row.service_type.clone(),
        service_type_description: "Valkey - In-memory data store".into(),
        state: state.into(),
        plan: row.plan.clone(),
        cloud_name: row.cloud.clone(),
        cloud_description: app
            .cloud(&row.cloud)
            .map(|c| c.row.description)
            .unwrap_or_default(),
        create_time: iso8601(row.create_time),
        update_time: iso8601(row.update_time),
        group_list: vec!["default".into()],
        project_vpc_id: None,
        termination_protection: row.termination_protection,
        node_count: 1,
        node_cpu_count: 1,
        node_memory_mb: plan.map(|p| p.node_memory_mb).unwrap_or(0),
        disk_space_mb: plan.map(|p| p.disk_space_mb()).unwrap_or(0),
        service_uri: uri.clone(),
        service_uri_params: json!({
            "host": host,
            "port": port.to_string(),
            "user": "default",
            "password": row.service_password,
        }),
        user_config: row.user_config.clone(),
        components,
        users: vec![ServiceUser {
            username: "default".into(),
            password: row.service_password.clone(),
            user_type: "primary".into(),
        }],
        connection_info: ConnectionInfo {
            valkey: vec![uri],
            valkey_password: row.service_password.clone(),
            valkey_replica_uri: reader
                .as_ref()
                .map(|(h, p, tls)| endpoints::uri(h, *p, *tls, &row.service_password)),
            valkey_slave: replica_uris,
        },
        // A powered-off service has no node running.
        node_states: if row.state == ServiceState::Poweroff {
            Vec::new()
        } else {
            vec![NodeState {
                name: format!("{}-1", row.name),
                state: node_state.into(),
                role: row.role.as_str().into(),
                progress_updates,
            }]
        },
        service_integrations: d.integrations.iter().map(integration).collect(),
        databases: Vec::new(),
        metadata: json!({}),
        tags: json!({}),
        keyhaven_role: row.role.as_str().into(),
        keyhaven_replication: replication,
    }
}
