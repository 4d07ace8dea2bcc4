//! Crashes of Keyhaven itself (failpoints: SIGKILL at a named point) while it creates a
//! replica or promotes one: after a restart everything converges, and a promotion is only
//! ever rolled forward. Needs the `failpoints` feature (the README's test command has it).
use crate::harness::*;
use redis::AsyncCommands;
use serde_json::Value;
use std::time::Duration;

/// Restarts the server with `failpoint` armed, runs `action`, waits for the crash,
/// then restarts it clean.
async fn crash_at(p: &mut Platform, failpoint: &str, action: impl AsyncFnOnce(&Platform)) {
    p.stop_server().await;
    p.env = vec![("KEYHAVEN_FAILPOINT".into(), failpoint.into())];
    p.start_server().await;
    action(p).await;
    p.wait_server_gone().await;
    p.env.clear();
    p.start_server().await;
    assert!(
        p.server_log().contains(&format!("failpoint {failpoint}")),
        "{failpoint} was not hit"
    );
}

/// A request whose answer may never come (the server dies while handling it).
async fn fire(p: &Platform, method: &str, path: &str, body: Option<Value>) {
    let mut req = p
        .http
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            p.url(path),
        )
        .header("authorization", format!("aivenv1 {}", p.token));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let _ = req.send().await;
}

async fn assert_replicating(p: &Platform) {
    let primary = p.wait_running("prim").await;
    let replica = p.wait_running("repl").await;
    assert_eq!(replica["keyhaven_role"], "replica");
    p.link_id("repl").await;
    let mut pc = valkey(&primary).await;
    let _: () = pc.set("after-crash", 1).await.unwrap();
    let mut rc = valkey(&replica).await;
    wait_for(
        "replication after the crash",
        Duration::from_secs(10),
        async || rc.get::<_, Option<i64>>("after-crash").await.unwrap(),
    )
    .await;
    assert_eq!(
        p.running_nodes().len(),
        2,
        "orphan or duplicate valkey-servers"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_while_creating_a_replica_converges() {
    for failpoint in ["service_create.committed", "reconciler.node_started"] {
        let mut p = Platform::start().await;
        p.create("prim", "startup-4", None).await;
        p.wait_running("prim").await;
        crash_at(&mut p, failpoint, async |p| {
            let body = serde_json::json!({"service_name": "repl", "service_type": "valkey", "plan": "startup-4",
                "service_integrations": [{"integration_type": "read_replica", "source_service": "prim"}]});
            fire(p, "POST", "/v1/project/default/service", Some(body)).await;
        })
        .await;
        assert_replicating(&p).await;
    }
}

/// When the pause that the promotion's detach followed began: the last one logged.
fn effective_pause(p: &Platform) -> i64 {
    log_number(
        &p.server_log(),
        "pausing writes on the primary",
        "pause_started_at",
    )
    .expect("a pause was logged")
}

/// Checks, after a promotion finished, what each writer's acknowledged writes tell: the
/// promoted node holds a gap-free prefix that contains every write acknowledged before the
/// pause and none acknowledged after the link was gone.
async fn assert_acknowledged_prefix(
    rc: &mut redis::aio::MultiplexedConnection,
    acks: &[Vec<(i64, u64)>],
    pause_started: i64,
    finished_at: i64,
    what: &str,
) {
    for (w, batches) in acks.iter().enumerate() {
        let last = batches.last().map(|b| b.1).unwrap_or(0);
        let k = gap_free_prefix(rc, w, last).await;
        let before_pause = batches
            .iter()
            .filter(|(at, _)| *at < pause_started)
            .map(|(_, i)| *i)
            .max()
            .unwrap_or(0);
        let after_finish = batches
            .iter()
            .filter(|(at, _)| *at > finished_at)
            .map(|(_, i)| *i)
            .min();
        assert!(
            k >= before_pause,
            "{what}: w{w}:{before_pause} was acknowledged before the pause but the promoted node has only w{w}:1..={k}"
        );
        if let Some(first_after) = after_finish {
            assert!(
                k < first_after,
                "{what}: w{w}:{first_after}, acknowledged after the promotion finished, reached the promoted node"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_at_any_step_of_a_promotion_is_rolled_forward() {
    for failpoint in [
        "promotion.intent_recorded",
        "promotion.staged",
        "promotion.writes_paused",
        "promotion.detached",
        "promotion.node_updated",
    ] {
        // A 10 s bound: a primary left paused by the crash would block writes for 10 s
        // unless the roll-forward resumes it; the writers' acknowledgements show which.
        let mut p = Platform::start_with(&["--promotion-pause-ms", "10000"]).await;
        let (primary, _) = primary_and_replica(&p).await;
        let writers = Writers::start(&primary, 1, 20, 100).await;
        wait_for("some writes", Duration::from_secs(10), async || {
            (writers.acked()[0] > 200).then_some(())
        })
        .await;
        let id = p.link_id("repl").await;
        crash_at(&mut p, failpoint, async |p| {
            fire(
                p,
                "DELETE",
                &format!("/v1/project/default/integration/{id}"),
                None,
            )
            .await;
        })
        .await;

        // Rolled forward: the link is gone and the replica is an independent primary.
        wait_for(
            &format!("the promotion to finish after {failpoint}"),
            Duration::from_secs(30),
            async || {
                let (_, l) = p
                    .call("GET", "/v1/project/default/service/repl/integration", None)
                    .await;
                let s = p.service("repl").await;
                (l["service_integrations"] == serde_json::json!([])
                    && s["keyhaven_role"] == "primary"
                    && s["state"] == "RUNNING"
                    && s["keyhaven_replication"]["observed_role"] == "primary")
                    .then_some(())
            },
        )
        .await;
        let finished_at = now_us();
        // Writes go on for a while on the old primary, then the writer stops.
        let at_finish = writers.acked()[0];
        wait_for(
            "writes after the promotion",
            Duration::from_secs(20),
            async || (writers.acked()[0] > at_finish + 200).then_some(()),
        )
        .await;
        let acks = writers.stop().await;
        let longest_wait = longest_wait(&acks[0], i64::MIN, i64::MAX);
        assert!(
            longest_wait < 8_000_000,
            "{failpoint}: writes on the primary waited {longest_wait} µs: a pause left by the crash was not resumed by the roll-forward"
        );

        let promoted = p.service("repl").await;
        let mut rc = valkey(&promoted).await;
        assert_acknowledged_prefix(&mut rc, &acks, effective_pause(&p), finished_at, failpoint)
            .await;
        let _: () = rc.set("promoted-writes", 1).await.unwrap();
        // Two independent primaries, never linked again: checked after two more
        // observations by the reconciler.
        let mut pc = valkey(&p.wait_running("prim").await).await;
        let _: () = pc.set("old-primary-later", 1).await.unwrap();
        wait_observations(&p, "repl", 2).await;
        let leaked: Option<i64> = rc.get("old-primary-later").await.unwrap();
        assert_eq!(
            leaked, None,
            "{failpoint}: the promoted node still follows the old primary"
        );
        assert_eq!(role(&mut rc).await, "master", "{failpoint}");
        assert_eq!(
            p.running_nodes().len(),
            2,
            "{failpoint}: orphan or duplicate valkey-servers"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_promotion_whose_detach_is_unconfirmed_answers_202_and_is_finished_in_the_background() {
    let mut p = Platform::unstarted(&[]);
    p.env.push((
        "KEYHAVEN_FAILPOINT".into(),
        "promotion.detach_unconfirmed".into(),
    ));
    p.boot().await;
    let (primary, _) = primary_and_replica(&p).await;
    let writers = Writers::start(&primary, 1, 20, 100).await;
    wait_for("some writes", Duration::from_secs(10), async || {
        (writers.acked()[0] > 200).then_some(())
    })
    .await;
    let id = p.link_id("repl").await;
    let (status, body) = p.delete_link(&id).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["state"], "promoting", "{body}");
    // Meanwhile the link is either still being promoted (409) or done (404): never a
    // second promotion.
    let (status, again) = p.delete_link(&id).await;
    assert!(
        (status == 409 && again["errors"][0]["error_code"] == "promotion_in_progress")
            || (status == 404 && again["errors"][0]["error_code"] == "integration_not_found"),
        "{status} {again}"
    );
    wait_for(
        "the background promotion to finish",
        Duration::from_secs(30),
        async || {
            let (_, l) = p
                .call("GET", "/v1/project/default/service/repl/integration", None)
                .await;
            let s = p.service("repl").await;
            (l["service_integrations"] == serde_json::json!([])
                && s["keyhaven_role"] == "primary"
                && s["state"] == "RUNNING")
                .then_some(())
        },
    )
    .await;
    let finished_at = now_us();
    let acks = writers.stop().await;
    let mut rc = valkey(&p.service("repl").await).await;
    assert_acknowledged_prefix(&mut rc, &acks, effective_pause(&p), finished_at, "202").await;
    assert_eq!(role(&mut rc).await, "master");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_that_dies_during_its_promotion_comes_back_from_its_snapshot() {
    let mut p = Platform::start().await;
    let (primary, replica) = primary_and_replica(&p).await;
    let mut pc = valkey(&primary).await;
    for i in 0..300 {
        let _: () = pc.set(format!("snap:{i}"), i).await.unwrap();
    }
    let mut rc = valkey(&replica).await;
    wait_dbsize(&mut rc, 300).await;
    // No snapshot is taken by the test: the replica loaded its data straight into
    // memory, and Keyhaven must see to it that one exists before the role is staged.

    let id = p.link_id("repl").await;
    crash_at(&mut p, "promotion.staged", async |p| {
        // The replica's node dies too, right after its primary role was staged.
        let pid = p.node_pid(&replica);
        fire(
            p,
            "DELETE",
            &format!("/v1/project/default/integration/{id}"),
            None,
        )
        .await;
        kill9(pid);
    })
    .await;

    // Rolled forward: the node restarted as a primary from its snapshot, not empty.
    let s = wait_for(
        "the promotion to finish",
        Duration::from_secs(30),
        async || {
            let s = p.service("repl").await;
            let (_, l) = p
                .call("GET", "/v1/project/default/service/repl/integration", None)
                .await;
            (l["service_integrations"] == serde_json::json!([])
                && s["state"] == "RUNNING"
                && s["keyhaven_replication"]["observed_role"] == "primary")
                .then_some(s)
        },
    )
    .await;
    let mut rc = valkey(&s).await;
    let n = dbsize(&mut rc).await;
    assert_eq!(n, 300, "the promoted node did not start from its snapshot");
    // And its AOF is on, so the next restart keeps later writes too.
    let _: () = rc.set("after", 1).await.unwrap();
    let pid = p.node_pid(&s);
    wait_aof(&mut rc).await;
    kill9(pid);
    wait_restarted(&p, "repl", pid).await;
    let mut rc = valkey(&p.service("repl").await).await;
    let n = dbsize(&mut rc).await;
    assert_eq!(n, 301);
}
