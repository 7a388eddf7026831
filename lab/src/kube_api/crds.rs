//! CustomResourceDefinition objects for the CRD-backed types, shaped like the real ones (names,
//! scope, versions, `Established` condition), so that creating one makes its kinds served and a
//! client checking `customresourcedefinitions/<name>` finds what it would in a cluster.

use super::resources::types_of_crd;
use serde_json::{json, Value};

/// The CRD named `crd_name` (e.g. `sidecars.networking.istio.io`), if the lab knows its types.
pub fn crd_object(crd_name: &str) -> Option<Value> {
    let types: Vec<_> = types_of_crd(crd_name).collect();
    let first = types.first()?;
    let names = json!({
        "kind": first.kind,
        "listKind": first.list_kind(),
        "plural": first.plural,
        "singular": first.singular,
        "shortNames": first.short_names,
        "categories": first.categories,
    });
    let versions: Vec<Value> = types
        .iter()
        .enumerate()
        .map(|(index, rt)| {
            json!({
                "name": rt.version,
                "served": true,
                // The last listed (oldest) version is where Istio stores its objects.
                "storage": index + 1 == types.len(),
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": true,
                }},
                "subresources": {"status": {}},
            })
        })
        .collect();
    Some(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": crd_name, "labels": {"app": "istio-pilot"}},
        "spec": {
            "group": first.group,
            "names": names,
            "scope": if first.namespaced { "Namespaced" } else { "Cluster" },
            "versions": versions,
        },
        "status": {
            "acceptedNames": names,
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"},
            ],
            "storedVersions": [types.last().map(|rt| rt.version)],
        },
    }))
}
