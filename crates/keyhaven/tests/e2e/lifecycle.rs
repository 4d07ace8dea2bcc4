//! Supervision and restarts: a killed valkey-server comes back with its data, and a
//! restarted Keyhaven adopts the nodes that kept running.

use crate::harness::*;
use redis::AsyncCommands;
use std::time::{Duration, Instant};

/// Writes `n` keys and waits until they are fsynced to the node's AOF (WAITAOF), so a
/// kill -9 afterwards must not lose them.
async fn write_durably(con: &mut redis::aio::MultiplexedConnection, n: usize) {
    for i in 0..n {
        let _: () = con.set(format!("key:{i}"), i).await.unwrap();
    }
    wait_aof(con).await;
}

async fn assert_keys(con: &mut redis::aio::MultiplexedConnection, n: usize) {
    for i in 0..n {
        let v: Option<usize> = con.get(format!("key:{i}")).await.unwrap();
        assert_eq!(v, Some(i), "key:{i} lost");
    }
}

/// Waits until something new connects to the node (the reconciler's observation does,
/// once per activation) and returns when it was seen.
async fn wait_for_activation(con: &mut redis::aio::MultiplexedConnection) -> Instant {
    async fn connections(con: &mut redis::aio::MultiplexedConnection) -> i64 {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(con)
            .await
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
    let before = connections(con).await;
    wait_for(
        "a reconciler activation",
        Duration::from_secs(5),
        async || (connections(con).await > before).then(Instant::now),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_valkey_server_is_restarted_with_its_data() {
    let p = Platform::start().await;
    p.create("sturdy", "startup-4", None).await;
    let s = p.wait_running("sturdy").await;
    let mut con = valkey(&s).await;
    write_durably(&mut con, 100).await;

    let pid = p.node_pid(&s);
    let port = u64::from(node_port(&s));
    let admin = format!(
        "redis://keyhaven-admin:{}@127.0.0.1:{port}/",
        p.node_password(&s, "keyhaven-admin")
    );
    // Kill right after an activation of the idle reconciler (each one connects to the node
    // to observe it), so a restart that waited for the next tick would take its whole 1 s
    // idle period.
    let mut watch = p.node_connection(&s, "keyhaven-admin").await;
    // Keyhaven's heartbeat publisher opens one connection of its own, up to a second after
    // the service is created; once it publishes, every new connection is an activation.
    wait_for(
        "heartbeats on the node",
        Duration::from_secs(10),
        async || {
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(&mut watch)
                .await
                .unwrap();
            info.contains("cmdstat_publish:").then_some(())
        },
    )
    .await;
    let activation = wait_for_activation(&mut watch).await;
    let next = wait_for_activation(&mut watch).await;
    assert!(
        next - activation > Duration::from_millis(500),
        "the reconciler is not idle: activations {:?} apart",
        next - activation
    );
    let killed = Instant::now();
    kill9(pid);
    // Timed from the kill to the first PING a new valkey-server answers on the port: the
    // reaper wakes the reconciler at once, so this is far below its idle period.
    let back = wait_for(
        "a new valkey-server to answer",
        Duration::from_secs(10),
        async || {
            let attempt = async {
                let mut con = redis::Client::open(admin.as_str())
                    .ok()?
                    .get_multiplexed_async_connection()
                    .await
                    .ok()?;
                let info: String = redis::cmd("INFO")
                    .arg("server")
                    .query_async(&mut con)
                    .await
                    .ok()?;
                let answering: u32 = info
                    .lines()
                    .find_map(|l| l.strip_prefix("process_id:"))?
                    .trim()
                    .parse()
                    .ok()?;
                let _: String = redis::cmd("PING").query_async(&mut con).await.ok()?;
                (answering != pid).then(|| killed.elapsed())
            };
            tokio::time::timeout(Duration::from_millis(200), attempt)
                .await
                .ok()
                .flatten()
        },
    )
    .await;
    eprintln!(
        "idle activations {:?} apart; kill -9 to PING answered by the new valkey-server: {back:?}",
        next - activation
    );
    assert!(
        back < Duration::from_millis(900),
        "the node answered {back:?} after the kill: the restart waited for a timer"
    );
    wait_restarted(&p, "sturdy", pid).await;
    let s = p.wait_running("sturdy").await;
    let mut con = valkey(&s).await;
    assert_keys(&mut con, 100).await;
    assert_eq!(p.running_nodes().len(), 1, "duplicate or orphan nodes");
}

/// The admin's tokens, by the `token_prefix` `GET /v1/access_token` lists; the one of the
/// request is marked current.
async fn admin_tokens(p: &Platform) -> Vec<String> {
    let (status, body) = p.call("GET", "/v1/access_token", None).await;
    assert_eq!(status, 200, "{body}");
    let tokens = body["tokens"].as_array().unwrap();
    assert!(
        tokens
            .iter()
            .any(|t| t["currently_active"] == true && t["token_prefix"] == p.token[..10]),
        "{body}"
    );
    tokens
        .iter()
        .map(|t| t["token_prefix"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_keyhaven_adopts_running_services_with_their_data() {
    let mut p = Platform::start().await;
    p.create("one", "startup-4", None).await;
    p.create("two", "hobbyist", None).await;
    let one = p.wait_running("one").await;
    let two = p.wait_running("two").await;
    let mut con = valkey(&one).await;
    write_durably(&mut con, 50).await;
    let pids = (p.node_pid(&one), p.node_pid(&two));
    let admin_token_file = std::fs::read(p.data().join("admin-token")).unwrap();
    let tokens_before = admin_tokens(&p).await;
    assert_eq!(tokens_before, [p.token[..10].to_string()]);

    p.stop_server().await;
    // The nodes outlive the control plane and keep serving.
    assert!(pid_alive(pids.0) && pid_alive(pids.1));
    assert_keys(&mut con, 50).await;

    p.start_server().await;
    // No second admin token: the admin still has exactly its one token, and the file the
    // first start wrote is unchanged.
    assert_eq!(
        admin_tokens(&p).await,
        tokens_before,
        "a second admin token was minted"
    );
    assert_eq!(
        std::fs::read(p.data().join("admin-token")).unwrap(),
        admin_token_file,
        "the admin-token file changed"
    );
    assert_eq!(
        p.server_log().matches("wrote the admin token").count(),
        1,
        "a second admin token was announced"
    );
    let one = p.wait_running("one").await;
    p.wait_running("two").await;
    // Adopted, not restarted: same processes, no duplicates.
    assert_eq!(p.node_pid(&one), pids.0);
    assert_eq!(p.node_pid(&p.service("two").await), pids.1);
    let mut running = p.running_nodes();
    running.sort();
    let mut expected = vec![pids.0, pids.1];
    expected.sort();
    assert_eq!(running, expected);
    let mut con = valkey(&one).await;
    assert_keys(&mut con, 50).await;

    // And adopted nodes are still supervised.
    kill9(pids.1);
    wait_restarted(&p, "two", pids.1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keyhaven_down_stops_every_node_and_a_second_server_is_refused() {
    let mut p = Platform::start().await;
    p.create("a", "hobbyist", None).await;
    p.wait_running("a").await;

    let second = std::process::Command::new(BIN)
        .arg("server")
        .args(["--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(p.data())
        .arg("--valkey-server")
        .arg(valkey_server())
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already runs"),
        "{second:?}"
    );

    p.stop_server().await;
    assert_eq!(p.running_nodes().len(), 1);
    let out = std::process::Command::new(BIN)
        .arg("down")
        .arg("--data-dir")
        .arg(p.data())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(p.running_nodes().is_empty());
}
