//! Integrations between services. Keyhaven has one type, `read_replica`: source = the
//! primary, dest = the replica. A link marked `promoting` is a promotion's durable intent.

use crate::sql::{Row, p};
use crate::{Result, Tx};

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
    /// The instance running the promotion recorded on this link, and until when (µs) its
    /// claim holds: another instance may take the promotion over only once it expired.
    pub claim: Option<(String, i64)>,
}

const SELECT: &str = "SELECT i.id, i.project, i.integration_type, i.source_service_id, s.name,
        i.dest_service_id, d.name, i.status, i.create_time, i.lossy, i.claim_owner, i.claim_expires
    FROM integrations i
    JOIN services s ON s.id = i.source_service_id
    JOIN services d ON d.id = i.dest_service_id";

fn from_row(r: Row) -> Result<IntegrationRow> {
    let status = r.text(7)?;
    Ok(IntegrationRow {
        id: r.text(0)?,
        project: r.text(1)?,
        integration_type: r.text(2)?,
        source_service_id: r.text(3)?,
        source_service: r.text(4)?,
        dest_service_id: r.text(5)?,
        dest_service: r.text(6)?,
        status: if status == "promoting" {
            LinkStatus::Promoting
        } else {
            LinkStatus::Active
        },
        create_time: r.int(8)?,
        lossy: r.bool(9)?,
        claim: match (r.opt_text(10)?, r.opt_int(11)?) {
            (Some(owner), Some(until)) => Some((owner, until)),
            _ => None,
        },
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
        self.exec(
            "INSERT INTO integrations (id, project, integration_type, source_service_id, dest_service_id, status, create_time)
             VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6)",
            p![id, project, integration_type, source_service_id, dest_service_id, now],
        )?;
        Ok(())
    }

    pub fn integration_get(&self, project: &str, id: &str) -> Result<Option<IntegrationRow>> {
        self.row(
            &format!("{SELECT} WHERE i.project = ?1 AND i.id = ?2"),
            p![project, id],
        )?
        .map(from_row)
        .transpose()
    }

    /// Links where the service is source or destination, oldest first.
    pub fn integrations_of_service(&self, service_id: &str) -> Result<Vec<IntegrationRow>> {
        self.rows(
            &format!(
                "{SELECT} WHERE i.source_service_id = ?1 OR i.dest_service_id = ?1 ORDER BY i.create_time, i.id"
            ),
            p![service_id],
        )?
        .into_iter()
        .map(from_row)
        .collect()
    }

    /// Every link in the `promoting` state (what a restarted Keyhaven must roll forward).
    pub fn integrations_promoting(&self) -> Result<Vec<IntegrationRow>> {
        self.rows(
            &format!("{SELECT} WHERE i.status = 'promoting' ORDER BY i.create_time"),
            p![],
        )?
        .into_iter()
        .map(from_row)
        .collect()
    }

    /// Moves a link from `from` to `to`; false when it was not in `from` (someone else won).
    pub fn integration_set_status(
        &self,
        id: &str,
        from: LinkStatus,
        to: LinkStatus,
    ) -> Result<bool> {
        Ok(self.exec(
            "UPDATE integrations SET status = ?3 WHERE id = ?1 AND status = ?2",
            p![id, from.as_str(), to.as_str()],
        )? == 1)
    }

    /// Records that the promotion on this link may detach without catch-up.
    pub fn integration_set_lossy(&self, id: &str, lossy: bool) -> Result<()> {
        self.exec(
            "UPDATE integrations SET lossy = ?2 WHERE id = ?1",
            p![id, lossy],
        )?;
        Ok(())
    }

    /// Claims the promotion of this link for `owner` until `until` (µs): granted when no
    /// claim holds, the claim is `owner`'s already, or it expired before `now`. Returns
    /// whether `owner` holds it now.
    pub fn integration_claim(&self, id: &str, owner: &str, now: i64, until: i64) -> Result<bool> {
        Ok(self.exec(
            "UPDATE integrations SET claim_owner = ?2, claim_expires = ?4
             WHERE id = ?1 AND (claim_owner IS NULL OR claim_owner = ?2 OR claim_expires < ?3)",
            p![id, owner, now, until],
        )? == 1)
    }

    /// Drops every claim `owner` (an earlier start of this instance, gone) held: its
    /// promotions are to be rolled forward now rather than after their claims expire.
    pub fn integration_release_owner(&self, owner: &str) -> Result<u64> {
        self.exec(
            "UPDATE integrations SET claim_owner = NULL, claim_expires = NULL WHERE claim_owner = ?1",
            p![owner],
        )
    }

    /// Gives up the claim `owner` took until `until`: a newer claim (taken again since, by
    /// `owner` too) stays.
    pub fn integration_release(&self, id: &str, owner: &str, until: i64) -> Result<()> {
        self.exec(
            "UPDATE integrations SET claim_owner = NULL, claim_expires = NULL
             WHERE id = ?1 AND claim_owner = ?2 AND claim_expires = ?3",
            p![id, owner, until],
        )?;
        Ok(())
    }

    pub fn integration_delete(&self, id: &str) -> Result<bool> {
        Ok(self.exec("DELETE FROM integrations WHERE id = ?1", p![id])? == 1)
    }
}
