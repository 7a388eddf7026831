//! What the lab's Knative data plane (ingress, activators, kube-proxy) knows about the cluster,
//! derived from the API objects exactly where Knative derives it: private Endpoints for the
//! revision's pods, the Revision for its protocol, the Routes for which Host reaches which
//! revision, `config-network` and `config-autoscaler` for how traffic flows.

use super::seed::SYSTEM_NAMESPACE;
use crate::kube_api::{self, Store};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The kinds the activator's (and the ingress's) informers read.
const WATCHED: [(&str, &str); 5] = [
    ("v1", "Service"),
    ("v1", "Endpoints"),
    ("v1", "ConfigMap"),
    ("serving.knative.dev/v1", "Revision"),
    ("serving.knative.dev/v1", "Route"),
];

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

/// A revision's app-level protocol (knative/networking `pkg/apis/networking/generic_types.go`
/// `ProtocolType`): `h2c` when its container's first port is named `h2c`, else HTTP/1
/// (`pkg/apis/serving/v1/revision_helpers.go` `Revision.GetProtocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProtocolType {
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge.
    H2c,
}

impl ProtocolType {
    /// The name of the Services' and Endpoints' serving port (knative/networking
    /// `pkg/apis/networking/ports.go` `ServicePortName`).
    pub fn service_port_name(self) -> &'static str {
        match self {
            ProtocolType::Http1 => "http",
            ProtocolType::H2c => "http2",
        }
    }

    /// The port queue-proxy serves on (`pkg/networking/constants.go` `BackendHTTPPort`,
    /// `BackendHTTP2Port`).
    pub fn backend_port(self) -> u16 {
        match self {
            ProtocolType::Http1 => 8012,
            ProtocolType::H2c => 8013,
        }
    }

    /// From a Revision object, as `Revision.GetProtocol` reads it.
    pub fn of_revision(revision: &Value) -> ProtocolType {
        match revision["spec"]["containers"][0]["ports"][0]["name"].as_str() {
            Some("h2c") => ProtocolType::H2c,
            _ => ProtocolType::Http1,
        }
    }
}

/// One revision as the activator sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevisionTarget {
    /// Ready pods' `ip:port`, from the `<revision>-private` Endpoints' port named for the
    /// revision's protocol (`http` 8012 or `http2` 8013).
    pub ready_pods: Vec<SocketAddr>,
    /// The private Service's ClusterIP:80 and FQDN, for mesh-compatible sends.
    pub private_service: Option<(SocketAddr, String)>,
    pub protocol: ProtocolType,
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
    /// The same activators' h2c port, `ip:8013` (port `http2`): an h2c revision's public
    /// Endpoints keep only that port (`pkg/reconciler/serverlessservice/resources/services.go`
    /// `FilterSubsetPorts`), and the activator serves h2c there (`cmd/activator/main.go`).
    pub activators_h2c: Vec<SocketAddr>,
    /// Which revision a request's Host reaches: each Route's `status.url` host and its
    /// cluster-local names, to the revision taking its traffic (what net-istio's KIngress makes
    /// of the Route).
    pub hosts: BTreeMap<String, (String, String)>,
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            mesh_mode: MeshMode::Auto,
            target_burst_capacity: DEFAULT_TARGET_BURST_CAPACITY,
            revisions: BTreeMap::new(),
            activators: Vec::new(),
            activators_h2c: Vec::new(),
            hosts: BTreeMap::new(),
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

    /// The (namespace, revision) a Host (without its port, any case) is routed to.
    pub fn route_for_host(&self, host: &str) -> Option<&(String, String)> {
        self.hosts.get(&host.to_ascii_lowercase())
    }

    /// Derives everything from the current objects (any kinds; irrelevant ones are ignored).
    pub fn from_objects<'a>(
        objects: impl IntoIterator<Item = &'a Value>,
        system_namespace: &str,
    ) -> Routing {
        let mut routing = Routing::default();
        let mut private_services: Vec<&Value> = Vec::new();
        let mut private_endpoints: Vec<&Value> = Vec::new();
        let mut protocols: BTreeMap<(String, String), ProtocolType> = BTreeMap::new();
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
                    private_services.push(object);
                }
                Some("Endpoints") if private => private_endpoints.push(object),
                Some("Endpoints")
                    if namespace == system_namespace && name == "activator-service" =>
                {
                    routing.activators = ready_addresses(object, "http");
                    routing.activators_h2c = ready_addresses(object, "http2");
                }
                Some("Revision") => {
                    protocols.insert(
                        (namespace.to_owned(), name.to_owned()),
                        ProtocolType::of_revision(object),
                    );
                }
                Some("Route") => {
                    for (host, revision) in route_hosts(object) {
                        routing.hosts.insert(host, (namespace.to_owned(), revision));
                    }
                }
                _ => {}
            }
        }
        let revision_key = |object: &Value| -> Option<(String, String)> {
            let meta = &object["metadata"];
            Some((
                meta["namespace"].as_str()?.to_owned(),
                meta["labels"]["serving.knative.dev/revision"]
                    .as_str()?
                    .to_owned(),
            ))
        };
        let protocol_of = |key: &(String, String)| protocols.get(key).copied().unwrap_or_default();
        // The private Service's port for the revision's protocol (`pkg/activator/net/helpers.go`
        // `getServicePort`); both `http` and `http2` are port 80 there.
        let mut cluster_ips: BTreeMap<(String, String), (SocketAddr, String)> = BTreeMap::new();
        for service in private_services {
            let Some(key) = revision_key(service) else {
                continue;
            };
            let port_name = protocol_of(&key).service_port_name();
            let port = service["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == port_name)
                .and_then(|p| p["port"].as_u64())
                .and_then(|p| u16::try_from(p).ok());
            let ip = service["spec"]["clusterIP"]
                .as_str()
                .and_then(|ip| ip.parse::<IpAddr>().ok());
            if let (Some(ip), Some(port), Some(name)) =
                (ip, port, service["metadata"]["name"].as_str())
            {
                let fqdn = format!("{name}.{}.svc.cluster.local", key.0);
                cluster_ips.insert(key, (SocketAddr::new(ip, port), fqdn));
            }
        }
        for endpoints in private_endpoints {
            let Some(key) = revision_key(endpoints) else {
                continue;
            };
            let protocol = protocol_of(&key);
            // `revision_backends.go` `endpointsToDests(endpoints, ServicePortName(protocol))`.
            routing.revisions.insert(
                key.clone(),
                RevisionTarget {
                    ready_pods: ready_addresses(endpoints, protocol.service_port_name()),
                    private_service: cluster_ips.get(&key).cloned(),
                    protocol,
                },
            );
        }
        routing
    }
}

/// The hosts a Route answers for and the revision taking its traffic: the host of `status.url`
/// and of `status.address.url` (the cluster-local one) with the shorter names the cluster's DNS
/// search path resolves, as the Route's KIngress lists them (`pkg/reconciler/route/domains/
/// domains.go` `GetAllDomainsAndTags`, knative/networking `pkg/ingress/ingress.go`
/// `ExpandedHosts`). The lab's Routes send 100% to one revision; the first traffic target wins.
fn route_hosts(route: &Value) -> Vec<(String, String)> {
    let Some(revision) = route["status"]["traffic"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|t| t["revisionName"].as_str())
    else {
        return Vec::new();
    };
    let host_of = |url: &Value| -> Option<String> {
        let rest = url.as_str()?.split_once("://")?.1;
        let host = rest.split(['/', ':']).next()?;
        (!host.is_empty()).then(|| host.to_ascii_lowercase())
    };
    let mut hosts: Vec<String> = host_of(&route["status"]["url"]).into_iter().collect();
    if let Some(local) = host_of(&route["status"]["address"]["url"]) {
        // `name.ns.svc.cluster.local` also answers as `name.ns.svc` and `name.ns`.
        if let Some(short) = local.strip_suffix(".cluster.local") {
            if let Some(shorter) = short.strip_suffix(".svc") {
                hosts.push(shorter.to_owned());
            }
            hosts.push(short.to_owned());
        }
        hosts.push(local);
    }
    hosts
        .into_iter()
        .map(|host| (host, revision.to_owned()))
        .collect()
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
            h2c_pods: 2,
            mcp_pods: 1,
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
        assert_eq!(hello.protocol, ProtocolType::Http1);
        // An h2c revision: pods on their `http2` port, 8013; its ClusterIP on `http2`, 80.
        let h2c = routing.revision("default", "hello-h2c-00001").unwrap();
        assert_eq!(h2c.protocol, ProtocolType::H2c);
        assert_eq!(h2c.ready_pods.len(), 2);
        assert_eq!(h2c.ready_pods[0], "127.42.2.10:8013".parse().unwrap());
        assert_eq!(h2c.private_service.as_ref().unwrap().0.port(), 80);
        assert_eq!(routing.activators.len(), 2);
        assert_eq!(
            routing.activators_h2c[0],
            "127.42.0.10:8013".parse().unwrap()
        );
        // Hosts, from the Routes: external and cluster-local names.
        let to = |ns: &str, rev: &str| Some((ns.to_owned(), rev.to_owned()));
        assert_eq!(
            routing.route_for_host("MCP.default.example.com").cloned(),
            to("default", "mcp-00001")
        );
        for host in [
            "hello-h2c.default",
            "hello-h2c.default.svc",
            "hello-h2c.default.svc.cluster.local",
        ] {
            assert_eq!(
                routing.route_for_host(host).cloned(),
                to("default", "hello-h2c-00001"),
                "{host}"
            );
        }
        assert_eq!(
            routing
                .route_for_host("svc-0001.lab-apps.example.com")
                .cloned(),
            to("lab-apps", "svc-0001-00001")
        );
        assert!(routing.route_for_host("nope.example.com").is_none());
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
