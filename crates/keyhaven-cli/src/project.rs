//! `keyhaven project ...`

use crate::client::{Client, ClientError};
use crate::config::{ConfigFile, Settings};
use crate::{ConnOpts, output};
use clap::{Args, Subcommand};
use keyhaven_api::project::ProjectCa;
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
    /// Write the project's CA certificate (PEM) to a file: the CA of the project's TLS
    /// certificates, for clients to verify them with (as `avn project ca-get`).
    ///
    /// Example: keyhaven project ca-get --target-filepath ca.pem
    #[command(verbatim_doc_comment)]
    CaGet {
        /// Project [env: KEYHAVEN_PROJECT] [default: the config file's, else `default`]
        #[arg(long)]
        project: Option<String>,
        /// Where to write the certificate
        #[arg(long)]
        target_filepath: std::path::PathBuf,
    },
}

pub async fn run(cmd: ProjectCmd) -> Result<(), ClientError> {
    let verb_project = match &cmd.verb {
        ProjectVerb::CaGet { project, .. } => project.as_deref(),
        _ => None,
    };
    let c = Client::new(Settings::resolve(&cmd.conn, verb_project))?;
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
        ProjectVerb::CaGet {
            target_filepath, ..
        } => {
            let ca: ProjectCa = c.get(&c.project_path("/kms/ca")).await?;
            std::fs::write(&target_filepath, &ca.certificate).map_err(|e| {
                ClientError::Usage(format!("cannot write {}: {e}", target_filepath.display()))
            })?;
            eprintln!(
                "CA certificate of project '{}' written to {}",
                c.settings.project,
                target_filepath.display()
            );
        }
    }
    Ok(())
}
