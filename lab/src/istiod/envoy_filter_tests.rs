//! The patch engine against a small generated config: one HTTP listener on 8012, a route config
//! `8012` with one service vhost, PassthroughCluster and one service cluster.

use super::*;
use crate::istiod::SidecarConfig;
use serde_json::json;
use std::collections::BTreeMap;

fn proxy() -> ProxyIdentity {
    ProxyIdentity {
        namespace: "knative-serving".into(),
        pod_name: "activator-1".into(),
        labels: BTreeMap::from([("app".to_string(), "activator".to_string())]),
        pod_ip: "127.0.0.2".parse().unwrap(),
    }
}

fn config() -> SidecarConfig {
    let hcm = |filters: &[&str]| {
        json!({"name": HCM, "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "http_filters": filters.iter().map(|n| json!({"name": n})).collect::<Vec<_>>(),
        }})
    };
    SidecarConfig {
        listeners: vec![
            json!({"name": "virtualOutbound", "address": {"socket_address": {"port_value": 15001}},
                   "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy"}]}]}),
            json!({"name": "0.0.0.0_8012", "address": {"socket_address": {"port_value": 8012}},
                   "filter_chains": [{"filters": [hcm(&["cors", "envoy.filters.http.router"])]}]}),
        ],
        clusters: vec![
            json!({"name": "PassthroughCluster"}),
            json!({"name": "outbound|8012||a.knative-serving.svc.cluster.local"}),
        ],
        route_configs: vec![json!({"name": "8012", "virtual_hosts": [
            {"name": "a.knative-serving.svc.cluster.local:8012"}, {"name": "allow_any"},
        ]})],
        extension_configs: vec![],
        warnings: vec![],
    }
}

fn envoy_filter(name: &str, priority: i64, selector: Value, patches: Value) -> Resource<Value> {
    Resource {
        namespace: "knative-serving".into(),
        name: name.into(),
        created: "2026-01-01T00:00:00Z".into(),
        spec: json!({"workloadSelector": {"labels": selector}, "priority": priority, "configPatches": patches}),
    }
}

/// Applies `patches` (one EnvoyFilter selecting the proxy) to [`config`].
fn patched(patches: Value) -> SidecarConfig {
    let filters = [envoy_filter("f", 0, json!({"app": "activator"}), patches)];
    let mut config = config();
    let parsed = patches_for_proxy(&filters, &proxy(), &mut config.warnings);
    apply(&parsed, &mut config);
    config
}

fn http_filters(config: &SidecarConfig) -> Vec<String> {
    config.listeners[1]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect()
}

fn http_patch(operation: &str, sub_filter: Option<&str>, value: Value) -> Value {
    let mut filter = json!({"name": HCM});
    if let Some(sub) = sub_filter {
        filter["subFilter"] = json!({"name": sub});
    }
    json!({"applyTo": "HTTP_FILTER",
           "match": {"context": "SIDECAR_OUTBOUND", "listener": {"portNumber": 8012, "filterChain": {"filter": filter}}},
           "patch": {"operation": operation, "value": value}})
}

#[test]
fn http_filter_operations_follow_istio() {
    let new = json!({"name": "new"});
    let router = Some("envoy.filters.http.router");
    let cases = [
        (
            http_patch("INSERT_BEFORE", router, new.clone()),
            vec!["cors", "new", "envoy.filters.http.router"],
        ),
        (
            http_patch("INSERT_AFTER", Some("cors"), new.clone()),
            vec!["cors", "new", "envoy.filters.http.router"],
        ),
        (
            http_patch("INSERT_FIRST", router, new.clone()),
            vec!["new", "cors", "envoy.filters.http.router"],
        ),
        // ADD appends, after the router, exactly as istiod does.
        (
            http_patch("ADD", None, new.clone()),
            vec!["cors", "envoy.filters.http.router", "new"],
        ),
        // Without a subFilter, INSERT_BEFORE means first and INSERT_AFTER means last.
        (
            http_patch("INSERT_BEFORE", None, new.clone()),
            vec!["new", "cors", "envoy.filters.http.router"],
        ),
        (
            http_patch("INSERT_AFTER", None, new.clone()),
            vec!["cors", "envoy.filters.http.router", "new"],
        ),
        (
            http_patch("REPLACE", Some("cors"), new.clone()),
            vec!["new", "envoy.filters.http.router"],
        ),
        (
            http_patch("REMOVE", Some("cors"), Value::Null),
            vec!["envoy.filters.http.router"],
        ),
    ];
    for (patch, expected) in cases {
        let config = patched(json!([patch]));
        assert_eq!(http_filters(&config), expected, "{patch}");
        assert!(config.warnings.is_empty(), "{patch}: {:?}", config.warnings);
    }
    let merged = patched(json!([http_patch(
        "MERGE",
        Some("cors"),
        json!({"typedConfig": {"x": 1}})
    )]));
    let cors =
        &merged.listeners[1]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0];
    assert_eq!(cors["typed_config"]["x"], 1);
}

#[test]
fn patches_that_match_nothing_change_nothing_and_warn() {
    let new = json!({"name": "new"});
    let misses = [
        http_patch(
            "INSERT_BEFORE",
            Some("envoy.filters.http.nope"),
            new.clone(),
        ),
        json!({"applyTo": "HTTP_FILTER", "match": {"context": "SIDECAR_INBOUND"}, "patch": {"operation": "ADD", "value": new}}),
        json!({"applyTo": "HTTP_FILTER", "match": {"listener": {"portNumber": 8013}}, "patch": {"operation": "ADD", "value": new}}),
        json!({"applyTo": "HTTP_FILTER", "match": {"listener": {"filterChain": {"filter": {"name": "envoy.filters.network.tcp_proxy"}}}},
               "patch": {"operation": "ADD", "value": new}}),
        json!({"applyTo": "CLUSTER", "match": {"cluster": {"name": "Passthrough"}}, "patch": {"operation": "MERGE", "value": {"x": 1}}}),
        json!({"applyTo": "CLUSTER", "match": {"cluster": {"portNumber": 8013}}, "patch": {"operation": "REMOVE"}}),
        json!({"applyTo": "VIRTUAL_HOST", "match": {"routeConfiguration": {"vhost": {"name": "x"}}}, "patch": {"operation": "REMOVE"}}),
        json!({"applyTo": "ROUTE_CONFIGURATION", "match": {"routeConfiguration": {"portNumber": 80}}, "patch": {"operation": "MERGE", "value": {"x": 1}}}),
    ];
    for miss in misses {
        let config = patched(json!([miss]));
        assert_eq!(config.listeners, self::config().listeners, "{miss}");
        assert_eq!(config.clusters, self::config().clusters, "{miss}");
        assert_eq!(config.route_configs, self::config().route_configs, "{miss}");
        assert_eq!(config.warnings.len(), 1, "{miss}: {:?}", config.warnings);
        assert!(config.warnings[0].contains("knative-serving/f#configPatches[0]"));
    }
}

#[test]
fn cluster_listener_and_route_operations() {
    let config = patched(json!([
        {"applyTo": "CLUSTER", "match": {"context": "ANY", "cluster": {"name": "PassthroughCluster"}},
         "patch": {"operation": "MERGE", "value": {"commonLbConfig": {"overrideHostStatus": {"statuses": ["DRAINING"]}}}}},
        {"applyTo": "CLUSTER", "match": {"cluster": {"service": "*.knative-serving.svc.cluster.local", "portNumber": 8012}},
         "patch": {"operation": "REMOVE"}},
        {"applyTo": "CLUSTER", "patch": {"operation": "ADD", "value": {"name": "extra"}}},
        {"applyTo": "LISTENER", "match": {"listener": {"name": "virtualOutbound"}},
         "patch": {"operation": "MERGE", "value": {"perConnectionBufferLimitBytes": 1024}}},
        {"applyTo": "NETWORK_FILTER", "match": {"listener": {"portNumber": 8012, "filterChain": {"filter": {"name": HCM}}}},
         "patch": {"operation": "MERGE", "value": {"typedConfig": {
             "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
             "streamIdleTimeout": "5s"}}}},
        {"applyTo": "ROUTE_CONFIGURATION", "match": {"routeConfiguration": {"portNumber": 8012}},
         "patch": {"operation": "MERGE", "value": {"maxDirectResponseBodySizeBytes": 10}}},
        {"applyTo": "VIRTUAL_HOST", "match": {"routeConfiguration": {"name": "8012", "vhost": {"name": "allow_any"}}},
         "patch": {"operation": "MERGE", "value": {"includeRequestAttemptCount": false}}},
        {"applyTo": "VIRTUAL_HOST", "match": {"routeConfiguration": {"portNumber": 8012}},
         "patch": {"operation": "ADD", "value": {"name": "added", "domains": ["x"]}}},
    ]));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let names: Vec<&str> = config
        .clusters
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["PassthroughCluster", "extra"]);
    assert_eq!(
        config.clusters[0]["common_lb_config"]["override_host_status"]["statuses"],
        json!(["DRAINING"])
    );
    assert_eq!(
        config.listeners[0]["per_connection_buffer_limit_bytes"],
        1024
    );
    let hcm = &config.listeners[1]["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(hcm["stream_idle_timeout"], "5s");
    assert_eq!(
        hcm["http_filters"].as_array().unwrap().len(),
        2,
        "MERGE kept the filters"
    );
    let route = &config.route_configs[0];
    assert_eq!(route["max_direct_response_body_size_bytes"], 10);
    let vhosts: Vec<&str> = route["virtual_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        vhosts,
        [
            "a.knative-serving.svc.cluster.local:8012",
            "allow_any",
            "added"
        ]
    );
    assert_eq!(
        route["virtual_hosts"][1]["include_request_attempt_count"],
        false
    );
}

#[test]
fn selection_and_order_of_envoy_filters() {
    let insert_first = |name: &str| http_patch("INSERT_FIRST", None, json!({"name": name}));
    let mut root = envoy_filter("root", 0, json!({}), json!([insert_first("root")]));
    root.namespace = "istio-system".into();
    let mut elsewhere = envoy_filter(
        "elsewhere",
        0,
        json!({}),
        json!([insert_first("elsewhere")]),
    );
    elsewhere.namespace = "default".into();
    let mut older = envoy_filter(
        "z-older",
        5,
        json!({"app": "activator"}),
        json!([insert_first("older")]),
    );
    older.created = "2025-01-01T00:00:00Z".into();
    let filters = [
        envoy_filter(
            "late",
            10,
            json!({"app": "activator"}),
            json!([insert_first("late")]),
        ),
        envoy_filter(
            "other-workload",
            0,
            json!({"app": "autoscaler"}),
            json!([insert_first("other")]),
        ),
        envoy_filter(
            "b",
            5,
            json!({"app": "activator"}),
            json!([insert_first("b")]),
        ),
        older,
        root,
        elsewhere,
    ];
    let mut config = config();
    let patches = patches_for_proxy(&filters, &proxy(), &mut config.warnings);
    apply(&patches, &mut config);
    // Applied in order root (0), z-older (5, older), b (5), late (10); INSERT_FIRST reverses it.
    assert_eq!(
        http_filters(&config),
        [
            "late",
            "b",
            "older",
            "root",
            "cors",
            "envoy.filters.http.router"
        ]
    );
}

#[test]
fn invalid_patches_are_skipped_with_a_warning() {
    let config = patched(json!([
        {"applyTo": "BOOTSTRAP", "patch": {"operation": "MERGE", "value": {}}},
        {"applyTo": "CLUSTER", "patch": {"operation": "INSERT_FIRST", "value": {}}},
        {"applyTo": "CLUSTER", "patch": {"operation": "ADD", "value": "not an object"}},
        {"applyTo": "CLUSTER", "match": {"cluster": {"portNumber": "x"}}, "patch": {"operation": "REMOVE"}},
    ]));
    assert_eq!(config.warnings.len(), 4, "{:?}", config.warnings);
    assert_eq!(config.clusters, self::config().clusters);
}
