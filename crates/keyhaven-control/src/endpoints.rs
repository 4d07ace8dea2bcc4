//! Client endpoints (DESIGN → The data plane: TLS, Reader endpoint): what this instance's
//! endpoint process (`keyhaven-endpoint`, one per host, owned by the runtime) serves, kept
//! current every [`PERIOD`].
//!
//! - **Ports.** A service's endpoints sit at fixed offsets from its node's port: the width
//!   of its cloud's port range `W` (1000 for the default 16000–16999) gives the service
//!   endpoint at `port + W` and the reader endpoint at `port + 2W` (17004 and 18004 for a
//!   node on 16004). Nothing more to allocate or store, and a node moved to another port
//!   takes its endpoints along.
//! - **Service endpoint.** With `valkey_ssl` (the default) each running service has a TLS
//!   endpoint in front of its valkey-server: its `service_uri` is `rediss://` to it. Without,
//!   clients use the valkey-server's own port (`redis://`) and there is no service endpoint.
//! - **Reader endpoint** of a primary: spreads new connections over its RUNNING replicas in
//!   this cloud whose lag, measured here (`heartbeat.rs`), is within
//!   `valkey_reader_max_lag_ms`; else the primary (or a refusal, `valkey_reader_fallback`).
//!   TLS by the same rule. Replicas in another cloud are not in it: their lag is measured
//!   by their own instance. A replica being promoted or deleted leaves the list at once;
//!   open connections to a replica that left it are closed after [`GRACE_MS`].
//! - **Certificates.** One per project and host, signed by the project's CA for this
//!   instance's advertised host, made at start and again [`crate::ca::ROTATE_BEFORE_DAYS`]
//!   before expiry; a new one serves new handshakes, open sessions go on.
//!
//! The routes are rewritten every period (their lag figures carry the time they were
//! measured); the endpoint process treats figures older than the bound as "every replica
//! behind" for new connections, so a stopped control plane never routes by old figures.

use crate::App;
use crate::ca::{due_for_rotation, sign_server_cert};
use keyhaven_core::time::now_micros;
use keyhaven_core::{Role, ServiceState, UserConfig, user_config::ReaderFallback};
use keyhaven_endpoint::{Backend, Fallback, Kind, Listener, Reader, Replica, Routes, Tls};
use keyhaven_store::{LinkStatus, ServiceRow};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

/// How often the routes (and the lag figures in them) are rewritten.
pub const PERIOD: Duration = Duration::from_millis(200);
/// How often while a service endpoint is not serving yet.
const PENDING_PERIOD: Duration = Duration::from_millis(20);
/// How long a probe of a new endpoint may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(100);
/// How long an open reader connection stays on a replica that left the bound.
pub const GRACE_MS: u64 = 5000;

/// Which service endpoints accept connections, as this instance last saw them, and a
/// wake-up for the loop that keeps them (the reconciler holds a new service back from
/// RUNNING until its endpoint serves: its `service_uri` must work when it says RUNNING).
#[derive(Default)]
pub struct Serving {
    /// Listeners (by name: the service id, `<id>-reader`) seen accepting connections.
    serving: Mutex<HashSet<String>>,
    /// Listeners in the routes last written.
    pending: Mutex<HashSet<String>>,
    wake: Notify,
}

impl App {
    /// Whether `service` can be told RUNNING as far as its endpoints go: each it has (its
    /// TLS endpoint with `valkey_ssl`, a primary's reader endpoint) accepts connections.
    pub(crate) fn endpoint_serves(&self, service: &ServiceRow) -> bool {
        if self.endpoint_ports(service).is_none() {
            return true;
        }
        let mut wanted = Vec::new();
        if wants_tls(service) {
            wanted.push(service.id.clone());
        }
        if service.role == Role::Primary {
            wanted.push(reader_name(&service.id));
        }
        let serves = {
            let serving = self
                .endpoints
                .serving
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            wanted.iter().all(|n| serving.contains(n))
        };
        if !serves {
            self.endpoints.wake.notify_one();
        }
        serves
    }
}

/// Whether clients reach `service` over TLS (`valkey_ssl`, true unless set false).
fn wants_tls(service: &ServiceRow) -> bool {
    UserConfig::from_json(Some(&service.user_config))
        .unwrap_or_default()
        .ssl()
}

/// The reader endpoint's listener name of a primary.
fn reader_name(service_id: &str) -> String {
    format!("{service_id}-reader")
}

/// Where a service's endpoints listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointPorts {
    /// The service endpoint (TLS, with `valkey_ssl`).
    pub service: u16,
    /// The reader endpoint (a primary's).
    pub reader: u16,
}

/// The endpoint ports of a node on `port` in a cloud whose nodes take `range`; `None`
/// when they would pass 65535.
pub fn endpoint_ports(port: u16, range: (u16, u16)) -> Option<EndpointPorts> {
    let width = u32::from(range.1.checked_sub(range.0)?) + 1;
    let service = u32::from(port) + width;
    let reader = service + width;
    Some(EndpointPorts {
        service: u16::try_from(service).ok()?,
        reader: u16::try_from(reader).ok()?,
    })
}

impl App {
    /// The endpoint ports of `service`, from its cloud's port range.
    pub fn endpoint_ports(&self, service: &ServiceRow) -> Option<EndpointPorts> {
        let range = match self.cloud(&service.cloud) {
            Some(c) => (c.row.port_min, c.row.port_max),
            None => (
                *self.config.valkey_ports.start(),
                *self.config.valkey_ports.end(),
            ),
        };
        endpoint_ports(service.port, range)
    }

    /// What clients connect to for `service`: `rediss://` to its TLS endpoint with
    /// `valkey_ssl`, else `redis://` to its valkey-server. Host, port and whether TLS.
    pub fn client_address(&self, service: &ServiceRow) -> (String, u16, bool) {
        let host = self.node_host(service);
        match (wants_tls(service), self.endpoint_ports(service)) {
            (true, Some(p)) => (host, p.service, true),
            _ => (host, service.port, false),
        }
    }

    /// The reader endpoint of a primary: host, port and whether TLS.
    pub fn reader_address(&self, service: &ServiceRow) -> Option<(String, u16, bool)> {
        if service.role != Role::Primary {
            return None;
        }
        let ports = self.endpoint_ports(service)?;
        Some((self.node_host(service), ports.reader, wants_tls(service)))
    }
}

/// A URI for the `default` user.
pub fn uri(host: &str, port: u16, tls: bool, password: &str) -> String {
    let scheme = if tls { "rediss" } else { "redis" };
    format!("{scheme}://default:{password}@{host}:{port}")
}

/// The certificate each project's endpoints on this host serve.
#[derive(Default)]
struct Certs {
    by_project: HashMap<String, (Tls, i64)>,
}

impl Certs {
    async fn for_project(&mut self, app: &App, project: &str) -> Option<Tls> {
        let now = now_micros();
        if let Some((tls, not_after)) = self.by_project.get(project)
            && !due_for_rotation(*not_after, now)
        {
            return Some(tls.clone());
        }
        let made = async {
            let ca = app.project_ca(project).await.map_err(|e| e.to_string())?;
            let host = app.config.advertise_host.clone();
            let cert = sign_server_cert(&ca, &[host.as_str()], now).map_err(|e| e.to_string())?;
            let tls = app
                .runtime
                .write_endpoint_cert(
                    &format!("project-{project}"),
                    &cert.certificate_pem,
                    &cert.private_key,
                )
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((tls, cert.not_after))
        }
        .await;
        match made {
            Ok((tls, not_after)) => {
                info!(project, host = %app.config.advertise_host, "endpoint certificate issued");
                self.by_project
                    .insert(project.to_string(), (tls.clone(), not_after));
                Some(tls)
            }
            Err(e) => {
                warn!(project, error = %e, "could not issue the endpoint certificate; retried");
                None
            }
        }
    }
}

/// Keeps the endpoint process running and its routes current until `shutdown`.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut certs = Certs::default();
    let mut last_error: Option<(String, Instant)> = None;
    loop {
        if !app.is_fenced()
            && let Err(e) = refresh(&app, &mut certs).await
        {
            // Logged when it changes, and once a minute while it lasts.
            let repeat = last_error
                .as_ref()
                .is_some_and(|(m, at)| *m == e && at.elapsed() < Duration::from_secs(60));
            if !repeat {
                warn!(error = %e, "could not update the client endpoints; retried");
                last_error = Some((e, Instant::now()));
            }
        }
        // Soon again while a listener is not serving yet: it binds within the endpoint's
        // poll of its routes, and a new service waits for it.
        let period = if pending(&app) {
            PENDING_PERIOD
        } else {
            PERIOD
        };
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = app.endpoints.wake.notified() => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

async fn refresh(app: &Arc<App>, certs: &mut Certs) -> Result<(), String> {
    app.runtime
        .ensure_endpoint()
        .await
        .map_err(|e| e.to_string())?;
    let (services, links) = app
        .store
        .read(|tx| {
            let services = tx.services_all()?;
            let mut links = Vec::new();
            for s in &services {
                if s.role == Role::Primary {
                    links.extend(tx.integrations_of_service(&s.id)?);
                }
            }
            Ok::<_, crate::AppError>((services, links))
        })
        .await
        .map_err(|e| e.to_string())?;
    let by_id: HashMap<&str, &ServiceRow> = services.iter().map(|s| (s.id.as_str(), s)).collect();
    let bind = app.config.valkey_bind.clone();
    let now_ms = (now_micros() / 1000) as u64;
    let mut listeners = Vec::new();
    for s in services
        .iter()
        .filter(|s| app.is_mine(&s.cloud) && s.powered && s.state != ServiceState::Poweroff)
    {
        let Some(ports) = app.endpoint_ports(s) else {
            continue;
        };
        let cfg = UserConfig::from_json(Some(&s.user_config)).unwrap_or_default();
        let tls = if cfg.ssl() {
            match certs.for_project(app, &s.project).await {
                Some(t) => Some(t),
                None => continue,
            }
        } else {
            None
        };
        let node = Backend {
            host: app.node_host(s),
            port: s.port,
        };
        if tls.is_some() {
            listeners.push(Listener {
                name: s.id.clone(),
                bind: bind.clone(),
                port: ports.service,
                tls: tls.clone(),
                primary: node.clone(),
                kind: Kind::Service,
            });
        }
        if s.role != Role::Primary {
            continue;
        }
        let replicas = links
            .iter()
            .filter(|l| l.source_service_id == s.id && l.status == LinkStatus::Active)
            .filter_map(|l| by_id.get(l.dest_service_id.as_str()).copied())
            .filter(|r| {
                r.state == ServiceState::Running && r.role == Role::Replica && app.is_mine(&r.cloud)
            })
            .map(|r| Replica {
                id: r.id.clone(),
                host: app.node_host(r),
                port: r.port,
                lag_ms: app
                    .heartbeats
                    .lag_ms(&r.id)
                    .and_then(|l| u64::try_from(l).ok()),
            })
            .collect();
        listeners.push(Listener {
            name: reader_name(&s.id),
            bind: bind.clone(),
            port: ports.reader,
            tls,
            primary: node,
            kind: Kind::Reader(Reader {
                replicas,
                max_lag_ms: cfg.reader_max_lag_ms(),
                lag_as_of_ms: now_ms,
                fallback: match cfg.reader_fallback() {
                    ReaderFallback::Primary => Fallback::Primary,
                    ReaderFallback::Refuse => Fallback::Refuse,
                },
                grace_ms: GRACE_MS,
            }),
        });
    }
    let routes = Routes { listeners };
    app.runtime
        .write_routes(&routes)
        .await
        .map_err(|e| e.to_string())?;
    probe(app, &routes).await;
    Ok(())
}

/// Whether some listener in the routes is not known to serve yet.
fn pending(app: &App) -> bool {
    let serving = app
        .endpoints
        .serving
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    app.endpoints
        .pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .any(|id| !serving.contains(id))
}

/// Checks with a TCP connect that each listener new in the routes accepts connections,
/// and forgets the ones gone from them.
async fn probe(app: &App, routes: &Routes) {
    let host = app.runtime.host().to_string();
    let wanted: Vec<(&str, u16)> = routes
        .listeners
        .iter()
        .map(|l| (l.name.as_str(), l.port))
        .collect();
    let known: HashSet<String> = {
        let mut serving = app
            .endpoints
            .serving
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        serving.retain(|id| wanted.iter().any(|(n, _)| n == id));
        serving.clone()
    };
    let mut up = Vec::new();
    for (name, port) in wanted.iter().filter(|(n, _)| !known.contains(*n)) {
        let connect = tokio::net::TcpStream::connect((host.as_str(), *port));
        if let Ok(Ok(_)) = tokio::time::timeout(PROBE_TIMEOUT, connect).await {
            up.push(name.to_string());
        }
    }
    *app.endpoints
        .pending
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = wanted.iter().map(|(n, _)| n.to_string()).collect();
    app.endpoints
        .serving
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(up);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_sit_one_and_two_range_widths_above_the_node() {
        assert_eq!(
            endpoint_ports(16004, (16000, 16999)),
            Some(EndpointPorts {
                service: 17004,
                reader: 18004
            })
        );
        assert_eq!(
            endpoint_ports(20001, (20000, 20099)),
            Some(EndpointPorts {
                service: 20101,
                reader: 20201
            })
        );
        assert_eq!(endpoint_ports(65000, (64000, 65000)), None);
        assert_eq!(endpoint_ports(16000, (16999, 16000)), None);
    }

    #[test]
    fn uris_say_tls_by_their_scheme() {
        assert_eq!(uri("h", 17000, true, "pw"), "rediss://default:pw@h:17000");
        assert_eq!(uri("h", 16000, false, "pw"), "redis://default:pw@h:16000");
    }
}
