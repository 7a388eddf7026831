//! What the lab's Knative data plane (ingress, activators, kube-proxy) knows about the cluster,
//! derived from the API objects exactly where Knative derives it: private Endpoints for the
//! revision's pods, `config-network` and `config-autoscaler` for how traffic flows.

use super::seed::SYSTEM_NAMESPACE;
use crate::kube_api::{self, Store};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The kinds the activator's informers read.
const WATCHED: [(&str, &str); 3] = [("v1", "Service"), ("v1", "Endpoints"), ("v1", "ConfigMap")];

/// Changes arriving within this window are folded into one refresh (an apply brings several).
const DEBOUNCE: Duration = Duration::from_millis(30);

/// What the activators route by, from the objects in the API now.
pub fn from_store(store: &Store) -> Routing {
    Routing::from_objects(&kube_api::list_kinds(store, &WATCHED), SYSTEM_NAMESPACE)
}

/// Runs until aborted: every API change (debounced) refreshes `routing`.
pub fn spawn(store: Store, routing: Arc<RwLock<Routing>>) -> JoinHandle<()> {
    let mut events = store.subscribe();
    tokio::spawn(async move {
        while kube_api::next_change(&mut events, DEBOUNCE).await {
            let next = from_store(&store);
            if let Ok(mut current) = routing.write() {
                *current = next;
            }
        }
    })
}

/// `config-network` `mesh-compatibility-mode` (case-insensitive; anything else means auto:
/// knative/networking `pkg/config/config.go` `asMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshMode {
    Auto,
    Enabled,
    Disabled,
}

/// Knative's default `target-burst-capacity` (`pkg/autoscaler/config/config.go`).
pub const DEFAULT_TARGET_BURST_CAPACITY: f64 = 211.0;

/// One revision as the activator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionTarget {
    /// Ready pods' `ip:8012`, from the `<revision>-private` Endpoints.
    pub ready_pods: Vec<SocketAddr>,
    /// The private Service's ClusterIP:80 and FQDN, for mesh-compatible sends.
    pub private_service: Option<(SocketAddr, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    pub mesh_mode: MeshMode,
    pub target_burst_capacity: f64,
    /// Keyed by (namespace, revision).
    pub revisions: BTreeMap<(String, String), RevisionTarget>,
    /// Ready activators' `ip:8012`, from the `activator-service` Endpoints: where a revision in
    /// proxy mode sends (its public Endpoints are the activators', copied by the SKS reconciler:
    /// `pkg/reconciler/serverlessservice/serverlessservice.go` `reconcilePublicEndpoints`).
    pub activators: Vec<SocketAddr>,
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            mesh_mode: MeshMode::Auto,
            target_burst_capacity: DEFAULT_TARGET_BURST_CAPACITY,
            revisions: BTreeMap::new(),
            activators: Vec::new(),
        }
    }
}

impl Routing {
    /// Whether the activator is always in the request path (`target-burst-capacity: "-1"`).
    pub fn activator_always_in_path(&self) -> bool {
        self.target_burst_capacity == -1.0
    }

    pub fn revision(&self, namespace: &str, revision: &str) -> Option<&RevisionTarget> {
        self.revisions
            .get(&(namespace.to_owned(), revision.to_owned()))
    }

    /// Derives everything from the current objects (any kinds; irrelevant ones are ignored).
    pub fn from_objects<'a>(
        objects: impl IntoIterator<Item = &'a Value>,
        system_namespace: &str,
    ) -> Routing {
        let mut routing = Routing::default();
        let mut private_services: BTreeMap<(String, String), (SocketAddr, String)> =
            BTreeMap::new();
        let mut private_endpoints: Vec<&Value> = Vec::new();
        for object in objects {
            let meta = &object["metadata"];
            let namespace = meta["namespace"].as_str().unwrap_or_default();
            let name = meta["name"].as_str().unwrap_or_default();
            let private =
                meta["labels"]["networking.internal.knative.dev/serviceType"] == "Private";
            match object["kind"].as_str() {
                Some("ConfigMap") if namespace == system_namespace && name == "config-network" => {
                    routing.mesh_mode = match object["data"]["mesh-compatibility-mode"].as_str() {
                        Some(m) if m.eq_ignore_ascii_case("enabled") => MeshMode::Enabled,
                        Some(m) if m.eq_ignore_ascii_case("disabled") => MeshMode::Disabled,
                        _ => MeshMode::Auto,
                    };
                }
                Some("ConfigMap")
                    if namespace == system_namespace && name == "config-autoscaler" =>
                {
                    routing.target_burst_capacity = object["data"]["target-burst-capacity"]
                        .as_str()
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(DEFAULT_TARGET_BURST_CAPACITY);
                }
                Some("Service") if private && object["apiVersion"] == "v1" => {
                    let ip = object["spec"]["clusterIP"]
                        .as_str()
                        .and_then(|ip| ip.parse::<IpAddr>().ok());
                    if let (Some(ip), Some(revision)) =
                        (ip, meta["labels"]["serving.knative.dev/revision"].as_str())
                    {
                        let fqdn = format!("{name}.{namespace}.svc.cluster.local");
                        private_services.insert(
                            (namespace.to_owned(), revision.to_owned()),
                            (SocketAddr::new(ip, 80), fqdn),
                        );
                    }
                }
                Some("Endpoints") if private => private_endpoints.push(object),
                Some("Endpoints")
                    if namespace == system_namespace && name == "activator-service" =>
                {
                    routing.activators = ready_addresses(object, "http");
                }
                _ => {}
            }
        }
        for endpoints in private_endpoints {
            let meta = &endpoints["metadata"];
            let (Some(namespace), Some(revision)) = (
                meta["namespace"].as_str(),
                meta["labels"]["serving.knative.dev/revision"].as_str(),
            ) else {
                continue;
            };
            let key = (namespace.to_owned(), revision.to_owned());
            routing.revisions.insert(
                key.clone(),
                RevisionTarget {
                    ready_pods: ready_addresses(endpoints, "http"),
                    private_service: private_services.get(&key).cloned(),
                },
            );
        }
        routing
    }
}

/// Ready `ip:port` of an Endpoints object, the port taken from the named endpoint port as the
/// activator does (`pkg/activator/net/helpers.go` `endpointsToDests`).
fn ready_addresses(endpoints: &Value, port_name: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for subset in endpoints["subsets"].as_array().into_iter().flatten() {
        let port = subset["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == port_name)
            .and_then(|p| p["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok());
        let Some(port) = port else { continue };
        for address in subset["addresses"].as_array().into_iter().flatten() {
            if let Some(ip) = address["ip"]
                .as_str()
                .and_then(|ip| ip.parse::<IpAddr>().ok())
            {
                out.push(SocketAddr::new(ip, port));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_plane::layout::Layout;
    use crate::knative::seed::{objects, SeedSpec};

    #[test]
    fn reads_what_knative_reads() {
        let spec = SeedSpec {
            layout: Layout { subnet: 42 },
            activators: 2,
            hello_pods: 3,
            filler_services: 2,
            istio_crds: true,
            native_sidecars: true,
        };
        let mut objects = objects(&spec);
        let routing = Routing::from_objects(&objects, "knative-serving");
        assert_eq!(routing.mesh_mode, MeshMode::Auto);
        assert!(!routing.activator_always_in_path());
        let hello = routing.revision("default", "hello-00001").unwrap();
        assert_eq!(hello.ready_pods.len(), 3);
        assert_eq!(hello.ready_pods[0], "127.42.1.10:8012".parse().unwrap());
        assert_eq!(
            hello.private_service.as_ref().unwrap().1,
            "hello-00001-private.default.svc.cluster.local"
        );
        for o in objects.iter_mut() {
            if o["kind"] == "ConfigMap" && o["metadata"]["name"] == "config-network" {
                o["data"]["mesh-compatibility-mode"] = "Disabled".into();
            }
            if o["kind"] == "ConfigMap" && o["metadata"]["name"] == "config-autoscaler" {
                o["data"]["target-burst-capacity"] = "-1".into();
            }
        }
        let routing = Routing::from_objects(&objects, "knative-serving");
        assert_eq!(routing.mesh_mode, MeshMode::Disabled);
        assert!(routing.activator_always_in_path());
    }
}
