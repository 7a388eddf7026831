//! Protobuf merge semantics on Envoy's JSON form, as EnvoyFilter MERGE applies them
//! (`proto.Merge` plus istio's `pkg/proto/merge` handling of `Any`).
//!
//! istiod parses a patch value into the Envoy proto, which accepts both `lowerCamelCase` and
//! `snake_case` field names, so the result has one spelling. Merging JSON instead, a patch's
//! camelCase keys are first turned into snake_case ([`to_proto_field_names`]) so Envoy never sees
//! a field twice; free-form maps (Struct values, metadata) keep their keys.

use serde_json::{Map, Value};

/// Merges `patch` into `target`: messages merge field by field, repeated fields append, scalars
/// (and messages of a different `@type`) replace.
pub(crate) fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            let type_changes = matches!(
                (target.get("@type"), patch.get("@type")),
                (Some(old), Some(new)) if old != new
            );
            if type_changes {
                *target = patch.clone();
                return;
            }
            for (key, value) in patch {
                match target.get_mut(key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(target), Value::Array(patch)) => target.extend(patch.iter().cloned()),
        (target, patch) => *target = patch.clone(),
    }
}

/// The patch value with proto field names in snake_case, leaving free-form maps alone.
pub(crate) fn to_proto_field_names(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let free_form_value = map
                .get("@type")
                .and_then(Value::as_str)
                .is_some_and(is_free_form_type);
            let mut converted = Map::with_capacity(map.len());
            for (key, field) in map {
                let key = snake_case(key);
                let field = if is_free_form_map(&key) || (free_form_value && key == "value") {
                    field.clone()
                } else {
                    to_proto_field_names(field)
                };
                converted.insert(key, field);
            }
            Value::Object(converted)
        }
        Value::Array(items) => Value::Array(items.iter().map(to_proto_field_names).collect()),
        other => other.clone(),
    }
}

/// `google.protobuf.Struct` (and the TypedStructs that wrap one) carry user keys in `value`.
fn is_free_form_type(type_url: &str) -> bool {
    type_url.ends_with("google.protobuf.Struct") || type_url.ends_with("TypedStruct")
}

/// Proto map fields whose keys are names chosen by users, not field names.
fn is_free_form_map(snake_key: &str) -> bool {
    matches!(
        snake_key,
        "filter_metadata" | "typed_filter_metadata" | "fields"
    )
}

/// `overrideHostStatus` → `override_host_status`; `@type` and snake_case keys are unchanged.
fn snake_case(key: &str) -> String {
    if key.starts_with('@') || !key.chars().any(|c| c.is_ascii_uppercase()) {
        return key.to_string();
    }
    let mut snake = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            if !snake.is_empty() {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    snake
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_merge_repeated_append_scalars_replace() {
        let mut cluster = json!({
            "name": "PassthroughCluster",
            "connect_timeout": "10s",
            "circuit_breakers": {"thresholds": [{"max_connections": 1}]},
        });
        merge(
            &mut cluster,
            &json!({
                "connect_timeout": "1s",
                "common_lb_config": {"override_host_status": {"statuses": ["DRAINING"]}},
                "circuit_breakers": {"thresholds": [{"max_connections": 2}]},
            }),
        );
        assert_eq!(
            cluster,
            json!({
                "name": "PassthroughCluster",
                "connect_timeout": "1s",
                "common_lb_config": {"override_host_status": {"statuses": ["DRAINING"]}},
                "circuit_breakers": {"thresholds": [{"max_connections": 1}, {"max_connections": 2}]},
            })
        );
    }

    #[test]
    fn a_different_any_type_replaces_the_message() {
        let mut config = json!({"typed_config": {"@type": "a.A", "x": 1}});
        merge(
            &mut config,
            &json!({"typed_config": {"@type": "b.B", "y": 2}}),
        );
        assert_eq!(config, json!({"typed_config": {"@type": "b.B", "y": 2}}));
        let mut same = json!({"typed_config": {"@type": "a.A", "x": 1}});
        merge(
            &mut same,
            &json!({"typed_config": {"@type": "a.A", "y": 2}}),
        );
        assert_eq!(
            same,
            json!({"typed_config": {"@type": "a.A", "x": 1, "y": 2}})
        );
    }

    #[test]
    fn camel_case_becomes_snake_case_except_in_free_form_maps() {
        let patch = json!({
            "commonLbConfig": {"overrideHostStatus": {"statuses": ["DRAINING"]}},
            "originalDstLbConfig": {"useHttpHeader": true, "httpHeaderName": "x-Dst"},
            "metadata": {"filterMetadata": {"myCorp": {"someKey": 1}}},
            "typedConfig": {
                "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                "typeUrl": "x",
                "value": {"keepMe": 1},
            },
            "listOfThings": [{"innerKey": 1}],
        });
        assert_eq!(
            to_proto_field_names(&patch),
            json!({
                "common_lb_config": {"override_host_status": {"statuses": ["DRAINING"]}},
                "original_dst_lb_config": {"use_http_header": true, "http_header_name": "x-Dst"},
                "metadata": {"filter_metadata": {"myCorp": {"someKey": 1}}},
                "typed_config": {
                    "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                    "type_url": "x",
                    "value": {"keepMe": 1},
                },
                "list_of_things": [{"inner_key": 1}],
            })
        );
    }
}
