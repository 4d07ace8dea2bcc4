//! `keyhaven service ...`

use crate::client::{Client, ClientError};
use crate::config::Settings;
use crate::{ConnOpts, output};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// avn's columns, plus the role and (for a replica) its primary.
const SERVICE_COLUMNS: &[&str] = &[
    "service_name",
    "service_type",
    "state",
    "role",
    "primary",
    "cloud_name",
    "plan",
    "create_time",
    "update_time",
];
/// `service get` and `service update`: the list's columns and termination protection
/// (the state column shows POWEROFF).
const GET_COLUMNS: &[&str] = &[
    "service_name",
    "service_type",
    "state",
    "role",
    "primary",
    "cloud_name",
    "plan",
    "termination_protection",
    "create_time",
    "update_time",
];
/// avn's columns for integrations.
const INTEGRATION_COLUMNS: &[&str] = &[
    "service_integration_id",
    "source",
    "dest",
    "integration_type",
    "enabled",
    "active",
    "description",
];

/// A service as a table row: the API object plus the computed `role` and `primary`.
fn service_row(s: &Value) -> Value {
    let mut row = s.clone();
    row["role"] = s["keyhaven_role"].clone();
    row["primary"] = s["keyhaven_replication"]["primary_service"].clone();
    row
}

/// An integration as a table row, with avn's `source` and `dest`.
fn integration_row(i: &Value) -> Value {
    let mut row = i.clone();
    row["source"] = i["source_service"].clone();
    row["dest"] = i["dest_service"].clone();
    row
}

#[derive(Args, Debug)]
pub struct ServiceCmd {
    #[command(flatten)]
    pub(crate) conn: ConnOpts,
    #[command(subcommand)]
    verb: ServiceVerb,
}

#[derive(Args, Debug, Clone, Default)]
struct ProjectOpt {
    /// Project [env: KEYHAVEN_PROJECT] [default: the config file's, else `default`]
    #[arg(long)]
    project: Option<String>,
}

#[derive(Subcommand, Debug)]
enum ServiceVerb {
    /// Create a service, or a read replica of one.
    ///
    /// Examples:
    ///   keyhaven service create -t valkey -p startup-4 primary
    ///   keyhaven service create -t valkey -p startup-4 --read-replica-for primary replica --wait
    #[command(verbatim_doc_comment)]
    Create {
        #[command(flatten)]
        project: ProjectOpt,
        /// Service type (only `valkey`)
        #[arg(short = 't', long = "service-type", default_value = "valkey")]
        service_type: String,
        /// Plan: hobbyist, startup-4, startup-8, ... (replicas need a startup plan)
        #[arg(short = 'p', long)]
        plan: String,
        /// Cloud [default: the project's default cloud]
        #[arg(long)]
        cloud: Option<String>,
        /// Make this service a read replica of PRIMARY
        #[arg(long, value_name = "PRIMARY")]
        read_replica_for: Option<String>,
        /// user_config entries, e.g. -c valkey_maxmemory_policy=allkeys-lru
        #[arg(short = 'c', value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// Succeed when a service of that name exists already
        #[arg(long)]
        no_fail_if_exists: bool,
        /// Wait until the service is RUNNING, showing progress
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this many seconds
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Name of the new service
        name: String,
    },
    /// Change a service: its plan, user_config, power, termination protection (as
    /// `avn service update`). Only what is given changes; `-c` values take the type the
    /// service type's user_config schema gives their key (numbers, booleans, strings).
    ///
    /// Examples:
    ///   keyhaven service update -p startup-8 primary
    ///   keyhaven service update -c valkey_maxmemory_policy=allkeys-lru primary
    ///   keyhaven service update --power-off replica --wait
    ///   keyhaven service update --power-on replica --wait
    ///   keyhaven service update --disable-termination-protection primary
    #[command(verbatim_doc_comment)]
    Update {
        #[command(flatten)]
        project: ProjectOpt,
        /// New plan: hobbyist, startup-4, startup-8, ...
        #[arg(short = 'p', long)]
        plan: Option<String>,
        /// user_config entries to set, e.g. -c valkey_maxmemory_policy=allkeys-lru
        #[arg(short = 'c', value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// Stop the service's node and keep its data (state POWEROFF)
        #[arg(long, conflicts_with = "power_on")]
        power_off: bool,
        /// Start a powered-off service again, with its data
        #[arg(long)]
        power_on: bool,
        /// Refuse deleting or powering off the service until protection is disabled
        #[arg(long, conflicts_with = "disable_termination_protection")]
        enable_termination_protection: bool,
        /// Allow deleting and powering off the service again
        #[arg(long)]
        disable_termination_protection: bool,
        /// Wait until the service is POWEROFF (with --power-off), else RUNNING
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this many seconds
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Service name
        name: String,
    },
    /// List the project's services.
    ///
    /// Example: keyhaven service list --project default
    #[command(verbatim_doc_comment)]
    List {
        #[command(flatten)]
        project: ProjectOpt,
    },
    /// Show one service (with --json: the whole API object).
    ///
    /// Example: keyhaven service get --json replica
    #[command(verbatim_doc_comment)]
    Get {
        #[command(flatten)]
        project: ProjectOpt,
        /// Service name
        name: String,
    },
    /// Wait until services are RUNNING, showing state and sync progress.
    ///
    /// Example: keyhaven service wait primary replica --timeout 120
    #[command(verbatim_doc_comment)]
    Wait {
        #[command(flatten)]
        project: ProjectOpt,
        /// Give up after this many seconds
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Services to wait for
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Delete services (asks you to retype each name unless --force).
    ///
    /// Example: keyhaven service terminate --force replica
    #[command(verbatim_doc_comment)]
    Terminate {
        #[command(flatten)]
        project: ProjectOpt,
        /// Do not ask for confirmation
        #[arg(long)]
        force: bool,
        /// Services to terminate (all must exist, or none is terminated)
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// List a service's integrations (a primary lists all its replicas' links).
    ///
    /// Example: keyhaven service integration-list replica
    #[command(verbatim_doc_comment)]
    IntegrationList {
        #[command(flatten)]
        project: ProjectOpt,
        /// Service name
        name: String,
    },
    /// Delete an integration; deleting a read_replica link promotes the replica.
    ///
    /// Example: keyhaven service integration-delete 2e8e7b17-2f7e-4da3-b55f-24a459860a2e
    #[command(verbatim_doc_comment)]
    IntegrationDelete {
        #[command(flatten)]
        project: ProjectOpt,
        /// SERVICE_INTEGRATION_ID from `service integration-list`
        integration_id: String,
    },
    /// Promote a read replica to an independent primary (asks first unless --force).
    ///
    /// Without --lossy nothing the primary acknowledged is lost: a primary that runs but
    /// does not answer, or a replica that cannot catch up in time, is refused (503) with
    /// nothing changed. With --lossy the replica is detached anyway and the gap recorded.
    ///
    /// Example: keyhaven service promote --force replica
    #[command(verbatim_doc_comment)]
    Promote {
        #[command(flatten)]
        project: ProjectOpt,
        /// Do not ask for confirmation
        #[arg(long)]
        force: bool,
        /// Promote even if writes the primary acknowledged may be lost
        #[arg(long)]
        lossy: bool,
        /// The read replica to promote
        replica: String,
    },
    /// List a primary's read replicas with their state and lag.
    ///
    /// Example: keyhaven service replicas primary
    #[command(verbatim_doc_comment)]
    Replicas {
        #[command(flatten)]
        project: ProjectOpt,
        /// The primary service
        primary: String,
    },
}

fn client(conn: &ConnOpts, project: &ProjectOpt) -> Result<Client, ClientError> {
    Client::new(Settings::resolve(conn, project.project.as_deref()))
}

pub async fn run(cmd: ServiceCmd) -> Result<(), ClientError> {
    let conn = &cmd.conn;
    match cmd.verb {
        ServiceVerb::Create {
            project,
            service_type,
            plan,
            cloud,
            read_replica_for,
            config,
            no_fail_if_exists,
            wait,
            timeout,
            name,
        } => {
            let c = client(conn, &project)?;
            let user_config = user_config(&c, &service_type, &config).await?;
            let integrations = match &read_replica_for {
                Some(p) => json!([{"integration_type": "read_replica", "source_service": p}]),
                None => json!([]),
            };
            let body = json!({
                "service_name": name, "service_type": service_type, "plan": plan, "cloud": cloud,
                "user_config": user_config, "service_integrations": integrations,
            });
            match c.post::<Value, _>(&c.project_path("/service"), &body).await {
                Ok(resp) => {
                    if c.settings.json && !wait {
                        output::json(&resp["service"]);
                    } else if !wait {
                        eprintln!(
                            "{name}: created, REBUILDING; `keyhaven service wait {name}` waits until it is RUNNING"
                        );
                    }
                }
                Err(ClientError::Api {
                    status: 409,
                    message,
                }) if no_fail_if_exists && message.contains("already exists") => {}
                Err(e) => return Err(e),
            }
            if wait {
                wait_running(
                    &c,
                    std::slice::from_ref(&name),
                    Duration::from_secs(timeout),
                )
                .await?;
                if c.settings.json {
                    output::json(&get_service(&c, &name).await?);
                }
            }
            Ok(())
        }
        ServiceVerb::Update {
            project,
            plan,
            config,
            power_off,
            power_on,
            enable_termination_protection,
            disable_termination_protection,
            wait,
            timeout,
            name,
        } => {
            let c = client(conn, &project)?;
            let user_config = user_config(&c, "valkey", &config).await?;
            let powered = flag(power_on, power_off);
            let body = update_body(
                plan,
                user_config,
                powered,
                flag(
                    enable_termination_protection,
                    disable_termination_protection,
                ),
            );
            let resp: Value = c
                .put(&c.project_path(&format!("/service/{name}")), &body)
                .await?;
            // The answer shows the state last observed (the reconciler applies the change
            // right after it): a power-off shows as POWEROFF only once the node stopped.
            let service = if wait {
                let target = if powered == Some(false) {
                    "POWEROFF"
                } else {
                    "RUNNING"
                };
                wait_state(
                    &c,
                    std::slice::from_ref(&name),
                    target,
                    Duration::from_secs(timeout),
                )
                .await?;
                get_service(&c, &name).await?
            } else {
                resp["service"].clone()
            };
            if c.settings.json {
                output::json(&service);
            } else {
                output::table(GET_COLUMNS, &[service_row(&service)]);
            }
            Ok(())
        }
        ServiceVerb::List { project } => {
            let c = client(conn, &project)?;
            let resp: Value = c.get(&c.project_path("/service")).await?;
            print_services(&c, resp["services"].as_array().cloned().unwrap_or_default());
            Ok(())
        }
        ServiceVerb::Get { project, name } => {
            let c = client(conn, &project)?;
            let s = get_service(&c, &name).await?;
            if c.settings.json {
                output::json(&s);
            } else {
                output::table(GET_COLUMNS, &[service_row(&s)]);
                print!("{}", endpoints(&s));
            }
            Ok(())
        }
        ServiceVerb::Wait {
            project,
            timeout,
            names,
        } => {
            let c = client(conn, &project)?;
            wait_running(&c, &names, Duration::from_secs(timeout)).await
        }
        ServiceVerb::Terminate {
            project,
            force,
            names,
        } => {
            let c = client(conn, &project)?;
            let order = termination_order(&c, &names).await?;
            for name in &order {
                if !force {
                    let typed =
                        prompt(&format!("Re-enter service name '{name}' to terminate it: "))?;
                    if typed.trim() != name {
                        return Err(ClientError::Usage(format!(
                            "'{}' does not match; {name} was not terminated",
                            typed.trim()
                        )));
                    }
                }
                let _: Value = c
                    .delete(&c.project_path(&format!("/service/{name}")))
                    .await?;
                eprintln!("{name}: terminated");
            }
            Ok(())
        }
        ServiceVerb::IntegrationList { project, name } => {
            let c = client(conn, &project)?;
            let resp: Value = c
                .get(&c.project_path(&format!("/service/{name}/integration")))
                .await?;
            let items = resp["service_integrations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if c.settings.json {
                output::json(&Value::Array(items));
            } else {
                let rows: Vec<Value> = items.iter().map(integration_row).collect();
                output::table(INTEGRATION_COLUMNS, &rows);
            }
            Ok(())
        }
        ServiceVerb::IntegrationDelete {
            project,
            integration_id,
        } => {
            let c = client(conn, &project)?;
            let resp: Value = c
                .delete(&c.project_path(&format!("/integration/{integration_id}")))
                .await?;
            report(&c, &resp);
            Ok(())
        }
        ServiceVerb::Promote {
            project,
            force,
            lossy,
            replica,
        } => {
            let c = client(conn, &project)?;
            let resp: Value = c
                .get(&c.project_path(&format!("/service/{replica}/integration")))
                .await?;
            let link = resp["service_integrations"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| {
                    l["integration_type"] == "read_replica" && l["dest_service"] == replica.as_str()
                })
                .cloned()
                .ok_or_else(|| {
                    ClientError::Usage(format!(
                        "'{replica}' is not a read replica (it has no read_replica link)"
                    ))
                })?;
            let primary = link["source_service"].as_str().unwrap_or("?");
            if !force {
                let risk = if lossy {
                    " Writes '{primary}' acknowledged that it has not received are lost (--lossy)."
                        .replace("{primary}", primary)
                } else {
                    String::new()
                };
                let answer = prompt(&format!(
                    "Promote '{replica}' to an independent primary? It stops replicating from '{primary}'.{risk} [y/N] "
                ))?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    return Err(ClientError::Usage("not promoted".into()));
                }
            }
            let id = link["service_integration_id"].as_str().unwrap_or_default();
            let query = if lossy { "?lossy=true" } else { "" };
            let resp: Value = c
                .delete(&c.project_path(&format!("/integration/{id}{query}")))
                .await?;
            report(&c, &resp);
            Ok(())
        }
        ServiceVerb::Replicas { project, primary } => {
            let c = client(conn, &project)?;
            let s = get_service(&c, &primary).await?;
            let replicas = s["keyhaven_replication"]["replicas"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if c.settings.json {
                output::json(&Value::Array(replicas));
            } else {
                output::table(
                    &[
                        "service_name",
                        "state",
                        "link_status",
                        "bytes_behind",
                        "lag_ms",
                        "seconds_since_last_contact",
                    ],
                    &replicas,
                );
            }
            Ok(())
        }
    }
}

/// `true` for the first flag of a pair, `false` for the second, nothing for neither
/// (clap refuses both).
fn flag(on: bool, off: bool) -> Option<bool> {
    match (on, off) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

/// The body of `PUT .../service/S`, as avn sends it: `user_config` always (`{}` changes
/// nothing), every other key only when given. Unlike avn, which re-sends the plan it read
/// when no `-p` is given, no plan is sent then: a plan changed meanwhile is not undone.
fn update_body(
    plan: Option<String>,
    user_config: serde_json::Map<String, Value>,
    powered: Option<bool>,
    termination_protection: Option<bool>,
) -> Value {
    let mut body = json!({ "user_config": user_config });
    if let Some(plan) = plan {
        body["plan"] = json!(plan);
    }
    if let Some(powered) = powered {
        body["powered"] = json!(powered);
    }
    if let Some(protection) = termination_protection {
        body["termination_protection"] = json!(protection);
    }
    body
}

/// `-c KEY=VALUE` pairs as a `user_config` object, typed by the service type's schema
/// (read from the API only when there are pairs).
async fn user_config(
    c: &Client,
    service_type: &str,
    pairs: &[String],
) -> Result<serde_json::Map<String, Value>, ClientError> {
    if pairs.is_empty() {
        return Ok(serde_json::Map::new());
    }
    let service_type: Value = c
        .get(&c.project_path(&format!("/service-types/{service_type}")))
        .await?;
    crate::user_config::parse(pairs, &service_type["user_config_schema"])
        .map_err(ClientError::Usage)
}

fn report(c: &Client, resp: &Value) {
    if c.settings.json {
        output::json(resp);
    } else if let Some(m) = resp["message"].as_str() {
        eprintln!("{m}");
    }
}

/// Where clients connect, from `components`: the service itself and, for a primary, its
/// reader endpoint; TLS or not. (The URIs with the password: `--json`.)
fn endpoints(s: &Value) -> String {
    let mut out = String::new();
    for c in s["components"].as_array().into_iter().flatten() {
        let label = match c["usage"].as_str() {
            Some("replica") => {
                "reader endpoint (new connections go to a replica within the lag bound)"
            }
            _ => "connect to",
        };
        let tls = if c["ssl"] == true {
            "TLS: verify with `keyhaven project ca-get`"
        } else {
            "plain"
        };
        out.push_str(&format!(
            "{label}: {}:{} ({tls})\n",
            c["host"].as_str().unwrap_or("?"),
            c["port"]
        ));
    }
    out
}

async fn get_service(c: &Client, name: &str) -> Result<Value, ClientError> {
    let resp: Value = c.get(&c.project_path(&format!("/service/{name}"))).await?;
    Ok(resp["service"].clone())
}

fn print_services(c: &Client, services: Vec<Value>) {
    if c.settings.json {
        output::json(&Value::Array(services));
    } else {
        let rows: Vec<Value> = services.iter().map(service_row).collect();
        output::table(SERVICE_COLUMNS, &rows);
    }
}

fn prompt(question: &str) -> Result<String, ClientError> {
    if !std::io::stdin().is_terminal() {
        return Err(ClientError::Usage(
            "no terminal to confirm on: pass --force".into(),
        ));
    }
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| ClientError::Usage(e.to_string()))?;
    Ok(line)
}

/// The order to terminate `names` in, checked before anything is terminated: every name
/// exists, and a primary's replicas are all in the list (they go first), so the command
/// either terminates everything or nothing.
async fn termination_order(c: &Client, names: &[String]) -> Result<Vec<String>, ClientError> {
    let mut services = Vec::new();
    for name in names {
        services.push(get_service(c, name).await?);
    }
    let replicas_of = |s: &Value| -> Vec<String> {
        s["keyhaven_replication"]["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["service_name"].as_str().map(str::to_string))
            .collect()
    };
    for (name, s) in names.iter().zip(&services) {
        let missing: Vec<String> = replicas_of(s)
            .into_iter()
            .filter(|r| !names.contains(r))
            .collect();
        if !missing.is_empty() {
            return Err(ClientError::Usage(format!(
                "'{name}' has read replicas ({}); terminate or promote them too. Nothing was terminated",
                missing.join(", ")
            )));
        }
    }
    // Replicas (services with a primary) first, then the rest, each in the given order.
    let (mut first, rest): (Vec<_>, Vec<_>) = names
        .iter()
        .zip(&services)
        .partition(|(_, s)| s["keyhaven_replication"]["primary_service"].is_string());
    first.extend(rest);
    Ok(first.into_iter().map(|(n, _)| n.clone()).collect())
}

/// One service's progress, in words: state, and for a syncing replica how far along.
fn progress_of(s: &Value) -> String {
    let state = s["state"].as_str().unwrap_or("?");
    let r = &s["keyhaven_replication"];
    let mut text = state.to_string();
    if let Some(node) = s["node_states"][0]["state"].as_str()
        && state != "RUNNING"
        && state != "POWEROFF"
    {
        text += &format!(" ({node}");
        if let Some(p) = r["sync_progress_percent"].as_u64() {
            text += &format!(", sync {p}%");
        }
        text += ")";
    }
    text
}

/// Polls until every service is RUNNING. On a terminal one status line is redrawn; else a
/// plain line is printed whenever something changes.
pub async fn wait_running(
    c: &Client,
    names: &[String],
    timeout: Duration,
) -> Result<(), ClientError> {
    wait_state(c, names, "RUNNING", timeout).await
}

/// Polls until every service is in `target` state, showing progress as [`wait_running`].
async fn wait_state(
    c: &Client,
    names: &[String],
    target: &str,
    timeout: Duration,
) -> Result<(), ClientError> {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut last = String::new();
    loop {
        let mut parts = Vec::new();
        let mut all_running = true;
        for name in names {
            let s = get_service(c, name).await?;
            all_running &= s["state"] == target;
            parts.push(format!("{name}: {}", progress_of(&s)));
        }
        let line = parts.join("  ");
        let elapsed = started.elapsed().as_secs_f64();
        if tty {
            eprint!("\r\x1b[2K{line}  [{elapsed:.1}s]");
            let _ = std::io::stderr().flush();
        } else if line != last {
            eprintln!("{line}  [{elapsed:.1}s]");
        }
        last = line;
        if all_running {
            if tty {
                eprintln!();
            }
            return Ok(());
        }
        if started.elapsed() >= timeout {
            if tty {
                eprintln!();
            }
            return Err(ClientError::Timeout(format!(
                "not {target} after {}s: {last}",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_names_the_tls_endpoint_and_the_reader_endpoint() {
        let s = json!({"components": [
            {"usage": "primary", "host": "h", "port": 17000, "ssl": true},
            {"usage": "replica", "host": "h", "port": 18000, "ssl": true}]});
        let out = endpoints(&s);
        assert!(out.starts_with("connect to: h:17000 (TLS"), "{out}");
        assert!(out.contains("reader endpoint (new connections go to a replica within the lag bound): h:18000 (TLS"), "{out}");
        let plain = endpoints(
            &json!({"components": [{"usage": "primary", "host": "h", "port": 16000, "ssl": false}]}),
        );
        assert_eq!(plain, "connect to: h:16000 (plain)\n");
    }

    #[test]
    fn an_update_sends_user_config_always_and_the_rest_only_when_given() {
        assert_eq!(
            update_body(None, serde_json::Map::new(), None, None),
            json!({"user_config": {}})
        );
        let mut config = serde_json::Map::new();
        config.insert("valkey_maxmemory_policy".into(), json!("allkeys-lru"));
        assert_eq!(
            update_body(Some("startup-8".into()), config, Some(false), Some(true)),
            json!({"plan": "startup-8", "powered": false, "termination_protection": true,
                   "user_config": {"valkey_maxmemory_policy": "allkeys-lru"}})
        );
        assert_eq!(flag(true, false), Some(true));
        assert_eq!(flag(false, true), Some(false));
        assert_eq!(flag(false, false), None);
    }
}
