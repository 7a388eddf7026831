//! The Envoy bootstrap: what Istio builds on the activator's sidecar for outbound port 8012
//! once a `Sidecar` resource has scoped its egress, reduced to the parts that decide routing,
//! with PassthroughCluster as kasi's bundle patches it (or, for comparisons, as Istio builds it
//! and as the old bundle patched it).

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
    /// The cookie's `Path` (`stateful_session`'s `cookie.path`).
    pub cookie_path: String,
    /// The cookie's TTL as an Envoy duration such as `"120s"`; `None` writes session cookies.
    pub cookie_ttl: Option<String>,
    /// A `stateful_session` in cookie mode (`cookie_name`, `cookie_path`, `cookie_ttl`): on by
    /// default; off for a sidecar whose sessions all travel in headers.
    pub cookie_sessions: bool,
    /// A `stateful_session` in envelope mode (`envoy.http.stateful_session.envelope`) on this
    /// header, after the cookie one: MCP's `mcp-session-id` ([`crate::MCP_HEADER`]).
    pub envelope_header: Option<String>,
    /// A `stateful_session` in header mode (`envoy.http.stateful_session.header`) on this
    /// header, after the others.
    pub session_header: Option<String>,
    /// The cookie `stateful_session` is skipped for requests that carry `envelope_header` or
    /// `session_header`, as kasi's bundle wraps it. `false`: it runs for every request, as in a
    /// chain kasi did not build (an older bundle, istiod's own persistent-session filter).
    pub skip_cookie_session_for_headers: bool,
    /// `original_dst_lb_config.use_http_header` on PassthroughCluster. Off in kasi's bundle: any
    /// client can send `x-envoy-original-dst-host`. On only to show what the old bundle exposed
    /// (and for benchmark variants that steer by header).
    pub use_http_header: bool,
    /// PassthroughCluster's `common_lb_config.override_host_status: {statuses: [DRAINING]}`, as
    /// kasi's bundle merges it. ORIGINAL_DST hosts are never DRAINING, so `stateful_session`'s
    /// override host is never honoured (Envoy's `HostUtility::selectOverrideHost` checks the
    /// host's status against this set; unset it allows UNKNOWN and HEALTHY, i.e. every host in
    /// the cluster's host map). `false`: Istio's own PassthroughCluster, before kasi's patch.
    pub ignore_override_host: bool,
    /// The wasm filter's `failure_policy: FAIL_OPEN` (Istio's `failStrategy: FAIL_OPEN`): when
    /// the VM fails, requests pass as if the filter were not there.
    pub fail_open: bool,
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
            cookie_path: "/".to_string(),
            cookie_ttl: None,
            cookie_sessions: true,
            envelope_header: None,
            session_header: None,
            skip_cookie_session_for_headers: true,
            use_http_header: false,
            ignore_override_host: true,
            fail_open: false,
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

    /// Adds a `stateful_session` in envelope mode on `header` (MCP sessions).
    pub fn with_envelope(self, header: &str) -> EnvoyOptions {
        EnvoyOptions {
            envelope_header: Some(header.to_string()),
            ..self
        }
    }

    /// Adds a `stateful_session` in header mode on `header`.
    pub fn with_session_header(self, header: &str) -> EnvoyOptions {
        EnvoyOptions {
            session_header: Some(header.to_string()),
            ..self
        }
    }

    /// Without the cookie-mode `stateful_session`.
    pub fn without_cookie_sessions(self) -> EnvoyOptions {
        EnvoyOptions {
            cookie_sessions: false,
            ..self
        }
    }

    /// PassthroughCluster as istiod builds it, without kasi's patch: no header, but
    /// `stateful_session`'s override host honoured for any address in the host map.
    pub fn istio_passthrough(self) -> EnvoyOptions {
        EnvoyOptions {
            use_http_header: false,
            ignore_override_host: false,
            ..self
        }
    }

    /// PassthroughCluster as kasi's bundle patched it before issue 12: Istio's cluster plus
    /// `use_http_header: true`.
    pub fn header_steering_passthrough(self) -> EnvoyOptions {
        EnvoyOptions {
            use_http_header: true,
            ignore_override_host: false,
            ..self
        }
    }
}

// How the bundle wraps the cookie `stateful_session` (skipped for requests that carry a header
// session): the app's own file, compiled here too, so the harness runs the chain `kasi apply`
// renders. (`kasi` is only an optional dependency of this crate: the benchmark builds without it.)
#[path = "../../app/src/install/skip_filter.rs"]
mod skip_filter;
pub use skip_filter::skipped_for_headers;

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
        if options.fail_open {
            let last = http_filters.last_mut().expect("just pushed");
            // `failure_policy` replaces the deprecated `fail_open` (both in 1.36 and 1.40).
            last["typed_config"]["config"]["failure_policy"] = json!("FAIL_OPEN");
        }
    }
    let stateful_session = |name: &str, typed_config: Value| {
        json!({
            "name": "envoy.filters.http.stateful_session",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.stateful_session.v3.StatefulSession",
                "session_state": {"name": name, "typed_config": typed_config},
            },
        })
    };
    if options.cookie_sessions {
        let mut cookie = json!({"name": options.cookie_name, "path": options.cookie_path});
        if let Some(ttl) = &options.cookie_ttl {
            cookie["ttl"] = json!(ttl);
        }
        let cookie_session = stateful_session(
            "envoy.http.stateful_session.cookie",
            json!({
                "@type": "type.googleapis.com/envoy.extensions.http.stateful_session.cookie.v3.CookieBasedSessionState",
                "cookie": cookie,
            }),
        );
        let session_headers: Vec<&str> = [&options.envelope_header, &options.session_header]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .filter(|_| options.skip_cookie_session_for_headers)
            .collect();
        http_filters.push(skipped_for_headers(cookie_session, &session_headers));
    }
    if let Some(header) = &options.envelope_header {
        http_filters.push(stateful_session(
            "envoy.http.stateful_session.envelope",
            json!({
                "@type": "type.googleapis.com/envoy.extensions.http.stateful_session.envelope.v3.EnvelopeSessionState",
                "header": {"name": header},
            }),
        ));
    }
    if let Some(header) = &options.session_header {
        http_filters.push(stateful_session(
            "envoy.http.stateful_session.header",
            json!({
                "@type": "type.googleapis.com/envoy.extensions.http.stateful_session.header.v3.HeaderBasedSessionState",
                "name": header,
            }),
        ));
    }
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
        },
    }));

    // The filter steers with the filter-state object
    // `envoy.network.transport_socket.original_dst_address` (set through the wasm filter's
    // built-in foreign function `set_envoy_filter_state`), which ORIGINAL_DST reads first
    // (Envoy's `OriginalDstCluster::LoadBalancer::chooseHost`): nothing to configure here.
    let mut passthrough = json!({
        "name": "PassthroughCluster",
        "type": "ORIGINAL_DST",
        "lb_policy": "CLUSTER_PROVIDED",
        "connect_timeout": "1s",
    });
    if options.use_http_header {
        passthrough["original_dst_lb_config"] = json!({"use_http_header": true});
    }
    if options.ignore_override_host {
        passthrough["common_lb_config"] =
            json!({"override_host_status": {"statuses": ["DRAINING"]}});
    }

    json!({
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
            "clusters": [passthrough],
        },
    })
}
