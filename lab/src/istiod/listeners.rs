//! LDS: `virtualOutbound`, where all outbound connections arrive, and one `0.0.0.0_<port>`
//! listener per HTTP port that it hands connections to (`listener_builder.go`
//! `buildVirtualOutboundListener`, `listener.go` `buildSidecarOutboundListener`).

use super::inputs::Service;
use super::names::{
    http_listener, BLACKHOLE_CLUSTER, HCM, PASSTHROUGH_CLUSTER, ROUTER, TCP_PROXY, VIRTUAL_OUTBOUND,
};
use super::scope::OutboundMode;
use super::wasm_plugins::{Phase, WasmFilter};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;

pub(crate) fn build(
    services: &[&Service],
    outbound: SocketAddr,
    mode: OutboundMode,
    plugins: &[WasmFilter],
    warnings: &mut Vec<String>,
) -> Vec<Value> {
    let http_ports: BTreeSet<u16> = services
        .iter()
        .flat_map(|s| s.ports.iter())
        .filter(|p| p.protocol.is_http())
        .map(|p| p.port)
        .collect();
    let mut listeners = vec![virtual_outbound(outbound, mode)];
    for port in http_ports {
        if port == outbound.port() {
            // Envoy would hand virtualOutbound's own port back to itself; istiod skips it too.
            warnings.push(format!(
                "no listener for HTTP port {port}: it is virtualOutbound's own port"
            ));
            continue;
        }
        listeners.push(http_outbound_listener(port, plugins));
    }
    listeners
}

/// Stands in for port 15001 behind iptables. `use_original_dst` hands each connection to the
/// listener for its original destination port; the lab restores that destination from the PROXY
/// v1 header its activator emulator sends (in a pod, iptables' SO_ORIGINAL_DST does it).
/// Connections no listener claims take the catch-all TCP chain.
fn virtual_outbound(address: SocketAddr, mode: OutboundMode) -> Value {
    let cluster = match mode {
        OutboundMode::AllowAny => PASSTHROUGH_CLUSTER,
        OutboundMode::RegistryOnly => BLACKHOLE_CLUSTER,
    };
    json!({
        "name": VIRTUAL_OUTBOUND,
        "address": socket_address(&address.ip().to_string(), address.port()),
        "use_original_dst": true,
        "traffic_direction": "OUTBOUND",
        "listener_filters": [{
            "name": "envoy.filters.listener.proxy_protocol",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol",
            },
        }],
        "filter_chains": [{
            "name": "virtualOutbound-catchall-tcp",
            "filters": [{
                "name": TCP_PROXY,
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": cluster,
                    "cluster": cluster,
                },
            }],
        }],
    })
}

/// Not bound (`bind_to_port: false`): it only receives connections virtualOutbound hands over.
fn http_outbound_listener(port: u16, plugins: &[WasmFilter]) -> Value {
    let name = http_listener(port);
    json!({
        "name": name,
        "address": socket_address("0.0.0.0", port),
        "bind_to_port": false,
        "traffic_direction": "OUTBOUND",
        "filter_chains": [{
            "filters": [{
                "name": HCM,
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": format!("outbound_{name}"),
                    "rds": {
                        "route_config_name": port.to_string(),
                        "config_source": {
                            "ads": {},
                            "initial_fetch_timeout": "0s",
                            "resource_api_version": "V3",
                        },
                    },
                    "http_filters": http_filters(port, plugins),
                    "use_remote_address": false,
                    // Knative streams (websockets, long polls): no idle cut-off, as istiod.
                    "stream_idle_timeout": "0s",
                    "upgrade_configs": [{"upgrade_type": "websocket"}],
                    "normalize_path": true,
                    "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
                },
            }],
        }],
    })
}

/// istiod's outbound order (`buildHTTPConnectionManager`), with the Istio-only filters
/// (metadata exchange, authn, rbac, alpn, stats) left out: wasm AUTHN, AUTHZ, STATS,
/// UNSPECIFIED, then grpc_stats, fault, cors, router.
fn http_filters(port: u16, plugins: &[WasmFilter]) -> Vec<Value> {
    let mut filters: Vec<Value> = [Phase::Authn, Phase::Authz, Phase::Stats, Phase::Unspecified]
        .into_iter()
        .flat_map(|phase| {
            plugins
                .iter()
                .filter(move |p| p.phase == phase && p.applies_to_port(port))
                .map(|p| p.filter.clone())
        })
        .collect();
    filters.extend([
        typed_filter(
            "envoy.filters.http.grpc_stats",
            "type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3.FilterConfig",
            json!({"emit_filter_state": true, "stats_for_all_methods": false}),
        ),
        typed_filter(
            "envoy.filters.http.fault",
            "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
            json!({}),
        ),
        typed_filter(
            "envoy.filters.http.cors",
            "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors",
            json!({}),
        ),
        typed_filter(
            ROUTER,
            "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            json!({}),
        ),
    ]);
    filters
}

fn typed_filter(name: &str, type_url: &str, config: Value) -> Value {
    let mut typed_config = json!({"@type": type_url});
    if let (Some(target), Value::Object(fields)) = (typed_config.as_object_mut(), config) {
        target.extend(fields);
    }
    json!({"name": name, "typed_config": typed_config})
}

fn socket_address(address: &str, port: u16) -> Value {
    json!({"socket_address": {"address": address, "port_value": port}})
}

#[cfg(test)]
mod tests {
    use super::super::inputs::{Protocol, ServicePort};
    use super::*;

    #[test]
    fn http_ports_get_unbound_listeners_with_rds_named_after_the_port() {
        let service = Service {
            namespace: "knative-serving".into(),
            name: "kasi-activator-affinity".into(),
            fqdn: "kasi-activator-affinity.knative-serving.svc.cluster.local".into(),
            cluster_ip: None,
            ports: vec![
                ServicePort {
                    name: "http".into(),
                    port: 8012,
                    protocol: Protocol::Http,
                },
                ServicePort {
                    name: "https".into(),
                    port: 443,
                    protocol: Protocol::Opaque,
                },
            ],
        };
        let outbound: SocketAddr = "127.0.0.2:15001".parse().unwrap();
        let listeners = build(
            &[&service],
            outbound,
            OutboundMode::AllowAny,
            &[],
            &mut Vec::new(),
        );
        assert_eq!(listeners.len(), 2);
        assert_eq!(listeners[0]["name"], "virtualOutbound");
        assert_eq!(listeners[0]["use_original_dst"], true);
        let tcp = &listeners[0]["filter_chains"][0]["filters"][0]["typed_config"];
        assert_eq!(tcp["cluster"], "PassthroughCluster");
        let http = &listeners[1];
        assert_eq!(http["name"], "0.0.0.0_8012");
        assert_eq!(http["bind_to_port"], false);
        let hcm = &http["filter_chains"][0]["filters"][0]["typed_config"];
        assert_eq!(hcm["stat_prefix"], "outbound_0.0.0.0_8012");
        assert_eq!(hcm["rds"]["route_config_name"], "8012");
        let names: Vec<&str> = hcm["http_filters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "envoy.filters.http.grpc_stats",
                "envoy.filters.http.fault",
                "envoy.filters.http.cors",
                "envoy.filters.http.router"
            ]
        );
    }

    #[test]
    fn registry_only_sends_unknown_tcp_to_the_blackhole() {
        let outbound: SocketAddr = "127.0.0.2:15001".parse().unwrap();
        let listeners = build(
            &[],
            outbound,
            OutboundMode::RegistryOnly,
            &[],
            &mut Vec::new(),
        );
        let tcp = &listeners[0]["filter_chains"][0]["filters"][0]["typed_config"];
        assert_eq!(tcp["cluster"], "BlackHoleCluster");
    }
}
