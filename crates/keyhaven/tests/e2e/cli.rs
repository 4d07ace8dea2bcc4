//! Keyhaven's own CLI against a live server: the getting-started flow of the README.

use crate::harness::*;
use redis::AsyncCommands;
use serde_json::{Value, json};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) struct Cli<'a> {
    p: &'a Platform,
    config: tempfile::TempDir,
}

impl Cli<'_> {
    pub(crate) fn new(p: &Platform) -> Cli<'_> {
        Cli {
            p,
            config: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env("KEYHAVEN_CONFIG", self.config.path().join("config.json"))
            .env("KEYHAVEN_URL", &self.p.base)
            .env("KEYHAVEN_AUTH_TOKEN", &self.p.token)
            .env_remove("KEYHAVEN_PROJECT");
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        let out = self.command().args(args).output().unwrap();
        eprintln!(
            "keyhaven {args:?} -> {:?}\n{}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "keyhaven {args:?} failed");
        String::from_utf8(out.stdout).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_keyhaven_cli_creates_replicates_and_promotes() {
    let p = Platform::start().await;
    let cli = Cli::new(&p);

    cli.ok(&[
        "service",
        "create",
        "-t",
        "valkey",
        "-p",
        "startup-4",
        "primary",
        "--wait",
    ]);
    let out = cli.run(&[
        "service",
        "create",
        "-p",
        "startup-4",
        "--read-replica-for",
        "primary",
        "replica",
        "--wait",
        "--timeout",
        "60",
    ]);
    assert!(out.status.success());
    // Not a terminal: plain progress lines that end with RUNNING.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("replica: RUNNING"),
        "{out:?}"
    );

    let table = cli.ok(&["service", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("SERVICE_NAME  SERVICE_TYPE  STATE"),
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("primary ") && l.contains("RUNNING")),
        "{table}"
    );
    let got: Value =
        serde_json::from_str(&cli.ok(&["service", "get", "--json", "replica"])).unwrap();
    assert_eq!(got["keyhaven_role"], "replica");

    let replicas = cli.ok(&["service", "replicas", "primary"]);
    assert!(
        replicas.contains("replica") && replicas.contains("RUNNING"),
        "{replicas}"
    );
    assert!(
        replicas
            .lines()
            .next()
            .is_some_and(|h| h.contains("LAG_MS")),
        "{replicas}"
    );
    let links = cli.ok(&["service", "integration-list", "replica"]);
    assert!(links.contains("read_replica"), "{links}");

    // Replication, then promotion.
    let mut pc = valkey(&p.service("primary").await).await;
    let _: () = pc.set("k", "v").await.unwrap();
    let mut rc = valkey(&p.service("replica").await).await;
    wait_for("replication", Duration::from_secs(5), async || {
        rc.get::<_, Option<String>>("k").await.unwrap()
    })
    .await;
    let refused = cli.run(&["service", "promote", "replica"]);
    assert!(
        !refused.status.success(),
        "promote without --force and without a terminal must refuse"
    );
    cli.ok(&["service", "promote", "--force", "replica"]);
    assert_eq!(p.service("replica").await["keyhaven_role"], "primary");
    let _: () = rc.set("mine", "1").await.unwrap();
    assert!(
        !cli.ok(&["service", "integration-list", "replica"])
            .contains("read_replica")
    );

    // Errors: the API's message on stderr, non-zero exit; --no-fail-if-exists.
    let dup = cli.run(&["service", "create", "-p", "startup-4", "primary"]);
    assert_eq!(dup.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&dup.stderr);
    assert!(
        stderr.contains("already exists") && stderr.contains("(status 409)"),
        "{dup:?}"
    );
    cli.ok(&[
        "service",
        "create",
        "-p",
        "startup-4",
        "--no-fail-if-exists",
        "primary",
    ]);
    let bad = cli.run(&["service", "create", "-p", "gold", "x"]);
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("valid plans"),
        "{bad:?}"
    );

    // Projects and login write the config file.
    cli.ok(&["project", "create", "staging"]);
    cli.ok(&["project", "switch", "staging"]);
    assert_eq!(
        cli.ok(&["service", "list"]).lines().count(),
        2,
        "staging should be empty: a header only"
    );
    cli.ok(&["user", "login", "admin@localhost", "--token"]);
    let config = std::fs::read_to_string(cli.config.path().join("config.json")).unwrap();
    assert!(
        config.contains("\"default_project\": \"staging\"") && config.contains(&p.token),
        "{config}"
    );

    // terminate is all or nothing, and takes a primary with its replicas in any order.
    cli.ok(&[
        "service",
        "create",
        "--project",
        "default",
        "-p",
        "startup-4",
        "p2",
        "--wait",
    ]);
    cli.ok(&[
        "service",
        "create",
        "--project",
        "default",
        "-p",
        "startup-4",
        "--read-replica-for",
        "p2",
        "r2",
        "--wait",
    ]);
    let refused = cli.run(&[
        "service",
        "terminate",
        "--project",
        "default",
        "--force",
        "r2x",
        "p2",
    ]);
    assert!(!refused.status.success());
    let refused = cli.run(&[
        "service",
        "terminate",
        "--project",
        "default",
        "--force",
        "p2",
    ]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Nothing was terminated"),
        "{refused:?}"
    );
    assert_eq!(p.service("p2").await["state"], "RUNNING");
    cli.ok(&[
        "service",
        "terminate",
        "--project",
        "default",
        "--force",
        "p2",
        "r2",
    ]);
    let (status, _) = p.call("GET", "/v1/project/default/service/p2", None).await;
    assert_eq!(status, 404);

    cli.ok(&[
        "service",
        "terminate",
        "--project",
        "default",
        "--force",
        "replica",
        "primary",
    ]);
    wait_for("no nodes left", Duration::from_secs(20), async || {
        p.running_nodes().is_empty().then_some(())
    })
    .await;
    assert!(cli.ok(&["completion", "bash"]).contains("keyhaven"));
}

#[test]
fn every_command_has_an_example_in_its_help() {
    for path in [
        &["server"][..],
        &["down"],
        &["service", "create"],
        &["service", "list"],
        &["service", "get"],
        &["service", "wait"],
        &["service", "update"],
        &["service", "terminate"],
        &["service", "integration-list"],
        &["service", "integration-delete"],
        &["service", "promote"],
        &["service", "replicas"],
        &["project", "list"],
        &["project", "create"],
        &["project", "switch"],
        &["user", "login"],
        &["completion"],
    ] {
        let out = Command::new(BIN).args(path).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("Example"),
            "`keyhaven {}` has no example:\n{help}",
            path.join(" ")
        );
    }
}

/// The keyhaven binary with nothing but the given flags to find a server by: no URL or
/// token in the environment, an empty config file, no admin token in a data directory.
fn bare(config: &tempfile::TempDir, args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .env("KEYHAVEN_CONFIG", config.path().join("config.json"))
        .env("KEYHAVEN_DATA_DIR", config.path().join("no-data-dir"))
        .env_remove("KEYHAVEN_URL")
        .env_remove("KEYHAVEN_AUTH_TOKEN")
        .env_remove("KEYHAVEN_PROJECT")
        .output()
        .unwrap();
    eprintln!(
        "keyhaven {args:?} -> {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_flags_go_before_the_command_as_with_avn_or_after_it() {
    let p = Platform::start().await;
    p.create("primary", "hobbyist", None).await;
    let config = tempfile::tempdir().unwrap();
    let (url, token) = (p.base.as_str(), p.token.as_str());

    let out = bare(
        &config,
        &["--url", url, "--auth-token", token, "service", "list"],
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("primary"));
    let out = bare(
        &config,
        &[
            "--url",
            url,
            "--auth-token",
            token,
            "--project",
            "default",
            "--json",
            "service",
            "get",
            "primary",
        ],
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["service_name"], "primary");
    // Mixed: some before, some after the command.
    let out = bare(
        &config,
        &[
            "--url",
            url,
            "service",
            "list",
            "--auth-token",
            token,
            "--json",
        ],
    );
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["service_name"], "primary");
    // After the command wins over before it.
    let out = bare(
        &config,
        &[
            "--url",
            url,
            "--auth-token",
            token,
            "--project",
            "nope",
            "service",
            "list",
            "--project",
            "default",
        ],
    );
    assert!(out.status.success());
    let out = bare(
        &config,
        &[
            "--url",
            url,
            "--auth-token",
            token,
            "--project",
            "nope",
            "service",
            "list",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("(status 404)"),
        "{out:?}"
    );
    let out = bare(
        &config,
        &["--url", url, "--auth-token", "wrong", "project", "list"],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("(status 403)"),
        "{out:?}"
    );
    // Without the flags nothing tells the client its token.
    let out = bare(&config, &["--url", url, "service", "list"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not logged in"),
        "{out:?}"
    );
    // They mean nothing to the server's own commands, which say so.
    let out = bare(&config, &["--url", url, "down"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("client commands"));
}

/// A request the stub server received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    authorization: String,
    body: Value,
}

/// An HTTP server that records every request and answers it with `answer(method, path)`:
/// what the CLI sends is checked byte for byte, whatever the real server implements.
async fn recording_server(
    answer: fn(&str, &str) -> (u16, Value),
) -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, rest) = loop {
                    let n = sock.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break (
                            String::from_utf8_lossy(&buf[..i]).to_string(),
                            buf[i + 4..].to_vec(),
                        );
                    }
                };
                let header = |name: &str| {
                    head.lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                        })
                        .unwrap_or_default()
                };
                let len: usize = header("content-length").parse().unwrap_or(0);
                let mut body = rest;
                while body.len() < len {
                    let n = sock.read(&mut chunk).await.unwrap();
                    body.extend_from_slice(&chunk[..n]);
                }
                let mut first = head.lines().next().unwrap().split(' ');
                let (method, path) = (first.next().unwrap(), first.next().unwrap());
                log.lock().unwrap().push(Received {
                    method: method.into(),
                    path: path.into(),
                    authorization: header("authorization"),
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                });
                let (status, answer) = answer(method, path);
                let text = answer.to_string();
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                sock.write_all(resp.as_bytes()).await.unwrap();
            });
        }
    });
    (url, received)
}

/// The stub's answers: a user_config schema with a key of each type, a PUT answered like
/// Aiven, and a service whose update is refused with Aiven's error body.
fn update_stub(method: &str, path: &str) -> (u16, Value) {
    match (method, path) {
        ("GET", "/v1/project/default/service-types/valkey") => (
            200,
            json!({"description": "Valkey", "user_config_schema": {"type": "object", "properties": {
                "valkey_maxmemory_policy": {"type": "string"},
                "valkey_timeout": {"type": "integer"},
                "valkey_ssl": {"type": "boolean"},
            }}}),
        ),
        ("PUT", "/v1/project/default/service/refused") => (
            405,
            json!({"message": "Method not allowed on this endpoint", "errors": [
                {"message": "Method not allowed on this endpoint", "status": 405, "error_code": "method_not_allowed"}]}),
        ),
        ("PUT", _) => (
            200,
            json!({"service": {"service_name": "svc", "service_type": "valkey", "state": "POWEROFF",
                   "plan": "startup-8", "cloud_name": "local", "termination_protection": true,
                   "keyhaven_role": "primary", "keyhaven_replication": {}}}),
        ),
        _ => (
            404,
            json!({"message": "No such endpoint", "errors": [{"message": "No such endpoint", "status": 404}]}),
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn service_update_sends_what_avn_sends() {
    let (url, received) = recording_server(update_stub).await;
    let config = tempfile::tempdir().unwrap();
    let update = |args: &[&str]| {
        received.lock().unwrap().clear();
        let mut all = vec![
            "--url",
            url.as_str(),
            "--auth-token",
            "tok",
            "service",
            "update",
        ];
        all.extend_from_slice(args);
        let out = bare(&config, &all);
        (out, received.lock().unwrap().clone())
    };
    let only_put = |got: &[Received]| -> Value {
        let puts: Vec<&Received> = got.iter().filter(|r| r.method == "PUT").collect();
        assert_eq!(puts.len(), 1, "{got:?}");
        assert_eq!(puts[0].path, "/v1/project/default/service/svc");
        assert_eq!(puts[0].authorization, "aivenv1 tok");
        puts[0].body.clone()
    };

    // Every option: -c values typed by the schema, like avn's.
    let (out, got) = update(&[
        "-p",
        "startup-8",
        "-c",
        "valkey_maxmemory_policy=allkeys-lru",
        "-c",
        "valkey_timeout=300",
        "-c",
        "valkey_ssl=true",
        "--power-off",
        "--enable-termination-protection",
        "svc",
    ]);
    assert!(out.status.success());
    assert_eq!(
        only_put(&got),
        json!({"plan": "startup-8", "powered": false, "termination_protection": true,
               "user_config": {"valkey_maxmemory_policy": "allkeys-lru", "valkey_timeout": 300,
                               "valkey_ssl": true}})
    );
    // The answer as `service get` shows it: POWEROFF and the protection.
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        table
            .lines()
            .next()
            .unwrap()
            .contains("TERMINATION_PROTECTION"),
        "{table}"
    );
    let row = table.lines().nth(2).unwrap();
    assert!(row.contains("POWEROFF") && row.contains("true"), "{table}");

    // Nothing given: avn's body, `user_config: {}` and nothing else; no schema needed.
    let (out, got) = update(&["svc"]);
    assert!(out.status.success());
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(only_put(&got), json!({"user_config": {}}));

    let (_, got) = update(&["--power-on", "--disable-termination-protection", "svc"]);
    assert_eq!(
        only_put(&got),
        json!({"powered": true, "termination_protection": false, "user_config": {}})
    );
    let (out, _) = update(&["--json", "-p", "startup-4", "svc"]);
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["state"], "POWEROFF");

    // The project before the command, as avn takes it.
    received.lock().unwrap().clear();
    let out = bare(
        &config,
        &[
            "--url",
            &url,
            "--auth-token",
            "tok",
            "--project",
            "staging",
            "service",
            "update",
            "--power-on",
            "svc",
        ],
    );
    assert!(out.status.success());
    assert_eq!(
        received.lock().unwrap()[0].path,
        "/v1/project/staging/service/svc"
    );

    // The server's refusal is shown with Aiven's message and status.
    let (out, _) = update(&["--power-off", "refused"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("Method not allowed on this endpoint (status 405)"),
        "{out:?}"
    );

    // Refused before anything is sent: contradictory flags, a value of the wrong type.
    for args in [
        &["--power-off", "--power-on", "svc"][..],
        &[
            "--enable-termination-protection",
            "--disable-termination-protection",
            "svc",
        ],
    ] {
        let (out, got) = update(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("cannot be used with"),
            "{out:?}"
        );
        assert!(got.is_empty(), "{got:?}");
    }
    let (out, got) = update(&["-c", "valkey_timeout=soon", "svc"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not an integer"),
        "{out:?}"
    );
    assert!(got.iter().all(|r| r.method != "PUT"), "{got:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn valkey_cli_from_the_venv_connects_with_the_service_uri() {
    let p = Platform::start().await;
    p.create("cache", "hobbyist", None).await;
    let uri = p.wait_running("cache").await["service_uri"]
        .as_str()
        .unwrap()
        .to_string();
    let cli = workspace_root().join(".venv/bin/valkey-cli");
    assert!(
        cli.exists(),
        "{} is missing: run scripts/setup",
        cli.display()
    );
    // The URI is rediss://: valkey-cli verifies the endpoint against the project's CA.
    assert!(uri.starts_with("rediss://"), "{uri}");
    let ca = p.data().join("ca.pem");
    let (status, body) = p.call("GET", "/v1/project/default/kms/ca", None).await;
    assert_eq!(status, 200, "{body}");
    std::fs::write(&ca, body["certificate"].as_str().unwrap()).unwrap();
    let ca = ca.to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let out = Command::new(&cli)
            .args(["--no-auth-warning", "--tls", "--cacert", &ca, "-u", &uri])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "valkey-cli {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    assert_eq!(run(&["SET", "greeting", "hello"]), "OK");
    assert_eq!(run(&["GET", "greeting"]), "hello");
    // The service user's denied commands stay denied through it.
    let out = Command::new(&cli)
        .args([
            "--no-auth-warning",
            "--tls",
            "--cacert",
            &ca,
            "-u",
            &uri,
            "CONFIG",
            "GET",
            "maxmemory",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("NOPERM"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keyhaven_service_update_changes_plan_config_power_and_protection() {
    let p = Platform::start().await;
    let cli = Cli::new(&p);
    cli.ok(&["service", "create", "-p", "hobbyist", "primary", "--wait"]);
    let mut con = valkey(&p.service("primary").await).await;
    let _: () = con.set("kept", "1").await.unwrap();
    wait_aof(&mut con).await;
    let get = |cli: &Cli| -> Value {
        serde_json::from_str(&cli.ok(&["service", "get", "--json", "primary"])).unwrap()
    };

    // Plan and user_config: the answer and GET show them.
    let row = cli.ok(&["service", "update", "-p", "startup-4", "primary"]);
    assert!(row.lines().nth(2).unwrap().contains("startup-4"), "{row}");
    cli.ok(&[
        "service",
        "update",
        "-c",
        "valkey_maxmemory_policy=allkeys-lru",
        "primary",
    ]);
    let s = get(&cli);
    assert_eq!(s["plan"], "startup-4");
    assert_eq!(s["user_config"]["valkey_maxmemory_policy"], "allkeys-lru");
    // Nothing given changes nothing.
    cli.ok(&["service", "update", "primary"]);
    let s = get(&cli);
    assert_eq!(
        (&s["plan"], &s["user_config"]["valkey_maxmemory_policy"]),
        (&json!("startup-4"), &json!("allkeys-lru"))
    );

    // The server's refusals, with its message and status; nothing changed.
    for (args, wanted) in [
        (&["-c", "nope=1"][..], "(status 400)"),
        (&["-p", "gold"], "valid plans"),
        (&["--project", "nope", "--power-off"], "(status 404)"),
    ] {
        let mut all = vec!["service", "update"];
        all.extend_from_slice(args);
        all.push("primary");
        let out = cli.run(&all);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(wanted),
            "{args:?}: {out:?}"
        );
    }
    assert_eq!(get(&cli)["plan"], "startup-4");

    // Protection: set, shown, refuses terminate and power-off, cleared.
    let row = cli.ok(&[
        "service",
        "update",
        "--enable-termination-protection",
        "primary",
    ]);
    assert!(row.contains("TERMINATION_PROTECTION"), "{row}");
    assert_eq!(get(&cli)["termination_protection"], true);
    let table = cli.ok(&["service", "get", "primary"]);
    let header = table.lines().next().unwrap();
    let column = header.find("TERMINATION_PROTECTION").unwrap();
    assert!(
        table.lines().nth(2).unwrap()[column..].starts_with("true"),
        "{table}"
    );
    for args in [
        &["service", "terminate", "--force", "primary"][..],
        &["service", "update", "--power-off", "primary"],
    ] {
        let out = cli.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("(status 403)"),
            "{args:?}: {out:?}"
        );
    }
    assert_eq!(get(&cli)["state"], "RUNNING");
    cli.ok(&[
        "service",
        "update",
        "--disable-termination-protection",
        "primary",
    ]);
    assert_eq!(get(&cli)["termination_protection"], false);

    // Power off: POWEROFF in `service get`, no process; power on: the data is back.
    let pid = p.node_pid(&p.service("primary").await);
    cli.ok(&["service", "update", "--power-off", "primary"]);
    wait_for("POWEROFF", Duration::from_secs(20), async || {
        (get(&cli)["state"] == "POWEROFF" && !pid_alive(pid)).then_some(())
    })
    .await;
    let table = cli.ok(&["service", "get", "primary"]);
    assert!(
        table.lines().nth(2).unwrap().contains("POWEROFF"),
        "{table}"
    );
    cli.ok(&["service", "update", "--power-on", "primary"]);
    cli.ok(&["service", "wait", "primary", "--timeout", "60"]);
    let mut con = valkey(&p.service("primary").await).await;
    let kept: Option<String> = con.get("kept").await.unwrap();
    assert_eq!(kept.as_deref(), Some("1"));
    cli.ok(&["service", "terminate", "--force", "primary"]);
}
