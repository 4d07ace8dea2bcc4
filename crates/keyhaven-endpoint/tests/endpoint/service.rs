//! `service` listeners: plain TCP and TLS in front of one valkey-server.

use crate::harness::*;
use keyhaven_endpoint::Routes;

#[tokio::test]
async fn a_plain_service_listener_forwards_both_ways() {
    let primary = Valkey::start("primary").await;
    let port = free_port();
    let _endpoint = Endpoint::started(&Routes {
        listeners: vec![service("svc", port, &primary, None)],
    })
    .await;
    let mut through = wait_for("the listener", async || Resp::connect(port).await.ok()).await;
    assert_eq!(through.cmd(&["SET", "k", "through"]).await.unwrap(), "OK");
    let mut direct = Resp::connect(primary.port).await.unwrap();
    assert_eq!(direct.cmd(&["GET", "k"]).await.unwrap(), "through");
    direct.cmd(&["SET", "k", "direct"]).await.unwrap();
    assert_eq!(through.cmd(&["GET", "k"]).await.unwrap(), "direct");
}

#[tokio::test]
async fn tls_is_served_with_the_certificate_of_the_routes() {
    let primary = Valkey::start("primary").await;
    let ca = TestCa::new("project CA");
    let leaf = ca.leaf(1);
    let certs = tempfile::tempdir().unwrap();
    let tls = install_leaf(certs.path(), &leaf);
    let port = free_port();
    let _endpoint = Endpoint::started(&Routes {
        listeners: vec![service("svc", port, &primary, Some(tls))],
    })
    .await;

    // Verified against the CA, for the name 127.0.0.1 (the certificate's SAN).
    let stream = wait_for("a TLS handshake", async || {
        tls_connect(&ca.client(), port).await.ok()
    })
    .await;
    assert_eq!(presented(&stream), leaf.der);
    let mut conn = Resp::new(stream);
    assert_eq!(conn.cmd(&["PING"]).await.unwrap(), "PONG");
    assert_eq!(conn.cmd(&["SET", "k", "over tls"]).await.unwrap(), "OK");
    let mut direct = Resp::connect(primary.port).await.unwrap();
    assert_eq!(direct.cmd(&["GET", "k"]).await.unwrap(), "over tls");

    let stranger = TestCa::new("another CA");
    let err = tls_connect(&stranger.client(), port)
        .await
        .expect_err("a client trusting another CA refuses the certificate");
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
}
