//! `routes.json`: what the control plane tells the endpoint process to serve, and the pure
//! rules that pick a backend for a new connection from it.
//!
//! The control plane builds a [`Routes`] and writes it as `DIR/routes.json`, replacing the
//! file by rename, so the endpoint never reads half a file. Every decision here is a pure
//! function of the routes, the current time and the connection counts, so it is tested
//! without sockets.

use serde::{Deserialize, Serialize};

/// The name of the routes file inside the endpoint's state directory.
pub const ROUTES_FILE: &str = "routes.json";

/// Everything one endpoint process serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routes {
    pub listeners: Vec<Listener>,
}

/// One listening socket and where its connections go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// Unique within the file; identifies the listener across reloads (the service id,
    /// `<service id>-reader` for a reader endpoint). Also names it in the log.
    pub name: String,
    /// The address to listen on (`127.0.0.1`, `0.0.0.0`, `::`).
    pub bind: String,
    pub port: u16,
    /// `Some`: terminate TLS with this certificate. `None`: plain TCP.
    pub tls: Option<Tls>,
    /// A `service` listener's only backend; a `reader` listener's fallback.
    pub primary: Backend,
    #[serde(flatten)]
    pub kind: Kind,
}

impl Listener {
    /// What the listening socket is and serves: when it changes, the listener is replaced
    /// (its connections closed) rather than updated in place.
    pub(crate) fn socket_identity(&self) -> (&str, u16, bool, bool) {
        let reader = matches!(self.kind, Kind::Reader(_));
        (&self.bind, self.port, self.tls.is_some(), reader)
    }
}

/// A certificate chain and its private key, as PEM files (absolute paths). The endpoint
/// reads them again when their contents change; a new certificate serves new handshakes.
/// Both may name one file holding the chain and the key (what the local runtime writes):
/// then a rotation is one rename, and a new certificate is never paired with an old key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tls {
    /// The server certificate first, then any intermediates.
    pub cert: String,
    /// PKCS#8, SEC1 or PKCS#1 PEM. The endpoint never logs it.
    pub key: String,
}

/// A valkey-server's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    pub host: String,
    pub port: u16,
}

/// How a listener picks the backend of a new connection; `"kind"` in the JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Kind {
    /// Every connection goes to `primary`.
    Service,
    /// New connections spread over the replicas within the lag bound.
    Reader(Reader),
}

/// A reader endpoint's replicas and its rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reader {
    pub replicas: Vec<Replica>,
    /// A replica whose measured lag is above this gets no new connections.
    pub max_lag_ms: u64,
    /// When the `lag_ms` figures were measured (ms since the Unix epoch, this host's
    /// clock). Once they are older than `max_lag_ms` nothing proves any replica is within
    /// the bound, so every replica counts as over it.
    pub lag_as_of_ms: u64,
    /// What a new connection gets when no replica is eligible.
    pub fallback: Fallback,
    /// How long an open connection to a replica that is no longer eligible stays open.
    pub grace_ms: u64,
}

/// One replica behind a reader endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    /// The replica's service id: identifies it across reloads.
    pub id: String,
    pub host: String,
    pub port: u16,
    /// The last measured replication lag; `None` when there is no measurement (link
    /// down, still syncing): such a replica is not eligible.
    pub lag_ms: Option<u64>,
}

impl Replica {
    pub fn backend(&self) -> Backend {
        Backend {
            host: self.host.clone(),
            port: self.port,
        }
    }
}

/// What a reader endpoint does with a new connection when no replica is eligible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// Send it to the primary: always current, so reads stay correct.
    Primary,
    /// Close it at once: the client learns there is no current replica.
    Refuse,
}

impl Reader {
    /// The replicas that may take new connections at `now_ms` (ms since the Unix epoch):
    /// a measured lag within the bound, measured no longer than the bound ago.
    pub fn eligible(&self, now_ms: u64) -> impl Iterator<Item = &Replica> {
        let fresh = now_ms.saturating_sub(self.lag_as_of_ms) <= self.max_lag_ms;
        self.replicas
            .iter()
            .filter(move |r| fresh && r.lag_ms.is_some_and(|lag| lag <= self.max_lag_ms))
    }

    /// Whether an open connection to `replica` (id and address) may stay open: the last
    /// figures still list it within the bound. Unlike [`Reader::eligible`], stale figures
    /// do not count against it: they mean the control plane is stopped or restarting, and
    /// an open connection is closed only on evidence that its replica fell behind, so
    /// stopping `keyhaven server` drops no client connection.
    pub fn still_eligible(&self, replica: &Replica) -> bool {
        self.replicas.iter().any(|r| {
            r.id == replica.id
                && r.host == replica.host
                && r.port == replica.port
                && r.lag_ms.is_some_and(|lag| lag <= self.max_lag_ms)
        })
    }
}

/// Where a connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Primary(Backend),
    Replica(Replica),
}

impl Target {
    pub fn backend(&self) -> Backend {
        match self {
            Target::Primary(b) => b.clone(),
            Target::Replica(r) => r.backend(),
        }
    }
}

/// The backends to try for a new connection, in order: for a reader, the eligible
/// replicas, fewest open connections first (`open(id)` counts them), ties broken by
/// `turn` (a counter the listener advances per connection, so ties go round-robin); then
/// the primary when the fallback is `primary`. A `service` listener has the primary only.
/// Empty: refuse the connection.
pub fn candidates(
    listener: &Listener,
    now_ms: u64,
    turn: usize,
    open: impl Fn(&str) -> usize,
) -> Vec<Target> {
    let reader = match &listener.kind {
        Kind::Service => return vec![Target::Primary(listener.primary.clone())],
        Kind::Reader(reader) => reader,
    };
    let mut eligible: Vec<&Replica> = reader.eligible(now_ms).collect();
    let n = eligible.len();
    // Rotate first, then sort stably by count: among equal counts, the rotation decides.
    if n > 0 {
        eligible.rotate_left(turn % n);
    }
    eligible.sort_by_key(|r| open(&r.id));
    let mut out: Vec<Target> = eligible
        .into_iter()
        .map(|r| Target::Replica(r.clone()))
        .collect();
    if reader.fallback == Fallback::Primary {
        out.push(Target::Primary(listener.primary.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_765_000_000_000;

    fn replica(id: &str, lag: Option<u64>) -> Replica {
        Replica {
            id: id.into(),
            host: "127.0.0.1".into(),
            port: 16000 + id.len() as u16,
            lag_ms: lag,
        }
    }

    fn reader(replicas: Vec<Replica>, as_of: u64, fallback: Fallback) -> Listener {
        Listener {
            name: "p-reader".into(),
            bind: "127.0.0.1".into(),
            port: 17002,
            tls: None,
            primary: Backend {
                host: "127.0.0.1".into(),
                port: 16001,
            },
            kind: Kind::Reader(Reader {
                replicas,
                max_lag_ms: 1000,
                lag_as_of_ms: as_of,
                fallback,
                grace_ms: 5000,
            }),
        }
    }

    fn ids(targets: &[Target]) -> Vec<String> {
        targets
            .iter()
            .map(|t| match t {
                Target::Primary(_) => "primary".to_string(),
                Target::Replica(r) => r.id.clone(),
            })
            .collect()
    }

    #[test]
    fn parses_the_documented_shape() {
        let json = r#"{ "listeners": [
          { "name": "s1", "bind": "127.0.0.1", "port": 17001,
            "tls": {"cert": "/c.pem", "key": "/k.pem"}, "kind": "service",
            "primary": {"host": "127.0.0.1", "port": 16001} },
          { "name": "s1-reader", "bind": "127.0.0.1", "port": 17002, "tls": null,
            "kind": "reader", "primary": {"host": "127.0.0.1", "port": 16001},
            "replicas": [{"id": "r1", "host": "127.0.0.1", "port": 16002, "lag_ms": 3},
                         {"id": "r2", "host": "127.0.0.1", "port": 16003, "lag_ms": null}],
            "max_lag_ms": 1000, "lag_as_of_ms": 1765000000000,
            "fallback": "refuse", "grace_ms": 5000 } ]}"#;
        let routes: Routes = serde_json::from_str(json).unwrap();
        assert_eq!(routes.listeners[0].kind, Kind::Service);
        let Kind::Reader(r) = &routes.listeners[1].kind else {
            panic!("a reader")
        };
        assert_eq!(r.fallback, Fallback::Refuse);
        assert_eq!(r.replicas[1].lag_ms, None);
        let again: Routes = serde_json::from_str(&serde_json::to_string(&routes).unwrap()).unwrap();
        assert_eq!(again, routes);
    }

    #[test]
    fn a_service_listener_always_goes_to_its_primary() {
        let mut l = reader(vec![], NOW, Fallback::Refuse);
        l.kind = Kind::Service;
        assert_eq!(ids(&candidates(&l, NOW, 0, |_| 0)), ["primary"]);
    }

    #[test]
    fn replicas_over_the_bound_or_unmeasured_get_nothing() {
        let l = reader(
            vec![
                replica("a", Some(1001)),
                replica("bb", Some(1000)),
                replica("ccc", None),
            ],
            NOW,
            Fallback::Primary,
        );
        assert_eq!(ids(&candidates(&l, NOW, 0, |_| 0)), ["bb", "primary"]);
    }

    #[test]
    fn stale_lag_data_counts_every_replica_as_over_the_bound() {
        let l = reader(vec![replica("a", Some(0))], NOW - 1000, Fallback::Primary);
        assert_eq!(ids(&candidates(&l, NOW, 0, |_| 0)), ["a", "primary"]);
        assert_eq!(ids(&candidates(&l, NOW + 1, 0, |_| 0)), ["primary"]);
        let refuse = reader(vec![replica("a", Some(0))], NOW - 1001, Fallback::Refuse);
        assert!(candidates(&refuse, NOW, 0, |_| 0).is_empty());
    }

    #[test]
    fn fewest_connections_first_and_ties_take_turns() {
        let l = reader(
            vec![replica("a", Some(1)), replica("bb", Some(2))],
            NOW,
            Fallback::Refuse,
        );
        let open = |id: &str| if id == "a" { 3 } else { 1 };
        assert_eq!(ids(&candidates(&l, NOW, 0, open)), ["bb", "a"]);
        assert_eq!(ids(&candidates(&l, NOW, 0, |_| 0)), ["a", "bb"]);
        assert_eq!(ids(&candidates(&l, NOW, 1, |_| 0)), ["bb", "a"]);
    }

    #[test]
    fn a_moved_replica_is_no_longer_the_one_a_connection_went_to() {
        let l = reader(vec![replica("a", Some(1))], NOW, Fallback::Refuse);
        let Kind::Reader(r) = &l.kind else {
            unreachable!()
        };
        let mut moved = replica("a", Some(1));
        assert!(r.still_eligible(&moved));
        moved.port += 1;
        assert!(!r.still_eligible(&moved));
    }

    #[test]
    fn stale_figures_send_new_connections_to_the_primary_but_keep_open_ones() {
        let l = reader(vec![replica("a", Some(0))], NOW - 60_000, Fallback::Primary);
        let Kind::Reader(r) = &l.kind else {
            unreachable!()
        };
        assert_eq!(ids(&candidates(&l, NOW, 0, |_| 0)), ["primary"]);
        assert!(r.still_eligible(&replica("a", Some(0))));
        let behind = reader(vec![replica("a", Some(5000))], NOW, Fallback::Primary);
        let Kind::Reader(b) = &behind.kind else {
            unreachable!()
        };
        assert!(!b.still_eligible(&replica("a", Some(0))));
    }
}
