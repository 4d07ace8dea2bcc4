//! Keyhaven's administrative connection to a node, as the internal admin user.

use crate::ADMIN_USER;
use crate::info::Info;
pub use redis::RedisError;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};
use std::time::Duration;

pub struct Admin {
    conn: MultiplexedConnection,
}

impl Admin {
    /// Connects and authenticates; every command of this connection times out after
    /// `timeout` too, so a hung node cannot hang the caller.
    pub async fn connect(
        host: &str,
        port: u16,
        admin_password: &str,
        timeout: Duration,
    ) -> Result<Admin, RedisError> {
        let url = format!("redis://{ADMIN_USER}:{admin_password}@{host}:{port}/");
        let client = Client::open(url)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(Admin { conn })
    }

    pub async fn ping(&mut self) -> Result<(), RedisError> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn)
            .await?;
        Ok(())
    }

    /// `INFO` of the given sections (`["replication", "memory"]`).
    pub async fn info(&mut self, sections: &[&str]) -> Result<Info, RedisError> {
        let text: String = redis::cmd("INFO")
            .arg(sections)
            .query_async(&mut self.conn)
            .await?;
        Ok(Info::parse(&text))
    }

    /// Blocks write commands for at most `ms` milliseconds (reads and INFO go on).
    pub async fn pause_writes(&mut self, ms: u64) -> Result<(), RedisError> {
        redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(ms)
            .arg("WRITE")
            .query_async::<()>(&mut self.conn)
            .await
    }

    pub async fn unpause(&mut self) -> Result<(), RedisError> {
        redis::cmd("CLIENT")
            .arg("UNPAUSE")
            .query_async::<()>(&mut self.conn)
            .await
    }

    /// Starts an RDB snapshot; fails with "already in progress" while one runs.
    pub async fn bgsave(&mut self) -> Result<(), RedisError> {
        redis::cmd("BGSAVE")
            .query_async::<String>(&mut self.conn)
            .await
            .map(|_| ())
    }

    /// `BGSAVE SCHEDULE`: a snapshot now, or right after the one that runs. (The reply is
    /// read as a status string so that an error reply is an error here.)
    /// A snapshot that runs already counts as started.
    pub async fn bgsave_scheduled(&mut self) -> Result<(), RedisError> {
        match redis::cmd("BGSAVE")
            .arg("SCHEDULE")
            .query_async::<String>(&mut self.conn)
            .await
        {
            Err(e) if e.to_string().contains("already in progress") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// `REPLICAOF NO ONE`: the node stops following its primary and takes writes.
    pub async fn detach(&mut self) -> Result<(), RedisError> {
        redis::cmd("REPLICAOF")
            .arg("NO")
            .arg("ONE")
            .query_async::<()>(&mut self.conn)
            .await
    }

    pub async fn replicaof(&mut self, host: &str, port: u16) -> Result<(), RedisError> {
        redis::cmd("REPLICAOF")
            .arg(host)
            .arg(port)
            .query_async::<()>(&mut self.conn)
            .await
    }

    pub async fn config_set(&mut self, key: &str, value: &str) -> Result<(), RedisError> {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(key)
            .arg(value)
            .query_async::<()>(&mut self.conn)
            .await
    }

    /// `ACL SETUSER user reset RULES...`: replaces every rule of the user in one command,
    /// so it never holds a mix of old and new rules.
    pub async fn acl_setuser(&mut self, user: &str, rules: &str) -> Result<(), RedisError> {
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(user)
            .arg("reset")
            .arg(rules.split_whitespace().collect::<Vec<_>>())
            .query_async::<()>(&mut self.conn)
            .await
    }

    /// `PUBLISH channel payload`; returns how many subscribers of this node received it.
    pub async fn publish(&mut self, channel: &str, payload: &str) -> Result<i64, RedisError> {
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut self.conn)
            .await
    }

    /// Closes the replica's connection to its primary (`CLIENT KILL TYPE master`).
    pub async fn client_kill_primary(&mut self) -> Result<(), RedisError> {
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("master")
            .query_async::<redis::Value>(&mut self.conn)
            .await
            .map(|_| ())
    }
}

/// A subscription to one channel of a node, as the internal admin user: its own
/// connection (a subscribed connection can run nothing else).
pub struct Subscription {
    stream: redis::aio::PubSubStream,
}

impl Subscription {
    /// Connects, authenticates and subscribes; gives up after `timeout`.
    pub async fn connect(
        host: &str,
        port: u16,
        admin_password: &str,
        channel: &str,
        timeout: Duration,
    ) -> Result<Subscription, RedisError> {
        let url = format!("redis://{ADMIN_USER}:{admin_password}@{host}:{port}/");
        let client = Client::open(url)?;
        let subscribe = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, RedisError>(pubsub)
        };
        let pubsub = tokio::time::timeout(timeout, subscribe)
            .await
            .map_err(|_| {
                RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "subscribing timed out",
                ))
            })??;
        Ok(Subscription {
            stream: pubsub.into_on_message(),
        })
    }

    /// The next message's payload; `None` once the connection is gone. A node that stalls
    /// (SIGSTOP) makes this wait: the caller bounds nothing here, by design, since silence
    /// is what a stalled replica looks like.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        use futures_util::StreamExt;
        let msg = self.stream.next().await?;
        Some(msg.get_payload_bytes().to_vec())
    }
}
