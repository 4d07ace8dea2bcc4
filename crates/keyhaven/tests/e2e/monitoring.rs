//! The monitoring files in the repository (`monitoring/grafana-dashboard.json`,
//! `monitoring/alerts.yml`): every metric they use is documented in `docs/metrics.md` and
//! exported by a running Keyhaven's `/metrics`. Debian has no Grafana, so this is the
//! dashboard's check; the alert rules are also checked and unit-tested by promtool in
//! `.ci/run`.

use crate::harness::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

const DASHBOARD: &str = "monitoring/grafana-dashboard.json";
const ALERTS: &str = "monitoring/alerts.yml";

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path))
        .unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Every `keyhaven_[a-z_]+` word of `text` (sample names, as PromQL spells them).
fn metric_names(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while let Some(at) = text[i..].find("keyhaven_") {
        let start = i + at;
        let mut end = start + "keyhaven_".len();
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        let word_start = start == 0 || {
            let b = bytes[start - 1];
            !(b.is_ascii_alphanumeric() || b == b'_')
        };
        if word_start {
            names.insert(text[start..end].trim_end_matches('_').to_string());
        }
        i = end;
    }
    names
}

/// The family a sample name belongs to: the name itself, or the name without the suffix
/// that OpenMetrics adds to a counter (`_total`) or a histogram (`_bucket`, `_sum`, `_count`).
fn family_of(name: &str, families: &BTreeSet<String>) -> Option<String> {
    if families.contains(name) {
        return Some(name.to_string());
    }
    ["_total", "_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|s| name.strip_suffix(s))
        .find(|base| families.contains(*base))
        .map(str::to_string)
}

/// The metric families of docs/metrics.md's table (`| `keyhaven_...` | type | ...`).
fn documented() -> BTreeSet<String> {
    read("docs/metrics.md")
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("keyhaven_"))
        .map(str::to_string)
        .collect()
}

/// The PromQL expressions of the dashboard's panels.
fn dashboard_exprs() -> Vec<String> {
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD))
        .unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"));
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut exprs = Vec::new();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let targets = panel["targets"].as_array();
        assert!(
            targets.is_some_and(|t| !t.is_empty()),
            "panel {} has no query",
            panel["title"]
        );
        for t in targets.unwrap() {
            let expr = t["expr"].as_str().unwrap_or_else(|| panic!("{t}"));
            exprs.push(expr.to_string());
        }
    }
    assert!(exprs.len() >= 8, "{exprs:?}");
    exprs
}

/// Every metric the dashboard and the alert rules use.
fn used() -> BTreeSet<String> {
    let mut names = metric_names(&dashboard_exprs().join("\n"));
    names.extend(metric_names(&read(ALERTS)));
    names
}

#[test]
fn the_dashboard_and_the_alerts_use_only_documented_metrics() {
    let docs = documented();
    assert!(docs.len() >= 10, "docs/metrics.md lists {docs:?}");
    let used = used();
    for needed in [
        "keyhaven_service_state",
        "keyhaven_replica_lag_seconds",
        "keyhaven_replica_lag_bytes",
        "keyhaven_replica_link_up",
        "keyhaven_service_memory_used_bytes",
        "keyhaven_service_memory_max_bytes",
        "keyhaven_promotions_total",
    ] {
        assert!(
            used.contains(needed),
            "the monitoring files never use {needed}"
        );
    }
    for name in &used {
        assert!(
            family_of(name, &docs).is_some(),
            "{name} is used by {DASHBOARD} or {ALERTS} but not listed in docs/metrics.md"
        );
    }
    // The whole file is scanned, dashboard text included: no stray name slips past.
    for name in metric_names(&read(DASHBOARD)) {
        assert!(
            family_of(&name, &docs).is_some(),
            "{DASHBOARD} names {name}"
        );
    }
}

/// The dashboard's queries are valid PromQL: promtool checks them as recording rules, with
/// Grafana's variables replaced by values.
#[test]
fn the_dashboards_queries_parse() {
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in dashboard_exprs().iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "1m")
            .replace("$__range", "1h")
            .replace("$project", ".*")
            .replace("$service", ".*");
        assert!(!expr.contains('$'), "an unknown variable in {expr}");
        rules.push_str(&format!(
            "      - record: dashboard:panel{i}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    let file = dir.path().join("dashboard-rules.yml");
    std::fs::write(&file, &rules).unwrap();
    let out = std::process::Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&file)
        .output()
        .expect("promtool is missing: run scripts/setup (Debian's prometheus package)");
    assert!(
        out.status.success(),
        "{}{}\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `GET /metrics` with a token, as Prometheus sends it.
async fn scrape(p: &Platform) -> String {
    let resp = p
        .http
        .get(p.url("/metrics"))
        .bearer_auth(&p.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.text().await.unwrap()
}

/// The families (`# TYPE name kind`) and the sample names of an exposition.
fn exported(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let families = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    (families, samples)
}

#[tokio::test]
async fn every_metric_of_the_dashboard_and_the_alerts_is_exported() {
    let p = Platform::start().await;
    primary_and_replica(&p).await;
    let used = used();
    // A primary and its replica, once the replica's lag is measured: every per-service and
    // per-replica series the files use (promotions are counted from the first one).
    let before = wait_for(
        "the series of the primary and its replica in /metrics",
        Duration::from_secs(20),
        async || {
            let text = scrape(&p).await;
            let samples = exported(&text).1;
            used.iter()
                .filter(|n| !n.starts_with("keyhaven_promotions"))
                .all(|n| samples.contains(n))
                .then_some(text)
        },
    )
    .await;
    // Promotions are counted from the first one: promote the replica.
    let link = p.link_id("repl").await;
    let (status, body) = p.delete_link(&link).await;
    assert_eq!(status, 200, "{body}");
    let after = scrape(&p).await;

    let (mut families, mut samples) = exported(&before);
    let (f, s) = exported(&after);
    families.extend(f);
    samples.extend(s);
    let docs = documented();
    for name in &used {
        let family = family_of(name, &families)
            .unwrap_or_else(|| panic!("{name} is not exported by /metrics:\n{before}\n{after}"));
        assert!(
            samples.contains(name),
            "{name} (family {family}) has no sample in /metrics:\n{before}\n{after}"
        );
        assert!(docs.contains(&family), "{family} is not in docs/metrics.md");
    }
    eprintln!(
        "monitoring files use {} metrics, all exported: {used:?}",
        used.len()
    );
}
