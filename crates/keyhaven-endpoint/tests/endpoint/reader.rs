//! `reader` listeners: new connections go to the replicas within the lag bound, fewest
//! connections first; without one, to the primary or nowhere; an open connection to a
//! replica that left the bound is closed after the grace.

use crate::harness::*;
use keyhaven_endpoint::{Fallback, Routes};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// `n` new connections through the endpoint, held open, with the backend each reached.
async fn connect_n(port: u16, n: usize) -> (Vec<Resp<TcpStream>>, Vec<String>) {
    let mut conns = Vec::new();
    let mut tags = Vec::new();
    for _ in 0..n {
        let mut conn = Resp::connect(port).await.unwrap();
        tags.push(conn.tag().await);
        conns.push(conn);
    }
    (conns, tags)
}

fn count(tags: &[String], tag: &str) -> usize {
    tags.iter().filter(|t| *t == tag).count()
}

#[tokio::test]
async fn new_connections_follow_the_lag_bound() {
    let primary = Valkey::start("primary").await;
    let a = Valkey::start("a").await;
    let b = Valkey::start("b").await;
    let port = free_port();
    let behind = MAX_LAG_MS + 1;
    let mut listener = reader(
        port,
        &primary,
        vec![a.replica(Some(behind)), b.replica(Some(3))],
        now_ms(),
    );
    let endpoint = Endpoint::started(&Routes {
        listeners: vec![listener.clone()],
    })
    .await;
    wait_for("the listener", async || {
        TcpStream::connect(("127.0.0.1", port)).await.ok()
    })
    .await;

    // a is over the bound: every new connection lands on b.
    let (on_b, tags) = connect_n(port, 20).await;
    assert_eq!(count(&tags, "b"), 20, "{tags:?}");

    // a catches up: it has the fewest connections, so it takes the next 20, and once both
    // hold 20 the connections alternate.
    reader_mut(&mut listener).replicas[0].lag_ms = Some(3);
    endpoint
        .write_routes(&Routes {
            listeners: vec![listener.clone()],
        })
        .await;
    let (on_a, tags) = connect_n(port, 20).await;
    assert_eq!(count(&tags, "a"), 20, "{tags:?}");
    let (both, tags) = connect_n(port, 10).await;
    assert_eq!((count(&tags, "a"), count(&tags, "b")), (5, 5), "{tags:?}");
    drop((on_a, on_b, both));

    // Lag figures older than the bound prove nothing: the primary serves.
    reader_mut(&mut listener).lag_as_of_ms = now_ms() - 2 * MAX_LAG_MS;
    endpoint
        .write_routes(&Routes {
            listeners: vec![listener.clone()],
        })
        .await;
    let (_on_primary, tags) = connect_n(port, 5).await;
    assert_eq!(count(&tags, "primary"), 5, "{tags:?}");

    // ... or nobody, when the reader refuses instead.
    reader_mut(&mut listener).fallback = Fallback::Refuse;
    endpoint
        .write_routes(&Routes {
            listeners: vec![listener.clone()],
        })
        .await;
    let mut refused = Resp::connect(port).await.unwrap();
    assert!(refused.is_closed().await);
}

#[tokio::test]
async fn a_replica_out_of_the_bound_loses_its_connections_after_the_grace() {
    let primary = Valkey::start("primary").await;
    let a = Valkey::start("a").await;
    let port = free_port();
    let mut listener = reader(port, &primary, vec![a.replica(Some(3))], now_ms());
    let endpoint = Endpoint::started(&Routes {
        listeners: vec![listener.clone()],
    })
    .await;
    let mut conn = wait_for("the listener", async || Resp::connect(port).await.ok()).await;
    assert_eq!(conn.tag().await, "a");

    reader_mut(&mut listener).replicas[0].lag_ms = Some(MAX_LAG_MS + 1);
    let written = Instant::now();
    endpoint
        .write_routes(&Routes {
            listeners: vec![listener.clone()],
        })
        .await;
    // New connections go to the primary at once...
    let mut fresh = Resp::connect(port).await.unwrap();
    assert_eq!(fresh.tag().await, "primary");
    // ... the open one is closed once the grace (300 ms) has passed.
    wait_for("the connection to a to be closed", async || {
        conn.is_closed().await.then_some(())
    })
    .await;
    assert!(
        written.elapsed() >= Duration::from_millis(300),
        "closed after {:?}, before the grace",
        written.elapsed()
    );
    // The primary's connection is never closed for the replicas' sake.
    assert_eq!(fresh.tag().await, "primary");
}

#[tokio::test]
async fn a_replica_back_in_the_bound_within_the_grace_keeps_its_connections() {
    let primary = Valkey::start("primary").await;
    let a = Valkey::start("a").await;
    let port = free_port();
    let mut listener = reader(port, &primary, vec![a.replica(Some(3))], now_ms());
    reader_mut(&mut listener).grace_ms = 1000;
    let endpoint = Endpoint::started(&Routes {
        listeners: vec![listener.clone()],
    })
    .await;
    let mut conn = wait_for("the listener", async || Resp::connect(port).await.ok()).await;
    assert_eq!(conn.tag().await, "a");

    let over = Instant::now();
    for lag in [MAX_LAG_MS + 1, 3] {
        reader_mut(&mut listener).replicas[0].lag_ms = Some(lag);
        endpoint
            .write_routes(&Routes {
                listeners: vec![listener.clone()],
            })
            .await;
    }
    assert!(
        over.elapsed() < Duration::from_millis(1000),
        "the machine is too slow for this test: {:?}",
        over.elapsed()
    );
    // Past the grace, counted from the moment it left the bound.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(conn.tag().await, "a");
}
