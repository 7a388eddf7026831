//! The Envoy bootstrap: what Istio builds on the activator's sidecar for outbound port 8012
//! once a `Sidecar` resource has scoped its egress, reduced to the parts that decide routing.

use serde_json::{json, Value};
use std::path::Path;

/// What varies between tests.
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    /// Put the kasi wasm filter in front of `stateful_session`.
    pub with_filter: bool,
    /// The kasi module to load; `None`: [`filter_wasm`](crate::filter_wasm) (the workspace's
    /// build, or `KASI_FILTER_WASM`).
    pub filter_wasm: Option<std::path::PathBuf>,
    /// The filter's `pluginConfig`, as JSON text (the WasmPlugin's `pluginConfig`).
    pub plugin_config: String,
    /// The cookie `stateful_session` writes.
    pub cookie_name: String,
    /// The cookie's TTL as an Envoy duration such as `"120s"`; `None` writes session cookies.
    pub cookie_ttl: Option<String>,
    /// `original_dst_lb_config.use_http_header` on PassthroughCluster.
    pub use_http_header: bool,
    /// PassthroughCluster's `common_lb_config.override_host_status: {statuses: [DRAINING]}`, as
    /// kasi's bundle merges it. ORIGINAL_DST hosts are never DRAINING, so `stateful_session`'s
    /// override host is never honoured (Envoy's `HostUtility::selectOverrideHost` checks the
    /// host's status against this set; unset it allows UNKNOWN and HEALTHY, i.e. every host in
    /// the cluster's host map). `false`: Istio's own PassthroughCluster, before kasi's patch.
    pub ignore_override_host: bool,
    /// Envoy worker threads (`--concurrency`).
    pub concurrency: u32,
    /// HTTP filters (Envoy JSON, each `{"name": …, "typed_config": …}`) placed first in the
    /// chain, before the kasi filter and `stateful_session`: the benchmarks' alternatives.
    pub extra_http_filters: Vec<Value>,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        EnvoyOptions {
            with_filter: false,
            filter_wasm: None,
            plugin_config: "{}".to_string(),
            cookie_name: crate::COOKIE_NAME.to_string(),
            cookie_ttl: None,
            use_http_header: true,
            ignore_override_host: false,
            concurrency: 2,
            extra_http_filters: Vec::new(),
        }
    }
}

impl EnvoyOptions {
    /// The sidecar as kasi installs it: filter on, with `plugin_config`.
    pub fn with_filter(plugin_config: &str) -> EnvoyOptions {
        EnvoyOptions {
            with_filter: true,
            plugin_config: plugin_config.to_string(),
            ..EnvoyOptions::default()
        }
    }
}

/// The bootstrap as JSON (which Envoy reads as YAML's flow style; building it as JSON values
/// keeps the embedded pluginConfig string correctly escaped). Both listener and admin bind port
/// 0: the real ports are read back from the admin API, so parallel tests never race for ports.
pub(crate) fn render(options: &EnvoyOptions, wasm: Option<&Path>) -> Value {
    let mut http_filters = options.extra_http_filters.clone();
    if options.with_filter {
        let wasm = wasm.expect("the filter needs its wasm module");
        http_filters.push(json!({
            "name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": "kasi",
                    "root_id": "kasi",
                    "configuration": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": options.plugin_config,
                    },
                    "vm_config": {
                        "vm_id": "kasi",
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": {"local": {"filename": wasm.display().to_string()}},
                    },
                },
            },
        }));
    }
    let mut cookie = json!({"name": options.cookie_name, "path": "/"});
    if let Some(ttl) = &options.cookie_ttl {
        cookie["ttl"] = json!(ttl);
    }
    http_filters.push(json!({
        "name": "envoy.filters.http.stateful_session",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.stateful_session.v3.StatefulSession",
            "session_state": {
                "name": "envoy.http.stateful_session.cookie",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.http.stateful_session.cookie.v3.CookieBasedSessionState",
                    "cookie": cookie,
                },
            },
        },
    }));
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
        },
    }));

    let mut bootstrap = json!({
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        },
        "static_resources": {
            "listeners": [{
                "name": "virtualOutbound",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                // Restores the original destination from the activator emulator's PROXY header,
                // standing in for iptables + the `original_dst` listener filter in a pod.
                "listener_filters": [{
                    "name": "envoy.filters.listener.proxy_protocol",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol",
                    },
                }],
                "filter_chains": [{
                    "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "outbound_0.0.0.0_8012",
                            "route_config": {
                                "name": "8012",
                                "virtual_hosts": [{
                                    "name": "allow_any",
                                    "domains": ["*"],
                                    "routes": [{
                                        "match": {"prefix": "/"},
                                        "route": {"cluster": "PassthroughCluster", "timeout": "0s"},
                                    }],
                                }],
                            },
                            "http_filters": http_filters,
                        },
                    }],
                }],
            }],
            "clusters": [{
                "name": "PassthroughCluster",
                "type": "ORIGINAL_DST",
                "lb_policy": "CLUSTER_PROVIDED",
                "connect_timeout": "1s",
                "original_dst_lb_config": {"use_http_header": options.use_http_header},
            }],
        },
    });
    if options.ignore_override_host {
        bootstrap["static_resources"]["clusters"][0]["common_lb_config"] =
            json!({"override_host_status": {"statuses": ["DRAINING"]}});
    }
    bootstrap
}
