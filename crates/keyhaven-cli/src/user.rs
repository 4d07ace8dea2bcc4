//! `keyhaven user ...`

use crate::ConnOpts;
use crate::client::{Client, ClientError};
use crate::config::{ConfigFile, Settings};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

#[derive(Args, Debug)]
pub struct UserCmd {
    #[command(flatten)]
    pub(crate) conn: ConnOpts,
    #[command(subcommand)]
    verb: UserVerb,
}

#[derive(Subcommand, Debug)]
enum UserVerb {
    /// Save credentials in the config file: a token (--token TOKEN, or --token with
    /// --auth-token / KEYHAVEN_AUTH_TOKEN), or a password (KEYHAVEN_PASSWORD, else asked for).
    ///
    /// Examples:
    ///   keyhaven user login admin@localhost --token "$(cat keyhaven-data/admin-token)"
    ///   KEYHAVEN_AUTH_TOKEN=... keyhaven user login admin@localhost --token
    ///   KEYHAVEN_PASSWORD=... keyhaven user login dev@example.com
    #[command(verbatim_doc_comment)]
    Login {
        /// Log in with a token instead of a password: the one given here, else
        /// --auth-token / KEYHAVEN_AUTH_TOKEN
        #[arg(long, num_args = 0..=1, value_name = "TOKEN")]
        token: Option<Option<String>>,
        /// The user's email
        email: String,
    },
    /// Show who the token belongs to.
    ///
    /// Example: keyhaven user info
    #[command(verbatim_doc_comment)]
    Info,
}

pub async fn run(cmd: UserCmd) -> Result<(), ClientError> {
    let settings = Settings::resolve(&cmd.conn, None);
    match cmd.verb {
        UserVerb::Login { token, email } => {
            let token = if let Some(given) = token {
                let token = given
                    .or(settings.token.clone())
                    .ok_or(ClientError::NoToken)?;
                let c = Client::new(Settings {
                    token: Some(token.clone()),
                    ..settings.clone()
                })?;
                // Checks the token before saving it.
                let _: Value = c.get("/v1/me").await?;
                token
            } else {
                let password = match std::env::var("KEYHAVEN_PASSWORD") {
                    Ok(p) => p,
                    Err(_) => read_password(&email)?,
                };
                let c = Client::new(Settings {
                    token: None,
                    ..settings.clone()
                })?;
                let resp: Value = c
                    .post(
                        "/v1/userauth",
                        &json!({"email": email, "password": password}),
                    )
                    .await?;
                resp["token"].as_str().unwrap_or_default().to_string()
            };
            let mut file = ConfigFile::load();
            file.url = Some(settings.url.clone());
            file.auth_token = Some(token);
            file.user_email = Some(email.clone());
            let path = file.save().map_err(|e| ClientError::Usage(e.to_string()))?;
            eprintln!("logged in as {email} ({})", path.display());
        }
        UserVerb::Info => {
            let c = Client::new(settings)?;
            let resp: Value = c.get("/v1/me").await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&resp["user"]).unwrap_or_default()
            );
        }
    }
    Ok(())
}

fn read_password(email: &str) -> Result<String, ClientError> {
    use std::io::{IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(ClientError::Usage(
            "set KEYHAVEN_PASSWORD or run on a terminal".into(),
        ));
    }
    eprint!("Password for {email}: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| ClientError::Usage(e.to_string()))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
