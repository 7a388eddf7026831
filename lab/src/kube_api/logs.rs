//! `pods/{name}/log`: what the container logged (from the lab via [`LabHooks::pod_log`]), the last
//! `tailLines` of it, and with `follow=true` every later line until the client goes away
//! (`pkg/registry/core/pod/rest/log.go`, which streams the kubelet's answer).

use super::http::{full_body, streaming_response, Body, Query};
use super::routes::ResourcePath;
use super::status::ApiError;
use super::store::Store;
use super::LabHooks;
use bytes::Bytes;
use http::{header, Response};
use serde_json::Value;

const TEXT: &str = "text/plain";

fn container_names(pod: &Value) -> Vec<String> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(
            pod.pointer("/spec/initContainers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        )
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

/// The container to read, checked the way the real server checks it.
fn choose_container(
    pod: &Value,
    name: &str,
    requested: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let names = container_names(pod);
    match requested {
        Some(container) if names.is_empty() || names.iter().any(|n| n == container) => {
            Ok(Some(container.to_string()))
        }
        Some(container) => Err(ApiError::BadRequest(format!(
            "container {container} is not valid for pod {name}"
        ))),
        None => {
            let default = pod
                .pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container")
                .and_then(Value::as_str);
            match (default, names.as_slice()) {
                (Some(default), _) => Ok(Some(default.to_string())),
                (None, [only]) => Ok(Some(only.clone())),
                (None, []) => Ok(None),
                (None, many) => Err(ApiError::BadRequest(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    many.join(" ")
                ))),
            }
        }
    }
}

fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(count);
    lines[start..]
        .iter()
        .map(|line| format!("{line}\n"))
        .collect()
}

pub fn handle(
    store: &Store,
    hooks: &dyn LabHooks,
    path: &ResourcePath,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let name = path.name.as_deref().unwrap_or_default();
    let namespace = path.namespace.as_deref().unwrap_or("default");
    let pod = store
        .get(path.rt, Some(namespace), name)
        .ok_or_else(|| ApiError::NotFound {
            resource: "pods".into(),
            name: name.to_string(),
        })?;
    let container = choose_container(&pod, name, query.get("container"))?;
    let follow = query.flag("follow");
    let (text, later) = hooks
        .pod_log(namespace, name, container.as_deref(), follow)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "container {:?} in pod {name:?} is waiting to start: ContainerCreating",
                container.as_deref().unwrap_or_default()
            ))
        })?;
    let text = match query.number("tailLines")? {
        Some(count) => last_lines(&text, usize::try_from(count).unwrap_or(usize::MAX)),
        None => text,
    };
    let Some(mut later) = later.filter(|_| follow) else {
        let mut response = Response::new(full_body(text));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(TEXT));
        return Ok(response);
    };
    let (response, sender) = streaming_response(TEXT);
    tokio::spawn(async move {
        if !text.is_empty() && sender.send(Bytes::from(text)).await.is_err() {
            return;
        }
        loop {
            let line = tokio::select! {
                _ = sender.closed() => return,
                line = later.recv() => match line {
                    Some(line) => line,
                    None => return,
                },
            };
            let line = if line.ends_with('\n') {
                line
            } else {
                format!("{line}\n")
            };
            if sender.send(Bytes::from(line)).await.is_err() {
                return;
            }
        }
    });
    Ok(response)
}
