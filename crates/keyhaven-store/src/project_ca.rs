//! Each project's certificate authority: its certificate and private key (PEM), created
//! once, on first need, and shared by every instance through the store. The key is read
//! back as a [`PrivateKeyPem`], whose `Debug` redacts it.

use crate::sql::{Row, p};
use crate::{Result, Tx};
use keyhaven_core::PrivateKeyPem;

#[derive(Debug, Clone)]
pub struct ProjectCaRow {
    pub project: String,
    /// The CA's subject common name: the issuer of every certificate it signs.
    pub common_name: String,
    pub certificate_pem: String,
    pub private_key: PrivateKeyPem,
    pub create_time: i64,
}

fn from_row(r: Row) -> Result<ProjectCaRow> {
    Ok(ProjectCaRow {
        project: r.text(0)?,
        common_name: r.text(1)?,
        certificate_pem: r.text(2)?,
        private_key: PrivateKeyPem::new(r.text(3)?),
        create_time: r.int(4)?,
    })
}

impl Tx<'_> {
    pub fn project_ca_get(&self, project: &str) -> Result<Option<ProjectCaRow>> {
        self.row(
            "SELECT project, common_name, certificate_pem, private_key_pem, create_time
             FROM project_cas WHERE project = ?1",
            p![project],
        )?
        .map(from_row)
        .transpose()
    }

    /// Stores a project's CA. A project has one: call it in the write transaction that
    /// found none ([`Tx::project_ca_get`]), so that two instances never store two.
    pub fn project_ca_insert(&self, ca: &ProjectCaRow) -> Result<()> {
        self.exec(
            "INSERT INTO project_cas
                 (project, common_name, certificate_pem, private_key_pem, create_time)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            p![
                &ca.project,
                &ca.common_name,
                &ca.certificate_pem,
                ca.private_key.expose(),
                ca.create_time
            ],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    #[test]
    fn a_projects_ca_is_stored_and_read_back_and_its_key_is_not_printed() {
        let store = Store::open_in_memory().unwrap();
        let ca = ProjectCaRow {
            project: "default".into(),
            common_name: "Keyhaven project default CA".into(),
            certificate_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
                .into(),
            private_key: PrivateKeyPem::new(
                "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n".into(),
            ),
            create_time: 7,
        };
        let got = store
            .write_blocking(|tx| {
                tx.project_insert("default", "local", 1)?;
                assert!(tx.project_ca_get("default")?.is_none());
                tx.project_ca_insert(&ca)?;
                // A project has one CA: a second insert is refused.
                assert!(tx.project_ca_insert(&ca).is_err());
                tx.project_ca_get("default")
            })
            .unwrap()
            .unwrap();
        assert_eq!(got.common_name, ca.common_name);
        assert_eq!(got.certificate_pem, ca.certificate_pem);
        assert_eq!(got.private_key, ca.private_key);
        assert_eq!(got.create_time, 7);
        assert!(!format!("{got:?}").contains("PRIVATE KEY"));
    }
}
