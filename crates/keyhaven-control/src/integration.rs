//! Integrations: list, create (refused for read replicas) and delete (= promotion).

use crate::identity::visible_project;
use crate::service::READ_REPLICA;
use crate::{App, AppError, Caller};
use keyhaven_store::IntegrationRow;

impl App {
    /// `GET /v1/project/P/service/S/integration`: every link the service is part of, as
    /// source (a primary sees all its replicas' links) or as destination.
    pub async fn integration_list(
        &self,
        caller: &Caller,
        project: &str,
        service: &str,
    ) -> Result<Vec<IntegrationRow>, AppError> {
        self.store
            .read(|tx| {
                visible_project(tx, caller, project)?;
                let row = tx
                    .service_by_name(project, service)?
                    .ok_or_else(|| AppError::service_not_found(project, service))?;
                Ok(tx.integrations_of_service(&row.id)?)
            })
            .await
    }

    /// `POST /v1/project/P/integration`. A read replica is made by creating the service
    /// with the integration, so this only ever explains that.
    pub async fn integration_create(
        &self,
        caller: &Caller,
        project: &str,
        integration_type: &str,
    ) -> Result<IntegrationRow, AppError> {
        self.project_for(caller, project).await?;
        if integration_type == READ_REPLICA {
            return Err(AppError::invalid(
                "read_replica_at_creation_only",
                "read_replica can only be set during service creation: create the replica with \
                 service_integrations [{\"integration_type\": \"read_replica\", \"source_service\": PRIMARY}]",
            ));
        }
        Err(AppError::invalid(
            "unsupported_integration",
            format!(
                "Integration type '{}' is not supported; Keyhaven supports: {READ_REPLICA} (at service creation)",
                integration_type.chars().take(64).collect::<String>()
            ),
        ))
    }
}
