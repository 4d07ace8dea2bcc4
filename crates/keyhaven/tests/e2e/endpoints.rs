//! The services' client endpoints through the API, with real clients: TLS with the
//! project's CA (`valkey_ssl`, the default), the reader endpoint routing new connections by
//! measured lag, and endpoints that outlive `keyhaven server`.

use crate::avn::Avn;
use crate::harness::*;
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

/// The port of the valkey-server a new connection of `client` reaches (its `tcp_port`),
/// or `None` when it is refused (a promoted node no longer takes its old primary's
/// password). A TLS handshake on a busy test machine may take longer than the default
/// timeouts.
async fn landed_on(client: &redis::Client) -> Option<u16> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(10)))
        .set_response_timeout(Some(Duration::from_secs(10)));
    let mut con = match client
        .get_multiplexed_async_connection_with_config(&config)
        .await
    {
        Ok(con) => con,
        Err(e) => {
            eprintln!("a reader connection failed: {e}");
            return None;
        }
    };
    server_port(&mut con).await
}

/// The ports `n` new reader connections of `primary` land on, one after another; `None`
/// when one is refused.
async fn try_reader_lands(primary: &Value, n: usize) -> Option<Vec<u16>> {
    let client = valkey_client_for(primary, "replica");
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(landed_on(&client).await?);
    }
    Some(out)
}

/// [`try_reader_lands`], where every connection must get through.
async fn reader_lands(primary: &Value, n: usize) -> Vec<u16> {
    try_reader_lands(primary, n)
        .await
        .expect("a reader connection was refused")
}

#[tokio::test(flavor = "multi_thread")]
async fn services_speak_tls_verified_by_the_projects_ca_and_a_wrong_ca_fails() {
    let p = Platform::start().await;
    p.create("cache", "startup-4", None).await;
    let s = p.wait_running("cache").await;
    let uri = s["service_uri"].as_str().unwrap().to_string();
    assert!(uri.starts_with("rediss://default:"), "{uri}");
    assert_eq!(s["components"][0]["ssl"], true, "{s}");

    // A Valkey client library, trusting the project's CA.
    let mut con = valkey(&s).await;
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("over tls")
        .query_async(&mut con)
        .await
        .unwrap();

    // avn: the CA and the connection info it prints work with valkey-cli as they are.
    let avn = Avn::new(&p);
    avn.ok("project switch default");
    let ca = p.data().join("ca.pem");
    avn.ok(&format!(
        "project ca-get --target-filepath {}",
        ca.display()
    ));
    let avn_uri = avn.ok("service connection-info valkey uri cache");
    assert_eq!(avn_uri.trim(), uri, "avn's URI is the service's");
    let cli = workspace_root().join(".venv/bin/valkey-cli");
    let ca = ca.to_str().unwrap().to_string();
    let out = Command::new(&cli)
        .args([
            "--no-auth-warning",
            "--tls",
            "--cacert",
            &ca,
            "-u",
            avn_uri.trim(),
        ])
        .args(["GET", "k"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "over tls");

    // A CA that did not sign the endpoint's certificate: verification fails.
    let other = p.data().join("other");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=not the project CA"])
        .arg("-keyout")
        .arg(other.with_extension("key"))
        .arg("-out")
        .arg(other.with_extension("pem"))
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let out = Command::new(&cli)
        .args(["--no-auth-warning", "--tls", "--cacert"])
        .arg(other.with_extension("pem"))
        .args(["-u", &uri, "PING"])
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("certificate verify failed"), "{said}");
    install_tls_provider();
    let wrong = redis::Client::build_with_tls(
        uri.as_str(),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(other.with_extension("pem")).unwrap()),
        },
    )
    .unwrap();
    assert!(wrong.get_multiplexed_async_connection().await.is_err());
    // Plain text to the TLS endpoint gets no answer from Valkey.
    let plain = Command::new(&cli)
        .args(["--no-auth-warning", "-u"])
        .arg(uri.replacen("rediss://", "redis://", 1))
        .args(["PING"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&plain.stdout).contains("PONG"),
        "{plain:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn valkey_ssl_false_gives_the_plain_node_and_an_update_turns_tls_on() {
    let p = Platform::start().await;
    let (status, body) = p
        .call(
            "POST",
            "/v1/project/default/service",
            Some(
                json!({"service_name": "plain", "service_type": "valkey", "plan": "startup-4",
                        "user_config": {"valkey_ssl": false}}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let s = p.wait_running("plain").await;
    assert!(
        s["service_uri"].as_str().unwrap().starts_with("redis://"),
        "{s}"
    );
    assert_eq!(
        node_port(&s),
        s["components"][0]["port"].as_u64().unwrap() as u16
    );
    let mut con = valkey(&s).await;
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut con)
        .await
        .unwrap();

    let (status, body) = p
        .call(
            "PUT",
            "/v1/project/default/service/plain",
            Some(json!({"user_config": {"valkey_ssl": true}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let on = body["service"].clone();
    assert!(
        on["service_uri"].as_str().unwrap().starts_with("rediss://"),
        "{on}"
    );
    // The endpoint comes up for it; the plain connection made before keeps working.
    wait_for("the TLS endpoint", Duration::from_secs(10), async || {
        let s = p.service("plain").await;
        let c = valkey_client(&s);
        c.get_multiplexed_async_connection().await.ok().map(|_| ())
    })
    .await;
    let v: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(v, "v");

    // Bad values for these keys: 400 in Aiven's error shape, nothing made or changed.
    for (body, key) in [
        (
            json!({"service_name": "bad", "service_type": "valkey", "plan": "startup-4",
                "user_config": {"valkey_ssl": "yes"}}),
            "valkey_ssl",
        ),
        (
            json!({"service_name": "bad", "service_type": "valkey", "plan": "startup-4",
                "user_config": {"valkey_reader_max_lag_ms": 0}}),
            "valkey_reader_max_lag_ms",
        ),
        (
            json!({"service_name": "bad", "service_type": "valkey", "plan": "startup-4",
                "user_config": {"valkey_reader_fallback": "replica"}}),
            "valkey_reader_fallback",
        ),
    ] {
        let (status, answer) = p
            .call("POST", "/v1/project/default/service", Some(body))
            .await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(key),
            "{answer}"
        );
        assert_eq!(answer["errors"][0]["status"], 400, "{answer}");
    }
    let (status, _) = p.call("GET", "/v1/project/default/service/bad", None).await;
    assert_eq!(status, 404);
    let (status, answer) = p
        .call(
            "PUT",
            "/v1/project/default/service/plain",
            Some(json!({"user_config": {"valkey_reader_max_lag_ms": -1}})),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        p.service("plain").await["user_config"],
        json!({"valkey_ssl": true})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reader_endpoint_skips_a_replica_held_back_until_it_is_current_again() {
    let p = Platform::start().await;
    p.create("prim", "startup-4", None).await;
    let primary = p.wait_running("prim").await;
    // Without replicas the reader endpoint serves the primary itself.
    assert_eq!(reader_lands(&primary, 2).await, [node_port(&primary); 2]);
    assert!(
        primary["connection_info"]["valkey_replica_uri"]
            .as_str()
            .unwrap()
            .starts_with("rediss://")
    );

    p.create("ra", "startup-4", Some("prim")).await;
    p.create("rb", "startup-4", Some("prim")).await;
    let ra = p.wait_running("ra").await;
    let rb = p.wait_running("rb").await;
    let (a, b) = (node_port(&ra), node_port(&rb));
    // Both replicas measured within the bound: new connections spread over both (and
    // never re-authenticate: the primary's password works on each).
    let both = |lands: &[u16]| lands.contains(&a) && lands.contains(&b);
    wait_for(
        "reads spread over both replicas",
        Duration::from_secs(10),
        async || {
            let lands = try_reader_lands(&primary, 6).await?;
            (both(&lands) && lands.iter().all(|l| *l == a || *l == b)).then_some(())
        },
    )
    .await;

    // ra held back: its valkey-server stopped while the primary takes writes, until its
    // measured lag passes the bound (1000 ms by default).
    let pid = p.node_pid(&ra);
    signal(pid, "-STOP");
    let mut w = valkey(&primary).await;
    wait_for(
        "ra's lag past the bound",
        Duration::from_secs(20),
        async || {
            let _: () = redis::cmd("SET")
                .arg("w")
                .arg(1)
                .query_async(&mut w)
                .await
                .unwrap();
            let lag = p.service("ra").await["keyhaven_replication"]["lag_ms"].as_i64();
            lag.filter(|l| *l > 1000).map(|_| ())
        },
    )
    .await;
    // Routing follows within one rewrite of the routes (200 ms): then no new connection
    // reaches ra (a connection there would hang, as ra is stopped).
    // Four in a row on rb: with ra still in the routes, round-robin would send one of them
    // there (and it would hang, or be closed once ra had been out of the bound for the
    // grace).
    wait_for("routing without ra", Duration::from_secs(10), async || {
        let lands = tokio::time::timeout(Duration::from_secs(2), try_reader_lands(&primary, 4))
            .await
            .ok()??;
        (lands == [b; 4]).then_some(())
    })
    .await;
    let lands = tokio::time::timeout(Duration::from_secs(10), reader_lands(&primary, 10))
        .await
        .expect("a reader connection reached the stopped replica");
    assert_eq!(lands, [b; 10]);

    signal(pid, "-CONT");
    // (A connection the phase above left hanging on ra is closed by the endpoint once ra
    // has been out of the bound for the grace; a client reconnects, as here.)
    wait_for(
        "ra taking reader connections again",
        Duration::from_secs(20),
        async || {
            let lands = try_reader_lands(&primary, 6).await?;
            both(&lands).then_some(())
        },
    )
    .await;

    // Promotion and deletion change routing: promoted ra is no replica of prim any more,
    // a deleted rb neither; then the primary serves its reader endpoint again. (A new
    // reader connection in the moment between ra's promotion and the next rewrite of the
    // routes can still reach ra, whose user no longer takes the primary's password: it is
    // refused, and the client connects again.)
    let link = p.link_id("ra").await;
    let (status, body) = p
        .call(
            "DELETE",
            &format!("/v1/project/default/integration/{link}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    wait_for(
        "routing without the promoted ra",
        Duration::from_secs(5),
        async || {
            let lands = try_reader_lands(&primary, 6).await?;
            lands.iter().all(|l| *l == b).then_some(())
        },
    )
    .await;
    let (status, body) = p
        .call("DELETE", "/v1/project/default/service/rb", None)
        .await;
    assert_eq!(status, 200, "{body}");
    let prim = node_port(&primary);
    wait_for(
        "routing to the primary alone",
        Duration::from_secs(5),
        async || {
            let lands = try_reader_lands(&primary, 3).await?;
            (lands == [prim; 3]).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_keyhaven_restart_drops_none_of_100_open_tls_connections() {
    let mut p = Platform::start().await;
    p.create("cache", "startup-4", None).await;
    let s = p.wait_running("cache").await;
    let client = valkey_client(&s);
    let mut conns = Vec::new();
    for _ in 0..100 {
        conns.push(client.get_connection().unwrap());
    }
    let ping_all = |conns: &mut Vec<redis::Connection>| {
        for (i, c) in conns.iter_mut().enumerate() {
            let pong: String = redis::cmd("PING")
                .query(c)
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            assert_eq!(pong, "PONG");
        }
    };
    ping_all(&mut conns);
    let endpoint_pid = std::fs::read_to_string(p.data().join("endpoint/endpoint.pid"))
        .unwrap()
        .trim()
        .to_string();
    p.stop_server().await;
    // The control plane is down: every connection still answers.
    ping_all(&mut conns);
    p.start_server().await;
    p.wait_running("cache").await;
    ping_all(&mut conns);
    // The same endpoint process, adopted.
    assert_eq!(
        std::fs::read_to_string(p.data().join("endpoint/endpoint.pid"))
            .unwrap()
            .trim(),
        endpoint_pid
    );
}
