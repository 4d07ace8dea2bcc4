//! Fault tests: processes killed at the worst moments, with what must survive asserted.
//! Crash points (failpoints) need `--features failpoints` (`cargo test --all-features`).

use crate::harness::*;
use redis::AsyncCommands;
use serde_json::Value;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

async fn info_field(
    con: &mut redis::aio::MultiplexedConnection,
    section: &str,
    key: &str,
) -> String {
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query_async(con)
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("INFO {section} has no {key}"))
}

async fn info_int(con: &mut redis::aio::MultiplexedConnection, section: &str, key: &str) -> i64 {
    info_field(con, section, key).await.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_replica_resumes_with_a_partial_resync_while_the_primary_takes_writes() {
    let p = Platform::start().await;
    let (primary, replica) = primary_and_replica(&p).await;

    let written = Arc::new(AtomicI64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (written, stop) = (written.clone(), stop.clone());
        let mut con = valkey(&primary).await;
        tokio::spawn(async move {
            let mut i = 0i64;
            while !stop.load(Ordering::SeqCst) && i < 1_000_000 {
                i += 1;
                // Any error here fails the test: the primary must be unaffected.
                let _: () = con.set(format!("k:{i}"), i).await.unwrap();
                written.store(i, Ordering::SeqCst);
            }
        })
    };
    wait_for("writes", Duration::from_secs(10), async || {
        (written.load(Ordering::SeqCst) > 1000).then_some(())
    })
    .await;

    // The snapshot Keyhaven has every replica take once it is current (the test takes
    // none itself).
    let mut ra = p.node_connection(&replica, "keyhaven-admin").await;
    wait_for(
        "the replica's first snapshot",
        Duration::from_secs(10),
        async || {
            (info_field(&mut ra, "persistence", "rdb_bgsave_in_progress").await == "0"
                && info_int(&mut ra, "persistence", "rdb_saves").await >= 1)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        info_field(&mut ra, "persistence", "rdb_last_bgsave_status").await,
        "ok"
    );
    let mut pa = p.node_connection(&primary, "keyhaven-admin").await;
    let partial_before = info_int(&mut pa, "stats", "sync_partial_ok").await;
    let full_before = info_int(&mut pa, "stats", "sync_full").await;

    let pid = p.node_pid(&replica);
    kill9(pid);
    wait_restarted(&p, "repl", pid).await;
    let target = written.load(Ordering::SeqCst);
    let mut rc = valkey(&replica).await;
    wait_for(
        "the replica to catch up",
        Duration::from_secs(20),
        async || {
            let v: Option<i64> = rc.get(format!("k:{target}")).await.ok()?;
            v
        },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    // Every write the client made, up to the last one acknowledged, reaches the replica.
    let last = written.load(Ordering::SeqCst);
    wait_for(
        "the replica to have every write",
        Duration::from_secs(20),
        async || {
            let v: Option<i64> = rc.get(format!("k:{last}")).await.ok()?;
            v
        },
    )
    .await;

    assert_eq!(
        info_int(&mut pa, "stats", "sync_partial_ok").await,
        partial_before + 1,
        "no partial resync"
    );
    assert_eq!(
        info_int(&mut pa, "stats", "sync_full").await,
        full_before,
        "a full sync happened"
    );
    let keys: Vec<i64> = (1..=last).collect();
    for chunk in keys.chunks(1000) {
        let names: Vec<String> = chunk.iter().map(|i| format!("k:{i}")).collect();
        let values: Vec<Option<i64>> = redis::cmd("MGET")
            .arg(&names)
            .query_async(&mut rc)
            .await
            .unwrap();
        for (i, v) in chunk.iter().zip(values) {
            assert_eq!(v, Some(*i), "k:{i} is missing or wrong on the replica");
        }
    }
    assert_eq!(
        dbsize(&mut rc).await,
        last,
        "the replica has keys never written"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_primary_comes_back_with_its_data_and_replicas_never_sync_to_empty() {
    let p = Platform::start().await;
    let (primary, replica) = primary_and_replica(&p).await;
    let mut pc = valkey(&primary).await;
    for i in 0..500 {
        let _: () = pc.set(format!("d:{i}"), i).await.unwrap();
    }
    wait_aof(&mut pc).await;
    let mut rc = valkey(&replica).await;
    wait_dbsize(&mut rc, 500).await;

    // Watch the replica's dataset during the whole outage.
    let smallest = Arc::new(AtomicI64::new(i64::MAX));
    // Samples answered while the primary was down: the watch must really cover the outage.
    let samples_in_outage = Arc::new(AtomicI64::new(0));
    let primary_down = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (smallest, stop) = (smallest.clone(), stop.clone());
        let (samples_in_outage, primary_down) = (samples_in_outage.clone(), primary_down.clone());
        let mut rc = valkey(&replica).await;
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                // A LOADING error is not an empty dataset; only sizes count.
                if let Ok(n) = redis::cmd("DBSIZE").query_async::<i64>(&mut rc).await {
                    smallest.fetch_min(n, Ordering::SeqCst);
                    if primary_down.load(Ordering::SeqCst) {
                        samples_in_outage.fetch_add(1, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let pid = p.node_pid(&primary);
    primary_down.store(true, Ordering::SeqCst);
    kill9(pid);
    wait_restarted(&p, "prim", pid).await;
    let mut pc = valkey(&primary).await;
    let n = dbsize(&mut pc).await;
    assert_eq!(n, 500, "the primary came back without its data");
    // ... from its AOF: primaries keep no RDB snapshot.
    let dir = p.node_dir_of_port(node_port(&primary));
    assert!(dir.join("appendonlydir").is_dir() && !dir.join("dump.rdb").exists());
    let mut pa = p.node_connection(&primary, "keyhaven-admin").await;
    assert_eq!(info_field(&mut pa, "persistence", "aof_enabled").await, "1");
    let _: () = pc.set("after-restart", 1).await.unwrap();
    wait_for(
        "the replica to re-attach",
        Duration::from_secs(20),
        async || {
            rc.get::<_, Option<i64>>("after-restart")
                .await
                .ok()
                .flatten()
        },
    )
    .await;
    primary_down.store(false, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    watcher.await.unwrap();
    let samples = samples_in_outage.load(Ordering::SeqCst);
    assert!(
        samples >= 5,
        "only {samples} replica samples during the outage"
    );
    eprintln!(
        "replica samples during the outage: {samples}, smallest DBSIZE: {}",
        smallest.load(Ordering::SeqCst)
    );
    assert!(
        smallest.load(Ordering::SeqCst) >= 500,
        "the replica's dataset shrank to {}",
        smallest.load(Ordering::SeqCst)
    );
    let n = dbsize(&mut rc).await;
    assert_eq!(n, 501);
}

/// The other kill tests confirm their writes with WAITAOF; this one does not: a write
/// acknowledged more than a second before a `kill -9` must survive on `appendfsync
/// everysec` alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_primary_keeps_writes_acknowledged_a_second_before_without_waitaof() {
    let p = Platform::start().await;
    p.create("everysec", "startup-4", None).await;
    let s = p.wait_running("everysec").await;

    // A client writes continuously for a while, then stops; nothing asks for an fsync.
    let writers = Writers::start(&s, 1, 50, 32).await;
    wait_for("writes", Duration::from_secs(10), async || {
        (writers.acked()[0] >= 20_000).then_some(())
    })
    .await;
    let acks = writers.stop().await;
    let &(last_ack_us, last) = acks[0].last().expect("acknowledged writes");
    let last_ack =
        std::time::Instant::now() - Duration::from_micros((now_us() - last_ack_us) as u64);
    wait_for(
        "a second since the last acknowledged write",
        Duration::from_secs(5),
        async || (last_ack.elapsed() > Duration::from_secs(1)).then_some(()),
    )
    .await;

    let pid = p.node_pid(&s);
    kill9(pid);
    wait_restarted(&p, "everysec", pid).await;
    let mut con = valkey(&p.service("everysec").await).await;
    let kept = gap_free_prefix(&mut con, 0, last).await;
    assert_eq!(
        kept,
        last,
        "{} of {last} acknowledged writes lost by a kill -9 a second after the last one",
        last - kept
    );
    assert_eq!(dbsize(&mut con).await, last as i64);
}

fn port_of(service: &Value) -> u16 {
    node_port(service)
}

/// The role generation a node has applied (its `generation` file).
fn applied_generation(p: &Platform, service: &Value) -> i64 {
    let dir = p.node_dir_of_port(port_of(service));
    std::fs::read_to_string(dir.join("generation"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_port_held_by_another_program_is_skipped_or_left_for_another() {
    let mut p = Platform::start().await;
    // Taken before allocation: the probe skips it.
    // The lowest port of the range that is free now: the one Keyhaven would pick.
    let (squatter, taken) = (p.ports.0..=p.ports.1)
        .find_map(|port| {
            std::net::TcpListener::bind(("127.0.0.1", port))
                .ok()
                .map(|l| (l, port))
        })
        .expect("a free port in the platform's range");
    p.create("skips", "startup-4", None).await;
    let s = p.wait_running("skips").await;
    assert_ne!(port_of(&s), taken);
    drop(squatter);
    p.create("follows", "startup-4", Some("skips")).await;
    let replica = p.wait_running("follows").await;

    // Taken after allocation, while the node is down: the node moves to another port and
    // keeps its data; its replica is re-pointed at the new port.
    let mut con = valkey(&s).await;
    let _: () = con.set("kept", "yes").await.unwrap();
    wait_aof(&mut con).await;
    let mut rc = valkey(&replica).await;
    wait_for(
        "the replica to have the key",
        Duration::from_secs(10),
        async || rc.get::<_, Option<String>>("kept").await.ok().flatten(),
    )
    .await;
    let mut ra = p.node_connection(&replica, "keyhaven-admin").await;
    let old_port = port_of(&s);
    assert_eq!(
        info_int(&mut ra, "replication", "master_port").await,
        i64::from(old_port)
    );
    let replica_generation = applied_generation(&p, &replica);
    p.stop_server().await;
    kill9(p.node_pid(&s));
    let squatter = wait_for(
        "the old port to be free",
        Duration::from_secs(10),
        async || std::net::TcpListener::bind(("127.0.0.1", old_port)).ok(),
    )
    .await;
    p.start_server().await;
    let moved = wait_for(
        "the service on another port",
        Duration::from_secs(30),
        async || {
            let s = p.service("skips").await;
            (s["state"] == "RUNNING" && port_of(&s) != old_port).then_some(s)
        },
    )
    .await;
    let new_port = port_of(&moved);
    let mut con = valkey(&moved).await;
    let v: Option<String> = con.get("kept").await.unwrap();
    assert_eq!(v.as_deref(), Some("yes"));
    assert!(p.server_log().contains("moved to another port"));

    // The replica follows the primary at its new port, through a newer role generation:
    // a write made on the primary after the move reaches it.
    let _: () = con.set("after-move", "yes").await.unwrap();
    wait_for(
        "the replica to follow the moved primary",
        Duration::from_secs(30),
        async || {
            let following = info_int(&mut ra, "replication", "master_port").await
                == i64::from(new_port)
                && info_field(&mut ra, "replication", "master_link_status").await == "up";
            let v: Option<String> = rc.get("after-move").await.ok().flatten();
            (following && v.as_deref() == Some("yes")).then_some(())
        },
    )
    .await;
    assert!(
        applied_generation(&p, &replica) > replica_generation,
        "the replica was re-pointed without a new role generation"
    );
    let replica = p.wait_running("follows").await;
    assert_eq!(replica["keyhaven_role"], "replica");
    assert_eq!(p.running_nodes().len(), 2);
    drop(squatter);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unwritable_data_directory_gives_a_clear_error_and_nothing_half_made() {
    use std::os::unix::fs::PermissionsExt;
    let mut p = Platform::unstarted(&[]);
    // The server runs as `nobody`; the node directory's parent belongs to root.
    let chown = |path: &std::path::Path| {
        assert!(
            Command::new("chown")
                .arg("65534:65534")
                .arg(path)
                .status()
                .unwrap()
                .success()
        );
    };
    chown(p.data());
    let nodes = p.data().join("nodes");
    std::fs::create_dir(&nodes).unwrap();
    std::fs::set_permissions(&nodes, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.wrapper = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
    ]
    .map(String::from)
    .to_vec();
    p.boot().await;

    let (status, body) = p.try_create("blocked", "hobbyist", None).await;
    assert_eq!(status, 200, "{body}");
    let s = wait_for("the node error", Duration::from_secs(20), async || {
        let s = p.service("blocked").await;
        s["keyhaven_replication"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("Permission denied"))
            .then_some(s)
    })
    .await;
    assert_eq!(s["state"], "REBUILDING");
    assert!(p.running_nodes().is_empty());
    // The server is fine and the service can be deleted cleanly.
    let (status, _) = p
        .call("DELETE", "/v1/project/default/service/blocked", None)
        .await;
    assert_eq!(status, 200);
    // Once the directory is writable, services run.
    chown(&nodes);
    p.create("fine", "hobbyist", None).await;
    p.wait_running("fine").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_changes_clearly_and_recovers() {
    let p = Platform::start_on_small_disk(16).await;
    p.create("steady", "hobbyist", None).await;
    let s = p.wait_running("steady").await;
    let mut con = valkey(&s).await;
    let _: () = con.set("before", "1").await.unwrap();

    // Fill the disk.
    let filler = p.fill_disk();
    let (status, body) = p.try_create("no-room", "hobbyist", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["errors"][0]["error_code"], "storage_full", "{body}");
    // Valkey refuses writes it cannot persist, with its own clear error ...
    let refusal = wait_for(
        "Valkey to refuse writes",
        Duration::from_secs(20),
        async || {
            con.set::<_, _, ()>("probe", vec![b'x'; 64 * 1024])
                .await
                .err()
                .map(|e| e.to_string())
        },
    )
    .await;
    assert!(
        refusal.contains("MISCONF") || refusal.contains("AOF"),
        "{refusal}"
    );
    // ... and the reconciler's failed writes to the store are logged, not fatal.
    wait_for(
        "the reconciler to report the full disk",
        Duration::from_secs(20),
        async || {
            p.server_log()
                .contains("data directory is full")
                .then_some(())
        },
    )
    .await;
    let v: Option<String> = con.get("before").await.unwrap();
    assert_eq!(v.as_deref(), Some("1"), "reads go on");

    // Free the space: everything recovers, and the refused create left nothing behind.
    std::fs::remove_file(&filler).unwrap();
    let (status, _) = p
        .call("GET", "/v1/project/default/service/no-room", None)
        .await;
    assert_eq!(status, 404);
    wait_for(
        "writes to be accepted again",
        Duration::from_secs(20),
        async || con.set::<_, _, ()>("after", "1").await.ok(),
    )
    .await;
    p.create("no-room", "hobbyist", None).await;
    p.wait_running("no-room").await;
    assert_eq!(p.running_nodes().len(), 2);
}
