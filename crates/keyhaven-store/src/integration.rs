//! Integrations between services. Keyhaven has one type, `read_replica`: source = the
//! primary, dest = the replica. A link marked `promoting` is a promotion's durable intent.

use crate::{Result, Tx};
use rusqlite::{OptionalExtension, Row, params};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    Active,
    /// A promotion was decided: it is only ever rolled forward.
    Promoting,
}

impl LinkStatus {
    fn as_str(self) -> &'static str {
        match self {
            LinkStatus::Active => "active",
            LinkStatus::Promoting => "promoting",
        }
    }
}

#[derive(Debug, Clone)]
pub struct IntegrationRow {
    pub id: String,
    pub project: String,
    pub integration_type: String,
    pub source_service_id: String,
    pub source_service: String,
    pub dest_service_id: String,
    pub dest_service: String,
    pub status: LinkStatus,
    /// The promotion recorded on this link was asked to detach without catch-up when the
    /// primary does not answer (`?lossy=true`): a roll-forward honours the same choice.
    pub lossy: bool,
    pub create_time: i64,
}

const SELECT: &str = "SELECT i.id, i.project, i.integration_type, i.source_service_id, s.name,
        i.dest_service_id, d.name, i.status, i.create_time, i.lossy
    FROM integrations i
    JOIN services s ON s.id = i.source_service_id
    JOIN services d ON d.id = i.dest_service_id";

fn from_row(r: &Row<'_>) -> rusqlite::Result<IntegrationRow> {
    let status: String = r.get(7)?;
    Ok(IntegrationRow {
        id: r.get(0)?,
        project: r.get(1)?,
        integration_type: r.get(2)?,
        source_service_id: r.get(3)?,
        source_service: r.get(4)?,
        dest_service_id: r.get(5)?,
        dest_service: r.get(6)?,
        status: if status == "promoting" {
            LinkStatus::Promoting
        } else {
            LinkStatus::Active
        },
        create_time: r.get(8)?,
        lossy: r.get(9)?,
    })
}

impl Tx<'_> {
    pub fn integration_insert(
        &self,
        id: &str,
        project: &str,
        integration_type: &str,
        source_service_id: &str,
        dest_service_id: &str,
        now: i64,
    ) -> Result<()> {
        self.tx.execute(
            "INSERT INTO integrations (id, project, integration_type, source_service_id, dest_service_id, status, create_time)
             VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6)",
            params![id, project, integration_type, source_service_id, dest_service_id, now],
        )?;
        Ok(())
    }

    pub fn integration_get(&self, project: &str, id: &str) -> Result<Option<IntegrationRow>> {
        Ok(self
            .tx
            .query_row(
                &format!("{SELECT} WHERE i.project = ?1 AND i.id = ?2"),
                params![project, id],
                from_row,
            )
            .optional()?)
    }

    /// Links where the service is source or destination, oldest first.
    pub fn integrations_of_service(&self, service_id: &str) -> Result<Vec<IntegrationRow>> {
        let mut stmt = self.tx.prepare(&format!(
            "{SELECT} WHERE i.source_service_id = ?1 OR i.dest_service_id = ?1 ORDER BY i.create_time, i.id"
        ))?;
        let rows = stmt.query_map([service_id], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every link in the `promoting` state (what a restarted Keyhaven must roll forward).
    pub fn integrations_promoting(&self) -> Result<Vec<IntegrationRow>> {
        let mut stmt = self.tx.prepare(&format!(
            "{SELECT} WHERE i.status = 'promoting' ORDER BY i.create_time"
        ))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Moves a link from `from` to `to`; false when it was not in `from` (someone else won).
    pub fn integration_set_status(
        &self,
        id: &str,
        from: LinkStatus,
        to: LinkStatus,
    ) -> Result<bool> {
        Ok(self.tx.execute(
            "UPDATE integrations SET status = ?3 WHERE id = ?1 AND status = ?2",
            params![id, from.as_str(), to.as_str()],
        )? == 1)
    }

    /// Records that the promotion on this link may detach without catch-up.
    pub fn integration_set_lossy(&self, id: &str, lossy: bool) -> Result<()> {
        self.tx.execute(
            "UPDATE integrations SET lossy = ?2 WHERE id = ?1",
            params![id, lossy],
        )?;
        Ok(())
    }

    pub fn integration_delete(&self, id: &str) -> Result<bool> {
        Ok(self
            .tx
            .execute("DELETE FROM integrations WHERE id = ?1", [id])?
            == 1)
    }
}
