//! Read replicas: replication through real valkey-servers, the rules, and promotion.

use crate::harness::*;
use redis::AsyncCommands;
use serde_json::{Value, json};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Runs a shell command line (the docs' curl commands) and returns its stdout.
fn sh(script: &str) -> String {
    let out = Command::new("bash").args(["-c", script]).output().unwrap();
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_docs_api_procedures_run_verbatim_with_curl() {
    let p = Platform::start().await;
    p.create("primary-svc", "startup-4", None).await;
    p.wait_running("primary-svc").await;
    let (api, token) = (&p.base, &p.token);

    // "Create a read replica", the API tab, with URL, token and names substituted.
    let created = sh(&format!(
        r#"curl -s -X POST {api}/v1/project/default/service \
-H "Content-Type: application/json" \
-H "Authorization: bearer {token}" \
-d '{{
     "cloud": "local",
     "plan": "startup-4",
     "service_name": "replica-svc",
     "service_type": "valkey",
     "project": "default",
     "service_integrations": [
     {{
        "integration_type": "read_replica",
        "source_service_name": "primary-svc"
        }}
       ]
     }}'"#
    ));
    let created: Value = serde_json::from_str(&created).unwrap();
    assert_eq!(
        created["service"]["service_name"], "replica-svc",
        "{created}"
    );
    assert_eq!(created["service"]["keyhaven_role"], "replica");
    p.wait_running("replica-svc").await;

    // "Promote", step 1: the jq pipeline prints the id.
    let id = sh(&format!(
        r#"curl -s \
-H "Authorization: Bearer {token}" \
"{api}/v1/project/default/service/replica-svc/integration" \
| jq -r '.service_integrations[] | select(.source_service_name=="primary-svc").service_integration_id'"#
    ));
    let id = id.trim();
    assert_eq!(id.len(), 36, "not an id: {id:?}");
    assert_eq!(id, p.link_id("replica-svc").await);

    // Step 2: deleting the integration promotes.
    let deleted = sh(&format!(
        r#"curl -s -o /dev/stderr -w '%{{http_code}}' -X DELETE \
-H "Authorization: Bearer {token}" \
"{api}/v1/project/default/integration/{id}""#
    ));
    assert_eq!(deleted, "200");
    let s = p.service("replica-svc").await;
    assert_eq!(s["keyhaven_role"], "primary");
    assert_eq!(s["service_integrations"], json!([]));
    let (_, list) = p
        .call(
            "GET",
            "/v1/project/default/service/primary-svc/integration",
            None,
        )
        .await;
    assert_eq!(list["service_integrations"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_receives_writes_serves_reads_and_refuses_writes() {
    let p = Platform::start().await;
    p.create("main", "startup-4", None).await;
    let primary = p.wait_running("main").await;
    let mut pc = valkey(&primary).await;
    let _: () = pc.set("before", "1").await.unwrap();

    let created = p.create("copy", "startup-4", Some("main")).await;
    assert_eq!(created["state"], "REBUILDING");
    let replica = p.wait_running("copy").await;
    let mut rc = valkey(&replica).await;
    let before: Option<String> = rc.get("before").await.unwrap();
    assert_eq!(before.as_deref(), Some("1"), "the initial sync missed data");

    // A write made after RUNNING is readable on the replica within a short deadline.
    let _: () = pc.set("after", "2").await.unwrap();
    wait_for(
        "the write to reach the replica",
        Duration::from_secs(5),
        async || {
            let v: Option<String> = rc.get("after").await.unwrap();
            v.filter(|v| v == "2")
        },
    )
    .await;
    let err = rc.set::<_, _, ()>("x", "y").await.unwrap_err();
    assert!(err.to_string().to_uppercase().contains("READONLY"), "{err}");

    // Health: the replica is current and its primary lists it.
    let s = p.service("copy").await;
    let r = &s["keyhaven_replication"];
    assert_eq!(r["primary_service"], "main");
    assert_eq!(r["link_status"], "up");
    assert!(r["bytes_behind"].as_i64().is_some(), "{r}");
    let m = p.service("main").await;
    assert_eq!(
        m["keyhaven_replication"]["replicas"][0]["service_name"],
        "copy"
    );
    assert_eq!(m["service_integrations"][0]["dest_service"], "copy");
    assert_eq!(m["service_integrations"][0]["source_service_name"], "main");
    assert!(
        m["connection_info"]["valkey_replica_uri"]
            .as_str()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_concurrent_replica_creations_give_exactly_five() {
    let p = Arc::new(Platform::start().await);
    p.create("hub", "startup-4", None).await;
    p.wait_running("hub").await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            p.try_create(&format!("r{i}"), "startup-4", Some("hub"))
                .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => ok += 1,
            409 => {
                assert_eq!(
                    body["errors"][0]["error_code"], "replica_limit_reached",
                    "{body}"
                );
                assert!(
                    body["message"].as_str().unwrap().contains("maximum of 5"),
                    "{body}"
                );
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok, 5);
    let (_, list) = p.call("GET", "/v1/project/default/service", None).await;
    assert_eq!(list["services"].as_array().unwrap().len(), 6);
    for s in list["services"].as_array().unwrap() {
        p.wait_running(s["service_name"].as_str().unwrap()).await;
    }
    assert_eq!(
        p.running_nodes().len(),
        6,
        "orphan or missing valkey-servers"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replica_rules_are_enforced_with_clear_errors() {
    let p = Platform::start().await;
    p.create("base", "startup-4", None).await;
    p.create("small", "hobbyist", None).await;
    p.wait_running("base").await;
    p.create("rep", "startup-4", Some("base")).await;

    let expect = async |name: &str, plan: &str, source: &str, status: u16, code: &str| {
        let (got, body) = p.try_create(name, plan, Some(source)).await;
        assert_eq!(got, status, "{body}");
        assert_eq!(body["errors"][0]["error_code"], code, "{body}");
        let (missing, _) = p
            .call("GET", &format!("/v1/project/default/service/{name}"), None)
            .await;
        assert_eq!(missing, 404, "{name} was created anyway");
    };
    expect("hob", "hobbyist", "base", 400, "replica_plan_not_allowed").await;
    expect("cascade", "startup-4", "rep", 400, "replica_of_replica").await;
    expect(
        "ghost",
        "startup-4",
        "nope",
        404,
        "source_service_not_found",
    )
    .await;

    // Late integrations are refused.
    let (status, body) = p
        .call(
            "POST",
            "/v1/project/default/integration",
            Some(json!({
            "source_endpoint_id": null, "source_service": "base", "dest_endpoint_id": null,
            "dest_service": "small", "integration_type": "read_replica", "user_config": {}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("only be set during service creation")
    );

    // A primary with replicas cannot be deleted.
    let (status, body) = p
        .call("DELETE", "/v1/project/default/service/base", None)
        .await;
    assert_eq!(status, 409);
    assert!(body["message"].as_str().unwrap().contains("rep"), "{body}");

    // The sixth replica.
    for i in 2..=5 {
        p.create(&format!("rep{i}"), "startup-8", Some("base"))
            .await;
    }
    expect("rep6", "startup-4", "base", 409, "replica_limit_reached").await;

    // Deleting a replica removes its link; then the primary can go.
    for name in ["rep", "rep2", "rep3", "rep4", "rep5"] {
        let (status, body) = p
            .call(
                "DELETE",
                &format!("/v1/project/default/service/{name}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = p
        .call("DELETE", "/v1/project/default/service/base", None)
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn promotion_under_write_load_keeps_every_acknowledged_write() {
    let mut p = Platform::start().await;
    p.create("src", "startup-4", None).await;
    let primary = p.wait_running("src").await;
    p.create("dst", "startup-4", Some("src")).await;
    let replica = p.wait_running("dst").await;

    // A client writes continuously to the primary, counting acknowledged writes.
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        let mut con = valkey(&primary).await;
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) && i < 2_000_000 {
                i += 1;
                let _: () = con.set(format!("w:{i}"), i).await.unwrap();
                acked.store(i, Ordering::SeqCst);
            }
            i
        })
    };
    wait_for("some writes", Duration::from_secs(10), async || {
        (acked.load(Ordering::SeqCst) > 500).then_some(())
    })
    .await;

    let id = p.link_id("dst").await;
    let before_request = acked.load(Ordering::SeqCst);
    let (status, body) = p.delete_link(&id).await;
    assert_eq!(status, 200, "{body}");
    let after_response = acked.load(Ordering::SeqCst);
    // Concurrent and later deletes of the same link: 404.
    let (status, _) = p.delete_link(&id).await;
    assert_eq!(status, 404);

    // Writes keep flowing on the old primary after the promotion.
    wait_for(
        "writes after the promotion",
        Duration::from_secs(10),
        async || (acked.load(Ordering::SeqCst) > after_response + 200).then_some(()),
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let last = writer.await.unwrap();

    let mut rc = valkey(&replica).await;
    for i in 1..=before_request {
        let v: Option<u64> = rc.get(format!("w:{i}")).await.unwrap();
        assert_eq!(
            v,
            Some(i),
            "acknowledged write w:{i} missing on the promoted service"
        );
    }
    // Nothing written on the old primary after the promotion reaches the promoted service.
    for i in (after_response + 1)..=last {
        let v: Option<u64> = rc.get(format!("w:{i}")).await.unwrap();
        assert_eq!(
            v, None,
            "w:{i}, written after the promotion, leaked to the promoted service"
        );
    }
    // The promoted service is a writable primary.
    let _: () = rc.set("mine", "yes").await.unwrap();

    // It stays a primary after its valkey-server is killed ...
    let pid = p.node_pid(&replica);
    kill9(pid);
    wait_restarted(&p, "dst", pid).await;
    let mut rc = valkey(&p.service("dst").await).await;
    let _: () = rc.set("still-mine", "yes").await.unwrap();
    let v: Option<String> = rc.get("mine").await.unwrap();
    assert_eq!(
        v.as_deref(),
        Some("yes"),
        "the promoted primary lost data on restart"
    );

    // ... and after Keyhaven restarts; the old primary's later writes never arrive.
    let mut pc = valkey(&primary).await;
    let _: () = pc.set("late-on-old-primary", "1").await.unwrap();
    p.stop_server().await;
    p.start_server().await;
    let s = p.wait_running("dst").await;
    assert_eq!(s["keyhaven_role"], "primary");
    let mut rc = valkey(&s).await;
    let _: () = rc.set("after-restart", "1").await.unwrap();
    let late: Option<String> = rc.get("late-on-old-primary").await.unwrap();
    assert_eq!(late, None);
    let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut rc).await.unwrap();
    assert_eq!(role[0], redis::Value::BulkString(b"master".to_vec()));
}

#[tokio::test(flavor = "multi_thread")]
async fn promotion_with_the_primary_down_detaches_and_records_the_gap() {
    let p = Platform::start().await;
    p.create("gone", "startup-4", None).await;
    let primary = p.wait_running("gone").await;
    p.create("survivor", "startup-4", Some("gone")).await;
    p.wait_running("survivor").await;

    // Freeze the primary with SIGSTOP: it stops answering, but its process stays, so the
    // reconciler does not restart it behind the test's back.
    let pid = p.node_pid(&primary);
    signal(pid, "-STOP");
    let id = p.link_id("survivor").await;
    let (status, body) = p.delete_link(&id).await;
    signal(pid, "-CONT");
    assert_eq!(status, 200, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("did not answer"),
        "{body}"
    );
    let s = p.wait_running("survivor").await;
    assert_eq!(s["keyhaven_role"], "primary");
    assert!(
        s["keyhaven_replication"]["lost_bytes_estimate"]
            .as_i64()
            .is_some(),
        "{s}"
    );
    let mut rc = valkey(&s).await;
    let _: () = rc.set("k", "v").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_that_cannot_catch_up_is_not_promoted_and_nothing_changes() {
    let p = Platform::start_with(&["--promotion-pause-ms", "300"]).await;
    p.create("ahead", "startup-4", None).await;
    let primary = p.wait_running("ahead").await;
    p.create("behind", "startup-4", Some("ahead")).await;
    let replica = p.wait_running("behind").await;

    // Cut the replica off its primary (wrong replication password, link killed), then
    // write on the primary: the replica can no longer catch up.
    let mut ra = p.node_connection(&replica, "keyhaven-admin").await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("primaryauth")
        .arg("wrong")
        .query_async(&mut ra)
        .await
        .unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("master")
        .query_async(&mut ra)
        .await
        .unwrap();
    let mut pc = valkey(&primary).await;
    let _: () = pc.set("unreplicated", "1").await.unwrap();

    let id = p.link_id("behind").await;
    let (status, body) = p.delete_link(&id).await;
    assert_eq!(status, 503, "{body}");
    // Refused before the primary is paused (its replica is not linked), or after a pause
    // that the replica could not catch up in: either way nothing changed.
    let code = body["errors"][0]["error_code"].as_str().unwrap();
    assert!(
        matches!(code, "replica_not_linked" | "replica_behind"),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("nothing was changed"),
        "{body}"
    );

    // Nothing changed: the link is there, the replica is still a replica, the primary
    // takes writes again.
    assert_eq!(p.link_id("behind").await, id);
    let s = p.service("behind").await;
    assert_eq!(s["keyhaven_role"], "replica");
    let _: () = pc.set("after-503", "1").await.unwrap();
    let mut rc = valkey(&replica).await;
    let err = rc.set::<_, _, ()>("x", "y").await.unwrap_err();
    assert!(err.to_string().to_uppercase().contains("READONLY"), "{err}");
    // The replica's credentials are restored with its new generation and it catches up.
    wait_for(
        "the replica to catch up again",
        Duration::from_secs(15),
        async || {
            let v: Option<String> = rc.get("after-503").await.unwrap();
            v
        },
    )
    .await;
    let (status, body) = p.delete_link(&id).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_in_its_first_sync_cannot_be_promoted() {
    let p = Platform::start().await;
    p.create("frozen", "startup-4", None).await;
    let primary = p.wait_running("frozen").await;
    let pid = p.node_pid(&primary);
    // A frozen primary cannot serve the first sync: the replica stays REBUILDING.
    signal(pid, "-STOP");
    let created = p.try_create("partial", "startup-4", Some("frozen")).await;
    let id = p.link_id("partial").await;
    let result = p.delete_link(&id).await;
    signal(pid, "-CONT");
    assert_eq!(created.0, 200, "{}", created.1);
    let (status, body) = result;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["errors"][0]["error_code"], "replica_not_ready");
    p.wait_running("partial").await;
    assert_eq!(p.link_id("partial").await, id);
}

#[tokio::test(flavor = "multi_thread")]
async fn of_concurrent_promotions_of_one_link_exactly_one_succeeds() {
    let p = Arc::new(Platform::start().await);
    p.create("one", "startup-4", None).await;
    p.wait_running("one").await;
    p.create("two", "startup-4", Some("one")).await;
    p.wait_running("two").await;
    let id = p.link_id("two").await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (p, id) = (p.clone(), id.clone());
        tasks.push(tokio::spawn(async move { p.delete_link(&id).await }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().0);
    }
    statuses.sort();
    assert_eq!(statuses, vec![200, 404, 404, 404, 404, 404, 404, 404]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_quota_bounds_a_project() {
    let p = Platform::start_with(&["--max-services-per-project", "2"]).await;
    p.create("a", "hobbyist", None).await;
    p.create("b", "hobbyist", None).await;
    let (status, body) = p.try_create("c", "hobbyist", None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["errors"][0]["error_code"], "service_quota_exceeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_replica_cannot_be_promoted() {
    let p = Platform::start().await;
    p.create("src", "startup-4", None).await;
    p.wait_running("src").await;
    p.create("gone", "startup-4", Some("src")).await;
    p.wait_running("gone").await;
    let id = p.link_id("gone").await;
    let (status, _) = p
        .call("DELETE", "/v1/project/default/service/gone", None)
        .await;
    assert_eq!(status, 200);
    let (status, body) = p.delete_link(&id).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["errors"][0]["error_code"], "integration_not_found");
    // The primary has no link left and can be deleted.
    let (_, links) = p
        .call("GET", "/v1/project/default/service/src/integration", None)
        .await;
    assert_eq!(links["service_integrations"], json!([]));
    let (status, _) = p
        .call("DELETE", "/v1/project/default/service/src", None)
        .await;
    assert_eq!(status, 200);
}
