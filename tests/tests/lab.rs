//! The lab end to end, driven as a user drives a cluster: through its Kubernetes API (kube-rs,
//! server-side apply of the real bundle, port-forward to the sidecar's admin port) and its
//! ingress URL (plain HTTP clients with cookie jars). Only the fault control (stopping a pod)
//! uses the lab's own handle, as the TUI's `x` key will.

use k8s_openapi::api::core::v1::Pod;
use kasi::install::render::{render, FilterSource, RenderOptions};
use kasi::install::session_keys::KeyRing;
use kasi_e2e::lab_client::{
    activator_pods, hit_rate, kube_client, restart_activators, rolled_out_activators,
};
use kasi_e2e::{envoy_binary, filter_wasm, Response, Session};
use kasi_lab::{Lab, LabOptions};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::Client;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GETs `path` on a pod's port through a Kubernetes port-forward, as istioctl reads config_dump.
async fn port_forward_get(client: &Client, pod: &str, port: u16, path: &str) -> Vec<u8> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "knative-serving");
    let mut forwarder = pods
        .portforward(pod, &[port])
        .await
        .expect("port-forward opens");
    let mut stream = forwarder.take_stream(port).expect("stream for the port");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw))
        .await
        .expect("admin answers in time")
        .expect("read through the port-forward");
    drop(stream);
    forwarder.abort();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response")
        + 4;
    assert!(
        raw.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&raw[..split])
    );
    raw.split_off(split)
}

/// The pod CIDR as `kasi apply` detects it: the /16 of the pods' IPs.
fn pod_cidr(pods: &[Pod]) -> String {
    let ip = pods[0]
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod IP");
    let octets: Vec<&str> = ip.split('.').collect();
    format!("{}.{}.0.0/16", octets[0], octets[1])
}

async fn apply_bundle(client: &Client, cidr: String) -> usize {
    apply_pieces(client, cidr, |_| true).await
}

/// Server-side applies the bundle's pieces whose id `wanted` accepts; returns how many.
async fn apply_pieces(client: &Client, cidr: String, wanted: impl Fn(&str) -> bool) -> usize {
    let wasm = std::fs::read(filter_wasm()).expect("compiled filter");
    let mut options = RenderOptions::new(FilterSource::ConfigMap { wasm });
    options.allowed_cidrs = Some(vec![cidr]);
    // Signed sessions, as `kasi apply` renders them.
    options.session_keys = Some(KeyRing::generate());
    let pieces: Vec<_> = render(&options)
        .expect("bundle renders")
        .into_iter()
        .filter(|p| wanted(p.id))
        .collect();
    for piece in &pieces {
        let object: DynamicObject =
            serde_json::from_value(piece.object.clone()).expect("a Kubernetes object");
        let types = object.types.clone().expect("apiVersion and kind");
        let (group, version) = types
            .api_version
            .rsplit_once('/')
            .unwrap_or(("", &types.api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, &types.kind);
        let (resource, _) = kube::discovery::pinned_kind(client, &gvk)
            .await
            .unwrap_or_else(|e| panic!("{gvk:?} discoverable: {e}"));
        let api: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            piece.namespace().unwrap(),
            &ApiResource { ..resource },
        );
        api.patch(
            piece.name(),
            &PatchParams::apply("kasi"),
            &Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "server-side apply of {} {}: {e}",
                piece.kind(),
                piece.name()
            )
        });
    }
    pieces.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_breaks_without_the_bundle_and_heals_with_it() {
    let started = Instant::now();
    let lab = Lab::start(LabOptions {
        envoy: Some(envoy_binary()),
        ..LabOptions::default()
    })
    .await
    .expect("the lab starts");
    let startup = started.elapsed();
    // The 10 s target is a figure for the README (measured on a quiet machine); here only a
    // bound that catches a hang, so a loaded CI machine cannot turn it red.
    eprintln!("lab started in {startup:?}");
    assert!(
        startup < Duration::from_secs(60),
        "lab took {startup:?} to start"
    );
    let client = kube_client(&lab).await;
    let ingress: SocketAddr = lab
        .ingress_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let activators = activator_pods(&client).await;
    assert_eq!(activators.len(), 2);
    let activator = activators[0].metadata.name.clone().unwrap();

    // Before: the activator picks pods round robin; nothing pins a session.
    let (before, _) = hit_rate(ingress).await;
    assert!(
        before < 0.6,
        "hit rate before install is {before:.2}, expected < 0.60 with 3 pods"
    );
    let dump_before = port_forward_get(&client, &activator, 15000, "/config_dump")
        .await
        .len();

    let pieces = apply_bundle(&client, pod_cidr(&activators)).await;
    assert_eq!(pieces, 9);
    // The activators roll onto the template with the mount; the new ones run the bundle.
    let activators = rolled_out_activators(&client).await;
    let activator = activators[0].metadata.name.clone().unwrap();

    // The new sidecar's config is the scoped one (istiod pushes within moments).
    let deadline = Instant::now() + Duration::from_secs(15);
    let dump_after = loop {
        let body = port_forward_get(&client, &activator, 15000, "/config_dump").await;
        let text = String::from_utf8_lossy(&body);
        if dump_before >= 10 * body.len()
            && text.contains("kasi-affinity")
            && text.contains("override_host_status")
        {
            break body.len();
        }
        assert!(
            Instant::now() < deadline,
            "config_dump did not shrink 10× within 15 s: {dump_before} → {}",
            body.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("config_dump: {dump_before} bytes unscoped → {dump_after} bytes with the Sidecar");
    assert!(
        dump_before > 1_000_000,
        "unscoped config_dump is only {dump_before} bytes"
    );

    // After: every session sticks.
    let (after, sessions) = hit_rate(ingress).await;
    assert_eq!(after, 1.0, "hit rate after install");

    // Stop the pod the most sessions are pinned to: each of those sessions loses at most one
    // request, then is re-pinned to a live pod and sticks there.
    let mut by_pod: BTreeMap<String, Vec<Session>> = BTreeMap::new();
    for (session, pod) in sessions {
        by_pod.entry(pod).or_default().push(session);
    }
    let (victim, victims) = by_pod.into_iter().max_by_key(|(_, s)| s.len()).unwrap();
    assert!(!victims.is_empty());
    lab.stop_pod(&victim).await.expect("stop the pinned pod");
    let results: Vec<Vec<Response>> = tokio::task::spawn_blocking(move || {
        victims
            .into_iter()
            .map(|mut session| {
                (0..8)
                    .map(|_| session.get_plain(ingress, "/").expect("ingress answers"))
                    .collect()
            })
            .collect()
    })
    .await
    .unwrap();
    let mut wasm_log = String::new();
    for pod in &activators {
        let pods: Api<Pod> = Api::namespaced(client.clone(), "knative-serving");
        let params = kube::api::LogParams {
            container: Some("istio-proxy".into()),
            ..Default::default()
        };
        let log = pods
            .logs(pod.metadata.name.as_deref().unwrap(), &params)
            .await
            .expect("sidecar log");
        wasm_log.extend(
            log.lines()
                .filter(|l| l.contains("[wasm]") || l.contains("kasi_affinity"))
                .map(|l| format!("{l}\n")),
        );
    }
    for (i, responses) in results.iter().enumerate() {
        let failures = responses.iter().filter(|r| r.status >= 500).count();
        assert!(
            failures <= 1,
            "session {i} saw {failures} failures: {responses:?}\nsidecar wasm log:\n{wasm_log}"
        );
        let served: Vec<&str> = responses
            .iter()
            .filter(|r| r.status == 200)
            .filter_map(Response::pod)
            .collect();
        assert!(
            !served.contains(&victim.as_str()),
            "session {i} reached the stopped pod"
        );
        let last = served.last().copied().expect("the session recovered");
        let tail = &served[served.len().saturating_sub(5)..];
        assert!(
            tail.iter().all(|p| *p == last),
            "session {i} did not stick after rebinding: {served:?}"
        );
    }
    lab.shutdown().await;
}

/// Waits until every activator sidecar's config_dump is the scoped one (well under a megabyte).
async fn wait_until_scoped(lab: &Lab) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for (name, admin) in lab.sidecar_admins() {
        loop {
            let dump = kasi_lab::data_plane::envoy::admin_get(admin, "/config_dump")
                .await
                .map(|(_, body)| body.len())
                .unwrap_or(usize::MAX);
            if dump < 500_000 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name}'s config_dump still {dump} bytes after 20 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Envoy applies listeners, clusters and routes from separate files: let the last land.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Each piece changes behaviour as it does in a cluster: with the activator not always in the
/// path (`target-burst-capacity` 211) part of the traffic skips its sidecar; with mesh
/// compatibility on, the activator sends to the revision's ClusterIP on port 80, where neither
/// kasi nor `stateful_session` runs, so no session is ever pinned; only the whole bundle makes
/// every request stick.
/// Removing the Sidecar brings the big config back without touching stickiness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_piece_matters() {
    let lab = Lab::start(LabOptions {
        envoy: Some(envoy_binary()),
        services: 40,
        ..LabOptions::default()
    })
    .await
    .expect("the lab starts");
    let client = kube_client(&lab).await;
    let ingress: SocketAddr = lab
        .ingress_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let activators = activator_pods(&client).await;
    let cidr = pod_cidr(&activators);

    apply_pieces(&client, cidr.clone(), |id| !id.starts_with("config-")).await;
    rolled_out_activators(&client).await;
    // Each piece's steady state is measured here, not the switch: wait until both sidecars run
    // the scoped config. (While one switches, a mesh-mode request can meet a route whose cluster
    // the scoped CDS already removed: 503 `NC`, as in a cluster when a Sidecar lands while the
    // activator still sends to ClusterIPs.)
    wait_until_scoped(&lab).await;
    let (istio_only, _) = hit_rate(ingress).await;
    assert!(
        istio_only < 0.9,
        "without the Knative settings the hit rate is {istio_only:.2}, expected < 0.90"
    );

    apply_pieces(&client, cidr.clone(), |id| id == "config-autoscaler").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mesh_mode, sessions) = hit_rate(ingress).await;
    // Requests may still keep landing on one pod here, as in a cluster: the sidecar's `0.0.0.0_80`
    // listener (the Sidecar's `./*` brings Knative's port-80 Services into scope) reuses its
    // upstream connection to the ClusterIP, and kube-proxy balances per connection. That is
    // chance, not affinity: nothing pins a session.
    assert!(
        sessions
            .iter()
            .all(|(session, _)| session.cookie().is_none()),
        "in mesh-compatibility mode a session was pinned (hit rate {mesh_mode:.2})"
    );

    // An activator reads `mesh-compatibility-mode` when it starts: the change takes a restart
    // (which is why `kasi apply` writes config-network before it rolls the activators).
    apply_pieces(&client, cidr, |id| id == "config-network").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (still_mesh, sessions) = hit_rate(ingress).await;
    assert!(
        sessions
            .iter()
            .all(|(session, _)| session.cookie().is_none()),
        "running activators switched mesh mode without a restart (hit rate {still_mesh:.2})"
    );
    let activators = restart_activators(&client).await;
    let activator = activators[0].metadata.name.clone().unwrap();
    wait_until_scoped(&lab).await;
    let (full, _) = hit_rate(ingress).await;
    assert_eq!(full, 1.0, "with the whole bundle");
    eprintln!("hit rate: Istio pieces only {istio_only:.2}, + target-burst-capacity -1 {mesh_mode:.2}, + mesh compatibility off {full:.2}");
    let scoped = port_forward_get(&client, &activator, 15000, "/config_dump")
        .await
        .len();

    // `kubectl logs -f -c istio-proxy` streams the sidecar's real log, decision lines included.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "knative-serving");
    let params = kube::api::LogParams {
        container: Some("istio-proxy".into()),
        follow: true,
        tail_lines: Some(1),
        ..Default::default()
    };
    let mut lines = futures::AsyncBufReadExt::lines(
        pods.log_stream(&activator, &params)
            .await
            .expect("follow the sidecar log"),
    );
    // Two new sessions: the ingress alternates activators, so one of them is this one.
    let fresh = tokio::task::spawn_blocking(move || {
        (0..2)
            .map(|_| {
                kasi_e2e::plain_get(ingress, "/", &[])
                    .map(|r| r.status)
                    .unwrap_or(0)
            })
            .collect::<Vec<u16>>()
    });
    let decision = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(line)) = futures::StreamExt::next(&mut lines).await {
            if line.contains("kasi_affinity {") {
                return line;
            }
        }
        String::new()
    })
    .await
    .expect("a decision line arrives while following");
    assert!(decision.contains("\"decision\":\"pin\""), "{decision}");
    assert_eq!(fresh.await.unwrap(), vec![200, 200]);

    let sidecars: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "knative-serving",
        &ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "networking.istio.io",
            "v1",
            "Sidecar",
        )),
    );
    sidecars
        .delete("kasi-activator", &Default::default())
        .await
        .expect("delete the Sidecar");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let unscoped = port_forward_get(&client, &activator, 15000, "/config_dump")
            .await
            .len();
        if unscoped >= 5 * scoped {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "config did not grow back without the Sidecar: {scoped} → {unscoped}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (unscoped_rate, _) = hit_rate(ingress).await;
    assert_eq!(
        unscoped_rate, 1.0,
        "stickiness does not depend on the Sidecar"
    );
    lab.shutdown().await;
}
