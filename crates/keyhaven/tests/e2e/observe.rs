//! Observing replication: the lag in milliseconds that Keyhaven measures with its own
//! heartbeats (DESIGN → Observing), on real valkey-servers.

use crate::harness::*;
use keyhaven_control::heartbeat::{channel, payload};
use redis::aio::MultiplexedConnection;
use serde_json::Value;
use std::time::{Duration, Instant};

fn lag_ms(service: &Value) -> Option<i64> {
    service["keyhaven_replication"]["lag_ms"].as_i64()
}

/// Sends SIGCONT on drop, so a failing test never leaves a node stopped.
struct Stopped(u32);

impl Stopped {
    fn new(pid: u32) -> Stopped {
        signal(pid, "-STOP");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

/// Waits until Keyhaven has measured the replica's lag and returns the service.
async fn wait_measured(p: &Platform, name: &str) -> Value {
    wait_for(
        "the replica's lag_ms",
        Duration::from_secs(15),
        async || {
            let s = p.service(name).await;
            lag_ms(&s).is_some().then_some(s)
        },
    )
    .await
}

/// Bytes the primary has sent that its replica has not acknowledged yet, from the
/// primary's INFO (the replica ACKs once a second).
async fn unacked_bytes(primary_admin: &mut MultiplexedConnection) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(primary_admin)
        .await
        .unwrap();
    let field = |line: &str, key: &str| -> Option<i64> {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
    };
    let offset = info
        .lines()
        .find_map(|l| l.strip_prefix("master_repl_offset:"))
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap();
    let acked = info
        .lines()
        .find_map(|l| l.strip_prefix("slave0:"))
        .and_then(|l| field(l, "offset="))
        .unwrap_or_else(|| panic!("no replica in {info}"));
    offset - acked
}

fn service_id(p: &Platform, service: &Value) -> String {
    let port = node_port(service);
    p.node_dir_of_port(port)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[tokio::test]
async fn an_idle_replica_has_its_lag_measured_in_milliseconds() {
    let p = Platform::start().await;
    let (primary, _) = primary_and_replica(&p).await;
    wait_measured(&p, "repl").await;
    // 200 reads back to back span a few heartbeat periods.
    let mut lags: Vec<i64> = Vec::new();
    for _ in 0..200 {
        lags.push(lag_ms(&p.service("repl").await).unwrap());
    }
    lags.sort_unstable();
    let (median, p90, max) = (lags[100], lags[180], lags[199]);
    eprintln!("idle replica lag_ms over 200 reads: median {median}, p90 {p90}, max {max}");
    assert!(median <= 20, "an idle replica on loopback lags {median} ms");
    // The primary shows it for its replica too.
    let prim = p.service("prim").await;
    let summary = &prim["keyhaven_replication"]["replicas"][0];
    assert_eq!(summary["service_name"], "repl");
    assert!(summary["lag_ms"].as_i64().is_some(), "{summary}");
    assert!(prim["keyhaven_replication"]["lag_ms"].is_null());
    // Nothing was written into the tenant's keyspace, on either node.
    assert_eq!(dbsize(&mut valkey(&primary).await).await, 0);
    assert_eq!(dbsize(&mut valkey(&p.service("repl").await).await).await, 0);
}

#[tokio::test]
async fn lag_rises_while_the_replica_is_stopped_and_returns_after() {
    let p = Platform::start().await;
    let (primary, replica) = primary_and_replica(&p).await;
    wait_measured(&p, "repl").await;
    let mut writer = valkey(&primary).await;
    let mut admin = p.node_connection(&primary, "keyhaven-admin").await;
    let before = wait_for("a small lag", Duration::from_secs(10), async || {
        lag_ms(&p.service("repl").await).filter(|l| *l <= 50)
    })
    .await;

    let stopped = Stopped::new(p.node_pid(&replica));
    let start = Instant::now();
    let mut batch = 0;
    while start.elapsed() < Duration::from_secs(1) {
        batch += 1;
        burst(&mut writer, &format!("b{batch}"), 500, 100).await;
    }
    let during = wait_for("the lag to rise", Duration::from_secs(10), async || {
        lag_ms(&p.service("repl").await).filter(|l| *l >= 900)
    })
    .await;
    let bytes_during = unacked_bytes(&mut admin).await;
    drop(stopped);

    let after = wait_for(
        "the lag to fall back",
        Duration::from_secs(15),
        async || lag_ms(&p.service("repl").await).filter(|l| *l <= 50),
    )
    .await;
    // Acknowledged within a second or two (the heartbeats keep adding ~100 bytes each).
    let bytes_after = wait_for(
        "the replica to acknowledge",
        Duration::from_secs(15),
        async || {
            let b = unacked_bytes(&mut admin).await;
            (b < 4096).then_some(b)
        },
    )
    .await;
    eprintln!(
        "lag_ms before {before}, stopped {during}, after {after}; unacked bytes stopped {bytes_during}, after {bytes_after}"
    );
    assert!(
        bytes_during > 500 * 100,
        "the writes are unacked: {bytes_during}"
    );
    assert!(during > after && bytes_during > bytes_after);
    // The API's own bytes figure comes back to (near) zero too.
    wait_for("bytes_behind near 0", Duration::from_secs(15), async || {
        let s = p.service("repl").await;
        s["keyhaven_replication"]["bytes_behind"]
            .as_i64()
            .filter(|b| *b < 4096)
    })
    .await;
}

#[tokio::test]
async fn a_tenants_fake_heartbeat_changes_no_lag() {
    let p = Platform::start().await;
    let (primary, replica) = primary_and_replica(&p).await;
    wait_measured(&p, "repl").await;
    let primary_id = service_id(&p, &primary);
    let mut tenant = valkey(&replica).await;

    // Heartbeats stop reaching the replica while its primary is stopped.
    let stopped = Stopped::new(p.node_pid(&primary));
    let before = wait_for("the lag to rise", Duration::from_secs(10), async || {
        lag_ms(&p.service("repl").await).filter(|l| *l >= 500)
    })
    .await;
    // A tenant publishes heartbeats of the right shape on the replica, signed with every
    // key it knows: its own password, and none.
    let password = p.node_password(&replica, "default");
    let now = now_us();
    for fake in [
        payload(&primary_id, now, &password),
        payload(&primary_id, now, ""),
        format!("v1 {primary_id} {now} {}", "0".repeat(64)),
    ] {
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg(channel("local"))
            .arg(&fake)
            .query_async(&mut tenant)
            .await
            .unwrap();
        // Keyhaven's subscriber received it.
        assert_eq!(receivers, 1, "nobody subscribed to {}", channel("local"));
    }
    let after = lag_ms(&p.service("repl").await).unwrap();
    assert!(
        after >= before,
        "a fake heartbeat lowered the lag: {before} → {after}"
    );
    drop(stopped);
    wait_for(
        "the lag to fall back",
        Duration::from_secs(15),
        async || lag_ms(&p.service("repl").await).filter(|l| *l <= 50),
    )
    .await;
}

#[tokio::test]
async fn heartbeats_show_in_commandstats_as_publish() {
    let p = Platform::start().await;
    let (primary, replica) = primary_and_replica(&p).await;
    wait_measured(&p, "repl").await;
    let calls = async |s: &Value| -> i64 {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut valkey(s).await)
            .await
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_publish:calls="))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let (p0, r0, t0) = (calls(&primary).await, calls(&replica).await, Instant::now());
    let (p1, r1) = wait_for(
        "a second of heartbeats",
        Duration::from_secs(10),
        async || {
            if t0.elapsed() < Duration::from_secs(1) {
                return None;
            }
            Some((calls(&primary).await, calls(&replica).await))
        },
    )
    .await;
    let secs = t0.elapsed().as_secs_f64();
    let (per_s_primary, per_s_replica) = ((p1 - p0) as f64 / secs, (r1 - r0) as f64 / secs);
    eprintln!(
        "cmdstat_publish calls per second seen by the tenant: primary {per_s_primary:.1}, replica {per_s_replica:.1}"
    );
    // Documented in docs/metrics.md: ~10 a second on the primary (and on its replicas,
    // which count the replicated PUBLISH).
    assert!(
        (3.0..=12.0).contains(&per_s_primary),
        "{per_s_primary} publishes per second"
    );
}

/// `GET /metrics` with a token, as Prometheus sends it (`Authorization: Bearer`).
async fn scrape(p: &Platform, token: Option<&str>) -> (u16, String) {
    let mut req = p.http.get(p.url("/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The series lines (not `# HELP`/`# TYPE`) of an exposition.
fn series(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

#[tokio::test]
async fn metrics_show_only_the_tokens_projects_and_each_replicas_lag() {
    let p = Platform::start().await;
    primary_and_replica(&p).await;
    wait_measured(&p, "repl").await;
    // Another user, with a project and a service of its own.
    let (status, body) = p
        .call(
            "POST",
            "/v1/user",
            Some(
                serde_json::json!({"email": "b@example.com", "password": "correct horse battery"}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let b = body["token"].as_str().unwrap().to_string();
    let (status, body) = p
        .call_as(
            &b,
            "POST",
            "/v1/project",
            Some(serde_json::json!({"project": "bproj"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = p
        .call_as(
            &b,
            "POST",
            "/v1/project/bproj/service",
            Some(serde_json::json!({"service_name": "bsvc", "service_type": "valkey", "plan": "startup-4"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    assert_eq!(scrape(&p, None).await.0, 403);
    let (status, text_b) = scrape(&p, Some(&b)).await;
    assert_eq!(status, 200, "{text_b}");
    assert!(text_b.contains(r#"project="bproj""#), "{text_b}");
    // Series about the instance itself are for admin tokens only.
    assert!(
        !text_b.contains("keyhaven_api_request") && !text_b.contains("keyhaven_reconciler"),
        "{text_b}"
    );
    for line in series(&text_b) {
        assert!(
            !line.contains(r#"project="default""#) && !line.contains(r#"service="prim""#),
            "B sees a series of another project: {line}"
        );
    }
    // The admin's token: its project's series, the replica's lag, nothing of bproj.
    let text_a = wait_for(
        "the replica's lag in /metrics",
        Duration::from_secs(10),
        async || {
            let (_, t) = scrape(&p, Some(&p.token)).await;
            t.lines()
                .any(|l| {
                    l.starts_with("keyhaven_replica_lag_seconds{")
                        && l.contains(r#"service="repl""#)
                })
                .then_some(t)
        },
    )
    .await;
    for line in series(&text_a) {
        assert!(
            !line.contains("bproj") && !line.contains("bsvc"),
            "the admin sees a series of B's project: {line}"
        );
    }
    for name in [
        r#"keyhaven_service_state{project="default",service="repl",primary="prim",state="RUNNING"} 1"#,
        r#"keyhaven_service_role{project="default",service="prim",primary="prim",role="primary"} 1"#,
        r#"keyhaven_replica_link_up{project="default",service="repl",primary="prim"} 1"#,
        r#"keyhaven_replica_lag_bytes{project="default",service="repl",primary="prim"}"#,
        r#"keyhaven_service_memory_max_bytes{project="default",service="prim",primary="prim"}"#,
        r#"keyhaven_service_keys{project="default",service="prim",primary="prim"}"#,
        r#"keyhaven_service_connected_clients{project="default",service="prim",primary="prim"}"#,
        r#"keyhaven_service_commands_processed_total{project="default",service="repl",primary="prim"}"#,
        r#"keyhaven_api_request_duration_seconds_count{method="GET",route="/v1/project/{project}/service/{service}",status="200"}"#,
        r#"keyhaven_api_request_duration_seconds_count{method="POST",route="/v1/project/{project}/service",status="200"}"#,
        r#"keyhaven_reconciler_activations_total{outcome="ok"}"#,
        "keyhaven_reconciler_errors_total ",
        "keyhaven_reconciler_activation_duration_seconds_count ",
        r#"keyhaven_replica_heartbeat_delay_seconds_count{project="default",service="repl",primary="prim"}"#,
        r#"keyhaven_replica_heartbeat_delay_seconds_bucket{le="+Inf",project="default",service="repl",primary="prim"}"#,
        r#"keyhaven_primary_full_syncs_total{project="default",service="prim",primary="prim"}"#,
        r#"keyhaven_primary_partial_syncs_total{project="default",service="prim",primary="prim"}"#,
    ] {
        assert!(text_a.contains(name), "no {name} in\n{text_a}");
    }
    // Every metric family has its help text.
    let families = text_a.lines().filter(|l| l.starts_with("# TYPE")).count();
    let helps = text_a.lines().filter(|l| l.starts_with("# HELP")).count();
    assert!(families >= 10 && helps == families, "{text_a}");

    // Promotions by outcome, in the project's series only.
    let link = p.link_id("repl").await;
    let (status, body) = p.delete_link(&link).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = p
        .call_as(&b, "DELETE", "/v1/project/bproj/integration/nope", None)
        .await;
    assert_eq!(status, 404);
    let (_, text_a) = scrape(&p, Some(&p.token)).await;
    assert!(
        text_a.contains(r#"keyhaven_promotions_total{project="default",outcome="promoted"} 1"#),
        "{text_a}"
    );
    assert!(!text_a.contains("bproj"), "{text_a}");
    for name in [
        r#"keyhaven_promotion_write_pause_seconds_count{project="default"} 1"#,
        r#"keyhaven_promotion_request_duration_seconds_count{project="default"} 1"#,
    ] {
        assert!(text_a.contains(name), "no {name} in\n{text_a}");
    }
    let (_, text_b) = scrape(&p, Some(&b)).await;
    assert!(
        text_b.contains(
            r#"keyhaven_promotions_total{project="bproj",outcome="integration_not_found"} 1"#
        ),
        "{text_b}"
    );
}

/// A Prometheus server of this test's own, killed on drop.
struct Prometheus {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Debian's `prometheus` (scripts/setup installs it), on a free loopback port, scraping
    /// `target` (`host:port`) every second with `token`.
    fn start(target: &str, token: &str) -> Prometheus {
        let bin = std::env::var_os("PATH")
            .and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join("prometheus"))
                    .find(|p| p.is_file())
            })
            .expect("prometheus is missing: run scripts/setup (Debian's prometheus package)");
        let dir = tempfile::Builder::new()
            .prefix("keyhaven-prometheus")
            .tempdir()
            .unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, token).unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: keyhaven\n    authorization:\n      credentials_file: {}\n    static_configs:\n      - targets: [\"{target}\"]\n",
                token_file.display()
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = std::process::Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    /// The samples of an instant query through Prometheus's HTTP API.
    async fn query(&self, http: &reqwest::Client, promql: &str) -> Option<Vec<Value>> {
        let resp = http
            .get(format!(
                "http://127.0.0.1:{}/api/v1/query?query={}",
                self.port,
                percent_encode(promql)
            ))
            .send()
            .await
            .ok()?;
        let body: Value = resp.json().await.ok()?;
        (body["status"] == "success").then(|| body["data"]["result"].as_array().cloned())?
    }
}

/// A URL query value, percent-encoded (this reqwest is built without its `query` feature).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_real_prometheus_scrapes_a_replicas_lag_with_a_token() {
    let p = Platform::start().await;
    primary_and_replica(&p).await;
    wait_measured(&p, "repl").await;
    let target = p.base.trim_start_matches("http://").to_string();
    let prometheus = Prometheus::start(&target, &p.token);
    let samples = wait_for(
        "Prometheus to have scraped the replica's lag",
        Duration::from_secs(60),
        async || {
            prometheus
                .query(&p.http, r#"keyhaven_replica_lag_seconds{service="repl"}"#)
                .await
                .filter(|r| !r.is_empty())
        },
    )
    .await;
    let sample = &samples[0];
    assert_eq!(sample["metric"]["project"], "default", "{sample}");
    assert_eq!(sample["metric"]["primary"], "prim", "{sample}");
    let seconds: f64 = sample["value"][1].as_str().unwrap().parse().unwrap();
    eprintln!("Prometheus: keyhaven_replica_lag_seconds of repl = {seconds}");
    assert!((0.0..1.0).contains(&seconds), "{sample}");
    // The scrape itself is healthy (it authenticated).
    let up = prometheus
        .query(&p.http, r#"up{job="keyhaven"}"#)
        .await
        .unwrap();
    assert_eq!(up[0]["value"][1], "1", "{up:?}");
}
