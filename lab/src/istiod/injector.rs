//! istiod's sidecar injector: what the `istio-sidecar-injector` webhook does to a pod when it is
//! created (`pkg/kube/inject/webhook.go` `injectPod`, rendering
//! `manifests/charts/istio-control/istio-discovery/files/injection-template.yaml`). Everything it
//! decides comes from the pod as created, so it is fixed for the pod's life: volumes, the proxy's
//! log levels, native or classic placement. A change to the Deployment's template reaches a
//! sidecar only through a new pod.

use serde_json::{json, Value};

pub const PROXY_IMAGE: &str = "docker.io/istio/proxyv2:1.28.0";
/// `values.global.proxy.logLevel` / `componentLogLevel` (the chart's defaults).
pub const DEFAULT_PROXY_LOG_LEVEL: &str = "warning";
pub const DEFAULT_PROXY_COMPONENT_LOG_LEVEL: &str = "misc:error";

/// Whether the webhook injects this pod (`pkg/kube/inject/inject.go` `injectRequired`): the
/// pod's `sidecar.istio.io/inject` label (or the older annotation) wins; otherwise the namespace's
/// `istio-injection=enabled`.
pub fn injection_required(pod: &Value, namespace_enabled: bool) -> bool {
    let meta = &pod["metadata"];
    let said = meta["labels"]["sidecar.istio.io/inject"]
        .as_str()
        .or_else(|| meta["annotations"]["sidecar.istio.io/inject"].as_str());
    match said {
        Some(v) => v.eq_ignore_ascii_case("true"),
        None => namespace_enabled,
    }
}

/// Injects istio-init and istio-proxy into `pod` (metadata and spec already copied from the
/// template), as a native sidecar (in `initContainers` with `restartPolicy: Always`: the
/// injector's `ENABLE_NATIVE_SIDECARS`, on by default from Istio 1.27 on Kubernetes ≥ 1.33) or in
/// `containers`.
pub fn inject(pod: &mut Value, native: bool) {
    let annotations = pod["metadata"]["annotations"].clone();
    let annotation = |key: &str, default: &str| -> String {
        annotations[key].as_str().unwrap_or(default).to_owned()
    };
    // `sidecar.istio.io/userVolume` / `userVolumeMount`: JSON maps of name → volume / mount, each
    // entry becoming a pod volume / an istio-proxy volumeMount named by its key.
    let parse = |key: &str| -> serde_json::Map<String, Value> {
        annotations[key]
            .as_str()
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default()
    };
    let named = |(name, value): (String, Value)| -> Value {
        let mut entry = value;
        if entry.is_object() {
            entry["name"] = json!(name);
        }
        entry
    };
    let user_volumes: Vec<Value> = parse("sidecar.istio.io/userVolume")
        .into_iter()
        .map(named)
        .collect();
    let user_mounts: Vec<Value> = parse("sidecar.istio.io/userVolumeMount")
        .into_iter()
        .map(named)
        .collect();
    let mut mounts = vec![
        json!({"name": "istio-envoy", "mountPath": "/etc/istio/proxy"}),
        json!({"name": "istio-data", "mountPath": "/var/lib/istio/data"}),
    ];
    mounts.extend(user_mounts);
    let proxy = json!({
        "name": "istio-proxy",
        "image": PROXY_IMAGE,
        "args": [
            "proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local",
            format!("--proxyLogLevel={}", annotation("sidecar.istio.io/logLevel", DEFAULT_PROXY_LOG_LEVEL)),
            format!("--proxyComponentLogLevel={}", annotation("sidecar.istio.io/componentLogLevel", DEFAULT_PROXY_COMPONENT_LOG_LEVEL)),
            "--log_output_level=default:info",
        ],
        "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}},
        "volumeMounts": mounts,
    });
    let init = json!({"name": "istio-init", "image": PROXY_IMAGE,
                      "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337"]});
    let spec = &mut pod["spec"];
    let mut init_containers = spec["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    init_containers.insert(0, init);
    let status = if native {
        let mut native_proxy = proxy;
        native_proxy["restartPolicy"] = json!("Always");
        init_containers.insert(1, native_proxy);
        "{\"initContainers\":[\"istio-init\",\"istio-proxy\"],\"containers\":null"
    } else {
        if let Some(list) = spec["containers"].as_array_mut() {
            list.push(proxy);
        }
        "{\"initContainers\":[\"istio-init\"],\"containers\":[\"istio-proxy\"]"
    };
    spec["initContainers"] = json!(init_containers);
    let mut volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
    volumes.push(json!({"name": "istio-envoy", "emptyDir": {"medium": "Memory"}}));
    volumes.push(json!({"name": "istio-data", "emptyDir": {}}));
    volumes.extend(user_volumes);
    spec["volumes"] = json!(volumes);
    let volume_names: Vec<String> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect();
    let meta = &mut pod["metadata"];
    if !meta["annotations"].is_object() {
        meta["annotations"] = json!({});
    }
    meta["annotations"]["sidecar.istio.io/status"] = json!(format!(
        "{status},\"volumes\":{}}}",
        serde_json::to_string(&volume_names).unwrap_or_default()
    ));
    if !meta["labels"].is_object() {
        meta["labels"] = json!({});
    }
    meta["labels"]["security.istio.io/tlsMode"] = json!("istio");
    let app = meta["labels"]["app"]
        .as_str()
        .unwrap_or("unknown")
        .to_owned();
    meta["labels"]["service.istio.io/canonical-name"] = json!(app);
}

/// The istio-proxy container of a pod, native or classic.
pub fn proxy_container(pod: &Value) -> Option<&Value> {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|list| pod["spec"][list].as_array().into_iter().flatten())
        .find(|c| c["name"] == "istio-proxy")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(annotations: Value) -> Value {
        json!({"metadata": {"name": "p", "labels": {"app": "activator"}, "annotations": annotations},
               "spec": {"containers": [{"name": "activator"}]}})
    }

    #[test]
    fn user_volumes_and_log_levels_come_from_the_pod_annotations() {
        let mut p = pod(json!({
            "sidecar.istio.io/componentLogLevel": "misc:error,wasm:info",
            "sidecar.istio.io/userVolume": "{\"kasi-filter\":{\"configMap\":{\"name\":\"kasi-filter\"}}}",
            "sidecar.istio.io/userVolumeMount": "{\"kasi-filter\":{\"mountPath\":\"/var/local/kasi\",\"readOnly\":true}}",
        }));
        inject(&mut p, true);
        let proxy = proxy_container(&p).unwrap();
        assert_eq!(proxy["restartPolicy"], "Always");
        let args: Vec<&str> = proxy["args"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(args.contains(&"--proxyLogLevel=warning"), "{args:?}");
        assert!(
            args.contains(&"--proxyComponentLogLevel=misc:error,wasm:info"),
            "{args:?}"
        );
        assert!(proxy["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "kasi-filter" && m["mountPath"] == "/var/local/kasi"));
        assert!(p["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "kasi-filter" && v["configMap"]["name"] == "kasi-filter"));
        let status = p["metadata"]["annotations"]["sidecar.istio.io/status"]
            .as_str()
            .unwrap();
        let status: Value = serde_json::from_str(status).unwrap();
        assert_eq!(
            status["initContainers"],
            json!(["istio-init", "istio-proxy"])
        );
    }

    #[test]
    fn defaults_and_classic_placement() {
        let mut p = pod(json!({}));
        inject(&mut p, false);
        let proxy = proxy_container(&p).unwrap();
        assert!(proxy.get("restartPolicy").is_none());
        assert_eq!(p["spec"]["containers"][1]["name"], "istio-proxy");
        assert!(proxy["args"]
            .as_array()
            .unwrap()
            .contains(&json!("--proxyComponentLogLevel=misc:error")));
    }

    #[test]
    fn the_pod_label_overrides_the_namespace() {
        let mut p = pod(json!({}));
        assert!(injection_required(&p, true));
        assert!(!injection_required(&p, false));
        p["metadata"]["labels"]["sidecar.istio.io/inject"] = json!("true");
        assert!(injection_required(&p, false));
        p["metadata"]["labels"]["sidecar.istio.io/inject"] = json!("false");
        assert!(!injection_required(&p, true));
    }
}
