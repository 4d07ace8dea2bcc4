//! The service API: create, read, delete, auth and bad input, over real HTTP.

use crate::harness::*;
use redis::AsyncCommands;
use serde_json::{Value, json};
use std::time::Duration;

fn assert_aiven_error(body: &Value, status: u16, code: &str) {
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "no message: {body}"
    );
    assert_eq!(body["errors"][0]["status"], status, "{body}");
    assert_eq!(body["errors"][0]["error_code"], code, "{body}");
    assert_eq!(body["errors"][0]["message"], body["message"], "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn created_service_runs_and_serves_set_get_through_its_uri() {
    let p = Platform::start().await;
    let created = p.create("cache", "startup-4", None).await;
    assert_eq!(created["state"], "REBUILDING");
    assert!(
        created["service_uri"]
            .as_str()
            .unwrap()
            .starts_with("rediss://default:")
    );

    let s = p.wait_running("cache").await;
    for key in [
        "cloud_name",
        "create_time",
        "update_time",
        "group_list",
        "plan",
        "project_vpc_id",
        "service_integrations",
        "service_name",
        "service_type",
        "service_uri",
        "state",
        "termination_protection",
        "user_config",
        "components",
        "users",
        "connection_info",
        "service_uri_params",
        "node_states",
    ] {
        assert!(s.get(key).is_some(), "service object lacks {key}: {s}");
    }
    assert_eq!(s["cloud_name"], "local");
    assert_eq!(s["users"][0]["username"], "default");
    assert!(s["users"][0]["password"].as_str().unwrap().len() >= 24);

    let mut con = valkey(&s).await;
    let _: () = con.set("greeting", "hello").await.unwrap();
    let got: String = con.get("greeting").await.unwrap();
    assert_eq!(got, "hello");

    // The service user cannot run the commands Aiven restricts.
    for cmd in [
        vec!["CONFIG", "GET", "maxmemory"],
        vec!["REPLICAOF", "NO", "ONE"],
        vec!["ACL", "LIST"],
        vec!["SHUTDOWN"],
        vec!["BGSAVE"],
        vec!["FAILOVER"],
        vec!["MONITOR"],
    ] {
        let err = redis::cmd(cmd[0])
            .arg(&cmd[1..])
            .query_async::<Value2>(&mut con)
            .await;
        assert!(err.is_err(), "{cmd:?} was allowed");
    }

    let (status, list) = p.call("GET", "/v1/project/default/service", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["services"].as_array().unwrap().len(), 1);
}

type Value2 = redis::Value;

#[tokio::test(flavor = "multi_thread")]
async fn bad_or_missing_tokens_get_403_and_both_schemes_work_in_any_case() {
    let p = Platform::start().await;
    let resp = p.http.get(p.url("/v1/project")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_aiven_error(&body, 403, "authentication_failed");

    for header in [
        "aivenv1 wrong",
        "Basic abc",
        "bearer",
        &format!("token {}", p.token),
    ] {
        let resp = p
            .http
            .get(p.url("/v1/project"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{header}");
    }
    for scheme in ["aivenv1", "AIVENV1", "bearer", "Bearer", "BEARER"] {
        let resp = p
            .http
            .get(p.url("/v1/project"))
            .header("authorization", format!("{scheme} {}", p.token))
            .header("content-type", "application/octet-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{scheme}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["projects"][0]["project_name"], "default");
    }
    // Open endpoints.
    assert_eq!(
        p.http
            .get(p.url("/v1/clouds"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        p.http.get(p.url("/healthz")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_clear_errors_and_creates_nothing() {
    let p = Platform::start().await;
    let svc = "/v1/project/default/service";
    let cases = [
        (
            json!({"service_name": "Bad_Name", "service_type": "valkey", "plan": "startup-4"}),
            400,
            "invalid_name",
        ),
        (
            json!({"service_name": "../etc", "service_type": "valkey", "plan": "startup-4"}),
            400,
            "invalid_name",
        ),
        (
            json!({"service_name": "a".repeat(64), "service_type": "valkey", "plan": "startup-4"}),
            400,
            "invalid_name",
        ),
        (
            json!({"service_name": "ok", "service_type": "valkey", "plan": "gold"}),
            400,
            "unknown_plan",
        ),
        (
            json!({"service_name": "ok", "service_type": "kafka", "plan": "startup-4"}),
            400,
            "unknown_service_type",
        ),
        (
            json!({"service_name": "ok", "service_type": "valkey", "plan": "startup-4", "cloud": "aws-eu-west-1"}),
            400,
            "unknown_cloud",
        ),
        (
            json!({"service_name": "ok", "service_type": "valkey", "plan": "startup-4", "user_config": {"nope": 1}}),
            400,
            "invalid_user_config",
        ),
        (
            json!({"service_name": "ok", "service_type": "valkey", "plan": "startup-4", "project": "other"}),
            400,
            "project_mismatch",
        ),
        (
            json!({"service_name": 5, "service_type": "valkey", "plan": "startup-4"}),
            400,
            "invalid_json",
        ),
    ];
    for (body, status, code) in cases {
        let (got, resp) = p.call("POST", svc, Some(body.clone())).await;
        assert_eq!(got, status, "{body} -> {resp}");
        assert_aiven_error(&resp, status, code);
    }
    let (status, body) = p
        .call(
            "POST",
            svc,
            Some(json!({"service_name": "ok", "service_type": "valkey", "plan": "startup-4"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["service"]["service_name"] == "ok");
    let msg_plan = p
        .call(
            "POST",
            svc,
            Some(json!({"service_name": "x", "service_type": "valkey", "plan": "gold"})),
        )
        .await
        .1;
    assert!(
        msg_plan["message"].as_str().unwrap().contains("startup-4"),
        "{msg_plan}"
    );

    // Malformed JSON, an oversized body, unknown objects.
    let resp = p
        .http
        .post(p.url(svc))
        .header("authorization", format!("aivenv1 {}", p.token))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_aiven_error(&resp.json().await.unwrap(), 400, "invalid_json");
    // Its own client: the server answers 413 without reading the whole body and closes
    // that connection, which must not be reused for the next request.
    let resp = reqwest::Client::new()
        .post(p.url(svc))
        .header("authorization", format!("aivenv1 {}", p.token))
        .body(vec![b' '; 200 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_aiven_error(&resp.json().await.unwrap(), 413, "request_too_large");
    let (status, body) = p
        .call(
            "POST",
            svc,
            Some(json!({"service_name": "ok", "service_type": "valkey", "plan": "startup-4"})),
        )
        .await;
    assert_eq!(status, 409);
    assert_aiven_error(&body, 409, "service_exists");
    let (status, body) = p
        .call("GET", "/v1/project/default/service/missing", None)
        .await;
    assert_eq!(status, 404);
    assert_aiven_error(&body, 404, "service_not_found");
    let (status, body) = p.call("GET", "/v1/project/nope/service", None).await;
    assert_eq!(status, 404);
    assert_aiven_error(&body, 404, "project_not_found");
    let (status, _) = p.call("GET", "/v1/no/such/endpoint", None).await;
    assert_eq!(status, 404);

    // Only the one valid service exists, and only its node runs.
    let (_, list) = p.call("GET", svc, None).await;
    assert_eq!(list["services"].as_array().unwrap().len(), 1, "{list}");
    p.wait_running("ok").await;
    assert_eq!(p.running_nodes().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_reaches_only_its_own_projects() {
    let p = Platform::start().await;
    let (status, body) = p
        .call("POST", "/v1/user", Some(json!({"email": "dev@example.com", "password": "correct horse", "real_name": "Dev"})))
        .await;
    assert_eq!(status, 200, "{body}");
    let dev_token = body["token"].as_str().unwrap().to_string();

    // Sign-in with the password gives another working token.
    let resp = p
        .http
        .post(p.url("/v1/userauth"))
        .json(&json!({"email": "dev@example.com", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let login: Value = resp.json().await.unwrap();
    let login_token = login["token"].as_str().unwrap();
    let resp = p
        .http
        .post(p.url("/v1/userauth"))
        .json(&json!({"email": "dev@example.com", "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    let (status, body) = p
        .call_as(
            &dev_token,
            "POST",
            "/v1/project",
            Some(json!({"project": "dev-proj", "cloud": null})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["project"]["project_name"], "dev-proj");
    let (_, mine) = p.call_as(login_token, "GET", "/v1/project", None).await;
    assert_eq!(mine["projects"].as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine["projects"][0]["project_name"], "dev-proj");

    // The admin's project is invisible to dev, exactly like a missing one, and vice versa.
    let (status, body) = p
        .call_as(&dev_token, "GET", "/v1/project/default/service", None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["message"], "Project 'default' does not exist");
    let (status, _) = p.call("GET", "/v1/project/dev-proj", None).await;
    assert_eq!(status, 404);
    // Only the admin creates users.
    let (status, _) = p
        .call_as(
            &dev_token,
            "POST",
            "/v1/user",
            Some(json!({"email": "x@y.z", "password": "12345678"})),
        )
        .await;
    assert_eq!(status, 403);
    // An invite makes the project visible.
    let (status, _) = p
        .call_as(
            &dev_token,
            "POST",
            "/v1/project/dev-proj/invite",
            Some(json!({"user_email": "admin@localhost"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = p.call("GET", "/v1/project/dev-proj", None).await;
    assert_eq!(status, 200);
    // Revoked tokens stop working.
    let (status, _) = p
        .call_as(
            login_token,
            "DELETE",
            &format!("/v1/access_token/{login_token}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = p.call_as(login_token, "GET", "/v1/project", None).await;
    assert_eq!(status, 403);
    let _ = Duration::ZERO;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_service_stops_its_process_and_frees_its_port() {
    let p = Platform::start().await;
    p.create("doomed", "hobbyist", None).await;
    let s = p.wait_running("doomed").await;
    let pid = p.node_pid(&s);
    let port = node_port(&s);
    assert!(!port_is_free(port));

    let (status, body) = p
        .call("DELETE", "/v1/project/default/service/doomed", None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = p
        .call("GET", "/v1/project/default/service/doomed", None)
        .await;
    assert_eq!(status, 404);
    wait_for(
        "the process to exit and the port to be free",
        Duration::from_secs(20),
        async || (!pid_alive(pid) && port_is_free(port)).then_some(()),
    )
    .await;
    assert!(p.running_nodes().is_empty());
    // The name is free again at once.
    p.create("doomed", "hobbyist", None).await;
    p.wait_running("doomed").await;
}

/// Sends raw bytes on a new connection and reads until the server closes it.
async fn raw_http(p: &Platform, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut con = tokio::net::TcpStream::connect(p.base.trim_start_matches("http://"))
        .await
        .unwrap();
    con.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), con.read_to_end(&mut out))
        .await
        .expect("the server closes the connection")
        .unwrap();
    String::from_utf8(out).unwrap()
}

/// One response out of `text`: (status, JSON body, the rest).
fn parse_response(text: &str) -> (u16, Value, &str) {
    let (head, rest) = text.split_once("\r\n\r\n").expect("a complete head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("a content-length");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let body = serde_json::from_str(&rest[..len])
        .unwrap_or_else(|e| panic!("a {status} without a JSON body ({e}): {text:?}"));
    (status, body, &rest[len..])
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_has_aivens_shape_even_those_hyper_answers_itself() {
    let p = Platform::start().await;
    // A 100 KB URL: over the 64 KiB hyper (and the `http` crate) can hold, so hyper answers
    // before the router sees it. reqwest cannot even build such a request; raw HTTP can.
    let long = format!(
        "GET /v1/project/{} HTTP/1.1\r\nhost: x\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let (status, body, _) = parse_response(&raw_http(&p, long.as_bytes()).await);
    assert_eq!(status, 414);
    assert_aiven_error(&body, 414, "uri_too_long");
    // Bytes that are not HTTP.
    let (status, body, _) =
        parse_response(&raw_http(&p, b"G\x01T / HTTP/1.1\r\nhost: x\r\n\r\n").await);
    assert_eq!(status, 400);
    assert_aiven_error(&body, 400, "invalid_request");
    // Behind an ordinary response on the same connection (pipelined), both intact.
    let pipelined = format!("GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n{long}");
    let text = raw_http(&p, pipelined.as_bytes()).await;
    let (status, body, rest) = parse_response(&text);
    assert_eq!(
        (status, &body["status"]),
        (200, &Value::from("ok")),
        "{text:?}"
    );
    let (status, body, rest) = parse_response(rest);
    assert_eq!(status, 414);
    assert_aiven_error(&body, 414, "uri_too_long");
    assert_eq!(rest, "");

    // 405 and 404 from the router, with any token or none.
    for (method, path) in [
        ("PUT", "/v1/project"),
        ("DELETE", "/v1/project/default"),
        ("PATCH", "/v1/project/default/service/x"),
        ("POST", "/healthz"),
    ] {
        let (status, body) = p.call(method, path, None).await;
        assert_eq!(status, 405, "{method} {path}: {body}");
        assert_aiven_error(&body, 405, "method_not_allowed");
    }
    let (status, body) = p.call("GET", "/v1/no/such/endpoint", None).await;
    assert_eq!(status, 404);
    assert_aiven_error(&body, 404, "not_found");

    // The server goes on serving.
    let (status, _) = p.call("GET", "/v1/project", None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_is_not_a_json_object_is_refused_and_creates_nothing() {
    let p = Platform::start().await;
    for body in [
        r#"["arr-svc", "valkey", "hobbyist"]"#,
        "[]",
        "\"text\"",
        "42",
    ] {
        let resp = p
            .http
            .post(p.url("/v1/project/default/service"))
            .header("authorization", format!("aivenv1 {}", p.token))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{body}");
        let answer: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(answer["errors"][0]["error_code"], "invalid_json", "{body}");
    }
    let resp = p
        .http
        .post(p.url("/v1/access_token"))
        .header("authorization", format!("aivenv1 {}", p.token))
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let (_, list) = p.call("GET", "/v1/project/default/service", None).await;
    assert_eq!(list["services"], serde_json::json!([]));
    assert!(p.running_nodes().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_protected_service_cannot_be_deleted_and_keeps_running() {
    let p = Platform::start().await;
    let (status, body) = p
        .call(
            "POST",
            "/v1/project/default/service",
            Some(json!({"service_name": "guarded", "service_type": "valkey",
                        "plan": "startup-4", "termination_protection": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["service"]["termination_protection"], true, "{body}");
    let s = p.wait_running("guarded").await;
    let mut con = valkey(&s).await;
    let _: () = con.set("kept", "yes").await.unwrap();
    let pid = p.node_pid(&s);

    for _ in 0..2 {
        let (status, body) = p
            .call("DELETE", "/v1/project/default/service/guarded", None)
            .await;
        assert_eq!(status, 403, "{body}");
        assert_aiven_error(&body, 403, "termination_protected");
    }
    // Still there, still RUNNING, same process, same data.
    let s = p.service("guarded").await;
    assert_eq!(s["state"], "RUNNING", "{s}");
    assert_eq!(s["termination_protection"], true);
    assert_eq!(p.node_pid(&s), pid);
    assert!(pid_alive(pid));
    let v: Option<String> = con.get("kept").await.unwrap();
    assert_eq!(v.as_deref(), Some("yes"));
    assert_eq!(p.running_nodes(), vec![pid]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_must_be_in_its_primarys_project() {
    let p = Platform::start().await;
    let (status, body) = p
        .call("POST", "/v1/project", Some(json!({"project": "other"})))
        .await;
    assert_eq!(status, 200, "{body}");
    let create = async |project: &str, name: &str, source: Value| {
        p.call(
            "POST",
            &format!("/v1/project/{project}/service"),
            Some(
                json!({"service_name": name, "service_type": "valkey", "plan": "startup-4",
                        "service_integrations": [source]}),
            ),
        )
        .await
    };
    let primary = |project: Option<&str>| {
        let mut item = json!({"integration_type": "read_replica", "source_service": "origin"});
        if let Some(project) = project {
            item["source_project"] = json!(project);
        }
        item
    };
    // A primary of the same name in both projects: a cross-project request must not be
    // quietly attached to the one in its own project.
    for project in ["default", "other"] {
        let (status, body) = p
            .call(
                "POST",
                &format!("/v1/project/{project}/service"),
                Some(json!({"service_name": "origin", "service_type": "valkey",
                            "plan": "startup-4"})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    p.wait_running("origin").await;

    for (project, source_project) in [("default", "other"), ("other", "default")] {
        let (status, body) = create(project, "stray", primary(Some(source_project))).await;
        assert_eq!(status, 400, "{project} <- {source_project}: {body}");
        assert_aiven_error(&body, 400, "cross_project_replica");
        assert!(
            body["message"].as_str().unwrap().contains("same project"),
            "{body}"
        );
    }
    // A primary only in another project is not found from this one.
    let (status, body) = p
        .call("POST", "/v1/project", Some(json!({"project": "third"})))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = create("third", "stray", primary(None)).await;
    assert_eq!(status, 404, "{body}");
    assert_aiven_error(&body, 404, "source_service_not_found");

    // Nothing was made: no service named stray anywhere, only the two primaries run, and
    // neither has a link.
    for project in ["default", "other", "third"] {
        let (status, body) = p
            .call("GET", &format!("/v1/project/{project}/service/stray"), None)
            .await;
        assert_eq!(status, 404, "{project}: {body}");
        let (_, body) = p
            .call("GET", &format!("/v1/project/{project}/service"), None)
            .await;
        for s in body["services"].as_array().unwrap() {
            assert_eq!(s["service_integrations"], json!([]), "{s}");
        }
    }
    wait_for(
        "the two primaries only",
        Duration::from_secs(20),
        async || (p.running_nodes().len() == 2).then_some(()),
    )
    .await;

    // The same request within one project is a replica.
    let (status, body) = create("other", "follower", primary(Some("other"))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = p
        .call("GET", "/v1/project/other/service/follower", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["service"]["keyhaven_role"], "replica", "{body}");
}

/// `CONFIG GET key` on a node, through Keyhaven's own admin user.
async fn node_config(p: &Platform, service: &Value, key: &str) -> String {
    let mut admin = p.node_connection(service, "keyhaven-admin").await;
    let got: std::collections::HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(key)
        .query_async(&mut admin)
        .await
        .unwrap();
    got.get(key)
        .unwrap_or_else(|| panic!("no {key} in {got:?}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_node_has_its_plans_maxmemory_and_its_eviction_policy() {
    let p = Platform::start().await;
    p.create("plain", "startup-4", None).await;
    let (status, body) = p
        .call(
            "POST",
            "/v1/project/default/service",
            Some(
                json!({"service_name": "lru", "service_type": "valkey", "plan": "hobbyist",
                        "user_config": {"valkey_maxmemory_policy": "allkeys-lru"}}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let plain = p.wait_running("plain").await;
    let lru = p.wait_running("lru").await;
    assert_eq!(lru["user_config"]["valkey_maxmemory_policy"], "allkeys-lru");

    // 70 % of the plan's node memory: startup-4 = 4 GiB, hobbyist = 1 GiB.
    let seventy_percent = |gib: u64| ((gib << 30) * 70 / 100).to_string();
    assert_eq!(seventy_percent(4), "3006477107");
    assert_eq!(
        node_config(&p, &plain, "maxmemory").await,
        seventy_percent(4)
    );
    assert_eq!(
        node_config(&p, &plain, "maxmemory-policy").await,
        "noeviction"
    );
    assert_eq!(node_config(&p, &lru, "maxmemory").await, seventy_percent(1));
    assert_eq!(
        node_config(&p, &lru, "maxmemory-policy").await,
        "allkeys-lru"
    );
}
