//! The endpoint process of a data directory: `keyhaven endpoint --dir <data-dir>/endpoint`,
//! one per host, serving every TLS and reader endpoint of the cloud's services
//! (`keyhaven-endpoint`). It lives like a valkey-server: its own process group (a Ctrl-C
//! to `keyhaven server` spares it, so a control-plane restart drops no client connection),
//! a pid file, adopted by the next start after a check through /proc that the pid still
//! runs *this* directory's endpoint, stopped by `keyhaven down`.
//!
//! `<data-dir>/endpoint/` holds:
//! - `routes.json`: what it serves (mode 0600), replaced by rename, only when it changes;
//! - `certs/<name>.pem`: a listener's certificate chain and key in one file (mode 0600),
//!   so a rotation is one rename and never pairs a new certificate with an old key;
//! - `endpoint.pid`, `endpoint.log` (its stderr).

use super::{LocalRuntime, stop_pid, write_atomic};
use crate::RuntimeError;
use crate::proc::{is_our_endpoint, read_pid};
use keyhaven_core::PrivateKeyPem;
use keyhaven_endpoint::{ROUTES_FILE, Routes, Tls};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// An endpoint that exited sooner than this after its start is not started again before
/// this much time has passed, so one that cannot start does not spin the host.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

impl LocalRuntime {
    fn endpoint_io(&self) -> impl FnOnce(std::io::Error) -> RuntimeError + use<> {
        let dir = self.endpoint_dir.display().to_string();
        move |source| RuntimeError::Io { dir, source }
    }

    /// The endpoint's state directory, created (mode 0700) when missing.
    fn endpoint_dir_created(&self) -> Result<&Path, RuntimeError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(self.endpoint_dir.join("certs"))
            .map_err(self.endpoint_io())?;
        Ok(&self.endpoint_dir)
    }

    pub(super) async fn ensure_endpoint_process(&self) -> Result<u32, RuntimeError> {
        let mut last_start = self.endpoint_started.lock().await;
        let dir = self.endpoint_dir_created()?.to_path_buf();
        if let Some(pid) = running_endpoint_pid(&dir) {
            return Ok(pid);
        }
        if let Some(at) = *last_start
            && at.elapsed() < RESTART_PAUSE
        {
            return Err(RuntimeError::Start {
                label: "endpoint".into(),
                reason: format!(
                    "it exited within {RESTART_PAUSE:?} of its start (see {}); started again later",
                    dir.join("endpoint.log").display()
                ),
            });
        }
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("endpoint.log"))
            .map_err(self.endpoint_io())?;
        let mut child = tokio::process::Command::new(&self.keyhaven_exe)
            .arg("endpoint")
            .arg("--dir")
            .arg(&dir)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            // Its own process group: signals aimed at Keyhaven's group (Ctrl-C) spare it.
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| RuntimeError::Start {
                label: "endpoint".into(),
                reason: format!("{}: {e}", self.keyhaven_exe.display()),
            })?;
        *last_start = Some(Instant::now());
        let pid = child.id().ok_or_else(|| RuntimeError::Start {
            label: "endpoint".into(),
            reason: "the process exited at once".into(),
        })?;
        if let Err(e) = write_atomic(&dir.join("endpoint.pid"), pid.to_string().as_bytes()) {
            // An untracked endpoint would be started twice: stop it rather than lose track.
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(self.endpoint_io()(e));
        }
        info!(pid, dir = %dir.display(), "started the endpoint process");
        // Reaped here, so it leaves no zombie; its exit wakes the reconciler.
        let on_exit = self.on_exit.clone();
        tokio::spawn(async move {
            match child.wait().await {
                Ok(status) if status.success() => info!(pid, "endpoint process stopped"),
                Ok(status) => warn!(pid, exit = %status, "endpoint process exited"),
                Err(e) => warn!(pid, error = %e, "cannot wait for the endpoint process"),
            }
            on_exit.notify_one();
        });
        Ok(pid)
    }

    pub(super) async fn write_routes_file(&self, routes: &Routes) -> Result<bool, RuntimeError> {
        let _held = self.endpoint_started.lock().await;
        let path = self.endpoint_dir_created()?.join(ROUTES_FILE);
        let json = serde_json::to_string_pretty(routes).expect("routes serialize");
        if std::fs::read_to_string(&path).ok().as_deref() == Some(json.as_str()) {
            return Ok(false);
        }
        write_atomic(&path, json.as_bytes()).map_err(self.endpoint_io())?;
        Ok(true)
    }

    pub(super) async fn write_cert_file(
        &self,
        name: &str,
        cert_pem: &str,
        key: &PrivateKeyPem,
    ) -> Result<Tls, RuntimeError> {
        let valid = !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid {
            return Err(RuntimeError::Apply {
                label: "endpoint".into(),
                reason: format!("'{name}' cannot name a certificate file"),
            });
        }
        let _held = self.endpoint_started.lock().await;
        let path = self
            .endpoint_dir_created()?
            .join("certs")
            .join(format!("{name}.pem"));
        let mut pem = cert_pem.trim_end().to_string();
        pem.push('\n');
        pem.push_str(key.expose().trim_end());
        pem.push('\n');
        if std::fs::read_to_string(&path).ok().as_deref() != Some(pem.as_str()) {
            write_atomic(&path, pem.as_bytes()).map_err(self.endpoint_io())?;
        }
        let path = path.display().to_string();
        Ok(Tls {
            cert: path.clone(),
            key: path,
        })
    }

    /// Stops the endpoint process of `data_dir`, if one runs (for `keyhaven down`): its
    /// clients' connections close. Returns its pid.
    pub async fn stop_endpoint(data_dir: &Path) -> Option<u32> {
        let dir = endpoint_dir(data_dir);
        let pid = running_endpoint_pid(&dir)?;
        stop_pid(pid, |pid| is_our_endpoint(pid, &dir)).await;
        Some(pid)
    }
}

pub(super) fn endpoint_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("endpoint")
}

/// The pid of the endpoint process serving `dir`, if one runs.
fn running_endpoint_pid(dir: &Path) -> Option<u32> {
    read_pid(&dir.join("endpoint.pid")).filter(|pid| is_our_endpoint(*pid, dir))
}
