//! Each condition that defeats kasi, created in the lab with kubectl as an operator would, shows
//! up in `kasi status --json` under its id (DESIGN.md's findings contract), and `kasi apply`
//! refuses on an `error` finding.

use kasi_e2e::{envoy_binary, run_kasi};
use kasi_lab::{Lab, LabOptions};
use serde_json::Value;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// kubectl from PATH (`./dev test` installs Debian's), with its discovery cache in `cache` so
/// that a CRD created by one call is seen by the next.
fn kubectl(kubeconfig: &Path, cache: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs (./dev test installs it)");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert!(output.status.success(), "kubectl {args:?}: {out}{err}");
    out
}

/// The finding ids `kasi status --json` reports.
fn finding_ids(kubeconfig: &Path) -> Vec<String> {
    let (code, out, err) = run_kasi(kubeconfig, &["status", "--json"]);
    assert_eq!(code, 0, "kasi status --json: {out}{err}");
    let status: Value = serde_json::from_str(&out).expect("status is JSON");
    assert_eq!(
        status["findings_unchecked"],
        serde_json::json!([]),
        "every finding could be checked in the lab: {out}"
    );
    status["findings"]
        .as_array()
        .expect("findings is a list")
        .iter()
        .map(|f| f["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

const KNATIVE_OPERATOR_CRD: &str = "\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: knativeservings.operator.knative.dev
spec:
  group: operator.knative.dev
  scope: Namespaced
  names: {kind: KnativeServing, plural: knativeservings, singular: knativeserving, listKind: KnativeServingList}
  versions:
  - name: v1beta1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_condition_created_with_kubectl_is_reported() {
    let lab = Lab::start(LabOptions {
        envoy: Some(envoy_binary()),
        services: 5,
        ..LabOptions::default()
    })
    .await
    .expect("the lab starts");
    let kubeconfig = lab.kubeconfig_path().to_owned();
    let cache = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: Option<&str>| kubectl(&kubeconfig, cache.path(), args, stdin);
    let config = kubeconfig.clone();
    let ids = move || finding_ids(&config);

    // A lab as a typical cluster is: labelled for injection, an injector, nothing that defeats kasi.
    assert_eq!(ids(), Vec::<String>::new());

    let steps: [(&str, &dyn Fn()); 7] = [
        ("strict-mtls", &|| {
            run(
                &["apply", "-f", "-"],
                Some("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n"),
            );
        }),
        ("internal-tls", &|| {
            run(
                &[
                    "-n",
                    "knative-serving",
                    "patch",
                    "configmap",
                    "config-network",
                    "--type",
                    "merge",
                    "-p",
                    r#"{"data":{"system-internal-tls":"enabled"}}"#,
                ],
                None,
            );
        }),
        ("burst-capacity-override", &|| {
            run(
                &[
                    "-n",
                    "default",
                    "annotate",
                    "revision",
                    "hello-00001",
                    "autoscaling.knative.dev/target-burst-capacity=200",
                ],
                None,
            );
        }),
        ("container-concurrency", &|| {
            run(
                &[
                    "-n",
                    "default",
                    "patch",
                    "revision",
                    "hello-00001",
                    "--type",
                    "merge",
                    "-p",
                    r#"{"spec":{"containerConcurrency":1}}"#,
                ],
                None,
            );
        }),
        ("knative-operator", &|| {
            run(&["apply", "-f", "-"], Some(KNATIVE_OPERATOR_CRD));
            run(
                &["apply", "-f", "-"],
                Some("apiVersion: operator.knative.dev/v1beta1\nkind: KnativeServing\nmetadata: {name: knative-serving, namespace: knative-serving}\nspec: {}\n"),
            );
        }),
        ("persistent-session-flag", &|| {
            run(
                &[
                    "-n",
                    "istio-system",
                    "patch",
                    "deployment",
                    "istiod",
                    "--type",
                    "json",
                    "-p",
                    r#"[{"op":"add","path":"/spec/template/spec/containers/0/env/-","value":{"name":"PILOT_ENABLE_PERSISTENT_SESSION_FILTER","value":"true"}}]"#,
                ],
                None,
            );
        }),
        ("injection-disabled", &|| {
            run(
                &[
                    "label",
                    "namespace",
                    "knative-serving",
                    "istio-injection=disabled",
                    "--overwrite",
                ],
                None,
            );
        }),
    ];
    for (id, create) in steps {
        create();
        let found = ids();
        assert!(
            found.iter().any(|f| f == id),
            "{id} not reported: {found:?}"
        );
    }
    // All seven at once, and an error among them stops apply (unless --force).
    let mut found = ids();
    found.sort();
    assert_eq!(
        found,
        [
            "burst-capacity-override",
            "container-concurrency",
            "injection-disabled",
            "internal-tls",
            "knative-operator",
            "persistent-session-flag",
            "strict-mtls",
        ]
    );
    let (code, out, err) = run_kasi(&kubeconfig, &["apply", "--yes"]);
    assert_ne!(code, 0, "apply went ahead: {out}{err}");
    assert!(
        err.contains("strict-mtls") && err.contains("--force"),
        "apply names the finding and the way past it: {err}"
    );
    lab.shutdown().await;
}
