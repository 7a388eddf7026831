//! Typed views of the cluster objects istiod reads. Parsing never fails as a whole: an object
//! that is malformed is skipped and named in a warning, the way istiod logs and ignores it.

use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// The objects that matter for one proxy's config, sorted by namespace and name so the output
/// does not depend on the order the API listed them in.
#[derive(Debug, Default)]
pub(crate) struct Objects {
    pub services: Vec<Service>,
    /// Ready endpoints by (namespace, Service name).
    pub endpoints: HashMap<(String, String), Vec<EndpointSubset>>,
    pub sidecars: Vec<Sidecar>,
    pub envoy_filters: Vec<Resource<Value>>,
    pub wasm_plugins: Vec<Resource<Value>>,
}

/// `metadata` fields every kind needs, plus the raw `spec`.
#[derive(Debug, Clone)]
pub(crate) struct Resource<S> {
    pub namespace: String,
    pub name: String,
    /// RFC 3339 as the API writes it: comparing the strings compares the times.
    pub created: String,
    pub spec: S,
}

impl<S> Resource<S> {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn with_spec<T>(self, spec: impl FnOnce(S) -> T) -> Resource<T> {
        Resource {
            namespace: self.namespace,
            name: self.name,
            created: self.created,
            spec: spec(self.spec),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub namespace: String,
    pub name: String,
    /// `<name>.<namespace>.svc.<cluster domain>`.
    pub fqdn: String,
    /// `None` for headless Services (`clusterIP: None`) and Services without an address yet.
    pub cluster_ip: Option<IpAddr>,
    pub ports: Vec<ServicePort>,
}

#[derive(Debug, Clone)]
pub(crate) struct ServicePort {
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
}

/// The protocols istiod tells apart here (`pkg/config/kube/conversion.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http,
    /// HTTP/2 with prior knowledge (h2c) or gRPC: the upstream speaks HTTP/2.
    Http2,
    /// TCP, TLS, HTTPS (opaque to the sidecar) and names istiod would auto-detect.
    Opaque,
    Udp,
}

impl Protocol {
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Http2)
    }

    /// `appProtocol` first, else the port name up to its first `-`, as istiod does.
    fn detect(port_name: &str, app_protocol: Option<&str>, transport: Option<&str>) -> Protocol {
        if transport.is_some_and(|t| t.eq_ignore_ascii_case("UDP")) {
            return Protocol::Udp;
        }
        let from_app_protocol = app_protocol.and_then(|p| match p.to_ascii_lowercase().as_str() {
            "http" => Some(Protocol::Http),
            "http2" | "grpc" | "grpc-web" | "kubernetes.io/h2c" => Some(Protocol::Http2),
            "" => None,
            _ => Some(Protocol::Opaque),
        });
        if let Some(protocol) = from_app_protocol {
            return protocol;
        }
        let prefix = port_name.split('-').next().unwrap_or_default();
        match prefix.to_ascii_lowercase().as_str() {
            "http" => Protocol::Http,
            "http2" | "grpc" => Protocol::Http2,
            _ => Protocol::Opaque,
        }
    }
}

/// One subset of an Endpoints object: its ready addresses serve all its ports.
#[derive(Debug, Clone)]
pub(crate) struct EndpointSubset {
    pub addresses: Vec<IpAddr>,
    /// (port name, port number).
    pub ports: Vec<(String, u16)>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SidecarSpec {
    #[serde(default)]
    pub workload_selector: Option<WorkloadSelector>,
    #[serde(default)]
    pub egress: Vec<SidecarEgress>,
    #[serde(default)]
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct WorkloadSelector {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct SidecarEgress {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub port: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct OutboundTrafficPolicy {
    #[serde(default)]
    pub mode: Option<String>,
}

pub(crate) type Sidecar = Resource<SidecarSpec>;

/// `true` when every label of `selector` is on the workload (an empty selector selects all).
pub(crate) fn labels_select(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Reads a `map<string,string>` such as `selector.matchLabels`; `None` if it is not one.
pub(crate) fn string_map(value: Option<&Value>) -> Option<BTreeMap<String, String>> {
    match value {
        None | Some(Value::Null) => Some(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect(),
        Some(_) => None,
    }
}

impl Objects {
    pub fn parse(objects: &[Value], cluster_domain: &str, warnings: &mut Vec<String>) -> Objects {
        let mut parsed = Objects::default();
        for object in objects {
            let api_version = object["apiVersion"].as_str().unwrap_or_default();
            let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
            let kind = object["kind"].as_str().unwrap_or_default();
            let Some(resource) = metadata(object) else {
                if matches!(
                    kind,
                    "Service" | "Endpoints" | "Sidecar" | "EnvoyFilter" | "WasmPlugin"
                ) {
                    warnings.push(format!("skipped a {kind} without metadata.name/namespace"));
                }
                continue;
            };
            match (group, kind) {
                ("", "Service") => match service(&resource, cluster_domain) {
                    Ok(service) => parsed.services.push(service),
                    Err(why) => warnings.push(format!("skipped Service {}: {why}", resource.key())),
                },
                ("", "Endpoints") => {
                    let subsets = endpoint_subsets(&resource.spec["subsets"]);
                    parsed
                        .endpoints
                        .insert((resource.namespace, resource.name), subsets);
                }
                ("networking.istio.io", "Sidecar") => {
                    match SidecarSpec::deserialize(&resource.spec["spec"]) {
                        Ok(spec) => parsed.sidecars.push(Resource {
                            spec,
                            namespace: resource.namespace,
                            name: resource.name,
                            created: resource.created,
                        }),
                        Err(e) => warnings.push(format!("skipped Sidecar {}: {e}", resource.key())),
                    }
                }
                ("networking.istio.io", "EnvoyFilter") => parsed
                    .envoy_filters
                    .push(resource.with_spec(|o| o["spec"].clone())),
                ("extensions.istio.io", "WasmPlugin") => parsed
                    .wasm_plugins
                    .push(resource.with_spec(|o| o["spec"].clone())),
                _ => {}
            }
        }
        parsed
            .services
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        parsed
            .sidecars
            .sort_by(|a, b| (&a.created, &a.name).cmp(&(&b.created, &b.name)));
        parsed
    }
}

/// The object's identity, with the whole object as `spec` for the kind-specific parsers.
fn metadata(object: &Value) -> Option<Resource<&Value>> {
    let metadata = &object["metadata"];
    Some(Resource {
        namespace: metadata["namespace"].as_str()?.to_string(),
        name: metadata["name"].as_str()?.to_string(),
        created: metadata["creationTimestamp"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        spec: object,
    })
}

fn service(resource: &Resource<&Value>, cluster_domain: &str) -> Result<Service, String> {
    let spec = &resource.spec["spec"];
    let cluster_ip = match spec["clusterIP"].as_str() {
        None | Some("") | Some("None") => None,
        Some(ip) => Some(
            ip.parse::<IpAddr>()
                .map_err(|_| format!("clusterIP {ip:?} is not an IP address"))?,
        ),
    };
    let mut ports = Vec::new();
    for port in spec["ports"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let number = port["port"]
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|&n| n != 0)
            .ok_or_else(|| format!("port {port} has no valid port number"))?;
        let name = port["name"].as_str().unwrap_or_default().to_string();
        let protocol = Protocol::detect(
            &name,
            port["appProtocol"].as_str(),
            port["protocol"].as_str(),
        );
        ports.push(ServicePort {
            name,
            port: number,
            protocol,
        });
    }
    Ok(Service {
        fqdn: format!(
            "{}.{}.svc.{cluster_domain}",
            resource.name, resource.namespace
        ),
        namespace: resource.namespace.clone(),
        name: resource.name.clone(),
        cluster_ip,
        ports,
    })
}

/// Ready addresses only (`notReadyAddresses` never receive traffic); entries that do not parse
/// are dropped, since a half-written Endpoints object must not take the whole config down.
fn endpoint_subsets(subsets: &Value) -> Vec<EndpointSubset> {
    let list = |value: &Value| value.as_array().cloned().unwrap_or_default();
    list(subsets)
        .iter()
        .map(|subset| EndpointSubset {
            addresses: list(&subset["addresses"])
                .iter()
                .filter_map(|a| a["ip"].as_str()?.parse().ok())
                .collect(),
            ports: list(&subset["ports"])
                .iter()
                .filter_map(|p| {
                    let number = u16::try_from(p["port"].as_u64()?).ok()?;
                    Some((p["name"].as_str().unwrap_or_default().to_string(), number))
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn protocol_comes_from_app_protocol_then_port_name() {
        assert_eq!(Protocol::detect("http", None, None), Protocol::Http);
        assert_eq!(Protocol::detect("http-istio", None, None), Protocol::Http);
        assert_eq!(Protocol::detect("http2-kn", None, None), Protocol::Http2);
        assert_eq!(Protocol::detect("grpc", None, None), Protocol::Http2);
        assert_eq!(Protocol::detect("https", None, None), Protocol::Opaque);
        assert_eq!(Protocol::detect("metrics", None, None), Protocol::Opaque);
        assert_eq!(
            Protocol::detect("http2", Some("kubernetes.io/h2c"), None),
            Protocol::Http2
        );
        assert_eq!(
            Protocol::detect("x", Some("kubernetes.io/h2c"), None),
            Protocol::Http2
        );
        assert_eq!(
            Protocol::detect("http", Some("tcp"), None),
            Protocol::Opaque
        );
        assert_eq!(Protocol::detect("http", None, Some("UDP")), Protocol::Udp);
    }

    #[test]
    fn malformed_objects_are_skipped_with_a_warning() {
        let objects = vec![
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "n"},
                   "spec": {"clusterIP": "not-an-ip", "ports": [{"port": 80}]}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b", "namespace": "n"},
                   "spec": {"ports": [{"port": 70000}]}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "n"}}),
            json!({"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
                   "metadata": {"name": "s", "namespace": "n"}, "spec": {"egress": "nope"}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ok", "namespace": "n"},
                   "spec": {"clusterIP": "10.0.0.1", "ports": [{"name": "http", "port": 80}]}}),
        ];
        let mut warnings = Vec::new();
        let parsed = Objects::parse(&objects, "cluster.local", &mut warnings);
        assert_eq!(parsed.services.len(), 1);
        assert_eq!(parsed.services[0].fqdn, "ok.n.svc.cluster.local");
        assert!(parsed.sidecars.is_empty());
        assert_eq!(warnings.len(), 4, "{warnings:?}");
    }

    #[test]
    fn endpoints_keep_only_ready_addresses() {
        let subsets = json!([{
            "addresses": [{"ip": "10.1.0.1"}, {"ip": "bogus"}],
            "notReadyAddresses": [{"ip": "10.1.0.2"}],
            "ports": [{"name": "http", "port": 8012}],
        }]);
        let parsed = endpoint_subsets(&subsets);
        assert_eq!(
            parsed[0].addresses,
            vec!["10.1.0.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(parsed[0].ports, vec![("http".to_string(), 8012)]);
    }
}
