//! Discovery documents: `/api`, `/apis`, `/apis/{group}`, the APIResourceLists and `/version`.
//! Only the classic (unaggregated) form is served: kubectl ≥ 1.26 asks for aggregated discovery
//! first and falls back to these when the answer's Content-Type is plain `application/json`.

use super::resources::{groups, ResourceType, RESOURCES};
use super::status::ApiError;
use super::store::Store;
use serde_json::{json, Value};

fn served_versions(store: &Store, group: &str) -> Vec<&'static str> {
    groups()
        .into_iter()
        .filter(|(name, _)| *name == group)
        .flat_map(|(_, versions)| versions)
        .filter(|version| served_types(store, group, version).next().is_some())
        .collect()
}

fn served_types<'a>(
    store: &'a Store,
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceType> + 'a {
    RESOURCES
        .iter()
        .filter(move |rt| rt.group == group && rt.version == version && store.is_served(rt))
}

fn group_document(store: &Store, group: &str) -> Option<Value> {
    let versions = served_versions(store, group);
    let entries: Vec<Value> = versions
        .iter()
        .map(|version| json!({"groupVersion": format!("{group}/{version}"), "version": version}))
        .collect();
    let preferred = entries.first()?.clone();
    Some(json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": entries,
        "preferredVersion": preferred,
    }))
}

/// `/api`
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// `/apis`
pub fn group_list(store: &Store) -> Value {
    let groups: Vec<Value> = groups()
        .into_iter()
        .filter(|(group, _)| !group.is_empty())
        .filter_map(|(group, _)| group_document(store, group))
        .map(|mut document| {
            if let Some(map) = document.as_object_mut() {
                map.remove("kind");
                map.remove("apiVersion");
            }
            document
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`
pub fn group(store: &Store, group: &str) -> Result<Value, ApiError> {
    group_document(store, group).ok_or(ApiError::UnknownPath)
}

fn subresource_entry(rt: &ResourceType, subresource: &str) -> Value {
    let (kind, verbs): (&str, &[&str]) = match subresource {
        "log" => ("Pod", &["get"]),
        "portforward" => ("PodPortForwardOptions", &["create", "get"]),
        _ => (rt.kind, &["get", "patch", "update"]),
    };
    json!({
        "name": format!("{}/{subresource}", rt.plural),
        "singularName": "",
        "namespaced": rt.namespaced,
        "kind": kind,
        "verbs": verbs,
    })
}

/// `/api/v1`, `/apis/{group}/{version}`
pub fn resource_list(store: &Store, group: &str, version: &str) -> Result<Value, ApiError> {
    let mut resources = Vec::new();
    for rt in served_types(store, group, version) {
        let mut entry = json!({
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": rt.verbs,
        });
        if !rt.short_names.is_empty() {
            entry["shortNames"] = json!(rt.short_names);
        }
        if !rt.categories.is_empty() {
            entry["categories"] = json!(rt.categories);
        }
        resources.push(entry);
        for subresource in rt.subresources {
            resources.push(subresource_entry(rt, subresource));
        }
    }
    if resources.is_empty() {
        return Err(ApiError::UnknownPath);
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Ok(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

/// `/version`: a recent Kubernetes, so clients enable what they would against a real one.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-kasi-lab",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23.4",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}
