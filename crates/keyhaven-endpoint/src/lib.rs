//! Keyhaven's endpoint process: an L4 proxy in front of valkey-servers. It terminates TLS
//! for a service's `rediss://` URI (Keyhaven's Valkey build has no TLS) and serves each
//! primary's reader endpoint, which spreads new connections over the replicas whose
//! measured replication lag is within a bound.
//!
//! The control plane tells it what to serve through one file, `DIR/routes.json`
//! ([`routes::Routes`]), replaced by rename so it is never seen half-written. It runs as
//! its own process (`keyhaven endpoint --dir DIR`, started by the local runtime), so a
//! restart of `keyhaven server` drops no client connection.
//!
//! - **L4 only.** Bytes are copied both ways; no Valkey command is parsed, and no client is
//!   authenticated again (a replica accepts its primary's password, see DESIGN → Reader
//!   endpoint). Nagle is off on both sockets.
//! - **Reader endpoints** send each *new* connection to an eligible replica: one whose
//!   `lag_ms` is known and within `max_lag_ms`, measured at most `max_lag_ms` ago
//!   (`lag_as_of_ms`; older data makes every replica count as over the bound). Fewest open
//!   connections first, ties round-robin. With no eligible replica, the connection goes to
//!   the primary (`fallback: primary`) or is closed at once (`fallback: refuse`). A
//!   backend that does not accept within [`listener::CONNECT_TIMEOUT`] is skipped for the
//!   next eligible replica (then the primary, with `fallback: primary`); when none
//!   answers, the client connection is closed.
//! - **Grace.** An open reader connection stays on the replica it was given while the
//!   latest figures list that replica within the bound. Once they do not (gone from the
//!   list, moved, over the bound, its lag unknown), the connection is closed after the
//!   listener's `grace_ms` unless the replica is back within the bound by then. Clients
//!   reconnect and land on a current replica; the grace lets short hiccups of the lag
//!   figures pass without dropping anyone. Connections that fell back to the primary stay
//!   there: the primary is always current. Stale figures (the control plane stopped or
//!   restarting, so nobody rewrites the routes) send new connections to the fallback but
//!   close no open one: an open connection is closed only on evidence that its replica
//!   fell behind, so stopping or restarting `keyhaven server` drops no client connection.
//! - **Reload.** `routes.json` is checked every [`ROUTES_POLL`] (its inode, size and times;
//!   a file changed in the last second is read again and compared, as timestamps are
//!   coarse). A new listener starts; a listener whose socket changed (address, port, TLS on
//!   or off, service or reader) is replaced, its connections closed; a removed one stops
//!   accepting and closes its connections; any other change applies to new connections,
//!   never dropping open ones. Certificate files are read again every [`CERT_POLL`] and
//!   on each reload; a new certificate serves new handshakes, open TLS sessions go on. A
//!   file that does not parse is logged and the routes in force stay.
//! - **Bounds.** At most [`listener::MAX_CONNECTIONS`] open connections per listener; a
//!   TLS handshake gets [`listener::HANDSHAKE_TIMEOUT`]. A port that cannot be bound is
//!   logged and retried, never fatal.

mod listener;
pub mod routes;
mod tls;

pub use listener::{CONNECT_TIMEOUT, HANDSHAKE_TIMEOUT, MAX_CONNECTIONS};
pub use routes::{Backend, Fallback, Kind, Listener, ROUTES_FILE, Reader, Replica, Routes, Tls};

use std::collections::HashMap;
use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tracing::{error, info};

/// How often `routes.json` is checked for a change, and reader connections for their grace.
pub const ROUTES_POLL: Duration = Duration::from_millis(50);
/// How often certificate files are checked for new contents.
pub const CERT_POLL: Duration = Duration::from_secs(1);
/// A file changed less than this ago is read again even when its stamp looks the same:
/// two writes within one timestamp tick, of one size, may even reuse the inode.
const RACY_WINDOW: Duration = Duration::from_secs(1);

/// Serves `dir/routes.json` until `shutdown` completes, then closes every listener and
/// connection. Fails only when `dir` is not a directory; everything else (a bad file, a
/// taken port, a missing certificate) is logged and retried.
pub async fn run(dir: PathBuf, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    if !std::fs::metadata(&dir)?.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            format!("{} is not a directory", dir.display()),
        ));
    }
    let path = dir.join(ROUTES_FILE);
    info!(dir = %dir.display(), "endpoint started");
    let mut endpoint = Endpoint::default();
    let mut watch = Watched::default();
    let mut certs_checked = Instant::now();
    let mut tick = tokio::time::interval(ROUTES_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        let mut reloaded = false;
        if let Some(contents) = watch.changed(&path) {
            match parse(&contents) {
                Ok(routes) => {
                    endpoint.apply(routes, &path).await;
                    reloaded = true;
                }
                Err(e) => error!(file = %path.display(), error = %e,
                                 "cannot use the new routes; the previous ones stay in force"),
            }
        }
        if reloaded || certs_checked.elapsed() >= CERT_POLL {
            certs_checked = Instant::now();
            for handle in endpoint.listeners.values() {
                handle.refresh_cert();
            }
        }
        for handle in endpoint.listeners.values() {
            handle.sweep();
        }
    }
    let n = endpoint.listeners.len();
    for (_, handle) in endpoint.listeners.drain() {
        handle.stop().await;
    }
    info!(listeners = n, "endpoint stopped");
    Ok(())
}

/// A routes file that parses, with unique listener names. A missing file is no routes.
fn parse(contents: &Option<Vec<u8>>) -> Result<Routes, String> {
    let Some(bytes) = contents else {
        return Ok(Routes::default());
    };
    let routes: Routes = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let mut names = std::collections::HashSet::new();
    if let Some(dup) = routes.listeners.iter().find(|l| !names.insert(&l.name)) {
        return Err(format!("two listeners are named {}", dup.name));
    }
    Ok(routes)
}

/// The listeners in force, by name.
#[derive(Default)]
struct Endpoint {
    listeners: HashMap<String, listener::Handle>,
}

impl Endpoint {
    /// Makes the running listeners those of `routes`: removed ones first, so the ports
    /// they free can be taken by new ones in the same reload.
    async fn apply(&mut self, routes: Routes, path: &Path) {
        let wanted: std::collections::HashSet<&str> =
            routes.listeners.iter().map(|l| l.name.as_str()).collect();
        let removed: Vec<String> = self
            .listeners
            .keys()
            .filter(|name| !wanted.contains(name.as_str()))
            .cloned()
            .collect();
        let stopped = removed.len();
        for name in removed {
            if let Some(handle) = self.listeners.remove(&name) {
                handle.stop().await;
            }
        }
        let (mut started, mut updated, mut replaced, mut unchanged) = (0, 0, 0, 0);
        for spec in routes.listeners {
            match self.listeners.get(&spec.name) {
                Some(handle) if *handle.spec() == spec => unchanged += 1,
                Some(handle) if handle.spec().socket_identity() == spec.socket_identity() => {
                    handle.update(spec);
                    updated += 1;
                }
                Some(_) => {
                    if let Some(old) = self.listeners.remove(&spec.name) {
                        old.stop().await;
                    }
                    self.listeners
                        .insert(spec.name.clone(), listener::Handle::start(spec));
                    replaced += 1;
                }
                None => {
                    self.listeners
                        .insert(spec.name.clone(), listener::Handle::start(spec));
                    started += 1;
                }
            }
        }
        // The control plane rewrites the routes several times a second with fresh lag
        // figures: only a change of listeners is worth a line at info.
        let listeners = self.listeners.len();
        if started + replaced + stopped > 0 {
            info!(file = %path.display(), listeners, started, updated, replaced, stopped, unchanged,
                  "applied routes");
        } else {
            tracing::debug!(file = %path.display(), listeners, updated, unchanged, "applied routes");
        }
    }
}

/// Tells whether a file changed since it was last read, by its stamp (inode, size,
/// modification and change times), and, while it is recent, by its contents.
#[derive(Default)]
struct Watched {
    /// `None` before the first look; `Some(None)` when the file was missing.
    stamp: Option<Option<Stamp>>,
    contents: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    recent: bool,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    let recent = meta
        .modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_none_or(|age| age < RACY_WINDOW);
    Some(Stamp {
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.size(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        ctime: (meta.ctime(), meta.ctime_nsec()),
        recent,
    })
}

impl Watched {
    /// The file's new contents (`Some(None)`: it is gone) when it changed since the last
    /// call; `None` when it did not.
    fn changed(&mut self, path: &Path) -> Option<Option<Vec<u8>>> {
        let now = stamp(path);
        let same_stamp = self.stamp.as_ref() == Some(&now);
        if same_stamp && !now.as_ref().is_some_and(|s| s.recent) {
            return None;
        }
        let first = self.stamp.is_none();
        self.stamp = Some(now.clone());
        let contents = match now {
            None => None,
            Some(_) => match std::fs::read(path) {
                Ok(bytes) => Some(bytes),
                Err(e) => {
                    error!(file = %path.display(), error = %e, "cannot read the routes");
                    // Looked at again next time.
                    self.stamp = None;
                    return None;
                }
            },
        };
        if !first && contents == self.contents {
            return None;
        }
        self.contents = contents.clone();
        Some(contents)
    }
}
