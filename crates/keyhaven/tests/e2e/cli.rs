//! Keyhaven's own CLI against a live server: the getting-started flow of the README.

use crate::harness::*;
use redis::AsyncCommands;
use serde_json::Value;
use std::process::{Command, Output};
use std::time::Duration;

struct Cli<'a> {
    p: &'a Platform,
    config: tempfile::TempDir,
}

impl Cli<'_> {
    fn new(p: &Platform) -> Cli<'_> {
        Cli {
            p,
            config: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env("KEYHAVEN_CONFIG", self.config.path().join("config.json"))
            .env("KEYHAVEN_URL", &self.p.base)
            .env("KEYHAVEN_AUTH_TOKEN", &self.p.token)
            .env_remove("KEYHAVEN_PROJECT");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.command().args(args).output().unwrap();
        eprintln!(
            "keyhaven {args:?} -> {:?}\n{}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn ok(&self, args: &[&str]) -> String {
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
