//! Where the client finds its server, token and project.

use crate::ConnOpts;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// The config file `user login` and `project switch` write.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_project: Option<String>,
}

impl ConfigFile {
    /// `$KEYHAVEN_CONFIG`, else `$XDG_CONFIG_HOME/keyhaven/config.json`, else
    /// `~/.config/keyhaven/config.json`.
    pub fn path() -> PathBuf {
        if let Some(p) = std::env::var_os("KEYHAVEN_CONFIG") {
            return PathBuf::from(p);
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("keyhaven").join("config.json")
    }

    pub fn load() -> ConfigFile {
        std::fs::read_to_string(Self::path())
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default()
    }

    /// Saves the file readable by its owner only (it holds a token).
    pub fn save(&self) -> std::io::Result<PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = Self::path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        Ok(path)
    }
}

/// Resolved connection settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: String,
    pub token: Option<String>,
    pub project: String,
    pub json: bool,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Settings {
    pub fn resolve(opts: &ConnOpts, project: Option<&str>) -> Settings {
        let file = ConfigFile::load();
        let url = opts
            .url
            .clone()
            .or_else(|| env("KEYHAVEN_URL"))
            .or(file.url.clone())
            .or_else(local_listen_addr)
            .unwrap_or_else(|| DEFAULT_URL.into());
        let token = opts
            .auth_token
            .clone()
            .or_else(|| env("KEYHAVEN_AUTH_TOKEN"))
            .or(file.auth_token.clone())
            .or_else(local_admin_token);
        let project = project
            .map(str::to_string)
            .or_else(|| opts.project.clone())
            .or_else(|| env("KEYHAVEN_PROJECT"))
            .or(file.default_project.clone())
            .unwrap_or_else(|| "default".into());
        Settings {
            url: url.trim_end_matches('/').to_string(),
            token,
            project,
            json: opts.json,
        }
    }
}

/// The address a server on this machine from `$KEYHAVEN_DATA_DIR` (default
/// `./keyhaven-data`) last listened on (`keyhaven server` writes it at every start), so a
/// server started with `--listen 127.0.0.1:0` or another port needs no `--url` either.
fn local_listen_addr() -> Option<String> {
    let dir = env("KEYHAVEN_DATA_DIR").unwrap_or_else(|| "./keyhaven-data".into());
    std::fs::read_to_string(PathBuf::from(dir).join("listen-addr"))
        .ok()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .map(|a| format!("http://{a}"))
}

/// The admin token of a server running on this machine from `$KEYHAVEN_DATA_DIR` (default
/// `./keyhaven-data`): what makes the README's first steps work without a login.
fn local_admin_token() -> Option<String> {
    let dir = env("KEYHAVEN_DATA_DIR").unwrap_or_else(|| "./keyhaven-data".into());
    std::fs::read_to_string(PathBuf::from(dir).join("admin-token"))
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}
