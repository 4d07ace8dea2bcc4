//! The real `avn` (PyPI aiven-client, installed by scripts/setup) against Keyhaven: the
//! commands of Aiven's docs, verbatim but for URL and token.

use crate::harness::*;
use redis::AsyncCommands;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

pub(crate) struct Avn<'a> {
    p: &'a Platform,
    config_dir: tempfile::TempDir,
}

impl Avn<'_> {
    pub(crate) fn new(p: &Platform) -> Avn<'_> {
        Avn {
            p,
            config_dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn binary() -> PathBuf {
        let avn = workspace_root().join(".venv/bin/avn");
        assert!(
            avn.exists(),
            "{} is missing: run scripts/setup first",
            avn.display()
        );
        avn
    }

    /// `avn --url URL <args>` with the admin token in AIVEN_AUTH_TOKEN.
    pub(crate) fn run(&self, args: &str) -> Output {
        let out = Command::new(Self::binary())
            .args(["--url", &self.p.base])
            .args(args.split_whitespace())
            .env("AIVEN_CONFIG_DIR", self.config_dir.path())
            .env("AIVEN_AUTH_TOKEN", &self.p.token)
            .output()
            .unwrap();
        eprintln!(
            "avn {args}\n  exit {:?}\n  stdout: {}\n  stderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs and asserts exit code 0; returns stdout.
    pub(crate) fn ok(&self, args: &str) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "avn {args} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn avn_runs_the_docs_commands_against_keyhaven() {
    let p = Platform::start().await;
    let avn = Avn::new(&p);

    avn.ok("service create -t valkey -p startup-4 --project default primary");
    // The docs page's CLI command, verbatim.
    avn.ok("service create -t valkey -p startup-4 --project default --read-replica-for primary replica");
    avn.ok("service wait --project default primary replica");

    let list = avn.ok("service list --project default");
    assert!(
        list.contains("primary") && list.contains("replica") && list.contains("RUNNING"),
        "{list}"
    );
    let got: Value =
        serde_json::from_str(&avn.ok("service get --json --project default replica")).unwrap();
    assert_eq!(got["state"], "RUNNING");
    assert_eq!(
        got["service_integrations"][0]["integration_type"],
        "read_replica"
    );

    // A name that exists: an error, unless --no-fail-if-exists.
    let dup = avn.run("service create -t valkey -p startup-4 --project default primary");
    assert_eq!(dup.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    avn.ok("service create -t valkey -p startup-4 --project default --no-fail-if-exists primary");

    // Replication is real: a write on the primary shows up on the replica.
    let mut pc = valkey(&p.service("primary").await).await;
    let _: () = pc.set("via-avn", "1").await.unwrap();
    let mut rc = valkey(&p.service("replica").await).await;
    wait_for("replication", Duration::from_secs(5), async || {
        let v: Option<String> = rc.get("via-avn").await.unwrap();
        v
    })
    .await;

    // Promote: the docs' two CLI steps.
    let table = avn.ok("service integration-list --project default replica");
    let id = table
        .lines()
        .find(|l| l.contains("read_replica"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no read_replica row: {table}"))
        .to_string();
    assert_eq!(id, p.link_id("replica").await);
    avn.ok(&format!(
        "service integration-delete --project default {id}"
    ));
    let s = p.service("replica").await;
    assert_eq!(s["keyhaven_role"], "primary");
    let _: () = rc.set("writable-now", "1").await.unwrap();
    assert!(
        !avn.ok("service integration-list --project default replica")
            .contains("read_replica")
    );

    // Projects and login.
    assert!(avn.ok("project list").contains("default"));
    let login = Command::new(Avn::binary())
        .args([
            "--url",
            &p.base,
            "user",
            "login",
            "admin@localhost",
            "--token",
        ])
        .env("AIVEN_CONFIG_DIR", avn.config_dir.path())
        .env("AIVEN_AUTH_TOKEN", &p.token)
        .output()
        .unwrap();
    assert!(login.status.success(), "{login:?}");
    let creds =
        std::fs::read_to_string(avn.config_dir.path().join("aiven-credentials.json")).unwrap();
    assert!(creds.contains(&p.token));

    avn.ok("service terminate --project default --force replica");
    avn.ok("service terminate --project default --force primary");
    wait_for("no nodes left", Duration::from_secs(20), async || {
        p.running_nodes().is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn avn_creates_lists_and_revokes_access_tokens_by_prefix() {
    let p = Platform::start().await;
    let avn = Avn::new(&p);
    let created: Value =
        serde_json::from_str(&avn.ok("user access-token create --description ci --json")).unwrap();
    let token = created[0]["full_token"].as_str().unwrap().to_string();
    assert!(
        avn.ok("user access-token create --description table")
            .contains("FULL_TOKEN")
    );
    let table = avn.ok("user access-token list");
    assert!(table.contains("TOKEN_PREFIX"), "{table}");
    assert!(table.contains(&token[..10]), "{table}");
    assert!(!table.contains(&token), "a full token is listed: {table}");

    assert!(
        avn.ok(&format!("user access-token revoke {}", &token[..10]))
            .contains("Revoked")
    );
    assert!(!avn.ok("user access-token list").contains(&token[..10]));
    assert_eq!(p.call_as(&token, "GET", "/v1/me", None).await.0, 403);

    // An expiry Keyhaven cannot honour is refused, not dropped.
    let out = avn.run("user access-token create --description short --max-age-seconds 60");
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("do not expire"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn avn_lists_clouds_with_and_without_a_project_and_the_plans() {
    let p = Platform::start().await;
    let avn = Avn::new(&p);

    // Without --project (and no default_project), avn 4.18 asks for /v1/project//clouds.
    for args in ["cloud list", "cloud list --project default"] {
        let table = avn.ok(args);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].contains("CLOUD_NAME") && lines[0].contains("GEO_REGION"),
            "{args}: {table}"
        );
        assert!(
            lines[2].contains("local") && lines[2].contains("this-host"),
            "{args}: {table}"
        );
    }
    let clouds: Value =
        serde_json::from_str(&avn.ok("cloud list --project default --json")).unwrap();
    // Aiven's fields, and for a token holder where the cloud's host is and that it lives.
    let c = &clouds[0];
    assert_eq!(clouds.as_array().unwrap().len(), 1, "{clouds}");
    for (field, want) in [
        ("cloud_name", "local"),
        ("cloud_description", "Local processes on this host"),
        ("geo_region", "this-host"),
        ("provider", "local"),
        ("keyhaven_host", "127.0.0.1"),
    ] {
        assert_eq!(c[field], want, "{field}: {clouds}");
    }
    assert_eq!(c["keyhaven_api_url"], p.base.as_str(), "{clouds}");
    assert_eq!(c["keyhaven_alive"], true, "{clouds}");
    assert!(
        c["keyhaven_heartbeat_age_ms"].as_i64().unwrap() < 10_000,
        "{clouds}"
    );
    // A project the caller is not a member of is answered like a missing one.
    let (status, body) = p
        .call(
            "POST",
            "/v1/user",
            Some(serde_json::json!({"email": "outsider@example.com", "password": "correct horse battery"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let outsider = body["token"].as_str().unwrap().to_string();
    let (status, body) = p
        .call_as(&outsider, "GET", "/v1/project/default/clouds", None)
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        p.call_as(&outsider, "GET", "/v1/project//clouds", None)
            .await
            .0,
        200
    );
    let missing = avn.run("cloud list --project nope");
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("(status 404)"),
        "{missing:?}"
    );

    // Plans: without --cloud avn shows the service type only, with it every plan and price.
    let plans = avn.ok("service plans --service-type valkey --project default");
    assert!(
        plans.contains("Used cloud not defined")
            && plans.contains("Valkey - In-memory data store Plans:"),
        "{plans}"
    );
    let plans = avn.ok("service plans --service-type valkey --project default --cloud local");
    for line in [
        "valkey:hobbyist                $0.000/h  Hobbyist (1 CPU, 1 GB RAM, 20 GB disk)",
        "valkey:startup-4               $0.000/h  Startup-4 (1 CPU, 4 GB RAM, 80 GB disk)",
        "valkey:startup-200             $0.000/h  Startup-200 (1 CPU, 200 GB RAM, 4000 GB disk)",
    ] {
        assert!(plans.contains(line), "no '{line}' in:\n{plans}");
    }
    assert!(
        avn.ok("service plans --service-type valkey --project default --cloud local --monthly")
            .contains("$0/mo")
    );
    let types: Value =
        serde_json::from_str(&avn.ok("service plans --project default --cloud local --json"))
            .unwrap();
    let startup4 = types["valkey"]["service_plans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["service_plan"] == "startup-4")
        .unwrap()
        .clone();
    assert_eq!(startup4["max_memory_percent"], 70);
    assert_eq!(startup4["regions"]["local"]["node_memory_mb"], 4096);
}

#[tokio::test(flavor = "multi_thread")]
async fn avn_service_cli_runs_valkey_cli_against_the_service() {
    let p = Platform::start().await;
    let avn = Avn::new(&p);
    p.create("cache", "hobbyist", None).await;
    p.wait_running("cache").await;
    let cli = workspace_root().join(".venv/bin/valkey-cli");
    assert!(
        cli.exists(),
        "{} is missing: run scripts/setup",
        cli.display()
    );
    // avn execs `valkey-cli -h HOST -p PORT --user default --tls` with REDISCLI_AUTH set;
    // valkey-cli then trusts OpenSSL's default CA file, which SSL_CERT_FILE names: the
    // project's CA, as avn fetches it.
    let ca = p.data().join("ca.pem");
    avn.ok("project switch default");
    avn.ok(&format!(
        "project ca-get --target-filepath {}",
        ca.display()
    ));
    let path = format!(
        "{}:{}",
        workspace_root().join(".venv/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |args: &str| {
        let out = Command::new(Avn::binary())
            .args(["--url", &p.base])
            .args(args.split_whitespace())
            .env("AIVEN_CONFIG_DIR", avn.config_dir.path())
            .env("AIVEN_AUTH_TOKEN", &p.token)
            .env("PATH", &path)
            .env("SSL_CERT_FILE", &ca)
            .output()
            .unwrap();
        assert!(out.status.success(), "avn {args}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        run("service cli --project default cache SET via-cli hello").trim(),
        "OK"
    );
    assert_eq!(
        run("service cli --project default cache GET via-cli").trim(),
        "hello"
    );
    let mut con = valkey(&p.service("cache").await).await;
    let v: Option<String> = con.get("via-cli").await.unwrap();
    assert_eq!(v.as_deref(), Some("hello"));
}
