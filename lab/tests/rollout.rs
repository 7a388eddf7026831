//! The activator Deployment in the lab behaves like a cluster's: its pods are created from the
//! template and replaced by a rolling update when the template changes (new names, volumes and
//! annotations fixed at creation, two replicas rolled one extra pod at a time), each sidecar's
//! Envoy runs with pilot-agent's flags from its own pod, and the Deployment's status says when
//! the rollout is done.

#[path = "support/istiod.rs"]
mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Pod};
use kasi_lab::data_plane::envoy::admin_get;
use kasi_lab::{Lab, LabOptions};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Config};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{envoy_binary, filter_wasm};

async fn lab() -> Lab {
    Lab::start(LabOptions {
        envoy: Some(envoy_binary()),
        services: 10,
        ..LabOptions::default()
    })
    .await
    .expect("the lab starts")
}

async fn client(lab: &Lab) -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(lab.kubeconfig_path()).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

fn ingress(lab: &Lab) -> SocketAddr {
    lab.ingress_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap()
}

/// `command_line_options` of a sidecar's Envoy: the flags it was started with.
async fn command_line(admin: SocketAddr) -> Value {
    let (status, body) = admin_get(admin, "/server_info").await.unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["command_line_options"].clone()
}

async fn pod_names(client: &Client) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "knative-serving");
    let mut names: Vec<String> = pods
        .list(&kube::api::ListParams::default().labels("app=activator"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    names.sort();
    names
}

/// Waits until the Deployment's status says what `kubectl rollout status` waits for.
async fn wait_for_rollout(client: &Client) -> Deployment {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "knative-serving");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let d = deployments.get("activator").await.unwrap();
        let status = d.status.clone().unwrap_or_default();
        let want = d.spec.replicas.unwrap_or(1);
        if d.metadata.generation <= status.observed_generation
            && status.updated_replicas == Some(want)
            && status.replicas == Some(want)
            && status.available_replicas == Some(want)
        {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "the rollout did not finish in 90 s: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Requests through the ingress until stopped: every status seen.
fn load(to: SocketAddr, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<u16>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let status = admin_get(to, "/").await.map(|(s, _)| s).unwrap_or(0);
            seen.push(status);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen
    })
}

async fn patch_template(client: &Client, annotations: Value) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "knative-serving");
    deployments
        .patch(
            "activator",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"template": {"metadata": {"annotations": annotations}}}}),
            ),
        )
        .await
        .unwrap();
}

fn mount_annotations(configmap: &str, path: &str) -> Value {
    json!({
        "sidecar.istio.io/userVolume": json!({configmap: {"configMap": {"name": configmap}}}).to_string(),
        "sidecar.istio.io/userVolumeMount": json!({configmap: {"mountPath": path, "readOnly": true}}).to_string(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_change_rolls_the_activators_without_dropping_a_request() {
    let lab = lab().await;
    let client = client(&lab).await;
    // Sidecars start as pilot-agent starts them: warning, misc:error, two workers.
    for (pod, admin) in lab.sidecar_admins() {
        let flags = command_line(admin).await;
        assert_eq!(flags["log_level"], "warning", "{pod}: {flags}");
        assert_eq!(flags["component_log_level"], "misc:error", "{pod}: {flags}");
        assert_eq!(flags["concurrency"], 2, "{pod}: {flags}");
    }
    let before = pod_names(&client).await;
    assert_eq!(before.len(), 2);

    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "knative-serving");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("lab-mount".into());
    cm.data = Some([("hello.txt".to_owned(), "mounted".to_owned())].into());
    configmaps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = (0..3)
        .map(|_| load(ingress(&lab), Arc::clone(&stop)))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut annotations = mount_annotations("lab-mount", "/var/local/lab");
    annotations["sidecar.istio.io/componentLogLevel"] = json!("misc:error,wasm:info");
    patch_template(&client, annotations).await;
    let rolled = wait_for_rollout(&client).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut statuses = Vec::new();
    for l in loads {
        statuses.extend(l.await.unwrap());
    }
    let failed: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(statuses.len() > 30, "only {} requests", statuses.len());
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the rollout: {failed:?}",
        failed.len(),
        statuses.len()
    );

    // New pods, named by the new template's hash; the old ones are gone from the API.
    let after = pod_names(&client).await;
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} → {after:?}"
    );
    assert_eq!(
        rolled.status.as_ref().and_then(|s| s.observed_generation),
        rolled.metadata.generation
    );
    let running: Vec<String> = lab
        .activators()
        .iter()
        .map(|a| a.pod_name.clone())
        .collect();
    let mut running_sorted = running.clone();
    running_sorted.sort();
    assert_eq!(running_sorted, after);
    // activator-service lists exactly the new pods.
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "knative-serving");
    let service = endpoints.get("activator-service").await.unwrap();
    let mut targets: Vec<String> = service.subsets.unwrap_or_default()[0]
        .addresses
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|a| a.target_ref.and_then(|r| r.name))
        .collect();
    targets.sort();
    assert_eq!(targets, after);
    // Each new sidecar runs with its own pod's annotations, and has the mount.
    for pod in lab.activators() {
        let flags = command_line(pod.admin()).await;
        assert_eq!(
            flags["component_log_level"], "misc:error,wasm:info",
            "{}: {flags}",
            pod.pod_name
        );
        let mounted = lab
            .state_dir()
            .join("mounts")
            .join(&pod.pod_name)
            .join("lab-mount")
            .join("hello.txt");
        assert_eq!(std::fs::read_to_string(&mounted).unwrap(), "mounted");
    }
    // An old pod's log is gone with it.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "knative-serving");
    assert!(pods.logs(&before[0], &Default::default()).await.is_err());
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_whose_module_the_pods_lack_fails_requests_until_they_roll() {
    let lab = lab().await;
    let client = client(&lab).await;
    let to = ingress(&lab);
    assert_eq!(admin_get(to, "/").await.unwrap().0, 200);
    // The module in a ConfigMap, and a WasmPlugin loading it from a path the running pods were
    // not created with: istiod delivers it anyway, Envoy cannot load it, the listener rejects
    // every stream (500, as `NFCF`).
    let wasm = std::fs::read(filter_wasm()).unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "knative-serving");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("kasi-filter".into());
    cm.binary_data = Some([("kasi_filter.wasm".to_owned(), k8s_openapi::ByteString(wasm))].into());
    configmaps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let plugin = json!({
        "apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
        "metadata": {"name": "kasi-affinity", "namespace": "knative-serving"},
        "spec": {"selector": {"matchLabels": {"app": "activator"}},
                 "url": "file:///var/local/kasi/kasi_filter.wasm", "phase": "AUTHN",
                 "failStrategy": "FAIL_OPEN",
                 // Every outbound HTTP listener, the activator's mesh-mode `0.0.0.0_80` among them.
                 "match": [{"mode": "CLIENT"}],
                 "pluginConfig": {"allowed_cidrs": [lab.layout.pod_cidr()]}},
    });
    let plugins: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "knative-serving",
        &kube::api::ApiResource {
            group: "extensions.istio.io".into(),
            version: "v1alpha1".into(),
            api_version: "extensions.istio.io/v1alpha1".into(),
            kind: "WasmPlugin".into(),
            plural: "wasmplugins".into(),
        },
    );
    plugins
        .create(
            &PostParams::default(),
            &serde_json::from_value(plugin).unwrap(),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut outage = false;
    while Instant::now() < deadline {
        if admin_get(to, "/").await.map(|(s, _)| s).unwrap_or(0) == 500 {
            outage = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        outage,
        "pods without the mount kept serving with the plugin"
    );

    // New pods get the mount from the template: the module loads and requests succeed.
    patch_template(&client, mount_annotations("kasi-filter", "/var/local/kasi")).await;
    wait_for_rollout(&client).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..20 {
        let (status, body) = admin_get(to, "/").await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    lab.shutdown().await;
}

/// kubectl's own rollout commands work on the lab's Deployment: `rollout restart` replaces the
/// pods, and `rollout status` waits on the status the lab's controller writes and says it rolled
/// out (kubectl's `rollout_status.go` reads nothing else).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_restart_and_status() {
    let lab = lab().await;
    let client = client(&lab).await;
    let kubeconfig = lab.kubeconfig_path().to_owned();
    let mut binaries = vec!["kubectl".to_owned()];
    if let Some(new) = std::env::var_os("KASI_KUBECTL_NEW") {
        binaries.push(new.to_string_lossy().into_owned());
    }
    for binary in binaries {
        let before = pod_names(&client).await;
        let kubectl = |args: &'static [&'static str]| {
            let (binary, kubeconfig) = (binary.clone(), kubeconfig.clone());
            tokio::task::spawn_blocking(move || {
                let out = std::process::Command::new(&binary)
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .args(["-n", "knative-serving"])
                    .args(args)
                    .output()
                    .unwrap_or_else(|e| panic!("{binary} runs: {e} (install kubectl: ./dev does)"));
                (
                    out.status.success(),
                    String::from_utf8_lossy(&out.stdout).into_owned(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            })
        };
        let (ok, out, err) = kubectl(&["rollout", "restart", "deployment/activator"])
            .await
            .unwrap();
        assert!(ok, "{binary}: {out}{err}");
        let (ok, out, err) =
            kubectl(&["rollout", "status", "deployment/activator", "--timeout=90s"])
                .await
                .unwrap();
        assert!(ok, "{binary}: {out}{err}");
        assert!(out.contains("successfully rolled out"), "{binary}: {out}");
        let after = pod_names(&client).await;
        assert_eq!(after.len(), 2);
        assert!(
            after.iter().all(|p| !before.contains(p)),
            "{binary}: {before:?} → {after:?}"
        );
    }
    lab.shutdown().await;
}
