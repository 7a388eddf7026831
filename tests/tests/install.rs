//! `kasi apply` / `status` / `revert` against the lab's API, through the library functions the
//! CLI uses (so the tests answer the question with yes) and through the real `kasi` binary.
//! Each test starts a lab in-process and then uses only its kubeconfig and ingress.

use kasi::cluster::{self, ClusterTarget};
use kasi::install::apply::{apply, ApplyOptions, ApplyOutcome};
use kasi::install::render::{FilterSource, RenderOptions};
use kasi::install::revert::{revert, RevertOutcome};
use kasi::install::session_keys::ROTATED_AT_ANNOTATION;
use kasi::install::status::{self, PieceState};
use kasi::install::{InstallError, FILTER_WASM};
use kasi_e2e::envoy_binary;
use kasi_e2e::lab_client::{hit_rate, ingress_addr};
use kasi_lab::{Lab, LabOptions};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const NS: &str = "knative-serving";

async fn start_lab(istio_crds: bool) -> (Lab, Client) {
    start_lab_with(LabOptions {
        istio_crds,
        ..LabOptions::default()
    })
    .await
}

async fn start_lab_with(options: LabOptions) -> (Lab, Client) {
    let lab = Lab::start(LabOptions {
        envoy: Some(envoy_binary()),
        services: 20,
        ..options
    })
    .await
    .expect("the lab starts");
    let client = cluster::connect(&ClusterTarget::kubeconfig(lab.kubeconfig_path()))
        .await
        .expect("kasi connects with the lab's kubeconfig");
    (lab, client)
}

fn options(dry_run: bool, force_conflicts: bool) -> ApplyOptions {
    let mut render = RenderOptions::new(FilterSource::ConfigMap {
        wasm: FILTER_WASM.to_vec(),
    });
    render.system_namespace = NS.into();
    ApplyOptions {
        render,
        detect_cidrs: true,
        dry_run,
        force_conflicts,
        force: false,
        rotate_key: false,
        show_diff: false,
    }
}

fn yes() -> impl FnMut(&str) -> Result<bool, InstallError> {
    |_| Ok(true)
}

fn api(client: &Client, api_version: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    Api::namespaced_with(
        client.clone(),
        NS,
        &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural),
    )
}

/// Every object the bundle touches, plus the record: (api, name).
fn all_objects(client: &Client) -> Vec<(Api<DynamicObject>, &'static str)> {
    vec![
        (api(client, "v1", "ConfigMap", "configmaps"), "kasi-filter"),
        (
            api(client, "apps/v1", "Deployment", "deployments"),
            "activator",
        ),
        (
            api(
                client,
                "extensions.istio.io/v1alpha1",
                "WasmPlugin",
                "wasmplugins",
            ),
            "kasi-affinity",
        ),
        (
            api(
                client,
                "networking.istio.io/v1alpha3",
                "EnvoyFilter",
                "envoyfilters",
            ),
            "kasi-stateful-session",
        ),
        (
            api(
                client,
                "networking.istio.io/v1alpha3",
                "EnvoyFilter",
                "envoyfilters",
            ),
            "kasi-passthrough-original-dst",
        ),
        (
            api(client, "v1", "Service", "services"),
            "kasi-activator-affinity",
        ),
        (
            api(client, "networking.istio.io/v1", "Sidecar", "sidecars"),
            "kasi-activator",
        ),
        (
            api(client, "v1", "ConfigMap", "configmaps"),
            "config-network",
        ),
        (
            api(client, "v1", "ConfigMap", "configmaps"),
            "config-autoscaler",
        ),
        (api(client, "v1", "ConfigMap", "configmaps"), "kasi-revert"),
    ]
}

/// name → resourceVersion (None: absent) of every object the bundle touches.
async fn versions(client: &Client) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for (api, name) in all_objects(client) {
        // Without the Istio CRDs their kinds are not served: absent.
        let found = api.get_opt(name).await.ok().flatten();
        out.push((
            name.to_owned(),
            found.and_then(|o| o.metadata.resource_version),
        ));
    }
    out
}

/// The parts of a pre-existing object revert must give back byte for byte.
async fn contents(api: &Api<DynamicObject>, name: &str) -> Value {
    let object = serde_json::to_value(api.get(name).await.expect("object exists")).unwrap();
    json!({
        "labels": object["metadata"]["labels"],
        "annotations": object["metadata"]["annotations"],
        "data": object["data"],
        "spec": object["spec"],
    })
}

/// The live WasmPlugin's `session_keys` and its rotation annotation.
async fn session_keys(client: &Client) -> (Vec<String>, Option<String>) {
    let plugins = api(
        client,
        "extensions.istio.io/v1alpha1",
        "WasmPlugin",
        "wasmplugins",
    );
    let object = contents(&plugins, "kasi-affinity").await;
    let keys = object["spec"]["pluginConfig"]["session_keys"]
        .as_array()
        .expect("session_keys is a list")
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    let rotated_at = object["annotations"][ROTATED_AT_ANNOTATION]
        .as_str()
        .map(str::to_owned);
    (keys, rotated_at)
}

async fn pre_existing(client: &Client) -> Vec<Value> {
    let mut out = Vec::new();
    for (api, name) in all_objects(client) {
        if ["activator", "config-network", "config-autoscaler"].contains(&name) {
            out.push(contents(&api, name).await);
        }
    }
    out
}

/// Waits until every activator's sidecar has the filter and the PassthroughCluster patch
/// (`override_host_status`; istiod pushes).
async fn wait_for_sidecars(client: &Client) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = status::collect(client, NS).await.expect("status");
        let mut ready = status
            .activators
            .iter()
            .all(|a| a.filter_loaded == Some(true));
        for activator in &status.activators {
            let dump = cluster::http_get(client, NS, &activator.pod, 15000, "/config_dump")
                .await
                .expect("config_dump through a port-forward");
            let dump = String::from_utf8_lossy(&dump.body);
            ready &= dump.contains("override_host_status") && !dump.contains("use_http_header");
        }
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "sidecars not configured within 20 s: {:?}",
            status.activators
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sidecars injected the classic way (istio-proxy in `containers`, Istio before 1.27) are found
/// as native ones are (the default lab: in `initContainers`, `apply_status_reapply_revert`),
/// and after apply every one has the filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_sidecars_are_found_and_get_the_filter() {
    let (lab, client) = start_lab_with(LabOptions {
        classic_sidecars: true,
        ..LabOptions::default()
    })
    .await;
    let found = status::collect(&client, NS).await.expect("status");
    assert!(!found.activators.is_empty());
    assert!(
        found.activators.iter().all(|a| a.sidecar_injected),
        "{:?}",
        found.activators
    );
    apply(&client, options(false, false), &mut yes(), &mut Vec::new())
        .await
        .expect("apply");
    wait_for_sidecars(&client).await;
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_status_reapply_revert() {
    let (lab, client) = start_lab(true).await;
    let before_versions = versions(&client).await;
    let before_contents = pre_existing(&client).await;

    // Before: nothing of kasi's is there.
    let found = status::collect(&client, NS).await.expect("status");
    assert!(!found.installed);
    assert!(found.activators.iter().all(|a| a.sidecar_injected));

    // Dry run: the server sees every change, nothing changes.
    let mut out = Vec::new();
    let outcome = apply(&client, options(true, false), &mut yes(), &mut out)
        .await
        .expect("dry run");
    let text = String::from_utf8_lossy(&out).to_string();
    assert_eq!(outcome, ApplyOutcome::DryRun { changes: 9 }, "{text}");
    assert!(text.contains("detected"), "{text}");
    assert!(text.contains("create"), "{text}");
    // The server's own answer, object by object, and the rollout it would start.
    assert!(text.contains("server dry run of apply"), "{text}");
    assert!(
        text.lines().any(|l| l.contains("patched (1 field)")
            && l.ends_with("ConfigMap knative-serving/config-network")),
        "{text}"
    );
    assert!(
        text.contains("then the activator Deployment rolls"),
        "{text}"
    );
    assert!(
        text.contains("data.mesh-compatibility-mode: (absent) → \"disabled\""),
        "{text}"
    );
    assert_eq!(
        versions(&client).await,
        before_versions,
        "the dry run changed something"
    );

    // Apply.
    let mut out = Vec::new();
    let outcome = apply(&client, options(false, false), &mut yes(), &mut out)
        .await
        .expect("apply");
    let text = String::from_utf8_lossy(&out).to_string();
    assert_eq!(outcome, ApplyOutcome::Applied { changed: 9 }, "{text}");
    assert!(
        text.contains("[8/9] applied WasmPlugin knative-serving/kasi-affinity"),
        "{text}"
    );
    // The Deployment goes last and apply returns once its rollout is done.
    assert!(
        text.contains("[9/9] applied Deployment knative-serving/activator"),
        "{text}"
    );
    assert!(
        text.contains("rollout: deployment knative-serving/activator rolled out"),
        "{text}"
    );
    let found = status::collect(&client, NS).await.expect("status");
    for piece in &found.pieces {
        assert_eq!(piece.state, PieceState::Present, "{piece:?}");
    }
    assert!(found.installed);

    // Sessions stick through the ingress, and the filter's counters say so too.
    wait_for_sidecars(&client).await;
    let (rate, _) = hit_rate(ingress_addr(&lab)).await;
    assert_eq!(rate, 1.0, "client-side hit rate after apply");
    let found = status::collect(&client, NS).await.expect("status");
    assert_eq!(found.hit_rate, Some(1.0), "{:?}", found.activators);
    let text = status::to_text(&found);
    assert!(text.contains("PRESENT"), "{text}");
    let json = serde_json::to_value(&found).unwrap();
    assert!(
        json["activators"][0]["config_dump"]["total_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );

    // Again: nothing changes, not even a resourceVersion.
    let applied_versions = versions(&client).await;
    let mut out = Vec::new();
    let outcome = apply(&client, options(false, false), &mut yes(), &mut out)
        .await
        .expect("second apply");
    assert_eq!(
        outcome,
        ApplyOutcome::UpToDate,
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(
        versions(&client).await,
        applied_versions,
        "the second apply changed something (a new session key would)"
    );

    // Rotation: a new key signs, the old one still verifies; no output ever shows a key.
    let (keys, rotated_at) = session_keys(&client).await;
    assert_eq!((keys.len(), rotated_at), (1, None));
    let mut rotate = options(true, false);
    rotate.rotate_key = true;
    let mut out = Vec::new();
    let outcome = apply(&client, rotate.clone(), &mut yes(), &mut out)
        .await
        .expect("dry run of a rotation");
    let text = String::from_utf8_lossy(&out).to_string();
    assert_eq!(outcome, ApplyOutcome::DryRun { changes: 1 }, "{text}");
    assert!(
        text.contains("session_keys: (1 key(s), not shown) → (2 key(s), not shown)"),
        "{text}"
    );
    assert!(
        !text.contains(&keys[0]),
        "the dry run printed a key: {text}"
    );
    assert_eq!(session_keys(&client).await.0, keys, "the dry run rotated");
    rotate.dry_run = false;
    let mut out = Vec::new();
    let outcome = apply(&client, rotate, &mut yes(), &mut out)
        .await
        .expect("rotation");
    let text = String::from_utf8_lossy(&out).to_string();
    assert_eq!(outcome, ApplyOutcome::Applied { changed: 1 }, "{text}");
    assert!(text.contains("rotated"), "{text}");
    let (rotated, rotated_at) = session_keys(&client).await;
    assert_eq!(rotated.len(), 2);
    assert_ne!(rotated[0], keys[0], "a new key signs");
    assert_eq!(rotated[1], keys[0], "the old key still verifies");
    assert!(rotated_at.is_some(), "the rotation time is recorded");
    let found = status::collect(&client, NS).await.expect("status");
    assert!(found.installed, "{:?}", found.pieces);
    let (rate, _) = hit_rate(ingress_addr(&lab)).await;
    assert_eq!(rate, 1.0, "client-side hit rate after the rotation");

    // Revert: what existed is byte-identical, what kasi created is gone.
    let mut out = Vec::new();
    let outcome = revert(&client, NS, &mut yes(), &mut out)
        .await
        .expect("revert");
    let text = String::from_utf8_lossy(&out).to_string();
    assert_eq!(
        outcome,
        RevertOutcome::Reverted {
            restored: 3,
            deleted: 6
        },
        "{text}"
    );
    assert_eq!(pre_existing(&client).await, before_contents, "{text}");
    for (name, version) in versions(&client).await {
        if !["activator", "config-network", "config-autoscaler"].contains(&name.as_str()) {
            assert_eq!(version, None, "{name} is still there after revert");
        }
    }
    let mut out = Vec::new();
    let outcome = revert(&client, NS, &mut yes(), &mut out)
        .await
        .expect("second revert");
    assert_eq!(outcome, RevertOutcome::NothingInstalled);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_istio_apply_names_each_missing_crd_and_changes_nothing() {
    let (lab, client) = start_lab(false).await;
    let before = versions(&client).await;
    let error = apply(&client, options(false, false), &mut yes(), &mut Vec::new())
        .await
        .expect_err("apply must refuse");
    let message = error.to_string();
    assert!(matches!(error, InstallError::Cluster(_)));
    for crd in [
        "sidecars.networking.istio.io",
        "envoyfilters.networking.istio.io",
        "wasmplugins.extensions.istio.io",
    ] {
        assert!(message.contains(crd), "{message}");
    }
    assert!(!message.contains('\n'), "{message}");
    assert_eq!(versions(&client).await, before);
    let found = status::collect(&client, NS)
        .await
        .expect("status without Istio");
    assert!(found.pieces.iter().any(|p| p.state == PieceState::Missing));
    lab.shutdown().await;
}

fn run_kasi(lab: &Lab, args: &[&str]) -> (i32, String, String) {
    kasi_e2e::run_kasi(lab.kubeconfig_path(), args)
}

/// Another manager owns `mesh-compatibility-mode` with another value: apply names the field and
/// the manager and changes nothing, unless told to force; revert gives the value back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_stop_apply_unless_forced_and_the_binary_works() {
    let (lab, client) = start_lab(true).await;
    let config_maps = api(&client, "v1", "ConfigMap", "configmaps");
    config_maps
        .patch(
            "config-network",
            &PatchParams::apply("platform-team"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "config-network", "namespace": NS},
                "data": {"mesh-compatibility-mode": "enabled"}})),
        )
        .await
        .expect("another manager takes the field");
    let before_versions = versions(&client).await;
    let before_contents = pre_existing(&client).await;

    let error = apply(&client, options(false, false), &mut yes(), &mut Vec::new())
        .await
        .expect_err("a conflict stops apply");
    let message = error.to_string();
    assert!(message.contains("platform-team"), "{message}");
    assert!(message.contains("mesh-compatibility-mode"), "{message}");
    assert!(message.contains("--force-conflicts"), "{message}");
    assert_eq!(
        versions(&client).await,
        before_versions,
        "a refused apply changed something"
    );

    // The binary: status as JSON, the same refusal, then forced with --yes.
    let (code, stdout, stderr) = run_kasi(&lab, &["status", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let json: Value = serde_json::from_str(&stdout).expect("status --json is JSON");
    assert_eq!(json["installed"], false);
    assert_eq!(json["pieces"].as_array().unwrap().len(), 9);
    // For scripts: --exit-code fails while pieces are missing, names each on stderr, and leaves
    // the JSON as it is.
    let (code, with_exit_code, stderr) = run_kasi(&lab, &["status", "--json", "--exit-code"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(&with_exit_code).expect("JSON")["pieces"],
        json["pieces"]
    );
    assert!(
        stderr
            .lines()
            .any(|l| l == "kasi status: WasmPlugin knative-serving/kasi-affinity is missing"),
        "{stderr}"
    );
    let (code, _, stderr) = run_kasi(&lab, &["apply", "--yes"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("platform-team"), "{stderr}");
    let (code, stdout, stderr) = run_kasi(&lab, &["apply", "--yes", "--force-conflicts"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("[9/9]"), "{stdout}");
    let module = std::fs::read(kasi_e2e::filter_wasm()).expect("compiled filter");
    let sha = kasi::install::render::sha256_hex(&module);
    assert!(
        stdout.contains(&format!("sha256 {sha}")),
        "apply shows the filter's sha256: {stdout}"
    );
    let (code, stdout, stderr) = run_kasi(&lab, &["status", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let json: Value = serde_json::from_str(&stdout).expect("status --json is JSON");
    assert_eq!(json["installed"], true, "{stdout}");
    assert_eq!(
        json["disagreements"],
        serde_json::json!([]),
        "both activators rolled with the same module, chain and scope: {stdout}"
    );
    let (code, stdout, stderr) = run_kasi(&lab, &["status", "--exit-code"]);
    assert_eq!(code, 0, "installed and loaded: {stdout}\n{stderr}");

    // Without a terminal and without --yes, revert refuses; with --yes it restores the value.
    let (code, _, stderr) = run_kasi(&lab, &["revert"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--yes") && stderr.lines().count() == 1,
        "{stderr}"
    );
    let (code, stdout, stderr) = run_kasi(&lab, &["revert", "--yes"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(pre_existing(&client).await, before_contents);
    let (code, stdout, _) = run_kasi(&lab, &["revert", "--yes"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("nothing to revert"), "{stdout}");
    lab.shutdown().await;
}
