//! Supervision and restarts: a killed valkey-server comes back with its data, and a
//! restarted Keyhaven adopts the nodes that kept running.

use crate::harness::*;
use redis::AsyncCommands;

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

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_valkey_server_is_restarted_with_its_data() {
    let p = Platform::start().await;
    p.create("sturdy", "startup-4", None).await;
    let s = p.wait_running("sturdy").await;
    let mut con = valkey(&s).await;
    write_durably(&mut con, 100).await;

    let pid = p.node_pid(&s);
    kill9(pid);
    wait_restarted(&p, "sturdy", pid).await;
    let s = p.wait_running("sturdy").await;
    let mut con = valkey(&s).await;
    assert_keys(&mut con, 100).await;
    assert_eq!(p.running_nodes().len(), 1, "duplicate or orphan nodes");
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

    p.stop_server().await;
    // The nodes outlive the control plane and keep serving.
    assert!(pid_alive(pids.0) && pid_alive(pids.1));
    assert_keys(&mut con, 50).await;

    p.start_server().await;
    assert_eq!(
        p.server_log().matches("Admin token (shown once").count(),
        1,
        "a second admin token was minted"
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
