//! Several hosts on one PostgreSQL: each host is a loopback address of its own (127.0.0.2,
//! 127.0.0.3), where its `keyhaven server` and its valkey-servers listen, serving one cloud.
//! Any instance answers any request; only a cloud's own instance runs its nodes.

use crate::harness::*;
use crate::pg;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const EAST: (&str, &str) = ("east", "127.0.0.2");
const WEST: (&str, &str) = ("west", "127.0.0.3");

async fn two_hosts() -> (Platform, Platform) {
    let a = Platform::first_host(EAST.0, EAST.1).await;
    let b = Platform::another_host(&a, WEST.0, WEST.1).await;
    (a, b)
}

/// Creates a service in `cloud` through `p`'s API.
async fn try_create_in(
    p: &Platform,
    name: &str,
    cloud: &str,
    replica_of: Option<&str>,
) -> (u16, Value) {
    let integrations = match replica_of {
        Some(s) => json!([{"integration_type": "read_replica", "source_service": s}]),
        None => json!([]),
    };
    p.call(
        "POST",
        "/v1/project/default/service",
        Some(
            json!({"service_name": name, "service_type": "valkey", "plan": "startup-4",
                    "cloud": cloud, "service_integrations": integrations}),
        ),
    )
    .await
}

async fn create_in(p: &Platform, name: &str, cloud: &str, replica_of: Option<&str>) -> Value {
    let (status, body) = try_create_in(p, name, cloud, replica_of).await;
    assert_eq!(status, 200, "create {name} in {cloud}: {body}");
    p.remember_ca(&body["service"]).await;
    body["service"].clone()
}

fn host_of(service: &Value) -> String {
    service["service_uri_params"]["host"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The clouds as a token holder sees them: name → (alive, host).
async fn clouds(p: &Platform) -> Vec<(String, bool, String)> {
    let (status, body) = p.call("GET", "/v1/project/default/clouds", None).await;
    assert_eq!(status, 200, "{body}");
    body["clouds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["cloud_name"].as_str().unwrap().to_string(),
                c["keyhaven_alive"].as_bool().unwrap(),
                c["keyhaven_host"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Waits until `p` lists `cloud` as lost (its heartbeat older than the bound).
async fn wait_lost(p: &Platform, cloud: &str) {
    wait_for(
        &format!("cloud {cloud} lost"),
        Duration::from_secs(30),
        async || {
            clouds(p)
                .await
                .iter()
                .any(|(name, alive, _)| name == cloud && !alive)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_in_another_cloud_replicates_across_hosts_and_is_promoted_through_either_api() {
    let (a, b) = two_hosts().await;
    // Every instance lists every cloud (the anonymous list from its copy, refreshed twice
    // a second); addresses only for a token.
    let open: Value = wait_for("A to list B's cloud", Duration::from_secs(5), async || {
        let open: Value = a
            .http
            .get(a.url("/v1/clouds"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let names: Vec<&str> = open["clouds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["cloud_name"].as_str().unwrap())
            .collect();
        (names == ["east", "west"]).then_some(open)
    })
    .await;
    for c in open["clouds"].as_array().unwrap() {
        assert!(
            c.get("keyhaven_host").is_none() && !c.to_string().contains("127.0.0."),
            "an anonymous caller sees a host: {open}"
        );
    }
    assert_eq!(
        clouds(&b).await,
        [
            ("east".into(), true, EAST.1.into()),
            ("west".into(), true, WEST.1.into())
        ]
    );

    // The primary through A's API in A's cloud, its replica through B's API in B's cloud.
    let primary = create_in(&a, "orders", "east", None).await;
    assert_eq!(host_of(&primary), EAST.1);
    let replica = create_in(&b, "orders-west", "west", Some("orders")).await;
    assert_eq!(host_of(&replica), WEST.1);
    a.wait_running("orders").await;
    // Either API shows the replica RUNNING: B runs it, A reads what B recorded.
    a.wait_running("orders-west").await;
    let (_, listed) = b
        .call("GET", "/v1/project/default/service/orders", None)
        .await;
    assert!(
        listed["service"]["connection_info"]["valkey_slave"][0]
            .as_str()
            .unwrap()
            .contains(&format!("@{}:", WEST.1)),
        "{listed}"
    );
    // Each instance runs its own cloud's node and no other.
    assert_eq!(a.running_nodes().len(), 1);
    assert_eq!(b.running_nodes().len(), 1);

    let mut p = valkey(&primary).await;
    for i in 0..100 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query_async(&mut p)
            .await
            .unwrap();
    }
    let mut r = valkey(&replica).await;
    wait_dbsize(&mut r, 100).await;

    // A request claiming to be forwarded is never run by an instance that does not run
    // the node: refused, and nothing changed.
    let link = a.link_id("orders-west").await;
    let spoofed = a
        .http
        .delete(a.url(&format!("/v1/project/default/integration/{link}")))
        .header("authorization", format!("aivenv1 {}", a.token))
        .header("x-keyhaven-forwarded", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status().as_u16(), 503);
    let body: Value = spoofed.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["error_code"], "cloud_unavailable",
        "{body}"
    );
    assert_eq!(a.link_id("orders-west").await, link, "the link changed");
    assert_eq!(role(&mut r).await, "slave");

    // Promoted through A's API: A passes it on to B, whose runtime holds the replica.
    let (status, body) = a.delete_link(&link).await;
    assert_eq!(status, 200, "{body}");
    let promoted = a.wait_running("orders-west").await;
    assert_eq!(promoted["keyhaven_role"], "primary", "{promoted}");
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg(1)
        .query_async(&mut r)
        .await
        .expect("the promoted replica takes writes");
    assert_eq!(dbsize(&mut r).await, 101);
    assert_eq!(role(&mut r).await, "master");
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_concurrent_replica_creates_over_two_instances_make_exactly_five() {
    let (a, b) = two_hosts().await;
    create_in(&a, "hub", "east", None).await;
    a.wait_running("hub").await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut tasks = Vec::new();
    for i in 0..30 {
        let (p, cloud) = if i % 2 == 0 {
            (a.clone(), "east")
        } else {
            (b.clone(), "west")
        };
        tasks.push(tokio::spawn(async move {
            try_create_in(&p, &format!("r{i}"), cloud, Some("hub")).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => ok += 1,
            409 => assert_eq!(
                body["errors"][0]["error_code"], "replica_limit_reached",
                "{body}"
            ),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok, 5, "the replica limit did not hold across instances");
    let (_, list) = b.call("GET", "/v1/project/default/service", None).await;
    let services = list["services"].as_array().unwrap();
    assert_eq!(services.len(), 6, "{list}");
    for s in services {
        a.wait_running(s["service_name"].as_str().unwrap()).await;
    }
    let east = services
        .iter()
        .filter(|s| s["cloud_name"] == "east")
        .count();
    assert_eq!(a.running_nodes().len(), east, "A runs exactly east's nodes");
    assert_eq!(
        b.running_nodes().len(),
        6 - east,
        "B runs exactly west's nodes"
    );
}

/// A project's CA is created on first need by whichever instance is asked: two instances
/// asked at once, several times each, all answer the same certificate, and one is stored.
#[tokio::test(flavor = "multi_thread")]
async fn two_instances_asked_at_once_for_a_projects_ca_make_one() {
    let (a, b) = two_hosts().await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let p = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            p.call("GET", "/v1/project/default/kms/ca", None).await
        }));
    }
    let mut pems = std::collections::BTreeSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        pems.insert(body["certificate"].as_str().unwrap().to_string());
    }
    assert_eq!(pems.len(), 1, "two CAs were answered: {pems:?}");
    let count = pg::shared().psql_in(
        a.database_url.as_deref().unwrap(),
        "SELECT count(*) FROM project_cas",
    );
    assert_eq!(count.trim(), "1");
    let created = a.server_log().matches("project CA created").count()
        + b.server_log().matches("project CA created").count();
    assert_eq!(created, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_restarted_adopts_only_its_own_nodes() {
    let (a, mut b) = two_hosts().await;
    let east = create_in(&b, "e1", "east", None).await;
    let west = create_in(&a, "w1", "west", None).await;
    a.wait_running("e1").await;
    a.wait_running("w1").await;
    let (east_pid, west_pid) = (a.node_pid(&east), b.node_pid(&west));

    kill9(b.server_pid());
    b.wait_server_gone().await;
    b.start_server().await;
    // B's node is RUNNING again under the restarted B, adopted, not restarted.
    b.wait_running("w1").await;
    assert_eq!(
        b.node_pid(&west),
        west_pid,
        "B restarted its node instead of adopting it"
    );
    assert_eq!(a.node_pid(&east), east_pid, "A's node was touched");
    assert_eq!(b.running_nodes(), vec![west_pid]);
    assert_eq!(a.running_nodes(), vec![east_pid]);
    assert_eq!(
        std::fs::read_dir(b.data().join("nodes")).unwrap().count(),
        1,
        "B made a directory for A's node"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn losing_a_host_lets_its_replica_elsewhere_be_promoted_with_every_replicated_write() {
    let (mut a, b) = two_hosts().await;
    let primary = create_in(&a, "pay", "east", None).await;
    let replica = create_in(&a, "pay-west", "west", Some("pay")).await;
    b.wait_running("pay-west").await;

    // Writes acknowledged by the primary and by the replica (WAIT) before A is lost.
    let mut p = valkey(&primary).await;
    for i in 0..500 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query_async(&mut p)
            .await
            .unwrap();
    }
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut p)
        .await
        .unwrap();
    assert_eq!(acked, 1, "the replica did not acknowledge the writes");

    // Host A is lost: its instance killed, its valkey-server with it.
    let old_primary_pid = a.node_pid(&primary);
    kill9(a.server_pid());
    a.wait_server_gone().await;
    kill9(old_primary_pid);

    // B sees A's cloud lost once its heartbeat expired, and says so on A's services.
    wait_lost(&b, "east").await;
    let shown = b.service("pay").await;
    assert_eq!(shown["state"], "REBUILDING", "{shown}");
    let reason = shown["keyhaven_replication"]["error"].as_str().unwrap();
    assert!(reason.contains("cloud 'east' is lost"), "{reason}");

    // Promoted through B's API, at once: the primary is down.
    let link = b.link_id("pay-west").await;
    let started = std::time::Instant::now();
    let (status, body) = b.delete_link(&link).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let promoted = b.wait_running("pay-west").await;
    assert_eq!(promoted["keyhaven_role"], "primary");
    assert!(
        promoted["keyhaven_replication"]["lost_bytes_estimate"].is_i64(),
        "the gap was not recorded: {promoted}"
    );
    let mut r = valkey(&replica).await;
    assert_eq!(dbsize(&mut r).await, 500, "a replicated write is missing");
    let _: () = redis::cmd("SET")
        .arg("new")
        .arg(1)
        .query_async(&mut r)
        .await
        .expect("the promoted replica takes writes");

    // A comes back: its old primary is adopted, independent, and never re-attached.
    a.start_server().await;
    a.wait_running("pay").await;
    let mut old = valkey(&primary).await;
    assert_eq!(role(&mut old).await, "master");
    assert_eq!(dbsize(&mut old).await, 500);
    let _: () = redis::cmd("SET")
        .arg("old-side")
        .arg(1)
        .query_async(&mut old)
        .await
        .unwrap();
    let exists: i64 = redis::cmd("EXISTS")
        .arg("old-side")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(exists, 0, "the promoted node follows the old primary again");
    let (_, list) = a
        .call("GET", "/v1/project/default/service/pay/integration", None)
        .await;
    assert_eq!(list["service_integrations"], json!([]), "{list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_live_instance_for_one_cloud_is_refused() {
    let a = Platform::first_host(EAST.0, EAST.1).await;
    let twin = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(BIN)
        .arg("server")
        .args(["--listen", "127.0.0.4:0", "--cloud", "east"])
        .args([
            "--advertise-host",
            "127.0.0.4",
            "--valkey-bind",
            "127.0.0.4",
        ])
        .args(["--database-url", a.database_url.as_deref().unwrap()])
        .arg("--data-dir")
        .arg(twin.path())
        .arg("--valkey-server")
        .arg(valkey_server())
        .output()
        .unwrap();
    assert!(!status.status.success());
    let err = String::from_utf8_lossy(&status.stderr);
    assert!(
        err.contains("Cloud 'east' is served by a running Keyhaven at http://127.0.0.2:"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn while_postgresql_restarts_the_api_answers_503_and_nothing_is_half_made() {
    let cluster = pg::OwnedCluster(pg::Cluster::start());
    cluster.0.psql("CREATE DATABASE keyhaven");
    let mut p = Platform::unstarted(&[]);
    p.database_url = Some(cluster.0.url("keyhaven"));
    p.boot().await;
    p.create("steady", "startup-4", None).await;
    let steady = p.wait_running("steady").await;

    cluster.0.stop();
    let (status, body) = p.try_create("during", "startup-4", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["errors"][0]["error_code"], "storage_unavailable",
        "{body}"
    );
    let (status, body) = p.call("GET", "/v1/project/default/service", None).await;
    assert_eq!(status, 503, "{body}");
    // The nodes serve on without their control plane's database.
    let mut con = valkey(&steady).await;
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg(1)
        .query_async(&mut con)
        .await
        .unwrap();

    cluster.0.restart();
    wait_for("the API back", Duration::from_secs(30), async || {
        let (status, _) = p.call("GET", "/v1/project/default/service", None).await;
        (status == 200).then_some(())
    })
    .await;
    let (_, list) = p.call("GET", "/v1/project/default/service", None).await;
    let names: Vec<&str> = list["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["steady"], "a half-made service: {list}");
    p.create("during", "startup-4", None).await;
    p.wait_running("during").await;
    assert_eq!(p.running_nodes().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_hosts_primary_that_only_times_out_is_taken_for_alive() {
    let (mut a, b) = two_hosts().await;
    let primary = create_in(&a, "slow", "east", None).await;
    create_in(&a, "slow-west", "west", Some("slow")).await;
    b.wait_running("slow-west").await;
    let mut p = valkey(&primary).await;
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg(1)
        .query_async(&mut p)
        .await
        .unwrap();
    // A's instance is gone; its primary still runs but is frozen: it times out.
    let node = a.node_pid(&primary);
    kill9(a.server_pid());
    a.wait_server_gone().await;
    signal(node, "-STOP");
    wait_lost(&b, "east").await;
    let link = b.link_id("slow-west").await;
    let (status, body) = b.delete_link(&link).await;
    signal(node, "-CONT");
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["errors"][0]["error_code"], "primary_unresponsive",
        "{body}"
    );
    // Thawed, it answers: the promotion catches up with it, losing nothing.
    let (status, body) = b.delete_link(&link).await;
    assert_eq!(status, 200, "{body}");
    let promoted = b.wait_running("slow-west").await;
    assert!(
        promoted["keyhaven_replication"]["lost_bytes_estimate"].is_null(),
        "a caught-up promotion recorded a loss: {promoted}"
    );
    let mut r = valkey(&promoted).await;
    let v: Option<i64> = redis::cmd("GET")
        .arg("k")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(v, Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_whose_cloud_was_taken_over_stops_acting_and_says_so() {
    let a = Platform::first_host(EAST.0, EAST.1).await;
    wait_for("A ready", Duration::from_secs(10), async || {
        let (status, _) = a.call("GET", "/readyz", None).await;
        (status == 200).then_some(())
    })
    .await;
    // Another start registered the cloud (as after a partition): A's heartbeat no longer
    // matches, and A fences itself.
    let url = a.database_url.clone().unwrap();
    pg::shared().psql_in(
        &url,
        "UPDATE clouds SET instance_id = 'elsewhere:/data/other-start' WHERE name = 'east'",
    );
    let reason = wait_for("A fenced", Duration::from_secs(10), async || {
        let (status, body) = a.call("GET", "/readyz", None).await;
        (status == 503).then(|| body["message"].as_str().unwrap_or_default().to_string())
    })
    .await;
    assert!(reason.contains("took cloud 'east' over"), "{reason}");
    assert!(
        a.server_log()
            .contains("another Keyhaven took this cloud over")
    );
}
