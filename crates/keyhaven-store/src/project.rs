//! Projects.

use crate::sql::{Row, p};
use crate::{Result, Tx};

#[derive(Debug, Clone)]
pub struct ProjectRow {
    pub name: String,
    pub default_cloud: String,
    pub create_time: i64,
}

fn project_from_row(r: Row) -> Result<ProjectRow> {
    Ok(ProjectRow {
        name: r.text(0)?,
        default_cloud: r.text(1)?,
        create_time: r.int(2)?,
    })
}

impl Tx<'_> {
    pub fn project_insert(&self, name: &str, default_cloud: &str, now: i64) -> Result<ProjectRow> {
        self.exec(
            "INSERT INTO projects (name, default_cloud, create_time) VALUES (?1, ?2, ?3)",
            p![name, default_cloud, now],
        )?;
        Ok(ProjectRow {
            name: name.into(),
            default_cloud: default_cloud.into(),
            create_time: now,
        })
    }

    pub fn project_get(&self, name: &str) -> Result<Option<ProjectRow>> {
        self.row(
            "SELECT name, default_cloud, create_time FROM projects WHERE name = ?1",
            p![name],
        )?
        .map(project_from_row)
        .transpose()
    }

    /// Projects `user_id` is a member of, by name.
    pub fn projects_of_user(&self, user_id: i64) -> Result<Vec<ProjectRow>> {
        self.rows(
            "SELECT p.name, p.default_cloud, p.create_time FROM projects p
             JOIN memberships m ON m.project = p.name WHERE m.user_id = ?1 ORDER BY p.name",
            p![user_id],
        )?
        .into_iter()
        .map(project_from_row)
        .collect()
    }
}
