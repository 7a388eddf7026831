//! A minimal OpenAPI v3 (`/openapi/v3` and one document per group/version). kubectl's default
//! `--validate=strict` reads it to learn that PATCH supports the `fieldValidation` parameter;
//! without it kubectl falls back to client-side validation, which needs the full OpenAPI v2 schema
//! and fails. Only what that check reads is served: the item paths' PATCH operation with its
//! `x-kubernetes-group-version-kind` and the `fieldValidation` query parameter. Validation itself
//! is lenient: the lab stores what it is given, like a CRD that preserves unknown fields.

use super::resources::RESOURCES;
use super::status::ApiError;
use super::store::Store;
use serde_json::{json, Map, Value};

fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: one entry per served group/version.
pub fn root(store: &Store) -> Value {
    let mut paths = Map::new();
    for rt in RESOURCES.iter().filter(|rt| store.is_served(rt)) {
        let path = group_version_path(rt.group, rt.version);
        // The hash lets clients cache documents; the lab's change only with the served set.
        let url = format!("/openapi/v3/{path}?hash=kasi-lab");
        paths.insert(path, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// `/openapi/v3/api/v1`, `/openapi/v3/apis/{group}/{version}`.
pub fn group_version(store: &Store, group: &str, version: &str) -> Result<Value, ApiError> {
    let mut paths = Map::new();
    let types = RESOURCES
        .iter()
        .filter(|rt| rt.group == group && rt.version == version && store.is_served(rt));
    for rt in types {
        let prefix = format!("/{}", group_version_path(group, version));
        let item_path = if rt.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", rt.plural)
        } else {
            format!("{prefix}/{}/{{name}}", rt.plural)
        };
        paths.insert(
            item_path,
            json!({"patch": {
                "operationId": format!("patch{}", rt.kind),
                "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": rt.kind},
                "parameters": [
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
                ],
                "responses": {"200": {"description": "OK"}},
            }}),
        );
    }
    if paths.is_empty() {
        return Err(ApiError::UnknownPath);
    }
    Ok(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (kasi lab)", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

/// The media type kubectl asks `/openapi/v2` for.
pub const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// The media type the real server answers it with (Go's mime parser rejects the `@` form).
pub const V2_PROTOBUF_RESPONSE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `/openapi/v2` with no definitions. kubectl reads it (as protobuf, where the empty document is
/// zero bytes) only to validate kinds it found no OpenAPI v3 for, i.e. CRD kinds whose CRD is
/// missing; finding no schema it skips validation, so the user gets the real "no matches for kind"
/// error instead of a schema download failure.
pub fn v2_empty_json() -> Value {
    json!({"swagger": "2.0", "info": {"title": "Kubernetes (kasi lab)", "version": "v1.32.0"},
        "paths": {}, "definitions": {}})
}
