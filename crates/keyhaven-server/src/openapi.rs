//! The OpenAPI document, generated from the handlers' annotations and the wire types.
//! `openapi.json` at the repository root is this document; a test fails when they drift.

use crate::routes::{identity, integration, meta, project, service};
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Keyhaven API",
        description = "Aiven-compatible API of Keyhaven, managed Valkey with read replicas. \
            Authenticate with `Authorization: aivenv1 TOKEN` or `Authorization: Bearer TOKEN`. \
            Errors have Aiven's shape: {\"message\", \"errors\": [{\"message\", \"status\", \"error_code\"}]}."
    ),
    paths(
        meta::healthz, meta::readyz, meta::cloud_list, meta::service_type_list,
        meta::project_service_type_list, meta::project_service_type_get, meta::vpc_list,
        identity::user_create, identity::user_auth, identity::me,
        identity::access_token_create, identity::access_token_revoke,
        project::project_list, project::project_create, project::project_get, project::project_invite,
        service::service_create, service::service_list, service::service_get, service::service_delete,
        integration::service_integration_list, integration::service_integration_create,
        integration::service_integration_delete,
    ),
    modifiers(&TokenAuth),
    security(("tokenAuth" = []))
)]
pub struct ApiDoc;

struct TokenAuth;

impl utoipa::Modify for TokenAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "tokenAuth",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "authorization",
                "`aivenv1 TOKEN` or `Bearer TOKEN`",
            ))),
        );
    }
}

/// The document as pretty JSON, as checked in.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
}
