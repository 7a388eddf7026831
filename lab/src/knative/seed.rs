//! The objects a fresh lab starts with, shaped like a real cluster's: Knative's own activator
//! Deployment and ConfigMaps (embedded unchanged, see `seed/ORIGIN.md`), revision Services and
//! Endpoints with Knative's labels and ports, an `istio-system` with istiod, and the Istio CRDs.

use super::routing::ProtocolType;
use crate::data_plane::layout::Layout;
use crate::istiod::injector;
use crate::kube_controllers::deployment::template_hash;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};

const ACTIVATOR_YAML: &str = include_str!("seed/activator.yaml");
const CONFIG_NETWORK_YAML: &str = include_str!("seed/config-network.yaml");
const CONFIG_AUTOSCALER_YAML: &str = include_str!("seed/config-autoscaler.yaml");

/// The namespace of the lab's demo service and of the filler services.
pub const APP_NAMESPACE: &str = "default";
pub const FILLER_NAMESPACE: &str = "lab-apps";
pub const SYSTEM_NAMESPACE: &str = "knative-serving";
pub const HELLO: &str = "hello";
pub const HELLO_REVISION: &str = "hello-00001";
/// The Host the ingress gives requests for `hello` (Knative's default domain template).
pub const HELLO_HOST: &str = "hello.default.example.com";
pub const HELLO_H2C_REVISION: &str = "hello-h2c-00001";
pub const HELLO_H2C_HOST: &str = "hello-h2c.default.example.com";
pub const MCP_REVISION: &str = "mcp-00001";
pub const MCP_HOST: &str = "mcp.default.example.com";
/// Where the `mcp` revision's server answers (the MCP spec's conventional endpoint).
pub const MCP_PATH: &str = "/mcp";
const CREATED: &str = "2026-01-01T00:00:00Z";

/// What a lab revision's pods run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Answers every request with its pod's name, the HTTP version and the cookie header fields
    /// it received ([`crate::data_plane::pods`]).
    Echo,
    /// A stateful MCP server on Streamable HTTP at [`MCP_PATH`] ([`crate::data_plane::mcp_pod`]).
    Mcp,
}

/// A Knative Service of the lab whose pods really run (the fillers exist only as objects).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabService {
    pub name: &'static str,
    pub revision: &'static str,
    /// Its Route's external host (Knative's default domain template, `{name}.{ns}.example.com`).
    pub host: &'static str,
    pub protocol: ProtocolType,
    pub workload: Workload,
    pub image: &'static str,
    /// The `pod-template-hash` its pods' names carry.
    template_hash: &'static str,
    /// Its place in [`LAB_SERVICES`], which picks its pods' /24 ([`Layout::revision_pod_ip`]).
    slot: usize,
}

pub const HELLO_SERVICE: LabService = LabService {
    name: HELLO,
    revision: HELLO_REVISION,
    host: HELLO_HOST,
    protocol: ProtocolType::Http1,
    workload: Workload::Echo,
    image: "ghcr.io/knative/helloworld-go:latest",
    template_hash: "5f7b9c8d4",
    slot: 0,
};

/// An h2c revision: its container port is named `h2c`, so Knative serves it over HTTP/2 with
/// prior knowledge on 8013 end to end.
pub const HELLO_H2C_SERVICE: LabService = LabService {
    name: "hello-h2c",
    revision: HELLO_H2C_REVISION,
    host: HELLO_H2C_HOST,
    protocol: ProtocolType::H2c,
    workload: Workload::Echo,
    image: "ghcr.io/kasi-lab/h2c-echo:latest",
    template_hash: "7d9f6b5c8",
    slot: 1,
};

pub const MCP_SERVICE: LabService = LabService {
    name: "mcp",
    revision: MCP_REVISION,
    host: MCP_HOST,
    protocol: ProtocolType::Http1,
    workload: Workload::Mcp,
    image: "ghcr.io/kasi-lab/mcp-whoami:latest",
    template_hash: "6b8c4d7f9",
    slot: 2,
};

/// Every lab service whose pods run, in the order their pods' addresses are laid out.
pub const LAB_SERVICES: [LabService; 3] = [HELLO_SERVICE, HELLO_H2C_SERVICE, MCP_SERVICE];

impl LabService {
    /// The lab service a revision belongs to.
    pub fn by_revision(revision: &str) -> Option<&'static LabService> {
        LAB_SERVICES.iter().find(|s| s.revision == revision)
    }

    /// Its pod `index`'s name, stable so tests and logs can name it:
    /// `<revision>-deployment-<pod-template-hash>-<suffix>`.
    pub fn pod_name(&self, index: usize) -> String {
        format!(
            "{}-deployment-{}-{}",
            self.revision,
            self.template_hash,
            suffix(100 + 1000 * self.slot + index)
        )
    }

    pub fn pod_ip(&self, layout: &Layout, index: usize) -> IpAddr {
        layout.revision_pod_ip(self.slot, index)
    }

    /// Where its pod `index` serves: queue-proxy's port for the revision's protocol.
    pub fn pod_addr(&self, layout: &Layout, index: usize) -> SocketAddr {
        SocketAddr::new(self.pod_ip(layout, index), self.protocol.backend_port())
    }

    /// The hosts its Route answers for: the external one and the cluster-local names.
    pub fn hosts(&self) -> Vec<String> {
        let local = format!("{}.{APP_NAMESPACE}", self.name);
        vec![
            self.host.to_owned(),
            local.clone(),
            format!("{local}.svc"),
            format!("{local}.svc.cluster.local"),
        ]
    }
}

/// What the lab is made of.
#[derive(Debug, Clone)]
pub struct SeedSpec {
    pub layout: Layout,
    pub activators: usize,
    pub hello_pods: usize,
    pub h2c_pods: usize,
    pub mcp_pods: usize,
    /// Other Knative services, only there to make the unscoped sidecar config big.
    pub filler_services: usize,
    pub istio_crds: bool,
    /// istio-proxy as a native sidecar (an init container with `restartPolicy: Always`), as
    /// Istio ≥ 1.27 injects it on Kubernetes ≥ 1.33; `false`: in `containers`, as before.
    pub native_sidecars: bool,
}

impl SeedSpec {
    /// How many pods a lab service starts with.
    pub fn pods(&self, service: &LabService) -> usize {
        match service.slot {
            0 => self.hello_pods,
            1 => self.h2c_pods,
            _ => self.mcp_pods,
        }
    }
}

/// Names of the lab's first activator pods (the ones a fresh lab starts with), stable so logs and
/// tests can name them; pods of later rollouts get random suffixes, as a ReplicaSet's do.
pub fn activator_pod_name(replica: usize) -> String {
    format!("activator-{}-{}", seed_template_hash(), suffix(replica))
}

/// The `pod-template-hash` of Knative's activator Deployment as the lab seeds it.
pub fn seed_template_hash() -> String {
    yaml_documents(ACTIVATOR_YAML)
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .map(|d| template_hash(&d["spec"]["template"]))
        .unwrap_or_default()
}

pub fn hello_pod_name(index: usize) -> String {
    HELLO_SERVICE.pod_name(index)
}

/// Kubernetes-style 5-character pod name suffix.
fn suffix(n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = n.wrapping_add(7).wrapping_mul(2_654_435_761) % 14_348_907; // 27^5
    (0..5)
        .map(|_| {
            let c = ALPHABET[x % 27] as char;
            x /= 27;
            c
        })
        .collect()
}

pub fn objects(spec: &SeedSpec) -> Vec<Value> {
    let mut out = vec![
        namespace(APP_NAMESPACE, json!({})),
        namespace(SYSTEM_NAMESPACE, json!({"istio-injection": "enabled"})),
        namespace("istio-system", json!({})),
        namespace(FILLER_NAMESPACE, json!({})),
    ];
    if spec.istio_crds {
        out.extend(istio_crds());
        out.extend(istio_install());
    }
    out.extend(knative_crds());
    out.extend(system(spec));
    let mut cluster_ips = (0..).map(|i| spec.layout.cluster_ip(i));
    let activator_ips: Vec<IpAddr> = (0..spec.activators)
        .map(|i| spec.layout.activator_ip(i))
        .collect();
    for service in &LAB_SERVICES {
        let pods: Vec<(String, IpAddr)> = (0..spec.pods(service))
            .map(|i| (service.pod_name(i), service.pod_ip(&spec.layout, i)))
            .collect();
        out.extend(knative_service(
            APP_NAMESPACE,
            service.name,
            &Shape::of(service),
            &pods,
            &activator_ips,
            &mut cluster_ips,
        ));
    }
    for i in 0..spec.filler_services {
        let name = format!("svc-{i:04}");
        let pod = (
            format!("{name}-00001-deployment-6c8d7f5b9-{}", suffix(i)),
            spec.layout.filler_pod_ip(i),
        );
        out.extend(knative_service(
            FILLER_NAMESPACE,
            &name,
            &Shape::of(&HELLO_SERVICE),
            &[pod],
            &activator_ips,
            &mut cluster_ips,
        ));
    }
    out.push(service(
        "istio-system",
        "istiod",
        json!({"app": "istiod", "istio": "pilot"}),
        cluster_ips.next(),
        json!([
            {"name": "grpc-xds", "port": 15010, "protocol": "TCP", "targetPort": 15010},
            {"name": "https-dns", "port": 15012, "protocol": "TCP", "targetPort": 15012},
            {"name": "https-webhook", "port": 443, "protocol": "TCP", "targetPort": 15017},
            {"name": "http-monitoring", "port": 15014, "protocol": "TCP", "targetPort": 15014},
        ]),
        Some(json!({"app": "istiod"})),
    ));
    out
}

fn meta(namespace: Option<&str>, name: &str, labels: Value) -> Value {
    let mut m = json!({"name": name, "labels": labels, "creationTimestamp": CREATED});
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    m
}

fn namespace(name: &str, labels: Value) -> Value {
    let mut labels = labels;
    labels["kubernetes.io/metadata.name"] = json!(name);
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta(None, name, labels),
           "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
}

fn yaml_documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .filter_map(|doc| serde::Deserialize::deserialize(doc).ok())
        .filter(|v: &Value| v.is_object())
        .collect()
}

/// Knative's activator Deployment (2 replicas, injected), its pods and Service, and ConfigMaps.
fn system(spec: &SeedSpec) -> Vec<Value> {
    let mut out = Vec::new();
    for mut doc in yaml_documents(ACTIVATOR_YAML) {
        doc["metadata"]["creationTimestamp"] = json!(CREATED);
        if doc["kind"] == "Deployment" {
            doc["spec"]["replicas"] = json!(spec.activators);
            doc["status"] = json!({"replicas": spec.activators, "readyReplicas": spec.activators,
                "availableReplicas": spec.activators, "updatedReplicas": spec.activators,
                "observedGeneration": 1});
            for replica in 0..spec.activators {
                out.push(activator_pod(
                    &doc,
                    &activator_pod_name(replica),
                    spec.layout.activator_ip(replica),
                    spec.native_sidecars,
                    true,
                    true,
                ));
            }
        }
        out.push(doc);
    }
    let activator_ips: Vec<IpAddr> = (0..spec.activators)
        .map(|i| spec.layout.activator_ip(i))
        .collect();
    out.push(endpoints(SYSTEM_NAMESPACE, "activator-service", json!({"app": "activator"}),
        &activator_ips.iter().enumerate().map(|(i, ip)| (activator_pod_name(i), *ip)).collect::<Vec<_>>(),
        json!([{"name": "http", "port": 8012, "protocol": "TCP"}, {"name": "http2", "port": 8013, "protocol": "TCP"},
               {"name": "http-metrics", "port": 9090, "protocol": "TCP"}])));
    for text in [CONFIG_NETWORK_YAML, CONFIG_AUTOSCALER_YAML] {
        for mut doc in yaml_documents(text) {
            doc["metadata"]["creationTimestamp"] = json!(CREATED);
            out.push(doc);
        }
    }
    out
}

/// An activator pod as the Deployment's ReplicaSet makes it from the current template, with
/// istio-proxy injected by the webhook when injection applies ([`crate::istiod::injector`]), and
/// the status a running (or, with `ready` off, a starting) pod has.
pub fn activator_pod(
    deployment: &Value,
    name: &str,
    ip: IpAddr,
    native_sidecars: bool,
    injection_enabled: bool,
    ready: bool,
) -> Value {
    let template = &deployment["spec"]["template"];
    let hash = template_hash(template);
    let mut labels = template["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels["pod-template-hash"] = json!(hash);
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": meta(Some(SYSTEM_NAMESPACE), name, labels),
        "spec": template["spec"].clone(),
    });
    pod["metadata"]["creationTimestamp"] = json!(crate::kube_api::store::now_rfc3339());
    if let Some(annotations) = template["metadata"]["annotations"].as_object() {
        pod["metadata"]["annotations"] = json!(annotations);
    }
    pod["spec"]["nodeName"] = json!("lab-node");
    if pod["spec"]["terminationGracePeriodSeconds"].is_null() {
        pod["spec"]["terminationGracePeriodSeconds"] = json!(600);
    }
    pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "name": format!("activator-{hash}"), "uid": format!("lab-activator-rs-{hash}"), "controller": true}]);
    let injected = injector::injection_required(&pod, injection_enabled);
    if injected {
        injector::inject(&mut pod, native_sidecars);
    }
    pod["status"] = activator_pod_status(&pod, ip, ready);
    pod
}

/// A pod's status as the kubelet reports it: `Running` and Ready once its containers are up,
/// `Pending` before; a native istio-proxy is reported among the init containers.
pub fn activator_pod_status(pod: &Value, ip: IpAddr, ready: bool) -> Value {
    let names = |list: &str| -> Vec<(String, bool)> {
        pod["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                Some((
                    c["name"].as_str()?.to_owned(),
                    c["restartPolicy"] == "Always",
                ))
            })
            .collect()
    };
    let containers: Vec<String> = names("containers").into_iter().map(|(n, _)| n).collect();
    let refs: Vec<&str> = containers.iter().map(String::as_str).collect();
    let mut status = running_status(ip, &refs);
    let init: Vec<Value> = names("initContainers")
        .into_iter()
        .map(|(name, restartable)| {
            if restartable {
                json!({"name": name, "ready": ready, "restartCount": 0, "started": ready, "image": name,
                       "imageID": "", "state": {"running": {"startedAt": CREATED}}})
            } else {
                json!({"name": name, "ready": true, "restartCount": 0, "image": name, "imageID": "",
                       "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": CREATED, "finishedAt": CREATED}}})
            }
        })
        .collect();
    if !init.is_empty() {
        status["initContainerStatuses"] = json!(init);
    }
    if !ready {
        status["phase"] = json!("Pending");
        for condition in status["conditions"].as_array_mut().into_iter().flatten() {
            if condition["type"] == "Ready" || condition["type"] == "ContainersReady" {
                condition["status"] = json!("False");
            }
        }
        for container in status["containerStatuses"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            container["ready"] = json!(false);
            container["started"] = json!(false);
            container["state"] = json!({"waiting": {"reason": "ContainerCreating"}});
        }
    }
    status
}

pub fn running_status(ip: IpAddr, containers: &[&str]) -> Value {
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| {
            json!({"name": c, "ready": true, "restartCount": 0, "started": true,
                         "image": c, "imageID": "", "state": {"running": {"startedAt": CREATED}}})
        })
        .collect();
    let conditions: Vec<Value> = ["Initialized", "Ready", "ContainersReady", "PodScheduled"]
        .iter()
        .map(|t| json!({"type": t, "status": "True", "lastTransitionTime": CREATED}))
        .collect();
    json!({
        "phase": "Running", "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}],
        "hostIP": "127.0.0.1", "startTime": CREATED, "qosClass": "Burstable",
        "conditions": conditions,
        "containerStatuses": statuses,
    })
}

fn service(
    ns: &str,
    name: &str,
    labels: Value,
    cluster_ip: Option<IpAddr>,
    ports: Value,
    selector: Option<Value>,
) -> Value {
    let mut spec = json!({"type": "ClusterIP", "ports": ports, "sessionAffinity": "None"});
    if let Some(ip) = cluster_ip {
        spec["clusterIP"] = json!(ip.to_string());
        spec["clusterIPs"] = json!([ip.to_string()]);
    }
    if let Some(selector) = selector {
        spec["selector"] = selector;
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(Some(ns), name, labels), "spec": spec})
}

fn endpoints(
    ns: &str,
    name: &str,
    labels: Value,
    pods: &[(String, IpAddr)],
    ports: Value,
) -> Value {
    let addresses: Vec<Value> = pods
        .iter()
        .map(|(pod, ip)| {
            json!({"ip": ip.to_string(), "nodeName": "lab-node",
            "targetRef": {"kind": "Pod", "name": pod, "namespace": ns}})
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": meta(Some(ns), name, labels),
           "subsets": [{"addresses": addresses, "ports": ports}]})
}

fn endpoint_slice(
    ns: &str,
    service: &str,
    labels: Value,
    pods: &[(String, IpAddr)],
    ports: Value,
) -> Value {
    let mut labels = labels;
    labels["kubernetes.io/service-name"] = json!(service);
    labels["endpointslice.kubernetes.io/managed-by"] = json!("endpointslice-controller.k8s.io");
    let endpoints: Vec<Value> = pods
        .iter()
        .map(|(pod, ip)| {
            json!({"addresses": [ip.to_string()], "nodeName": "lab-node",
            "conditions": {"ready": true, "serving": true, "terminating": false},
            "targetRef": {"kind": "Pod", "name": pod, "namespace": ns}})
        })
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": meta(Some(ns), &format!("{service}-lab01"), labels),
           "addressType": "IPv4", "endpoints": endpoints, "ports": ports})
}

/// What differs between the lab's revisions: the protocol (ports and their names), the image and
/// the pods' `pod-template-hash`.
struct Shape {
    protocol: ProtocolType,
    image: &'static str,
    template_hash: &'static str,
}

impl Shape {
    fn of(service: &LabService) -> Shape {
        Shape {
            protocol: service.protocol,
            image: service.image,
            template_hash: service.template_hash,
        }
    }
}

/// A Knative Service with one ready revision, as Serving's reconcilers leave it: the KService,
/// Configuration, Revision, Route, the revision's public and private Services and Endpoints,
/// and its pods.
///
/// Ports follow the revision's protocol as Serving names them: `http` (80 → 8012) or, for an h2c
/// revision, `http2` with `appProtocol: kubernetes.io/h2c` (public 81 → 8013, private 80 → 8013)
/// (`pkg/reconciler/serverlessservice/resources/services.go` `MakePublicService`,
/// `MakePrivateService`; knative/networking `pkg/apis/networking/ports.go`), the mesh port
/// `<name>-istio` on the target port, and the public Endpoints keep only the serving and HTTPS
/// ports (`FilterSubsetPorts`). The pods' queue-proxy serves on `queue-port` 8012 or 8013
/// (`pkg/reconciler/revision/resources/queue.go` `makeQueueContainer`).
fn knative_service(
    ns: &str,
    name: &str,
    shape: &Shape,
    pods: &[(String, IpAddr)],
    activators: &[IpAddr],
    cluster_ips: &mut impl Iterator<Item = IpAddr>,
) -> Vec<Value> {
    let revision = format!("{name}-00001");
    let rev_labels = json!({
        "serving.knative.dev/service": name, "serving.knative.dev/configuration": name,
        "serving.knative.dev/revision": revision, "serving.knative.dev/revisionUID": format!("lab-{revision}"),
        "serving.knative.dev/configurationGeneration": "1", "app": revision,
    });
    let mut sks_labels = rev_labels.clone();
    sks_labels["networking.internal.knative.dev/serverlessservice"] = json!(revision);
    let mut public_labels = sks_labels.clone();
    public_labels["networking.internal.knative.dev/serviceType"] = json!("Public");
    let mut private_labels = sks_labels.clone();
    private_labels["networking.internal.knative.dev/serviceType"] = json!("Private");
    let url = format!("http://{name}.{ns}.example.com");
    let address = json!({"url": format!("http://{name}.{ns}.svc.cluster.local")});
    let ready = json!([{"type": "Ready", "status": "True", "lastTransitionTime": CREATED}]);
    // The user's container port: named `h2c` for an h2c revision (the names Serving accepts:
    // `pkg/apis/serving/k8s_validation.go` `validateContainerPorts`, `h2c` or `http1`).
    let user_port = match shape.protocol {
        ProtocolType::H2c => json!({"name": "h2c", "containerPort": 8080, "protocol": "TCP"}),
        ProtocolType::Http1 => json!({"containerPort": 8080, "protocol": "TCP"}),
    };
    let container = json!({"image": shape.image, "ports": [user_port]});
    let mut out = vec![
        json!({"apiVersion": "serving.knative.dev/v1", "kind": "Service",
               "metadata": meta(Some(ns), name, json!({})),
               "spec": {"template": {"spec": {"containers": [container.clone()]}}},
               "status": {"url": url, "address": address, "latestReadyRevisionName": revision,
                          "latestCreatedRevisionName": revision,
                          "traffic": [{"revisionName": revision, "percent": 100, "latestRevision": true}],
                          "conditions": ready, "observedGeneration": 1}}),
        json!({"apiVersion": "serving.knative.dev/v1", "kind": "Configuration",
               "metadata": meta(Some(ns), name, json!({"serving.knative.dev/service": name})),
               "status": {"latestReadyRevisionName": revision, "latestCreatedRevisionName": revision, "conditions": ready}}),
        json!({"apiVersion": "serving.knative.dev/v1", "kind": "Revision",
               "metadata": meta(Some(ns), &revision, rev_labels.clone()),
               "spec": {"containerConcurrency": 0, "containers": [container]},
               "status": {"conditions": ready, "actualReplicas": pods.len(), "desiredReplicas": pods.len(),
                          "serviceName": revision}}),
        json!({"apiVersion": "serving.knative.dev/v1", "kind": "Route",
               "metadata": meta(Some(ns), name, json!({"serving.knative.dev/service": name})),
               "status": {"url": url, "address": address, "conditions": ready,
                          "traffic": [{"revisionName": revision, "percent": 100, "latestRevision": true}]}}),
    ];
    let port_name = shape.protocol.service_port_name();
    let target = shape.protocol.backend_port();
    let (public_port, app_protocol) = match shape.protocol {
        ProtocolType::Http1 => (80, None),
        ProtocolType::H2c => (81, Some("kubernetes.io/h2c")),
    };
    let serving_port = |port: u16| {
        let mut p =
            json!({"name": port_name, "port": port, "protocol": "TCP", "targetPort": target});
        if let Some(app_protocol) = app_protocol {
            p["appProtocol"] = json!(app_protocol);
        }
        p
    };
    let https = json!({"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8112});
    let public_ports = json!([serving_port(public_port), https]);
    let private_ports = json!([
        serving_port(80),
        https,
        {"name": "http-autometric", "port": 9090, "protocol": "TCP", "targetPort": "http-autometric"},
        {"name": "http-usermetric", "port": 9091, "protocol": "TCP", "targetPort": "http-usermetric"},
        {"name": format!("{port_name}-istio"), "port": target, "protocol": "TCP", "targetPort": target},
    ]);
    // Endpoints ports carry the Service ports' names, `appProtocol`s and target port numbers
    // (`pkg/controller/endpoint/endpoints_controller.go` `endpointPortFromServicePort`).
    let endpoint_port = |name: &str, port: u16| {
        let mut p = json!({"name": name, "port": port, "protocol": "TCP"});
        if let (Some(app_protocol), true) = (app_protocol, name == port_name) {
            p["appProtocol"] = json!(app_protocol);
        }
        p
    };
    let private_endpoint_ports = json!([
        endpoint_port(port_name, target),
        endpoint_port("https", 8112),
        endpoint_port("http-autometric", 9090),
        endpoint_port("http-usermetric", 9091),
        endpoint_port(&format!("{port_name}-istio"), target),
    ]);
    out.push(service(
        ns,
        &revision,
        public_labels.clone(),
        cluster_ips.next(),
        public_ports,
        None,
    ));
    out.push(service(
        ns,
        &format!("{revision}-private"),
        private_labels.clone(),
        cluster_ips.next(),
        private_ports,
        Some(json!({"serving.knative.dev/revisionUID": format!("lab-{revision}")})),
    ));
    // In proxy mode (target-burst-capacity -1) the public Endpoints are the activators', their
    // ports as `activator-service`'s Endpoints have them.
    let activator_targets: Vec<(String, IpAddr)> = activators
        .iter()
        .enumerate()
        .map(|(i, ip)| (activator_pod_name(i), *ip))
        .collect();
    out.push(endpoints(
        ns,
        &revision,
        public_labels.clone(),
        &activator_targets,
        json!([{"name": port_name, "port": target, "protocol": "TCP"},
               {"name": "https", "port": 8112, "protocol": "TCP"}]),
    ));
    out.push(endpoints(
        ns,
        &format!("{revision}-private"),
        private_labels.clone(),
        pods,
        private_endpoint_ports.clone(),
    ));
    out.push(endpoint_slice(
        ns,
        &format!("{revision}-private"),
        private_labels,
        pods,
        private_endpoint_ports,
    ));
    for (pod_name, ip) in pods {
        let mut labels = rev_labels.clone();
        labels["pod-template-hash"] = json!(shape.template_hash);
        out.push(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": meta(Some(ns), pod_name, labels),
            "spec": {"containers": [
                {"name": "user-container", "image": shape.image,
                 "ports": [{"containerPort": 8080, "name": "user-port", "protocol": "TCP"}]},
                {"name": "queue-proxy", "image": "gcr.io/knative-releases/knative.dev/serving/cmd/queue",
                 "ports": [{"containerPort": 9090, "name": "http-autometric", "protocol": "TCP"},
                           {"containerPort": 9091, "name": "http-usermetric", "protocol": "TCP"},
                           {"containerPort": target, "name": "queue-port", "protocol": "TCP"},
                           {"containerPort": 8112, "name": "https-port", "protocol": "TCP"}]}],
                "nodeName": "lab-node"},
            "status": running_status(*ip, &["user-container", "queue-proxy"]),
        }));
    }
    out
}

fn crd(group: &str, kind: &str, plural: &str, versions: &[&str], storage: &str) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"name": v, "served": true, "storage": *v == storage,
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}))
        .collect();
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": meta(None, &format!("{plural}.{group}"), json!({})),
           "spec": {"group": group, "scope": "Namespaced", "versions": versions,
                    "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")}},
           "status": {"conditions": [{"type": "Established", "status": "True"}],
                      "acceptedNames": {"kind": kind, "plural": plural}}})
}

pub fn istio_crds() -> Vec<Value> {
    vec![
        crd(
            "networking.istio.io",
            "Sidecar",
            "sidecars",
            &["v1", "v1alpha3", "v1beta1"],
            "v1",
        ),
        crd(
            "networking.istio.io",
            "EnvoyFilter",
            "envoyfilters",
            &["v1alpha3"],
            "v1alpha3",
        ),
        crd(
            "extensions.istio.io",
            "WasmPlugin",
            "wasmplugins",
            &["v1alpha1"],
            "v1alpha1",
        ),
        crd(
            "security.istio.io",
            "PeerAuthentication",
            "peerauthentications",
            &["v1", "v1beta1"],
            "v1",
        ),
    ]
}

/// What an Istio install leaves in `istio-system` besides the Service: istiod's Deployment (its
/// `discovery` container and env, as the `istiod` chart renders it: `PILOT_*` flags live there),
/// the mesh config `istio` and the sidecar injector's webhook
/// (`manifests/charts/istio-control/istio-discovery/templates/`).
fn istio_install() -> Vec<Value> {
    let labels = json!({"app": "istiod", "istio": "pilot", "istio.io/rev": "default"});
    let mut deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": meta(Some("istio-system"), "istiod", labels.clone()),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "istiod", "istio": "pilot"}},
            "template": {
                "metadata": {"labels": labels, "annotations": {"sidecar.istio.io/inject": "false"}},
                "spec": {"serviceAccountName": "istiod", "containers": [{
                    "name": "discovery",
                    "image": "docker.io/istio/pilot:1.28.0",
                    "args": ["discovery", "--monitoringAddr=:15014", "--log_output_level=default:info",
                             "--domain", "cluster.local", "--keepaliveMaxServerConnectionAge", "30m"],
                    "ports": [{"containerPort": 8080, "protocol": "TCP"},
                              {"containerPort": 15010, "protocol": "TCP"},
                              {"containerPort": 15017, "protocol": "TCP"}],
                    "env": [
                        {"name": "REVISION", "value": "default"},
                        {"name": "PILOT_CERT_PROVIDER", "value": "istiod"},
                        {"name": "PILOT_TRACE_SAMPLING", "value": "1"},
                        {"name": "PILOT_ENABLE_ANALYSIS", "value": "false"},
                        {"name": "CLUSTER_ID", "value": "Kubernetes"},
                    ],
                }]},
            },
        },
        "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1,
                   "updatedReplicas": 1, "observedGeneration": 1},
    });
    deployment["metadata"]["generation"] = json!(1);
    let mesh = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": meta(Some("istio-system"), "istio", json!({"app": "istiod", "istio.io/rev": "default"})),
        "data": {
            "mesh": "defaultConfig:\n  discoveryAddress: istiod.istio-system.svc:15012\nenablePrometheusMerge: true\nrootNamespace: istio-system\ntrustDomain: cluster.local\n",
            "meshNetworks": "networks: {}",
        },
    });
    let injector = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": meta(None, "istio-sidecar-injector", json!({"app": "sidecar-injector", "istio.io/rev": "default"})),
        "webhooks": [{
            "name": "namespace.sidecar-injector.istio.io",
            "clientConfig": {"service": {"name": "istiod", "namespace": "istio-system",
                                         "path": "/inject", "port": 443}},
            "namespaceSelector": {"matchExpressions": [
                {"key": "istio-injection", "operator": "In", "values": ["enabled"]}]},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                       "resources": ["pods"], "scope": "*"}],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1beta1", "v1"],
            "failurePolicy": "Fail",
        }],
    });
    vec![deployment, mesh, injector]
}

fn knative_crds() -> Vec<Value> {
    ["services", "configurations", "revisions", "routes"]
        .iter()
        .map(|plural| {
            let kind = match *plural {
                "services" => "Service",
                "configurations" => "Configuration",
                "revisions" => "Revision",
                _ => "Route",
            };
            crd("serving.knative.dev", kind, plural, &["v1"], "v1")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SeedSpec {
        SeedSpec {
            layout: Layout { subnet: 42 },
            activators: 2,
            hello_pods: 3,
            h2c_pods: 2,
            mcp_pods: 2,
            filler_services: 5,
            istio_crds: true,
            native_sidecars: true,
        }
    }

    #[test]
    fn looks_like_knative() {
        let objects = objects(&spec());
        let find = |kind: &str, name: &str| {
            objects
                .iter()
                .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("{kind} {name}"))
        };
        let deployment = find("Deployment", "activator");
        assert_eq!(deployment["metadata"]["namespace"], "knative-serving");
        assert_eq!(deployment["spec"]["replicas"], 2);
        let pod = find("Pod", &activator_pod_name(0));
        assert_eq!(pod["metadata"]["labels"]["app"], "activator");
        assert_eq!(pod["metadata"]["labels"]["role"], "activator");
        assert_eq!(pod["status"]["podIP"], "127.42.0.10");
        let names = |list: &Value| -> Vec<String> {
            list.as_array()
                .into_iter()
                .flatten()
                .map(|c| c["name"].as_str().unwrap().to_owned())
                .collect()
        };
        // A native sidecar by default: istio-proxy among the init containers, restarting.
        assert_eq!(names(&pod["spec"]["containers"]), ["activator"]);
        assert_eq!(
            names(&pod["spec"]["initContainers"]),
            ["istio-init", "istio-proxy"]
        );
        assert_eq!(pod["spec"]["initContainers"][1]["restartPolicy"], "Always");
        assert_eq!(pod["status"]["initContainerStatuses"][1]["ready"], true);
        // Classic: in containers.
        let classic = super::objects(&SeedSpec {
            native_sidecars: false,
            ..spec()
        });
        let pod = classic
            .iter()
            .find(|o| o["kind"] == "Pod" && o["metadata"]["name"] == activator_pod_name(0).as_str())
            .unwrap();
        assert_eq!(
            names(&pod["spec"]["containers"]),
            ["activator", "istio-proxy"]
        );
        // istio-init still sets up the pod's iptables first.
        assert_eq!(names(&pod["spec"]["initContainers"]), ["istio-init"]);
        let private = find("Service", "hello-00001-private");
        assert_eq!(
            private["metadata"]["labels"]["networking.internal.knative.dev/serviceType"],
            "Private"
        );
        let ports: Vec<&str> = private["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(ports.contains(&"http-istio"));
        let eps = find("Endpoints", "hello-00001-private");
        assert_eq!(eps["subsets"][0]["addresses"].as_array().unwrap().len(), 3);
        let network = find("ConfigMap", "config-network");
        assert!(network["data"]["_example"]
            .as_str()
            .unwrap()
            .contains("mesh-compatibility-mode"));
        find("ConfigMap", "config-autoscaler");
        find(
            "CustomResourceDefinition",
            "wasmplugins.extensions.istio.io",
        );
        assert_eq!(
            objects
                .iter()
                .filter(|o| o["kind"] == "Service" && o["apiVersion"] == "serving.knative.dev/v1")
                .count(),
            8
        );
    }

    /// An h2c revision as Serving shapes it: the user port named `h2c`, `http2` ports with
    /// `appProtocol: kubernetes.io/h2c` to 8013 (public 81, private 80), `http2-istio` on 8013,
    /// the public Endpoints (the activators) on 8013, queue-proxy's `queue-port` on 8013.
    #[test]
    fn h2c_revisions_look_like_knative() {
        let objects = objects(&spec());
        let find = |kind: &str, name: &str| {
            objects
                .iter()
                .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("{kind} {name}"))
        };
        let revision = find("Revision", HELLO_H2C_REVISION);
        assert_eq!(revision["spec"]["containers"][0]["ports"][0]["name"], "h2c");
        assert_eq!(ProtocolType::of_revision(revision), ProtocolType::H2c);
        assert_eq!(
            ProtocolType::of_revision(find("Revision", HELLO_REVISION)),
            ProtocolType::Http1
        );
        let ports = |o: &Value, list: &str| -> Vec<(String, u64)> {
            o[list]["ports"]
                .as_array()
                .or_else(|| o["subsets"][0]["ports"].as_array())
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap().to_owned(),
                        p["port"].as_u64().unwrap(),
                    )
                })
                .collect()
        };
        let public = find("Service", HELLO_H2C_REVISION);
        assert_eq!(
            public["spec"]["ports"][0]["appProtocol"],
            "kubernetes.io/h2c"
        );
        assert_eq!(public["spec"]["ports"][0]["targetPort"], 8013);
        assert_eq!(ports(public, "spec")[0], ("http2".into(), 81));
        let private = find("Service", &format!("{HELLO_H2C_REVISION}-private"));
        let private_ports = ports(private, "spec");
        assert_eq!(private_ports[0], ("http2".into(), 80));
        assert!(private_ports.contains(&("http2-istio".into(), 8013)));
        let public_eps = find("Endpoints", HELLO_H2C_REVISION);
        assert_eq!(
            ports(public_eps, "-"),
            [("http2".into(), 8013), ("https".into(), 8112)]
        );
        let private_eps = find("Endpoints", &format!("{HELLO_H2C_REVISION}-private"));
        assert_eq!(ports(private_eps, "-")[0], ("http2".into(), 8013));
        assert_eq!(
            private_eps["subsets"][0]["addresses"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let pod = find("Pod", &HELLO_H2C_SERVICE.pod_name(0));
        assert_eq!(pod["status"]["podIP"], "127.42.2.10");
        let queue = &pod["spec"]["containers"][1]["ports"];
        assert!(queue
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "queue-port" && p["containerPort"] == 8013));
        // The MCP service is an HTTP/1 revision with its own pods and Route.
        let route = find("Route", "mcp");
        assert_eq!(route["status"]["url"], "http://mcp.default.example.com");
        assert_eq!(route["status"]["traffic"][0]["revisionName"], MCP_REVISION);
        let mcp_eps = find("Endpoints", &format!("{MCP_REVISION}-private"));
        assert_eq!(ports(mcp_eps, "-")[0], ("http".into(), 8012));
        assert_eq!(
            MCP_SERVICE.pod_addr(&Layout { subnet: 42 }, 1).to_string(),
            "127.42.3.11:8012"
        );
    }

    #[test]
    fn pod_names_are_stable_and_distinct() {
        let names: std::collections::BTreeSet<String> = LAB_SERVICES
            .iter()
            .flat_map(|s| (0..50).map(|i| s.pod_name(i)))
            .collect();
        assert_eq!(names.len(), 150);
        assert_eq!(hello_pod_name(0), hello_pod_name(0));
        assert!(hello_pod_name(0).starts_with("hello-00001-deployment-5f7b9c8d4-"));
        assert!(MCP_SERVICE.pod_name(0).starts_with("mcp-00001-deployment-"));
    }
}
