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
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The kinds istiod reads (ConfigMaps for the sidecar's mounts, see [`Mounts`]).
const WATCHED: [(&str, &str); 7] = [
    ("v1", "Service"),
    ("v1", "Endpoints"),
    ("v1", "ConfigMap"),
    ("v1", "Pod"),
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
    let mounts = Mounts::from_pod(objects, pod, state_dir);
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

/// The proxies connected to istiod: one slot per running sidecar, added when its pod starts and
/// removed when it stops.
pub type Proxies = Arc<RwLock<Vec<Arc<SidecarSlot>>>>;

/// Runs until aborted: every API change (debounced) rebuilds each connected sidecar's config.
pub fn spawn(store: Store, proxies: Proxies, state_dir: PathBuf) -> JoinHandle<()> {
    let mut events = store.subscribe();
    tokio::spawn(async move {
        while kube_api::next_change(&mut events, DEBOUNCE).await {
            let objects = snapshot(&store);
            let slots: Vec<Arc<SidecarSlot>> =
                proxies.read().map(|p| p.clone()).unwrap_or_default();
            for slot in &slots {
                if let Err(e) = configure_from(&objects, slot, &state_dir) {
                    tracing::error!(sidecar = %slot.pod_name, "cannot configure the sidecar: {e:#}");
                }
            }
        }
    })
}

/// ConfigMap volumes mounted into the pod's istio-proxy, read from the *pod* (its `volumes` and
/// istio-proxy's `volumeMounts`, which the injector made from the `sidecar.istio.io/userVolume` /
/// `userVolumeMount` annotations the pod was created with: [`super::injector`]), materialised as
/// files under the lab's state directory so `file://` WasmPlugin URLs resolve as in the pod. A
/// pod created before the mount was added has none, however the Deployment changed since: as in
/// a cluster, its Envoy cannot load such a module. The files follow the ConfigMap's current data,
/// as the kubelet's periodic volume sync does.
struct Mounts {
    /// (mountPath, directory holding the ConfigMap's keys)
    mounts: Vec<(String, PathBuf)>,
}

impl Mounts {
    fn from_pod(objects: &[Value], pod: Option<&Value>, state_dir: &Path) -> Mounts {
        let mut mounts = Vec::new();
        let Some(pod) = pod else {
            return Mounts { mounts };
        };
        let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let volumes = pod["spec"]["volumes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let proxy_mounts = super::injector::proxy_container(pod)
            .and_then(|c| c["volumeMounts"].as_array().cloned())
            .unwrap_or_default();
        for mount in &proxy_mounts {
            let (Some(volume), Some(mount_path)) =
                (mount["name"].as_str(), mount["mountPath"].as_str())
            else {
                continue;
            };
            let Some(configmap) = volumes
                .iter()
                .find(|v| v["name"] == volume)
                .and_then(|v| v["configMap"]["name"].as_str())
            else {
                continue;
            };
            let Some(cm) = objects.iter().find(|o| {
                o["kind"] == "ConfigMap"
                    && o["metadata"]["name"] == configmap
                    && o["metadata"]["namespace"] == SYSTEM_NAMESPACE
            }) else {
                continue;
            };
            let dir = state_dir.join("mounts").join(pod_name).join(volume);
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
