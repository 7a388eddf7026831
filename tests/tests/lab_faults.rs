//! The lab's fault controls (what the TUI's `x`, `u` and `R` keys call): each one shows in the
//! Kubernetes API as it would in a cluster and changes which pods serve.

use k8s_openapi::api::core::v1::{Endpoints, Pod};
use kasi_e2e::{envoy_binary, plain_get};
use kasi_lab::{Lab, LabOptions};
use kube::api::{Api, ListParams};
use kube::{Client, Config};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

async fn client(lab: &Lab) -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(lab.kubeconfig_path()).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// Which pods answered `n` requests through the ingress (all must be 200).
async fn serving_pods(ingress: SocketAddr, n: usize) -> BTreeSet<String> {
    tokio::task::spawn_blocking(move || {
        (0..n)
            .map(|_| {
                let response = plain_get(ingress, "/", &[]).expect("ingress answers");
                assert_eq!(response.status, 200, "{response:?}");
                response.pod().expect("a pod answered").to_owned()
            })
            .collect()
    })
    .await
    .unwrap()
}

async fn ready_endpoints(client: &Client) -> (usize, usize) {
    let api: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let endpoints = api.get("hello-00001-private").await.unwrap();
    let subsets = endpoints.subsets.unwrap_or_default();
    let count =
        |f: fn(&k8s_openapi::api::core::v1::EndpointSubset) -> usize| subsets.iter().map(f).sum();
    (
        count(|s| s.addresses.as_ref().map_or(0, Vec::len)),
        count(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len)),
    )
}

async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_restore_scale_and_restart_show_in_the_api_and_the_traffic() {
    let lab = Lab::start(LabOptions {
        envoy: Some(envoy_binary()),
        services: 10,
        ..LabOptions::default()
    })
    .await
    .expect("the lab starts");
    let client = client(&lab).await;
    let ingress: SocketAddr = lab
        .ingress_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let hello = ListParams::default().labels("serving.knative.dev/revision=hello-00001");

    // Scale up: a fourth pod appears in the API, its endpoint is ready, and it serves.
    lab.scale(4).await.unwrap();
    assert_eq!(pods_api.list(&hello).await.unwrap().items.len(), 4);
    assert_eq!(ready_endpoints(&client).await, (4, 0));
    until("all four pods serve", || async {
        serving_pods(ingress, 12).await.len() == 4
    })
    .await;

    // Stop one: not ready in the API, out of the ready endpoints, never serving.
    let victim = lab.pods().await[0].0.clone();
    lab.stop_pod(&victim).await.unwrap();
    let pod = pods_api.get(&victim).await.unwrap();
    let ready = pod
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "False");
    assert_eq!(ready_endpoints(&client).await, (3, 1));
    until("the stopped pod is out of rotation", || async {
        !serving_pods(ingress, 12).await.contains(&victim)
    })
    .await;
    let serving = serving_pods(ingress, 30).await;
    assert!(!serving.contains(&victim), "{serving:?}");
    assert_eq!(serving.len(), 3);

    // Restore it: ready again and serving.
    lab.restore_pod(&victim).await.unwrap();
    assert_eq!(ready_endpoints(&client).await, (4, 0));
    until("the restored pod serves again", || async {
        serving_pods(ingress, 12).await.contains(&victim)
    })
    .await;

    // Scale down: the pod leaves the API and the endpoints.
    lab.scale(3).await.unwrap();
    assert_eq!(pods_api.list(&hello).await.unwrap().items.len(), 3);
    assert_eq!(ready_endpoints(&client).await, (3, 0));

    // Restart one activator's sidecar: traffic keeps flowing once it is back.
    lab.restart_sidecar(0).await.unwrap();
    assert_eq!(serving_pods(ingress, 12).await.len(), 3);
    lab.shutdown().await;
}
