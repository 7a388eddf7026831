//! istiod's push: every change in the API rebuilds each sidecar's config ([`super::build`]) and
//! writes it where that sidecar's Envoy reloads it, as istiod's debounced push sends xDS
//! (`pilot/pkg/xds/discovery.go` `debounce`).

use super::{MeshInputs, ProxyIdentity, SidecarConfig};
use crate::knative::seed::SYSTEM_NAMESPACE;
use crate::kube_api::{self, Store};
use base64::Engine as _;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The kinds istiod reads (ConfigMaps and Deployments for the sidecar's mounts, see [`Mounts`]).
const WATCHED: [(&str, &str); 8] = [
    ("v1", "Service"),
    ("v1", "Endpoints"),
    ("v1", "ConfigMap"),
    ("v1", "Pod"),
    ("apps/v1", "Deployment"),
    ("networking.istio.io/v1", "Sidecar"),
    ("networking.istio.io/v1alpha3", "EnvoyFilter"),
    ("extensions.istio.io/v1alpha1", "WasmPlugin"),
];

/// Changes arriving within this window are folded into one rebuild (an apply brings several).
/// istiod waits `PILOT_DEBOUNCE_AFTER` (100 ms, `pilot/pkg/features/tuning.go` `DebounceAfter`);
/// the lab is quicker so tests settle sooner.
const DEBOUNCE: Duration = Duration::from_millis(30);

/// One activator's sidecar, as istiod knows its proxy.
pub struct SidecarSlot {
    pub pod_name: String,
    pub ip: IpAddr,
    pub outbound: SocketAddr,
    pub config_dir: PathBuf,
    last: Mutex<Option<SidecarConfig>>,
}

impl SidecarSlot {
    pub fn new(
        pod_name: &str,
        ip: IpAddr,
        outbound: SocketAddr,
        config_dir: PathBuf,
    ) -> SidecarSlot {
        SidecarSlot {
            pod_name: pod_name.to_owned(),
            ip,
            outbound,
            config_dir,
            last: Mutex::new(None),
        }
    }
}

/// Every object istiod reads.
pub fn snapshot(store: &Store) -> Vec<Value> {
    kube_api::list_kinds(store, &WATCHED)
}

/// Builds one sidecar's config from the current objects and writes it if it changed.
pub fn configure_sidecar(
    store: &Store,
    slot: &SidecarSlot,
    state_dir: &Path,
) -> anyhow::Result<()> {
    configure_from(&snapshot(store), slot, state_dir)
}

fn configure_from(objects: &[Value], slot: &SidecarSlot, state_dir: &Path) -> anyhow::Result<()> {
    let pod = objects
        .iter()
        .find(|o| o["kind"] == "Pod" && o["metadata"]["name"] == slot.pod_name.as_str());
    let labels: BTreeMap<String, String> = pod
        .and_then(|p| p["metadata"]["labels"].as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let proxy = ProxyIdentity {
        namespace: SYSTEM_NAMESPACE.to_owned(),
        pod_name: slot.pod_name.clone(),
        labels,
        pod_ip: slot.ip,
    };
    let mounts = Mounts::from_objects(objects, state_dir);
    let resolve = |url: &str| mounts.resolve(url);
    let config = super::build(&MeshInputs {
        objects,
        proxy: &proxy,
        outbound_listener: slot.outbound,
        resolve_wasm: &resolve,
        cluster_domain: "cluster.local",
    })?;
    let mut last = slot.last.lock().unwrap_or_else(|e| e.into_inner());
    if last.as_ref() != Some(&config) {
        for warning in &config.warnings {
            tracing::warn!(sidecar = %slot.pod_name, "{warning}");
        }
        super::write_files(&slot.config_dir, &config)?;
        *last = Some(config);
    }
    Ok(())
}

/// Runs until aborted: every API change (debounced) rebuilds each sidecar's config.
pub fn spawn(store: Store, slots: Vec<SidecarSlot>, state_dir: PathBuf) -> JoinHandle<()> {
    let mut events = store.subscribe();
    tokio::spawn(async move {
        while kube_api::next_change(&mut events, DEBOUNCE).await {
            let objects = snapshot(&store);
            for slot in &slots {
                if let Err(e) = configure_from(&objects, slot, &state_dir) {
                    tracing::error!(sidecar = %slot.pod_name, "cannot configure the sidecar: {e:#}");
                }
            }
        }
    })
}

/// ConfigMaps mounted into the activator's istio-proxy through the
/// `sidecar.istio.io/userVolume`/`userVolumeMount` pod-template annotations (the injector's
/// `manifests/charts/istio-control/istio-discovery/files/injection-template.yaml` turns them into
/// the istio-proxy container's volumes), materialised as files under the lab's state directory so
/// `file://` WasmPlugin URLs resolve as in the pod. Unlike a cluster, they are read from the
/// Deployment's template, not the pod: a real pod's volumes are fixed when it is created.
struct Mounts {
    /// (mountPath, directory holding the ConfigMap's keys)
    mounts: Vec<(String, PathBuf)>,
}

impl Mounts {
    fn from_objects(objects: &[Value], state_dir: &Path) -> Mounts {
        let deployment = objects.iter().find(|o| {
            o["kind"] == "Deployment"
                && o["metadata"]["name"] == "activator"
                && o["metadata"]["namespace"] == SYSTEM_NAMESPACE
        });
        let annotations = deployment.map(|d| &d["spec"]["template"]["metadata"]["annotations"]);
        let parse = |key: &str| -> Value {
            annotations
                .and_then(|a| a[key].as_str())
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or(Value::Null)
        };
        let (volumes, volume_mounts) = (
            parse("sidecar.istio.io/userVolume"),
            parse("sidecar.istio.io/userVolumeMount"),
        );
        let mut mounts = Vec::new();
        for (volume, mount) in volume_mounts.as_object().into_iter().flatten() {
            let (Some(mount_path), Some(configmap)) = (
                mount["mountPath"].as_str(),
                volumes[volume]["configMap"]["name"].as_str(),
            ) else {
                continue;
            };
            let Some(cm) = objects.iter().find(|o| {
                o["kind"] == "ConfigMap"
                    && o["metadata"]["name"] == configmap
                    && o["metadata"]["namespace"] == SYSTEM_NAMESPACE
            }) else {
                continue;
            };
            let dir = state_dir.join("mounts").join(volume);
            if std::fs::create_dir_all(&dir).is_err() {
                continue;
            }
            let binary = cm["binaryData"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| {
                    Some((
                        k,
                        base64::engine::general_purpose::STANDARD
                            .decode(v.as_str()?)
                            .ok()?,
                    ))
                });
            let text = cm["data"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k, v.as_str()?.as_bytes().to_vec())));
            for (key, bytes) in binary.chain(text) {
                let path = dir.join(key);
                if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
                    let _ = std::fs::write(&path, &bytes);
                }
            }
            mounts.push((mount_path.trim_end_matches('/').to_owned(), dir));
        }
        Mounts { mounts }
    }

    fn resolve(&self, url: &str) -> Option<PathBuf> {
        let path = url.strip_prefix("file://")?;
        self.mounts.iter().find_map(|(mount_path, dir)| {
            let key = path.strip_prefix(mount_path.as_str())?.strip_prefix('/')?;
            let file = dir.join(key);
            (!key.contains("..") && file.is_file()).then_some(file)
        })
    }
}
