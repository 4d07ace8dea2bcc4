//! Projects, clouds and service types.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Project {
    pub project_name: String,
    pub default_cloud: String,
    pub billing_currency: String,
    pub vat_id: String,
    pub billing_extra_text: Option<String>,
    pub project_membership: String,
    pub create_time: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProjectList {
    pub projects: Vec<Project>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProjectEnvelope {
    pub project: Project,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProjectCreateRequest {
    /// A DNS label, like service names.
    #[schema(pattern = "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)]
    pub project: String,
    #[serde(default)]
    pub cloud: Option<String>,
    /// Accepted for avn's sake; Keyhaven has no organizations.
    #[serde(default)]
    pub account_id: Option<String>,
}

/// `GET /v1/project/P/kms/ca`: the project's CA certificate, the CA of the project's TLS
/// certificates (its private key is never answered).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProjectCa {
    /// PEM (`-----BEGIN CERTIFICATE-----`).
    pub certificate: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Cloud {
    pub cloud_name: String,
    pub cloud_description: String,
    pub geo_region: String,
    pub provider: String,
    /// Keyhaven: the host this cloud's nodes are reached at (token holders only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyhaven_host: Option<String>,
    /// Keyhaven: where the API of this cloud's instance listens (token holders only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyhaven_api_url: Option<String>,
    /// Keyhaven: whether this cloud's instance has sent a heartbeat within the last 10 s
    /// (token holders only). A cloud that is not alive is lost: its nodes are not observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyhaven_alive: Option<bool>,
    /// Keyhaven: milliseconds since that heartbeat (token holders only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyhaven_heartbeat_age_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CloudList {
    pub clouds: Vec<Cloud>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VpcList {
    pub vpcs: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServicePlan {
    pub service_plan: String,
    pub service_type: String,
    pub node_count: u32,
    pub node_memory_mb: u64,
    pub disk_space_mb: u64,
    /// Aiven's field: the share of node memory Valkey may use (`maxmemory`).
    pub max_memory_percent: u64,
    /// Plans a read replica may have are marked (Startup plans only).
    pub read_replica_allowed: bool,
    /// Per cloud: `{price_usd, node_memory_mb, disk_space_mb, node_cpu_count}`.
    #[schema(value_type = Object)]
    pub regions: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceType {
    pub description: String,
    pub default_version: String,
    pub latest_available_version: String,
    /// JSON schema of `user_config`.
    #[schema(value_type = Object)]
    pub user_config_schema: serde_json::Value,
    pub service_plans: Vec<ServicePlan>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceTypeList {
    pub service_types: BTreeMap<String, ServiceType>,
}
