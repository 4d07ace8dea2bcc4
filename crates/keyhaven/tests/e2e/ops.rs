//! Operating Keyhaven: what its log holds (no secret, ever; `--log-format json`) and
//! `/readyz` (the store takes writes, the reconciler runs).

use crate::harness::*;
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

/// The password in a `valkey://user:password@host:port` URI.
fn uri_password(service: &Value) -> String {
    let uri = service["service_uri"].as_str().unwrap();
    let rest = uri.split_once("://").unwrap().1;
    let userinfo = rest.rsplit_once('@').unwrap().0;
    userinfo.split_once(':').unwrap().1.to_string()
}

/// Every secret a service shows or its node holds: the service user's password (from the
/// API's service_uri and users[]) and Keyhaven's own users' passwords from valkey.conf.
fn service_secrets(p: &Platform, s: &Value) -> Vec<String> {
    let mut out = vec![uri_password(s)];
    if let Some(users) = s["users"].as_array() {
        out.extend(
            users
                .iter()
                .filter_map(|u| u["password"].as_str().map(String::from)),
        );
    }
    for user in ["keyhaven-admin", "keyhaven-repl"] {
        out.push(p.node_password(s, user));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_run_logs_no_token_and_no_password() {
    let mut p = Platform::start().await;
    let mut secrets: Vec<String> = vec![p.token.clone()];

    // A user with a password, its login token, a minted token.
    let user_password = "Log-Test-Pass-7f3a9c";
    let (status, created) = p
        .call(
            "POST",
            "/v1/user",
            Some(json!({"email": "logs@example.com", "password": user_password})),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    secrets.push(user_password.into());
    secrets.push(created["token"].as_str().unwrap().into());
    let login = p
        .http
        .post(p.url("/v1/userauth"))
        .json(&json!({"email": "logs@example.com", "password": user_password}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let login: Value = login.json().await.unwrap();
    secrets.push(login["token"].as_str().unwrap().into());
    // A wrong password and a wrong token are secrets the server saw, too.
    let wrong_password = "Wrong-Pass-Never-Logged-1d2e";
    let refused = p
        .http
        .post(p.url("/v1/userauth"))
        .json(&json!({"email": "logs@example.com", "password": wrong_password}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    secrets.push(wrong_password.into());
    let wrong_token = "WrongTokenNeverLogged0123456789abcdef";
    let (status, _) = p.call_as(wrong_token, "GET", "/v1/project", None).await;
    assert_eq!(status, 403);
    secrets.push(wrong_token.into());
    let (status, minted) = p
        .call(
            "POST",
            "/v1/access_token",
            Some(json!({"description": "logs"})),
        )
        .await;
    assert_eq!(status, 200, "{minted}");
    let minted = minted["full_token"].as_str().unwrap().to_string();
    let (status, _) = p.call_as(&minted, "GET", "/v1/project", None).await;
    assert_eq!(status, 200);
    secrets.push(minted);

    // A primary and a replica, the replica promoted, the old primary's credentials reset.
    p.create("logp", "startup-4", None).await;
    let primary = p.wait_running("logp").await;
    p.create("logr", "startup-4", Some("logp")).await;
    let replica = p.wait_running("logr").await;
    secrets.extend(service_secrets(&p, &primary));
    secrets.extend(service_secrets(&p, &replica));
    let id = p.link_id("logr").await;
    let (status, body) = p.delete_link(&id).await;
    assert_eq!(status, 200, "{body}");
    let promoted = wait_for(
        "the promoted replica",
        Duration::from_secs(30),
        async || {
            let s = p.service("logr").await;
            (s["state"] == "RUNNING" && s["keyhaven_role"] == "primary").then_some(s)
        },
    )
    .await;
    secrets.extend(service_secrets(&p, &promoted));
    let (status, reset) = p
        .call(
            "PUT",
            "/v1/project/default/service/logp/credentials/reset",
            None,
        )
        .await;
    assert_eq!(status, 200, "{reset}");
    secrets.extend(service_secrets(&p, &reset["service"]));
    let after = p.wait_running("logp").await;
    secrets.extend(service_secrets(&p, &after));

    // A restart adopts the nodes (their passwords are read back from the store).
    p.stop_server().await;
    p.start_server().await;
    p.wait_running("logp").await;
    p.wait_running("logr").await;
    let (status, _) = p
        .call("DELETE", "/v1/project/default/service/logr", None)
        .await;
    assert_eq!(status, 200);
    p.stop_server().await;

    secrets.sort();
    secrets.dedup();
    assert!(secrets.len() >= 12, "{} secrets", secrets.len());
    let log = p.server_log();
    assert!(log.lines().count() > 10, "the log is nearly empty:\n{log}");
    assert!(log.contains("logp") && log.contains("logr"), "{log}");
    for secret in &secrets {
        assert!(secret.len() >= 16, "a short secret: {secret}");
        let hit = log.lines().find(|l| l.contains(secret.as_str()));
        assert!(
            hit.is_none(),
            "a secret ({}…) is in the server log: {}",
            &secret[..4],
            hit.unwrap().replace(secret.as_str(), "<SECRET>")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn log_format_json_writes_one_object_per_line() {
    let mut p = Platform::start_with(&["--log-format", "json"]).await;
    p.create("jsonlog", "hobbyist", None).await;
    p.wait_running("jsonlog").await;
    p.stop_server().await;
    let log = p.server_log();
    let mut events = 0;
    let mut messages = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        assert!(v.is_object(), "{line}");
        let level = v["level"].as_str().unwrap_or_else(|| panic!("{line}"));
        assert!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level),
            "{line}"
        );
        let message = v["fields"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no fields.message: {line}"));
        assert!(v["timestamp"].is_string(), "{line}");
        messages.push(message.to_string());
        events += 1;
    }
    assert!(events >= 3, "{log}");
    assert!(messages.iter().any(|m| m == "found Valkey"), "{messages:?}");
    // A format that is neither is refused before anything starts, by flag or environment.
    for (flag, env) in [(Some("xml"), None), (None, Some("xml"))] {
        let mut cmd = Command::new(BIN);
        cmd.arg("server")
            .args(flag.map(|f| vec!["--log-format", f]).unwrap_or_default());
        if let Some(e) = env {
            cmd.env("KEYHAVEN_LOG_FORMAT", e);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("'xml'") && err.contains("text") && err.contains("json"),
            "{err}"
        );
    }
}

async fn readyz(p: &Platform) -> (u16, Value) {
    let resp = p.http.get(p.url("/readyz")).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_turns_unready_while_the_store_cannot_be_written_and_recovers() {
    let p = Platform::start_on_small_disk(16).await;
    wait_for(
        "/readyz to answer 200",
        Duration::from_secs(10),
        async || {
            let (status, body) = readyz(&p).await;
            (status == 200).then_some(body)
        },
    )
    .await;
    // /healthz is only "the process is alive".
    let health = p.http.get(p.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    // Fill the disk: the store cannot take a write.
    let filler = p.fill_disk();
    let body = wait_for(
        "/readyz to answer 503",
        Duration::from_secs(10),
        async || {
            let (status, body) = readyz(&p).await;
            (status == 503).then_some(body)
        },
    )
    .await;
    assert_eq!(body["errors"][0]["error_code"], "not_ready", "{body}");
    assert_eq!(body["errors"][0]["status"], 503, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("the store cannot be written"), "{body}");
    assert!(message.contains("full"), "{body}");
    let health = p.http.get(p.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "/healthz stays alive");

    // Free the space: ready again.
    std::fs::remove_file(&filler).unwrap();
    wait_for(
        "/readyz to answer 200 again",
        Duration::from_secs(10),
        async || {
            let (status, body) = readyz(&p).await;
            (status == 200).then_some(body)
        },
    )
    .await;
}

/// A reconciler that stops running (here a fault point stops it after its first
/// activation, as a node call that never returns would) makes the server unready within
/// three idle periods, naming why; the process stays alive.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread")]
async fn readyz_turns_unready_when_the_reconciler_stops_running() {
    let mut p = Platform::unstarted(&[]);
    p.env
        .push(("KEYHAVEN_FAILPOINT".into(), "reconciler.stalls".into()));
    p.boot().await;
    let body = wait_for(
        "/readyz to answer 503",
        Duration::from_secs(10),
        async || {
            let (status, body) = readyz(&p).await;
            (status == 503).then_some(body)
        },
    )
    .await;
    assert_eq!(body["errors"][0]["error_code"], "not_ready", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("the reconciler last finished an activation"),
        "{body}"
    );
    let health = p.http.get(p.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "/healthz stays alive");
}

/// A server's own cloud stays alive for as long as it runs: its heartbeat is renewed and
/// seen renewed (its age stays within two heartbeat periods) well past the 10 s after which
/// a cloud counts as lost, and its services stay RUNNING meanwhile. Watched for 13 s.
#[tokio::test(flavor = "multi_thread")]
async fn a_servers_own_cloud_stays_alive_past_the_lost_bound() {
    let p = Platform::start().await;
    p.create("steady", "hobbyist", None).await;
    p.wait_running("steady").await;
    let watch = std::time::Instant::now();
    while watch.elapsed() < Duration::from_secs(13) {
        let (status, body) = p.call("GET", "/v1/project/default/clouds", None).await;
        assert_eq!(status, 200, "{body}");
        let local = &body["clouds"][0];
        assert_eq!(local["keyhaven_alive"], true, "{body}");
        let age = local["keyhaven_heartbeat_age_ms"].as_i64().unwrap();
        assert!(age < 4_000, "the heartbeat is {age} ms old: {body}");
        assert_eq!(p.service("steady").await["state"], "RUNNING");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
