//! The local process runtime: each node is a `valkey-server` child process on this host.
//!
//! A node lives in `<data-dir>/nodes/<service-id>/` with its generated `valkey.conf`, a
//! `node.pid` written right after spawning, the `generation` of the role last applied, its
//! log and its data. Nodes are started in their own process group, so a Ctrl-C to Keyhaven
//! does not reach them: valkey-servers outlive Keyhaven, and a restarted Keyhaven adopts
//! them from their pid files (checking through /proc that the pid still runs *this* node's
//! config, so a reused pid is never mistaken for a node).
//!
//! The endpoint process (TLS and reader endpoints, `keyhaven endpoint`) has the same
//! lifecycle, one per data directory: `local/endpoint.rs`.
//!
//! Children Keyhaven spawned are reaped by a task per child, which records how the process
//! ended and wakes the reconciler, so a crashed node is restarted at once; repeated crashes
//! back off exponentially (0.1 s doubling to 10 s) so a node that cannot start does not
//! spin the host.

use crate::admin::Admin;
mod endpoint;

use crate::proc::{is_our_node, read_pid};
use crate::{Ensured, NodeProcess, NodeSpec, Runtime, RuntimeError, SERVICE_USER, config};
use async_trait::async_trait;
use keyhaven_core::{PrivateKeyPem, Role};
use keyhaven_endpoint::{Routes, Tls};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tracing::{info, warn};

/// A process that ran at least this long before it died counts as a fresh failure.
const HEALTHY_RUN: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Connection and command timeout of the runtime's admin connections to a node.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a node gets to shut down cleanly (AOF fsync, RDB save) before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

pub struct LocalRuntime {
    nodes_dir: PathBuf,
    valkey_server: PathBuf,
    bind: String,
    /// Woken when a child exits, so the reconciler restarts it without waiting for a tick.
    on_exit: Arc<Notify>,
    crashes: Arc<Mutex<HashMap<String, CrashRecord>>>,
    /// One lock per node: `ensure`, `stage` and `remove` of one node never interleave
    /// (the reconciler and a promotion may both drive the same node).
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Nodes being stopped on purpose: their exit is no crash.
    stopping: Arc<Mutex<HashSet<String>>>,
    /// Nodes whose process this runtime spawned and still reaps. Only those get a
    /// `stopping` mark from `stop`: an adopted node has no reaper to clear it, and a stale
    /// mark would make the first crash after its next start look like a stop.
    reaped: Arc<Mutex<HashSet<String>>>,
    /// `<data-dir>/endpoint`: the endpoint process's routes, certificates, pid and log.
    endpoint_dir: PathBuf,
    /// The `keyhaven` binary the endpoint process runs (`keyhaven endpoint --dir ...`).
    keyhaven_exe: PathBuf,
    /// When this runtime last started the endpoint process. The lock also serializes the
    /// endpoint's starts and file writes.
    endpoint_started: tokio::sync::Mutex<Option<Instant>>,
}

#[derive(Debug, Clone)]
struct CrashRecord {
    consecutive: u32,
    last_exit_at: Instant,
    last_exit: String,
    port_in_use: bool,
    /// The port the crashed process was started on: a port conflict is only reported
    /// for the port the node still has.
    port: u16,
}

impl LocalRuntime {
    /// A runtime for the nodes of `data_dir`, which runs `valkey_server` for them and
    /// `keyhaven_exe endpoint` for their endpoints.
    pub fn new(
        data_dir: &Path,
        valkey_server: PathBuf,
        keyhaven_exe: PathBuf,
        bind: String,
        on_exit: Arc<Notify>,
    ) -> Self {
        LocalRuntime {
            nodes_dir: data_dir.join("nodes"),
            endpoint_dir: endpoint::endpoint_dir(data_dir),
            keyhaven_exe,
            endpoint_started: tokio::sync::Mutex::default(),
            valkey_server,
            bind,
            on_exit,
            crashes: Arc::default(),
            locks: Mutex::default(),
            stopping: Arc::default(),
            reaped: Arc::default(),
        }
    }

    /// An admin connection to the node of `spec`, to change it while it runs.
    async fn admin(&self, spec: &NodeSpec) -> Result<Admin, redis::RedisError> {
        Admin::connect(self.host(), spec.port, &spec.admin_password, ADMIN_TIMEOUT).await
    }

    fn node_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    pub fn node_dir(&self, id: &str) -> PathBuf {
        self.nodes_dir.join(id)
    }

    fn io(&self, id: &str) -> impl FnOnce(std::io::Error) -> RuntimeError + use<> {
        let dir = self.node_dir(id).display().to_string();
        move |source| RuntimeError::Io { dir, source }
    }

    /// The pid of the node's live valkey-server, if one runs.
    fn running_pid(&self, id: &str) -> Option<u32> {
        running_pid_in(&self.node_dir(id))
    }

    fn read_generation(path: &Path) -> Option<i64> {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    }

    /// The newest generation this node has applied or had staged: nothing older may be
    /// applied to it.
    fn generation_floor(dir: &Path) -> Option<i64> {
        let applied = Self::read_generation(&dir.join("generation"));
        let staged = Self::read_generation(&dir.join("staged-generation"));
        applied.max(staged)
    }

    /// Writes the node's config when it differs from what is on disk.
    fn write_config(&self, spec: &NodeSpec, dir: &Path) -> Result<(), RuntimeError> {
        let conf_path = dir.join("valkey.conf");
        let conf = config::render(spec, dir, &self.bind, Self::primary_aof(dir));
        if std::fs::read_to_string(&conf_path).ok().as_deref() != Some(conf.as_str()) {
            write_atomic(&conf_path, conf.as_bytes()).map_err(self.io(&spec.id))?;
        }
        Ok(())
    }

    /// Brings the service user's ACL of a running node up to date with `spec` (a newer
    /// Keyhaven denies more commands; a node it adopts was configured by an older one),
    /// live, without a restart. `acl-applied` holds a digest of the rules last applied, so
    /// the command is sent once per change and retried until it succeeds. (A digest, not
    /// the rules: they contain the password, which only `valkey.conf` needs to hold.)
    async fn sync_service_acl(&self, spec: &NodeSpec, dir: &Path) -> Result<(), RuntimeError> {
        let rules = config::service_user_rules(spec);
        let digest = rules_digest(&rules);
        let marker = dir.join("acl-applied");
        if std::fs::read_to_string(&marker).ok().as_deref() == Some(digest.as_str()) {
            return Ok(());
        }
        let apply = |e: redis::RedisError| RuntimeError::Apply {
            label: spec.label.clone(),
            reason: format!("ACL SETUSER {SERVICE_USER}: {e}"),
        };
        let mut admin = self.admin(spec).await.map_err(apply)?;
        admin
            .acl_setuser(SERVICE_USER, &rules)
            .await
            .map_err(apply)?;
        write_atomic(&marker, digest.as_bytes()).map_err(self.io(&spec.id))?;
        info!(node = %spec.label, "applied the service user's command rules to the running valkey-server");
        Ok(())
    }

    /// Brings the settings Valkey can change at run time (`maxmemory` from the plan,
    /// `maxmemory-policy` from `user_config`) of a running node up to date with `spec`,
    /// with `CONFIG SET`: no restart, the process and its connections stay. The config
    /// file has them already for the next start. `config-applied` records what was last
    /// applied, so the commands are sent once per change and retried until they succeed.
    async fn sync_live_config(&self, spec: &NodeSpec, dir: &Path) -> Result<(), RuntimeError> {
        let wanted = live_settings(spec);
        let marker = dir.join("config-applied");
        if std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) {
            return Ok(());
        }
        let apply = |e: redis::RedisError| RuntimeError::Apply {
            label: spec.label.clone(),
            reason: format!("CONFIG SET: {e}"),
        };
        let started = Instant::now();
        let mut admin = self.admin(spec).await.map_err(apply)?;
        admin
            .config_set("maxmemory", &spec.maxmemory_bytes.to_string())
            .await
            .map_err(apply)?;
        admin
            .config_set("maxmemory-policy", &spec.maxmemory_policy)
            .await
            .map_err(apply)?;
        write_atomic(&marker, wanted.as_bytes()).map_err(self.io(&spec.id))?;
        info!(node = %spec.label, maxmemory = spec.maxmemory_bytes, policy = %spec.maxmemory_policy,
              micros = started.elapsed().as_micros() as u64,
              "applied maxmemory and maxmemory-policy to the running valkey-server");
        Ok(())
    }

    /// Whether a primary may start with `appendonly yes` (see `config::render`).
    fn primary_aof(dir: &Path) -> bool {
        let has_manifest = std::fs::read_dir(dir.join("appendonlydir"))
            .map(|entries| {
                entries
                    .flatten()
                    // Not `temp-…manifest`: that one exists only while the first AOF is
                    // being written.
                    .any(|e| e.file_name() == "appendonly.aof.manifest")
            })
            .unwrap_or(false);
        has_manifest || !dir.join("dump.rdb").exists()
    }

    fn backoff(&self, id: &str, port: u16) -> Option<(String, bool)> {
        let crashes = self.crashes.lock().unwrap_or_else(|p| p.into_inner());
        let rec = crashes.get(id)?;
        if rec.consecutive <= 1 {
            return None;
        }
        let wait =
            Duration::from_millis(100 * 2u64.saturating_pow(rec.consecutive - 2)).min(MAX_BACKOFF);
        (rec.last_exit_at.elapsed() < wait)
            .then(|| (rec.last_exit.clone(), rec.port_in_use && rec.port == port))
    }

    async fn spawn(&self, spec: &NodeSpec, dir: &Path) -> Result<u32, RuntimeError> {
        let conf = dir.join("valkey.conf");
        let log = dir.join("valkey.log");
        // What this run logs starts here; read back if it exits, to tell why.
        let log_start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("stderr.log"))
            .map_err(self.io(&spec.id))?;
        let mut child = tokio::process::Command::new(&self.valkey_server)
            .arg(&conf)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            // Its own process group: signals aimed at Keyhaven's group (Ctrl-C) spare it.
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| RuntimeError::Start {
                label: spec.label.clone(),
                reason: format!("{}: {e}", self.valkey_server.display()),
            })?;
        let pid = child.id().ok_or_else(|| RuntimeError::Start {
            label: spec.label.clone(),
            reason: "the process exited at once".into(),
        })?;
        if let Err(e) = write_atomic(&dir.join("node.pid"), pid.to_string().as_bytes()) {
            // An untracked node would be started twice: stop it rather than lose track.
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(self.io(&spec.id)(e));
        }
        info!(node = %spec.label, pid, port = spec.port, role = spec.role.as_str(), "started valkey-server");

        let crashes = self.crashes.clone();
        let stopping = self.stopping.clone();
        let reaped = self.reaped.clone();
        reaped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(spec.id.clone());
        let port = spec.port;
        let on_exit = self.on_exit.clone();
        let id = spec.id.clone();
        let label = spec.label.clone();
        let started = Instant::now();
        tokio::spawn(async move {
            let status = child.wait().await;
            reaped.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            let how = match status {
                Ok(s) => s.to_string(),
                Err(e) => format!("wait failed: {e}"),
            };
            // The reaper, not `remove`, clears the mark: it may only run after `remove` saw
            // the process gone.
            if stopping
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id)
            {
                info!(node = %label, pid, exit = %how, "valkey-server stopped");
                return;
            }
            let port_in_use = log_since(&log, log_start).contains("Address already in use");
            warn!(node = %label, pid, exit = %how, port_in_use, "valkey-server exited");
            {
                let mut crashes = crashes.lock().unwrap_or_else(|p| p.into_inner());
                let rec = crashes.entry(id).or_insert(CrashRecord {
                    consecutive: 0,
                    last_exit_at: Instant::now(),
                    last_exit: String::new(),
                    port_in_use: false,
                    port,
                });
                rec.consecutive = if started.elapsed() >= HEALTHY_RUN {
                    1
                } else {
                    rec.consecutive + 1
                };
                rec.last_exit_at = Instant::now();
                rec.last_exit = how;
                rec.port_in_use = port_in_use;
                rec.port = port;
            }
            on_exit.notify_one();
        });
        Ok(pid)
    }

    /// Applies a newer role to a running node through its admin connection. Idempotent;
    /// returns false while the role is not complete yet: a new primary's first AOF is
    /// still being written, and until it is, a restart would have to start from the RDB.
    async fn apply_role(&self, spec: &NodeSpec) -> Result<bool, RuntimeError> {
        let apply = |e: redis::RedisError| RuntimeError::Apply {
            label: spec.label.clone(),
            reason: e.to_string(),
        };
        let mut admin = self.admin(spec).await.map_err(apply)?;
        match (&spec.role, &spec.source) {
            (Role::Primary, _) => {
                admin.detach().await.map_err(apply)?;
                let info = admin.info(&["persistence"]).await.map_err(apply)?;
                if info.int("aof_enabled") != Some(1) {
                    admin.config_set("appendonly", "yes").await.map_err(apply)?;
                    return Ok(false);
                }
                Ok(info.int("aof_rewrite_in_progress") == Some(0)
                    && info.int("aof_rewrite_scheduled") == Some(0)
                    && info.get("aof_last_bgrewrite_status") == Some("ok"))
            }
            (Role::Replica, Some(src)) => {
                admin
                    .config_set("primaryauth", &src.repl_password)
                    .await
                    .map_err(apply)?;
                admin
                    .config_set("primaryuser", crate::REPL_USER)
                    .await
                    .map_err(apply)?;
                admin.replicaof(&src.host, src.port).await.map_err(apply)?;
                Ok(true)
            }
            (Role::Replica, None) => Ok(true),
        }
    }

    /// Stops every node under `data_dir` (for `keyhaven down`); data stays on disk. Two
    /// passes: a node started just before its server died may write its own pid file
    /// only after the first pass looked.
    pub async fn stop_all(data_dir: &Path) -> std::io::Result<Vec<u32>> {
        let mut stopped = Self::stop_pass(data_dir).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        stopped.extend(Self::stop_pass(data_dir).await?);
        Ok(stopped)
    }

    async fn stop_pass(data_dir: &Path) -> std::io::Result<Vec<u32>> {
        let mut stopped = Vec::new();
        let nodes = data_dir.join("nodes");
        let entries = match std::fs::read_dir(&nodes) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(stopped),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let dir = entry?.path();
            if let Some(pid) = running_pid_in(&dir) {
                stop_node(pid, &dir).await;
                stopped.push(pid);
            }
        }
        Ok(stopped)
    }
}

/// The pid of the live valkey-server of a node directory: from the pid file Keyhaven wrote
/// when it spawned the node, else from the one valkey-server writes itself (which covers a
/// Keyhaven crash between the spawn and its own write).
fn running_pid_in(dir: &Path) -> Option<u32> {
    ["node.pid", "valkey.pid"]
        .iter()
        .filter_map(|f| read_pid(&dir.join(f)))
        .find(|pid| is_our_node(*pid, dir))
}

/// Stops the valkey-server `pid` of the node directory `dir`.
async fn stop_node(pid: u32, dir: &Path) {
    stop_pid(pid, |pid| is_our_node(pid, dir)).await
}

/// SIGTERM, then SIGKILL after the grace period; returns once `ours(pid)` is false (the
/// process is gone, or the pid now belongs to another).
async fn stop_pid(pid: u32, ours: impl Fn(u32) -> bool) {
    let target = Pid::from_raw(pid as i32);
    let _ = kill(target, Signal::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while ours(pid) {
        if Instant::now() > deadline {
            let _ = kill(target, Signal::SIGKILL);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a log file got after `offset` (at most its last 64 KiB).
fn log_since(path: &Path, offset: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = offset.max(len.saturating_sub(64 * 1024));
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_ok() {
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The run-time settings `sync_live_config` applies, as recorded in `config-applied`.
fn live_settings(spec: &NodeSpec) -> String {
    format!(
        "maxmemory {}\nmaxmemory-policy {}\n",
        spec.maxmemory_bytes, spec.maxmemory_policy
    )
}

/// A digest of ACL rules, to tell whether they changed (not a secret-keeping hash: the file
/// it is written to sits beside `valkey.conf`, which holds the rules themselves).
fn rules_digest(rules: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    rules.hash(&mut h);
    format!("{:016x}", h.finish())
}

fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    std::fs::rename(tmp, path)
}

#[async_trait]
impl Runtime for LocalRuntime {
    async fn ensure(&self, spec: &NodeSpec) -> Result<Ensured, RuntimeError> {
        let lock = self.node_lock(&spec.id);
        let _held = lock.lock().await;
        let dir = self.node_dir(&spec.id);
        if let Some(floor) = Self::generation_floor(&dir)
            && spec.generation < floor
        {
            return Err(RuntimeError::StaleGeneration {
                id: spec.id.clone(),
                wanted: spec.generation,
                applied: floor,
            });
        }
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(self.io(&spec.id))?;
        }
        self.write_config(spec, &dir)?;
        let applied = Self::read_generation(&dir.join("generation"));

        if let Some(pid) = self.running_pid(&spec.id) {
            // A node that is loading its data answers nothing yet: the rules are applied
            // by a later ensure, and the config already has them for its next start.
            if let Err(e) = self.sync_service_acl(spec, &dir).await {
                warn!(node = %spec.label, error = %e, "could not update the service user's rules yet; retried");
            }
            if let Err(e) = self.sync_live_config(spec, &dir).await {
                warn!(node = %spec.label, error = %e, "could not apply the new settings yet; retried");
            }
            let mut role_pending = false;
            if applied != Some(spec.generation) {
                if self.apply_role(spec).await? {
                    info!(node = %spec.label, generation = spec.generation, role = spec.role.as_str(), "applied role to running valkey-server");
                    write_atomic(
                        &dir.join("generation"),
                        spec.generation.to_string().as_bytes(),
                    )
                    .map_err(self.io(&spec.id))?;
                    // The AOF exists now: the config may say `appendonly yes`.
                    self.write_config(spec, &dir)?;
                } else {
                    role_pending = true;
                }
            }
            return Ok(Ensured::Running {
                pid,
                just_started: false,
                role_pending,
            });
        }
        if let Some((last_exit, port_in_use)) = self.backoff(&spec.id, spec.port) {
            return Ok(Ensured::BackingOff {
                last_exit,
                port_in_use,
            });
        }
        // The config on disk carries the role, so a fresh process starts in it. A primary
        // that has only an RDB starts from it; its AOF is turned on once it runs, and only
        // then is the generation recorded.
        let role_pending = spec.role == Role::Primary && !Self::primary_aof(&dir);
        if !role_pending {
            write_atomic(
                &dir.join("generation"),
                spec.generation.to_string().as_bytes(),
            )
            .map_err(self.io(&spec.id))?;
        }
        let pid = self.spawn(spec, &dir).await?;
        // The config it started from carries the current rules.
        let rules = config::service_user_rules(spec);
        write_atomic(&dir.join("acl-applied"), rules_digest(&rules).as_bytes())
            .map_err(self.io(&spec.id))?;
        write_atomic(&dir.join("config-applied"), live_settings(spec).as_bytes())
            .map_err(self.io(&spec.id))?;
        Ok(Ensured::Running {
            pid,
            just_started: true,
            role_pending,
        })
    }

    async fn stage(&self, spec: &NodeSpec) -> Result<(), RuntimeError> {
        let lock = self.node_lock(&spec.id);
        let _held = lock.lock().await;
        let dir = self.node_dir(&spec.id);
        // Recorded first: from now on no older generation may rewrite this config.
        write_atomic(
            &dir.join("staged-generation"),
            spec.generation.to_string().as_bytes(),
        )
        .map_err(self.io(&spec.id))?;
        self.write_config(spec, &dir)
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let lock = self.node_lock(id);
        let _held = lock.lock().await;
        let dir = self.node_dir(id);
        if let Some(pid) = self.running_pid(id) {
            self.stopping
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.to_string());
            stop_node(pid, &dir).await;
            info!(node = %id, pid, "stopped valkey-server of a deleted service");
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io(id)(e)),
        }
        self.crashes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        Ok(())
    }

    async fn stop(&self, id: &str) -> Result<bool, RuntimeError> {
        let lock = self.node_lock(id);
        let _held = lock.lock().await;
        let dir = self.node_dir(id);
        let Some(pid) = self.running_pid(id) else {
            return Ok(false);
        };
        if self
            .reaped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
        {
            self.stopping
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.to_string());
        }
        // SIGTERM: a primary fsyncs its AOF, a replica saves its snapshot, then it exits.
        stop_node(pid, &dir).await;
        // A clean stop is no crash: the next start is not held back by a backoff.
        self.crashes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        info!(node = %id, pid, "stopped valkey-server; its data is kept (powered off)");
        Ok(true)
    }

    async fn set_service_password(&self, spec: &NodeSpec) -> Result<(), RuntimeError> {
        let lock = self.node_lock(&spec.id);
        let _held = lock.lock().await;
        let dir = self.node_dir(&spec.id);
        if self.running_pid(&spec.id).is_none() {
            return Err(RuntimeError::Apply {
                label: spec.label.clone(),
                reason: "valkey-server is not running".into(),
            });
        }
        self.sync_service_acl(spec, &dir).await?;
        // Only once the node took it: a restart must not bring back the old password.
        self.write_config(spec, &dir)
    }

    async fn process(&self, id: &str) -> NodeProcess {
        match self.running_pid(id) {
            Some(_) => NodeProcess::Running,
            None => NodeProcess::NotRunning,
        }
    }

    fn host(&self) -> &str {
        match self.bind.as_str() {
            "0.0.0.0" | "::" | "*" => "127.0.0.1",
            b => b,
        }
    }

    /// A probe bind on the address the nodes bind.
    fn port_available(&self, port: u16) -> bool {
        std::net::TcpListener::bind((self.bind.as_str(), port)).is_ok()
    }

    async fn ensure_endpoint(&self) -> Result<u32, RuntimeError> {
        self.ensure_endpoint_process().await
    }

    async fn write_routes(&self, routes: &Routes) -> Result<bool, RuntimeError> {
        self.write_routes_file(routes).await
    }

    async fn write_endpoint_cert(
        &self,
        name: &str,
        cert_pem: &str,
        key: &PrivateKeyPem,
    ) -> Result<Tls, RuntimeError> {
        self.write_cert_file(name, cert_pem, key).await
    }

    /// Reads the first 64 KiB of the node's `dump.rdb`: enough for the header, its
    /// auxiliary fields and the functions of any real dataset.
    async fn snapshot_holds_keys(&self, id: &str) -> Option<bool> {
        use tokio::io::AsyncReadExt;
        let file = tokio::fs::File::open(self.node_dir(id).join("dump.rdb"))
            .await
            .ok()?;
        let mut head = Vec::with_capacity(64 * 1024);
        file.take(64 * 1024).read_to_end(&mut head).await.ok()?;
        crate::rdb::holds_keys(&head)
    }
}
