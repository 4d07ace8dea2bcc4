//! Promotion under faults: a primary that is stalled, killed or racing writes, a replica
//! that cannot catch up or is busy. Each test fails when the promise it names is broken:
//! a 200 with a hole in the acknowledged writes, a refusal that changed something, or a
//! refusal that names the wrong reason.

use crate::harness::*;
use redis::AsyncCommands;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

/// A primary with one RUNNING replica.
async fn pair(p: &Platform, primary: &str, replica: &str) -> (Value, Value) {
    p.create(primary, "startup-4", None).await;
    let pv = p.wait_running(primary).await;
    p.create(replica, "startup-4", Some(primary)).await;
    let rv = p.wait_running(replica).await;
    (pv, rv)
}

/// The service is still a replica of its primary, on the node and in the API, with its
/// link: what "nothing changed" means after a refused promotion.
async fn assert_still_a_replica(p: &Platform, replica: &str, link: &str) {
    assert_eq!(p.link_id(replica).await, link, "the link changed");
    let s = p.service(replica).await;
    assert_eq!(s["keyhaven_role"], "replica", "{s}");
    let mut admin = p.node_connection(&s, "keyhaven-admin").await;
    assert_eq!(role(&mut admin).await, "slave", "the node was detached");
}

/// Freezes the replica while the primary acknowledges `megabytes` MB of pipelined writes
/// (overwriting 1000 keys, so the replica's snapshot before the pause stays small), then
/// lets it go: it is still replaying them when a promotion's pause begins, so the catch-up
/// has to wait. (On one host a healthy replica is never measurably behind.)
async fn leave_the_replica_behind(p: &Platform, primary: &Value, replica: &Value, megabytes: u64) {
    let mut bc = valkey(primary).await;
    let replica_pid = p.node_pid(replica);
    signal(replica_pid, "-STOP");
    let value = "b".repeat(1000);
    for round in 0..megabytes / 2 {
        let mut pipe = redis::pipe();
        for i in 0..2000 {
            pipe.set(format!("burst:{}", (round * 2000 + i) % 1000), &value)
                .ignore();
        }
        let () = pipe.query_async(&mut bc).await.unwrap();
    }
    signal(replica_pid, "-CONT");
}

fn error_code(body: &Value) -> &str {
    body["errors"][0]["error_code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_primary_is_not_taken_for_down_and_no_acknowledged_write_is_lost() {
    let p = Platform::start().await;
    let (primary, replica) = pair(&p, "stalled", "follower").await;
    let link = p.link_id("follower").await;
    let mut pc = valkey(&primary).await;

    // The replica falls ~30 MB behind (it is frozen while the primary acknowledges a
    // pipelined burst), then the primary stalls in a tenant's long script, so it cannot
    // send the rest: the replica answers, and lacks writes the primary acknowledged.
    let replica_pid = p.node_pid(&replica);
    signal(replica_pid, "-STOP");
    burst(&mut pc, "b", 30_000, 1000).await;
    let stall = stall_in_script(&primary, 4.0);
    wait_stalled(&primary).await;
    signal(replica_pid, "-CONT");

    let (status, body) = p.delete_link(&link).await;
    assert_eq!(
        (status, error_code(&body)),
        (503, "primary_unresponsive"),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("nothing was changed"), "{body}");
    assert_still_a_replica(&p, "follower", &link).await;

    // Once the script ends, the same request promotes with every acknowledged write.
    stall.await.unwrap();
    let mut rc = valkey(&replica).await;
    wait_dbsize(&mut rc, 30_000).await;
    let (status, body) = p.delete_link(&link).await;
    assert_eq!(status, 200, "{body}");
    let promoted = p.wait_running("follower").await;
    assert_eq!(promoted["keyhaven_role"], "primary");
    let mut rc = valkey(&promoted).await;
    let keys: Vec<String> = (1..=30_000).map(|i| format!("b:{i}")).collect();
    for chunk in keys.chunks(1000) {
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(chunk)
            .query_async(&mut rc)
            .await
            .unwrap();
        assert!(
            values.iter().all(Option::is_some),
            "a burst write is missing"
        );
    }
    assert!(
        promoted["keyhaven_replication"]["lost_bytes_estimate"].is_null(),
        "{promoted}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lossy_promotion_detaches_from_a_stalled_primary_at_once() {
    let p = Platform::start().await;
    let (primary, replica) = pair(&p, "slow", "eager").await;
    let mut pc = valkey(&primary).await;
    burst(&mut pc, "k", 1000, 100).await;
    let mut rc = valkey(&replica).await;
    wait_dbsize(&mut rc, 1000).await;
    // Keyhaven has measured the replica current: its last observed gap is a real 0.
    wait_for("a measured gap of 0", Duration::from_secs(10), async || {
        let s = p.service("eager").await;
        (s["keyhaven_replication"]["bytes_behind"] == 0).then_some(())
    })
    .await;

    let stall = stall_in_script(&primary, 5.0);
    wait_stalled(&primary).await;
    let link = p.link_id("eager").await;
    let started = Instant::now();
    let (status, body) = p.delete_link_lossy(&link).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("lossy"),
        "{body}"
    );
    // It did not wait for the script to end.
    assert!(
        took < Duration::from_secs(4),
        "lossy promotion took {took:?}"
    );
    let s = p.wait_running("eager").await;
    assert_eq!(s["keyhaven_role"], "primary");
    assert_eq!(s["keyhaven_replication"]["lost_bytes_estimate"], 0, "{s}");
    let mut rc = valkey(&s).await;
    assert_eq!(role(&mut rc).await, "master");
    let _: () = rc.set("mine", "1").await.unwrap();
    assert_eq!(dbsize(&mut rc).await, 1001);
    stall.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_primary_is_alive_not_down() {
    let p = Platform::start().await;
    let (primary, _) = pair(&p, "frozen", "thawed").await;
    let link = p.link_id("thawed").await;
    // SIGSTOP: the process exists but answers nothing, as a hung host process would.
    let pid = p.node_pid(&primary);
    signal(pid, "-STOP");
    let refused = p.delete_link(&link).await;
    let lossy = p.delete_link_lossy(&link).await;
    signal(pid, "-CONT");
    let (status, body) = refused;
    assert_eq!(
        (status, error_code(&body)),
        (503, "primary_unresponsive"),
        "{body}"
    );
    let (status, body) = lossy;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("lossy"),
        "{body}"
    );
    let s = p.wait_running("thawed").await;
    assert_eq!(s["keyhaven_role"], "primary");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_primary_is_detached_at_once_with_the_measured_gap_recorded() {
    // The nodes run through a wrapper, so the test can keep the killed primary from
    // restarting (as on a host whose valkey-server can no longer start).
    let tools = tempfile::tempdir().unwrap();
    let wrapper = tools.path().join("valkey-server");
    let write_wrapper = |body: &str| {
        let tmp = tools.path().join("wrapper.tmp");
        std::fs::write(&tmp, format!("#!/bin/sh\n{body}\n")).unwrap();
        Command::new("chmod").arg("755").arg(&tmp).status().unwrap();
        std::fs::rename(&tmp, &wrapper).unwrap();
    };
    write_wrapper(&format!("exec {} \"$@\"", valkey_server().display()));
    let mut p = Platform::unstarted(&[]);
    p.valkey_binary = Some(wrapper.clone());
    p.boot().await;
    let (primary, replica) = pair(&p, "doomed", "heir").await;
    let mut pc = valkey(&primary).await;
    burst(&mut pc, "before", 500, 100).await;
    let mut rc = valkey(&replica).await;
    wait_dbsize(&mut rc, 500).await;

    // Cut the replica off (wrong replication password, link closed), write ~2 MB that it
    // never receives, and wait until Keyhaven has measured the gap.
    cut_off_its_primary(&p, &replica).await;
    burst(&mut pc, "lost", 2000, 1000).await;
    let measured = wait_for(
        "the gap to be measured",
        Duration::from_secs(15),
        async || {
            let s = p.service("heir").await;
            s["keyhaven_replication"]["bytes_behind"]
                .as_i64()
                .filter(|b| *b >= 2_000_000)
        },
    )
    .await;

    write_wrapper("echo 'valkey-server cannot start on this host' >&2; exit 1");
    kill9(p.node_pid(&primary));
    let link = p.link_id("heir").await;
    let started = Instant::now();
    let (status, body) = p.delete_link(&link).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(body["message"].as_str().unwrap().contains("down"), "{body}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let s = p.wait_running("heir").await;
    let lost = s["keyhaven_replication"]["lost_bytes_estimate"]
        .as_i64()
        .unwrap_or_else(|| panic!("no gap recorded: {s}"));
    assert!(lost >= measured, "recorded {lost}, measured {measured}");
    let mut rc = valkey(&s).await;
    assert_eq!(role(&mut rc).await, "master");
    assert_eq!(
        dbsize(&mut rc).await,
        500,
        "exactly what was measured is missing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_that_cannot_catch_up_is_refused_and_the_primary_resumes_within_the_bound() {
    // Bound 2000 ms: Keyhaven gives up the catch-up at 1000 ms and resumes the primary
    // itself; Valkey's own timeout would only end the pause at 2000 ms.
    let mut p = Platform::unstarted(&["--promotion-pause-ms", "2000"]);
    p.env.push((
        "KEYHAVEN_FAILPOINT".into(),
        "promotion.replica_stalls".into(),
    ));
    p.boot().await;
    let (primary, replica) = pair(&p, "ahead", "behind").await;
    let link = p.link_id("behind").await;

    let writers = Writers::start(&primary, 1, 50, 100).await;
    wait_for("some writes", Duration::from_secs(10), async || {
        (writers.acked()[0] > 500).then_some(())
    })
    .await;
    let sent = now_us();
    let (status, body) = p.delete_link(&link).await;
    let answered = now_us();
    let acks = writers.stop().await.remove(0);
    assert_eq!(
        (status, error_code(&body)),
        (503, "replica_behind"),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("nothing was changed"), "{body}");
    let bytes: i64 = message
        .split(" bytes behind")
        .next()
        .and_then(|head| head.rsplit('(').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {message}"));
    assert!(bytes > 0, "{message}");

    // The longest wait between two acknowledgements during the request is the pause: it
    // lasted about the catch-up budget and ended well before the bound.
    let longest = longest_wait(&acks, sent, answered);
    assert!(
        (800_000..1_700_000).contains(&longest),
        "writes waited {longest} µs"
    );
    assert_still_a_replica(&p, "behind", &link).await;
    let mut rc = valkey(&replica).await;
    let err = rc.set::<_, _, ()>("x", "y").await.unwrap_err();
    assert!(err.to_string().to_uppercase().contains("READONLY"), "{err}");
    // The abandon restored the replica's credentials: it catches up again.
    let mut pc = valkey(&primary).await;
    let _: () = pc.set("after-503", "1").await.unwrap();
    wait_for(
        "the replica to catch up",
        Duration::from_secs(15),
        async || rc.get::<_, Option<String>>("after-503").await.unwrap(),
    )
    .await;

    // Lossy: detached anyway, with the gap measured at the pause recorded.
    let writers = Writers::start(&primary, 1, 50, 100).await;
    wait_for("some writes", Duration::from_secs(10), async || {
        (writers.acked()[0] > 500).then_some(())
    })
    .await;
    let (status, body) = p.delete_link_lossy(&link).await;
    let last = *writers.acked().first().unwrap();
    writers.stop().await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("lossy"),
        "{body}"
    );
    let s = p.wait_running("behind").await;
    assert_eq!(s["keyhaven_role"], "primary");
    let lost = s["keyhaven_replication"]["lost_bytes_estimate"]
        .as_i64()
        .unwrap();
    assert!(lost > 0, "{s}");
    // What it has is still a gap-free prefix of what was written.
    let mut rc = valkey(&s).await;
    gap_free_prefix(&mut rc, 0, last + 1000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_cut_off_its_primary_is_refused_without_pausing_the_primary() {
    let p = Platform::start().await;
    let (primary, replica) = pair(&p, "source", "orphan").await;
    let link = p.link_id("orphan").await;
    // A wrong replication password and its link closed: the replica cannot reconnect.
    let mut ra = cut_off_its_primary(&p, &replica).await;
    wait_for("the link to be down", Duration::from_secs(10), async || {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut ra)
            .await
            .unwrap();
        info.contains("master_link_status:down").then_some(())
    })
    .await;
    let writers = Writers::start(&primary, 1, 20, 100).await;
    wait_for("some writes", Duration::from_secs(10), async || {
        (writers.acked()[0] > 200).then_some(())
    })
    .await;
    let sent = now_us();
    let (status, body) = p.delete_link(&link).await;
    let answered = now_us();
    let acks = writers.stop().await.remove(0);
    assert_eq!(
        (status, error_code(&body)),
        (503, "replica_not_linked"),
        "{body}"
    );
    // Refused before any pause: the writer never waited anywhere near the catch-up
    // budget (1 s of the default 2 s bound).
    let longest = longest_wait(&acks, sent, answered);
    assert!(longest < 500_000, "writes waited {longest} µs");
    assert_still_a_replica(&p, "orphan", &link).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lossy_promotion_still_catches_up_when_it_can() {
    // `lossy` only allows a loss when the catch-up fails; a replica that can catch up
    // (here ~160 MB behind when the request arrives) gets every acknowledged write all the
    // same. A generous bound (catch-up budget 30 s) keeps a loaded machine from mattering.
    let p = Platform::start_with(&["--promotion-pause-ms", "60000"]).await;
    let (primary, replica) = pair(&p, "able", "keen").await;
    let writers = Writers::start(&primary, 1, 200, 16).await;
    wait_for("some writes", Duration::from_secs(10), async || {
        (writers.acked()[0] > 1000).then_some(())
    })
    .await;
    leave_the_replica_behind(&p, &primary, &replica, 160).await;
    let link = p.link_id("keen").await;
    let (status, body) = p.delete_link_lossy(&link).await;
    let acks = writers.stop().await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("every write"),
        "{body}"
    );
    let s = p.wait_running("keen").await;
    assert!(
        s["keyhaven_replication"]["lost_bytes_estimate"].is_null(),
        "{s}"
    );
    let pause_started = log_number(
        &p.server_log(),
        "replica promoted to primary",
        "pause_started_at",
    )
    .expect("a pause was logged");
    let behind = log_number(
        &p.server_log(),
        "replica promoted to primary",
        "behind_at_pause",
    )
    .unwrap();
    assert!(behind > 0, "the replica was not behind at the pause");
    let mut rc = valkey(&s).await;
    let last = acks[0].last().unwrap().1;
    let k = gap_free_prefix(&mut rc, 0, last).await;
    let before_pause = acks[0]
        .iter()
        .filter(|(at, _)| *at < pause_started)
        .map(|(_, i)| *i)
        .max()
        .unwrap_or(0);
    assert!(
        k >= before_pause,
        "w0:{before_pause} acknowledged before the pause is missing (has 1..={k})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn promotion_under_write_load_keeps_a_gap_free_prefix_of_every_acknowledged_write() {
    // A generous bound (catch-up budget 30 s): the test must not depend on how fast a
    // loaded machine replays the burst.
    let mut p = Platform::start_with(&["--promotion-pause-ms", "60000"]).await;
    let (primary, replica) = pair(&p, "src", "dst").await;
    // Two clients write continuously in pipelined batches.
    let writers = Writers::start(&primary, 2, 200, 16).await;
    wait_for("some writes", Duration::from_secs(10), async || {
        writers.acked().iter().all(|a| *a > 1000).then_some(())
    })
    .await;
    let link = p.link_id("dst").await;
    // The replica ~160 MB behind when the request arrives.
    leave_the_replica_behind(&p, &primary, &replica, 160).await;
    let before_request = writers.acked();
    let (status, body) = p.delete_link(&link).await;
    let after_answer = writers.acked();
    assert_eq!(status, 200, "{body}");
    let (status, _) = p.delete_link(&link).await;
    assert_eq!(status, 404);
    // Writes keep flowing on the old primary after the promotion.
    wait_for(
        "writes after the promotion",
        Duration::from_secs(10),
        async || {
            let now = writers.acked();
            (now[0] > after_answer[0] + 400).then_some(())
        },
    )
    .await;
    let acks = writers.stop().await;

    let log = p.server_log();
    let pause_started = log_number(&log, "replica promoted to primary", "pause_started_at")
        .expect("the promotion logs when the pause began");
    let behind = log_number(&log, "replica promoted to primary", "behind_at_pause").unwrap();
    assert!(
        behind > 0,
        "the replica was not behind at the pause; the catch-up was not exercised: {}",
        log.lines()
            .filter(|l| l.contains("promot"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    let mut rc = valkey(&replica).await;
    for (w, batches) in acks.iter().enumerate() {
        let last = batches.last().unwrap().1;
        let k = gap_free_prefix(&mut rc, w, last).await;
        let acked_before_pause = batches
            .iter()
            .filter(|(at, _)| *at < pause_started)
            .map(|(_, i)| *i)
            .max()
            .unwrap_or(0);
        assert!(
            k >= acked_before_pause && k >= before_request[w],
            "writer {w}: the promoted node has w{w}:1..={k}, but w{w}:{acked_before_pause} was acknowledged before the pause"
        );
        assert!(
            k <= after_answer[w],
            "writer {w}: w{w}:{k} was written after the answer and reached the promoted node"
        );
    }
    let _: () = rc.set("mine", "yes").await.unwrap();

    // It stays a primary after its valkey-server is killed ...
    let pid = p.node_pid(&replica);
    kill9(pid);
    wait_restarted(&p, "dst", pid).await;
    let mut rc = valkey(&p.service("dst").await).await;
    let v: Option<String> = rc.get("mine").await.unwrap();
    assert_eq!(v.as_deref(), Some("yes"), "the promoted primary lost data");

    // ... and after Keyhaven restarts, past two reconciler observations: the old
    // primary's later writes never arrive.
    let mut pc = valkey(&primary).await;
    let _: () = pc.set("late-on-old-primary", "1").await.unwrap();
    p.stop_server().await;
    p.start_server().await;
    p.wait_running("dst").await;
    wait_observations(&p, "dst", 2).await;
    let s = p.service("dst").await;
    assert_eq!(s["keyhaven_role"], "primary");
    let mut rc = valkey(&s).await;
    let late: Option<String> = rc.get("late-on-old-primary").await.unwrap();
    assert_eq!(late, None);
    assert_eq!(role(&mut rc).await, "master");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_replica_is_refused_for_what_it_is_not_for_a_first_sync() {
    let p = Platform::start().await;
    let (_, replica) = pair(&p, "calm", "busy").await;
    let link = p.link_id("busy").await;
    let stall = stall_in_script(&replica, 6.0);
    wait_stalled(&replica).await;
    // The reconciler cannot observe it: it shows REBUILDING, as a first sync would.
    wait_for(
        "the busy replica to show REBUILDING",
        Duration::from_secs(10),
        async || (p.service("busy").await["state"] == "REBUILDING").then_some(()),
    )
    .await;
    let (status, body) = p.delete_link(&link).await;
    assert_eq!(
        (status, error_code(&body)),
        (503, "replica_unreachable"),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("does not answer") && !message.contains("first sync"),
        "{body}"
    );
    stall.await.unwrap();
    p.wait_running("busy").await;
    assert_still_a_replica(&p, "busy", &link).await;
    let (status, body) = p.delete_link(&link).await;
    assert_eq!(status, 200, "{body}");
}

/// The promotion answers without waiting for a new snapshot of the replica (its snapshot on
/// disk holds keys) nor for the new primary's first AOF. A `kill -9` of the promoted node
/// right after the answer, in that window or after it, brings it back a primary that holds
/// data (at least its snapshot; every write once its AOF exists) and follows nobody.
#[tokio::test(flavor = "multi_thread")]
async fn a_promoted_node_killed_right_after_the_answer_comes_back_a_primary_with_data() {
    let p = Platform::start().await;
    let (primary, replica) = primary_and_replica(&p).await;
    let mut pc = valkey(&primary).await;
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.set(format!("old:{i}"), i).ignore();
    }
    let () = pipe.query_async(&mut pc).await.unwrap();
    let mut rc = valkey(&replica).await;
    wait_dbsize(&mut rc, 2000).await;
    // The replica's snapshot on disk holds those keys.
    let mut admin = p.node_connection(&replica, "keyhaven-admin").await;
    let saves = |i: &str| -> (i64, bool) {
        let field = |k: &str| {
            i.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}:")))
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(-1)
        };
        (field("rdb_saves"), field("rdb_bgsave_in_progress") == 1)
    };
    // Our own snapshot, started once none runs (the reconciler may be taking one).
    let before = wait_for("a BGSAVE of our own", Duration::from_secs(20), async || {
        let info: String = redis::cmd("INFO")
            .arg("persistence")
            .query_async(&mut admin)
            .await
            .ok()?;
        let (n, running) = saves(&info);
        if running {
            return None;
        }
        let started: Result<String, _> = redis::cmd("BGSAVE").query_async(&mut admin).await;
        started.ok().map(|_| n)
    })
    .await;
    wait_for(
        "the replica's snapshot",
        Duration::from_secs(20),
        async || {
            let info: String = redis::cmd("INFO")
                .arg("persistence")
                .query_async(&mut admin)
                .await
                .ok()?;
            let (n, running) = saves(&info);
            (n > before && !running).then_some(())
        },
    )
    .await;
    // Writes the snapshot does not hold, on the replica before the promotion.
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.set(format!("new:{i}"), i).ignore();
    }
    let () = pipe.query_async(&mut pc).await.unwrap();
    wait_dbsize(&mut rc, 4000).await;

    let id = p.link_id("repl").await;
    let pid = p.node_pid(&replica);
    let (status, body) = p.delete_link(&id).await;
    assert_eq!(status, 200, "{body}");
    kill9(pid);
    wait_restarted(&p, "repl", pid).await;
    let s = p.service("repl").await;
    assert_eq!(s["keyhaven_role"], "primary", "{s}");
    let mut rc = valkey(&s).await;
    assert_eq!(
        role(&mut rc).await,
        "master",
        "the promoted node follows a primary again"
    );
    let n = dbsize(&mut rc).await;
    assert!(
        (2000..=4000).contains(&n),
        "the promoted node came back with {n} keys: not its snapshot, not every write"
    );
    // It never re-attaches: a write on the old primary does not reach it.
    let () = pc.set("after", 1).await.unwrap();
    let _: () = rc.set("probe", 1).await.expect("it takes writes");
    let exists: i64 = redis::cmd("EXISTS")
        .arg("after")
        .query_async(&mut rc)
        .await
        .unwrap();
    assert_eq!(exists, 0);
}
