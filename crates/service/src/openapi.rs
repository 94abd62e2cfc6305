//! The OpenAPI 3.1 description of the API, served at GET /openapi.json: the operations come
//! from the handlers' `utoipa::path` attributes as the router registers them
//! (`http::api_routes`, `http::operator_routes`), the schemas from the response types.

use std::sync::LazyLock;

use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "musicrec",
        description = "Music recommendations: online (similar tracks of the latest listens, ALS fold-in) \
                       blended with offline or popular ones, each track with its catalogue names."
    ),
    tags(
        (name = "recommendations", description = "Lists of tracks"),
        (name = "events", description = "Listens"),
        (name = "operations", description = "Health, metrics, reload, this document"),
    ),
    // Schemas only parameters name: the derive collects the bodies' schemas, not theirs.
    components(schemas(crate::catalogue::Fields)),
    modifiers(&AdminToken)
)]
struct Base;

/// The bearer token of POST /admin/reload.
struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, document: &mut Document) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("service.admin_token (MUSICREC__SERVICE__ADMIN_TOKEN)"))
            .build();
        document.components.get_or_insert_default().add_security_scheme("adminToken", SecurityScheme::Http(scheme));
    }
}

/// The whole document.
pub fn document() -> Document {
    let mut document = Base::openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_string();
    document.merge(crate::http::api_routes().merge(crate::http::operator_routes()).into_openapi());
    document
}

/// The document as served, made once.
pub fn json() -> &'static str {
    static JSON: LazyLock<String> = LazyLock::new(|| document().to_json().expect("the OpenAPI document serializes"));
    &JSON
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_an_id_and_typed_answers() {
        let doc: serde_json::Value = serde_json::from_str(json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                operations += 1;
                let at = format!("{method} {path}");
                assert!(operation["operationId"].is_string(), "{at}: no operationId");
                for (status, response) in operation["responses"].as_object().unwrap() {
                    if path == "/openapi.json" {
                        continue;
                    }
                    let content = response["content"].as_object().unwrap_or_else(|| panic!("{at} {status}: untyped"));
                    assert!(content.values().all(|c| c["schema"].is_object()), "{at} {status}: no schema");
                }
            }
        }
        assert_eq!(operations, 10);
        let track = &doc["components"]["schemas"]["Track"];
        assert_eq!(track["required"], serde_json::json!(["track_id"]), "{track}");
        let recommendations = &doc["components"]["schemas"]["RecommendationsAnswer"];
        assert_eq!(recommendations["properties"]["recommendations"]["items"]["$ref"], "#/components/schemas/Track");
        assert_eq!(doc["components"]["securitySchemes"]["adminToken"]["scheme"], "bearer");
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        for r in refs {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
            assert!(doc["components"]["schemas"][name].is_object(), "{r} does not resolve");
        }
    }

    fn collect_refs(value: &serde_json::Value, refs: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(r) = map.get("$ref").and_then(|r| r.as_str()) {
                    refs.push(r.to_string());
                }
                map.values().for_each(|v| collect_refs(v, refs));
            }
            serde_json::Value::Array(values) => values.iter().for_each(|v| collect_refs(v, refs)),
            _ => {}
        }
    }
}
