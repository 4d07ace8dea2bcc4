//! Accounts, sign-in, tokens and project names: nothing tells who has an account or what
//! another user's project holds.

use crate::harness::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse battery";

/// Creates a user as the admin; returns their first token.
async fn add_user(p: &Platform, email: &str) -> String {
    let (status, body) = p
        .call(
            "POST",
            "/v1/user",
            Some(json!({"email": email, "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 200, "create {email}: {body}");
    body["token"].as_str().unwrap().to_string()
}

/// `POST /v1/userauth`, answered as (status, body, time taken).
async fn sign_in(p: &Platform, email: &str, password: &str) -> (u16, Value, Duration) {
    let started = Instant::now();
    let resp = p
        .http
        .post(p.url("/v1/userauth"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap();
    (status, body, started.elapsed())
}

/// The fastest and the median of some timings.
fn fastest_and_median(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[0], v[v.len() / 2])
}

/// The store, opened beside the running server (SQLite allows a second connection), for
/// tests that must set up rows the API cannot make.
fn store(p: &Platform) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(p.data().join("keyhaven.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_takes_as_long_for_an_unknown_email_as_for_a_wrong_password() {
    let p = Platform::start().await;
    add_user(&p, "dev@example.com").await;
    // Once each first: the first sign-in of an unknown email makes the dummy hash.
    sign_in(&p, "nobody@example.com", "wrong password").await;
    sign_in(&p, "dev@example.com", "wrong password").await;

    let (mut known, mut unknown, mut no_password) = (Vec::new(), Vec::new(), Vec::new());
    let mut bodies = Vec::new();
    for i in 0..7 {
        let (status, body, t) = sign_in(&p, "dev@example.com", "wrong password").await;
        assert_eq!(status, 403, "{body}");
        known.push(t);
        bodies.push(body);
        let (status, body, t) =
            sign_in(&p, &format!("nobody{i}@example.com"), "wrong password").await;
        assert_eq!(status, 403, "{body}");
        unknown.push(t);
        bodies.push(body);
        // The admin has no password at all: it costs the same too.
        let (status, body, t) = sign_in(&p, "admin@localhost", "wrong password").await;
        assert_eq!(status, 403, "{body}");
        no_password.push(t);
        bodies.push(body);
    }
    let (known, unknown, no_password) = (
        fastest_and_median(known),
        fastest_and_median(unknown),
        fastest_and_median(no_password),
    );
    eprintln!(
        "sign-in (fastest, median): wrong password {known:?}, unknown email {unknown:?}, \
         user without password {no_password:?}"
    );
    // The fastest of each kind is compared: load on the host only ever adds time, so the
    // fastest is each path's own cost (medians swing with other tests on two cores). The
    // bound is generous: it catches a cheap path (1 ms against tens of ms) without flaking.
    assert!(
        unknown.0 * 2 >= known.0,
        "an unknown email answers in {unknown:?}, a wrong password in {known:?}"
    );
    assert!(
        no_password.0 * 2 >= known.0,
        "a user without password answers in {no_password:?}, a wrong password in {known:?}"
    );
    // And the answers are the same.
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
    assert_eq!(
        bodies[0]["errors"][0]["error_code"],
        "authentication_failed"
    );

    // The right password still signs in.
    let (status, body, _) = sign_in(&p, "dev@example.com", PASSWORD).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_email_is_one_account_in_any_letter_case() {
    let p = Platform::start().await;
    let token = add_user(&p, "alice@example.com").await;
    for email in ["ALICE@example.com", "Alice@Example.COM"] {
        let (status, body) = p
            .call(
                "POST",
                "/v1/user",
                Some(json!({"email": email, "password": PASSWORD})),
            )
            .await;
        assert_eq!(status, 409, "{email}: {body}");
        assert_eq!(body["errors"][0]["error_code"], "user_exists", "{body}");
    }
    // Stored and shown folded; sign-in works in either case.
    let (_, me) = p.call_as(&token, "GET", "/v1/me", None).await;
    assert_eq!(me["user"]["user"], "alice@example.com");
    for email in ["alice@example.com", "ALICE@EXAMPLE.COM"] {
        let (status, body, _) = sign_in(&p, email, PASSWORD).await;
        assert_eq!(status, 200, "{email}: {body}");
        assert_eq!(body["user_email"], "alice@example.com");
    }
    // A new user typed in capitals is stored folded too, and invites find it in any case.
    add_user(&p, "Bob@Example.com").await;
    let (status, body, _) = sign_in(&p, "bob@example.com", PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = p
        .call(
            "POST",
            "/v1/project/default/invite",
            Some(json!({"user_email": "BOB@example.COM"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // A member type Aiven does not have is refused, not stored.
    let (status, body) = p
        .call(
            "POST",
            "/v1/project/default/invite",
            Some(json!({"user_email": "bob@example.com", "member_type": "owner'; --"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["error_code"], "invalid_member_type");
}

#[tokio::test(flavor = "multi_thread")]
async fn emails_that_collide_in_an_old_database_stop_the_server_naming_them() {
    let mut p = Platform::start().await;
    add_user(&p, "alice@example.com").await;
    p.stop_server().await;
    // A database as a Keyhaven that compared emails exactly could leave it.
    {
        let db = store(&p);
        db.execute_batch(
            "DROP INDEX users_email_folded;
             INSERT INTO users (email, real_name, is_admin, create_time)
                 VALUES ('ALICE@example.com', '', 0, 0);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let out = std::process::Command::new(BIN)
        .arg("server")
        .args(["--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(p.data())
        .arg("--valkey-server")
        .arg(valkey_server())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("'alice@example.com' (user id 2) and 'ALICE@example.com' (user id 3)"),
        "{stderr}"
    );
    assert!(stderr.contains("case-insensitively"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_project_name_answers_409_and_hides_what_is_inside() {
    let p = Platform::start().await;
    let dev = add_user(&p, "dev@example.com").await;
    p.create("guarded", "hobbyist", None).await;

    // One namespace: the admin's `default` is taken for everyone.
    let (status, body) = p
        .call_as(
            &dev,
            "POST",
            "/v1/project",
            Some(json!({"project": "default", "cloud": null})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["errors"][0]["error_code"], "project_exists");

    // Inside it, every read and change answers exactly as for a project that does not
    // exist at all (the same status, code and message, but for the name).
    let service = json!({"service_name": "mine", "service_type": "valkey", "plan": "hobbyist"});
    let integration = json!({"integration_type": "read_replica", "source_service": "guarded", "dest_service": "mine"});
    let calls = [
        ("GET", "/v1/project/{p}", None),
        ("GET", "/v1/project/{p}/service", None),
        ("GET", "/v1/project/{p}/service/guarded", None),
        ("GET", "/v1/project/{p}/service/guarded/integration", None),
        ("DELETE", "/v1/project/{p}/service/guarded", None),
        ("POST", "/v1/project/{p}/service", Some(service)),
        (
            "POST",
            "/v1/project/{p}/invite",
            Some(json!({"user_email": "dev@example.com"})),
        ),
        ("POST", "/v1/project/{p}/integration", Some(integration)),
        (
            "DELETE",
            "/v1/project/{p}/integration/00000000-0000-0000-0000-000000000000",
            None,
        ),
    ];
    for (method, path, body) in calls {
        let (status, theirs) = p
            .call_as(&dev, method, &path.replace("{p}", "default"), body.clone())
            .await;
        let (missing_status, missing) = p
            .call_as(&dev, method, &path.replace("{p}", "no-such-project"), body)
            .await;
        assert_eq!(status, 404, "{method} {path}: {theirs}");
        assert_eq!(missing_status, 404, "{method} {path}: {missing}");
        assert_eq!(
            theirs.to_string().replace("default", "NAME"),
            missing.to_string().replace("no-such-project", "NAME"),
            "{method} {path}"
        );
    }
    // And nothing changed: the admin's service is still there, no other was made.
    let (_, list) = p.call("GET", "/v1/project/default/service", None).await;
    let names: Vec<&str> = list["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["guarded"]);
    p.wait_running("guarded").await;
    assert_eq!(p.running_nodes().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_listed_and_revoked_by_their_prefix_and_only_by_their_owner() {
    let p = Platform::start().await;
    let dev = add_user(&p, "dev@example.com").await;
    let (status, minted) = p
        .call_as(
            &dev,
            "POST",
            "/v1/access_token",
            Some(json!({"description": "ci"})),
        )
        .await;
    assert_eq!(status, 200, "{minted}");
    let ci = minted["full_token"].as_str().unwrap().to_string();
    assert_eq!(minted["token_prefix"], ci[..10]);

    // Listed by prefix, never in full; the token of the request is marked.
    let (status, list) = p.call_as(&dev, "GET", "/v1/access_token", None).await;
    assert_eq!(status, 200, "{list}");
    let tokens = list["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2, "{list}");
    assert!(!list.to_string().contains(&ci), "a full token is listed");
    let listed = tokens.iter().find(|t| t["description"] == "ci").unwrap();
    assert_eq!(listed["currently_active"], false);
    let own = tokens.iter().find(|t| t["description"] != "ci").unwrap();
    assert_eq!(own["currently_active"], true);
    assert_eq!(own["token_prefix"], dev[..10]);
    let prefix = listed["token_prefix"].as_str().unwrap().to_string();

    // Another user can revoke it neither by its prefix nor in full: 404, as if missing.
    for t in [&prefix, &ci] {
        let (status, body) = p
            .call("DELETE", &format!("/v1/access_token/{t}"), None)
            .await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["errors"][0]["error_code"], "token_not_found");
    }
    assert_eq!(p.call_as(&ci, "GET", "/v1/me", None).await.0, 200);

    // Its owner revokes it by the listed prefix; then it is refused, and gone.
    let (status, body) = p
        .call_as(&dev, "DELETE", &format!("/v1/access_token/{prefix}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = p.call_as(&ci, "GET", "/v1/me", None).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = p
        .call_as(&dev, "DELETE", &format!("/v1/access_token/{prefix}"), None)
        .await;
    assert_eq!(status, 404);
    let (_, list) = p.call_as(&dev, "GET", "/v1/access_token", None).await;
    assert_eq!(list["tokens"].as_array().unwrap().len(), 1, "{list}");

    // Two tokens sharing a prefix (set in the store: 40 random bits rarely collide) are
    // refused rather than guessed; a token from before 10-character prefixes (8 kept) is
    // listed and revoked by its 8.
    let mut more = Vec::new();
    for _ in 0..3 {
        let (_, t) = p
            .call_as(&dev, "POST", "/v1/access_token", Some(json!({})))
            .await;
        more.push(t["full_token"].as_str().unwrap().to_string());
    }
    let db = store(&p);
    for t in &more[..2] {
        db.execute(
            "UPDATE tokens SET token_prefix = 'shared0000' WHERE token_prefix = ?1",
            [&t[..10]],
        )
        .unwrap();
    }
    db.execute(
        "UPDATE tokens SET token_prefix = ?1 WHERE token_prefix = ?2",
        [&more[2][..8], &more[2][..10]],
    )
    .unwrap();
    let (status, body) = p
        .call_as(&dev, "DELETE", "/v1/access_token/shared0000", None)
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["errors"][0]["error_code"], "token_prefix_ambiguous");
    for t in &more[..2] {
        assert_eq!(p.call_as(t, "GET", "/v1/me", None).await.0, 200);
    }
    let (_, list) = p.call_as(&dev, "GET", "/v1/access_token", None).await;
    assert!(
        list["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["token_prefix"] == more[2][..8]),
        "{list}"
    );
    let (status, body) = p
        .call_as(
            &dev,
            "DELETE",
            &format!("/v1/access_token/{}", &more[2][..8]),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(p.call_as(&more[2], "GET", "/v1/me", None).await.0, 403);

    // A full token still revokes itself (`avn user logout`).
    let (status, _) = p
        .call_as(
            &more[0],
            "DELETE",
            &format!("/v1/access_token/{}", more[0]),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(p.call_as(&more[0], "GET", "/v1/me", None).await.0, 403);
}
