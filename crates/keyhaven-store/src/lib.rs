//! Keyhaven's durable state, in one SQLite file.
//!
//! What is stored, and why it must survive a restart of Keyhaven:
//! - users, tokens (SHA-256 of the token, never the token) and project memberships: who may
//!   do what;
//! - projects and services: the *desired* state the reconciler drives valkey-server towards,
//!   with each service's port, generated credentials, desired role and the role's
//!   generation, so that a restarted Keyhaven re-adopts the same nodes with the same secrets;
//! - integrations (read-replica links), including a link's `promoting` mark: the durable
//!   intent that lets a promotion interrupted by a crash be rolled forward;
//! - the last *observed* state of every service (state and replication health), so GET
//!   requests never wait on a valkey-server;
//! - retired nodes: services already deleted whose process and port the reconciler has not
//!   released yet, so a port is never handed out while its old process may still hold it.
//!
//! Every write is one `BEGIN IMMEDIATE` transaction through [`Store::write`]: the control
//! layer runs its checks and inserts inside the closure, so rules such as "at most five
//! replicas" hold under any number of concurrent requests. SQLite has one writer at a time
//! anyway; one connection behind a mutex makes that explicit and means no request ever sees
//! "database is locked". The statements are sub-millisecond, so holding a std mutex in async
//! code is fine here. A PostgreSQL store would offer the same `read`/`write` shape.

mod integration;
mod project;
mod schema;
mod service;
mod user;

use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;
use std::sync::Mutex;
use thiserror::Error;

pub use integration::{IntegrationRow, LinkStatus};
pub use project::ProjectRow;
pub use service::{NewService, RetiredNode, ServiceChange, ServiceRow};
pub use user::{TokenRow, UserRow};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database needs an upgrade that would lose information: the operator decides.
    #[error("the database cannot be upgraded: {0}")]
    Upgrade(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub struct Store {
    conn: Mutex<Connection>,
}

/// A transaction: every query and change of the store goes through one.
pub struct Tx<'a> {
    tx: rusqlite::Transaction<'a>,
}

impl Store {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// An in-memory store, for unit tests of the control layer.
    pub fn open_in_memory() -> Result<Store> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Store> {
        // WAL keeps readers off the writer's back; FULL sync because a promotion's intent
        // must be on disk before a REPLICAOF NO ONE is sent.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        schema::migrate(&mut conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    /// Runs `f` in a write transaction (`BEGIN IMMEDIATE`): committed when `f` returns
    /// `Ok`, rolled back when it returns `Err`.
    pub fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let tx = Tx { tx };
        let value = f(&tx)?;
        tx.tx.commit().map_err(StoreError::from)?;
        Ok(value)
    }

    /// Proves the store takes writes: rewrites the one row of `readiness_probe` in a
    /// committed (and synced) transaction. Used by `GET /readyz`.
    pub fn probe_write(&self, now_micros: i64) -> Result<()> {
        self.write(|tx| {
            tx.tx.execute(
                "INSERT INTO readiness_probe (id, probe_time) VALUES (1, ?1)
                 ON CONFLICT(id) DO UPDATE SET probe_time = excluded.probe_time",
                [now_micros],
            )?;
            Ok(())
        })
    }

    /// Runs `f` in a read transaction (a consistent snapshot).
    pub fn read<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(StoreError::from)?;
        f(&Tx { tx })
    }
}
