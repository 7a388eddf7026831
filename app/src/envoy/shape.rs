//! What an activator sidecar runs that kasi relies on, read from its `/config_dump`: the HTTP
//! filter chain on the revision ports' listeners, PassthroughCluster's settings, and the filter's
//! pluginConfig (as a hash: it holds the session keys). Comparing these across the activators is
//! the first thing to check when one replica misbehaves ([`super::agreement`]).

use super::config_dump::ConfigDump;
use serde_json::Value;
use std::collections::BTreeMap;

/// The ports Knative's activator sends revisions' traffic to: HTTP/1 (8012) and h2c (8013).
pub const REVISION_PORTS: [u16; 2] = [8012, 8013];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigShape {
    /// Per revision port, the HTTP filters of its outbound listener in chain order, named as a
    /// person reads them (`kasi`, `session:cookie`, `router`, …); a port without a listener is
    /// absent.
    pub chains: BTreeMap<u16, Vec<String>>,
    /// `None`: no PassthroughCluster in the dump.
    pub passthrough: Option<Passthrough>,
    /// The first 8 hex digits of SHA-256 of the filter's pluginConfig; `None`: not loaded.
    pub plugin_config: Option<String>,
}

/// The PassthroughCluster settings kasi's bundle patches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Passthrough {
    /// `common_lb_config.override_host_status.statuses`: kasi's bundle sets `[DRAINING]`, so
    /// that `stateful_session`'s override host never picks an ORIGINAL_DST host.
    pub override_host_statuses: Vec<String>,
    /// `original_dst_lb_config.use_http_header`: the open relay kasi's bundle never turns on.
    pub use_http_header: bool,
}

impl Passthrough {
    /// As kasi's bundle leaves it.
    pub fn is_kasis(&self) -> bool {
        self.override_host_statuses == ["DRAINING"] && !self.use_http_header
    }

    pub fn describe(&self) -> String {
        let statuses = if self.override_host_statuses.is_empty() {
            "override host: any status".to_owned()
        } else {
            format!("override host: {}", self.override_host_statuses.join("|"))
        };
        if self.use_http_header {
            format!("{statuses}, use_http_header ON")
        } else {
            statuses
        }
    }
}

impl ConfigShape {
    pub fn of(dump: &ConfigDump, namespace: &str, plugin: &str) -> ConfigShape {
        let document = dump.document();
        let plugin_names = super::config_dump::wasm_plugin_names(namespace, plugin);
        let inline_name = format!("{namespace}.{plugin}");
        let name_of = |filter: &Value| -> String {
            let name = filter["name"].as_str().unwrap_or("?");
            if plugin_names.iter().any(|n| n == name) || name == inline_name {
                return "kasi".into();
            }
            if name == "envoy.filters.http.stateful_session" {
                let state = crate::install::render::session_state_of(filter)["name"]
                    .as_str()
                    .unwrap_or("");
                let kind = state.rsplit('.').next().unwrap_or("?");
                return format!("session:{kind}");
            }
            name.trim_start_matches("envoy.filters.http.")
                .trim_start_matches("istio.")
                .to_owned()
        };
        let mut chains = BTreeMap::new();
        for listener in sections(document, "Listeners")
            .flat_map(|c| c["dynamic_listeners"].as_array().into_iter().flatten())
            .map(|l| &l["active_state"]["listener"])
        {
            let Some(port) = listener["address"]["socket_address"]["port_value"].as_u64() else {
                continue;
            };
            let Some(port) = REVISION_PORTS.into_iter().find(|p| u64::from(*p) == port) else {
                continue;
            };
            let hcm = listener["filter_chains"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|fc| fc["filters"].as_array().into_iter().flatten())
                .find(|f| {
                    f["name"]
                        .as_str()
                        .is_some_and(|n| n.ends_with("http_connection_manager"))
                });
            if let Some(hcm) = hcm {
                let chain = hcm["typed_config"]["http_filters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(name_of)
                    .collect();
                chains.entry(port).or_insert(chain);
            }
        }
        let passthrough = sections(document, "Clusters")
            .flat_map(|c| {
                ["static_clusters", "dynamic_active_clusters"]
                    .into_iter()
                    .flat_map(move |k| c[k].as_array().into_iter().flatten())
            })
            .map(|c| &c["cluster"])
            .find(|c| c["name"].as_str() == Some("PassthroughCluster"))
            .map(|c| Passthrough {
                override_host_statuses: c["common_lb_config"]["override_host_status"]["statuses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect(),
                use_http_header: c["original_dst_lb_config"]["use_http_header"]
                    .as_bool()
                    .unwrap_or(false),
            });
        // The same short hash kasi shows MCP sessions by: 8 hex digits of SHA-256.
        let plugin_config = dump
            .wasm_plugin_config(namespace, plugin)
            .map(|config| kasi_filter::envelope::session_hash(config.as_bytes()));
        ConfigShape {
            chains,
            passthrough,
            plugin_config,
        }
    }

    /// What is wrong with one sidecar's shape whatever the others run: on each revision port kasi
    /// must come before every `stateful_session`, and those before the router; PassthroughCluster
    /// must be as the bundle patches it. Empty when kasi's filter is not expected (not loaded).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (port, chain) in &self.chains {
            if let Some(problem) = chain_problem(chain) {
                problems.push(format!(":{port} {problem}"));
            }
        }
        if let Some(passthrough) = &self.passthrough {
            if !passthrough.is_kasis() {
                problems.push(format!("PassthroughCluster {}", passthrough.describe()));
            }
        }
        problems
    }
}

/// `kasi → … → session:cookie → … → router`, shortened to the filters kasi's order is about.
pub fn chain_text(chain: &[String]) -> String {
    chain
        .iter()
        .filter(|f| *f == "kasi" || f.starts_with("session:") || *f == "router")
        .cloned()
        .collect::<Vec<_>>()
        .join(" → ")
}

/// Why the order on one listener is wrong, if it is.
fn chain_problem(chain: &[String]) -> Option<String> {
    let position = |f: &dyn Fn(&String) -> bool| chain.iter().position(f);
    let kasi = position(&|f| f == "kasi");
    let first_session = position(&|f| f.starts_with("session:"));
    let last_session = chain.iter().rposition(|f| f.starts_with("session:"));
    let router = position(&|f| f == "router");
    match (kasi, first_session, last_session, router) {
        (None, Some(_), _, _) => Some("has stateful_session without kasi before it".into()),
        (Some(k), Some(s), _, _) if k > s => Some("has kasi after stateful_session".into()),
        (_, _, Some(s), Some(r)) if s > r => Some("has stateful_session after the router".into()),
        (Some(_), None, _, _) => Some("has kasi but no stateful_session".into()),
        _ => None,
    }
}

/// The config_dump sections of one kind (`Listeners`, `Clusters`, …).
fn sections<'a>(document: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    document["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |c| {
            c["@type"]
                .as_str()
                .is_some_and(|t| t.ends_with(&format!(".{kind}ConfigDump")))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A config_dump as the lab's istiod and Envoy produce it after `kasi apply` (trimmed).
    pub(crate) fn dump(chain_8012: &[&str], statuses: &[&str], plugin_config: &str) -> ConfigDump {
        let filter = |name: &str| -> Value {
            match name.strip_prefix("session:") {
                Some(kind) => json!({"name": "envoy.filters.http.stateful_session",
                    "typed_config": {"session_state": {"name": format!("envoy.http.stateful_session.{kind}")}}}),
                None if name == "kasi" => {
                    json!({"name": "extensions.istio.io/wasmplugin/knative-serving.kasi-affinity",
                        "config_discovery": {}})
                }
                None => json!({"name": format!("envoy.filters.http.{name}")}),
            }
        };
        let listener = |port: u16, chain: &[&str]| {
            json!({"name": format!("0.0.0.0_{port}"), "active_state": {"listener": {
                "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {"http_filters": chain.iter().map(|f| filter(f)).collect::<Vec<_>>()}}]}]}}})
        };
        let document = json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "dynamic_listeners": [
                listener(80, &["fault", "router"]),
                listener(8012, chain_8012),
            ]},
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "dynamic_active_clusters": [
                {"cluster": {"name": "outbound|80||x", "type": "EDS"}},
                {"cluster": {"name": "PassthroughCluster", "type": "ORIGINAL_DST",
                    "common_lb_config": {"override_host_status": {"statuses": statuses}}}},
            ]},
            {"@type": "type.googleapis.com/envoy.admin.v3.EcdsConfigDump", "ecds_filters": [{"ecds_filter": {
                "name": "extensions.istio.io/wasmplugin/knative-serving.kasi-affinity",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                    "config": {"configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": plugin_config}}}}}]},
        ]});
        ConfigDump::parse(document.to_string().as_bytes()).unwrap()
    }

    const KASIS: [&str; 7] = [
        "kasi",
        "grpc_stats",
        "fault",
        "cors",
        "session:cookie",
        "session:envelope",
        "router",
    ];

    #[test]
    fn reads_the_chain_passthrough_and_config_as_kasi_installs_them() {
        let shape = ConfigShape::of(
            &dump(&KASIS, &["DRAINING"], r#"{"cookie_name":"s"}"#),
            "knative-serving",
            "kasi-affinity",
        );
        assert_eq!(shape.chains.len(), 1, "only the revision ports: {shape:?}");
        assert_eq!(
            chain_text(&shape.chains[&8012]),
            "kasi → session:cookie → session:envelope → router"
        );
        assert_eq!(shape.chains[&8012][1], "grpc_stats");
        assert!(shape.passthrough.as_ref().unwrap().is_kasis());
        assert_eq!(shape.plugin_config.as_deref().map(str::len), Some(8));
        assert_eq!(shape.problems(), Vec::<String>::new());
    }

    #[test]
    fn a_wrong_order_or_an_open_passthrough_is_named() {
        let cases: [(&[&str], &str); 4] = [
            (
                &["session:cookie", "kasi", "router"],
                ":8012 has kasi after stateful_session",
            ),
            (
                &["session:cookie", "router"],
                ":8012 has stateful_session without kasi before it",
            ),
            (
                &["kasi", "router", "session:cookie"],
                ":8012 has stateful_session after the router",
            ),
            (
                &["kasi", "router"],
                ":8012 has kasi but no stateful_session",
            ),
        ];
        for (chain, problem) in cases {
            let shape = ConfigShape::of(
                &dump(chain, &["DRAINING"], ""),
                "knative-serving",
                "kasi-affinity",
            );
            assert_eq!(shape.problems(), vec![problem.to_owned()], "{chain:?}");
        }
        let shape = ConfigShape::of(&dump(&KASIS, &[], ""), "knative-serving", "kasi-affinity");
        assert_eq!(
            shape.problems(),
            vec!["PassthroughCluster override host: any status".to_owned()]
        );
    }
}
