//! Schema migrations, applied in order, one list per backend: SQLite's `PRAGMA
//! user_version` and PostgreSQL's `keyhaven_schema` table record how many ran. Both lists
//! describe the same tables, columns and constraints; PostgreSQL's starts from the schema
//! SQLite had reached when PostgreSQL support came (no older PostgreSQL database exists).
//! A new migration is added to both lists.

use crate::{Result, StoreError};
use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    real_name     TEXT NOT NULL,
    password_hash TEXT,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    create_time   INTEGER NOT NULL
);
CREATE TABLE tokens (
    token_hash    TEXT PRIMARY KEY,
    token_prefix  TEXT NOT NULL,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    description   TEXT NOT NULL,
    create_time   INTEGER NOT NULL
);
CREATE TABLE projects (
    name          TEXT PRIMARY KEY,
    default_cloud TEXT NOT NULL,
    create_time   INTEGER NOT NULL
);
CREATE TABLE memberships (
    project       TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    member_type   TEXT NOT NULL,
    PRIMARY KEY (project, user_id)
);
CREATE TABLE services (
    id                  TEXT PRIMARY KEY,
    project             TEXT NOT NULL REFERENCES projects(name),
    name                TEXT NOT NULL,
    service_type        TEXT NOT NULL,
    plan                TEXT NOT NULL,
    cloud               TEXT NOT NULL,
    user_config         TEXT NOT NULL,
    termination_protection INTEGER NOT NULL,
    port                INTEGER NOT NULL UNIQUE,
    service_password    TEXT NOT NULL,
    admin_password      TEXT NOT NULL,
    repl_password       TEXT NOT NULL,
    role                TEXT NOT NULL,
    generation          INTEGER NOT NULL,
    state               TEXT NOT NULL,
    health              TEXT NOT NULL,
    lost_bytes_estimate INTEGER,
    create_time         INTEGER NOT NULL,
    update_time         INTEGER NOT NULL,
    UNIQUE (project, name)
);
CREATE TABLE integrations (
    id                TEXT PRIMARY KEY,
    project           TEXT NOT NULL REFERENCES projects(name),
    integration_type  TEXT NOT NULL,
    source_service_id TEXT NOT NULL REFERENCES services(id),
    dest_service_id   TEXT NOT NULL REFERENCES services(id),
    status            TEXT NOT NULL,
    create_time       INTEGER NOT NULL
);
CREATE INDEX integrations_source ON integrations(source_service_id);
CREATE INDEX integrations_dest ON integrations(dest_service_id);
CREATE TABLE retired_nodes (
    service_id  TEXT PRIMARY KEY,
    port        INTEGER NOT NULL,
    retire_time INTEGER NOT NULL
);
"#,
    // A promotion's intent also records whether it may detach without catch-up.
    "ALTER TABLE integrations ADD COLUMN lossy INTEGER NOT NULL DEFAULT 0;",
    FOLD_EMAILS,
    // `powered: false` (PUT service): the node is stopped and its data and port kept.
    "ALTER TABLE services ADD COLUMN powered INTEGER NOT NULL DEFAULT 1;",
    // One row `GET /readyz` rewrites to prove the store takes writes (`Store::probe_write`).
    "CREATE TABLE readiness_probe (id INTEGER PRIMARY KEY CHECK (id = 1), probe_time INTEGER NOT NULL);",
    SEVERAL_HOSTS,
    PROJECT_CAS,
];

/// Each project's certificate authority, created on first need: its certificate and its
/// private key (PEM), kept here so that every instance signs with the same CA. The common
/// name is kept beside the certificate: the issuer of every certificate it signs.
const PROJECT_CAS: &str = "
CREATE TABLE project_cas (
    project         TEXT PRIMARY KEY REFERENCES projects(name) ON DELETE CASCADE,
    common_name     TEXT NOT NULL,
    certificate_pem TEXT NOT NULL,
    private_key_pem TEXT NOT NULL,
    create_time     INTEGER NOT NULL
);
";

/// The same for PostgreSQL (BIGINT for SQLite's 64-bit INTEGER).
const PG_PROJECT_CAS: &str = "
CREATE TABLE project_cas (
    project         TEXT PRIMARY KEY REFERENCES projects(name) ON DELETE CASCADE,
    common_name     TEXT NOT NULL,
    certificate_pem TEXT NOT NULL,
    private_key_pem TEXT NOT NULL,
    create_time     BIGINT NOT NULL
);
";

/// One Keyhaven per host: each registers its cloud with a heartbeat; a promotion's claim
/// (which instance runs it, until when) is stored on its link; `cloud_changes` counts the
/// changes to each cloud's nodes, so that the instance owning a cloud wakes when another
/// instance changed them.
const SEVERAL_HOSTS: &str = "
CREATE TABLE clouds (
    name          TEXT PRIMARY KEY,
    provider      TEXT NOT NULL,
    region        TEXT NOT NULL,
    description   TEXT NOT NULL,
    host          TEXT NOT NULL,
    api_url       TEXT NOT NULL,
    port_min      INTEGER NOT NULL,
    port_max      INTEGER NOT NULL,
    instance_id   TEXT NOT NULL,
    started_at    INTEGER NOT NULL,
    heartbeat_at  INTEGER NOT NULL
);
CREATE TABLE cloud_changes (
    cloud TEXT PRIMARY KEY,
    seq   INTEGER NOT NULL
);
ALTER TABLE integrations ADD COLUMN claim_owner TEXT;
ALTER TABLE integrations ADD COLUMN claim_expires INTEGER;
ALTER TABLE retired_nodes ADD COLUMN cloud TEXT NOT NULL DEFAULT 'local';
ALTER TABLE services ADD COLUMN host TEXT NOT NULL DEFAULT '';
";

/// PostgreSQL's schema: the same tables as SQLite's after [`SEVERAL_HOSTS`], then each
/// later migration. Integers are BIGINT (SQLite's INTEGER is 64-bit); flags are 0/1
/// integers, as in SQLite.
const PG_MIGRATIONS: &[&str] = &[PG_SEVERAL_HOSTS, PG_PROJECT_CAS];

const PG_SEVERAL_HOSTS: &str = r#"
CREATE TABLE users (
    id            BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    real_name     TEXT NOT NULL,
    password_hash TEXT,
    is_admin      BIGINT NOT NULL DEFAULT 0,
    create_time   BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_email_folded ON users (lower(email));
CREATE TABLE tokens (
    token_hash    TEXT PRIMARY KEY,
    token_prefix  TEXT NOT NULL,
    user_id       BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    description   TEXT NOT NULL,
    create_time   BIGINT NOT NULL
);
CREATE TABLE projects (
    name          TEXT PRIMARY KEY,
    default_cloud TEXT NOT NULL,
    create_time   BIGINT NOT NULL
);
CREATE TABLE memberships (
    project       TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
    user_id       BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    member_type   TEXT NOT NULL,
    PRIMARY KEY (project, user_id)
);
CREATE TABLE services (
    id                  TEXT PRIMARY KEY,
    project             TEXT NOT NULL REFERENCES projects(name),
    name                TEXT NOT NULL,
    service_type        TEXT NOT NULL,
    plan                TEXT NOT NULL,
    cloud               TEXT NOT NULL,
    user_config         TEXT NOT NULL,
    termination_protection BIGINT NOT NULL,
    port                BIGINT NOT NULL UNIQUE,
    service_password    TEXT NOT NULL,
    admin_password      TEXT NOT NULL,
    repl_password       TEXT NOT NULL,
    role                TEXT NOT NULL,
    generation          BIGINT NOT NULL,
    state               TEXT NOT NULL,
    health              TEXT NOT NULL,
    lost_bytes_estimate BIGINT,
    create_time         BIGINT NOT NULL,
    update_time         BIGINT NOT NULL,
    powered             BIGINT NOT NULL DEFAULT 1,
    host                TEXT NOT NULL DEFAULT '',
    UNIQUE (project, name)
);
CREATE TABLE integrations (
    id                TEXT PRIMARY KEY,
    project           TEXT NOT NULL REFERENCES projects(name),
    integration_type  TEXT NOT NULL,
    source_service_id TEXT NOT NULL REFERENCES services(id),
    dest_service_id   TEXT NOT NULL REFERENCES services(id),
    status            TEXT NOT NULL,
    create_time       BIGINT NOT NULL,
    lossy             BIGINT NOT NULL DEFAULT 0,
    claim_owner       TEXT,
    claim_expires     BIGINT
);
CREATE INDEX integrations_source ON integrations(source_service_id);
CREATE INDEX integrations_dest ON integrations(dest_service_id);
CREATE TABLE retired_nodes (
    service_id  TEXT PRIMARY KEY,
    port        BIGINT NOT NULL,
    retire_time BIGINT NOT NULL,
    cloud       TEXT NOT NULL DEFAULT 'local'
);
CREATE TABLE readiness_probe (id BIGINT PRIMARY KEY CHECK (id = 1), probe_time BIGINT NOT NULL);
CREATE TABLE clouds (
    name          TEXT PRIMARY KEY,
    provider      TEXT NOT NULL,
    region        TEXT NOT NULL,
    description   TEXT NOT NULL,
    host          TEXT NOT NULL,
    api_url       TEXT NOT NULL,
    port_min      BIGINT NOT NULL,
    port_max      BIGINT NOT NULL,
    instance_id   TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL
);
CREATE TABLE cloud_changes (
    cloud TEXT PRIMARY KEY,
    seq   BIGINT NOT NULL
);
"#;

/// Brings a PostgreSQL database up to date, holding an advisory lock so that instances
/// starting together apply each migration once.
pub fn migrate_postgres(client: &mut postgres::Client) -> Result<()> {
    use crate::postgres::{MIGRATE_LOCK, error};
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK])
        .map_err(error)?;
    let result = apply_postgres(client);
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK]);
    result
}

fn apply_postgres(client: &mut postgres::Client) -> Result<()> {
    use crate::postgres::error;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS keyhaven_schema (version BIGINT NOT NULL);
             INSERT INTO keyhaven_schema (version)
             SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM keyhaven_schema);",
        )
        .map_err(error)?;
    let done: i64 = client
        .query_one("SELECT version FROM keyhaven_schema", &[])
        .map_err(error)?
        .get(0);
    let done = usize::try_from(done).unwrap_or(0);
    if done > PG_MIGRATIONS.len() {
        return Err(StoreError::Upgrade(format!(
            "the database's schema (version {done}) is newer than this Keyhaven's ({}): run a newer Keyhaven",
            PG_MIGRATIONS.len()
        )));
    }
    for (i, sql) in PG_MIGRATIONS.iter().enumerate().skip(done) {
        let mut tx = client.transaction().map_err(error)?;
        tx.batch_execute(sql).map_err(error)?;
        tx.execute(
            "UPDATE keyhaven_schema SET version = $1",
            &[&(i as i64 + 1)],
        )
        .map_err(error)?;
        tx.commit().map_err(error)?;
    }
    Ok(())
}

/// Emails compare case-insensitively, so they are stored folded to lower case and unique
/// however they are typed. SQLite's `lower()` folds ASCII only, as the control layer does
/// for new emails: both must fold alike, or a stored email could not be found again.
/// Emails that would collide once folded are refused before any upgrade
/// ([`refuse_colliding_emails`]), so the UPDATE never meets the UNIQUE constraint.
const FOLD_EMAILS: &str = "
UPDATE users SET email = lower(email);
CREATE UNIQUE INDEX IF NOT EXISTS users_email_folded ON users (lower(email));
";

pub fn migrate_sqlite(conn: &mut Connection) -> Result<()> {
    migrate_to(conn, MIGRATIONS.len())
}

/// Applies the migrations up to `target` (a count) that have not run yet.
fn migrate_to(conn: &mut Connection, target: usize) -> Result<()> {
    use crate::sqlite::error;
    let done: usize = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(error)?;
    if done > MIGRATIONS.len() {
        return Err(StoreError::Upgrade(format!(
            "the database's schema (version {done}) is newer than this Keyhaven's ({}): run a newer Keyhaven",
            MIGRATIONS.len()
        )));
    }
    if done > 0 && done < target {
        refuse_colliding_emails(conn)?;
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().take(target).skip(done) {
        let tx = conn.transaction().map_err(error)?;
        tx.execute_batch(sql).map_err(error)?;
        tx.pragma_update(None, "user_version", i + 1)
            .map_err(error)?;
        tx.commit().map_err(error)?;
    }
    Ok(())
}

/// A database from before [`FOLD_EMAILS`] may hold emails that differ only in letter case
/// (`ALICE@example.com` next to `alice@example.com`). Folding them would merge two accounts,
/// and which one to keep is the operator's call: the upgrade is refused, naming them. Once
/// emails are folded no collision can exist (the unique index keeps new ones out), so the
/// check is harmless before any later upgrade too.
fn refuse_colliding_emails(conn: &Connection) -> Result<()> {
    use crate::sqlite::error;
    let mut stmt = conn
        .prepare(
            "SELECT group_concat('''' || email || ''' (user id ' || id || ')', ' and ')
         FROM (SELECT id, email FROM users ORDER BY id)
         GROUP BY lower(email) HAVING count(*) > 1",
        )
        .map_err(error)?;
    let groups = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(error)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(error)?;
    if groups.is_empty() {
        return Ok(());
    }
    Err(StoreError::Upgrade(format!(
        "emails now compare case-insensitively, and these users' emails differ only in \
         letter case: {}. Keep one account per address: change the other emails \
         (sqlite3 keyhaven.db \"UPDATE users SET email = 'NEW' WHERE id = ID\") and start again",
        groups.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database as an older Keyhaven left it: every migration before the email fold.
    fn before_the_fold() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        let fold = MIGRATIONS.iter().position(|m| *m == FOLD_EMAILS).unwrap();
        migrate_to(&mut conn, fold).unwrap();
        conn
    }

    fn add_user(conn: &Connection, email: &str) -> rusqlite::Result<usize> {
        conn.execute(
            "INSERT INTO users (email, real_name, is_admin, create_time) VALUES (?1, '', 0, 0)",
            [email],
        )
    }

    fn emails(conn: &Connection) -> Vec<String> {
        conn.prepare("SELECT email FROM users ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn existing_emails_are_folded_and_stay_unique_however_typed() {
        let mut conn = before_the_fold();
        add_user(&conn, "admin@localhost").unwrap();
        add_user(&conn, "Bob@Example.COM").unwrap();
        migrate_sqlite(&mut conn).unwrap();
        assert_eq!(emails(&conn), ["admin@localhost", "bob@example.com"]);
        assert!(
            add_user(&conn, "BOB@example.com").is_err(),
            "a second BOB@example.com was stored"
        );
    }

    #[test]
    fn emails_that_collide_once_folded_refuse_the_upgrade_naming_them() {
        let mut conn = before_the_fold();
        add_user(&conn, "alice@example.com").unwrap();
        add_user(&conn, "ALICE@example.com").unwrap();
        add_user(&conn, "carol@example.com").unwrap();
        let err = migrate_sqlite(&mut conn).unwrap_err().to_string();
        assert!(
            err.contains("'alice@example.com' (user id 1) and 'ALICE@example.com' (user id 2)"),
            "{err}"
        );
        assert!(!err.contains("carol"), "{err}");
        // Nothing changed: the old schema, the emails as they were.
        let version: usize = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert!(version < MIGRATIONS.len());
        assert_eq!(
            emails(&conn),
            [
                "alice@example.com",
                "ALICE@example.com",
                "carol@example.com"
            ]
        );
    }
}
