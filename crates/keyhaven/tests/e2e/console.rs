//! The web console at `/console`: its HTTP edge (redirect, client-side routes, hashed
//! immutable assets, the Content-Security-Policy) over a real socket, and its pages in a
//! real headless Chromium (Debian's `/usr/bin/chromium`, driven by npm's playwright-core
//! from `tests/console/`) against a real server with real valkey-servers. Screenshots of
//! every step land in `target/ci-artifacts/console/` at 1280×800 and 360×740.

use crate::harness::{Platform, signal, valkey, workspace_root};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

/// How long one browser scenario may take, start to end.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

fn console_tests() -> PathBuf {
    workspace_root().join("crates/keyhaven/tests/console")
}

/// Runs `node tests/console/SCRIPT` against the platform; panics with the script's output
/// (and the server log's tail) when it fails or overruns.
async fn browser(p: &Platform, script: &str, env: &[(&str, &str)]) {
    let dir = console_tests();
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "{} has no node_modules: run scripts/setup",
        dir.display()
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: run scripts/setup"
    );
    let artifacts = workspace_root().join("target/ci-artifacts/console");
    // valkey-cli verifies the services' TLS endpoints against the project's CA.
    let (status, body) = p.call("GET", "/v1/project/default/kms/ca", None).await;
    assert_eq!(status, 200, "{body}");
    let ca = p.data().join("console-ca.pem");
    std::fs::write(&ca, body["certificate"].as_str().unwrap()).unwrap();
    let child = tokio::process::Command::new("node")
        .arg(dir.join(script))
        .current_dir(&dir)
        .env("KEYHAVEN_URL", &p.base)
        .env("KEYHAVEN_TOKEN", &p.token)
        .env("KEYHAVEN_ARTIFACTS", &artifacts)
        .env("VALKEY_CLI", workspace_root().join(".venv/bin/valkey-cli"))
        .env("KEYHAVEN_CA", &ca)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let out = tokio::time::timeout(SCENARIO_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within {SCENARIO_TIMEOUT:?}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let log = p.server_log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "{script} failed ({}); screenshots in {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server log (last lines)\n{}",
            out.status,
            artifacts.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    eprintln!("{stdout}");
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `/` redirects to `/console`; any path under it serves the app with a strict CSP and
/// `no-cache`; every asset the page and its modules refer to is served under a hashed
/// name with an immutable cache header; the unhashed name is not served; the API's own
/// 404 stays JSON.
#[tokio::test]
async fn console_is_served_with_hashed_immutable_assets_and_a_strict_csp() {
    let p = Platform::start().await;
    let http = no_redirects();

    let resp = http.get(p.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 307);
    assert_eq!(resp.headers()["location"], "/console");

    let mut index = String::new();
    for path in [
        "/console",
        "/console/x/y",
        "/console/project/default/services/nope",
    ] {
        let resp = http.get(p.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers().clone();
        assert!(
            h["content-type"].to_str().unwrap().starts_with("text/html"),
            "{path}"
        );
        assert_eq!(h["cache-control"], "no-cache", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(
                csp.contains(directive),
                "{path}: CSP {csp} lacks {directive}"
            );
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        index = resp.text().await.unwrap();
        assert!(index.contains("<title>Keyhaven console</title>"), "{path}");
    }

    // Every reference of the page, and every module import, resolves to a hashed asset.
    let refs = |text: &str, pattern: &str| -> Vec<String> {
        text.match_indices(pattern)
            .map(|(i, _)| {
                text[i + pattern.len()..]
                    .chars()
                    .take_while(|c| !matches!(c, '"' | '\''))
                    .collect()
            })
            .collect()
    };
    let mut todo = refs(&index, "/console/assets/");
    assert!(
        todo.iter()
            .any(|r| r.starts_with("app.") && r.ends_with(".js")),
        "{todo:?}"
    );
    let mut seen = Vec::new();
    while let Some(name) = todo.pop() {
        if seen.contains(&name) {
            continue;
        }
        let parts: Vec<&str> = name.split('.').collect();
        assert_eq!(parts.len(), 3, "{name} is not NAME.HASH.EXT");
        assert!(
            parts[1].len() == 12 && parts[1].chars().all(|c| c.is_ascii_hexdigit()),
            "{name}: no content hash"
        );
        let resp = http
            .get(p.url(&format!("/console/assets/{name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{name} is referenced but not served");
        assert_eq!(
            resp.headers()["cache-control"],
            "public, max-age=31536000, immutable",
            "{name}"
        );
        let body = resp.text().await.unwrap();
        if name.ends_with(".js") {
            todo.extend(refs(&body, "from './"));
        }
        seen.push(name);
    }
    assert!(seen.len() >= 8, "assets reached: {seen:?}");

    let resp = http
        .get(p.url("/console/assets/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "an unhashed name is not served");
    let resp = http.get(p.url("/v1/nope")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["error_code"], "not_found");
}

/// Sign in with the admin token, create a primary in the dialog, give it ~40 MB, create a
/// read replica in the Read replica dialog, see it REBUILDING then RUNNING with its lag
/// without a reload, read a write on it, promote it in the confirmation dialog and write
/// on it (the script checks each step in the browser and with valkey-cli).
#[tokio::test]
async fn console_creates_and_promotes_a_read_replica_in_a_browser() {
    let p = Platform::start().await;
    browser(&p, "lifecycle.mjs", &[]).await;

    // What the browser showed is what the API says.
    let promoted = p.service("cache-replica-1").await;
    assert_eq!(promoted["keyhaven_role"], "primary", "{promoted}");
    assert!(promoted["keyhaven_replication"]["primary_service"].is_null());
    let primary = p.service("cache").await;
    assert_eq!(primary["keyhaven_replication"]["replicas"], json!([]));
    let mut con = valkey(&promoted).await;
    let after: String = redis::cmd("GET")
        .arg("after")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(after, "promotion");
}

/// A user with a password (and a wrong one first), the keyboard-only path through
/// "Create replica" with a taken name, the sixth replica refused, the project switcher, a
/// termination-protected delete that keeps the session and the delete once protection is
/// off, a token revoked elsewhere, and sign-out.
#[tokio::test]
async fn console_refusals_and_the_keyboard_path_in_a_browser() {
    let p = Platform::start().await;
    let (email, password) = ("dev@example.com", "correct horse battery staple");
    let (status, body) = p
        .call(
            "POST",
            "/v1/user",
            Some(json!({"email": email, "password": password, "real_name": "Dev"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = p
        .call(
            "POST",
            "/v1/project/default/invite",
            Some(json!({"user_email": email})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = p
        .call("POST", "/v1/project", Some(json!({"project": "staging"})))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = p
        .call(
            "POST",
            "/v1/project/staging/invite",
            Some(json!({"user_email": email})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    p.create("main", "startup-4", None).await;
    for i in 1..=4 {
        p.create(&format!("main-replica-{i}"), "startup-4", Some("main"))
            .await;
    }

    browser(
        &p,
        "refusals.mjs",
        &[("USER_EMAIL", email), ("USER_PASSWORD", password)],
    )
    .await;

    let main = p.service("main").await;
    let replicas: Vec<&str> = main["keyhaven_replication"]["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["service_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        replicas,
        [
            "main-replica-1",
            "main-replica-2",
            "main-replica-3",
            "main-replica-5"
        ],
        "created in the dialog, and main-replica-4 deleted"
    );
    let (status, _) = p
        .call("GET", "/v1/project/default/service/main-replica-4", None)
        .await;
    assert_eq!(status, 404);
}

/// A primary and its RUNNING replica, made through the API: `origin` and `standby`.
async fn origin_and_standby(p: &Platform) -> serde_json::Value {
    let primary = p.create("origin", "startup-4", None).await;
    p.wait_running("origin").await;
    p.create("standby", "startup-4", Some("origin")).await;
    p.wait_running("standby").await;
    primary
}

/// Sends SIGCONT to a node when dropped: a frozen node is never left behind a failure.
struct Thaw(u32);

impl Drop for Thaw {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

/// A 503 at promotion (the primary is frozen, so it runs but does not answer): the dialog
/// explains it and what to do, and "Promote anyway" (`?lossy=true`) promotes.
#[tokio::test]
async fn console_explains_a_refused_promotion_and_can_promote_anyway() {
    let p = Platform::start().await;
    let primary = origin_and_standby(&p).await;
    let pid = p.node_pid(&primary);
    let _thaw = Thaw(pid);
    browser(
        &p,
        "promote-refused.mjs",
        &[("PRIMARY_PID", &pid.to_string())],
    )
    .await;
    let s = p.service("standby").await;
    assert_eq!(s["keyhaven_role"], "primary", "{s}");
}

/// A 202 `{"state": "promoting"}` (fault point `promotion.detach_unconfirmed`): the page
/// says the promotion is finishing, then shows a primary without a reload.
#[cfg(feature = "failpoints")]
#[tokio::test]
async fn console_shows_a_promotion_finishing_in_the_background() {
    let mut p = Platform::unstarted(&[]);
    p.env.push((
        "KEYHAVEN_FAILPOINT".into(),
        "promotion.detach_unconfirmed".into(),
    ));
    p.boot().await;
    origin_and_standby(&p).await;
    browser(&p, "promote-finishing.mjs", &[]).await;
    let s = p.wait_running("standby").await;
    assert_eq!(s["keyhaven_role"], "primary", "{s}");
}
