//! Schema migrations, applied in order; `PRAGMA user_version` records how many ran.

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
];

pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let done: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}
