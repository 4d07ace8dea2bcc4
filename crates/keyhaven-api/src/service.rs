//! Services and their integrations.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ServiceCreateRequest {
    /// A DNS label: lowercase letter first, then lowercase letters, digits and dashes; no
    /// trailing dash; 1–63 characters.
    #[schema(pattern = "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)]
    pub service_name: String,
    #[schema(pattern = "^valkey$")]
    pub service_type: String,
    /// `hobbyist` or `startup-N`; a read replica needs a `startup-*` plan.
    #[schema(pattern = "^(hobbyist|startup-(4|8|14|28|56|112|200))$")]
    pub plan: String,
    /// Cloud name; null means the project's default cloud.
    #[serde(default)]
    pub cloud: Option<String>,
    /// The docs' curl sends the project in the body too: it must equal the URL's.
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub user_config: Option<serde_json::Value>,
    #[serde(default)]
    pub termination_protection: Option<bool>,
    #[serde(default)]
    pub service_integrations: Option<Vec<ServiceIntegrationItem>>,
    /// Accepted for avn's sake; ignored.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub static_ips: Option<serde_json::Value>,
    #[serde(default)]
    pub disk_space_mb: Option<u64>,
    #[serde(default)]
    pub project_vpc_id: Option<String>,
}

/// What `PUT /v1/project/P/service/S` takes (what `avn service update` sends). Every key
/// is optional; an absent or null key changes nothing, and so does an empty `user_config`.
/// Any other key Aiven has (`disk_space_mb`, `karapace`, `project_vpc_id`, `maintenance`,
/// ...) answers 400 naming it when it is set, as does a `cloud` other than the service's.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ServiceUpdateRequest {
    /// A new plan, applied live (`maxmemory`); refused (409) when the data in use would not
    /// fit, and for replicas smaller than their primary.
    #[schema(pattern = "^(hobbyist|startup-(4|8|14|28|56|112|200))$")]
    pub plan: Option<String>,
    /// Keys to change, validated as at creation (unknown keys 400); keys not named keep
    /// their value.
    #[schema(value_type = Option<Object>)]
    pub user_config: Option<serde_json::Value>,
    /// false stops the node and keeps its data (state POWEROFF); true starts it again.
    pub powered: Option<bool>,
    pub termination_protection: Option<bool>,
    /// Only the service's own cloud is accepted: Keyhaven does not move services.
    pub cloud: Option<String>,
}

/// One `service_integrations` item of a service create.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ServiceIntegrationItem {
    #[schema(pattern = "^read_replica$")]
    pub integration_type: String,
    #[serde(default)]
    pub source_service: Option<String>,
    /// Synonym of `source_service`, as Aiven's Valkey read-replica page sends it.
    #[serde(default)]
    pub source_service_name: Option<String>,
    #[serde(default)]
    pub source_project: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub user_config: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct IntegrationCreateRequest {
    pub integration_type: String,
    #[serde(default)]
    pub source_service: Option<String>,
    #[serde(default)]
    pub dest_service: Option<String>,
    #[serde(default)]
    pub source_endpoint_id: Option<String>,
    #[serde(default)]
    pub dest_endpoint_id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub user_config: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceEnvelope {
    pub service: Service,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceList {
    pub services: Vec<Service>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IntegrationList {
    pub service_integrations: Vec<ServiceIntegration>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Service {
    pub service_name: String,
    pub service_type: String,
    pub service_type_description: String,
    /// `REBUILDING` until the node serves (a replica: until its first sync is done and it
    /// is current), then `RUNNING`; `POWEROFF` once a powered-off service's node stopped.
    pub state: String,
    pub plan: String,
    pub cloud_name: String,
    pub cloud_description: String,
    pub create_time: String,
    pub update_time: String,
    pub group_list: Vec<String>,
    pub project_vpc_id: Option<String>,
    pub termination_protection: bool,
    pub node_count: u32,
    pub node_cpu_count: u32,
    pub node_memory_mb: u64,
    pub disk_space_mb: u64,
    /// `redis://default:PASSWORD@HOST:PORT` (the Valkey build has no TLS).
    pub service_uri: String,
    #[schema(value_type = Object)]
    pub service_uri_params: serde_json::Value,
    #[schema(value_type = Object)]
    pub user_config: serde_json::Value,
    pub components: Vec<Component>,
    pub users: Vec<ServiceUser>,
    pub connection_info: ConnectionInfo,
    pub node_states: Vec<NodeState>,
    pub service_integrations: Vec<ServiceIntegration>,
    pub databases: Vec<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    #[schema(value_type = Object)]
    pub tags: serde_json::Value,
    /// Keyhaven extra: `primary` or `replica`.
    pub keyhaven_role: String,
    /// Keyhaven extra: replication health of this service (and, on a primary, a summary
    /// of its replicas).
    pub keyhaven_replication: Replication,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Component {
    pub component: String,
    pub host: String,
    pub port: u16,
    pub route: String,
    pub usage: String,
    pub ssl: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceUser {
    pub username: String,
    pub password: String,
    #[serde(rename = "type")]
    pub user_type: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectionInfo {
    pub valkey: Vec<String>,
    pub valkey_password: String,
    pub valkey_slave: Vec<String>,
    pub valkey_replica_uri: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeState {
    pub name: String,
    /// `setting_up_vm`, `syncing_data` or `running`.
    pub state: String,
    pub role: String,
    pub progress_updates: Vec<ProgressUpdate>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProgressUpdate {
    pub phase: String,
    pub completed: bool,
    pub current: Option<i64>,
    pub max: Option<i64>,
    pub min: Option<i64>,
    pub unit: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceIntegration {
    pub service_integration_id: String,
    pub integration_type: String,
    pub source_project: String,
    pub source_service: String,
    pub source_service_type: String,
    pub source_endpoint_id: Option<String>,
    pub dest_project: String,
    pub dest_service: String,
    pub dest_service_type: String,
    pub dest_endpoint_id: Option<String>,
    pub enabled: bool,
    pub active: bool,
    pub description: String,
    #[schema(value_type = Object)]
    pub user_config: serde_json::Value,
    #[schema(value_type = Object)]
    pub integration_status: serde_json::Value,
    /// Alias of `source_service`, for the jq filter of Aiven's docs.
    pub source_service_name: String,
    /// Alias of `dest_service`.
    pub dest_service_name: String,
}

/// Keyhaven's replication health of a service.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Replication {
    /// The role Valkey reports, `primary` or `replica`; null when the node does not answer.
    pub observed_role: Option<String>,
    /// Replication offset (bytes of the replication stream).
    pub offset: Option<i64>,
    /// Replica: name of its primary.
    pub primary_service: Option<String>,
    /// Replica: `up` or `down`.
    pub link_status: Option<String>,
    /// Replica: bytes its primary has that it has not received yet.
    pub bytes_behind: Option<i64>,
    /// Replica: seconds since the primary last sent anything.
    pub seconds_since_last_contact: Option<i64>,
    /// Replica: milliseconds since Keyhaven sent the newest heartbeat this replica has
    /// applied (it keeps rising while the replica is stalled); null until measured.
    pub lag_ms: Option<i64>,
    /// Replica: a full sync runs.
    pub sync_in_progress: bool,
    /// Replica: percent of the running sync done (estimated for diskless syncs).
    pub sync_progress_percent: Option<u8>,
    /// Set when this service was promoted while its primary was down: the bytes it may lack.
    pub lost_bytes_estimate: Option<i64>,
    /// Primary: a promoted replica's first AOF is still being written. Until it is, a crash
    /// of the node restarts it from its last snapshot: writes since are lost.
    pub aof_pending: bool,
    /// Primary: its replicas and how far behind each is.
    pub replicas: Vec<ReplicaSummary>,
    /// When this was observed (ISO 8601); null before the first observation.
    pub observed_at: Option<String>,
    /// Why the node could not be observed, if it could not.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReplicaSummary {
    pub service_name: String,
    pub state: String,
    pub link_status: Option<String>,
    pub bytes_behind: Option<i64>,
    pub seconds_since_last_contact: Option<i64>,
    /// Milliseconds since Keyhaven sent the newest heartbeat this replica has applied;
    /// null until measured.
    pub lag_ms: Option<i64>,
}

/// The answer of a promotion that was decided but not finished by the request (202): the
/// replica may take writes already, and the reconciler finishes the rest.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PromotionPending {
    pub message: String,
    /// Always `promoting`.
    pub state: String,
}

/// Query of `DELETE /v1/project/P/integration/ID`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IntegrationDeleteQuery {
    /// Keyhaven extension: promote even when that may lose writes the primary acknowledged
    /// (the primary runs but does not answer, or the replica cannot catch up within the
    /// pause bound). The gap is recorded in `lost_bytes_estimate`. Default false.
    #[serde(default)]
    pub lossy: bool,
}
