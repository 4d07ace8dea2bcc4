//! One listener: its socket, its accept loop, its open connections, and the bytes each
//! connection forwards.
//!
//! The listener's routes ([`Listener`]) and certificate can be swapped while it runs: new
//! connections use the new ones, open connections keep the backend and the TLS session they
//! started with. Every open connection has an entry in the listener's table; removing the
//! entry (a stopped listener, a replica past its grace) drops the connection's close
//! sender, which ends its task and closes both of its sockets.

use crate::routes::{self, Kind, Listener, Target};
use crate::tls::{self, Loaded};
use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

/// Most open connections per listener. Past it, new connections are closed at once: a
/// flood on one port cannot take every file descriptor of the process (each connection
/// holds two) and with them every other service's endpoint. Ten thousand is well above
/// what one Valkey service's clients open (Valkey's own default `maxclients` is 10 000).
pub const MAX_CONNECTIONS: usize = 10_000;
/// How long a backend may take to accept a connection before the next candidate is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Each direction's copy buffer, held for a connection's whole life: Valkey's requests and
/// most replies are small, and tokio's default (8 KiB each way) made an idle plain
/// connection cost ~20 KiB (bench/endpoint.py); a larger value just takes more reads.
const COPY_BUFFER: usize = 2048;

/// How long a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a listener whose address is taken tries to bind again.
const BIND_RETRY: Duration = Duration::from_millis(500);
/// A pause after a failed accept (out of file descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// A running listener, as the endpoint's supervisor holds it.
pub(crate) struct Handle {
    shared: Arc<Shared>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// What the accept loop, the connection tasks and the supervisor share.
struct Shared {
    spec: RwLock<Arc<Listener>>,
    /// The certificate new handshakes use; `None` for a plain listener, or while a TLS
    /// listener's files cannot be read (its connections are then closed at once).
    tls: RwLock<Option<Loaded>>,
    conns: Mutex<Conns>,
}

#[derive(Default)]
struct Conns {
    next_id: u64,
    /// Advanced per connection: breaks ties between replicas round-robin.
    turn: usize,
    open: HashMap<u64, Conn>,
    /// Open connections per replica id, for least-connections.
    per_replica: HashMap<String, usize>,
    /// Whether the limit was hit and logged (logged once per episode, not per connection).
    at_limit: bool,
}

struct Conn {
    /// The backend it goes to (or is connecting to).
    target: Target,
    /// Since when its replica has not been eligible.
    ineligible_since: Option<Instant>,
    /// Dropping this closes the connection.
    _close: oneshot::Sender<()>,
}

impl Conns {
    fn set_target(&mut self, id: u64, target: Target) {
        let Some(conn) = self.open.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut conn.target, target);
        if let Target::Replica(r) = &old {
            decrement(&mut self.per_replica, &r.id);
        }
        if let Target::Replica(r) = &conn.target {
            *self.per_replica.entry(r.id.clone()).or_default() += 1;
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(conn) = self.open.remove(&id)
            && let Target::Replica(r) = &conn.target
        {
            decrement(&mut self.per_replica, &r.id);
        }
    }
}

fn decrement(counts: &mut HashMap<String, usize>, id: &str) {
    if let Some(n) = counts.get_mut(id) {
        *n -= 1;
        if *n == 0 {
            counts.remove(id);
        }
    }
}

/// Removes a connection's entry when its task ends, however it ends.
struct ConnGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.shared.conns().remove(self.id);
    }
}

impl Handle {
    /// Loads the certificate (if any) and starts accepting; binding is retried in the
    /// background while the address is taken.
    pub fn start(spec: Listener) -> Handle {
        let shared = Arc::new(Shared {
            spec: RwLock::new(Arc::new(spec)),
            tls: RwLock::new(None),
            conns: Mutex::default(),
        });
        shared.refresh_cert();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(shared.clone(), stopped));
        Handle { shared, stop, task }
    }

    pub fn spec(&self) -> Arc<Listener> {
        self.shared.spec()
    }

    /// New routes for the same socket: new connections follow them; open ones keep their
    /// backend (a reader's are checked against them by [`Handle::sweep`]).
    pub fn update(&self, spec: Listener) {
        let tls_changed = self.spec().tls != spec.tls;
        *self.shared.spec.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(spec);
        if tls_changed {
            self.shared.refresh_cert();
        }
    }

    /// Reads the certificate files again and applies them to new handshakes when their
    /// contents changed.
    pub fn refresh_cert(&self) {
        self.shared.refresh_cert();
    }

    /// Closes the reader connections whose replica has not been eligible for the grace
    /// period. Returns how many it closed.
    pub fn sweep(&self) -> usize {
        self.shared.sweep(Instant::now())
    }

    /// Stops accepting (the port is free when this returns) and closes every connection.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        let mut conns = self.shared.conns();
        let closed = conns.open.len();
        conns.open.clear();
        conns.per_replica.clear();
        debug!(listener = %self.shared.spec().name, closed, "listener stopped");
    }
}

impl Shared {
    fn spec(&self) -> Arc<Listener> {
        self.spec.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, Conns> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refresh_cert(&self) {
        let spec = self.spec();
        let mut slot = self.tls.write().unwrap_or_else(|p| p.into_inner());
        let Some(files) = &spec.tls else {
            *slot = None;
            return;
        };
        match tls::load(files, slot.as_ref().map(|l| l.digest)) {
            Ok(None) => {}
            Ok(Some(loaded)) => {
                info!(listener = %spec.name, cert = %files.cert, "certificate loaded for new handshakes");
                *slot = Some(loaded);
            }
            // The certificate in force (if any) stays; the files are read again when they
            // change.
            Err(e) => error!(listener = %spec.name, error = %e, "cannot load the certificate"),
        }
    }

    /// Registers a new connection and starts its task, or closes it: at the connection
    /// limit, with no backend to send it to (a reader refusing), or with TLS and no
    /// certificate.
    fn admit(self: &Arc<Self>, stream: TcpStream) {
        let spec = self.spec();
        let acceptor = match &spec.tls {
            None => None,
            Some(_) => match self.tls.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
                Some(loaded) => Some(loaded.acceptor.clone()),
                None => {
                    debug!(listener = %spec.name, "closed a connection: no certificate loaded");
                    return;
                }
            },
        };
        let mut conns = self.conns();
        if conns.open.len() >= MAX_CONNECTIONS {
            if !conns.at_limit {
                warn!(listener = %spec.name, limit = MAX_CONNECTIONS, "connection limit reached; closing new connections");
                conns.at_limit = true;
            }
            return;
        }
        conns.at_limit = false;
        let turn = conns.turn;
        conns.turn = conns.turn.wrapping_add(1);
        let candidates = {
            let per_replica = &conns.per_replica;
            routes::candidates(&spec, unix_ms(), turn, |id| {
                per_replica.get(id).copied().unwrap_or(0)
            })
        };
        let Some(first) = candidates.first() else {
            debug!(listener = %spec.name, "closed a connection: no replica within the lag bound");
            return;
        };
        let id = conns.next_id;
        conns.next_id += 1;
        let (close, closed) = oneshot::channel();
        conns.open.insert(
            id,
            Conn {
                target: Target::Primary(spec.primary.clone()),
                ineligible_since: None,
                _close: close,
            },
        );
        conns.set_target(id, first.clone());
        drop(conns);
        let guard = ConnGuard {
            shared: self.clone(),
            id,
        };
        tokio::spawn(serve(guard, stream, acceptor, candidates, closed));
    }

    fn sweep(&self, now: Instant) -> usize {
        let spec = self.spec();
        let Kind::Reader(reader) = &spec.kind else {
            return 0;
        };
        let grace = Duration::from_millis(reader.grace_ms);
        let mut conns = self.conns();
        let mut expired = Vec::new();
        for (id, conn) in conns.open.iter_mut() {
            let Target::Replica(replica) = &conn.target else {
                continue;
            };
            if reader.still_eligible(replica) {
                conn.ineligible_since = None;
                continue;
            }
            let since = *conn.ineligible_since.get_or_insert(now);
            if now.duration_since(since) >= grace {
                expired.push(*id);
            }
        }
        for id in &expired {
            conns.remove(*id);
        }
        if !expired.is_empty() {
            info!(listener = %spec.name, closed = expired.len(), grace_ms = reader.grace_ms,
                  "closed reader connections to replicas no longer within the lag bound");
        }
        expired.len()
    }
}

/// Binds (retrying while the address is taken) and accepts until told to stop.
async fn accept_loop(shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let mut failures = 0u32;
    let socket = loop {
        let spec = shared.spec();
        match TcpListener::bind((spec.bind.as_str(), spec.port)).await {
            Ok(socket) => {
                if failures > 0 {
                    info!(listener = %spec.name, port = spec.port, "bound after {failures} failed attempts");
                }
                break socket;
            }
            Err(e) => {
                if failures == 0 {
                    warn!(listener = %spec.name, bind = %spec.bind, port = spec.port, error = %e,
                          "cannot listen; retrying every {BIND_RETRY:?}");
                }
                failures += 1;
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(BIND_RETRY) => {}
        }
    };
    debug!(listener = %shared.spec().name, "listening");
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = socket.accept() => match accepted {
                Ok((stream, _peer)) => shared.admit(stream),
                Err(e) => {
                    warn!(listener = %shared.spec().name, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
}

/// One connection's life: the TLS handshake if any, the backend connection, then bytes
/// both ways until either side closes or its entry is removed.
async fn serve(
    guard: ConnGuard,
    stream: TcpStream,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    candidates: Vec<Target>,
    closed: oneshot::Receiver<()>,
) {
    let work = async {
        // Valkey's replies are small and latency-bound: no Nagle delay on either side.
        stream.set_nodelay(true)?;
        match acceptor {
            None => forward(&guard, stream, candidates).await,
            Some(acceptor) => {
                let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake"))??;
                forward(&guard, tls, candidates).await
            }
        }
    };
    tokio::select! {
        result = work => if let Err(e) = result {
            debug!(listener = %guard.shared.spec().name, error = %e, "connection ended");
        },
        _ = closed => {}
    }
}

/// Connects to the first candidate that answers within [`CONNECT_TIMEOUT`] and copies
/// bytes both ways.
async fn forward<S: AsyncRead + AsyncWrite + Unpin>(
    guard: &ConnGuard,
    mut client: S,
    candidates: Vec<Target>,
) -> io::Result<()> {
    let name = guard.shared.spec().name.clone();
    for (i, target) in candidates.into_iter().enumerate() {
        if i > 0 {
            guard.shared.conns().set_target(guard.id, target.clone());
        }
        let backend = target.backend();
        let connect = TcpStream::connect((backend.host.as_str(), backend.port));
        let failure = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(mut upstream)) => {
                upstream.set_nodelay(true)?;
                tokio::io::copy_bidirectional_with_sizes(
                    &mut client,
                    &mut upstream,
                    COPY_BUFFER,
                    COPY_BUFFER,
                )
                .await?;
                return Ok(());
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {CONNECT_TIMEOUT:?}"),
        };
        warn!(listener = %name, backend = %format!("{}:{}", backend.host, backend.port),
              error = %failure, "cannot connect to the backend");
    }
    Err(io::Error::new(
        io::ErrorKind::ConnectionRefused,
        "no backend answered",
    ))
}

/// Now, in ms since the Unix epoch (the clock `lag_as_of_ms` is on).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
