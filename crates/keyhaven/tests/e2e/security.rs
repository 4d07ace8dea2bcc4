//! Security: what needs a token, what is stored and logged, file modes, and what each
//! Valkey user may do.

use crate::harness::*;
use redis::AsyncCommands;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The endpoints that need no token, as DESIGN.md lists them: this list, not the
/// document's own `security`, decides what each operation must answer.
const OPEN_ENDPOINTS: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/v1/clouds"),
    ("POST", "/v1/userauth"),
];

/// Every operation of `openapi.json` (which keyhaven-server's unit tests prove is exactly
/// the router's route table) is called with no token, a wrong token and a wrong scheme.
#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_but_the_open_ones_needs_a_token() {
    let p = Platform::start().await;
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("openapi.json")).unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    let mut open_seen = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            let open = OPEN_ENDPOINTS.contains(&(method.as_str(), path.as_str()));
            if open {
                open_seen.push((method.clone(), path.clone()));
            }
            let url = path
                .replace("{project}", "default")
                .replace("{service}", "x")
                .replace("{service_type}", "valkey")
                .replace("{integration_id}", "00000000-0000-0000-0000-000000000000")
                .replace("{token_prefix}", "t");
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            for auth in [
                None,
                Some("aivenv1 not-a-token"),
                Some(&*format!("Basic {}", p.token)),
            ] {
                let mut req = p.http.request(m.clone(), p.url(&url)).body("{}");
                if let Some(a) = auth {
                    req = req.header("authorization", a);
                }
                let resp = req.send().await.unwrap();
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                if open {
                    assert_ne!(status, 403, "{method} {path} is open: {body}");
                } else {
                    assert_eq!(
                        status, 403,
                        "{method} {path} with {auth:?} answered {status}: {body}"
                    );
                    assert_eq!(
                        body["errors"][0]["error_code"], "authentication_failed",
                        "{method} {path}"
                    );
                }
            }
            checked += 1;
        }
    }
    assert_eq!(
        open_seen.len(),
        OPEN_ENDPOINTS.len(),
        "open endpoints missing from openapi.json: {open_seen:?}"
    );
    assert!(checked >= 20, "only {checked} operations checked");
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_hashed_random_and_never_logged_and_files_are_private() {
    let p = Platform::start().await;
    let (_, created) = p
        .call(
            "POST",
            "/v1/user",
            Some(json!({"email": "u@example.com", "password": "s3cret-pass-word"})),
        )
        .await;
    let user_token = created["token"].as_str().unwrap().to_string();
    p.create("vault", "startup-4", None).await;
    let s = p.wait_running("vault").await;
    let password = s["users"][0]["password"].as_str().unwrap().to_string();
    assert!(password.len() >= 24);
    p.create("vault2", "startup-4", None).await;
    assert_ne!(
        p.service("vault2").await["users"][0]["password"],
        s["users"][0]["password"]
    );

    // Tokens and user passwords never appear in the database, nor any secret in the log.
    let mut db = std::fs::read(p.data().join("keyhaven.db")).unwrap();
    if let Ok(wal) = std::fs::read(p.data().join("keyhaven.db-wal")) {
        db.extend(wal);
    }
    let db = String::from_utf8_lossy(&db);
    for secret in [p.token.as_str(), user_token.as_str(), "s3cret-pass-word"] {
        assert!(!db.contains(secret), "a secret is stored in clear");
    }
    let log = p.server_log();
    for secret in [&user_token, &password] {
        assert!(
            !log.contains(secret.as_str()),
            "a secret is in the server log"
        );
    }

    assert_eq!(mode(p.data()), 0o700);
    for f in ["keyhaven.db", "admin-token"] {
        assert_eq!(mode(&p.data().join(f)), 0o600, "{f}");
    }
    let node = p.node_dir_of_port(node_port(&s));
    assert_eq!(mode(&node), 0o700);
    assert_eq!(mode(&node.join("valkey.conf")), 0o600);
}

/// The local addresses a port listens on, from /proc/net/tcp{,6}.
fn listening_addresses(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (addr, state) = (cols[1], cols[3]);
            let (ip, p) = addr.rsplit_once(':').unwrap();
            if state == "0A" && u16::from_str_radix(p, 16).unwrap() == port {
                out.push(ip.to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn valkey_users_can_do_only_what_they_are_for() {
    let p = Platform::start().await;
    p.create("locked", "startup-4", None).await;
    let s = p.wait_running("locked").await;
    let port = node_port(&s);
    // Bound to the configured address only (127.0.0.1 = 0100007F).
    assert_eq!(listening_addresses(port), vec!["0100007F".to_string()]);

    let mut con = valkey(&s).await;
    for cmd in [
        &["REPLICAOF", "NO", "ONE"][..],
        &["SLAVEOF", "NO", "ONE"],
        &["FAILOVER"],
        &["CONFIG", "SET", "maxmemory", "0"],
        &["ACL", "WHOAMI"],
        &["CLUSTER", "INFO"],
        &["SHUTDOWN"],
        &["SAVE"],
        &["BGSAVE"],
        &["BGREWRITEAOF"],
        &["MONITOR"],
        &["DEBUG", "SLEEP", "0"],
        &["MODULE", "LIST"],
        &["SYNC"],
        &["PSYNC", "?", "-1"],
    ] {
        let r = redis::cmd(cmd[0])
            .arg(&cmd[1..])
            .query_async::<redis::Value>(&mut con)
            .await;
        let err = r.expect_err(&format!("{cmd:?} was allowed")).to_string();
        assert!(
            err.contains("has no permissions") || err.contains("command not allowed"),
            "{cmd:?}: {err}"
        );
    }
    // Everything a client needs works.
    let _: () = con.set("k", "v").await.unwrap();
    let _: i64 = con.publish("ch", "m").await.unwrap();

    // The replication user can replicate and nothing else.
    let mut repl = p.node_connection(&s, "keyhaven-repl").await;
    let _: String = redis::cmd("PING").query_async(&mut repl).await.unwrap();
    for cmd in [
        &["GET", "k"][..],
        &["SET", "k", "x"],
        &["KEYS", "*"],
        &["CONFIG", "GET", "*"],
        &["FLUSHALL"],
        &["INFO"],
    ] {
        let r = redis::cmd(cmd[0])
            .arg(&cmd[1..])
            .query_async::<redis::Value>(&mut repl)
            .await;
        assert!(r.is_err(), "the replication user could run {cmd:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_names_and_paths_are_refused_cleanly() {
    let p = Platform::start().await;
    for name in [
        "../../etc",
        "a/b",
        "ünïcode",
        "a\u{0}b",
        "UPPER",
        "-x",
        "x-",
        &"y".repeat(300),
        "",
        " ",
    ] {
        let (status, body) = p.try_create(name, "hobbyist", None).await;
        assert_eq!(status, 400, "{name:?}: {body}");
        assert_eq!(body["errors"][0]["error_code"], "invalid_name");
    }
    for path in [
        "/v1/project/default/service/..%2F..%2Fetc",
        "/v1/project/..%2Fdefault/service",
        "/v1/project/default/service/%C3%A9",
        "/v1/project/default/service/%FF",
        "/v1/project/default/integration/..",
    ] {
        let resp = p
            .http
            .get(p.url(path))
            .header("authorization", format!("aivenv1 {}", p.token))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert!(matches!(status, 400 | 404 | 405), "{path}: {status}");
        assert!(
            body["errors"][0]["error_code"].is_string(),
            "{path}: {body}"
        );
    }
    let (_, list) = p.call("GET", "/v1/project/default/service", None).await;
    assert_eq!(list["services"], json!([]));
    assert!(p.running_nodes().is_empty());
}

/// The `error_code` of an error answer ("" for a success).
fn error_code(body: &Value) -> &str {
    body["errors"][0]["error_code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_creates_deletes_and_promotions_stay_consistent() {
    use std::time::Duration;
    type Answer = tokio::task::JoinHandle<(u16, Value)>;
    let p = Arc::new(Platform::start().await);
    p.create("core", "startup-4", None).await;
    p.wait_running("core").await;
    for i in 0..3 {
        p.create(&format!("rep{i}"), "startup-4", Some("core"))
            .await;
    }
    for i in 0..3 {
        p.wait_running(&format!("rep{i}")).await;
    }
    let links: Vec<String> = futures_ids(&p).await;

    // Promote every replica twice, delete one replica (rep2, whose link is also being
    // promoted), add replicas and delete the primary, all at once.
    let mut promotions: Vec<(usize, Answer)> = Vec::new();
    for (i, id) in links.iter().enumerate().chain(links.iter().enumerate()) {
        let (p, id) = (p.clone(), id.clone());
        promotions.push((i, tokio::spawn(async move { p.delete_link(&id).await })));
    }
    let delete_replica: Answer = {
        let p = p.clone();
        tokio::spawn(async move {
            p.call("DELETE", "/v1/project/default/service/rep2", None)
                .await
        })
    };
    let mut creates: Vec<Answer> = Vec::new();
    for i in 3..8 {
        let p = p.clone();
        creates.push(tokio::spawn(async move {
            p.try_create(&format!("rep{i}"), "startup-4", Some("core"))
                .await
        }));
    }
    let delete_primary: Answer = {
        let p = p.clone();
        tokio::spawn(async move {
            p.call("DELETE", "/v1/project/default/service/core", None)
                .await
        })
    };

    // Every answer is one the API documents for its case; nothing is a 500 (no "database
    // is locked": one writer connection, BEGIN IMMEDIATE).
    let mut answers: Vec<Vec<(u16, Value)>> = vec![Vec::new(); links.len()];
    for (i, t) in promotions {
        answers[i].push(t.await.unwrap());
    }
    let (replica_deleted, body) = delete_replica.await.unwrap();
    assert!(
        replica_deleted == 200
            || (replica_deleted == 409 && error_code(&body) == "promotion_in_progress"),
        "DELETE of rep2: {replica_deleted}: {body}"
    );
    let replica_deleted = replica_deleted == 200;
    let (primary_deleted, body) = delete_primary.await.unwrap();
    assert!(
        primary_deleted == 200
            || (primary_deleted == 409 && error_code(&body) == "service_has_replicas"),
        "DELETE of core: {primary_deleted}: {body}"
    );
    let primary_deleted = primary_deleted == 200;
    for t in creates {
        let (status, body) = t.await.unwrap();
        let code = error_code(&body);
        assert!(
            status == 200
                || (status == 409 && code == "replica_limit_reached")
                || (primary_deleted && status == 404 && code == "source_service_not_found"),
            "replica create: {status}: {body}"
        );
    }

    // Each link promoted exactly once: one 200 (or 202, finished by the roll-forward);
    // the other DELETE found it being promoted (409) or gone (404). A 503 means nothing
    // changed, so the other DELETE may still be the one that promotes. rep2's link is
    // never promoted only when the replica's DELETE removed it first.
    let mut promoted = Vec::new();
    for (i, answers) in answers.iter().enumerate() {
        let mut successes = 0;
        for (status, body) in answers {
            let code = error_code(body);
            match status {
                200 => {
                    assert!(body.is_object(), "{body}");
                    successes += 1;
                }
                202 => {
                    assert_eq!(body["state"], "promoting", "{body}");
                    successes += 1;
                }
                409 => assert_eq!(code, "promotion_in_progress", "{body}"),
                404 => assert_eq!(code, "integration_not_found", "{body}"),
                503 => {}
                _ => panic!("promotion of rep{i}: {status}: {body}"),
            }
        }
        if i == 2 && replica_deleted && successes == 0 {
            continue;
        }
        assert_eq!(
            successes, 1,
            "the link of rep{i} was not promoted exactly once: {answers:?}"
        );
        if !(i == 2 && replica_deleted) {
            promoted.push(format!("rep{i}"));
        }
    }

    // Each promoted replica is a primary: in the API (no link, role primary) and on its node.
    for name in &promoted {
        let s = wait_for(
            &format!("{name} to be a primary without a link"),
            Duration::from_secs(30),
            async || {
                let s = p.service(name).await;
                (s["keyhaven_role"] == "primary"
                    && s["service_integrations"].as_array().unwrap().is_empty())
                .then_some(s)
            },
        )
        .await;
        let mut admin = p.node_connection(&s, "keyhaven-admin").await;
        wait_for(
            &format!("{name}'s node to answer ROLE master"),
            Duration::from_secs(30),
            async || (role(&mut admin).await == "master").then_some(()),
        )
        .await;
    }

    // Consistent afterwards: at most 5 replicas, and the services that exist all run.
    let (_, list) = p.call("GET", "/v1/project/default/service", None).await;
    let names: Vec<String> = list["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service_name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.contains(&"core".to_string()), !primary_deleted);
    assert_eq!(names.contains(&"rep2".to_string()), !replica_deleted);
    if !primary_deleted {
        let (_, core_links) = p
            .call("GET", "/v1/project/default/service/core/integration", None)
            .await;
        let core_links = core_links["service_integrations"].as_array().unwrap();
        assert!(core_links.len() <= 5, "{core_links:?}");
        for l in core_links {
            assert!(
                !promoted.iter().any(|n| l["dest_service"] == n.as_str()),
                "a promoted replica still has a link: {l}"
            );
        }
    }
    for n in &names {
        p.wait_running(n).await;
    }
    wait_for(
        "one node per service",
        Duration::from_secs(20),
        async || (p.running_nodes().len() == names.len()).then_some(()),
    )
    .await;
}

async fn futures_ids(p: &Platform) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(p.link_id(&format!("rep{i}")).await);
    }
    ids
}
