//! Throwaway PostgreSQL clusters for the tests: Debian's `postgresql` (scripts/setup
//! installs it), initialised in a temporary directory and started on a free loopback port,
//! as the `postgres` user when the tests run as root (initdb refuses root). Durability is
//! off (`fsync=off`): these clusters hold test data only.
//!
//! One shared cluster serves every test of the binary (a fresh database each); a test that
//! restarts PostgreSQL starts one of its own. Each cluster has a watchdog process that
//! stops it and removes its directory once the test binary has exited, however it exits,
//! and a cluster a test owns is also stopped when it drops.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Cluster {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

static SHARED: OnceLock<Cluster> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// The shared cluster, started on first use.
pub fn shared() -> &'static Cluster {
    SHARED.get_or_init(Cluster::start)
}

/// A new empty database on the shared cluster; its URL.
pub fn fresh_database() -> String {
    let c = shared();
    let name = format!(
        "keyhaven_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::SeqCst)
    );
    c.psql(&format!("CREATE DATABASE {name}"));
    c.url(&name)
}

fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run scripts/setup")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no initdb under /usr/lib/postgresql: run scripts/setup")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program args` as the user PostgreSQL runs as.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    /// Initialises and starts a new cluster; it answers when this returns.
    pub fn start() -> Cluster {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("keyhaven-pg")
            .tempdir()
            .unwrap()
            .keep();
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "cannot hand {} to the postgres user", dir.display());
        }
        let data = dir.join("data");
        let out = as_postgres(&bin.join("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Cluster {
            port: free_port(),
            dir,
            bin,
        };
        cluster.pg_ctl_start();
        cluster.watch();
        cluster
    }

    fn pg_ctl_start(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
            self.port,
            self.dir.display()
        );
        let out = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "PostgreSQL did not start: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
        );
    }

    /// Stops PostgreSQL (fast shutdown: open connections are cut).
    pub fn stop(&self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Starts it again after [`Cluster::stop`], on the same port.
    pub fn restart(&self) {
        self.pg_ctl_start();
    }

    /// A process that outlives this one by at most a second: when the test binary is
    /// gone, it stops the cluster and removes its directory.
    fn watch(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {stop} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            stop = if is_root() {
                format!(
                    "runuser -u postgres -- {}",
                    self.bin.join("pg_ctl").display()
                )
            } else {
                self.bin.join("pg_ctl").display().to_string()
            },
            data = self.dir.join("data").display(),
            dir = self.dir.display(),
        );
        // `setsid --fork` returns at once, leaving the watchdog in a session of its own.
        let started = Command::new("setsid")
            .args(["--fork", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("the cluster's watchdog starts");
        assert!(started.success(), "the cluster's watchdog did not start");
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs one SQL command as the superuser in the `postgres` database; panics if it fails.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in(&self.url("postgres"), sql)
    }

    /// Runs one SQL command in the database of `database_url`; panics if it fails.
    pub fn psql_in(&self, database_url: &str, sql: &str) -> String {
        let database = database_url.rsplit('/').next().unwrap();
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1"])
            .args(["-At", "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// Whether the store-dependent tests run against PostgreSQL (`KEYHAVEN_TEST_STORE=postgres`)
/// instead of the embedded SQLite.
pub fn selected() -> bool {
    std::env::var("KEYHAVEN_TEST_STORE").is_ok_and(|s| s == "postgres")
}

/// A cluster a test owns (to restart it): stopped when it drops.
pub struct OwnedCluster(pub Cluster);

impl Drop for OwnedCluster {
    fn drop(&mut self) {
        self.0.stop();
        let _ = std::fs::remove_dir_all(&self.0.dir);
    }
}
