//! istiod's push in the lab: every API change (debounced, as `pilot/pkg/xds/discovery.go`
//! `debounce` folds bursts) rebuilds the config of each activator's sidecar and writes it where
//! its Envoy reloads it; a change that does not alter a sidecar's config leaves its files alone.

use kasi_lab::data_plane::layout::Layout;
use kasi_lab::istiod::push::{self, SidecarSlot};
use kasi_lab::knative::seed::{self, SeedSpec};
use kasi_lab::kube_api::Store;
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

fn slot(layout: Layout, replica: usize, dir: &Path) -> SidecarSlot {
    let name = seed::activator_pod_name(replica);
    let ip = layout.activator_ip(replica);
    SidecarSlot::new(&name, ip, SocketAddr::new(ip, 15001), dir.join(&name))
}

fn clusters_file(dir: &Path, replica: usize) -> std::path::PathBuf {
    dir.join(seed::activator_pod_name(replica)).join("cds.json")
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[tokio::test]
async fn an_api_change_rebuilds_every_sidecar() {
    let layout = Layout { subnet: 43 };
    let store = Store::new();
    for object in seed::objects(&SeedSpec {
        layout,
        activators: 2,
        hello_pods: 2,
        h2c_pods: 1,
        mcp_pods: 1,
        filler_services: 20,
        istio_crds: true,
        native_sidecars: true,
    }) {
        store.put(object).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    for replica in 0..2 {
        push::configure_sidecar(&store, &slot(layout, replica, dir.path()), dir.path()).unwrap();
    }
    let unscoped: Vec<u64> = (0..2)
        .map(|r| {
            std::fs::metadata(clusters_file(dir.path(), r))
                .unwrap()
                .len()
        })
        .collect();
    let pushing = push::spawn(
        store.clone(),
        Arc::new(RwLock::new(
            (0..2)
                .map(|r| Arc::new(slot(layout, r, dir.path())))
                .collect(),
        )),
        dir.path().to_owned(),
    );

    // A change no sidecar's config depends on (a ConfigMap nobody mounts) rewrites nothing once
    // a push has happened (the first one writes: the new push loop has no config to compare).
    let unrelated = |value: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "unrelated", "namespace": "default"}, "data": {"a": value}})
    };
    store.put(unrelated("1")).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let settled = modified(&clusters_file(dir.path(), 0));
    store.put(unrelated("2")).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(modified(&clusters_file(dir.path(), 0)), settled);

    // The bundle's Sidecar: both sidecars' clusters shrink to the scoped set.
    store
        .put(
            json!({"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
            "metadata": {"name": "kasi-activator", "namespace": "knative-serving"},
            "spec": {"workloadSelector": {"labels": {"app": "activator"}},
                     "egress": [{"hosts": ["./*", "istio-system/*"]}]}}),
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let shrunk = |r: usize| {
        std::fs::metadata(clusters_file(dir.path(), r))
            .unwrap()
            .len()
            * 3
            < unscoped[r]
    };
    while !(shrunk(0) && shrunk(1)) {
        assert!(
            Instant::now() < deadline,
            "the sidecars' clusters did not shrink within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pushing.abort();
}
