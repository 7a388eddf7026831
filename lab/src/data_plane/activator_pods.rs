//! The activator's pods, run as a kubelet runs them: each pod is a real Envoy (its istio-proxy,
//! started with pilot-agent's flags from the pod's own spec) and an activator emulator on the
//! pod's own address. The Deployment controller ([`crate::kube_controllers::deployment`]) decides
//! which pods exist; this module starts them, puts them in and out of the Endpoints, drains and
//! stops them.
//!
//! A new pod is added to `activator-service` (and the proxy-mode public Endpoints copied from it)
//! only once its Envoy is ready, as the endpoints controller adds a pod only when it is Ready
//! (`pkg/controller/endpoint/endpoints_controller.go`), and a native istio-proxy must be started
//! before the activator container is (its startup probe). A pod going away leaves the Endpoints
//! first, then drains what is in flight (Knative's activator drains on SIGTERM:
//! `knative.dev/pkg/network/handlers/drain.go`), then stops.

use super::envoy::{EnvoyProcess, LogFeed};
use super::layout::{Layout, POD_H2C_PORT, POD_PORT, SIDECAR_ADMIN_PORT, SIDECAR_OUTBOUND_PORT};
use super::pilot_agent;
use crate::istiod::{self, push, push::SidecarSlot};
use crate::knative::activator::Activator;
use crate::knative::revisions::put;
use crate::knative::routing::{self, Routing};
use crate::knative::seed::{self, SYSTEM_NAMESPACE};
use crate::kube_api::{self, find_by_kind, Store};
use crate::kube_controllers::deployment::{self, OwnedPod, Step};
use anyhow::Context as _;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The activator Deployment the lab runs.
pub const DEPLOYMENT: &str = "activator";
const ACTIVATOR_SERVICE: &str = "activator-service";

/// Changes arriving within this window are folded into one reconcile.
const DEBOUNCE: Duration = Duration::from_millis(30);
/// Addresses of the activator range (`Layout::activator_ip`).
const ACTIVATOR_ADDRESSES: usize = 240;
/// The first and the longest delay before a pod that failed to start is tried again.
const RESTART_BACKOFF: Duration = Duration::from_secs(1);
const RESTART_BACKOFF_LIMIT: Duration = Duration::from_secs(10);

/// How long a terminating activator waits for its requests to finish (Knative's activator has
/// `terminationGracePeriodSeconds: 600`; the lab's requests are short).
const DRAIN_LIMIT: Duration = Duration::from_secs(30);
/// The drain's quiet period: a terminating activator serves until no request has arrived for
/// this long (Knative's drainer waits 45 s, `network.DefaultDrainTimeout`; the lab's requests
/// come from the lab's own ingress, which stops sending the moment the Endpoints change, so a
/// short one covers a request routed just before).
const DRAIN_QUIET: Duration = Duration::from_millis(500);

/// One running activator pod.
pub struct ActivatorPod {
    pub pod_name: String,
    pub ip: IpAddr,
    pub template_hash: String,
    pub activator: Arc<Activator>,
    /// Its `http1` (8012) and `h2c` (8013) servers.
    activator_tasks: Vec<JoinHandle<()>>,
    pub envoy: tokio::sync::Mutex<EnvoyProcess>,
    pub sidecar_log: LogFeed,
    pub activator_log: LogFeed,
    slot: Arc<SidecarSlot>,
}

impl ActivatorPod {
    /// Its sidecar's admin API.
    pub fn admin(&self) -> SocketAddr {
        SocketAddr::new(self.ip, SIDECAR_ADMIN_PORT)
    }
}

/// Everything needed to start activator pods, and the ones running now (oldest first).
pub struct ActivatorPods {
    pub store: Store,
    pub envoy_binary: PathBuf,
    pub state_dir: PathBuf,
    pub layout: Layout,
    pub routing: Arc<RwLock<Routing>>,
    pub proxies: push::Proxies,
    pub native_sidecars: bool,
    running: RwLock<Vec<Arc<ActivatorPod>>>,
    /// Where the next pod's address is looked for: addresses go round the range, so a pod never
    /// gets the address of one that stopped a moment ago (its sockets may not be closed yet).
    next_ip: std::sync::atomic::AtomicUsize,
}

/// A pod of this template failed to start: retried with a growing delay, as the kubelet restarts
/// a crashing container (`CrashLoopBackOff`: 10 s doubling to 5 min; the lab's is shorter).
struct StartFailure {
    hash: String,
    attempts: u32,
    retry_at: Instant,
}

impl ActivatorPods {
    pub fn new(
        store: Store,
        envoy_binary: PathBuf,
        state_dir: PathBuf,
        layout: Layout,
        routing: Arc<RwLock<Routing>>,
        native_sidecars: bool,
    ) -> Arc<ActivatorPods> {
        Arc::new(ActivatorPods {
            store,
            envoy_binary,
            state_dir,
            layout,
            routing,
            proxies: Arc::new(RwLock::new(Vec::new())),
            native_sidecars,
            running: RwLock::new(Vec::new()),
            next_ip: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// The running pods, oldest first.
    pub fn list(&self) -> Vec<Arc<ActivatorPod>> {
        self.running.read().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn find(&self, pod_name: &str) -> Option<Arc<ActivatorPod>> {
        self.list().into_iter().find(|p| p.pod_name == pod_name)
    }

    /// Starts the processes of a pod whose object is in the API: the sidecar first (configured by
    /// istiod before Envoy starts, so it comes up with its config), then the activator.
    pub async fn start(&self, pod: &Value) -> anyhow::Result<Arc<ActivatorPod>> {
        let pod_name = pod["metadata"]["name"]
            .as_str()
            .context("a pod without a name")?
            .to_owned();
        let ip: IpAddr = pod["status"]["podIP"]
            .as_str()
            .and_then(|ip| ip.parse().ok())
            .with_context(|| format!("pod {pod_name} has no podIP"))?;
        let template_hash = pod["metadata"]["labels"]["pod-template-hash"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let admin = SocketAddr::new(ip, SIDECAR_ADMIN_PORT);
        let outbound = SocketAddr::new(ip, SIDECAR_OUTBOUND_PORT);
        let config_dir = self.state_dir.join("sidecars").join(&pod_name);
        std::fs::create_dir_all(&config_dir)?;
        let slot = Arc::new(SidecarSlot::new(
            &pod_name,
            ip,
            outbound,
            config_dir.clone(),
        ));
        // Connected to istiod first, so no change between the first config and the push is lost.
        self.proxies
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&slot));
        let started = self.start_processes(pod, &pod_name, ip, admin, &slot).await;
        let (envoy, activator, activator_tasks, sidecar_log, activator_log) = match started {
            Ok(parts) => parts,
            Err(e) => {
                self.disconnect(&slot);
                return Err(e);
            }
        };
        let running = Arc::new(ActivatorPod {
            pod_name,
            ip,
            template_hash,
            activator,
            activator_tasks,
            envoy: tokio::sync::Mutex::new(envoy),
            sidecar_log,
            activator_log,
            slot,
        });
        self.running
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&running));
        Ok(running)
    }

    #[allow(clippy::type_complexity)]
    async fn start_processes(
        &self,
        pod: &Value,
        pod_name: &str,
        ip: IpAddr,
        admin: SocketAddr,
        slot: &SidecarSlot,
    ) -> anyhow::Result<(
        EnvoyProcess,
        Arc<Activator>,
        Vec<JoinHandle<()>>,
        LogFeed,
        LogFeed,
    )> {
        if istiod::injector::proxy_container(pod).is_none() {
            anyhow::bail!("pod {pod_name} has no istio-proxy: the lab runs activators only with their sidecar (label knative-serving istio-injection=enabled)");
        }
        push::configure_sidecar(&self.store, slot, &self.state_dir)?;
        let node_id = format!(
            "sidecar~{ip}~{pod_name}.{SYSTEM_NAMESPACE}~{SYSTEM_NAMESPACE}.svc.cluster.local"
        );
        let bootstrap = istiod::bootstrap(&slot.config_dir, admin, &node_id);
        let bootstrap_path = slot.config_dir.join("bootstrap.json");
        std::fs::write(&bootstrap_path, serde_json::to_vec_pretty(&bootstrap)?)?;
        let sidecar_log = LogFeed::new();
        let envoy = EnvoyProcess::start(
            &self.envoy_binary,
            &bootstrap_path,
            admin,
            sidecar_log.clone(),
            pilot_agent::envoy_flags(pod),
        )
        .await
        .with_context(|| format!("starting the sidecar of {pod_name}"))?;
        let mesh_mode = routing::from_store(&self.store).mesh_mode;
        let activator = Activator::new(
            SocketAddr::new(ip, POD_PORT),
            slot.outbound,
            Arc::clone(&self.routing),
            mesh_mode,
        );
        // Knative's activator serves the same handler on 8012 and, for h2c revisions, 8013
        // (`cmd/activator/main.go`: the `http1` and `h2c` servers).
        let mut activator_tasks = vec![activator
            .start()
            .await
            .with_context(|| format!("activator {pod_name} on {ip}:{POD_PORT}"))?];
        match activator.start_on(SocketAddr::new(ip, POD_H2C_PORT)).await {
            Ok(task) => activator_tasks.push(task),
            Err(e) => {
                for task in &activator_tasks {
                    task.abort();
                }
                return Err(e)
                    .with_context(|| format!("activator {pod_name} on {ip}:{POD_H2C_PORT}"));
            }
        }
        let activator_log = LogFeed::new();
        activator_log.push(format!(
            "{{\"severity\":\"INFO\",\"message\":\"lab activator {pod_name} serving on {ip}:{POD_PORT} (mesh-compatibility-mode {mesh_mode:?})\"}}"
        ));
        Ok((
            envoy,
            activator,
            activator_tasks,
            sidecar_log,
            activator_log,
        ))
    }

    fn disconnect(&self, slot: &Arc<SidecarSlot>) {
        self.proxies
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| !Arc::ptr_eq(s, slot));
    }

    /// Stops a pod's processes and forgets it (its API object is the caller's).
    pub async fn stop(&self, pod_name: &str) {
        let Some(pod) = self.find(pod_name) else {
            return;
        };
        self.running
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| p.pod_name != pod_name);
        for task in &pod.activator_tasks {
            task.abort();
        }
        pod.envoy.lock().await.stop().await;
        self.disconnect(&pod.slot);
    }

    /// Stops every pod (the lab's shutdown).
    pub async fn stop_all(&self) {
        for pod in self.list() {
            self.stop(&pod.pod_name).await;
        }
    }

    /// The data plane's view follows at once (the ingress's and activators' informers would
    /// within their debounce).
    fn refresh_routing(&self) {
        let next = routing::from_store(&self.store);
        *self.routing.write().unwrap_or_else(|e| e.into_inner()) = next;
    }

    /// An address of the activator range no running pod has.
    fn free_ip(&self) -> IpAddr {
        let used: Vec<IpAddr> = self.list().iter().map(|p| p.ip).collect();
        let start = self
            .next_ip
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .max(used.len());
        let (index, ip) = (start..start + ACTIVATOR_ADDRESSES)
            .map(|i| (i, self.layout.activator_ip(i % ACTIVATOR_ADDRESSES)))
            .find(|(_, ip)| !used.contains(ip))
            .unwrap_or((start, self.layout.activator_ip(0)));
        self.next_ip
            .store(index + 1, std::sync::atomic::Ordering::Relaxed);
        ip
    }

    /// Creates one pod from the Deployment's current template, starts it and, once it is ready,
    /// puts it in the Endpoints.
    async fn create_pod(&self, deployment: &Value) -> anyhow::Result<()> {
        let hash = deployment::template_hash(&deployment["spec"]["template"]);
        let name = format!("{DEPLOYMENT}-{hash}-{}", deployment::random_suffix());
        let ip = self.free_ip();
        let injection_enabled = namespace_injection_enabled(&self.store);
        let pod = seed::activator_pod(
            deployment,
            &name,
            ip,
            self.native_sidecars,
            injection_enabled,
            false,
        );
        put(&self.store, pod.clone())?;
        if let Err(e) = self.start(&pod).await {
            // The lab replaces the pod rather than restarting its containers in place.
            if let Some(rt) = find_by_kind("v1", "Pod") {
                let _ = self.store.delete(rt, Some(SYSTEM_NAMESPACE), &name);
            }
            let _ = std::fs::remove_dir_all(self.state_dir.join("sidecars").join(&name));
            return Err(e);
        }
        edit(&self.store, "v1", "Pod", &name, Some("status"), |p| {
            let ready = seed::activator_pod_status(p, ip, true);
            p["status"] = ready;
        })?;
        edit_activator_endpoints(&self.store, |addresses| {
            addresses.push((name.clone(), ip));
        })?;
        self.refresh_routing();
        Ok(())
    }

    /// Takes a pod out of the Endpoints, drains it, stops it and deletes its object.
    async fn remove_pod(&self, name: &str) -> anyhow::Result<()> {
        let _ = edit(&self.store, "v1", "Pod", name, None, |p| {
            p["metadata"]["deletionTimestamp"] = json!(crate::kube_api::store::now_rfc3339());
            p["metadata"]["deletionGracePeriodSeconds"] =
                p["spec"]["terminationGracePeriodSeconds"].clone();
        });
        edit_activator_endpoints(&self.store, |addresses| {
            addresses.retain(|(pod, _)| pod != name);
        })?;
        self.refresh_routing();
        if let Some(pod) = self.find(name) {
            let deadline = Instant::now() + DRAIN_LIMIT;
            tokio::time::sleep(DRAIN_QUIET).await;
            while !pod.activator.drained(DRAIN_QUIET) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.stop(name).await;
        if let Some(rt) = find_by_kind("v1", "Pod") {
            let _ = self.store.delete(rt, Some(SYSTEM_NAMESPACE), name);
        }
        let _ = std::fs::remove_dir_all(self.state_dir.join("sidecars").join(name));
        let _ = std::fs::remove_dir_all(self.state_dir.join("mounts").join(name));
        Ok(())
    }

    /// Runs the Deployment controller until aborted: on every API change, steps the rollout
    /// until the pods match the template.
    pub fn spawn_controller(self: &Arc<Self>) -> JoinHandle<()> {
        let me = Arc::clone(self);
        let mut events = me.store.subscribe();
        tokio::spawn(async move {
            let mut failed: Option<StartFailure> = None;
            loop {
                match me.reconcile(&mut failed).await {
                    Some(retry_in) => {
                        tokio::select! {
                            changed = kube_api::next_change(&mut events, DEBOUNCE) => {
                                if !changed {
                                    return;
                                }
                            }
                            () = tokio::time::sleep(retry_in) => {}
                        }
                    }
                    None => {
                        if !kube_api::next_change(&mut events, DEBOUNCE).await {
                            return;
                        }
                    }
                }
            }
        })
    }

    /// Steps the rollout as far as it goes now; `Some(delay)`: a pod failed to start and the
    /// next attempt is due after `delay`.
    async fn reconcile(&self, failed: &mut Option<StartFailure>) -> Option<Duration> {
        loop {
            let rt = find_by_kind("apps/v1", "Deployment")?;
            let live = self.store.get(rt, Some(SYSTEM_NAMESPACE), DEPLOYMENT)?;
            let hash = deployment::template_hash(&live["spec"]["template"]);
            let replicas = deployment::desired_replicas(&live);
            let (surge, unavailable) = deployment::fenceposts(&live, replicas);
            let owned: Vec<OwnedPod> = self
                .list()
                .iter()
                .map(|p| OwnedPod {
                    name: p.pod_name.clone(),
                    current: p.template_hash == hash,
                    available: true,
                })
                .collect();
            let _ = self.store.edit(
                rt,
                Some(SYSTEM_NAMESPACE),
                DEPLOYMENT,
                Some("status"),
                |d| {
                    let status = deployment::status(d, &owned);
                    if strip_times(&d["status"]) != strip_times(&status) {
                        d["status"] = status;
                    }
                },
            );
            match deployment::next_step(replicas, surge, unavailable, &owned) {
                Step::Create => {
                    if let Some(failure) = failed.as_ref().filter(|f| f.hash == hash) {
                        let now = Instant::now();
                        if now < failure.retry_at {
                            return Some(failure.retry_at - now);
                        }
                    }
                    match self.create_pod(&live).await {
                        Ok(()) => *failed = None,
                        Err(e) => {
                            let attempts = match failed.as_ref() {
                                Some(f) if f.hash == hash => f.attempts + 1,
                                _ => 1,
                            };
                            let delay = (RESTART_BACKOFF * 2u32.pow(attempts.min(8) - 1))
                                .min(RESTART_BACKOFF_LIMIT);
                            tracing::error!(
                                "activator rollout: a new pod did not start (attempt {attempts}, next in {delay:?}): {e:#}"
                            );
                            *failed = Some(StartFailure {
                                hash,
                                attempts,
                                retry_at: Instant::now() + delay,
                            });
                            return Some(delay);
                        }
                    }
                }
                Step::Remove(name) => {
                    if let Err(e) = self.remove_pod(&name).await {
                        tracing::error!("activator rollout: cannot remove {name}: {e:#}");
                        return None;
                    }
                }
                Step::Done => return None,
            }
        }
    }
}

/// A status without its timestamps, so an unchanged status is not rewritten.
fn strip_times(status: &Value) -> Value {
    let mut s = status.clone();
    for c in s["conditions"].as_array_mut().into_iter().flatten() {
        if let Some(map) = c.as_object_mut() {
            map.remove("lastUpdateTime");
            map.remove("lastTransitionTime");
        }
    }
    s
}

fn namespace_injection_enabled(store: &Store) -> bool {
    find_by_kind("v1", "Namespace")
        .and_then(|rt| store.get(rt, None, SYSTEM_NAMESPACE))
        .is_some_and(|ns| ns["metadata"]["labels"]["istio-injection"] == "enabled")
}

fn edit(
    store: &Store,
    api_version: &str,
    kind: &str,
    name: &str,
    subresource: Option<&str>,
    change: impl FnOnce(&mut Value),
) -> anyhow::Result<()> {
    let rt = find_by_kind(api_version, kind).with_context(|| format!("{kind} not served"))?;
    store
        .edit(rt, Some(SYSTEM_NAMESPACE), name, subresource, change)
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Rewrites the ready addresses of `activator-service` and of every proxy-mode public Endpoints
/// (the ones holding activator pods, as the SKS reconciler copies them) with `change` applied to
/// the activator list.
fn edit_activator_endpoints(
    store: &Store,
    change: impl Fn(&mut Vec<(String, IpAddr)>),
) -> anyhow::Result<()> {
    let rt = find_by_kind("v1", "Endpoints").context("Endpoints not served")?;
    let (all, _) = store
        .list(rt, None, None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for endpoints in all {
        let meta = &endpoints["metadata"];
        let namespace = meta["namespace"].as_str().unwrap_or_default().to_owned();
        let name = meta["name"].as_str().unwrap_or_default().to_owned();
        let is_service = namespace == SYSTEM_NAMESPACE && name == ACTIVATOR_SERVICE;
        let holds_activators = meta["labels"]["networking.internal.knative.dev/serviceType"]
            == "Public"
            && endpoints["subsets"][0]["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| {
                    a["targetRef"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("activator-"))
                });
        if !is_service && !holds_activators {
            continue;
        }
        let _ = store.edit(rt, Some(&namespace), &name, None, |e| {
            if e["subsets"].as_array().is_none_or(|s| s.is_empty()) {
                return;
            }
            let mut list: Vec<(String, IpAddr)> = e["subsets"][0]["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| {
                    Some((
                        a["targetRef"]["name"].as_str()?.to_owned(),
                        a["ip"].as_str()?.parse().ok()?,
                    ))
                })
                .collect();
            change(&mut list);
            let addresses: Vec<Value> = list
                .iter()
                .map(|(pod, ip)| {
                    json!({"ip": ip.to_string(), "nodeName": "lab-node",
                           "targetRef": {"kind": "Pod", "name": pod, "namespace": SYSTEM_NAMESPACE}})
                })
                .collect();
            e["subsets"][0]["addresses"] = json!(addresses);
        });
    }
    Ok(())
}
