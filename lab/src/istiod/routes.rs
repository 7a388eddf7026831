//! RDS: one route config per HTTP port, named after the port, holding a virtual host per
//! in-scope Service on that port and the catch-all (`httproute.go`
//! `buildSidecarOutboundHTTPRouteConfig`, `buildCatchAllVirtualHost`).

use super::inputs::Service;
use super::names::{outbound_cluster, ALLOW_ANY, BLOCK_ALL, PASSTHROUGH_CLUSTER};
use super::scope::OutboundMode;
use super::ProxyIdentity;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};

/// Route configs for every port some in-scope Service declares HTTP, ordered by port.
pub(crate) fn build(
    services: &[&Service],
    proxy: &ProxyIdentity,
    mode: OutboundMode,
) -> Vec<Value> {
    let mut by_port: BTreeMap<u16, Vec<&Service>> = BTreeMap::new();
    for service in services {
        for port in service.ports.iter().filter(|p| p.protocol.is_http()) {
            by_port.entry(port.port).or_default().push(service);
        }
    }
    by_port
        .into_iter()
        .map(|(port, services)| route_config(port, &services, proxy, mode))
        .collect()
}

fn route_config(
    port: u16,
    services: &[&Service],
    proxy: &ProxyIdentity,
    mode: OutboundMode,
) -> Value {
    // Envoy rejects a route config in which two virtual hosts share a domain. istiod drops the
    // duplicates too; the first Service (by namespace and name) keeps a contested domain.
    let mut taken = HashSet::new();
    let mut virtual_hosts: Vec<Value> = services
        .iter()
        .map(|service| {
            let domains: Vec<String> = domains(service, port, proxy)
                .into_iter()
                .filter(|d| taken.insert(d.clone()))
                .collect();
            service_virtual_host(service, port, domains)
        })
        .collect();
    virtual_hosts.push(catch_all_virtual_host(mode));
    json!({
        "name": port.to_string(),
        "virtual_hosts": virtual_hosts,
        "validate_clusters": false,
    })
}

/// The names a client may use for the Service: the FQDN and, like Kubernetes' DNS search path,
/// `name.ns.svc`, `name.ns` and (same namespace only) `name`; the ClusterIP; each also with
/// `:port`.
fn domains(service: &Service, port: u16, proxy: &ProxyIdentity) -> Vec<String> {
    let mut hosts = vec![
        service.fqdn.clone(),
        format!("{}.{}.svc", service.name, service.namespace),
        format!("{}.{}", service.name, service.namespace),
    ];
    if service.namespace == proxy.namespace {
        hosts.push(service.name.clone());
    }
    if let Some(ip) = service.cluster_ip {
        hosts.push(match ip {
            std::net::IpAddr::V4(ip) => ip.to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        });
    }
    hosts
        .into_iter()
        .flat_map(|host| [format!("{host}:{port}"), host])
        .collect()
}

fn service_virtual_host(service: &Service, port: u16, domains: Vec<String>) -> Value {
    let host = format!("{}:{port}", service.fqdn);
    json!({
        "name": host,
        "domains": domains,
        "routes": [{
            "name": "default",
            "match": {"prefix": "/"},
            "route": {
                "cluster": outbound_cluster(port, &service.fqdn),
                "timeout": "0s",
                "retry_policy": default_retry_policy(),
                "max_stream_duration": {"max_stream_duration": "0s", "grpc_timeout_header_max": "0s"},
            },
            "decorator": {"operation": format!("{host}/*")},
        }],
        "include_request_attempt_count": true,
    })
}

/// istiod's default retry policy for routes to a Service (`retry.DefaultPolicy`).
fn default_retry_policy() -> Value {
    json!({
        "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
        "num_retries": 2,
        "retry_host_predicate": [{
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
            },
        }],
        "host_selection_retry_max_attempts": "5",
        "retriable_status_codes": [503],
    })
}

/// `allow_any` to PassthroughCluster (timeout 0, no retries), or `block_all` with a 502.
fn catch_all_virtual_host(mode: OutboundMode) -> Value {
    match mode {
        OutboundMode::AllowAny => json!({
            "name": ALLOW_ANY,
            "domains": ["*"],
            "routes": [{
                "name": ALLOW_ANY,
                "match": {"prefix": "/"},
                "route": {
                    "cluster": PASSTHROUGH_CLUSTER,
                    "timeout": "0s",
                    "max_stream_duration": {"max_stream_duration": "0s", "grpc_timeout_header_max": "0s"},
                },
            }],
            "include_request_attempt_count": true,
        }),
        OutboundMode::RegistryOnly => json!({
            "name": BLOCK_ALL,
            "domains": ["*"],
            "routes": [{
                "name": BLOCK_ALL,
                "match": {"prefix": "/"},
                "direct_response": {"status": 502},
            }],
            "include_request_attempt_count": true,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::inputs::{Protocol, ServicePort};
    use super::*;

    fn proxy() -> ProxyIdentity {
        ProxyIdentity {
            namespace: "knative-serving".into(),
            pod_name: "activator-1".into(),
            labels: Default::default(),
            pod_ip: "127.0.0.2".parse().unwrap(),
        }
    }

    fn service(namespace: &str, name: &str, ip: Option<&str>, port: u16) -> Service {
        Service {
            namespace: namespace.into(),
            name: name.into(),
            fqdn: format!("{name}.{namespace}.svc.cluster.local"),
            cluster_ip: ip.map(|ip| ip.parse().unwrap()),
            ports: vec![ServicePort {
                name: "http".into(),
                port,
                protocol: Protocol::Http,
            }],
        }
    }

    #[test]
    fn one_vhost_per_service_then_the_catch_all() {
        let a = service("knative-serving", "kasi-activator-affinity", None, 8012);
        let b = service("default", "hello-00001-private", Some("10.96.0.7"), 8012);
        let twin = service("default", "hello-twin", Some("10.96.0.7"), 8012);
        let configs = build(&[&a, &b, &twin], &proxy(), OutboundMode::AllowAny);
        assert_eq!(configs.len(), 1);
        let config = &configs[0];
        assert_eq!(config["name"], "8012");
        let vhosts = config["virtual_hosts"].as_array().unwrap();
        assert_eq!(vhosts.len(), 4);
        assert_eq!(
            vhosts[0]["name"],
            "kasi-activator-affinity.knative-serving.svc.cluster.local:8012"
        );
        let domains: Vec<&str> = vhosts[0]["domains"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap())
            .collect();
        assert!(
            domains.contains(&"kasi-activator-affinity"),
            "same namespace short name"
        );
        assert!(domains.contains(&"kasi-activator-affinity.knative-serving.svc.cluster.local:8012"));
        assert_eq!(
            vhosts[0]["routes"][0]["route"]["cluster"],
            "outbound|8012||kasi-activator-affinity.knative-serving.svc.cluster.local"
        );
        let other_ns: Vec<&Value> = vhosts[1]["domains"].as_array().unwrap().iter().collect();
        assert!(!other_ns.contains(&&json!("hello-00001-private")));
        assert!(other_ns.contains(&&json!("10.96.0.7:8012")));
        // The twin's ClusterIP domains were taken by the first Service.
        assert!(!vhosts[2]["domains"]
            .as_array()
            .unwrap()
            .contains(&json!("10.96.0.7")));
        let catch_all = &vhosts[3];
        assert_eq!(catch_all["name"], "allow_any");
        assert_eq!(catch_all["domains"], json!(["*"]));
        assert_eq!(catch_all["routes"][0]["name"], "allow_any");
        assert_eq!(
            catch_all["routes"][0]["route"]["cluster"],
            "PassthroughCluster"
        );
        assert_eq!(catch_all["routes"][0]["route"]["timeout"], "0s");
        assert!(catch_all["routes"][0]["route"]
            .get("retry_policy")
            .is_none());
    }

    #[test]
    fn registry_only_blocks_unknown_hosts() {
        let a = service("default", "a", None, 80);
        let configs = build(&[&a], &proxy(), OutboundMode::RegistryOnly);
        let last = configs[0]["virtual_hosts"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(last["name"], "block_all");
    }
}
