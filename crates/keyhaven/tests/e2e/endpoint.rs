//! The endpoint process's lifecycle in the local runtime: `ensure_endpoint` starts the real
//! `keyhaven endpoint`, another runtime on the same data directory adopts it, it serves
//! the routes and certificates the runtime writes, it outlives the runtimes, and
//! `keyhaven down` stops it.

use crate::harness::{BIN, valkey_server, wait_for};
use keyhaven_endpoint::{Backend, Kind, Listener, Routes};
use keyhaven_runtime::Runtime;
use keyhaven_runtime::local::LocalRuntime;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Runs `keyhaven down` on the data directory when dropped, however the test ends.
struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .arg("down")
            .arg("--data-dir")
            .arg(&self.0)
            .stdout(Stdio::null())
            .status();
    }
}

/// A bare valkey-server on a free port, killed when dropped.
struct Backing {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Backing {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn backing_valkey() -> Backing {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(valkey_server())
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Backing {
        child,
        port,
        _dir: dir,
    }
}

fn runtime(data_dir: &Path) -> LocalRuntime {
    LocalRuntime::new(
        data_dir,
        valkey_server(),
        PathBuf::from(BIN),
        "127.0.0.1".into(),
        Arc::default(),
    )
}

fn listener(name: &str, port: u16, backend: u16) -> Listener {
    Listener {
        name: name.into(),
        bind: "127.0.0.1".into(),
        port,
        tls: None,
        primary: Backend {
            host: "127.0.0.1".into(),
            port: backend,
        },
        kind: Kind::Service,
    }
}

async fn ping(port: u16) -> Option<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    redis::cmd("PING").query_async(&mut conn).await.ok()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn the_endpoint_process_is_started_adopted_and_stopped_by_down() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().canonicalize().unwrap();
    let _down = Down(data_dir.clone());
    let valkey = backing_valkey();
    let (plain, tls) = (free_port(), free_port());

    let first = runtime(&data_dir);
    let now = keyhaven_core::time::now_micros();
    let ca = keyhaven_control::ca::new_project_ca("default", now).unwrap();
    let cert = keyhaven_control::ca::sign_server_cert(&ca, &["127.0.0.1"], now).unwrap();
    let files = first
        .write_endpoint_cert("svc-tls", &cert.certificate_pem, &cert.private_key)
        .await
        .unwrap();
    assert_eq!(mode(Path::new(&files.cert)), 0o600);
    let mut secured = listener("svc-tls", tls, valkey.port);
    secured.tls = Some(files);
    let routes = Routes {
        listeners: vec![listener("svc", plain, valkey.port), secured],
    };
    assert!(first.write_routes(&routes).await.unwrap());
    assert!(!first.write_routes(&routes).await.unwrap(), "unchanged");
    let endpoint_dir = data_dir.join("endpoint");
    assert_eq!(mode(&endpoint_dir.join("routes.json")), 0o600);

    let pid = first.ensure_endpoint().await.unwrap();
    assert_eq!(first.ensure_endpoint().await.unwrap(), pid);
    let pong = wait_for(
        "PING through the endpoint",
        Duration::from_secs(10),
        async || ping(plain).await,
    )
    .await;
    assert_eq!(pong, "PONG");
    // The runtime's one file of certificate and key is what the endpoint loads.
    let log = endpoint_dir.join("endpoint.log");
    wait_for(
        "the certificate loaded",
        Duration::from_secs(10),
        async || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.lines()
                .any(|l| l.contains("certificate loaded") && l.contains("svc-tls"))
                .then_some(())
        },
    )
    .await;
    assert!(
        !std::fs::read_to_string(&log)
            .unwrap()
            .contains("PRIVATE KEY")
    );

    // A new runtime on the same data directory (a restarted server) adopts it, and the
    // endpoint serves on while neither runtime exists.
    drop(first);
    let second = runtime(&data_dir);
    assert_eq!(second.ensure_endpoint().await.unwrap(), pid);
    drop(second);
    assert_eq!(ping(plain).await.as_deref(), Some("PONG"));

    let out = Command::new(BIN)
        .arg("down")
        .arg("--data-dir")
        .arg(&data_dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("stopped the endpoint process ({pid})")),
        "{said}"
    );
    assert_eq!(ping(plain).await, None);
}
