//! What kasi reads from `/config_dump`: its size, by section, and whether the kasi filter is in it.

use anyhow::Context as _;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The WasmPlugin's HTTP filter type, as Istio renders it (inline or through ECDS).
pub const WASM_FILTER: &str = "envoy.filters.http.wasm";

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigDump {
    /// Bytes of the whole response.
    pub total_bytes: usize,
    /// Bytes of each section's JSON (`listeners`, `clusters`, `routes`, `endpoints`, `secrets`,
    /// `bootstrap`, `ecds`, …).
    pub sections: BTreeMap<String, usize>,
    document: Value,
}

impl ConfigDump {
    pub fn parse(body: &[u8]) -> anyhow::Result<ConfigDump> {
        let document: Value = serde_json::from_slice(body).context("config_dump is not JSON")?;
        let mut sections = BTreeMap::new();
        for config in document["configs"].as_array().into_iter().flatten() {
            let name = section_name(config["@type"].as_str().unwrap_or(""));
            let bytes = serde_json::to_vec(config).map(|v| v.len()).unwrap_or(0);
            *sections.entry(name).or_insert(0) += bytes;
        }
        Ok(ConfigDump {
            total_bytes: body.len(),
            sections,
            document,
        })
    }

    /// Whether the WasmPlugin `namespace/plugin` is loaded in this sidecar, under any name istiod
    /// has given it:
    /// - `extensions.istio.io/wasmplugin/<ns>.<name>` (Istio ≥ 1.26) and
    ///   `extenstions.istio.io/wasmplugin/<ns>.<name>` (1.21–1.25: istiod's own typo), delivered by
    ///   ECDS: only when the `ecds` section holds that config with a wasm `typed_config` (a
    ///   listener's `config_discovery` reference alone is not enough). Whether Envoy applied it is
    ///   [`Self::has_applied_wasm_plugin`]'s question.
    /// - `<ns>.<name>` inline in a listener's `http_filters` (older Istio, and the inline form).
    pub fn has_wasm_plugin(&self, namespace: &str, plugin: &str) -> bool {
        self.has_applied_wasm_plugin(namespace, plugin, &BTreeMap::new())
    }

    /// [`Self::has_wasm_plugin`], and applied: Envoy lists an ECDS resource it refused (a module
    /// it could not load, so every stream on the filter's listeners fails) in config_dump as
    /// readily as one it runs. What tells them apart is the resource's subscription stat
    /// `extension_config_discovery.http_filter.<name>.version_text`, empty until a version
    /// applies (`ecds_versions`: those stats by resource name; a name without one counts as
    /// applied, as before the stat was read).
    pub fn has_applied_wasm_plugin(
        &self,
        namespace: &str,
        plugin: &str,
        ecds_versions: &BTreeMap<String, String>,
    ) -> bool {
        let short = format!("{namespace}.{plugin}");
        wasm_plugin_names(namespace, plugin).iter().any(|name| {
            self.ecds_has(name)
                && ecds_versions
                    .get(name.as_str())
                    .is_none_or(|version| !version.is_empty())
        }) || find_inline(&self.document, &short)
    }

    /// An ECDS config named `name` whose `typed_config` is a wasm filter.
    fn ecds_has(&self, name: &str) -> bool {
        self.ecds_wasm(name).is_some()
    }

    /// The `typed_config` of the ECDS config named `name`, when it is a wasm filter.
    fn ecds_wasm(&self, name: &str) -> Option<&Value> {
        self.document["configs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| section_name(c["@type"].as_str().unwrap_or("")) == "ecds")
            .flat_map(|c| c["ecds_filters"].as_array().into_iter().flatten())
            .map(|f| &f["ecds_filter"])
            .find(|f| f["name"].as_str() == Some(name) && is_wasm(&f["typed_config"]))
            .map(|f| &f["typed_config"])
    }

    /// The pluginConfig the WasmPlugin `namespace/plugin` runs with in this sidecar: the bytes
    /// proxy-wasm's `on_configure` receives (istiod renders the WasmPlugin's `pluginConfig` as
    /// JSON in a `google.protobuf.StringValue`; empty when it has none). `None` when the plugin
    /// is not in the dump or its configuration is in a form kasi does not read.
    pub fn wasm_plugin_config(&self, namespace: &str, plugin: &str) -> Option<String> {
        let typed_config = wasm_plugin_names(namespace, plugin)
            .iter()
            .find_map(|name| self.ecds_wasm(name))
            .or_else(|| find_inline_config(&self.document, &format!("{namespace}.{plugin}")))?;
        // Envoy's `Wasm` message, or Istio's `TypedStruct` holding it under `value`.
        let wasm = if typed_config["config"].is_object() {
            &typed_config["config"]
        } else {
            &typed_config["value"]["config"]
        };
        if !wasm.is_object() {
            return None;
        }
        match &wasm["configuration"] {
            Value::Null => Some(String::new()),
            configuration
                if configuration["@type"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("google.protobuf.StringValue")) =>
            {
                Some(configuration["value"].as_str().unwrap_or("").to_owned())
            }
            _ => None,
        }
    }

    /// The whole dump, for readers of other parts of it ([`super::shape`]).
    pub fn document(&self) -> &Value {
        &self.document
    }

    pub fn sizes(&self) -> ConfigSizes {
        ConfigSizes {
            total_bytes: self.total_bytes,
            sections: self.sections.clone(),
        }
    }
}

/// The sizes alone, for reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigSizes {
    pub total_bytes: usize,
    pub sections: BTreeMap<String, usize>,
}

impl ConfigDump {
    /// How many resources a section holds (`clusters`: static + dynamic active clusters).
    pub fn count(&self, section: &str) -> usize {
        self.document["configs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| section_name(c["@type"].as_str().unwrap_or("")) == section)
            .flat_map(|c| c.as_object().into_iter().flatten())
            .filter(|(key, _)| {
                key.starts_with("static_")
                    || key.starts_with("dynamic_active")
                    || key.starts_with("dynamic_listeners")
                    || key.starts_with("dynamic_route")
            })
            .map(|(_, v)| v.as_array().map_or(0, Vec::len))
            .sum()
    }
}

/// The `version_text` of every HTTP filter's ECDS subscription, by resource name, from Envoy's
/// text stats (`extension_config_discovery.http_filter.<name>.version_text: "<version>"`).
pub fn ecds_versions(stats: &str) -> BTreeMap<String, String> {
    stats
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("extension_config_discovery.http_filter.")?;
            let (name, value) = rest.split_once(".version_text: ")?;
            Some((name.to_owned(), value.trim().trim_matches('"').to_owned()))
        })
        .collect()
}

/// `type.googleapis.com/envoy.admin.v3.ListenersConfigDump` → `listeners`.
fn section_name(type_url: &str) -> String {
    let short = type_url.rsplit('.').next().unwrap_or(type_url);
    let short = short.strip_suffix("ConfigDump").unwrap_or(short);
    match short {
        "Listeners" | "Clusters" | "Routes" | "Endpoints" | "Secrets" | "Bootstrap"
        | "ScopedRoutes" | "Ecds" => short.to_ascii_lowercase(),
        "" => "unknown".into(),
        other => other.to_ascii_lowercase(),
    }
}

/// The names istiod gives a WasmPlugin's ECDS config, newest first (pilot/pkg/model/wasm.go's
/// `WasmPluginResourceNamePrefix`: `extensions.istio.io/wasmplugin/` from 1.26 on,
/// `extenstions.istio.io/wasmplugin/` — sic — in 1.21–1.25).
pub fn wasm_plugin_names(namespace: &str, plugin: &str) -> [String; 2] {
    [
        format!("extensions.istio.io/wasmplugin/{namespace}.{plugin}"),
        format!("extenstions.istio.io/wasmplugin/{namespace}.{plugin}"),
    ]
}

/// A wasm filter's `typed_config`: Envoy's `Wasm` message, or Istio's `TypedStruct` around it.
fn is_wasm(typed_config: &Value) -> bool {
    let type_url = typed_config["@type"].as_str().unwrap_or("");
    let inner = typed_config["type_url"].as_str().unwrap_or("");
    type_url.contains("filters.http.wasm") || inner.contains("filters.http.wasm")
}

/// An inline HTTP filter named `name` (not an ECDS reference) whose config is a wasm filter.
fn find_inline(value: &Value, name: &str) -> bool {
    find_inline_config(value, name).is_some()
}

/// The `typed_config` of the first inline HTTP filter named `name` that is a wasm filter.
fn find_inline_config<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    match value {
        Value::Object(map) => {
            if map.get("name").and_then(Value::as_str) == Some(name)
                && !map.contains_key("config_discovery")
                && is_wasm(&value["typed_config"])
            {
                return Some(&value["typed_config"]);
            }
            map.values()
                .find_map(|child| find_inline_config(child, name))
        }
        Value::Array(items) => items
            .iter()
            .find_map(|child| find_inline_config(child, name)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_by_section_and_the_filter() {
        let dump = json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump", "bootstrap": {}},
            {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "dynamic_listeners": [
                {"name": "0.0.0.0_8012", "active_state": {"listener": {"filter_chains": [{"filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": {"http_filters": [
                        {"name": "knative-serving.kasi-affinity", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"}}
                    ]}}]}]}}}]},
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "dynamic_active_clusters": []}
        ]});
        let body = serde_json::to_vec(&dump).unwrap();
        let parsed = ConfigDump::parse(&body).unwrap();
        assert_eq!(parsed.total_bytes, body.len());
        assert_eq!(
            parsed.sections.keys().collect::<Vec<_>>(),
            ["bootstrap", "clusters", "listeners"]
        );
        assert!(parsed.has_wasm_plugin("knative-serving", "kasi-affinity"));
        assert_eq!(parsed.count("listeners"), 1);
        assert_eq!(parsed.count("clusters"), 0);
        assert!(!parsed.has_wasm_plugin("other", "kasi-affinity"));
    }

    /// A listener that takes the plugin through ECDS, and the `ecds` section holding it or not.
    fn ecds_dump(reference: &str, delivered: Option<&str>) -> ConfigDump {
        let mut configs = vec![json!({
        "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "dynamic_listeners": [
        {"name": "0.0.0.0_8012", "active_state": {"listener": {"filter_chains": [{"filters": [
            {"name": "envoy.filters.network.http_connection_manager", "typed_config": {"http_filters": [
                {"name": reference, "config_discovery": {"config_source": {"ads": {}},
                    "type_urls": ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"]}},
                {"name": "envoy.filters.http.router"}
            ]}}]}]}}}]})];
        if let Some(name) = delivered {
            configs.push(json!({
                "@type": "type.googleapis.com/envoy.admin.v3.EcdsConfigDump", "ecds_filters": [
                {"version_info": "1", "ecds_filter": {
                    "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                    "name": name,
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                        "config": {"name": "kasi-affinity", "configuration": {
                            "@type": "type.googleapis.com/google.protobuf.StringValue",
                            "value": "{\"log_decisions\":\"off\"}"}}}}}]}));
        }
        ConfigDump::parse(&serde_json::to_vec(&json!({"configs": configs})).unwrap()).unwrap()
    }

    #[test]
    fn the_plugin_is_found_under_each_name_istiod_gives_it() {
        for name in [
            "extensions.istio.io/wasmplugin/knative-serving.kasi-affinity",
            "extenstions.istio.io/wasmplugin/knative-serving.kasi-affinity",
        ] {
            let dump = ecds_dump(name, Some(name));
            assert!(
                dump.has_wasm_plugin("knative-serving", "kasi-affinity"),
                "{name}"
            );
            assert!(!dump.has_wasm_plugin("default", "kasi-affinity"), "{name}");
            assert!(!dump.has_wasm_plugin("knative-serving", "other"), "{name}");
        }
        // No resource delivered yet: the reference alone is not the filter.
        let nacked = ecds_dump(
            "extensions.istio.io/wasmplugin/knative-serving.kasi-affinity",
            None,
        );
        assert!(!nacked.has_wasm_plugin("knative-serving", "kasi-affinity"));
        // Some other extension config under the plugin's name is not the wasm filter.
        let dump = json!({"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.EcdsConfigDump",
            "ecds_filters": [{"ecds_filter": {"name": "extensions.istio.io/wasmplugin/knative-serving.kasi-affinity",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"}}}]}]});
        let dump = ConfigDump::parse(&serde_json::to_vec(&dump).unwrap()).unwrap();
        assert!(!dump.has_wasm_plugin("knative-serving", "kasi-affinity"));
    }

    /// What Envoy 1.40 shows after refusing a module it cannot load (seen in the lab's
    /// `a_module_the_pod_lacks_fails_every_request_on_its_listener`): the resource in config_dump,
    /// its subscription's version_text empty.
    #[test]
    fn a_refused_module_is_not_loaded_though_config_dump_lists_it() {
        let name = "extensions.istio.io/wasmplugin/knative-serving.kasi-affinity";
        let dump = ecds_dump(name, Some(name));
        let stats = |version: &str| {
            format!(
                "extension_config_discovery.http_filter.{name}.config_fail: 1\n\
                 extension_config_discovery.http_filter.{name}.version_text: \"{version}\"\n\
                 listener.0.0.0.0_8012.extension_config_missing: 0\n"
            )
        };
        let refused = ecds_versions(&stats(""));
        assert_eq!(refused.get(name).map(String::as_str), Some(""));
        assert!(!dump.has_applied_wasm_plugin("knative-serving", "kasi-affinity", &refused));
        let applied = ecds_versions(&stats("c0ddde7cd301cb69"));
        assert!(dump.has_applied_wasm_plugin("knative-serving", "kasi-affinity", &applied));
        // Without the stat (not readable), config_dump decides.
        assert!(dump.has_applied_wasm_plugin("knative-serving", "kasi-affinity", &BTreeMap::new()));
    }

    #[test]
    fn the_plugin_config_is_read_as_the_filter_receives_it() {
        let name = "extensions.istio.io/wasmplugin/knative-serving.kasi-affinity";
        let dump = ecds_dump(name, Some(name));
        assert_eq!(
            dump.wasm_plugin_config("knative-serving", "kasi-affinity")
                .as_deref(),
            Some(r#"{"log_decisions":"off"}"#)
        );
        assert_eq!(dump.wasm_plugin_config("default", "kasi-affinity"), None);
        // Not delivered: no config.
        assert_eq!(
            ecds_dump(name, None).wasm_plugin_config("knative-serving", "kasi-affinity"),
            None
        );
        // Inline, without a pluginConfig: the filter's defaults (empty bytes).
        let inline = json!({"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            "dynamic_listeners": [{"active_state": {"listener": {"filter_chains": [{"filters": [{"typed_config": {
                "http_filters": [{"name": "knative-serving.kasi-affinity", "typed_config": {
                    "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                    "type_url": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                    "value": {"config": {"name": "kasi-affinity"}}}}]}}]}]}}}]}]});
        let inline = ConfigDump::parse(&serde_json::to_vec(&inline).unwrap()).unwrap();
        assert_eq!(
            inline
                .wasm_plugin_config("knative-serving", "kasi-affinity")
                .as_deref(),
            Some("")
        );
    }

    #[test]
    fn not_json_is_an_error_not_a_panic() {
        assert!(ConfigDump::parse(b"<html>").is_err());
    }
}
