//! WasmPlugins (extensions.istio.io/v1alpha1) as `envoy.filters.http.wasm` filters on the
//! outbound HTTP listeners (`pilot/pkg/model/extensions.go`, `wasmplugin.go`).
//!
//! As istiod does (`pilot/pkg/networking/core/extension/wasmplugin.go` `toEnvoyHTTPFilter`,
//! `InsertedExtensionConfigurations`), the HCM names the filter
//! `extensions.istio.io/wasmplugin/<namespace>.<name>` and gets its config through ECDS (no
//! default config, `initial_fetch_timeout: 0s`, type URLs Wasm and RBAC); the `Wasm` config is the
//! ECDS resource of that name. A `file://` module is loaded by Envoy from that path in the pod:
//! where the pod has no such file (its volumes lack the mount), Envoy rejects the ECDS resource
//! and, with no config for the filter, the listener rejects every stream with 500 (`NFCF`) — as
//! in a cluster, where `failStrategy` does not cover a module that cannot load.

use super::inputs::{labels_select, string_map, Resource};
use super::names::ROOT_NAMESPACE;
use super::ProxyIdentity;
use serde_json::{json, Value};
use std::path::PathBuf;

/// Where a plugin goes in the HCM filter chain, in chain order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Authn,
    Authz,
    Stats,
    /// `UNSPECIFIED_PHASE`: after every Istio filter that has a phase, before the built-ins.
    Unspecified,
}

/// istiod's `WasmPluginResourceNamePrefix` (Istio ≥ 1.26; 1.21–1.25 spelled it
/// `extenstions.istio.io/wasmplugin/`).
pub(crate) const RESOURCE_NAME_PREFIX: &str = "extensions.istio.io/wasmplugin/";
const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// istiod also accepts RBAC for the name: its agent substitutes an allow/deny-all RBAC filter
/// when it cannot fetch a remote module.
const RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";

/// A plugin that applies to this proxy, ready to be placed on listeners.
#[derive(Debug, Clone)]
pub(crate) struct WasmFilter {
    pub phase: Phase,
    /// `None`: every outbound listener; else only these listener ports.
    ports: Option<Vec<u16>>,
    /// The HCM's entry: the ECDS resource name and where its config comes from.
    pub filter: Value,
    /// The ECDS resource (`TypedExtensionConfig`) served under that name.
    pub extension_config: Value,
}

impl WasmFilter {
    pub fn applies_to_port(&self, port: u16) -> bool {
        self.ports
            .as_ref()
            .is_none_or(|ports| ports.contains(&port))
    }
}

/// The plugins that select `proxy` and apply to outbound traffic, in filter-chain order: phase,
/// then priority (higher first), then name and namespace.
pub(crate) fn for_proxy(
    plugins: &[Resource<Value>],
    proxy: &ProxyIdentity,
    resolve_wasm: &dyn Fn(&str) -> Option<PathBuf>,
    warnings: &mut Vec<String>,
) -> Vec<WasmFilter> {
    let mut selected: Vec<(Phase, i64, &str, &str, WasmFilter)> = Vec::new();
    for plugin in plugins {
        if plugin.namespace != proxy.namespace && plugin.namespace != ROOT_NAMESPACE {
            continue;
        }
        match outbound_filter(plugin, proxy, resolve_wasm, warnings) {
            Ok(Some(filter)) => {
                let priority = plugin.spec["priority"].as_i64().unwrap_or(0);
                selected.push((
                    filter.phase,
                    -priority,
                    &plugin.name,
                    &plugin.namespace,
                    filter,
                ));
            }
            Ok(None) => {}
            Err(why) => warnings.push(format!("WasmPlugin {}: {why}", plugin.key())),
        }
    }
    selected.sort_by(|a, b| (a.0, a.1, a.2, a.3).cmp(&(b.0, b.1, b.2, b.3)));
    selected.into_iter().map(|(.., filter)| filter).collect()
}

/// `Ok(None)`: the plugin does not apply to this proxy's outbound traffic. `Err`: it applies
/// but cannot be loaded (istiod would log it and leave it out).
fn outbound_filter(
    plugin: &Resource<Value>,
    proxy: &ProxyIdentity,
    resolve_wasm: &dyn Fn(&str) -> Option<PathBuf>,
    warnings: &mut Vec<String>,
) -> Result<Option<WasmFilter>, String> {
    let spec = &plugin.spec;
    if spec.get("targetRef").is_some() || spec.get("targetRefs").is_some() {
        // targetRefs select Gateways and Services, never a sidecar's own workload.
        return Ok(None);
    }
    let selector = string_map(spec.get("selector").and_then(|s| s.get("matchLabels")))
        .ok_or("selector.matchLabels is not a map of strings")?;
    if !labels_select(&selector, &proxy.labels) {
        return Ok(None);
    }
    let Some(ports) = outbound_ports(&spec["match"])? else {
        return Ok(None);
    };
    match spec["type"].as_str() {
        None | Some("HTTP") | Some("UNSPECIFIED_PLUGIN_TYPE") => {}
        Some("NETWORK") => return Err("type NETWORK is not modelled by the lab; skipped".into()),
        Some(other) => return Err(format!("unknown type {other:?}; skipped")),
    }
    let phase = match spec["phase"].as_str() {
        Some("AUTHN") => Phase::Authn,
        Some("AUTHZ") => Phase::Authz,
        Some("STATS") => Phase::Stats,
        None | Some("UNSPECIFIED_PHASE") => Phase::Unspecified,
        Some(other) => return Err(format!("unknown phase {other:?}; skipped")),
    };
    let url = spec["url"].as_str().ok_or("no url")?;
    let path = match (resolve_wasm(url), url.strip_prefix("file://")) {
        (Some(path), _) => path,
        // `buildDataSource`: Envoy reads the path in the pod; without the mount it is not there.
        (None, Some(in_pod)) => {
            warnings.push(format!(
                "WasmPlugin {}: {in_pod} is not mounted in pod {}; its sidecar will reject the \
                 module and fail every request on the plugin's listeners (500, NFCF)",
                plugin.key(),
                proxy.pod_name
            ));
            PathBuf::from(in_pod)
        }
        (None, None) => {
            return Err(format!(
                "cannot fetch {url}: the lab does not pull modules (istio-agent would); skipped"
            ))
        }
    };
    // Envoy 1.40 deprecates `fail_open` (it warns on every load) for `failure_policy`, which is
    // what current istiod sets too.
    let failure_policy = match spec["failStrategy"].as_str() {
        Some("FAIL_OPEN") => "FAIL_OPEN",
        None | Some("FAIL_CLOSE") => "FAIL_CLOSED",
        Some("FAIL_RELOAD") => "FAIL_RELOAD",
        Some(other) => return Err(format!("unknown failStrategy {other:?}; skipped")),
    };
    // proxy-wasm's on_configure receives exactly these bytes: the pluginConfig as JSON.
    let configuration = match spec.get("pluginConfig") {
        None | Some(Value::Null) => String::new(),
        Some(config) => config.to_string(),
    };
    let name = format!("{}.{}", plugin.namespace, plugin.name);
    let root_id = spec["pluginName"].as_str().unwrap_or(&plugin.name);
    let mut vm_config = json!({
        "vm_id": name,
        "runtime": "envoy.wasm.runtime.v8",
        "code": {"local": {"filename": path.display().to_string()}},
    });
    if let Some(env) = environment(&spec["vmConfig"]["env"]) {
        vm_config["environment_variables"] = env;
    }
    let resource_name = format!("{RESOURCE_NAME_PREFIX}{name}");
    let filter = json!({
        "name": resource_name,
        "config_discovery": {
            "config_source": {
                "ads": {},
                // istiod blocks the listener until the plugin arrives (it may be security-critical).
                "initial_fetch_timeout": "0s",
                "resource_api_version": "V3",
            },
            "type_urls": [WASM_TYPE, RBAC_TYPE],
        },
    });
    let extension_config = json!({
        "name": resource_name,
        "typed_config": {
            "@type": WASM_TYPE,
            "config": {
                "name": name,
                "root_id": root_id,
                "vm_config": vm_config,
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": configuration,
                },
                "failure_policy": failure_policy,
            },
        },
    });
    Ok(Some(WasmFilter {
        phase,
        ports,
        filter,
        extension_config,
    }))
}

/// `match[]`: the plugin applies to outbound when any entry has mode CLIENT,
/// CLIENT_AND_SERVER or UNDEFINED. `Ok(None)`: not outbound at all; `Ok(Some(None))`: every
/// port; `Ok(Some(Some(ports)))`: those listener ports only.
#[allow(clippy::type_complexity)]
fn outbound_ports(matches: &Value) -> Result<Option<Option<Vec<u16>>>, String> {
    let Some(entries) = matches.as_array().filter(|m| !m.is_empty()) else {
        return Ok(Some(None));
    };
    let mut ports = Vec::new();
    let mut any_port = false;
    let mut outbound = false;
    for entry in entries {
        match entry["mode"].as_str() {
            None | Some("UNDEFINED") | Some("CLIENT") | Some("CLIENT_AND_SERVER") => {}
            Some("SERVER") => continue,
            Some(other) => return Err(format!("unknown match mode {other:?}")),
        }
        outbound = true;
        match entry["ports"].as_array().filter(|p| !p.is_empty()) {
            None => any_port = true,
            Some(list) => {
                for port in list {
                    let number = port["number"]
                        .as_u64()
                        .and_then(|n| u16::try_from(n).ok())
                        .ok_or_else(|| format!("match port {port} has no valid number"))?;
                    ports.push(number);
                }
            }
        }
    }
    Ok(outbound.then_some((!any_port).then_some(ports)))
}

/// `vmConfig.env`: INLINE values are set, HOST values are read from Envoy's own environment.
fn environment(env: &Value) -> Option<Value> {
    let entries = env.as_array().filter(|e| !e.is_empty())?;
    let mut host_env_keys = Vec::new();
    let mut key_values = serde_json::Map::new();
    for entry in entries {
        let Some(name) = entry["name"].as_str() else {
            continue;
        };
        if entry["valueFrom"].as_str() == Some("HOST") {
            host_env_keys.push(json!(name));
        } else {
            key_values.insert(
                name.into(),
                json!(entry["value"].as_str().unwrap_or_default()),
            );
        }
    }
    Some(json!({"host_env_keys": host_env_keys, "key_values": key_values}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn proxy() -> ProxyIdentity {
        ProxyIdentity {
            namespace: "knative-serving".into(),
            pod_name: "activator-1".into(),
            labels: BTreeMap::from([("app".to_string(), "activator".to_string())]),
            pod_ip: "127.0.0.2".parse().unwrap(),
        }
    }

    fn plugin(namespace: &str, name: &str, spec: Value) -> Resource<Value> {
        Resource {
            namespace: namespace.into(),
            name: name.into(),
            created: String::new(),
            spec,
        }
    }

    fn resolve(url: &str) -> Option<PathBuf> {
        url.strip_prefix("file://").map(PathBuf::from)
    }

    #[test]
    fn plugins_are_ordered_by_phase_then_priority_then_name() {
        let plugins = vec![
            plugin("knative-serving", "b", json!({"url": "file:///b.wasm"})),
            plugin(
                "knative-serving",
                "a",
                json!({"url": "file:///a.wasm", "phase": "STATS"}),
            ),
            plugin(
                "istio-system",
                "c",
                json!({"url": "file:///c.wasm", "phase": "AUTHN"}),
            ),
            plugin(
                "knative-serving",
                "d",
                json!({"url": "file:///d.wasm", "phase": "AUTHN", "priority": 10}),
            ),
            plugin("default", "e", json!({"url": "file:///e.wasm"})),
            plugin(
                "knative-serving",
                "f",
                json!({"url": "file:///f.wasm", "selector": {"matchLabels": {"app": "x"}}}),
            ),
            plugin(
                "knative-serving",
                "g",
                json!({"url": "file:///g.wasm", "match": [{"mode": "SERVER"}]}),
            ),
        ];
        let filters = for_proxy(&plugins, &proxy(), &resolve, &mut Vec::new());
        let names: Vec<&str> = filters
            .iter()
            .map(|f| f.filter["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "extensions.istio.io/wasmplugin/knative-serving.d",
                "extensions.istio.io/wasmplugin/istio-system.c",
                "extensions.istio.io/wasmplugin/knative-serving.a",
                "extensions.istio.io/wasmplugin/knative-serving.b"
            ]
        );
    }

    #[test]
    fn filter_config_follows_istio() {
        let plugins = vec![plugin(
            "knative-serving",
            "kasi",
            json!({
                "url": "file:///var/local/wasm/kasi.wasm",
                "phase": "AUTHN",
                "failStrategy": "FAIL_OPEN",
                "match": [{"mode": "CLIENT", "ports": [{"number": 8012}, {"number": 8013}]}],
                "pluginConfig": {"cookie_name": "kasi-session"},
            }),
        )];
        let filters = for_proxy(&plugins, &proxy(), &resolve, &mut Vec::new());
        assert_eq!(filters.len(), 1);
        let filter = &filters[0];
        assert!(filter.applies_to_port(8012) && filter.applies_to_port(8013));
        assert!(!filter.applies_to_port(80));
        let name = "extensions.istio.io/wasmplugin/knative-serving.kasi";
        assert_eq!(filter.filter["name"], name);
        assert_eq!(
            filter.filter["config_discovery"]["config_source"]["initial_fetch_timeout"],
            "0s"
        );
        assert_eq!(filter.extension_config["name"], name);
        let config = &filter.extension_config["typed_config"]["config"];
        assert_eq!(config["name"], "knative-serving.kasi");
        assert_eq!(config["root_id"], "kasi");
        assert_eq!(config["failure_policy"], "FAIL_OPEN");
        assert_eq!(
            config["configuration"]["value"],
            r#"{"cookie_name":"kasi-session"}"#
        );
        assert_eq!(
            config["vm_config"]["code"]["local"]["filename"],
            "/var/local/wasm/kasi.wasm"
        );
    }

    #[test]
    fn an_unmounted_file_is_still_delivered_for_envoy_to_refuse() {
        let plugins = vec![plugin(
            "knative-serving",
            "kasi",
            json!({"url": "file:///var/local/kasi/kasi_filter.wasm"}),
        )];
        let mut warnings = Vec::new();
        let filters = for_proxy(&plugins, &proxy(), &|_: &str| None, &mut warnings);
        assert_eq!(filters.len(), 1);
        assert_eq!(
            filters[0].extension_config["typed_config"]["config"]["vm_config"]["code"]["local"]
                ["filename"],
            "/var/local/kasi/kasi_filter.wasm"
        );
        assert!(
            warnings[0].contains("not mounted in pod activator-1"),
            "{warnings:?}"
        );
    }

    #[test]
    fn an_unfetchable_module_is_skipped_with_a_warning() {
        let plugins = vec![plugin(
            "knative-serving",
            "kasi",
            json!({"url": "oci://x/y:1"}),
        )];
        let mut warnings = Vec::new();
        assert!(for_proxy(&plugins, &proxy(), &resolve, &mut warnings).is_empty());
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("cannot fetch"), "{warnings:?}");
    }
}
