//! Pods and Endpoints as the UI's watchers read them: only the fields kasi shows. Every object in
//! a cluster carries `managedFields`, a tree of maps that is most of a deserialized object's
//! memory and none of what kasi needs; a big initial list deserialized into the full
//! k8s-openapi types is what made a plain reflector hold 100+ MiB at 5,000 objects.

use k8s_openapi::api::core::v1::{EndpointSubset, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// `metadata` without `managedFields`, annotations and the rest: identity and labels.
fn lean_meta<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Lean {
        name: Option<String>,
        namespace: Option<String>,
        uid: Option<String>,
        resource_version: Option<String>,
        labels: Option<BTreeMap<String, String>>,
    }
    let lean = Lean::deserialize(deserializer)?;
    Ok(ObjectMeta {
        name: lean.name,
        namespace: lean.namespace,
        uid: lean.uid,
        resource_version: lean.resource_version,
        labels: lean.labels,
        ..ObjectMeta::default()
    })
}

/// A revision's private Endpoints: which pod addresses serve it.
#[derive(Debug, Clone, Deserialize)]
pub struct LeanEndpoints {
    #[serde(deserialize_with = "lean_meta")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub subsets: Option<Vec<EndpointSubset>>,
}

/// An activator pod: its containers' names, IP and readiness.
#[derive(Debug, Clone, Deserialize)]
pub struct LeanPod {
    #[serde(deserialize_with = "lean_meta")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<LeanPodSpec>,
    #[serde(default)]
    pub status: Option<LeanPodStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeanPodSpec {
    #[serde(default)]
    pub containers: Vec<Named>,
    /// Kept for native sidecars: an init container with `restartPolicy: Always` runs for the
    /// pod's whole life (Kubernetes ≥ 1.29; Istio ≥ 1.27 injects istio-proxy so on ≥ 1.33).
    #[serde(default)]
    pub init_containers: Vec<Named>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Named {
    pub name: String,
    /// Only init containers have one; `Always` makes it a native sidecar.
    #[serde(default)]
    pub restart_policy: Option<String>,
}

/// The container name Istio's injector gives the sidecar.
pub const ISTIO_PROXY: &str = "istio-proxy";

impl LeanPodSpec {
    /// Whether the pod runs istio-proxy: as a classic sidecar (`spec.containers`) or as a native
    /// one (`spec.initContainers` with `restartPolicy: Always`; an init container without it runs
    /// to completion before the pod starts and proxies nothing).
    pub fn has_istio_proxy(&self) -> bool {
        self.containers.iter().any(|c| c.name == ISTIO_PROXY)
            || self
                .init_containers
                .iter()
                .any(|c| c.name == ISTIO_PROXY && c.restart_policy.as_deref() == Some("Always"))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeanPodStatus {
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
    pub conditions: Option<Vec<PodCondition>>,
}

macro_rules! same_resource_as {
    ($lean:ty, $full:ty) => {
        impl k8s_openapi::Resource for $lean {
            const API_VERSION: &'static str = <$full as k8s_openapi::Resource>::API_VERSION;
            const GROUP: &'static str = <$full as k8s_openapi::Resource>::GROUP;
            const KIND: &'static str = <$full as k8s_openapi::Resource>::KIND;
            const VERSION: &'static str = <$full as k8s_openapi::Resource>::VERSION;
            const URL_PATH_SEGMENT: &'static str =
                <$full as k8s_openapi::Resource>::URL_PATH_SEGMENT;
            type Scope = <$full as k8s_openapi::Resource>::Scope;
        }

        impl k8s_openapi::Metadata for $lean {
            type Ty = ObjectMeta;
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

same_resource_as!(LeanEndpoints, k8s_openapi::api::core::v1::Endpoints);
same_resource_as!(LeanPod, k8s_openapi::api::core::v1::Pod);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn managed_fields_are_never_kept() {
        let pod: LeanPod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "activator-0", "namespace": "knative-serving", "resourceVersion": "7",
                "labels": {"app": "activator"}, "annotations": {"big": "x"},
                "managedFields": [{"manager": "kubelet", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}}]},
            "spec": {"containers": [{"name": "activator", "image": "a"}, {"name": "istio-proxy", "image": "p"}]},
            "status": {"podIP": "10.0.0.9", "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("activator-0"));
        assert_eq!(pod.metadata.resource_version.as_deref(), Some("7"));
        assert!(pod.metadata.managed_fields.is_none());
        assert!(pod.metadata.annotations.is_none());
        let spec = pod.spec.unwrap();
        assert_eq!(spec.containers[1].name, "istio-proxy");
        assert!(spec.has_istio_proxy());
        assert_eq!(pod.status.unwrap().pod_ip.as_deref(), Some("10.0.0.9"));
        let url = <LeanPod as kube::Resource>::url_path(&(), Some("knative-serving"));
        assert_eq!(url, "/api/v1/namespaces/knative-serving/pods");
    }

    fn spec(value: serde_json::Value) -> LeanPodSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn istio_proxy_is_found_classic_or_native() {
        // Classic injection (Istio < 1.27, or Kubernetes < 1.33).
        assert!(
            spec(json!({"containers": [{"name": "activator"}, {"name": "istio-proxy"}]}))
                .has_istio_proxy()
        );
        // Native sidecar: istio-proxy is an init container that keeps running.
        let native = spec(json!({
            "initContainers": [{"name": "istio-validation", "image": "p"},
                               {"name": "istio-proxy", "image": "p", "restartPolicy": "Always"}],
            "containers": [{"name": "activator"}]}));
        assert_eq!(
            native.init_containers[1].restart_policy.as_deref(),
            Some("Always")
        );
        assert!(native.has_istio_proxy());
        // An init container named istio-proxy that runs to completion is no sidecar.
        assert!(!spec(json!({
            "initContainers": [{"name": "istio-proxy"}],
            "containers": [{"name": "activator"}]}))
        .has_istio_proxy());
        assert!(!spec(json!({"containers": [{"name": "activator"}]})).has_istio_proxy());
        assert!(!LeanPodSpec::default().has_istio_proxy());
    }
}
