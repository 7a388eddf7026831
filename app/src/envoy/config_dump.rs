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

    /// Whether an HTTP wasm filter named `name` (Istio names it `<namespace>.<wasmplugin>`) is
    /// configured, inline or as an ECDS extension config.
    pub fn has_wasm_filter(&self, name: &str) -> bool {
        find_named(&self.document, name)
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

/// An object named `name` that is a wasm filter: its own config names the wasm filter type, or it
/// is fetched by ECDS (`config_discovery`) whose config elsewhere is a wasm one.
fn find_named(value: &Value, name: &str) -> bool {
    match value {
        Value::Object(map) => {
            if map.get("name").and_then(Value::as_str) == Some(name) {
                let text = value.to_string();
                if text.contains("wasm") || map.contains_key("config_discovery") {
                    return true;
                }
            }
            map.values().any(|child| find_named(child, name))
        }
        Value::Array(items) => items.iter().any(|child| find_named(child, name)),
        _ => false,
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
        assert!(parsed.has_wasm_filter("knative-serving.kasi-affinity"));
        assert_eq!(parsed.count("listeners"), 1);
        assert_eq!(parsed.count("clusters"), 0);
        assert!(!parsed.has_wasm_filter("other.kasi-affinity"));
    }

    #[test]
    fn not_json_is_an_error_not_a_panic() {
        assert!(ConfigDump::parse(b"<html>").is_err());
    }
}
