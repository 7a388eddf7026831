//! The mesh config on a running Envoy: file-based dynamic config reloaded live (no restart),
//! and requests handed from virtualOutbound to the HTTP listener by a PROXY v1 header, through
//! the real compiled filter and `stateful_session` to the pinned pod.

#[path = "support/istiod.rs"]
mod support;

use kasi_lab::istiod;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::*;

fn start_envoy(dir: &std::path::Path, config: &istiod::SidecarConfig) -> Envoy {
    istiod::write_files(dir, config).unwrap();
    Envoy::start(&istiod::bootstrap(
        dir,
        "127.0.0.1:0".parse().unwrap(),
        "activator",
    ))
}

/// Polls `check` until it holds; false after `timeout`.
fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check()
}

#[test]
fn envoy_reloads_the_files_live_and_the_sidecar_shrinks_config_dump() {
    let dir = tempfile::tempdir().unwrap();
    let outbound: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .unwrap();
    let plugin_config = json!({"allowed_cidrs": ["127.0.0.0/8"]});
    let unscoped_objects = [many_revisions(150), bundle(false, plugin_config.clone())].concat();
    let unscoped = build(&unscoped_objects, outbound);
    let mut envoy = start_envoy(dir.path(), &unscoped);

    let last_cluster = "outbound|8012||app-149-00001-private.tenant-2.svc.cluster.local";
    assert!(envoy.admin_get("/clusters").contains(last_cluster));
    let full = envoy.admin_get("/config_dump").len();
    assert!(
        full > 1_000_000,
        "config_dump without a Sidecar is megabytes, got {full} bytes"
    );

    let scoped_objects = [many_revisions(150), bundle(true, plugin_config)].concat();
    let scoped = build(&scoped_objects, outbound);
    istiod::write_files(dir.path(), &scoped).unwrap();
    let mut size = full;
    let shrank = eventually(Duration::from_secs(10), || {
        size = envoy.admin_get("/config_dump").len();
        size * 10 <= full
    });
    assert!(
        shrank,
        "config_dump {full} → {size} bytes: not ≥10× smaller within 10 s"
    );
    assert!(
        envoy.is_running(),
        "the same Envoy process picked the change up"
    );
    assert!(!envoy.admin_get("/clusters").contains(last_cluster));
    let listeners = envoy.admin_get("/listeners");
    assert!(!listeners.contains("0.0.0.0_80:"), "{listeners}");
    assert!(listeners.contains("0.0.0.0_8012"), "{listeners}");
    eprintln!("config_dump: {full} bytes without the Sidecar, {size} with it");

    // And back: the files may grow again, still without a restart.
    istiod::write_files(dir.path(), &unscoped).unwrap();
    assert!(eventually(Duration::from_secs(10), || envoy
        .admin_get("/clusters")
        .contains(last_cluster)));
}

/// Two lab pods on distinct loopback addresses, both on the revision's http-istio port 8012
/// (the listener handoff goes by destination port). Tries a few subnets in case another test
/// holds one.
fn start_pods() -> (Pod, Pod) {
    let base = 100 + (std::process::id() % 100) as u8;
    for subnet in base..base + 20 {
        let a: SocketAddr = format!("127.0.{subnet}.11:8012").parse().unwrap();
        let b: SocketAddr = format!("127.0.{subnet}.12:8012").parse().unwrap();
        if let (Ok(pod_a), Ok(pod_b)) = (Pod::start("hello-a", a), Pod::start("hello-b", b)) {
            return (pod_a, pod_b);
        }
    }
    panic!("no free loopback addresses for the pods");
}

#[test]
fn requests_reach_the_pinned_pod_through_virtual_outbound() {
    let (pod_a, pod_b) = start_pods();
    let dir = tempfile::tempdir().unwrap();
    let outbound: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .unwrap();
    let pod_ips = [
        pod_a.address.ip().to_string(),
        pod_b.address.ip().to_string(),
    ];
    let objects = [
        revision("default", "hello-00001", 0, &[&pod_ips[0], &pod_ips[1]]),
        bundle(
            true,
            json!({"allowed_cidrs": ["127.0.0.0/8"], "log_decisions": "all",
                   "session_keys": [kasi_filter::signing::key_text(&[9u8; 32])]}),
        ),
    ]
    .concat();
    let config = build(&objects, outbound);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let envoy = start_envoy(dir.path(), &config);
    let host = "hello.default.example.com";

    // A new session: the activator picked pod A; Envoy pins it in a cookie.
    let first = http_get_via_proxy_protocol(outbound, pod_a.address, host, &[]).unwrap();
    assert_eq!(first.0, 200, "{first:?}\n{}", envoy.log());
    assert_eq!(header(&first, "x-kasi-pod"), Some("hello-a"));
    let set_cookie = header(&first, "set-cookie").expect("stateful_session issues a cookie");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    assert!(cookie.starts_with("kasi-session="), "{set_cookie}");
    let value = cookie.trim_start_matches("kasi-session=");
    let (session, signed) = kasi::affinity::decode::decode_value(value).unwrap();
    assert!(
        signed,
        "the filter signed stateful_session's cookie: {set_cookie}"
    );
    assert_eq!(session.address, pod_a.address);

    // The activator now picks pod B, but the session goes to pod A: the filter verified the
    // cookie and steered PassthroughCluster there through filter state.
    let cookie_header = [("cookie", cookie.as_str())];
    for _ in 0..3 {
        let pinned =
            http_get_via_proxy_protocol(outbound, pod_b.address, host, &cookie_header).unwrap();
        assert_eq!(header(&pinned, "x-kasi-pod"), Some("hello-a"), "{pinned:?}");
    }
    // Without a cookie, the original destination decides; a client's header routes nowhere.
    let fresh = http_get_via_proxy_protocol(outbound, pod_b.address, host, &[]).unwrap();
    assert_eq!(header(&fresh, "x-kasi-pod"), Some("hello-b"));
    let pod_a_text = pod_a.address.to_string();
    let by_header = [("x-envoy-original-dst-host", pod_a_text.as_str())];
    let ignored = http_get_via_proxy_protocol(outbound, pod_b.address, host, &by_header).unwrap();
    assert_eq!(
        header(&ignored, "x-kasi-pod"),
        Some("hello-b"),
        "{ignored:?}"
    );
    // An unsigned cookie for pod A (well-formed, allowed address) is not honoured either.
    let forged = format!(
        "kasi-session=\"{}\"",
        kasi_filter::codec::encode_proto(pod_a.address, None)
    );
    let forged_header = [("cookie", forged.as_str())];
    let refused =
        http_get_via_proxy_protocol(outbound, pod_b.address, host, &forged_header).unwrap();
    assert_eq!(
        header(&refused, "x-kasi-pod"),
        Some("hello-b"),
        "{refused:?}"
    );

    // The requests went through the handed-off HTTP listener and the allow_any route.
    let stats = envoy.admin_get("/stats");
    let counter = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(": ")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    assert_eq!(
        counter("http.outbound_0.0.0.0_8012.downstream_rq_total"),
        7,
        "{stats}"
    );
    assert!(
        envoy.log().contains("kasi_affinity "),
        "the filter logged decisions"
    );
}

/// The WasmPlugin reaches the sidecar through ECDS under istiod's name, and a module the pod
/// does not have (its volumes lack the mount) is what Envoy makes of it in a cluster: the ECDS
/// resource is refused, the filter has no config, and the listener fails every request with 500
/// (`NFCF`, "filter_config_not_found") — `failStrategy: FAIL_OPEN` does not cover it. Once the
/// module is there, the same listener serves.
#[test]
fn a_module_the_pod_lacks_fails_every_request_on_its_listener() {
    let (pod_a, _pod_b) = start_pods();
    let dir = tempfile::tempdir().unwrap();
    let outbound: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .unwrap();
    let pod_ip = pod_a.address.ip().to_string();
    let objects = [
        revision("default", "hello-00001", 0, &[&pod_ip]),
        bundle(true, json!({"allowed_cidrs": ["127.0.0.0/8"]})),
    ]
    .concat();
    let inputs_without_mount = |_url: &str| -> Option<std::path::PathBuf> { None };
    let proxy = activator_proxy();
    let unmounted = istiod::build(&istiod::MeshInputs {
        objects: &objects,
        proxy: &proxy,
        outbound_listener: outbound,
        resolve_wasm: &inputs_without_mount,
        cluster_domain: "cluster.local",
    })
    .unwrap();
    assert!(
        unmounted
            .warnings
            .iter()
            .any(|w| w.contains("is not mounted")),
        "{:?}",
        unmounted.warnings
    );
    let envoy = start_envoy(dir.path(), &unmounted);
    let host = "hello.default.example.com";
    let name = format!("extensions.istio.io/wasmplugin/knative-serving.{PLUGIN}");
    let failed = eventually(Duration::from_secs(10), || {
        http_get_via_proxy_protocol(outbound, pod_a.address, host, &[]).is_ok_and(|r| r.0 == 500)
    });
    assert!(
        failed,
        "no 500 while the module is missing\n{}",
        envoy.log()
    );
    let stats = envoy.admin_get("/stats");
    assert!(
        stats.contains(&format!(
            "extension_config_discovery.http_filter.{name}.config_fail"
        )),
        "{stats}"
    );
    // Envoy lists the refused resource in config_dump's ECDS section all the same; what says it
    // never applied is the subscription's version_text, empty (`kasi status` reads both).
    assert!(
        stats.contains(&format!(
            "extension_config_discovery.http_filter.{name}.version_text: \"\""
        )),
        "{stats}"
    );
    // Both plugin listeners exist (without their filter), as over ADS.
    let listeners = envoy.admin_get("/listeners");
    assert!(
        listeners.contains("0.0.0.0_8012") && listeners.contains("0.0.0.0_8013"),
        "{listeners}\n{}",
        envoy.log()
    );

    // The module arrives (a new pod with the mount): the filter loads and requests succeed.
    istiod::write_files(dir.path(), &build(&objects, outbound)).unwrap();
    let served = eventually(Duration::from_secs(10), || {
        http_get_via_proxy_protocol(outbound, pod_a.address, host, &[]).is_ok_and(|r| r.0 == 200)
    });
    assert!(
        served,
        "still failing with the module in place\n{}",
        envoy.log()
    );
    let stats = envoy.admin_get("/stats");
    assert!(
        !stats.contains(&format!(
            "extension_config_discovery.http_filter.{name}.version_text: \"\""
        )),
        "{stats}"
    );
}
