//! Keyhaven's command-line client. Its nouns and verbs mirror `avn`'s (`service create`,
//! `service integration-list`, ...), so muscle memory carries over, plus two of its own:
//! `service promote` and `service replicas`. It talks to the server only through the
//! public `/v1` API, so it behaves exactly like the API and the console.
//!
//! Connection settings, highest precedence first: flags (`--url`, `--auth-token`,
//! `--project`), environment (`KEYHAVEN_URL`, `KEYHAVEN_AUTH_TOKEN`, `KEYHAVEN_PROJECT`), the
//! config file written by `user login` and `project switch`, then defaults (`http://127.0.0.1:8080`,
//! project `default`, and the admin token of a server running from `./keyhaven-data`).

mod client;
mod config;
mod output;
mod project;
mod service;
mod user;

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
}

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Create, inspect, replicate, promote and terminate services.
    Service(service::ServiceCmd),
    /// List, create and switch projects.
    Project(project::ProjectCmd),
    /// Log in with a token or a password.
    User(user::UserCmd),
}

/// Runs a client command; the error's text is what the user sees.
pub async fn run(cmd: ClientCommand) -> Result<(), ClientError> {
    match cmd {
        ClientCommand::Service(c) => service::run(c).await,
        ClientCommand::Project(c) => project::run(c).await,
        ClientCommand::User(c) => user::run(c).await,
    }
}
