//! A Kubernetes API server for the lab: plain HTTP on loopback, no auth, speaking the real wire
//! protocol (discovery, list/watch, get/create/update/delete, patch and server-side apply with
//! managedFields, pod logs, port-forward over WebSocket, Table output) for the resources kasi and
//! kubectl use. Objects are kept as JSON like `unstructured`, so any client sees what it would see
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
