//! Keyhaven's command-line client. Its nouns and verbs mirror `avn`'s (`service create`,
//! `service integration-list`, ...), so muscle memory carries over, plus two of its own:
//! `service promote` and `service replicas`. It talks to the server only through the
//! public `/v1` API, so it behaves exactly like the API and the console.
//!
//! Connection settings, highest precedence first: flags (`--url`, `--auth-token`,
//! `--project`, `--json`, taken before the command as avn takes them, or after it; a flag
//! after the command wins), environment (`KEYHAVEN_URL`, `KEYHAVEN_AUTH_TOKEN`, `KEYHAVEN_PROJECT`), the
//! config file written by `user login` and `project switch`, then defaults (`http://127.0.0.1:8080`,
//! project `default`, and the admin token of a server running from `./keyhaven-data`).

mod client;
mod config;
mod output;
mod project;
mod service;
mod user;
mod user_config;

use clap::{Args, Subcommand};
pub use client::{Client, ClientError};
pub use config::Settings;

/// Options every client command takes.
#[derive(Args, Debug, Clone, Default)]
pub struct ConnOpts {
    /// Keyhaven server URL [env: KEYHAVEN_URL] [default: http://127.0.0.1:8080]
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// API token [env: KEYHAVEN_AUTH_TOKEN]
    #[arg(long, global = true)]
    pub auth_token: Option<String>,
    /// Print the API's JSON objects instead of tables
    #[arg(long, global = true)]
    pub json: bool,
    /// The project given before the command (`keyhaven --project P service list`); a
    /// verb's own `--project` wins over it.
    #[arg(skip)]
    pub project: Option<String>,
}

/// The connection flags as avn takes them: before the command
/// (`keyhaven --url U --auth-token T service list`). The same flags after the command
/// win over these.
#[derive(Args, Debug, Clone, Default)]
pub struct GlobalOpts {
    /// Keyhaven server URL [env: KEYHAVEN_URL] [default: http://127.0.0.1:8080]
    #[arg(long)]
    pub url: Option<String>,
    /// API token [env: KEYHAVEN_AUTH_TOKEN]
    #[arg(long)]
    pub auth_token: Option<String>,
    /// Project [env: KEYHAVEN_PROJECT] [default: the config file's, else `default`]
    #[arg(long)]
    pub project: Option<String>,
    /// Print the API's JSON objects instead of tables
    #[arg(long)]
    pub json: bool,
}

impl GlobalOpts {
    /// Whether any flag was given (they mean nothing to `server`, `down`, ...).
    pub fn any(&self) -> bool {
        self.url.is_some() || self.auth_token.is_some() || self.project.is_some() || self.json
    }
}

impl ConnOpts {
    /// These flags (given after the command) over the ones given before it.
    fn over(mut self, before: &GlobalOpts) -> ConnOpts {
        self.url = self.url.or_else(|| before.url.clone());
        self.auth_token = self.auth_token.or_else(|| before.auth_token.clone());
        self.project = self.project.or_else(|| before.project.clone());
        self.json |= before.json;
        self
    }
}

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Create, inspect, change, replicate, promote and terminate services.
    Service(service::ServiceCmd),
    /// List, create and switch projects; get a project's CA certificate.
    Project(project::ProjectCmd),
    /// Log in with a token or a password.
    User(user::UserCmd),
}

/// Runs a client command with the flags given before it; the error's text is what the
/// user sees.
pub async fn run(cmd: ClientCommand, before: &GlobalOpts) -> Result<(), ClientError> {
    match cmd {
        ClientCommand::Service(mut c) => {
            c.conn = c.conn.over(before);
            service::run(c).await
        }
        ClientCommand::Project(mut c) => {
            c.conn = c.conn.over(before);
            project::run(c).await
        }
        ClientCommand::User(mut c) => {
            c.conn = c.conn.over(before);
            user::run(c).await
        }
    }
}
