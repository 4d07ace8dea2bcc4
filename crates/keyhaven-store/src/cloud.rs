//! Clouds: where nodes run. Each Keyhaven instance registers the cloud it serves (its host)
//! and keeps a heartbeat on it; a cloud whose heartbeat expired has lost its instance.
//! `cloud_changes` counts the changes to each cloud's nodes, so the instance owning a cloud
//! notices a change another instance wrote.

use crate::sql::{Row, p};
use crate::{Result, Tx};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudRow {
    pub name: String,
    pub provider: String,
    pub region: String,
    pub description: String,
    /// The address its nodes are reached at (clients and replicas in other clouds).
    pub host: String,
    /// Where its instance's API listens.
    pub api_url: String,
    /// The ports its nodes are given.
    pub port_min: u16,
    pub port_max: u16,
    /// The start of Keyhaven that serves it now (a new id each start).
    pub instance_id: String,
    pub started_at: i64,
    /// µs since the epoch of the instance's last heartbeat, on the database's clock.
    pub heartbeat_at: i64,
    /// µs since that heartbeat when this row was read, on the database's clock (so no two
    /// hosts' clocks are compared); 0 for a row not read from the store.
    pub heartbeat_age_us: i64,
}

const COLS: &str = "name, provider, region, description, host, api_url, port_min, port_max, \
    instance_id, started_at, heartbeat_at";

fn from_row(r: Row) -> Result<CloudRow> {
    Ok(CloudRow {
        name: r.text(0)?,
        provider: r.text(1)?,
        region: r.text(2)?,
        description: r.text(3)?,
        host: r.text(4)?,
        api_url: r.text(5)?,
        port_min: r.port(6)?,
        port_max: r.port(7)?,
        instance_id: r.text(8)?,
        started_at: r.int(9)?,
        heartbeat_at: r.int(10)?,
        heartbeat_age_us: r.int(11)?,
    })
}

impl Tx<'_> {
    /// Registers (or re-registers, at a new start) the cloud an instance serves; its
    /// heartbeat is the database's now.
    pub fn cloud_register(&self, c: &CloudRow) -> Result<()> {
        let now = self.now_sql();
        self.exec(
            &format!(
                "INSERT INTO clouds ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, {now})
                 ON CONFLICT (name) DO UPDATE SET provider = excluded.provider,
                     region = excluded.region, description = excluded.description,
                     host = excluded.host, api_url = excluded.api_url,
                     port_min = excluded.port_min, port_max = excluded.port_max,
                     instance_id = excluded.instance_id, started_at = excluded.started_at,
                     heartbeat_at = excluded.heartbeat_at"
            ),
            p![
                &c.name,
                &c.provider,
                &c.region,
                &c.description,
                &c.host,
                &c.api_url,
                c.port_min,
                c.port_max,
                &c.instance_id,
                c.started_at,
            ],
        )?;
        Ok(())
    }

    /// Renews the heartbeat of `name`, if `instance_id` still serves it. False when another
    /// start of Keyhaven took the cloud over.
    pub fn cloud_heartbeat(&self, name: &str, instance_id: &str) -> Result<bool> {
        let now = self.now_sql();
        Ok(self.exec(
            &format!("UPDATE clouds SET heartbeat_at = {now} WHERE name = ?1 AND instance_id = ?2"),
            p![name, instance_id],
        )? == 1)
    }

    pub fn clouds(&self) -> Result<Vec<CloudRow>> {
        let now = self.now_sql();
        self.rows(
            &format!("SELECT {COLS}, {now} - heartbeat_at FROM clouds ORDER BY name"),
            p![],
        )?
        .into_iter()
        .map(from_row)
        .collect()
    }

    pub fn cloud_get(&self, name: &str) -> Result<Option<CloudRow>> {
        let now = self.now_sql();
        self.row(
            &format!("SELECT {COLS}, {now} - heartbeat_at FROM clouds WHERE name = ?1"),
            p![name],
        )?
        .map(from_row)
        .transpose()
    }

    /// Counts a change to the nodes of `cloud` (in the transaction that made it).
    pub fn cloud_changed(&self, cloud: &str) -> Result<()> {
        self.exec(
            "INSERT INTO cloud_changes (cloud, seq) VALUES (?1, 1)
             ON CONFLICT (cloud) DO UPDATE SET seq = cloud_changes.seq + 1",
            p![cloud],
        )?;
        Ok(())
    }

    /// How many changes the nodes of `cloud` have seen.
    pub fn cloud_change_count(&self, cloud: &str) -> Result<i64> {
        self.row("SELECT seq FROM cloud_changes WHERE cloud = ?1", p![cloud])?
            .map_or(Ok(0), |r| r.int(0))
    }
}
