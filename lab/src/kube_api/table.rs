//! `meta.k8s.io/v1` Table output, which `kubectl get` asks for: the columns kubectl prints
//! for the common kinds (pods: READY/STATUS/RESTARTS/AGE, after
//! `pkg/printers/internalversion/printers.go` `printPod`), NAME and AGE otherwise.

use super::resources::ResourceType;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};

/// What each row carries besides its cells (the `includeObject` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

fn column(name: &str, kind: &str, format: &str, priority: u8) -> Value {
    json!({"name": name, "type": kind, "format": format, "description": name, "priority": priority})
}

fn columns(rt: &ResourceType) -> Vec<Value> {
    let name = column("Name", "string", "name", 0);
    let age = column("Age", "string", "", 0);
    match (rt.group, rt.kind) {
        ("", "Pod") => vec![
            name,
            column("Ready", "string", "", 0),
            column("Status", "string", "", 0),
            column("Restarts", "string", "", 0),
            age,
            column("IP", "string", "", 1),
        ],
        ("", "Service") => vec![
            name,
            column("Type", "string", "", 0),
            column("Cluster-IP", "string", "", 0),
            column("External-IP", "string", "", 0),
            column("Port(s)", "string", "", 0),
            age,
        ],
        ("apps", "Deployment") => vec![
            name,
            column("Ready", "string", "", 0),
            column("Up-to-date", "integer", "", 0),
            column("Available", "integer", "", 0),
            age,
        ],
        ("", "Namespace") => vec![name, column("Status", "string", "", 0), age],
        _ => vec![name, age],
    }
}

fn text(object: &Value, pointer: &str) -> String {
    match object.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn number(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn cells(rt: &ResourceType, object: &Value) -> Vec<Value> {
    let name = json!(text(object, "/metadata/name"));
    let age = json!(age(&text(object, "/metadata/creationTimestamp")));
    match (rt.group, rt.kind) {
        ("", "Pod") => {
            // As `printPod` (pkg/printers/internalversion/printers.go) counts: the containers,
            // plus the init containers that restart (native sidecars).
            let sidecars: Vec<&str> = object
                .pointer("/spec/initContainers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|c| c["restartPolicy"] == "Always")
                .filter_map(|c| c["name"].as_str())
                .collect();
            let mut statuses = object
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            statuses.extend(
                object
                    .pointer("/status/initContainerStatuses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|s| s["name"].as_str().is_some_and(|n| sidecars.contains(&n)))
                    .cloned(),
            );
            let containers = object
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
                + sidecars.len();
            let ready = statuses
                .iter()
                .filter(|s| s["ready"] == json!(true))
                .count();
            let restarts: i64 = statuses
                .iter()
                .map(|s| s["restartCount"].as_i64().unwrap_or(0))
                .sum();
            let mut phase = text(object, "/status/phase");
            if object.pointer("/metadata/deletionTimestamp").is_some() {
                phase = "Terminating".into();
            } else if phase.is_empty() {
                phase = "Pending".into();
            }
            let ip = text(object, "/status/podIP");
            vec![
                name,
                json!(format!("{ready}/{containers}")),
                json!(phase),
                json!(restarts.to_string()),
                age,
                json!(if ip.is_empty() { "<none>".into() } else { ip }),
            ]
        }
        ("", "Service") => {
            let ports: Vec<String> = object
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| {
                    let protocol = p["protocol"].as_str().unwrap_or("TCP");
                    format!("{}/{protocol}", text(p, "/port"))
                })
                .collect();
            let or_none = |s: String| {
                if s.is_empty() {
                    "<none>".to_string()
                } else {
                    s
                }
            };
            let service_type = text(object, "/spec/type");
            vec![
                name,
                json!(if service_type.is_empty() {
                    "ClusterIP".into()
                } else {
                    service_type
                }),
                json!(or_none(text(object, "/spec/clusterIP"))),
                json!("<none>"),
                json!(or_none(ports.join(","))),
                age,
            ]
        }
        ("apps", "Deployment") => vec![
            name,
            json!(format!(
                "{}/{}",
                number(object, "/status/readyReplicas"),
                object
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
            )),
            json!(number(object, "/status/updatedReplicas")),
            json!(number(object, "/status/availableReplicas")),
            age,
        ],
        ("", "Namespace") => vec![
            name,
            json!(match text(object, "/status/phase") {
                phase if phase.is_empty() => "Active".to_string(),
                phase => phase,
            }),
            age,
        ],
        _ => vec![name, age],
    }
}

/// A Table of `objects` (one row each).
pub fn table(
    rt: &ResourceType,
    objects: &[Value],
    resource_version: Option<&str>,
    include: IncludeObject,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let mut row = json!({"cells": cells(rt, object)});
            match include {
                IncludeObject::None => {}
                IncludeObject::Object => row["object"] = object.clone(),
                IncludeObject::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": object.get("metadata").cloned().unwrap_or(json!({})),
                    })
                }
            }
            row
        })
        .collect();
    let mut metadata = json!({});
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = json!(rv);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns(rt),
        "rows": rows,
    })
}

/// Age as kubectl prints it (`45s`, `3m20s`, `5h`, `2d`).
fn age(created: &str) -> String {
    let Ok(created) = humantime::parse_rfc3339_weak(created) else {
        return "<unknown>".into();
    };
    let elapsed = SystemTime::now()
        .duration_since(created)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let (minutes, hours, days) = (elapsed / 60, elapsed / 3600, elapsed / 86_400);
    match elapsed {
        s if s < 120 => format!("{s}s"),
        _ if minutes < 10 => format!("{minutes}m{}s", elapsed % 60),
        _ if hours < 3 => format!("{minutes}m"),
        _ if hours < 8 => format!("{hours}h{}m", minutes % 60),
        _ if hours < 48 => format!("{hours}h"),
        _ if days < 8 => format!("{days}d{}h", hours % 24),
        _ => format!("{days}d"),
    }
}
