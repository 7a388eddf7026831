//! CDS: the passthrough and blackhole clusters plus one `outbound|<port>||<fqdn>` cluster per
//! in-scope Service port (`pilot/pkg/networking/core/cluster_builder.go`).

use super::inputs::{EndpointSubset, Protocol, Service, ServicePort};
use super::names::{outbound_cluster, BLACKHOLE_CLUSTER, PASSTHROUGH_CLUSTER};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::IpAddr;

/// The mesh default `connectTimeout`.
const CONNECT_TIMEOUT: &str = "10s";

/// istiod's default connection pool: effectively unlimited, so Envoy's own defaults (1024
/// connections, 3 retries) never throttle the lab either.
fn default_circuit_breakers() -> Value {
    json!({"thresholds": [{
        "max_connections": 4294967295u64,
        "max_pending_requests": 4294967295u64,
        "max_requests": 4294967295u64,
        "max_retries": 4294967295u64,
        "track_remaining": true,
    }]})
}

pub(crate) fn build(
    services: &[&Service],
    endpoints: &HashMap<(String, String), Vec<EndpointSubset>>,
) -> Vec<Value> {
    let mut clusters = vec![passthrough(), blackhole()];
    for service in services {
        let subsets = endpoints
            .get(&(service.namespace.clone(), service.name.clone()))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for port in &service.ports {
            if port.protocol == Protocol::Udp {
                continue;
            }
            clusters.push(service_port_cluster(service, port, subsets));
        }
    }
    clusters
}

/// As istiod builds it (`pilot/pkg/networking/core/cluster_builder.go`
/// `buildDefaultPassthroughCluster`): `ORIGINAL_DST`, no `original_dst_lb_config` — Envoy
/// connects to the socket's original destination, or to the filter-state address kasi's filter
/// sets —, `passthroughHttpProtocolOptions` (upstream HTTP/1.1 or HTTP/2 as the downstream
/// request came: an h2c request stays h2c; idle connections closed after 5 minutes), and the
/// delimited stat name `PassthroughCluster;` (`util.DelimitedStatsPrefix`). Istio's metadata
/// exchange on it is left out, like every Istio-only filter. (kasi's EnvoyFilter merges
/// `common_lb_config.override_host_status` into it so `stateful_session` cannot pick a host.)
fn passthrough() -> Value {
    json!({
        "name": PASSTHROUGH_CLUSTER,
        "alt_stat_name": format!("{PASSTHROUGH_CLUSTER};"),
        "type": "ORIGINAL_DST",
        "connect_timeout": CONNECT_TIMEOUT,
        "lb_policy": "CLUSTER_PROVIDED",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "common_http_protocol_options": {"idle_timeout": "300s"},
                "use_downstream_protocol_config": {
                    "http_protocol_options": {},
                    "http2_protocol_options": {},
                },
            },
        },
        "circuit_breakers": default_circuit_breakers(),
    })
}

fn blackhole() -> Value {
    json!({
        "name": BLACKHOLE_CLUSTER,
        "type": "STATIC",
        "connect_timeout": CONNECT_TIMEOUT,
    })
}

/// istiod makes these `EDS`; the lab inlines the endpoints (see the module docs of `mesh`), which
/// Envoy treats the same for routing, load balancing and `stateful_session` overrides.
fn service_port_cluster(
    service: &Service,
    port: &ServicePort,
    subsets: &[EndpointSubset],
) -> Value {
    let name = outbound_cluster(port.port, &service.fqdn);
    let lb_endpoints: Vec<Value> = endpoint_addresses(service, port, subsets)
        .into_iter()
        .map(|(ip, target_port)| {
            json!({"endpoint": {"address": {"socket_address": {
                "address": ip.to_string(),
                "port_value": target_port,
            }}}})
        })
        .collect();
    let mut cluster = json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": CONNECT_TIMEOUT,
        "lb_policy": "LEAST_REQUEST",
        "circuit_breakers": default_circuit_breakers(),
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": lb_endpoints}],
        },
        // What istiod records, and what `istioctl proxy-config` shows per cluster.
        "metadata": {"filter_metadata": {"istio": {
            "services": [{"host": service.fqdn, "name": service.name, "namespace": service.namespace}],
        }}},
    });
    if port.protocol == Protocol::Http2 {
        cluster["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            },
        });
    }
    cluster
}

/// The ready addresses with the target port: the Endpoints port named like the Service port
/// (an unnamed single port matches the Service's only port, as Kubernetes allows).
fn endpoint_addresses(
    service: &Service,
    port: &ServicePort,
    subsets: &[EndpointSubset],
) -> Vec<(IpAddr, u16)> {
    let mut addresses = Vec::new();
    for subset in subsets {
        let target = subset
            .ports
            .iter()
            .find(|(name, _)| *name == port.name)
            .or_else(|| {
                (service.ports.len() == 1 && subset.ports.len() == 1).then(|| &subset.ports[0])
            });
        if let Some((_, target_port)) = target {
            addresses.extend(subset.addresses.iter().map(|ip| (*ip, *target_port)));
        }
    }
    addresses.sort();
    addresses.dedup();
    addresses
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str, number: u16, protocol: Protocol) -> ServicePort {
        ServicePort {
            name: name.into(),
            port: number,
            protocol,
        }
    }

    #[test]
    fn cluster_endpoints_use_the_named_target_port() {
        let service = Service {
            namespace: "default".into(),
            name: "hello-00001-private".into(),
            fqdn: "hello-00001-private.default.svc.cluster.local".into(),
            cluster_ip: Some("10.96.0.10".parse().unwrap()),
            ports: vec![
                port("http", 80, Protocol::Http),
                port("http-istio", 8012, Protocol::Http),
                port("h2", 8013, Protocol::Http2),
            ],
        };
        let subsets = vec![EndpointSubset {
            addresses: vec!["10.1.0.2".parse().unwrap(), "10.1.0.1".parse().unwrap()],
            ports: vec![("http".into(), 8012), ("http-istio".into(), 8012)],
        }];
        let endpoints = HashMap::from([(
            ("default".to_string(), "hello-00001-private".to_string()),
            subsets,
        )]);
        let clusters = build(&[&service], &endpoints);
        let names: Vec<&str> = clusters
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "PassthroughCluster",
                "BlackHoleCluster",
                "outbound|80||hello-00001-private.default.svc.cluster.local",
                "outbound|8012||hello-00001-private.default.svc.cluster.local",
                "outbound|8013||hello-00001-private.default.svc.cluster.local",
            ]
        );
        let lb = &clusters[2]["load_assignment"]["endpoints"][0]["lb_endpoints"];
        assert_eq!(lb.as_array().unwrap().len(), 2);
        assert_eq!(
            lb[0]["endpoint"]["address"]["socket_address"]["address"],
            "10.1.0.1"
        );
        assert_eq!(
            lb[0]["endpoint"]["address"]["socket_address"]["port_value"],
            8012
        );
        // No Endpoints port named "h2": no endpoints, but the cluster exists (as in istiod).
        let h2 = &clusters[4];
        assert!(h2["load_assignment"]["endpoints"][0]["lb_endpoints"]
            .as_array()
            .unwrap()
            .is_empty());
        assert!(h2["typed_extension_protocol_options"].is_object());
        assert!(clusters[0].get("original_dst_lb_config").is_none());
    }
}
