//! The lab's control plane: istiod (each sidecar's Envoy config, rewritten live on every change)
//! and Knative (the activator's view of revisions and settings), both driven by API watch events.

use super::api::{find_by_kind, Store};
use super::mesh::{self, MeshInputs, ProxyIdentity, SidecarConfig};
use super::routing::Routing;
use super::seed::SYSTEM_NAMESPACE;
use base64::Engine as _;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

/// The kinds istiod and Knative read.
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
const DEBOUNCE: Duration = Duration::from_millis(30);

/// One activator's sidecar as the controller configures it.
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

/// Every object of the watched kinds (a kind the API does not serve, such as Istio's without
/// its CRDs, contributes nothing).
pub fn snapshot(store: &Store) -> Vec<Value> {
    let mut out = Vec::new();
    for (api_version, kind) in WATCHED {
        if let Some(rt) = find_by_kind(api_version, kind) {
            if let Ok((items, _)) = store.list(rt, None, None) {
                out.extend(items.into_iter().map(|mut item| {
                    // Lists carry kind on the list, not the items; istiod's inputs need both.
                    item["apiVersion"] = api_version.into();
                    item["kind"] = kind.into();
                    item
                }));
            }
        }
    }
    out
}

pub fn routing(store: &Store) -> Routing {
    Routing::from_objects(&snapshot(store), SYSTEM_NAMESPACE)
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
    let config = mesh::build(&MeshInputs {
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
        mesh::write_files(&slot.config_dir, &config)?;
        *last = Some(config);
    }
    Ok(())
}

/// Runs until aborted: every API change rebuilds the routing view and each sidecar's config.
pub fn spawn(
    store: Store,
    slots: Vec<SidecarSlot>,
    state_dir: PathBuf,
    routing: Arc<RwLock<Routing>>,
) -> JoinHandle<()> {
    let mut events = store.subscribe();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
            tokio::time::sleep(DEBOUNCE).await;
            while let Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) =
                events.try_recv()
            {}
            let objects = snapshot(&store);
            let next = Routing::from_objects(&objects, SYSTEM_NAMESPACE);
            if let Ok(mut current) = routing.write() {
                *current = next;
            }
            for slot in &slots {
                if let Err(e) = configure_from(&objects, slot, &state_dir) {
                    tracing::error!(sidecar = %slot.pod_name, "cannot configure the sidecar: {e:#}");
                }
            }
        }
    })
}

/// ConfigMaps mounted into the activator's istio-proxy through the
/// `sidecar.istio.io/userVolume`/`userVolumeMount` pod-template annotations, materialised as
/// files under the lab's state directory so `file://` WasmPlugin URLs resolve as in the pod.
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
