//! Projects: list, get, create and invite.

use crate::identity::{fold_email, visible_project};
use crate::{App, AppError, Caller};
use keyhaven_core::time::now_micros;
use keyhaven_core::validate_name;
use keyhaven_store::ProjectRow;

/// Aiven's project member types.
const MEMBER_TYPES: &[&str] = &["admin", "developer", "operator", "read_only"];

impl App {
    /// `POST /v1/project`: creates a project; the caller becomes its admin member.
    pub async fn project_create(
        &self,
        caller: &Caller,
        name: &str,
        cloud: Option<&str>,
    ) -> Result<ProjectRow, AppError> {
        validate_name("project", name)
            .map_err(|e| AppError::invalid("invalid_name", e.to_string()))?;
        let now = now_micros();
        self.store
            .write(|tx| {
                let cloud = self.resolve_cloud(tx, cloud, None)?;
                if tx.project_get(name)?.is_some() {
                    return Err(AppError::conflict(
                        "project_exists",
                        format!("Project '{name}' already exists"),
                    ));
                }
                let row = tx.project_insert(name, &cloud, now)?;
                tx.membership_insert(name, caller.user.id, "admin")?;
                Ok(row)
            })
            .await
    }

    /// `POST /v1/project/P/invite`: adds an existing user as a member at once.
    /// (Keyhaven records the member type; every member may do everything in the project.)
    pub async fn project_invite(
        &self,
        caller: &Caller,
        project: &str,
        email: &str,
        member_type: &str,
    ) -> Result<(), AppError> {
        if !MEMBER_TYPES.contains(&member_type) {
            return Err(AppError::invalid(
                "invalid_member_type",
                format!(
                    "member_type '{}' is not one of {}",
                    member_type.chars().take(64).collect::<String>(),
                    MEMBER_TYPES.join(", ")
                ),
            ));
        }
        self.store
            .write(|tx| {
                visible_project(tx, caller, project)?;
                let user = tx.user_by_email(&fold_email(email))?.ok_or_else(|| {
                    AppError::not_found("user_not_found", format!("User '{email}' does not exist"))
                })?;
                tx.membership_insert(project, user.id, member_type)?;
                Ok(())
            })
            .await
    }

    /// A cloud name as given, or the project's default when none was given; unknown names
    /// are refused naming the valid ones.
    pub(crate) fn resolve_cloud(
        &self,
        tx: &keyhaven_store::Tx<'_>,
        cloud: Option<&str>,
        project_default: Option<&str>,
    ) -> Result<String, AppError> {
        match cloud {
            None | Some("") => Ok(project_default
                .unwrap_or(&self.default_cloud().name)
                .to_string()),
            // The store, not this instance's copy: a host registered a moment ago counts.
            Some(c) if tx.cloud_get(c)?.is_some() => Ok(c.to_string()),
            Some(c) => Err(AppError::invalid(
                "unknown_cloud",
                format!(
                    "Unknown cloud '{}'; valid clouds: {}",
                    c.chars().take(64).collect::<String>(),
                    tx.clouds()?
                        .into_iter()
                        .map(|c| c.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }
}
