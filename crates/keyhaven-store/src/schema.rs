//! Schema migrations, applied in order; `PRAGMA user_version` records how many ran.

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
];

/// Emails compare case-insensitively, so they are stored folded to lower case and unique
/// however they are typed. SQLite's `lower()` folds ASCII only, as the control layer does
/// for new emails: both must fold alike, or a stored email could not be found again.
/// Emails that would collide once folded are refused before any upgrade
/// ([`refuse_colliding_emails`]), so the UPDATE never meets the UNIQUE constraint.
const FOLD_EMAILS: &str = "
UPDATE users SET email = lower(email);
CREATE UNIQUE INDEX IF NOT EXISTS users_email_folded ON users (lower(email));
";

pub fn migrate(conn: &mut Connection) -> Result<()> {
    migrate_to(conn, MIGRATIONS.len())
}

/// Applies the migrations up to `target` (a count) that have not run yet.
fn migrate_to(conn: &mut Connection, target: usize) -> Result<()> {
    let done: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if done > 0 && done < target {
        refuse_colliding_emails(conn)?;
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().take(target).skip(done) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// A database from before [`FOLD_EMAILS`] may hold emails that differ only in letter case
/// (`ALICE@example.com` next to `alice@example.com`). Folding them would merge two accounts,
/// and which one to keep is the operator's call: the upgrade is refused, naming them. Once
/// emails are folded no collision can exist (the unique index keeps new ones out), so the
/// check is harmless before any later upgrade too.
fn refuse_colliding_emails(conn: &Connection) -> Result<()> {
    let mut stmt = conn.prepare(
        "SELECT group_concat('''' || email || ''' (user id ' || id || ')', ' and ')
         FROM (SELECT id, email FROM users ORDER BY id)
         GROUP BY lower(email) HAVING count(*) > 1",
    )?;
    let groups = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
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
        migrate(&mut conn).unwrap();
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
        let err = migrate(&mut conn).unwrap_err().to_string();
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
