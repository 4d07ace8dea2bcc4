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
        identity::access_token_list, identity::access_token_create, identity::access_token_revoke,
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

#[cfg(test)]
mod tests {
    /// `openapi.json` at the repository root must be exactly what the code generates.
    /// Regenerate it with `cargo run -- openapi > openapi.json` (or `KEYHAVEN_BLESS=1` here).
    #[test]
    fn checked_in_openapi_document_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.json");
        let generated = format!("{}\n", super::document());
        if std::env::var_os("KEYHAVEN_BLESS").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "openapi.json is out of date; regenerate it with `cargo run -- openapi > openapi.json`"
        );
    }

    #[test]
    fn every_route_is_documented() {
        let doc: serde_json::Value = serde_json::from_str(&super::document()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/v1/project/{project}/service",
            "/v1/project/{project}/service/{service}",
            "/v1/project/{project}/service/{service}/integration",
            "/v1/project/{project}/integration/{integration_id}",
            "/v1/project/{project}/service-types/{service_type}",
            "/v1/userauth",
        ] {
            assert!(
                paths.contains_key(p),
                "{p} missing from the OpenAPI document"
            );
        }
        let service = &doc["components"]["schemas"]["Service"]["properties"];
        assert!(service.get("keyhaven_replication").is_some());
    }
}
