//! How the lab's Kubernetes and Knative stand-ins change objects when pods come and go: pod
//! readiness, and the revision's private Endpoints and EndpointSlice that the activator reads.
//! A pod that is not Ready moves to `notReadyAddresses`, as Kubernetes' endpoints controller puts
//! it (`pkg/controller/endpoint/endpoints_controller.go` `syncService`, `addEndpointSubset`).

use super::seed::{self, APP_NAMESPACE, HELLO_REVISION};
use crate::kube_api::{find_by_kind, Store};
use anyhow::Context as _;
use serde_json::{json, Value};
use std::net::IpAddr;

fn get(
    store: &Store,
    api_version: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Value> {
    let rt = find_by_kind(api_version, kind).with_context(|| format!("{kind} not served"))?;
    let mut object = store
        .get(rt, Some(namespace), name)
        .with_context(|| format!("no {kind} {namespace}/{name}"))?;
    object["apiVersion"] = api_version.into();
    object["kind"] = kind.into();
    Ok(object)
}

/// Creates or replaces an object as the lab's controllers do.
pub(crate) fn put(store: &Store, object: Value) -> anyhow::Result<()> {
    store
        .put(object)
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Edits the revision's private EndpointSlice, if the lab has one (the activator reads
/// Endpoints; EndpointSlices are there for clients that list them).
fn edit_endpoint_slice(
    store: &Store,
    namespace: &str,
    private: &str,
    edit: impl FnOnce(&mut Vec<Value>),
) -> anyhow::Result<()> {
    let name = format!("{private}-lab01");
    if let Ok(mut slice) = get(
        store,
        "discovery.k8s.io/v1",
        "EndpointSlice",
        namespace,
        &name,
    ) {
        if let Some(list) = slice["endpoints"].as_array_mut() {
            edit(list);
        }
        put(store, slice)?;
    }
    Ok(())
}

/// Marks a pod ready or not, and moves its address between the ready and not-ready sets of its
/// revision's private Endpoints and EndpointSlice.
pub fn set_pod_ready(
    store: &Store,
    namespace: &str,
    pod_name: &str,
    ready: bool,
) -> anyhow::Result<()> {
    let mut pod = get(store, "v1", "Pod", namespace, pod_name)?;
    let status = if ready { "True" } else { "False" };
    for condition in pod["status"]["conditions"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        if condition["type"] == "Ready" || condition["type"] == "ContainersReady" {
            condition["status"] = status.into();
        }
    }
    for container in pod["status"]["containerStatuses"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        container["ready"] = ready.into();
        container["state"] = if ready {
            json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}})
        } else {
            json!({"terminated": {"exitCode": 137, "reason": "Error"}})
        };
    }
    let revision = pod["metadata"]["labels"]["serving.knative.dev/revision"]
        .as_str()
        .unwrap_or(HELLO_REVISION)
        .to_owned();
    let ip = pod["status"]["podIP"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    put(store, pod)?;
    let private = format!("{revision}-private");
    let mut endpoints = get(store, "v1", "Endpoints", namespace, &private)?;
    for subset in endpoints["subsets"].as_array_mut().into_iter().flatten() {
        let (from, to) = if ready {
            ("notReadyAddresses", "addresses")
        } else {
            ("addresses", "notReadyAddresses")
        };
        let mut moved = Vec::new();
        if let Some(list) = subset[from].as_array_mut() {
            list.retain(|a| {
                let hit = a["ip"] == ip.as_str();
                if hit {
                    moved.push(a.clone());
                }
                !hit
            });
        }
        if !moved.is_empty() {
            if !subset[to].is_array() {
                subset[to] = json!([]);
            }
            if let Some(list) = subset[to].as_array_mut() {
                list.extend(moved);
            }
        }
        if subset[from].as_array().is_some_and(|l| l.is_empty()) {
            if let Some(s) = subset.as_object_mut() {
                s.remove(from);
            }
        }
    }
    put(store, endpoints)?;
    edit_endpoint_slice(store, namespace, &private, |endpoints| {
        for endpoint in endpoints
            .iter_mut()
            .filter(|e| e["addresses"][0] == ip.as_str())
        {
            endpoint["conditions"] =
                json!({"ready": ready, "serving": ready, "terminating": false});
        }
    })
}

/// Adds a `hello` pod (a scale-up): the Pod object, ready, in the private Endpoints.
pub fn add_hello_pod(store: &Store, pod_name: &str, ip: IpAddr) -> anyhow::Result<()> {
    add_pod(store, APP_NAMESPACE, HELLO_REVISION, pod_name, ip)
}

/// Adds a pod to `revision` (a scale-up): the Pod object, copied from one of the revision's pods
/// as its ReplicaSet would make it, ready, in the private Endpoints and EndpointSlice.
pub fn add_pod(
    store: &Store,
    namespace: &str,
    revision: &str,
    pod_name: &str,
    ip: IpAddr,
) -> anyhow::Result<()> {
    let mut pod = first_pod(store, namespace, revision)?;
    pod["metadata"] = json!({"name": pod_name, "namespace": namespace, "labels": pod["metadata"]["labels"].clone()});
    pod["status"] = seed::running_status(ip, &["user-container", "queue-proxy"]);
    put(store, pod)?;
    let private = format!("{revision}-private");
    let mut endpoints = get(store, "v1", "Endpoints", namespace, &private)?;
    let address = json!({"ip": ip.to_string(), "nodeName": "lab-node", "targetRef": {"kind": "Pod", "name": pod_name, "namespace": namespace}});
    if let Some(list) = endpoints["subsets"][0]["addresses"].as_array_mut() {
        list.push(address);
    } else {
        endpoints["subsets"][0]["addresses"] = json!([address]);
    }
    put(store, endpoints)?;
    edit_endpoint_slice(store, namespace, &private, |endpoints| {
        endpoints.push(
            json!({"addresses": [ip.to_string()], "nodeName": "lab-node",
            "conditions": {"ready": true, "serving": true, "terminating": false},
            "targetRef": {"kind": "Pod", "name": pod_name, "namespace": namespace}}),
        );
    })
}

fn first_pod(store: &Store, namespace: &str, revision: &str) -> anyhow::Result<Value> {
    let rt = find_by_kind("v1", "Pod").context("pods not served")?;
    let selector = format!("serving.knative.dev/revision={revision}");
    let (pods, _) = store
        .list(rt, Some(namespace), Some(&selector))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut pod = pods
        .into_iter()
        .next()
        .with_context(|| format!("no {revision} pod left to copy"))?;
    pod["apiVersion"] = "v1".into();
    pod["kind"] = "Pod".into();
    Ok(pod)
}

/// Removes a `hello` pod (a scale-down) from the API and the private Endpoints.
pub fn remove_hello_pod(store: &Store, pod_name: &str) -> anyhow::Result<()> {
    remove_pod(store, APP_NAMESPACE, pod_name)
}

/// Removes a revision pod (a scale-down) from the API, its private Endpoints and EndpointSlice.
pub fn remove_pod(store: &Store, namespace: &str, pod_name: &str) -> anyhow::Result<()> {
    let pod = get(store, "v1", "Pod", namespace, pod_name)?;
    let ip = pod["status"]["podIP"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let revision = pod["metadata"]["labels"]["serving.knative.dev/revision"]
        .as_str()
        .with_context(|| format!("pod {pod_name} has no revision label"))?
        .to_owned();
    let rt = find_by_kind("v1", "Pod").context("pods not served")?;
    store
        .delete(rt, Some(namespace), pod_name)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let private = format!("{revision}-private");
    let mut endpoints = get(store, "v1", "Endpoints", namespace, &private)?;
    for subset in endpoints["subsets"].as_array_mut().into_iter().flatten() {
        for key in ["addresses", "notReadyAddresses"] {
            if let Some(list) = subset[key].as_array_mut() {
                list.retain(|a| a["ip"] != ip.as_str());
            }
        }
    }
    put(store, endpoints)?;
    edit_endpoint_slice(store, namespace, &private, |endpoints| {
        endpoints.retain(|e| e["addresses"][0] != ip.as_str());
    })
}
