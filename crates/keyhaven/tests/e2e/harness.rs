//! The test platform: a real `keyhaven server` process on a temporary data directory, real
//! valkey-server nodes, and a real HTTP client. Everything a test starts is stopped when
//! its `Platform` drops, even when the test fails: the server is killed and
//! `keyhaven down` stops the nodes.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_keyhaven");

/// Each platform gets its own block of valkey ports, so parallel tests never share one.
static NEXT_PORT_BLOCK: AtomicU16 = AtomicU16::new(0);
const PORTS_PER_PLATFORM: u16 = 30;
/// A platform's node ports and its endpoints' ports (`endpoints.rs`: +1 and +2 widths).
const PORT_BLOCK: u16 = 3 * PORTS_PER_PLATFORM;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The valkey-server the tests use: `KEYHAVEN_VALKEY_SERVER`, else the one scripts/setup
/// installs into the repository's .venv.
pub fn valkey_server() -> PathBuf {
    if let Some(p) = std::env::var_os("KEYHAVEN_VALKEY_SERVER") {
        return PathBuf::from(p);
    }
    let p = workspace_root().join(".venv/bin/valkey-server");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup first",
        p.display()
    );
    p
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct Platform {
    pub data_dir: tempfile::TempDir,
    pub ports: (u16, u16),
    server: Option<Child>,
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
    extra_args: Vec<String>,
    /// Environment of the next server start (e.g. a failpoint); cleared by the test.
    pub env: Vec<(String, String)>,
    /// A command the server runs under (e.g. `setpriv` to run as another user).
    pub wrapper: Vec<String>,
    /// File systems mounted for this platform, unmounted when it drops.
    pub mounts: Vec<PathBuf>,
    /// The valkey-server the server runs (default: [`valkey_server`]).
    pub valkey_binary: Option<PathBuf>,
    /// The PostgreSQL database the server keeps its state in (`--database-url`); `None`:
    /// SQLite in its data directory. Set for every platform when the store-dependent tests
    /// run against PostgreSQL ([`crate::pg::selected`]).
    pub database_url: Option<String>,
    /// The loopback address this platform's host is: its API and valkey-servers bind it.
    pub host: String,
    /// The cloud its server serves (`--cloud`); `None`: the default, `local`.
    pub cloud: Option<String>,
}

impl Platform {
    pub async fn start() -> Platform {
        Self::start_with(&[]).await
    }

    /// A platform whose server gets extra command-line arguments.
    pub async fn start_with(extra: &[&str]) -> Platform {
        let mut p = Self::unstarted(extra);
        p.boot().await;
        p
    }

    /// Starts the server for the first time and reads the admin token it wrote.
    pub async fn boot(&mut self) {
        self.start_server().await;
        self.token = std::fs::read_to_string(self.data_dir.path().join("admin-token"))
            .unwrap()
            .trim()
            .to_string();
    }

    /// A platform whose data directory exists but whose server is not started yet, for
    /// tests that prepare the directory first (a small tmpfs, other owners).
    pub fn unstarted(extra: &[&str]) -> Platform {
        let block = NEXT_PORT_BLOCK.fetch_add(1, Ordering::SeqCst);
        // Each platform's block holds its node range and, above it, its endpoints' ports
        // (one and two range widths up). Test binaries are spread by pid, so two runs at
        // once rarely meet; Keyhaven skips ports in use anyway.
        let first = 20000 + (std::process::id() % 2) as u16 * 22000 + (block % 240) * PORT_BLOCK;
        Platform {
            data_dir: tempfile::Builder::new()
                .prefix("keyhaven-test")
                .tempdir()
                .unwrap(),
            ports: (first, first + PORTS_PER_PLATFORM - 1),
            server: None,
            base: String::new(),
            token: String::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            wrapper: Vec::new(),
            mounts: Vec::new(),
            valkey_binary: None,
            database_url: crate::pg::selected().then(crate::pg::fresh_database),
            host: "127.0.0.1".into(),
            cloud: None,
        }
    }

    /// A platform on a PostgreSQL database of its own, as the host `host` (a loopback
    /// address: its API and valkey-servers bind it) serving cloud `cloud`. Started.
    pub async fn first_host(cloud: &str, host: &str) -> Platform {
        let mut p = Self::unstarted(&[]);
        p.database_url = Some(crate::pg::fresh_database());
        p.host = host.into();
        p.cloud = Some(cloud.into());
        p.boot().await;
        p
    }

    /// Another host sharing `first`'s database, serving cloud `cloud` on `host`; it uses
    /// `first`'s admin token (the admin exists already). Started.
    pub async fn another_host(first: &Platform, cloud: &str, host: &str) -> Platform {
        let mut p = Self::unstarted(&[]);
        p.database_url = first.database_url.clone();
        p.host = host.into();
        p.cloud = Some(cloud.into());
        p.token = first.token.clone();
        p.start_server().await;
        p
    }

    /// A platform whose data directory is a tmpfs of `megabytes` MB, unmounted when it
    /// drops (mounting needs root), for tests that fill the disk.
    pub async fn start_on_small_disk(megabytes: u32) -> Platform {
        let mut p = Self::unstarted(&[]);
        let dir = p.data().to_path_buf();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(mounted.success(), "mounting a tmpfs needs root");
        p.mounts.push(dir);
        p.boot().await;
        p
    }

    /// Fills the data directory's disk with a file; returns it (delete it to free space).
    pub fn fill_disk(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.data().join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        filler
    }

    pub fn data(&self) -> &Path {
        self.data_dir.path()
    }

    /// Starts (or restarts) the server on this platform's data directory.
    pub async fn start_server(&mut self) {
        assert!(self.server.is_none(), "server already running");
        let addr_file = self.data().join("listen-addr");
        let _ = std::fs::remove_file(&addr_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data().join("server.log"))
            .unwrap();
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let mut placement: Vec<String> = Vec::new();
        if let Some(url) = &self.database_url {
            placement.extend(["--database-url".into(), url.clone()]);
        }
        if let Some(cloud) = &self.cloud {
            placement.extend(["--cloud".into(), cloud.clone()]);
            placement.extend(["--advertise-host".into(), self.host.clone()]);
            placement.extend(["--valkey-bind".into(), self.host.clone()]);
        }
        let child = cmd
            .arg("server")
            .args(&placement)
            .args(["--listen", &format!("{}:0", self.host)])
            .arg("--data-dir")
            .arg(self.data())
            .arg("--valkey-server")
            .arg(self.valkey_binary.clone().unwrap_or_else(valkey_server))
            .args([
                "--valkey-ports",
                &format!("{}-{}", self.ports.0, self.ports.1),
            ])
            .args(&self.extra_args)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("keyhaven starts");
        self.server = Some(child);
        let addr = wait_for(
            "the server to listen",
            Duration::from_secs(20),
            async || {
                std::fs::read_to_string(&addr_file)
                    .ok()
                    .filter(|s| s.ends_with('\n'))
            },
        )
        .await;
        self.base = format!("http://{}", addr.trim());
    }

    /// Stops the server with SIGTERM, as an operator would; valkey-servers keep running.
    pub async fn stop_server(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() >= deadline {
                    // Not left running behind a failed test.
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("server did not stop on SIGTERM");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Waits until the server process has exited by itself (a failpoint killed it).
    /// The server stays in `self.server` until it is gone, so a failure here still stops
    /// it when the platform drops.
    pub async fn wait_server_gone(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let child = self.server.as_mut().expect("server running");
            if child.try_wait().unwrap().is_some() {
                self.server = None;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not die at its failpoint"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The pid of the running server.
    pub fn server_pid(&self) -> u32 {
        self.server.as_ref().expect("server running").id()
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.data().join("server.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request with the admin token, answered as (status, JSON body).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(&self.token, method, path, body).await
    }

    pub async fn call_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, self.url(path))
            .header("authorization", format!("aivenv1 {token}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request reaches the server");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("body of a {status} is not JSON: {text:?}"));
        (status, json)
    }

    /// Creates a service and returns its object; panics unless the API answers 200.
    pub async fn create(&self, name: &str, plan: &str, replica_of: Option<&str>) -> Value {
        let (status, body) = self.try_create(name, plan, replica_of).await;
        assert_eq!(status, 200, "create {name}: {body}");
        self.remember_ca(&body["service"]).await;
        body["service"].clone()
    }

    pub async fn try_create(
        &self,
        name: &str,
        plan: &str,
        replica_of: Option<&str>,
    ) -> (u16, Value) {
        let integrations = match replica_of {
            Some(p) => json!([{"integration_type": "read_replica", "source_service": p}]),
            None => json!([]),
        };
        self.call(
            "POST",
            "/v1/project/default/service",
            Some(
                json!({"service_name": name, "service_type": "valkey", "plan": plan,
                        "cloud": null, "service_integrations": integrations}),
            ),
        )
        .await
    }

    pub async fn service(&self, name: &str) -> Value {
        let (status, body) = self
            .call("GET", &format!("/v1/project/default/service/{name}"), None)
            .await;
        assert_eq!(status, 200, "get {name}: {body}");
        self.remember_ca(&body["service"]).await;
        body["service"].clone()
    }

    /// Records project `default`'s CA for this platform's ports, and for the endpoint
    /// ports of `service` (which may run on another platform sharing the store), for
    /// [`valkey_client`].
    pub async fn remember_ca(&self, service: &Value) {
        let block = (self.ports.0, self.ports.0 + PORT_BLOCK - 1);
        let known = PROJECT_CAS
            .lock()
            .unwrap()
            .iter()
            .find(|(b, _)| *b == block)
            .map(|(_, pem)| pem.clone());
        let pem = match known {
            Some(pem) => pem,
            None => {
                let (status, body) = self.call("GET", "/v1/project/default/kms/ca", None).await;
                assert_eq!(status, 200, "project CA: {body}");
                body["certificate"].as_str().unwrap().as_bytes().to_vec()
            }
        };
        let mut cas = PROJECT_CAS.lock().unwrap();
        let mut ranges = vec![block];
        for c in service["components"].as_array().into_iter().flatten() {
            if let Some(port) = c["port"].as_u64() {
                ranges.push((port as u16, port as u16));
            }
        }
        for r in ranges {
            cas.retain(|(b, _)| *b != r);
            cas.insert(0, (r, pem.clone()));
        }
    }

    /// Waits until the service is RUNNING and returns its object.
    pub async fn wait_running(&self, name: &str) -> Value {
        wait_for(
            &format!("{name} to be RUNNING"),
            Duration::from_secs(30),
            async || {
                let s = self.service(name).await;
                (s["state"] == "RUNNING").then_some(s)
            },
        )
        .await
    }

    /// The id of the read_replica link whose destination is `replica`.
    pub async fn link_id(&self, replica: &str) -> String {
        let (status, body) = self
            .call(
                "GET",
                &format!("/v1/project/default/service/{replica}/integration"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["service_integrations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["dest_service"] == replica)
            .unwrap_or_else(|| panic!("{replica} has no link: {body}"))["service_integration_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The node directory of a service (by its id, read from the store via the port).
    pub fn node_dir_of_port(&self, port: u16) -> PathBuf {
        for entry in std::fs::read_dir(self.data().join("nodes")).unwrap() {
            let dir = entry.unwrap().path();
            let conf = std::fs::read_to_string(dir.join("valkey.conf")).unwrap_or_default();
            if conf.lines().any(|l| l == format!("port {port}")) {
                return dir;
            }
        }
        panic!("no node directory for port {port}");
    }

    /// DELETE of an integration with `?lossy=true` (a promotion that may lose writes).
    pub async fn delete_link_lossy(&self, id: &str) -> (u16, Value) {
        self.call(
            "DELETE",
            &format!("/v1/project/default/integration/{id}?lossy=true"),
            None,
        )
        .await
    }

    /// DELETE of an integration (a promotion, for a read_replica link).
    pub async fn delete_link(&self, id: &str) -> (u16, Value) {
        self.call(
            "DELETE",
            &format!("/v1/project/default/integration/{id}"),
            None,
        )
        .await
    }

    /// The password of one of Keyhaven's own users (`keyhaven-admin`, `keyhaven-repl`) on a
    /// service's node, from its generated config: tests use it to inspect or break a node.
    pub fn node_password(&self, service: &Value, user: &str) -> String {
        let port = node_port(service);
        let conf =
            std::fs::read_to_string(self.node_dir_of_port(port).join("valkey.conf")).unwrap();
        let prefix = format!("user {user} on >");
        conf.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {user} in the node's config"))
            .to_string()
    }

    /// A connection to a service's node as one of Keyhaven's own users.
    pub async fn node_connection(
        &self,
        service: &Value,
        user: &str,
    ) -> redis::aio::MultiplexedConnection {
        let port = u64::from(node_port(service));
        let url = format!(
            "redis://{user}:{}@127.0.0.1:{port}/",
            self.node_password(service, user)
        );
        redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// The pid of a service's valkey-server.
    pub fn node_pid(&self, service: &Value) -> u32 {
        let port = node_port(service);
        std::fs::read_to_string(self.node_dir_of_port(port).join("node.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// valkey-server processes running in this platform's data directory.
    /// A node's own forks (the child writing a snapshot, for a second or so) are not
    /// counted: they have a valkey-server as their parent.
    pub fn running_nodes(&self) -> Vec<u32> {
        let nodes = self.data().join("nodes");
        let mut pids = Vec::new();
        let mut parents = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
            if !zombie
                && exe.is_some_and(|e| e.to_string_lossy().contains("valkey"))
                && cwd.is_some_and(|c| c.starts_with(&nodes))
            {
                pids.push(pid);
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                parents.push(ppid);
            }
        }
        let all = pids.clone();
        pids.into_iter()
            .zip(parents)
            .filter(|(_, ppid)| !ppid.is_some_and(|pp| all.contains(&pp)))
            .map(|(pid, _)| pid)
            .collect()
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        // SIGTERM first: a server stops between reconciler activations, so a node it is
        // starting right now gets its pid file before `keyhaven down` looks for it.
        if let Some(mut child) = self.server.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new(BIN)
            .arg("down")
            .arg("--data-dir")
            .arg(self.data())
            .stdout(Stdio::null())
            .status();
        for m in &self.mounts {
            let _ = Command::new("umount").arg(m).status();
        }
    }
}

/// Waits until `name`'s valkey-server is a new process (not `old_pid`) that answers a PING
/// through the service URI, and the service is RUNNING; returns the new pid.
pub async fn wait_restarted(p: &Platform, name: &str, old_pid: u32) -> u32 {
    wait_for(
        &format!("{name} restarted"),
        Duration::from_secs(20),
        async || {
            let s = p.service(name).await;
            let pid = p.node_pid(&s);
            if pid == old_pid || !pid_alive(pid) || s["state"] != "RUNNING" {
                return None;
            }
            let mut con = valkey_client(&s)
                .get_multiplexed_async_connection()
                .await
                .ok()?;
            redis::cmd("PING")
                .query_async::<String>(&mut con)
                .await
                .ok()?;
            Some(pid)
        },
    )
    .await
}

/// The CA certificate (PEM) of project `default` of each platform, by its port block: what
/// [`valkey_client`] trusts for a service whose endpoint port lies in that block. Filled by
/// [`Platform::service`] (and so `wait_running`) the first time it sees a service, while
/// the server answers, so a test that stops Keyhaven later still reaches its nodes.
static PROJECT_CAS: std::sync::Mutex<Vec<PortsCa>> = std::sync::Mutex::new(Vec::new());

/// A range of ports (inclusive) and the CA (PEM) its endpoints' certificates chain to.
type PortsCa = ((u16, u16), Vec<u8>);

fn ca_for_port(port: u16) -> Option<Vec<u8>> {
    PROJECT_CAS
        .lock()
        .unwrap()
        .iter()
        .find(|((lo, hi), _)| (*lo..=*hi).contains(&port))
        .map(|(_, pem)| pem.clone())
}

/// How a client reaches `service`, from its structured connection fields (never by
/// parsing `service_uri`): the `components` entry of `usage` (`primary`: the service
/// itself; `replica`: a primary's reader endpoint), and the `default` user's password.
/// Host, port, password and whether it speaks TLS.
pub fn address(service: &Value, usage: &str) -> (String, u16, String, bool) {
    let c = service["components"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["usage"] == usage))
        .unwrap_or_else(|| panic!("no {usage} component in {service}"));
    (
        c["host"].as_str().unwrap().to_string(),
        c["port"].as_u64().unwrap() as u16,
        service["connection_info"]["valkey_password"]
            .as_str()
            .unwrap()
            .to_string(),
        c["ssl"].as_bool().unwrap_or(false),
    )
}

/// A Valkey client for `service` as its users connect: over TLS to its endpoint, trusting
/// its project's CA, when the service says `ssl`; else plain to its valkey-server.
pub fn valkey_client(service: &Value) -> redis::Client {
    valkey_client_for(service, "primary")
}

/// [`valkey_client`] for the component of `usage` (`replica`: the reader endpoint).
pub fn valkey_client_for(service: &Value, usage: &str) -> redis::Client {
    let (host, port, password, ssl) = address(service, usage);
    if !ssl {
        return redis::Client::open(format!("redis://default:{password}@{host}:{port}")).unwrap();
    }
    install_tls_provider();
    let ca = ca_for_port(port).unwrap_or_else(|| {
        panic!(
            "no project CA known for port {port}: read the service through Platform::service first"
        )
    });
    redis::Client::build_with_tls(
        format!("rediss://default:{password}@{host}:{port}"),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(ca),
        },
    )
    .unwrap()
}

/// rustls' process-wide crypto provider (ring, as Keyhaven's endpoint uses), once.
pub fn install_tls_provider() {
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The port of `service`'s valkey-server itself. Its endpoint (TLS) sits one range width
/// above it (`endpoints.rs`), and a platform's range is [`PORTS_PER_PLATFORM`] wide.
pub fn node_port(service: &Value) -> u16 {
    let (_, port, _, ssl) = address(service, "primary");
    if ssl { port - PORTS_PER_PLATFORM } else { port }
}

/// A Valkey client connection to `service` ([`valkey_client`]).
pub async fn valkey(service: &Value) -> redis::aio::MultiplexedConnection {
    let (host, port, _, ssl) = address(service, "primary");
    valkey_client(service)
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {host}:{port} (TLS: {ssl}): {e}"))
}

/// Waits until every write made on `con` so far is fsynced to the node's AOF (WAITAOF),
/// so a `kill -9` afterwards must not lose it.
pub async fn wait_aof(con: &mut redis::aio::MultiplexedConnection) {
    let (local, _replicas): (i64, i64) = redis::cmd("WAITAOF")
        .arg(1)
        .arg(0)
        .arg(5000)
        .query_async(con)
        .await
        .unwrap();
    assert_eq!(local, 1, "the writes were not fsynced to the AOF");
}

pub async fn dbsize(con: &mut redis::aio::MultiplexedConnection) -> i64 {
    redis::cmd("DBSIZE").query_async(con).await.unwrap()
}

/// Waits until a node holds `n` keys (replication caught up).
pub async fn wait_dbsize(con: &mut redis::aio::MultiplexedConnection, n: i64) {
    wait_for(&format!("{n} keys"), Duration::from_secs(10), async || {
        (dbsize(con).await == n).then_some(())
    })
    .await;
}

pub fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

pub fn pid_alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty()
        && !stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
}

/// Sends a signal (`-9`, `-STOP`, `-CONT`) to a process.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid} failed");
}

pub fn kill9(pid: u32) {
    signal(pid, "-9");
}

/// The port of the valkey-server a connection reached (`INFO server`'s `tcp_port`): which
/// node an endpoint sent it to. `None` when the node does not answer.
pub async fn server_port(con: &mut redis::aio::MultiplexedConnection) -> Option<u16> {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(con)
        .await
        .ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("tcp_port:"))?
        .trim()
        .parse()
        .ok()
}

/// `ROLE` of a node: `master` or `slave`.
pub async fn role(con: &mut redis::aio::MultiplexedConnection) -> String {
    let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(con).await.unwrap();
    match &role[0] {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("unexpected ROLE answer {other:?}"),
    }
}

/// Writes `count` keys `{prefix}:{i}` (1-based) of `value_len` bytes in one pipeline and
/// waits until every one is acknowledged.
pub async fn burst(
    con: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    count: u64,
    value_len: usize,
) {
    let value = "v".repeat(value_len);
    for chunk in (1..=count).collect::<Vec<_>>().chunks(2000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.set(format!("{prefix}:{i}"), &value).ignore();
        }
        let () = pipe.query_async(con).await.unwrap();
    }
}

/// Keeps a node's main thread busy in a script for `seconds` (as a tenant's long-running
/// script would): it answers nothing else meanwhile. The task ends with the script.
pub fn stall_in_script(service: &Value, seconds: f64) -> tokio::task::JoinHandle<()> {
    let client = valkey_client(service);
    tokio::spawn(async move {
        let mut con = client
            .get_multiplexed_async_connection_with_config(
                &redis::AsyncConnectionConfig::new()
                    .set_response_timeout(Some(Duration::from_secs(60))),
            )
            .await
            .unwrap();
        let script = "local t = redis.call('TIME') local start = t[1] + t[2] / 1e6 \
            while true do local n = redis.call('TIME') \
            if n[1] + n[2] / 1e6 - start > tonumber(ARGV[1]) then break end end return 1";
        let _: i64 = redis::cmd("EVAL_RO")
            .arg(script)
            .arg(0)
            .arg(seconds)
            .query_async(&mut con)
            .await
            .unwrap();
    })
}

/// Waits until a script started by [`stall_in_script`] runs: the node stops answering.
pub async fn wait_stalled(service: &Value) {
    let client = valkey_client(service);
    wait_for("the node to stall", Duration::from_secs(10), async || {
        let probe = async {
            let mut con = client.get_multiplexed_async_connection().await.ok()?;
            redis::cmd("PING")
                .query_async::<String>(&mut con)
                .await
                .ok()
        };
        tokio::time::timeout(Duration::from_millis(200), probe)
            .await
            .is_err()
            .then_some(())
    })
    .await;
}

/// One numeric field (`field=123`) of the last server log line that contains `marker`.
pub fn log_number(log: &str, marker: &str, field: &str) -> Option<i64> {
    let line = log.lines().rev().find(|l| l.contains(marker))?;
    let key = format!("{field}=");
    let at = line.find(&key)? + key.len();
    let digits: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    digits.parse().ok()
}

/// Clients writing continuously to a primary, each its own keys `w{n}:{i}` in pipelined
/// batches, recording when each batch was acknowledged. A writer that hits an error ends
/// the test: [`Writers::stop`] panics with it.
pub struct Writers {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked: Vec<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    tasks: Vec<tokio::task::JoinHandle<Vec<(i64, u64)>>>,
}

/// Microseconds since the epoch, the clock Keyhaven's log uses.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

impl Writers {
    pub async fn start(primary: &Value, count: usize, batch: u64, value_len: usize) -> Writers {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64};
        let stop = Arc::new(AtomicBool::new(false));
        let mut acked = Vec::new();
        let mut tasks = Vec::new();
        for n in 0..count {
            let counter = Arc::new(AtomicU64::new(0));
            acked.push(counter.clone());
            let stop = stop.clone();
            // Writes wait out a promotion's pause: a long response timeout.
            let mut con = valkey_client(primary)
                .get_multiplexed_async_connection_with_config(
                    &redis::AsyncConnectionConfig::new()
                        .set_response_timeout(Some(Duration::from_secs(30))),
                )
                .await
                .unwrap();
            let value = "v".repeat(value_len);
            tasks.push(tokio::spawn(async move {
                let mut acks = Vec::new();
                let mut next = 1u64;
                // Bounded: a test that forgets to stop its writers still ends.
                while !stop.load(Ordering::SeqCst) && next < 5_000_000 {
                    let mut pipe = redis::pipe();
                    for i in next..next + batch {
                        pipe.set(format!("w{n}:{i}"), &value).ignore();
                    }
                    let () = pipe
                        .query_async(&mut con)
                        .await
                        .unwrap_or_else(|e| panic!("writer {n} failed at w{n}:{next}: {e}"));
                    next += batch;
                    counter.store(next - 1, Ordering::SeqCst);
                    acks.push((now_us(), next - 1));
                }
                acks
            }));
        }
        Writers { stop, acked, tasks }
    }

    /// Writes acknowledged so far, per writer.
    pub fn acked(&self) -> Vec<u64> {
        self.acked
            .iter()
            .map(|a| a.load(Ordering::SeqCst))
            .collect()
    }

    /// Stops the writers; per writer, its (ack time, last key acknowledged) batches.
    pub async fn stop(self) -> Vec<Vec<(i64, u64)>> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for t in self.tasks {
            all.push(t.await.expect("a writer died"));
        }
        all
    }
}

/// The number of keys `w{writer}:1..=K` on a node, after checking that they are a gap-free
/// prefix of `w{writer}:1..=last`: every key up to K is there, none after it.
pub async fn gap_free_prefix(
    con: &mut redis::aio::MultiplexedConnection,
    writer: usize,
    last: u64,
) -> u64 {
    let mut present = Vec::with_capacity(last as usize);
    let keys: Vec<String> = (1..=last).map(|i| format!("w{writer}:{i}")).collect();
    for chunk in keys.chunks(1000) {
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(chunk)
            .query_async(con)
            .await
            .unwrap();
        present.extend(values.iter().map(Option::is_some));
    }
    let k = present.iter().take_while(|p| **p).count();
    if let Some(hole) = present[k..].iter().position(|p| *p) {
        panic!(
            "writer {writer}: w{writer}:{} is missing but w{writer}:{} is there: a hole in the acknowledged writes",
            k + 1,
            k + 1 + hole
        );
    }
    k as u64
}

/// A RUNNING primary `prim` with one RUNNING replica `repl`.
pub async fn primary_and_replica(p: &Platform) -> (Value, Value) {
    p.create("prim", "startup-4", None).await;
    let primary = p.wait_running("prim").await;
    p.create("repl", "startup-4", Some("prim")).await;
    let replica = p.wait_running("repl").await;
    (primary, replica)
}

/// Waits until the reconciler has observed `name` `n` more times: a negative ("never
/// re-attached") is checked only after the reconciler had its chances to break it.
pub async fn wait_observations(p: &Platform, name: &str, n: usize) {
    let mut seen = p.service(name).await["keyhaven_replication"]["observed_at"].clone();
    for _ in 0..n {
        seen = wait_for("a new observation", Duration::from_secs(20), async || {
            let now = p.service(name).await["keyhaven_replication"]["observed_at"].clone();
            (now != seen && !now.is_null()).then_some(now)
        })
        .await;
    }
}

/// Cuts a replica off its primary: a wrong replication password, then its link closed, so
/// it answers but cannot reconnect. Returns its admin connection.
pub async fn cut_off_its_primary(
    p: &Platform,
    replica: &Value,
) -> redis::aio::MultiplexedConnection {
    let mut ra = p.node_connection(replica, "keyhaven-admin").await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("primaryauth")
        .arg("wrong")
        .query_async(&mut ra)
        .await
        .unwrap();
    let _: redis::Value = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("master")
        .query_async(&mut ra)
        .await
        .unwrap();
    ra
}

/// The longest wait (µs) between two of a writer's acknowledgements that spans part of
/// `from..=to` (µs since the epoch); 0 with fewer than two.
pub fn longest_wait(acks: &[(i64, u64)], from: i64, to: i64) -> i64 {
    acks.windows(2)
        .filter(|w| w[1].0 >= from && w[0].0 <= to)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap_or(0)
}
