//! The embedded backend: one SQLite file (WAL, synchronous FULL), one connection behind a
//! mutex. SQLite has one writer at a time anyway; one connection makes that explicit, so
//! no request ever sees "database is locked", and `BEGIN IMMEDIATE` makes every write
//! transaction take the write lock before it reads.

use crate::sql::{Inner, Tx};
use crate::{Result, StoreError, schema};
use rusqlite::{Connection, ErrorCode, TransactionBehavior};
use std::path::Path;
use std::sync::Mutex;

pub(crate) struct Sqlite {
    conn: Mutex<Connection>,
}

impl Sqlite {
    pub fn open(path: &Path) -> Result<Sqlite> {
        Self::init(Connection::open(path).map_err(error)?)
    }

    pub fn open_in_memory() -> Result<Sqlite> {
        Self::init(Connection::open_in_memory().map_err(error)?)
    }

    fn init(mut conn: Connection) -> Result<Sqlite> {
        // WAL keeps readers off the writer's back; FULL sync because a promotion's intent
        // must be on disk before a REPLICAOF NO ONE is sent.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(error)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(error)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(error)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(error)?;
        schema::migrate_sqlite(&mut conn)?;
        Ok(Sqlite {
            conn: Mutex::new(conn),
        })
    }

    pub fn transaction<T, E: From<StoreError>>(
        &self,
        write: bool,
        f: impl FnOnce(&Tx<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let behavior = if write {
            TransactionBehavior::Immediate
        } else {
            TransactionBehavior::Deferred
        };
        let tx = Tx {
            inner: Inner::Sqlite(conn.transaction_with_behavior(behavior).map_err(error)?),
        };
        let value = f(&tx)?;
        if write {
            let Inner::Sqlite(tx) = tx.inner else {
                unreachable!("a SQLite transaction")
            };
            tx.commit().map_err(error)?;
        }
        Ok(value)
    }
}

/// What went wrong, in the store's terms: a full disk and an unwritable data directory are
/// the operator's to fix, everything else is a fault.
pub(crate) fn error(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::Full("data directory".into()),
        Some(
            ErrorCode::ReadOnly
            | ErrorCode::CannotOpen
            | ErrorCode::PermissionDenied
            | ErrorCode::SystemIoFailure
            | ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked,
        ) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Database(e.to_string()),
    }
}
