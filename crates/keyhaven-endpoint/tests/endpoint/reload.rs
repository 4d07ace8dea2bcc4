//! Reloads: what changes for new connections, and what open connections keep.

use crate::harness::*;
use keyhaven_endpoint::Routes;
use tokio::net::TcpStream;

#[tokio::test]
async fn a_reload_keeps_the_open_connections_of_unchanged_listeners() {
    let primary = Valkey::start("primary").await;
    let a = Valkey::start("a").await;
    let b = Valkey::start("b").await;
    let (svc_port, reader_port) = (free_port(), free_port());
    let svc = service("svc", svc_port, &primary, None);
    let mut read = reader(reader_port, &primary, vec![a.replica(Some(3))], now_ms());
    let endpoint = Endpoint::started(&Routes {
        listeners: vec![svc.clone(), read.clone()],
    })
    .await;
    let mut open = wait_for("the service listener", async || {
        Resp::connect(svc_port).await.ok()
    })
    .await;
    assert_eq!(open.tag().await, "primary");

    // The reader's replica list changes; the service listener does not.
    reader_mut(&mut read).replicas = vec![b.replica(Some(3))];
    endpoint
        .write_routes(&Routes {
            listeners: vec![svc.clone(), read.clone()],
        })
        .await;
    let mut through_reader = Resp::connect(reader_port).await.unwrap();
    assert_eq!(through_reader.tag().await, "b");
    assert_eq!(open.cmd(&["SET", "still", "open"]).await.unwrap(), "OK");
    assert_eq!(open.tag().await, "primary");
}

#[tokio::test]
async fn a_new_certificate_serves_new_handshakes_and_open_sessions_go_on() {
    let primary = Valkey::start("primary").await;
    let ca = TestCa::new("project CA");
    let (first, second) = (ca.leaf(1), ca.leaf(2));
    let certs = tempfile::tempdir().unwrap();
    let tls = install_leaf(certs.path(), &first);
    let port = free_port();
    let _endpoint = Endpoint::started(&Routes {
        listeners: vec![service("svc", port, &primary, Some(tls))],
    })
    .await;
    let client = ca.client();
    let stream = wait_for("a TLS handshake", async || {
        tls_connect(&client, port).await.ok()
    })
    .await;
    assert_eq!(presented(&stream), first.der);
    let mut open = Resp::new(stream);
    assert_eq!(open.cmd(&["PING"]).await.unwrap(), "PONG");

    // Rotated on disk, the routes file untouched.
    install_leaf(certs.path(), &second);
    let stream = wait_for("a handshake with the new certificate", async || {
        let s = tls_connect(&client, port).await.ok()?;
        (presented(&s) == second.der).then_some(s)
    })
    .await;
    let mut fresh = Resp::new(stream);
    assert_eq!(fresh.cmd(&["SET", "k", "v"]).await.unwrap(), "OK");
    assert_eq!(open.cmd(&["GET", "k"]).await.unwrap(), "v");
}

#[tokio::test]
async fn a_removed_listener_closes_its_connections_and_frees_its_port_as_shutdown_does() {
    let primary = Valkey::start("primary").await;
    let (gone, kept) = (free_port(), free_port());
    let endpoint = Endpoint::started(&Routes {
        listeners: vec![
            service("gone", gone, &primary, None),
            service("kept", kept, &primary, None),
        ],
    })
    .await;
    let mut on_gone = wait_for("the listener", async || Resp::connect(gone).await.ok()).await;
    let mut on_kept = wait_for("the listener", async || Resp::connect(kept).await.ok()).await;
    assert_eq!(on_gone.tag().await, "primary");

    endpoint
        .write_routes(&Routes {
            listeners: vec![service("kept", kept, &primary, None)],
        })
        .await;
    assert!(on_gone.is_closed().await);
    // Free: something else may bind it now.
    std::net::TcpListener::bind(("127.0.0.1", gone)).expect("the port is free");
    assert_eq!(on_kept.tag().await, "primary");

    // Shutting the endpoint down does the same to every listener.
    endpoint.stop().await;
    assert!(on_kept.is_closed().await);
    std::net::TcpListener::bind(("127.0.0.1", kept)).expect("the port is free");
}

#[tokio::test]
async fn a_malformed_routes_file_keeps_the_routes_in_force() {
    let primary = Valkey::start("primary").await;
    let (port, later) = (free_port(), free_port());
    let svc = service("svc", port, &primary, None);
    let endpoint = Endpoint::started(&Routes {
        listeners: vec![svc.clone()],
    })
    .await;
    let mut open = wait_for("the listener", async || Resp::connect(port).await.ok()).await;

    endpoint.write_raw(br#"{"listeners": [{"name": "svc", "#);
    let file = endpoint.routes_file();
    wait_for("the parse error in the log", async || {
        (!log_lines(&[&file, "cannot use the new routes"]).is_empty()).then_some(())
    })
    .await;
    assert_eq!(open.tag().await, "primary");
    let mut new = Resp::connect(port).await.unwrap();
    assert_eq!(new.tag().await, "primary");

    // The next good file applies.
    endpoint
        .write_routes(&Routes {
            listeners: vec![svc, service("later", later, &primary, None)],
        })
        .await;
    let mut on_later = wait_for("the new listener", async || {
        TcpStream::connect(("127.0.0.1", later))
            .await
            .ok()
            .map(Resp::new)
    })
    .await;
    assert_eq!(on_later.tag().await, "primary");
}
