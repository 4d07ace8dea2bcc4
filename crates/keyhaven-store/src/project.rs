//! Projects.

use crate::{Result, Tx};
use rusqlite::{OptionalExtension, Row, params};

#[derive(Debug, Clone)]
pub struct ProjectRow {
    pub name: String,
    pub default_cloud: String,
    pub create_time: i64,
}

fn project_from_row(r: &Row<'_>) -> rusqlite::Result<ProjectRow> {
    Ok(ProjectRow {
        name: r.get(0)?,
        default_cloud: r.get(1)?,
        create_time: r.get(2)?,
    })
}

impl Tx<'_> {
    pub fn project_insert(&self, name: &str, default_cloud: &str, now: i64) -> Result<ProjectRow> {
        self.tx.execute(
            "INSERT INTO projects (name, default_cloud, create_time) VALUES (?1, ?2, ?3)",
            params![name, default_cloud, now],
        )?;
        Ok(ProjectRow {
            name: name.into(),
            default_cloud: default_cloud.into(),
            create_time: now,
        })
    }

    pub fn project_get(&self, name: &str) -> Result<Option<ProjectRow>> {
        Ok(self
            .tx
            .query_row(
                "SELECT name, default_cloud, create_time FROM projects WHERE name = ?1",
                [name],
                project_from_row,
            )
            .optional()?)
    }

    /// Projects `user_id` is a member of, by name.
    pub fn projects_of_user(&self, user_id: i64) -> Result<Vec<ProjectRow>> {
        let mut stmt = self.tx.prepare(
            "SELECT p.name, p.default_cloud, p.create_time FROM projects p
             JOIN memberships m ON m.project = p.name WHERE m.user_id = ?1 ORDER BY p.name",
        )?;
        let rows = stmt.query_map([user_id], project_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
