//! `kasi_lab::istiod::build` on a realistic cluster: the activator's sidecar config with and
//! without kasi's bundle, checked for istiod's names and order, and by real Envoy's validator.

#[path = "support/istiod.rs"]
mod support;

use serde_json::{json, Value};
use std::net::SocketAddr;
use support::*;

const REVISIONS: usize = 150;

fn outbound() -> SocketAddr {
    "127.0.0.1:15001".parse().unwrap()
}

fn names(values: &[Value]) -> Vec<&str> {
    values.iter().map(|v| v["name"].as_str().unwrap()).collect()
}

fn plugin_config() -> Value {
    json!({"cookie_name": "kasi-session", "allowed_cidrs": ["127.0.0.0/8"]})
}

#[test]
fn the_bundle_gives_istios_names_and_filter_order() {
    let mut objects = many_revisions(REVISIONS);
    objects.extend(bundle(true, plugin_config()));
    let config = build(&objects, outbound());
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);

    assert_eq!(
        names(&config.listeners),
        ["virtualOutbound", "0.0.0.0_8012", "0.0.0.0_8013"]
    );
    assert_eq!(names(&config.route_configs), ["8012", "8013"]);
    let plugin = format!("extensions.istio.io/wasmplugin/knative-serving.{PLUGIN}");
    assert_eq!(
        http_filter_names(&config, "0.0.0.0_8012"),
        [
            plugin.as_str(),
            "envoy.filters.http.grpc_stats",
            "envoy.filters.http.fault",
            "envoy.filters.http.cors",
            "envoy.filters.http.stateful_session",
            "envoy.filters.http.router",
        ]
    );
    // The EnvoyFilter names port 8012 only; the WasmPlugin both ports.
    assert_eq!(http_filter_names(&config, "0.0.0.0_8013")[0], plugin);
    assert!(!http_filter_names(&config, "0.0.0.0_8013")
        .contains(&"envoy.filters.http.stateful_session".into()));

    let route = &config.route_configs[0];
    assert_eq!(
        names(route["virtual_hosts"].as_array().unwrap()),
        [
            "kasi-activator-affinity.knative-serving.svc.cluster.local:8012",
            "allow_any"
        ]
    );
    assert_eq!(
        route["virtual_hosts"][0]["routes"][0]["route"]["cluster"],
        "outbound|8012||kasi-activator-affinity.knative-serving.svc.cluster.local"
    );

    let passthrough = config
        .clusters
        .iter()
        .find(|c| c["name"] == "PassthroughCluster")
        .unwrap();
    assert_eq!(passthrough["type"], "ORIGINAL_DST");
    // istiod's passthroughHttpProtocolOptions: the upstream speaks what the downstream spoke.
    let options = &passthrough["typed_extension_protocol_options"]
        ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
    assert!(
        options["use_downstream_protocol_config"]["http2_protocol_options"].is_object(),
        "{passthrough}"
    );
    assert_eq!(passthrough["alt_stat_name"], "PassthroughCluster;");
    assert_eq!(
        passthrough["common_lb_config"],
        json!({"override_host_status": {"statuses": ["DRAINING"]}})
    );
    assert!(
        passthrough.get("commonLbConfig").is_none(),
        "patch keys were converted to snake_case"
    );
    assert!(
        passthrough.get("original_dst_lb_config").is_none(),
        "no header can route: {passthrough}"
    );

    // The stateful_session value arrived in snake_case too, its cookie intact.
    let http_filters =
        &config.listeners[1]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"];
    let session = &http_filters[4]["typed_config"]["session_state"]["typed_config"]["cookie"];
    assert_eq!(session, &json!({"name": "kasi-session", "path": "/"}));
    // The plugin's filter names its ECDS resource, which holds the `Wasm` config.
    assert_eq!(
        http_filters[0]["config_discovery"]["config_source"]["initial_fetch_timeout"],
        "0s"
    );
    assert_eq!(config.extension_configs.len(), 1);
    assert_eq!(config.extension_configs[0]["name"], http_filters[0]["name"]);
    let wasm = &config.extension_configs[0]["typed_config"]["config"];
    assert_eq!(wasm["configuration"]["value"], plugin_config().to_string());
    assert_eq!(wasm["failure_policy"], "FAIL_OPEN");
    assert_eq!(
        wasm["vm_config"]["code"]["local"]["filename"],
        filter_wasm().display().to_string()
    );
}

#[test]
fn without_a_sidecar_every_service_is_in_the_config() {
    let mut objects = many_revisions(REVISIONS);
    objects.extend(bundle(false, plugin_config()));
    let config = build(&objects, outbound());
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    // 150 × (public 80, 443 + private 80, 443, 9090, 9091, 8012) + placeholder 2 + 2 built-in.
    assert_eq!(config.clusters.len(), REVISIONS * 7 + 4);
    assert_eq!(
        names(&config.listeners),
        [
            "virtualOutbound",
            "0.0.0.0_80",
            "0.0.0.0_8012",
            "0.0.0.0_8013",
            "0.0.0.0_9090",
            "0.0.0.0_9091"
        ]
    );
    let route_8012 = config
        .route_configs
        .iter()
        .find(|r| r["name"] == "8012")
        .unwrap();
    // Every private Service's http-istio port plus the placeholder, then allow_any.
    assert_eq!(
        route_8012["virtual_hosts"].as_array().unwrap().len(),
        REVISIONS + 2
    );
    let private = config
        .clusters
        .iter()
        .find(|c| c["name"] == "outbound|8012||app-7-00001-private.tenant-1.svc.cluster.local")
        .expect("a private revision cluster");
    let endpoints = private["load_assignment"]["endpoints"][0]["lb_endpoints"]
        .as_array()
        .unwrap();
    assert_eq!(endpoints.len(), 2);

    let mut scoped_objects = objects.clone();
    scoped_objects.push(sidecar());
    let scoped = build(&scoped_objects, outbound());
    assert!(
        scoped.clusters.len() <= 6,
        "the Sidecar keeps a handful of clusters: {:?}",
        names(&scoped.clusters)
    );
    assert!(config.clusters.len() >= 100 * scoped.clusters.len() / 6);
}

#[test]
fn a_patch_with_a_wrong_port_matches_nothing_and_warns() {
    let mut objects = many_revisions(3);
    objects.extend([
        placeholder_service(),
        sidecar(),
        stateful_session_filter(8014),
        wasm_plugin(plugin_config()),
    ]);
    let config = build(&objects, outbound());
    assert!(!http_filter_names(&config, "0.0.0.0_8012")
        .contains(&"envoy.filters.http.stateful_session".into()));
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert!(
        config.warnings[0].contains("knative-serving/kasi-stateful-session")
            && config.warnings[0].contains("matched nothing"),
        "{:?}",
        config.warnings
    );
}

#[test]
fn a_plugin_whose_module_cannot_be_fetched_is_left_out_with_a_warning() {
    let mut plugin = wasm_plugin(plugin_config());
    plugin["spec"]["url"] = json!("oci://ghcr.io/example/kasi:1");
    let objects = vec![placeholder_service(), sidecar(), plugin];
    let config = build(&objects, outbound());
    assert_eq!(
        http_filter_names(&config, "0.0.0.0_8012")[0],
        "envoy.filters.http.grpc_stats"
    );
    assert!(
        config.warnings.iter().any(|w| w.contains("cannot fetch")),
        "{:?}",
        config.warnings
    );
}

#[test]
fn envoy_validates_every_config() {
    let admin: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let variants: Vec<(&str, Vec<Value>)> = vec![
        ("empty cluster", vec![]),
        ("revisions only", many_revisions(20)),
        (
            "bundle without sidecar",
            [many_revisions(20), bundle(false, plugin_config())].concat(),
        ),
        (
            "bundle with sidecar",
            [many_revisions(20), bundle(true, plugin_config())].concat(),
        ),
        ("registry only", {
            let mut scoped = sidecar();
            scoped["spec"]["outboundTrafficPolicy"]["mode"] = json!("REGISTRY_ONLY");
            vec![placeholder_service(), scoped]
        }),
    ];
    for (label, objects) in variants {
        let config = build(&objects, outbound());
        eprintln!("validating {label}");
        assert_envoy_accepts(&kasi_lab::istiod::static_bootstrap(
            &config,
            admin,
            "activator",
        ));
    }
}

/// Envoy's validate mode checks the bootstrap but does not read file-based LDS/CDS (verified:
/// a garbage `lds.json` passes), so the files' content is checked through `static_bootstrap`
/// above and by the live tests.
#[test]
fn envoy_validates_the_file_based_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    let objects = [many_revisions(5), bundle(true, plugin_config())].concat();
    let config = build(&objects, outbound());
    kasi_lab::istiod::write_files(dir.path(), &config).unwrap();
    let bootstrap =
        kasi_lab::istiod::bootstrap(dir.path(), "127.0.0.1:0".parse().unwrap(), "activator");
    assert_envoy_accepts(&bootstrap);
}
