//! Keyhaven's application layer: the operations behind every API call (identity, projects,
//! services, integrations, promotion) and the reconciler that drives valkey-server nodes
//! towards the desired state. It knows nothing of HTTP: operations take plain arguments
//! and return rows or an [`AppError`], which the server maps to status codes in one place.
//!
//! Request handlers here only read and write the store, then wake the reconciler; the
//! exceptions are promotion, a bounded, explicit procedure that talks to both nodes
//! (see `promotion.rs`), and a credentials reset (see `update.rs`).

pub mod ca;
pub mod cloud;
mod detach;
pub mod endpoints;
mod error;
pub mod failpoint;
pub mod heartbeat;
pub mod identity;
pub mod integration;
pub mod observed;
pub mod plan;
pub mod project;
mod promotion;
pub mod ready;
pub mod reconciler;
mod secret;
pub mod service;
mod spec;
pub mod update;

pub use error::AppError;
pub use identity::Caller;
pub use promotion::{NoCatchUp, Promoted, Promotion};

use keyhaven_core::Cloud;
use keyhaven_runtime::Runtime;
use keyhaven_store::Store;
use std::collections::{HashMap, HashSet};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Notify;

/// Settings of the control plane, from the server's command line.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Ports handed to valkey-servers, one per service.
    pub valkey_ports: RangeInclusive<u16>,
    /// Address valkey-servers bind; Keyhaven probes ports on it before handing them out.
    pub valkey_bind: String,
    /// The cloud this instance serves (its host).
    pub cloud: Cloud,
    /// The address clients and replicas in other clouds reach this host's nodes at.
    pub advertise_host: String,
    /// Where this instance's API is reached (registered with its cloud).
    pub api_url: String,
    /// This start of Keyhaven, `HOST:DATA_DIR/UUID` (a new UUID each start): it owns its
    /// cloud's registration and the promotion claims it takes.
    pub instance_id: String,
    pub max_services_per_project: usize,
    /// Longest write pause on a primary while its replica is promoted: the bound given to
    /// `CLIENT PAUSE`, so writes resume even if Keyhaven dies mid-promotion.
    pub promotion_pause_ms: u64,
    /// How long a promotion waits for the primary's PING (separate from the pause bound:
    /// one decides "alive?", the other how long writes may wait).
    pub promotion_ping_timeout_ms: u64,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            valkey_ports: 16000..=16999,
            valkey_bind: "127.0.0.1".into(),
            cloud: Cloud::local(),
            advertise_host: "127.0.0.1".into(),
            api_url: "http://127.0.0.1:8080".into(),
            instance_id: uuid::Uuid::new_v4().to_string(),
            max_services_per_project: keyhaven_core::limits::DEFAULT_MAX_SERVICES_PER_PROJECT,
            promotion_pause_ms: keyhaven_core::limits::DEFAULT_PROMOTION_PAUSE_MS,
            promotion_ping_timeout_ms: keyhaven_core::limits::DEFAULT_PROMOTION_PING_TIMEOUT_MS,
        }
    }
}

/// The application: shared by every request handler and the reconciler.
pub struct App {
    pub store: Store,
    pub runtime: Arc<dyn Runtime>,
    pub config: ControlConfig,
    /// Wakes the reconciler (after a change, or when a node exits).
    pub wake: Arc<Notify>,
    /// The reconciler's activations so far (`observed.rs`, `/metrics`).
    reconciler_stats: Mutex<observed::ReconcilerStats>,
    /// Project → timings of its promotions answered by this process (`observed.rs`).
    promotion_timings: Mutex<HashMap<String, observed::PromotionTimings>>,
    /// Promotion requests answered by this process: (project, outcome) → count.
    promotion_outcomes: Mutex<std::collections::BTreeMap<(String, String), u64>>,
    /// The newest heartbeat each replica applied: its lag in ms (`heartbeat.rs`).
    pub heartbeats: heartbeat::Heartbeats,
    /// Links whose promotion runs in this process right now; the reconciler leaves those
    /// nodes alone and only rolls forward promotions nobody is running.
    promotions_in_flight: Mutex<HashSet<String>>,
    /// Retired nodes whose release runs in the background now.
    removals: Mutex<HashSet<String>>,
    /// When the reconciler last tried to roll each `promoting` link forward.
    /// Last attempt and number of attempts so far.
    roll_forward_attempts: Mutex<HashMap<String, (Instant, u32)>>,
    /// One lock per service, held by the reconciler from reading a service's spec to
    /// ensuring its node, and by a credentials reset from setting the new password on the
    /// node to recording it: a reconciler pass that read the old password never puts it
    /// back on the node after the reset answered.
    node_guards: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// When the reconciler last finished an activation (`ready.rs`, `GET /readyz`).
    reconciled_at: Mutex<Option<Instant>>,
    /// Every registered cloud, as of this instance's last heartbeat (`cloud.rs`).
    clouds: std::sync::RwLock<cloud::CloudCache>,
    /// Another instance took this instance's cloud over (`cloud.rs`): it acts on no node.
    fenced: std::sync::atomic::AtomicBool,
    /// The client endpoints of this instance's services (`endpoints.rs`).
    pub(crate) endpoints: endpoints::Serving,
}

impl App {
    pub fn new(
        store: Store,
        runtime: Arc<dyn Runtime>,
        config: ControlConfig,
        wake: Arc<Notify>,
    ) -> Arc<App> {
        Arc::new(App {
            store,
            runtime,
            config,
            wake,
            heartbeats: heartbeat::Heartbeats::default(),
            promotion_outcomes: Mutex::default(),
            reconciler_stats: Mutex::default(),
            promotion_timings: Mutex::default(),
            promotions_in_flight: Mutex::default(),
            removals: Mutex::default(),
            roll_forward_attempts: Mutex::default(),
            node_guards: Mutex::default(),
            reconciled_at: Mutex::default(),
            clouds: std::sync::RwLock::default(),
            fenced: std::sync::atomic::AtomicBool::new(false),
            endpoints: endpoints::Serving::default(),
        })
    }

    pub(crate) fn node_guard(&self, service_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.node_guards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(service_id.to_string())
            .or_default()
            .clone()
    }

    /// Counts a promotion request's answer: `promoted`, `pending` (202) or the refusal's
    /// error code.
    pub fn count_promotion(&self, project: &str, outcome: &str) {
        *self
            .promotion_outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((project.to_string(), outcome.to_string()))
            .or_default() += 1;
    }

    pub fn promotion_outcomes(&self) -> Vec<((String, String), u64)> {
        self.promotion_outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// The cloud a new project gets when none is asked for: this instance's.
    pub fn default_cloud(&self) -> &Cloud {
        &self.config.cloud
    }
}
