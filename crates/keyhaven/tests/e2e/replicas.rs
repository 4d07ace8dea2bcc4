//! Read replicas: replication through real valkey-servers, the rules, and promotion.

use crate::harness::*;
use redis::AsyncCommands;
use serde_json::{Value, json};
use std::process::Command;
use std::sync::Arc;
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
    let mut answers = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        answers.push((status, body["errors"][0]["error_code"].clone()));
    }
    // One promotes; the others are told it is running (409) or done (404).
    assert_eq!(
        answers.iter().filter(|(s, _)| *s == 200).count(),
        1,
        "{answers:?}"
    );
    for (status, code) in answers.iter().filter(|(s, _)| *s != 200) {
        assert!(
            (*status == 409 && code == "promotion_in_progress")
                || (*status == 404 && code == "integration_not_found"),
            "{answers:?}"
        );
    }
    let s = p.service("two").await;
    assert_eq!(s["keyhaven_role"], "primary");
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
