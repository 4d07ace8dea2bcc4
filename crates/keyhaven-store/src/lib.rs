//! Keyhaven's durable state: an embedded SQLite file (the default: one host, no set-up) or
//! a PostgreSQL database shared by several Keyhaven instances, one per host.
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
//! - each project's certificate authority (certificate and private key, created on first
//!   need): every instance signs with the same one, and a restart keeps it;
//! - retired nodes: services already deleted whose process and port the reconciler has not
//!   released yet, so a port is never handed out while its old process may still hold it.
//!
//! Every write is one transaction through [`Store::write`] that takes the store's write
//! lock before it reads (`BEGIN IMMEDIATE` on SQLite, an advisory lock on PostgreSQL): the
//! control layer runs its checks and inserts inside the closure, so rules such as "at most
//! five replicas" hold under any number of concurrent requests, from any number of
//! instances. The closure is synchronous and runs off the async workers
//! ([`tokio::task::block_in_place`]), so a slow fsync or a network round-trip to PostgreSQL
//! never stalls other requests. Statements are written once for both backends (`sql.rs`);
//! no backend type leaves this crate.

mod cloud;
mod integration;
mod postgres;
mod project;
mod project_ca;
mod schema;
mod service;
mod sql;
mod sqlite;
mod user;

use std::path::Path;
use thiserror::Error;

pub use cloud::CloudRow;
pub use integration::{IntegrationRow, LinkStatus};
pub use project::ProjectRow;
pub use project_ca::ProjectCaRow;
pub use service::{NewService, RetiredNode, ServiceChange, ServiceRow};
pub use sql::Tx;
pub use user::{TokenRow, UserRow};

#[derive(Debug, Error)]
pub enum StoreError {
    /// The storage is full: nothing was written. Names where: the data directory (SQLite)
    /// or the PostgreSQL database.
    #[error("the disk of the {0} is full")]
    Full(String),
    /// The database cannot be reached or written now (an unwritable data directory, a lost
    /// connection, PostgreSQL restarting): nothing was written; retry later.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database needs an upgrade that would lose information: the operator decides.
    #[error("the database cannot be upgraded: {0}")]
    Upgrade(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub struct Store {
    backend: Backend,
}

enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(Box<postgres::Postgres>),
}

impl Store {
    /// Opens (creating if needed) the SQLite database file and brings its schema up to
    /// date.
    pub fn open(path: &Path) -> Result<Store> {
        Ok(Store {
            backend: Backend::Sqlite(sqlite::Sqlite::open(path)?),
        })
    }

    /// An in-memory SQLite store, for unit tests of the control layer.
    pub fn open_in_memory() -> Result<Store> {
        Ok(Store {
            backend: Backend::Sqlite(sqlite::Sqlite::open_in_memory()?),
        })
    }

    /// Connects to PostgreSQL (`postgres://user:password@host:port/dbname`) and brings the
    /// schema up to date (one instance at a time).
    pub fn connect(url: &str) -> Result<Store> {
        Ok(Store {
            backend: Backend::Postgres(Box::new(postgres::Postgres::connect(url)?)),
        })
    }

    /// What the store is, for logs (never a password).
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite".into(),
            Backend::Postgres(pg) => pg.description.clone(),
        }
    }

    /// Whether several instances may share this store (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Runs `f` in a write transaction that holds the store's write lock from its start:
    /// committed when `f` returns `Ok`, rolled back when it returns `Err`.
    pub async fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.transaction(Mode::Write, f)
    }

    /// Runs `f` in a read transaction (a consistent snapshot).
    pub async fn read<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.transaction(Mode::Read, f)
    }

    /// The same, for code that is not async (start-up, tests).
    pub fn write_blocking<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.transaction(Mode::Write, f)
    }

    /// A write of one row that checks no rule across rows (a heartbeat, the readiness
    /// probe): on PostgreSQL it does not queue behind the other writes' lock, so a busy
    /// store never makes an instance's heartbeat late.
    pub async fn write_row<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.transaction(Mode::WriteRow, f)
    }

    fn transaction<T, E: From<StoreError>>(
        &self,
        mode: Mode,
        f: impl FnOnce(&Tx<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        off_the_workers(|| match &self.backend {
            Backend::Sqlite(db) => db.transaction(mode != Mode::Read, f),
            Backend::Postgres(db) => db.transaction(mode, f),
        })
    }

    /// Proves the store takes writes: rewrites the one row of `readiness_probe` in a
    /// committed (and synced) transaction. Used by `GET /readyz`.
    pub async fn probe_write(&self, now_micros: i64) -> Result<()> {
        self.write_row(|tx| {
            tx.exec(
                "INSERT INTO readiness_probe (id, probe_time) VALUES (1, ?1)
                 ON CONFLICT(id) DO UPDATE SET probe_time = excluded.probe_time",
                sql::p![now_micros],
            )?;
            Ok(())
        })
        .await
    }
}

/// What a transaction may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Read,
    /// Holds the store's write lock from its start.
    Write,
    /// Writes one row, without the store's write lock.
    WriteRow,
}

/// Runs blocking store work so that it does not hold up an async worker: on the
/// multi-threaded runtime the worker hands its other tasks to another thread for the
/// duration ([`tokio::task::block_in_place`]). Elsewhere (a current-thread runtime in a
/// unit test, plain threads) it just runs.
fn off_the_workers<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
