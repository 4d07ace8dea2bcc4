//! `keyhaven project ...`

use crate::client::{Client, ClientError};
use crate::config::{ConfigFile, Settings};
use crate::{ConnOpts, output};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

#[derive(Args, Debug)]
pub struct ProjectCmd {
    #[command(flatten)]
    pub(crate) conn: ConnOpts,
    #[command(subcommand)]
    verb: ProjectVerb,
}

#[derive(Subcommand, Debug)]
enum ProjectVerb {
    /// List your projects.
    ///
    /// Example: keyhaven project list
    #[command(verbatim_doc_comment)]
    List,
    /// Create a project; you become its member.
    ///
    /// Example: keyhaven project create staging
    #[command(verbatim_doc_comment)]
    Create {
        /// Default cloud of the project's services
        #[arg(long)]
        cloud: Option<String>,
        name: String,
    },
    /// Make a project the default of later commands (saved in the config file).
    ///
    /// Example: keyhaven project switch staging
    #[command(verbatim_doc_comment)]
    Switch { name: String },
}

pub async fn run(cmd: ProjectCmd) -> Result<(), ClientError> {
    let c = Client::new(Settings::resolve(&cmd.conn, None))?;
    match cmd.verb {
        ProjectVerb::List => {
            let resp: Value = c.get("/v1/project").await?;
            let projects = resp["projects"].as_array().cloned().unwrap_or_default();
            if c.settings.json {
                output::json(&Value::Array(projects));
            } else {
                output::table(&["project_name", "default_cloud"], &projects);
            }
        }
        ProjectVerb::Create { cloud, name } => {
            let resp: Value = c
                .post("/v1/project", &json!({"project": name, "cloud": cloud}))
                .await?;
            if c.settings.json {
                output::json(&resp["project"]);
            } else {
                eprintln!(
                    "project '{name}' created; `keyhaven project switch {name}` makes it the default"
                );
            }
        }
        ProjectVerb::Switch { name } => {
            let resp: Value = c.get("/v1/project").await?;
            let known = resp["projects"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["project_name"] == name.as_str());
            if !known {
                return Err(ClientError::Usage(format!(
                    "project '{name}' does not exist or is not yours"
                )));
            }
            let mut file = ConfigFile::load();
            file.default_project = Some(name.clone());
            let path = file.save().map_err(|e| ClientError::Usage(e.to_string()))?;
            eprintln!("default project is now '{name}' ({})", path.display());
        }
    }
    Ok(())
}
