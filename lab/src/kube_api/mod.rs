//! A Kubernetes API server for the lab: plain HTTP on loopback, no auth, speaking the real wire
//! protocol (discovery, list/watch, get/create/update/delete, patch and server-side apply with
//! managedFields, pod logs, port-forward over WebSocket and SPDY, Table output) for the resources
//! kasi and kubectl use. Objects are kept as JSON like `unstructured`, so any client sees what it would see
//! in a cluster: fidelity is the point, because where the lab differs from a cluster, tests lie.

mod crds;
mod discovery;
mod http;
mod logs;
mod managed_fields;
mod objects;
mod openapi;
mod patch;
mod portforward;
mod protobuf;
pub mod resources;
mod routes;
pub mod selector;
mod server;
mod status;
pub mod store;
mod table;
mod watch;

pub use crds::crd_object;
pub use resources::{find_by_kind, find_by_plural, ResourceType, RESOURCES};
pub use server::{kubeconfig_yaml, serve};
pub use status::FieldConflict;
pub use store::{ApiError, EventType, Store, StoreEvent};

use serde_json::Value;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

/// Every object of the given kinds, each with its `apiVersion` and `kind` (a list carries the kind
/// on the list, not the items): what the informer caches of an in-process controller hold. A kind
/// the API does not serve (Istio's, without their CRDs) contributes nothing.
pub fn list_kinds(store: &Store, kinds: &[(&str, &str)]) -> Vec<Value> {
    let mut out = Vec::new();
    for &(api_version, kind) in kinds {
        if let Some(rt) = find_by_kind(api_version, kind) {
            if let Ok((items, _)) = store.list(rt, None, None) {
                out.extend(items.into_iter().map(|mut item| {
                    item["apiVersion"] = api_version.into();
                    item["kind"] = kind.into();
                    item
                }));
            }
        }
    }
    out
}

/// Waits for the next change to the store, then for `debounce`, and folds every change that
/// arrived meanwhile into that one (an apply brings several). `false` once the store is gone.
pub async fn next_change(events: &mut broadcast::Receiver<StoreEvent>, debounce: Duration) -> bool {
    match events.recv().await {
        Ok(_) | Err(RecvError::Lagged(_)) => {}
        Err(RecvError::Closed) => return false,
    }
    tokio::time::sleep(debounce).await;
    while let Ok(_) | Err(TryRecvError::Lagged(_)) = events.try_recv() {}
    true
}

/// What the API server asks the rest of the lab for: the things that are not objects.
pub trait LabHooks: Send + Sync + 'static {
    /// Everything the container logged so far, and (when following) a receiver of later lines.
    /// `None` (the default): the pod has no such container, as for an API without a lab behind
    /// it.
    fn pod_log(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        follow: bool,
    ) -> Option<(String, Option<tokio::sync::mpsc::Receiver<String>>)> {
        let _ = (namespace, pod, container, follow);
        None
    }

    /// Where a pod's port really listens in the lab (e.g. an activator's sidecar admin port 15000).
    /// `None` (the default): nothing listens there.
    fn port_forward_target(
        &self,
        namespace: &str,
        pod: &str,
        port: u16,
    ) -> Option<std::net::SocketAddr> {
        let _ = (namespace, pod, port);
        None
    }

    /// Whether the lab's user may `verb` (`get`, `list`, `watch`, `create`, …) `resource`
    /// (`pods`, `pods/log`, `wasmplugins.extensions.istio.io`, …) in `namespace` (`None`: cluster
    /// scope). Everything is allowed unless a lab is made to refuse, which is how tests show what
    /// kasi does when RBAC says no.
    fn authorize(&self, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
        let _ = (verb, resource, namespace);
        true
    }
}
