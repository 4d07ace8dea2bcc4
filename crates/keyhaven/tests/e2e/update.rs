//! Changing a service after it exists (`PUT /v1/project/P/service/S`, `avn service
//! update`): plans applied live, user_config, power off and on, termination protection,
//! the replica plan rules, bad input, and credentials resets.

use crate::harness::*;
use redis::AsyncCommands;
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

async fn update(p: &Platform, name: &str, body: Value) -> (u16, Value) {
    p.call(
        "PUT",
        &format!("/v1/project/default/service/{name}"),
        Some(body),
    )
    .await
}

async fn config_get(p: &Platform, service: &Value, key: &str) -> String {
    let mut admin = p.node_connection(service, "keyhaven-admin").await;
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(key)
        .query_async(&mut admin)
        .await
        .unwrap();
    got[1].clone()
}

fn maxmemory_of(gib: u64) -> String {
    (gib * 1024 * 1024 * 1024 * 7 / 10).to_string()
}

async fn wait_state(p: &Platform, name: &str, state: &str) -> Value {
    wait_for(
        &format!("{name} to be {state}"),
        Duration::from_secs(30),
        async || {
            let s = p.service(name).await;
            (s["state"] == state).then_some(s)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_change_is_applied_live_to_the_same_process_and_connections() {
    let p = Platform::start().await;
    p.create("grow", "startup-4", None).await;
    let before = p.wait_running("grow").await;
    let pid = p.node_pid(&before);
    let mut con = valkey(&before).await;
    let _: () = con.set("k", "v").await.unwrap();
    assert_eq!(config_get(&p, &before, "maxmemory").await, maxmemory_of(4));

    let t = Instant::now();
    let (status, body) = update(&p, "grow", json!({"plan": "startup-8", "user_config": {}})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["service"]["plan"], "startup-8");
    assert_eq!(body["service"]["node_memory_mb"], 8192);
    wait_for(
        "maxmemory of startup-8",
        Duration::from_secs(10),
        async || (config_get(&p, &before, "maxmemory").await == maxmemory_of(8)).then_some(()),
    )
    .await;
    eprintln!("plan applied on the node {:?} after the PUT", t.elapsed());
    assert_eq!(p.node_pid(&before), pid, "the node was restarted");
    assert!(pid_alive(pid));
    // The connection opened before the change still works.
    let v: String = con.get("k").await.unwrap();
    assert_eq!(v, "v");
    let _: () = con.set("k2", "v2").await.unwrap();

    // user_config applied live too; GET shows it; an empty one changes nothing.
    let (status, body) = update(
        &p,
        "grow",
        json!({"user_config": {"valkey_maxmemory_policy": "allkeys-lru"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    wait_for(
        "maxmemory-policy allkeys-lru",
        Duration::from_secs(10),
        async || (config_get(&p, &before, "maxmemory-policy").await == "allkeys-lru").then_some(()),
    )
    .await;
    let (status, _) = update(&p, "grow", json!({"user_config": {}, "plan": "startup-8"})).await;
    assert_eq!(status, 200);
    let s = p.service("grow").await;
    assert_eq!(s["user_config"]["valkey_maxmemory_policy"], "allkeys-lru");
    assert_eq!(s["plan"], "startup-8");
    assert_eq!(s["state"], "RUNNING");
    assert_eq!(p.node_pid(&s), pid);
    // The config file carries both for the next start.
    let conf =
        std::fs::read_to_string(p.node_dir_of_port(node_port(&s)).join("valkey.conf")).unwrap();
    assert!(
        conf.contains(&format!("maxmemory {}", maxmemory_of(8))),
        "{conf}"
    );
    assert!(conf.contains("maxmemory-policy allkeys-lru"), "{conf}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_too_small_for_the_data_in_use_is_refused_with_both_figures() {
    let p = Platform::start().await;
    p.create("full", "startup-4", None).await;
    let s = p.wait_running("full").await;
    // Allocating hundreds of MB takes longer than the client's default response timeout.
    let mut con = valkey_client(&s)
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new()
                .set_response_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .unwrap();
    // ~763 MiB in two commands (a string is at most 512 MB): more than hobbyist's
    // maxmemory (70 % of 1 GiB = 716.8 MiB).
    for key in ["big1", "big2"] {
        let _: i64 = redis::cmd("SETRANGE")
            .arg(key)
            .arg(400_000_000u64)
            .arg("x")
            .query_async(&mut con)
            .await
            .unwrap();
    }
    // The check uses the reconciler's last observation: two new observations, the second
    // begun after the first was written, so after the data was there.
    wait_observations(&p, "full", 2).await;
    let (status, body) = update(&p, "full", json!({"plan": "hobbyist"})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["errors"][0]["error_code"], "plan_too_small");
    let msg = body["message"].as_str().unwrap();
    assert!(msg.contains("751619276 bytes"), "the plan's figure: {msg}");
    assert!(msg.contains("holds 76"), "the data's figure: {msg}");
    // Nothing changed.
    let after = p.service("full").await;
    assert_eq!(after["plan"], "startup-4");
    assert_eq!(config_get(&p, &after, "maxmemory").await, maxmemory_of(4));
    // Once the data is gone, the same downgrade is accepted.
    let _: () = con.del(&["big1", "big2"]).await.unwrap();
    wait_for("the downgrade", Duration::from_secs(15), async || {
        let (status, _) = update(&p, "full", json!({"plan": "hobbyist"})).await;
        (status == 200).then_some(())
    })
    .await;
    wait_for(
        "maxmemory of hobbyist",
        Duration::from_secs(10),
        async || (config_get(&p, &after, "maxmemory").await == maxmemory_of(1)).then_some(()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn power_off_keeps_data_and_port_and_power_on_brings_every_write_back() {
    let p = Platform::start().await;
    p.create("sleepy", "startup-4", None).await;
    let s = p.wait_running("sleepy").await;
    let port = node_port(&s);
    let pid = p.node_pid(&s);
    let mut con = valkey(&s).await;
    for i in 0..2000 {
        let _: () = con.set(format!("k{i}"), i).await.unwrap();
    }
    // No WAITAOF: a power-off is a clean stop, every acknowledged write is kept.
    let (status, body) = update(&p, "sleepy", json!({"powered": false})).await;
    assert_eq!(status, 200, "{body}");
    let off = wait_state(&p, "sleepy", "POWEROFF").await;
    assert!(!pid_alive(pid), "valkey-server {pid} still runs");
    assert!(p.running_nodes().is_empty(), "{:?}", p.running_nodes());
    assert!(off["node_states"].as_array().unwrap().is_empty(), "{off}");
    assert!(off["keyhaven_replication"]["error"].is_null(), "{off}");
    let dir = p.node_dir_of_port(port);
    assert!(dir.join("appendonlydir").exists(), "its data is gone");
    // The port stays reserved: a new service gets another one.
    let other = p.create("other", "startup-4", None).await;
    assert_ne!(node_port(&other), port);
    // It stays off across reconciler passes.
    wait_observations(&p, "other", 2).await;
    assert_eq!(p.service("sleepy").await["state"], "POWEROFF");
    assert!(!p.running_nodes().contains(&pid));

    // A powered-off primary gets no replicas (they could never sync).
    let (status, body) = p.try_create("follower", "startup-4", Some("sleepy")).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["errors"][0]["error_code"], "source_powered_off");

    let t = Instant::now();
    let (status, body) = update(&p, "sleepy", json!({"powered": true})).await;
    assert_eq!(status, 200, "{body}");
    let on = p.wait_running("sleepy").await;
    eprintln!("powered on and RUNNING {:?} after the PUT", t.elapsed());
    assert_eq!(node_port(&on), port);
    assert_ne!(p.node_pid(&on), pid);
    let mut con = valkey(&on).await;
    assert_eq!(dbsize(&mut con).await, 2000);
    let v: i64 = con.get("k1999").await.unwrap();
    assert_eq!(v, 1999);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_powered_off_replica_resyncs_and_is_running_only_when_current() {
    let p = Platform::start().await;
    let (primary, _) = primary_and_replica(&p).await;
    // A primary with replicas cannot be powered off.
    let (status, body) = update(&p, "prim", json!({"powered": false})).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("repl"), "{body}");
    assert_eq!(p.service("prim").await["state"], "RUNNING");

    let (status, body) = update(&p, "repl", json!({"powered": false})).await;
    assert_eq!(status, 200, "{body}");
    wait_state(&p, "repl", "POWEROFF").await;
    let mut pc = valkey(&primary).await;
    for i in 0..500 {
        let _: () = pc.set(format!("while-off-{i}"), i).await.unwrap();
    }
    // A powered-off replica cannot be promoted.
    let id = p.link_id("repl").await;
    let (status, body) = p.delete_link(&id).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["errors"][0]["error_code"], "replica_powered_off");

    let stats = |info: String| -> (i64, i64) {
        let get = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}:")))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        (get("sync_partial_ok"), get("sync_full"))
    };
    let mut padmin = p.node_connection(&primary, "keyhaven-admin").await;
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut padmin)
        .await
        .unwrap();
    let (partial_before, full_before) = stats(info);

    let (status, body) = update(&p, "repl", json!({"powered": true})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["service"]["state"], "REBUILDING");
    let on = p.wait_running("repl").await;
    // RUNNING means current: every write made while it was off is there at once.
    let mut rc = valkey(&on).await;
    assert_eq!(dbsize(&mut rc).await, dbsize(&mut pc).await);
    let v: i64 = rc.get("while-off-499").await.unwrap();
    assert_eq!(v, 499);
    assert_eq!(role(&mut rc).await, "slave");
    // It resumed from the snapshot it saved when it stopped: a partial resync.
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut padmin)
        .await
        .unwrap();
    assert_eq!(
        stats(info),
        (partial_before + 1, full_before),
        "not a partial resync"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn termination_protection_is_set_and_cleared_and_refuses_delete_and_power_off() {
    let p = Platform::start().await;
    p.create("guarded", "startup-4", None).await;
    p.wait_running("guarded").await;
    let (status, body) = update(&p, "guarded", json!({"termination_protection": true})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["service"]["termination_protection"], true);
    let (status, body) = p
        .call("DELETE", "/v1/project/default/service/guarded", None)
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errors"][0]["error_code"], "termination_protected");
    let (status, body) = update(&p, "guarded", json!({"powered": false})).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errors"][0]["error_code"], "termination_protected");
    let s = p.service("guarded").await;
    assert_eq!(s["state"], "RUNNING");
    assert!(pid_alive(p.node_pid(&s)));

    let (status, body) = update(&p, "guarded", json!({"termination_protection": false})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["service"]["termination_protection"], false);
    let (status, body) = p
        .call("DELETE", "/v1/project/default/service/guarded", None)
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn replica_plans_must_hold_their_primarys_data() {
    let p = Platform::start().await;
    p.create("big", "startup-8", None).await;
    p.wait_running("big").await;
    let (status, body) = p.try_create("small", "startup-4", Some("big")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["error_code"], "replica_plan_too_small");
    let (missing, _) = p
        .call("GET", "/v1/project/default/service/small", None)
        .await;
    assert_eq!(missing, 404, "the refused replica was created");

    p.create("rep", "startup-8", Some("big")).await;
    p.wait_running("rep").await;
    let (status, body) = update(&p, "rep", json!({"plan": "startup-4"})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["errors"][0]["error_code"], "replica_plan_too_small");
    let (status, body) = update(&p, "rep", json!({"plan": "hobbyist"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["error_code"], "replica_plan_not_allowed");
    // A primary cannot outgrow its replicas: they are named.
    let (status, body) = update(&p, "big", json!({"plan": "startup-14"})).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("rep (startup-8)"),
        "{body}"
    );
    assert_eq!(p.service("big").await["plan"], "startup-8");
    // Grow the replica first, then the primary.
    assert_eq!(
        update(&p, "rep", json!({"plan": "startup-14"})).await.0,
        200
    );
    assert_eq!(
        update(&p, "big", json!({"plan": "startup-14"})).await.0,
        200
    );
    let rep = p.service("rep").await;
    wait_for(
        "the replica's maxmemory",
        Duration::from_secs(10),
        async || (config_get(&p, &rep, "maxmemory").await == maxmemory_of(14)).then_some(()),
    )
    .await;
    assert_eq!(p.service("rep").await["keyhaven_role"], "replica");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_update_input_is_refused_naming_the_key_and_changes_nothing() {
    let p = Platform::start().await;
    p.create("steady", "startup-4", None).await;
    let before = p.wait_running("steady").await;
    let cases = [
        (json!({"plan": "business-4"}), "unknown_plan", "business-4"),
        (json!({"plan": 4}), "invalid_field", "plan"),
        (json!({"user_config": "x"}), "invalid_user_config", "object"),
        (
            json!({"user_config": {"valkey_maxmemory_policy": 5}}),
            "invalid_user_config",
            "valkey_maxmemory_policy",
        ),
        (
            json!({"user_config": {"nope": 1}}),
            "invalid_user_config",
            "nope",
        ),
        (json!({"powered": "yes"}), "invalid_field", "powered"),
        (
            json!({"termination_protection": 1}),
            "invalid_field",
            "termination_protection",
        ),
        (
            json!({"disk_space_mb": 90000}),
            "unsupported_update_key",
            "disk_space_mb",
        ),
        (
            json!({"karapace": true}),
            "unsupported_update_key",
            "karapace",
        ),
        (
            json!({"project_vpc_id": "vpc-1"}),
            "unsupported_update_key",
            "project_vpc_id",
        ),
        (
            json!({"cloud": "aws-eu-west-1"}),
            "cloud_change_unsupported",
            "aws-eu-west-1",
        ),
        (
            json!({"plan": "startup-8", "maintenance": {"dow": "monday"}}),
            "unsupported_update_key",
            "maintenance",
        ),
    ];
    for (body, code, named) in cases {
        let (status, answer) = update(&p, "steady", body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["errors"][0]["error_code"], code, "{body}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(named),
            "{body}: {answer}"
        );
    }
    let after = p.service("steady").await;
    for key in [
        "plan",
        "user_config",
        "state",
        "termination_protection",
        "update_time",
    ] {
        assert_eq!(after[key], before[key], "{key} changed");
    }
    assert_eq!(config_get(&p, &after, "maxmemory").await, maxmemory_of(4));
    // Nulls, the same cloud and an empty user_config change nothing and are fine.
    let (status, body) = update(
        &p,
        "steady",
        json!({"disk_space_mb": null, "project_vpc_id": null, "cloud": "local",
               "user_config": {}, "plan": null}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["service"]["update_time"], before["update_time"]);
    assert_eq!(update(&p, "ghost", json!({})).await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_credentials_reset_works_when_it_answers_and_replication_keeps_running() {
    let p = Platform::start().await;
    let (primary, replica) = primary_and_replica(&p).await;
    let (status, body) = p
        .call(
            "PUT",
            "/v1/project/default/service/prim/credentials/reset",
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let new = body["service"].clone();
    assert_ne!(new["service_uri"], primary["service_uri"]);
    // The new password works at once, the old one no longer does.
    let mut con = valkey(&new).await;
    let _: () = con.set("after-reset", "1").await.unwrap();
    // The old object still carries the old password.
    let old = valkey_client(&primary)
        .get_multiplexed_async_connection()
        .await;
    assert!(old.is_err(), "the old password still works");
    assert_eq!(p.service("prim").await["service_uri"], new["service_uri"]);
    // Replication has its own user: the write reaches the replica.
    let mut rc = valkey(&replica).await;
    wait_for(
        "replication after the reset",
        Duration::from_secs(5),
        async || {
            let v: Option<String> = rc.get("after-reset").await.unwrap();
            v
        },
    )
    .await;
    assert_eq!(p.service("repl").await["state"], "RUNNING");
    // The reader endpoint never re-authenticates: the replica's service user follows its
    // primary's new password, and no longer takes the old one.
    let replica_port = node_port(&replica);
    wait_for(
        "the reader endpoint to take the new password on the replica",
        Duration::from_secs(10),
        async || {
            let mut con = valkey_client_for(&new, "replica")
                .get_multiplexed_async_connection()
                .await
                .ok()?;
            (server_port(&mut con).await? == replica_port).then_some(())
        },
    )
    .await;
    let old_on_reader = valkey_client_for(&primary, "replica")
        .get_multiplexed_async_connection()
        .await;
    assert!(
        old_on_reader.is_err(),
        "the old password still works through the reader"
    );

    // A node that does not answer: 503, and nothing changed.
    let pid = p.node_pid(&new);
    signal(pid, "-STOP");
    let (status, body) = p
        .call(
            "PUT",
            "/v1/project/default/service/prim/credentials/reset",
            None,
        )
        .await;
    signal(pid, "-CONT");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["errors"][0]["error_code"], "node_unavailable");
    assert_eq!(p.service("prim").await["service_uri"], new["service_uri"]);
    let mut con = valkey(&new).await;
    let _: () = con.set("still", "1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_service_shows_no_error_while_it_waits_for_its_first_start() {
    let p = Platform::start().await;
    let mut seen = Vec::new();
    for (name, replica_of) in [("fresh", None), ("fresh-replica", Some("fresh"))] {
        p.create(name, "startup-4", replica_of).await;
        wait_for(
            &format!("{name} RUNNING"),
            Duration::from_secs(30),
            async || {
                let s = p.service(name).await;
                seen.push(s["keyhaven_replication"]["error"].clone());
                (s["state"] == "RUNNING").then_some(())
            },
        )
        .await;
    }
    assert!(seen.len() > 2, "too few polls to mean anything");
    assert!(
        seen.iter().all(Value::is_null),
        "errors while starting: {seen:?}"
    );
}

/// The real `avn service update` (and credentials-reset) against Keyhaven.
#[tokio::test(flavor = "multi_thread")]
async fn avn_service_update_changes_plan_policy_power_and_protection() {
    let p = Platform::start().await;
    let config_dir = tempfile::tempdir().unwrap();
    let avn = |args: &str| {
        let out = Command::new(workspace_root().join(".venv/bin/avn"))
            .args(["--url", &p.base])
            .args(args.split_whitespace())
            .env("AIVEN_CONFIG_DIR", config_dir.path())
            .env("AIVEN_AUTH_TOKEN", &p.token)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "avn {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    avn("service create -t valkey -p startup-4 --project default upd");
    avn("service wait --project default upd");
    let s = p.service("upd").await;
    let pid = p.node_pid(&s);

    avn("service update --project default -p startup-8 upd");
    wait_for(
        "maxmemory of startup-8",
        Duration::from_secs(10),
        async || (config_get(&p, &s, "maxmemory").await == maxmemory_of(8)).then_some(()),
    )
    .await;
    avn("service update --project default -c valkey_maxmemory_policy=allkeys-lru upd");
    wait_for("allkeys-lru", Duration::from_secs(10), async || {
        (config_get(&p, &s, "maxmemory-policy").await == "allkeys-lru").then_some(())
    })
    .await;
    assert_eq!(p.node_pid(&s), pid);
    let got = p.service("upd").await;
    assert_eq!(got["plan"], "startup-8");
    assert_eq!(got["user_config"]["valkey_maxmemory_policy"], "allkeys-lru");

    avn("service update --project default --enable-termination-protection upd");
    assert_eq!(p.service("upd").await["termination_protection"], true);
    avn("service update --project default --disable-termination-protection upd");
    assert_eq!(p.service("upd").await["termination_protection"], false);

    let mut con = valkey(&got).await;
    let _: () = con.set("kept", "1").await.unwrap();
    avn("service update --project default --power-off upd");
    wait_state(&p, "upd", "POWEROFF").await;
    assert!(!pid_alive(pid));
    avn("service update --project default --power-on upd");
    avn("service wait --project default upd");
    let on = p.service("upd").await;
    let mut con = valkey(&on).await;
    let v: String = con.get("kept").await.unwrap();
    assert_eq!(v, "1");

    avn("service credentials-reset --project default upd");
    let reset = p.service("upd").await;
    assert_ne!(reset["service_uri"], on["service_uri"]);
    let mut con = valkey(&reset).await;
    let _: () = con.set("new-password", "1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_during_a_promotion_is_refused() {
    // A frozen primary holds the promotion in its PING wait, with the link `promoting`,
    // for as long as the timeout: a window the test can rely on.
    let p = Platform::start_with(&["--promotion-ping-timeout-ms", "4000"]).await;
    let (primary, _) = primary_and_replica(&p).await;
    let link = p.link_id("repl").await;
    let pid = p.node_pid(&primary);
    signal(pid, "-STOP");
    let base = p.base.clone();
    let token = p.token.clone();
    let promotion = tokio::spawn(async move {
        reqwest::Client::new()
            .delete(format!("{base}/v1/project/default/integration/{link}"))
            .header("authorization", format!("aivenv1 {token}"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    wait_for(
        "the link to be promoting",
        Duration::from_secs(3),
        async || {
            let s = p.service("repl").await;
            (s["service_integrations"][0]["active"] == false).then_some(())
        },
    )
    .await;
    for name in ["repl", "prim"] {
        let (status, body) = update(&p, name, json!({"plan": "startup-8"})).await;
        assert_eq!(status, 409, "{name}: {body}");
        assert_eq!(body["errors"][0]["error_code"], "promotion_in_progress");
    }
    let promoted = promotion.await.unwrap();
    signal(pid, "-CONT");
    assert_eq!(
        promoted, 503,
        "the frozen primary's promotion was not refused"
    );
    assert_eq!(p.service("repl").await["plan"], "startup-4");
    // Abandoned: the link is active again, and the update goes through.
    assert_eq!(
        update(&p, "repl", json!({"plan": "startup-8"})).await.0,
        200
    );
}

/// Keyhaven killed right after an update committed (before the reconciler was woken):
/// the next start applies the accepted spec, to the node it adopts.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread")]
async fn a_keyhaven_crash_right_after_an_update_converges_on_the_accepted_spec() {
    let mut p = Platform::start().await;
    p.create("crashy", "startup-4", None).await;
    let s = p.wait_running("crashy").await;
    let pid = p.node_pid(&s);
    let crash_during = async |p: &mut Platform, body: Value| {
        p.stop_server().await;
        p.env = vec![(
            "KEYHAVEN_FAILPOINT".into(),
            "service_update.committed".into(),
        )];
        p.start_server().await;
        // The answer never comes: the server dies handling it.
        let _ = p
            .http
            .put(p.url("/v1/project/default/service/crashy"))
            .header("authorization", format!("aivenv1 {}", p.token))
            .json(&body)
            .send()
            .await;
        p.wait_server_gone().await;
        p.env.clear();
        p.start_server().await;
    };
    crash_during(
        &mut p,
        json!({"plan": "startup-8", "user_config": {"valkey_maxmemory_policy": "allkeys-lru"}}),
    )
    .await;
    assert!(
        p.server_log()
            .contains("failpoint service_update.committed")
    );
    wait_for(
        "the accepted plan on the node",
        Duration::from_secs(20),
        async || {
            (config_get(&p, &s, "maxmemory").await == maxmemory_of(8)
                && config_get(&p, &s, "maxmemory-policy").await == "allkeys-lru")
                .then_some(())
        },
    )
    .await;
    assert_eq!(p.node_pid(&s), pid, "adopted, not restarted");
    assert_eq!(p.service("crashy").await["plan"], "startup-8");

    crash_during(&mut p, json!({"powered": false})).await;
    wait_state(&p, "crashy", "POWEROFF").await;
    assert!(!pid_alive(pid));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_updates_of_one_service_each_take_effect() {
    let p = Platform::start().await;
    p.create("busy", "startup-4", None).await;
    let s = p.wait_running("busy").await;
    let bodies = [
        json!({"plan": "startup-8"}),
        json!({"user_config": {"valkey_maxmemory_policy": "volatile-lru"}}),
        json!({"termination_protection": true}),
    ];
    let answers = put_all_at_once(&p, &bodies).await;
    assert!(answers.iter().all(|s| *s == 200), "{answers:?}");
    // None of the three was lost to another's write of the whole spec.
    let got = p.service("busy").await;
    assert_eq!(got["plan"], "startup-8");
    assert_eq!(
        got["user_config"]["valkey_maxmemory_policy"],
        "volatile-lru"
    );
    assert_eq!(got["termination_protection"], true);
    wait_for(
        "both settings on the node",
        Duration::from_secs(10),
        async || {
            (config_get(&p, &s, "maxmemory").await == maxmemory_of(8)
                && config_get(&p, &s, "maxmemory-policy").await == "volatile-lru")
                .then_some(())
        },
    )
    .await;
}

/// The statuses of PUTs of `busy`, sent at once.
async fn put_all_at_once(p: &Platform, bodies: &[Value]) -> Vec<u16> {
    let mut tasks = tokio::task::JoinSet::new();
    for body in bodies {
        let (http, url, token, body) = (
            p.http.clone(),
            p.url("/v1/project/default/service/busy"),
            p.token.clone(),
            body.clone(),
        );
        tasks.spawn(async move {
            http.put(url)
                .header("authorization", format!("aivenv1 {token}"))
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    tasks.join_all().await
}
