//! Runs valkey-server nodes. The control plane says *what* a node must be (a [`NodeSpec`]);
//! a [`Runtime`] makes it so, idempotently, and never decides policy. The local process
//! runtime ([`local::LocalRuntime`]) is the embedded default; a Kubernetes runtime (a
//! StatefulSet per service) would implement the same trait.
//!
//! Every node is reached for administration through [`admin::Admin`], a plain Valkey
//! connection as Keyhaven's internal admin user, whatever runtime runs it.

pub mod admin;
pub mod config;
pub mod info;
pub mod local;
pub mod observe;
mod proc;
pub mod rdb;

use async_trait::async_trait;
use keyhaven_core::{PrivateKeyPem, Role};
use keyhaven_endpoint::{Routes, Tls};
use thiserror::Error;

/// Name of Keyhaven's own user on every node (full rights, separate credentials).
pub const ADMIN_USER: &str = "keyhaven-admin";
/// Name of the user a replica authenticates to its primary with (replication only).
pub const REPL_USER: &str = "keyhaven-repl";
/// Name of the user clients get; Aiven calls it `default`.
pub const SERVICE_USER: &str = "default";

/// Everything a runtime needs to run one service's valkey-server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// The service id: stable for the node's life, keys its directory.
    pub id: String,
    /// `project/service`, for logs only.
    pub label: String,
    pub port: u16,
    pub role: Role,
    /// Generation of `role`; a runtime never applies an older generation than it has.
    pub generation: i64,
    /// Where a replica replicates from; `None` for a primary.
    pub source: Option<SourceEndpoint>,
    pub service_password: String,
    pub admin_password: String,
    /// Password of this node's replication user (its replicas use it).
    pub repl_password: String,
    pub maxmemory_bytes: u64,
    pub maxmemory_policy: String,
}

/// The primary a replica follows, and the credentials of its replication user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEndpoint {
    pub host: String,
    pub port: u16,
    pub repl_password: String,
    /// The primary's service password, which the replica's service user accepts too.
    pub service_password: String,
}

/// What `ensure` found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ensured {
    /// The node's process runs (adopted, already running, or just started).
    Running {
        pid: u32,
        just_started: bool,
        /// A newer role is being applied and is not complete yet (a promoted node's first
        /// AOF is still being written); `ensure` finishes it on a later call.
        role_pending: bool,
    },
    /// The node died recently and is waiting out its restart backoff.
    BackingOff {
        last_exit: String,
        /// The node could not bind its port: another program holds it.
        port_in_use: bool,
    },
}

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("refusing generation {wanted} of node {id}: generation {applied} was applied already")]
    StaleGeneration {
        id: String,
        wanted: i64,
        applied: i64,
    },
    #[error("could not start valkey-server for {label}: {reason}")]
    Start { label: String, reason: String },
    #[error("valkey-server of {label} did not accept the change: {reason}")]
    Apply { label: String, reason: String },
    #[error("cannot write the node's files in {dir}: {source}")]
    Io {
        dir: String,
        #[source]
        source: std::io::Error,
    },
}

#[async_trait]
pub trait Runtime: Send + Sync {
    /// Makes the node exist and run as `spec` says: writes its configuration, adopts or
    /// starts its process, and applies a newer role to a running node. Idempotent.
    async fn ensure(&self, spec: &NodeSpec) -> Result<Ensured, RuntimeError>;

    /// Writes the node's configuration for `spec` without touching its running process,
    /// so that a restart of the node comes up in `spec`'s role. A promotion stages the
    /// primary role before it detaches the node, so a node that crashes mid-promotion never
    /// comes back following its old primary.
    async fn stage(&self, spec: &NodeSpec) -> Result<(), RuntimeError>;

    /// Stops the node and deletes its data. Idempotent: a node that is gone is fine.
    async fn remove(&self, id: &str) -> Result<(), RuntimeError>;

    /// Stops the node's process cleanly and keeps everything else: its data, its config
    /// and its directory, so a later `ensure` starts it again with its data (a service
    /// powered off). Idempotent: a node that does not run is fine. Returns whether a
    /// process was stopped.
    async fn stop(&self, id: &str) -> Result<bool, RuntimeError>;

    /// Sets a new password for the service user of the running node, live (`ACL
    /// SETUSER`), and writes it into the node's config for its next start. Returns once
    /// the node has accepted it; an error means the node did not, and its old password
    /// still works.
    async fn set_service_password(&self, spec: &NodeSpec) -> Result<(), RuntimeError>;

    /// Whether the node's valkey-server process exists, as the runtime knows it (the local
    /// runtime from its pid files and /proc; a remote one would ask its host). A node that
    /// runs but does not answer (a long script, a pause, SIGSTOP) is
    /// [`NodeProcess::Running`]: a promotion treats it as alive, never as down.
    async fn process(&self, id: &str) -> NodeProcess;

    /// Host clients and replicas use to reach nodes of this runtime.
    fn host(&self) -> &str;

    /// Whether `port` is free for a new node here: nothing else on the host holds it now.
    fn port_available(&self, port: u16) -> bool;

    /// Whether the node's snapshot on disk (what a restart in a primary role starts from)
    /// holds any key: `None` when there is none or it cannot tell.
    async fn snapshot_holds_keys(&self, id: &str) -> Option<bool>;

    /// Makes this cloud's endpoint process (TLS and reader endpoints, `keyhaven-endpoint`)
    /// run: adopts a running one, or starts it. Idempotent; returns its pid. It serves
    /// what [`Runtime::write_routes`] last wrote, and outlives the control plane.
    async fn ensure_endpoint(&self) -> Result<u32, RuntimeError>;

    /// Makes the endpoint serve `routes` (it picks the change up within
    /// `keyhaven_endpoint::ROUTES_POLL`). Writes only when they changed; returns whether
    /// they did.
    async fn write_routes(&self, routes: &Routes) -> Result<bool, RuntimeError>;

    /// Installs the certificate chain and key of the endpoint listener `name` (letters,
    /// digits, `-`, `_`, `.`), replacing any earlier one at once for new handshakes.
    /// Returns the [`Tls`] to put in that listener's routes.
    async fn write_endpoint_cert(
        &self,
        name: &str,
        cert_pem: &str,
        key: &PrivateKeyPem,
    ) -> Result<Tls, RuntimeError>;
}

/// What a runtime knows of a node's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeProcess {
    /// The process exists (it may still be slow or stalled).
    Running,
    /// No process: the node crashed, is backing off, or was never started.
    NotRunning,
}
