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
        meta::healthz, meta::readyz, meta::metrics, meta::cloud_list, meta::service_type_list,
        meta::project_service_type_list, meta::project_service_type_get, meta::vpc_list,
        meta::project_cloud_list, meta::unnamed_project_cloud_list,
        identity::user_create, identity::user_auth, identity::me,
        identity::access_token_list, identity::access_token_create, identity::access_token_revoke,
        project::project_list, project::project_create, project::project_get, project::project_invite,
        project::project_ca_get,
        service::service_create, service::service_list, service::service_get, service::service_delete,
        service::service_update, service::service_credentials_reset,
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

    /// The operations of the document: (METHOD, path).
    fn documented_operations() -> Vec<(String, String, serde_json::Value)> {
        let doc: serde_json::Value = serde_json::from_str(&super::document()).unwrap();
        let mut ops = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if matches!(
                    method.as_str(),
                    "get" | "put" | "post" | "delete" | "options" | "head" | "patch" | "trace"
                ) {
                    ops.push((method.to_uppercase(), path.clone(), op.clone()));
                }
            }
        }
        ops
    }

    /// The router's table is the truth: every route it serves is documented, and the
    /// document has no operation the router does not serve.
    #[test]
    fn the_document_has_exactly_the_routers_operations() {
        use std::collections::BTreeSet;
        let table = crate::routes::routes();
        let routed: BTreeSet<(String, String)> = table
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        assert_eq!(routed.len(), table.len(), "a route is in the table twice");
        let documented: BTreeSet<(String, String)> = documented_operations()
            .into_iter()
            .map(|(m, p, _)| (m, p))
            .collect();
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from the OpenAPI document: {undocumented:?}"
        );
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            unrouted.is_empty(),
            "documented operations the router does not serve: {unrouted:?}"
        );

        let doc: serde_json::Value = serde_json::from_str(&super::document()).unwrap();
        let service = &doc["components"]["schemas"]["Service"]["properties"];
        assert!(service.get("keyhaven_replication").is_some());
    }

    /// Exactly the open endpoints are documented as needing no token; every other
    /// operation requires `tokenAuth`.
    #[test]
    fn only_the_open_endpoints_are_documented_without_a_token() {
        const OPEN: &[(&str, &str)] = &[
            ("GET", "/healthz"),
            ("GET", "/readyz"),
            ("GET", "/v1/clouds"),
            ("POST", "/v1/userauth"),
        ];
        let ops = documented_operations();
        for (method, path, op) in &ops {
            let open = OPEN.contains(&(method.as_str(), path.as_str()));
            // An operation without its own `security` inherits the document's tokenAuth.
            let documented_open = op["security"] == serde_json::json!([{}]);
            assert_eq!(
                documented_open, open,
                "{method} {path}: documented as open = {documented_open}, open = {open}"
            );
        }
        for (method, path) in OPEN {
            assert!(
                ops.iter().any(|(m, p, _)| m == method && p == path),
                "{method} {path} is not an operation"
            );
        }
    }
}
