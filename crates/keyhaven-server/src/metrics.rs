//! `GET /metrics`: the services of the caller's projects, in the Prometheus exposition
//! format (OpenMetrics text, written by `prometheus-client`).
//!
//! A registry is built per scrape from what the store last observed (and the lag this
//! process measured), holding only the caller's projects: a token never sees a series of a
//! project it is not a member of. Labels are bounded: project, service, primary (the
//! primary of the service's replication group: its own name on a primary), and for the
//! state and role series the state or role; no ids of requests or keys.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use keyhaven_control::App;
use keyhaven_control::heartbeat::{DELAY_BUCKETS, Delays};
use keyhaven_control::service::ServiceDetail;
use keyhaven_core::{Role, ServiceState};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::{LazyLock, Mutex};
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    project: String,
    service: String,
    primary: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    project: String,
    service: String,
    primary: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    project: String,
    service: String,
    primary: String,
    role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectLabels {
    project: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PromotionLabels {
    project: String,
    outcome: String,
}

const STATES: [ServiceState; 3] = [
    ServiceState::Rebuilding,
    ServiceState::Running,
    ServiceState::Poweroff,
];

/// Every metric, with its help text: docs/metrics.md lists the same (a unit test checks).
pub const METRICS: &[(&str, &str)] = &[
    (
        "keyhaven_service_state",
        "1 for the service's state (REBUILDING, RUNNING, POWEROFF), 0 for the others",
    ),
    (
        "keyhaven_service_role",
        "1 for the role Keyhaven wants for the service's node (primary or replica)",
    ),
    (
        "keyhaven_service_up",
        "1 if the service's valkey-server answered Keyhaven's last observation",
    ),
    (
        "keyhaven_service_memory_used_bytes",
        "used_memory of the node at the last observation",
    ),
    (
        "keyhaven_service_memory_max_bytes",
        "maxmemory of the node: 70 % of its plan's memory",
    ),
    (
        "keyhaven_service_connected_clients",
        "connected_clients of the node at the last observation (Keyhaven's own connections included)",
    ),
    (
        "keyhaven_service_keys",
        "keys in the node's databases at the last observation",
    ),
    (
        "keyhaven_service_commands_processed",
        "total_commands_processed of the node since its start (Keyhaven's own commands included)",
    ),
    (
        "keyhaven_primary_full_syncs",
        "full syncs the primary served to replicas since its valkey-server started (sync_full)",
    ),
    (
        "keyhaven_primary_partial_syncs",
        "partial resyncs the primary accepted since its valkey-server started (sync_partial_ok)",
    ),
    (
        "keyhaven_replica_sync_progress_percent",
        "progress of the replica's running full sync (estimated for diskless syncs); absent when none runs",
    ),
    (
        "keyhaven_replica_link_up",
        "1 if the replica's link to its primary was up at the last observation",
    ),
    (
        "keyhaven_replica_lag_bytes",
        "bytes of its primary's replication stream the replica had not received (last observation)",
    ),
    (
        "keyhaven_replica_lag_seconds",
        "replication lag measured by Keyhaven's heartbeats (lag_ms / 1000, now)",
    ),
    (
        "keyhaven_replica_heartbeat_delay_seconds",
        "how long each heartbeat took from Keyhaven's send on the primary to its apply on the replica",
    ),
    (
        "keyhaven_api_request_duration_seconds",
        "API requests this process answered, by method, route and status, and how long each took (admin tokens only)",
    ),
    (
        "keyhaven_reconciler_activations",
        "reconciler activations of this process, by outcome: ok, or errors when its report listed any (admin tokens only)",
    ),
    (
        "keyhaven_reconciler_errors",
        "errors reconciler activations listed, one per node that failed per activation (admin tokens only)",
    ),
    (
        "keyhaven_reconciler_activation_duration_seconds",
        "how long each reconciler activation took (admin tokens only)",
    ),
    (
        "keyhaven_promotion_write_pause_seconds",
        "how long a promotion paused writes on the primary (promotions whose primary answered)",
    ),
    (
        "keyhaven_promotion_request_duration_seconds",
        "how long promotion requests (DELETE of a read_replica link) took to answer, every outcome",
    ),
    (
        "keyhaven_promotions",
        "promotion requests answered by this process, by outcome (promoted, pending, or the refusal's error_code)",
    ),
];

fn help(name: &str) -> &'static str {
    METRICS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, h)| *h)
        .expect("every metric has help")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    /// The route's pattern (`/v1/project/{project}/service`), never the path itself.
    route: String,
    status: String,
}

type RequestFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

fn request_histogram() -> Histogram {
    // 0.5 ms to ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The API's requests since this process started: about the instance, not a project, so
/// only admin tokens see them.
static REQUESTS: LazyLock<RequestFamily> =
    LazyLock::new(|| Family::new_with_constructor(request_histogram as fn() -> Histogram));

/// Middleware: times every request and counts it by method, route pattern and status.
/// Labels stay bounded: unknown methods are `other`, unrouted paths `unmatched`.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS") => m.to_string(),
        _ => "other".into(),
    };
    let started = Instant::now();
    let resp = next.run(req).await;
    REQUESTS
        .get_or_create(&RequestLabels {
            method,
            route,
            status: resp.status().as_u16().to_string(),
        })
        .observe(started.elapsed().as_secs_f64());
    resp
}

/// Renders the exposition of `services` (the caller's, already scoped) and the promotion
/// counts of `projects` (the caller's); series about the instance itself only for an
/// admin.
pub fn render(app: &App, services: &[ServiceDetail], projects: &[String], admin: bool) -> String {
    let mut registry = Registry::default();
    if admin {
        let name = "keyhaven_api_request_duration_seconds";
        registry.register(name, help(name), REQUESTS.clone());
        let stats = app.reconciler_stats();
        let activations = Family::<OutcomeLabels, Counter>::default();
        activations
            .get_or_create(&OutcomeLabels {
                outcome: "ok".into(),
            })
            .inc_by(stats.activations - stats.activations_with_errors);
        activations
            .get_or_create(&OutcomeLabels {
                outcome: "errors".into(),
            })
            .inc_by(stats.activations_with_errors);
        let name = "keyhaven_reconciler_activations";
        registry.register(name, help(name), activations);
        let errors = Counter::<u64>::default();
        errors.inc_by(stats.errors);
        let name = "keyhaven_reconciler_errors";
        registry.register(name, help(name), errors);
        let name = "keyhaven_reconciler_activation_duration_seconds";
        registry.register(
            name,
            help(name),
            DelayHistogram(Mutex::new(stats.durations)),
        );
    }
    macro_rules! family {
        ($name:literal, $labels:ty, $metric:ty) => {{
            let f = Family::<$labels, $metric>::default();
            registry.register($name, help($name), f.clone());
            f
        }};
    }
    let state = family!("keyhaven_service_state", StateLabels, Gauge);
    let role = family!("keyhaven_service_role", RoleLabels, Gauge);
    let up = family!("keyhaven_service_up", ServiceLabels, Gauge);
    let used = family!("keyhaven_service_memory_used_bytes", ServiceLabels, Gauge);
    let max = family!("keyhaven_service_memory_max_bytes", ServiceLabels, Gauge);
    let clients = family!("keyhaven_service_connected_clients", ServiceLabels, Gauge);
    let keys = family!("keyhaven_service_keys", ServiceLabels, Gauge);
    let commands = family!(
        "keyhaven_service_commands_processed",
        ServiceLabels,
        Counter
    );
    let full_syncs = family!("keyhaven_primary_full_syncs", ServiceLabels, Counter);
    let partial_syncs = family!("keyhaven_primary_partial_syncs", ServiceLabels, Counter);
    let progress = family!(
        "keyhaven_replica_sync_progress_percent",
        ServiceLabels,
        Gauge
    );
    let link_up = family!("keyhaven_replica_link_up", ServiceLabels, Gauge);
    let lag_bytes = family!("keyhaven_replica_lag_bytes", ServiceLabels, Gauge);
    let lag_seconds = family!(
        "keyhaven_replica_lag_seconds",
        ServiceLabels,
        Gauge<f64, AtomicU64>
    );
    let delays = family!(
        "keyhaven_replica_heartbeat_delay_seconds",
        ServiceLabels,
        DelayHistogram
    );
    let promotions = family!("keyhaven_promotions", PromotionLabels, Counter);
    let pauses = family!(
        "keyhaven_promotion_write_pause_seconds",
        ProjectLabels,
        DelayHistogram
    );
    let requests = family!(
        "keyhaven_promotion_request_duration_seconds",
        ProjectLabels,
        DelayHistogram
    );
    for (project, t) in app.promotion_timings() {
        if projects.contains(&project) {
            let labels = ProjectLabels { project };
            let set = |f: &Family<ProjectLabels, DelayHistogram>, d: &Delays| {
                if d.count > 0 {
                    *f.get_or_create(&labels)
                        .0
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = d.clone();
                }
            };
            set(&pauses, &t.write_pause);
            set(&requests, &t.request);
        }
    }

    for d in services {
        let row = &d.row;
        let primary = d
            .integrations
            .iter()
            .find(|l| l.dest_service_id == row.id)
            .map(|l| l.source_service.clone())
            .unwrap_or_else(|| row.name.clone());
        let labels = ServiceLabels {
            project: row.project.clone(),
            service: row.name.clone(),
            primary: primary.clone(),
        };
        for s in STATES {
            state
                .get_or_create(&StateLabels {
                    project: row.project.clone(),
                    service: row.name.clone(),
                    primary: primary.clone(),
                    state: s.as_str().into(),
                })
                .set((row.state == s) as i64);
        }
        role.get_or_create(&RoleLabels {
            project: row.project.clone(),
            service: row.name.clone(),
            primary: primary.clone(),
            role: match row.role {
                Role::Primary => "primary",
                Role::Replica => "replica",
            }
            .into(),
        })
        .set(1);
        let h = &row.health;
        up.get_or_create(&labels).set(h.answered as i64);
        if let Some(v) = h.used_memory {
            used.get_or_create(&labels).set(v);
        }
        if let Some(plan) = keyhaven_core::Plan::find(&row.plan) {
            max.get_or_create(&labels)
                .set(plan.maxmemory_bytes() as i64);
        }
        if let Some(v) = h.connected_clients {
            clients.get_or_create(&labels).set(v);
        }
        if let Some(v) = h.keys {
            keys.get_or_create(&labels).set(v);
        }
        let count = |f: &Family<ServiceLabels, Counter>, v: Option<i64>| {
            if let Some(v) = v.filter(|v| *v >= 0) {
                f.get_or_create(&labels).inc_by(v as u64);
            }
        };
        count(&commands, h.commands_processed);
        if row.role == Role::Primary {
            count(&full_syncs, h.full_syncs);
            count(&partial_syncs, h.partial_syncs);
        }
        if row.role == Role::Replica {
            if let Some(v) = h.sync_progress_percent() {
                progress.get_or_create(&labels).set(v as i64);
            }
            if let Some(v) = h.link_up {
                link_up.get_or_create(&labels).set(v as i64);
            }
            if let Some(v) = h.bytes_behind {
                lag_bytes.get_or_create(&labels).set(v);
            }
            if let Some(d) = app.heartbeats.delays(&row.id) {
                *delays
                    .get_or_create(&labels)
                    .0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = d;
            }
            if let Some(ms) = app.heartbeats.lag_ms(&row.id) {
                lag_seconds.get_or_create(&labels).set(ms as f64 / 1000.0);
            }
        }
    }
    for ((project, outcome), n) in app.promotion_outcomes() {
        if projects.contains(&project) {
            promotions
                .get_or_create(&PromotionLabels { project, outcome })
                .inc_by(n);
        }
    }
    let mut out = String::new();
    encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

/// A histogram whose buckets were counted elsewhere (by the heartbeats or the reconciler,
/// in the control layer): encoded as prometheus-client encodes its own histograms.
#[derive(Debug, Default)]
struct DelayHistogram(Mutex<Delays>);

impl TypedMetric for DelayHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DelayHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let d = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // Per bucket (the encoder accumulates), the +Inf bucket last.
        let mut buckets: Vec<(f64, u64)> = DELAY_BUCKETS.iter().copied().zip(d.buckets).collect();
        let counted: u64 = d.buckets.iter().sum();
        buckets.push((f64::INFINITY, d.count - counted));
        encoder.encode_histogram::<NoLabelSet>(d.sum_seconds, d.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::METRICS;

    #[test]
    fn every_metric_is_documented() {
        let doc = include_str!("../../../docs/metrics.md");
        for (name, help) in METRICS {
            assert!(
                doc.contains(&format!("`{name}`")),
                "{name} is not in docs/metrics.md"
            );
            assert!(!help.is_empty());
        }
    }
}
