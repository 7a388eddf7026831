//! When a revision pod stops, is restored, or comes and goes with scaling, the lab changes the
//! Pod, the private Endpoints and the EndpointSlice as Kubernetes' controllers do, and the
//! activator's view (what it routes by) follows: a pod that is not Ready is in
//! `notReadyAddresses` and out of rotation (`endpoints_controller.go` `addEndpointSubset`).

use kasi_lab::data_plane::layout::Layout;
use kasi_lab::knative::revisions::{add_hello_pod, remove_hello_pod, set_pod_ready};
use kasi_lab::knative::routing;
use kasi_lab::knative::seed::{self, SeedSpec, APP_NAMESPACE, HELLO_REVISION};
use kasi_lab::kube_api::resources::find_by_kind;
use kasi_lab::kube_api::Store;
use serde_json::Value;
use std::net::IpAddr;

fn seeded() -> (Store, Layout) {
    let layout = Layout { subnet: 42 };
    let store = Store::new();
    for object in seed::objects(&SeedSpec {
        layout,
        activators: 2,
        hello_pods: 3,
        h2c_pods: 1,
        mcp_pods: 1,
        filler_services: 0,
        istio_crds: true,
        native_sidecars: true,
    }) {
        store.put(object).unwrap();
    }
    (store, layout)
}

fn object(store: &Store, api_version: &str, kind: &str, name: &str) -> Value {
    store
        .get(
            find_by_kind(api_version, kind).unwrap(),
            Some(APP_NAMESPACE),
            name,
        )
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn ips(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|a| a["ip"].as_str().unwrap().to_owned())
        .collect()
}

/// The pods the activator would pick from now.
fn in_rotation(store: &Store) -> Vec<IpAddr> {
    routing::from_store(store)
        .revision(APP_NAMESPACE, HELLO_REVISION)
        .map(|t| t.ready_pods.iter().map(|a| a.ip()).collect())
        .unwrap_or_default()
}

#[test]
fn a_stopped_pod_leaves_rotation_and_comes_back() {
    let (store, layout) = seeded();
    let private = format!("{HELLO_REVISION}-private");
    let victim = seed::hello_pod_name(1);
    let victim_ip = layout.hello_pod_ip(1);
    assert!(in_rotation(&store).contains(&victim_ip));

    set_pod_ready(&store, APP_NAMESPACE, &victim, false).unwrap();
    let pod = object(&store, "v1", "Pod", &victim);
    let ready = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "False");
    let endpoints = object(&store, "v1", "Endpoints", &private);
    let subset = &endpoints["subsets"][0];
    assert_eq!(ips(&subset["notReadyAddresses"]), [victim_ip.to_string()]);
    assert!(!ips(&subset["addresses"]).contains(&victim_ip.to_string()));
    assert!(!in_rotation(&store).contains(&victim_ip));
    assert_eq!(in_rotation(&store).len(), 2);

    set_pod_ready(&store, APP_NAMESPACE, &victim, true).unwrap();
    let endpoints = object(&store, "v1", "Endpoints", &private);
    assert!(endpoints["subsets"][0].get("notReadyAddresses").is_none());
    assert!(in_rotation(&store).contains(&victim_ip));
}

#[test]
fn scaling_adds_and_removes_pods_and_their_endpoints() {
    let (store, layout) = seeded();
    let name = seed::hello_pod_name(3);
    let ip = layout.hello_pod_ip(3);
    add_hello_pod(&store, &name, ip).unwrap();
    assert_eq!(
        object(&store, "v1", "Pod", &name)["status"]["podIP"],
        ip.to_string()
    );
    assert!(in_rotation(&store).contains(&ip));
    assert_eq!(in_rotation(&store).len(), 4);

    remove_hello_pod(&store, &name).unwrap();
    assert!(store
        .get(
            find_by_kind("v1", "Pod").unwrap(),
            Some(APP_NAMESPACE),
            &name
        )
        .is_none());
    assert!(!in_rotation(&store).contains(&ip));
    assert_eq!(in_rotation(&store).len(), 3);
}
