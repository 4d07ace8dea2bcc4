//! The shared backend: PostgreSQL, for several Keyhaven instances (one per host) on one
//! database. The synchronous `postgres` client runs on the thread the store's caller hands
//! over (`Store::write` moves blocking work off the async workers), from a small pool.
//!
//! Where SQLite has `BEGIN IMMEDIATE`, every write transaction here first takes one
//! transaction-scoped advisory lock ([`WRITE_LOCK`]): writes from every instance run one at
//! a time, each seeing everything committed before it, so the rules the control layer
//! checks inside a transaction (five replicas, the quota, free names, one promotion per
//! link) hold across instances exactly as they do in one process. The control plane's
//! writes are few and sub-millisecond; one queue is simpler to trust than serializable
//! retries, and it keeps every write closure run exactly once.

use crate::sql::{Inner, Tx};
use crate::{Mode, Result, StoreError, schema};
use postgres::error::SqlState;
use postgres::{Client, Config, IsolationLevel, NoTls};
use std::cell::RefCell;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// The advisory lock every write transaction holds (an arbitrary constant: "KH" + 1).
const WRITE_LOCK: i64 = 0x4b48_0001;
/// The advisory lock held while migrations run, so two instances starting together do not
/// both apply one.
pub(crate) const MIGRATE_LOCK: i64 = 0x4b48_0002;
/// Idle connections kept for reuse.
const POOL_MAX: usize = 8;
/// Connections open at once, at most: a flood of requests waits for one (up to
/// [`CONNECTION_WAIT`], then 503) instead of using up the database's connections, which
/// every instance's heartbeats need too.
const OPEN_MAX: usize = 16;
const CONNECTION_WAIT: Duration = Duration::from_secs(5);

pub(crate) struct Postgres {
    config: Config,
    pool: Mutex<Vec<Client>>,
    /// Connections checked out now, and the wait for one to come back.
    busy: Mutex<usize>,
    returned: Condvar,
    /// host:port/dbname, for logs: never the password.
    pub(crate) description: String,
}

impl Postgres {
    pub fn connect(url: &str) -> Result<Postgres> {
        let mut config: Config = url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("bad database URL: {e}")))?;
        config
            .connect_timeout(Duration::from_secs(3))
            .application_name("keyhaven")
            // A statement that cannot get its lock in 5 s fails (503) instead of piling up.
            .options("-c lock_timeout=5000 -c statement_timeout=15000")
            // A database that vanishes from the network (a partition, a failover) is
            // noticed in seconds, not after minutes of TCP retransmissions.
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3)
            .tcp_user_timeout(Duration::from_secs(10));
        let hosts = config
            .get_hosts()
            .iter()
            .map(|h| match h {
                postgres::config::Host::Tcp(h) => h.clone(),
                postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .collect::<Vec<_>>()
            .join(",");
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let description = format!(
            "postgresql://{hosts}:{port}/{}",
            config.get_dbname().unwrap_or("")
        );
        let pg = Postgres {
            config,
            pool: Mutex::new(Vec::new()),
            busy: Mutex::new(0),
            returned: Condvar::new(),
            description,
        };
        let mut client = pg.client()?;
        schema::migrate_postgres(&mut client)?;
        pg.put(client);
        Ok(pg)
    }

    /// A connection: a pooled one that still answers (a restarted PostgreSQL leaves pooled
    /// clients that look open until used), else a new one.
    fn client(&self) -> Result<Client> {
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(mut c) = pooled {
            if !c.is_closed() && c.is_valid(Duration::from_secs(2)).is_ok() {
                return Ok(c);
            }
            discard(vec![c]);
        }
        self.config.connect(NoTls).map_err(error)
    }

    /// Waits for a free connection slot (at most [`OPEN_MAX`] in use).
    fn acquire(&self) -> Result<()> {
        let busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let (mut busy, waited) = self
            .returned
            .wait_timeout_while(busy, CONNECTION_WAIT, |n| *n >= OPEN_MAX)
            .unwrap_or_else(|p| p.into_inner());
        if waited.timed_out() && *busy >= OPEN_MAX {
            return Err(StoreError::Unavailable(format!(
                "all {OPEN_MAX} connections to PostgreSQL are busy"
            )));
        }
        *busy += 1;
        Ok(())
    }

    fn release(&self) {
        *self.busy.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.returned.notify_one();
    }

    fn put(&self, client: Client) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if client.is_closed() || pool.len() >= POOL_MAX {
            drop(pool);
            discard(vec![client]);
            return;
        }
        pool.push(client);
    }

    pub fn transaction<T, E: From<StoreError>>(
        &self,
        mode: Mode,
        f: impl FnOnce(&Tx<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.acquire()?;
        let result = match self.client() {
            Ok(mut client) => {
                let result = Self::run(&mut client, mode, f);
                self.put(client);
                result
            }
            Err(e) => Err(e.into()),
        };
        self.release();
        result
    }

    fn run<T, E: From<StoreError>>(
        client: &mut Client,
        mode: Mode,
        f: impl FnOnce(&Tx<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let write = mode != Mode::Read;
        let mut tx = client
            .build_transaction()
            .isolation_level(if write {
                IsolationLevel::ReadCommitted
            } else {
                IsolationLevel::RepeatableRead
            })
            .read_only(!write)
            .start()
            .map_err(error)?;
        if mode == Mode::Write {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
                .map_err(error)?;
        }
        let tx = Tx {
            inner: Inner::Postgres(RefCell::new(tx)),
        };
        let value = f(&tx)?;
        let Inner::Postgres(tx) = tx.inner else {
            unreachable!("a PostgreSQL transaction")
        };
        tx.into_inner().commit().map_err(error)?;
        Ok(value)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        discard(std::mem::take(
            &mut *self.pool.lock().unwrap_or_else(|p| p.into_inner()),
        ));
    }
}

/// Closes clients on a thread of their own: a synchronous client closes its connection
/// by blocking on its own runtime, which is not allowed on an async worker.
fn discard(clients: Vec<Client>) {
    if clients.is_empty() {
        return;
    }
    let _ = std::thread::spawn(move || drop(clients)).join();
}

/// What went wrong, in the store's terms. A database that cannot be reached, is shutting
/// down or refuses writes is unavailable (503, retry later); a full disk is full.
pub(crate) fn error(e: postgres::Error) -> StoreError {
    let Some(code) = e.code() else {
        // No SQLSTATE: the connection failed or was lost.
        return StoreError::Unavailable(format!("PostgreSQL: {e}"));
    };
    let text = match e.as_db_error() {
        Some(db) => format!("PostgreSQL: {}", db.message()),
        None => format!("PostgreSQL: {e}"),
    };
    if *code == SqlState::DISK_FULL {
        StoreError::Full("PostgreSQL database".into())
    } else if [
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::READ_ONLY_SQL_TRANSACTION,
        SqlState::LOCK_NOT_AVAILABLE,
        SqlState::QUERY_CANCELED,
        SqlState::TOO_MANY_CONNECTIONS,
    ]
    .contains(code)
        || code.code().starts_with("08")
    {
        StoreError::Unavailable(text)
    } else {
        StoreError::Database(text)
    }
}
