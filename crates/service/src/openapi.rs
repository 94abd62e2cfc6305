//! The OpenAPI 3 description of the API, served at GET /openapi.json.

use serde_json::{Value, json};

fn query(name: &str, required: bool, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": required, "description": description,
           "schema": {"type": "integer", "format": "int64"}})
}

fn answers(ok: &str) -> Value {
    let error = json!({"description": "bad request: the JSON body names the problem",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    json!({
        "200": {"description": ok, "content": {"application/json": {"schema": {"type": "object"}}}},
        "400": error, "404": error, "429": {"description": "over a rate limit; see Retry-After"},
    })
}

pub fn document() -> Value {
    let k = |max: &str| query("k", false, &format!("list length, 1..={max} (default {max})"));
    json!({
        "openapi": "3.0.3",
        "info": {"title": "musicrec", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Music recommendations: online (similar tracks of the latest listens, ALS fold-in) blended with offline or popular ones."},
        "paths": {
            "/recommendations": {"get": {
                "summary": "Blended recommendations; each item names its source (als, bpr, fold_in, offline, popular)",
                "parameters": [query("user_id", true, "user id"), k("service.max_k")],
                "responses": answers("user_id, model_version, recommendations: [{track_id, source}]")}},
            "/events": {
                "post": {"summary": "Record a listen",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Event"}}}},
                    "responses": {"201": {"description": "stored"}, "400": {"description": "not JSON, or not a JSON object"},
                                  "408": {"description": "body not complete in time"},
                                  "413": {"description": "body too large"}, "415": {"description": "not application/json"},
                                  "422": {"description": "missing field or unknown track"},
                                  "429": {"description": "over a rate limit; see Retry-After"},
                                  "503": {"description": "events store (Redis) or event log unavailable"}}},
                "get": {"summary": "A user's latest listens, newest first",
                    "parameters": [query("user_id", true, "user id"), k("service.events_per_user")],
                    "responses": answers("user_id, events: [track_id]")}},
            "/similar": {"get": {"summary": "Similar tracks, similarity sources round-robin",
                "parameters": [query("track_id", true, "track id"), k("service.max_k")],
                "responses": answers("track_id, similar: [{track_id, source}]")}},
            "/popular": {"get": {"summary": "Most popular tracks", "parameters": [k("service.max_k")],
                "responses": answers("popular: [{track_id, source}]")}},
            "/health": {"get": {"summary": "Liveness and the loaded model version (run id)", "responses": answers("status, model_version, stages")}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text exposition format"}}}},
            "/admin/reload": {"post": {"summary": "Load the artifacts again and swap them in atomically",
                "security": [{"adminToken": []}],
                "responses": {"200": {"description": "model_version, previous_version"},
                              "401": {"description": "missing or wrong bearer token"},
                              "403": {"description": "disabled: no service.admin_token is configured"},
                              "422": {"description": "the artifact set was refused; the old one stays"}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3"}}}},
        },
        "components": {
          "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer",
                                             "description": "service.admin_token (MUSICREC__SERVICE__ADMIN_TOKEN)"}},
          "schemas": {
            "Event": {"type": "object", "required": ["user_id", "track_id"], "additionalProperties": false,
                      "properties": {"user_id": {"type": "integer", "format": "int64"}, "track_id": {"type": "integer", "format": "int64"}}},
            "Error": {"type": "object", "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}},
        }},
    })
}
