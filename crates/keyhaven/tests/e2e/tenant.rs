//! What a tenant can do with its `default` user on a node: every command that would let it
//! change replication, persistence, users or the server's life, reach other hosts, or
//! interfere with a promotion is refused, on new nodes and on nodes configured before.

use crate::harness::*;
use std::time::Duration;

/// Each denied command with arguments that would be valid if it were allowed. The list is
/// the test's own, not the code's: dropping a command from Keyhaven's list fails here.
fn denied(api_port: u16) -> Vec<Vec<String>> {
    let migrate = format!("MIGRATE 127.0.0.1 {api_port} key 0 1000");
    [
        "REPLICAOF NO ONE",
        "SLAVEOF NO ONE",
        "FAILOVER",
        "CONFIG GET maxmemory",
        "ACL LIST",
        "CLUSTER INFO",
        "SHUTDOWN NOSAVE",
        "SAVE",
        "BGSAVE",
        "BGREWRITEAOF",
        "LASTSAVE",
        "MONITOR",
        "DEBUG SLEEP 0",
        "MODULE LIST",
        "SYNC",
        "PSYNC ? -1",
        "REPLCONF listening-port 1",
        migrate.as_str(),
        "CLIENT PAUSE 10000 WRITE",
        "CLIENT UNPAUSE",
        "CLIENT NO-EVICT on",
    ]
    .iter()
    .map(|c| c.split_whitespace().map(str::to_string).collect())
    .collect()
}

async fn assert_all_denied(con: &mut redis::aio::MultiplexedConnection, api_port: u16) {
    for command in denied(api_port) {
        let mut cmd = redis::cmd(&command[0]);
        for arg in &command[1..] {
            cmd.arg(arg);
        }
        let result: redis::RedisResult<redis::Value> = cmd.query_async(con).await;
        let err = result.expect_err(&format!("{command:?} was allowed"));
        // DEBUG and MODULE are also disabled server-wide, which Valkey checks first.
        let server_wide = matches!(command[0].as_str(), "DEBUG" | "MODULE")
            && err.to_string().contains("not allowed");
        assert!(
            err.to_string().to_uppercase().contains("NOPERM") || server_wide,
            "{command:?}: {err}"
        );
    }
}

fn api_port(p: &Platform) -> u16 {
    p.base.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_user_cannot_run_any_denied_command() {
    let p = Platform::start().await;
    p.create("tenant", "hobbyist", None).await;
    let s = p.wait_running("tenant").await;
    let mut con = valkey(&s).await;
    // MIGRATE would make the node connect to any address: here, a listener the test owns.
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let trap_port = trap.local_addr().unwrap().port();
    assert_all_denied(&mut con, api_port(&p)).await;
    let result: redis::RedisResult<redis::Value> = redis::cmd("MIGRATE")
        .arg("127.0.0.1")
        .arg(trap_port)
        .arg("k")
        .arg(0)
        .arg(1000)
        .query_async(&mut con)
        .await;
    assert!(result.is_err());
    assert!(
        trap.accept().is_err(),
        "the node opened a connection for the tenant"
    );
    // Ordinary commands work, CLIENT included.
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut con)
        .await
        .unwrap();
    let _: String = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("app")
        .query_async(&mut con)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn denied_commands_reach_nodes_configured_by_an_older_keyhaven_without_a_restart() {
    let mut p = Platform::start().await;
    p.create("old", "hobbyist", None).await;
    let s = p.wait_running("old").await;
    let pid = p.node_pid(&s);

    // As an older Keyhaven left it: MIGRATE, LASTSAVE, REPLCONF and CLIENT PAUSE allowed,
    // in the running node and in its config file, and no record of newer rules.
    p.stop_server().await;
    let mut admin = p.node_connection(&s, "keyhaven-admin").await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("+migrate")
        .arg("+lastsave")
        .arg("+replconf")
        .arg("+client|pause")
        .query_async(&mut admin)
        .await
        .unwrap();
    let port = node_port(&s);
    let dir = p.node_dir_of_port(port);
    let conf = std::fs::read_to_string(dir.join("valkey.conf")).unwrap();
    let old_conf: String = conf
        .lines()
        .map(|l| {
            if l.starts_with("user default ") {
                l.split(' ')
                    .filter(|w| {
                        !matches!(
                            *w,
                            "-lastsave"
                                | "-replconf"
                                | "-migrate"
                                | "-client|pause"
                                | "-client|unpause"
                                | "-client|no-evict"
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                l.to_string()
            }
        })
        .map(|l| l + "\n")
        .collect();
    std::fs::write(dir.join("valkey.conf"), old_conf).unwrap();
    let _ = std::fs::remove_file(dir.join("acl-applied"));
    let mut con = valkey(&s).await;
    let _: i64 = redis::cmd("LASTSAVE").query_async(&mut con).await.unwrap();

    p.start_server().await;
    wait_for(
        "the new rules on the running node",
        Duration::from_secs(20),
        async || {
            let r: redis::RedisResult<i64> = redis::cmd("LASTSAVE").query_async(&mut con).await;
            r.is_err().then_some(())
        },
    )
    .await;
    assert_all_denied(&mut con, api_port(&p)).await;
    assert_eq!(p.node_pid(&s), pid, "the node was restarted");
    // Its config file has them too, for its next start.
    let conf = std::fs::read_to_string(dir.join("valkey.conf")).unwrap();
    assert!(conf.contains(" -migrate") && conf.contains(" -client|pause"));
}
