//! Starting, running and stopping one lab: the API server, the activators with their real Envoy
//! sidecars, the pods of the revisions that serve (`hello`, `hello-h2c`, `mcp`), the ingress,
//! and the control plane (istiod's push, the activators' informers).

use crate::data_plane::activator_pods::{ActivatorPod, ActivatorPods};
use crate::data_plane::envoy::{self, find_envoy};
use crate::data_plane::ingress::Ingress;
use crate::data_plane::kube_proxy;
use crate::data_plane::layout::{Layout, POD_PORT, SIDECAR_ADMIN_PORT};
use crate::data_plane::pods::{PodApp, PodServer};
use crate::istiod::push;
use crate::knative;
use crate::knative::revisions;
use crate::knative::routing::Routing;
use crate::knative::seed::{
    self, LabService, SeedSpec, Workload, APP_NAMESPACE, HELLO_HOST, HELLO_REVISION, LAB_SERVICES,
    SYSTEM_NAMESPACE,
};
use crate::kube_api::{self, LabHooks, Store};
use anyhow::{bail, Context as _};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// What to start.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Other Knative services, there to make the unscoped sidecar config as big as a cluster's.
    pub services: usize,
    pub activators: usize,
    pub hello_pods: usize,
    /// Pods of `hello-h2c`, the h2c revision.
    pub h2c_pods: usize,
    /// Pods of `mcp`, the stateful MCP server.
    pub mcp_pods: usize,
    /// Keep state (kubeconfig, Envoy config and logs) here instead of a temporary directory.
    pub state_dir: Option<PathBuf>,
    pub envoy: Option<PathBuf>,
    /// Register Istio's CRDs (a lab without them is how `kasi apply` meets a cluster without Istio).
    pub istio_crds: bool,
    /// istio-proxy in the activator pods' `containers`, as Istio before 1.27 (or on Kubernetes
    /// before 1.33) injects it; by default it is a native sidecar in `initContainers`.
    pub classic_sidecars: bool,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            services: 150,
            activators: 2,
            hello_pods: 3,
            h2c_pods: 3,
            mcp_pods: 3,
            state_dir: None,
            envoy: None,
            istio_crds: true,
            classic_sidecars: false,
        }
    }
}

/// The state directory: removed at the end unless the user named it.
enum StateDir {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl StateDir {
    fn path(&self) -> &Path {
        match self {
            StateDir::Temporary(t) => t.path(),
            StateDir::Kept(p) => p,
        }
    }
}

/// A running lab.
pub struct Lab {
    pub layout: Layout,
    pub store: Store,
    state: StateDir,
    kubeconfig: PathBuf,
    api_url: String,
    ingress_url: String,
    /// The activator Deployment's pods, as its rollouts leave them.
    pub activator_pods: Arc<ActivatorPods>,
    /// The serving revisions' pods by name.
    pods: tokio::sync::Mutex<BTreeMap<String, LabPod>>,
    pod_addrs: Arc<RwLock<BTreeMap<String, SocketAddr>>>,
    pub routing: Arc<RwLock<Routing>>,
    tasks: Vec<JoinHandle<()>>,
}

/// A running (or stopped) revision pod and the lab service it belongs to.
struct LabPod {
    service: &'static LabService,
    server: PodServer,
}

/// What a lab service's pods run.
fn pod_app(service: &LabService) -> PodApp {
    match service.workload {
        Workload::Echo => PodApp::Echo,
        Workload::Mcp => {
            // Its Route's names, and loopback for a `kubectl port-forward` to the pod.
            let mut allowed_hosts = service.hosts();
            allowed_hosts.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
            PodApp::Mcp { allowed_hosts }
        }
    }
}

/// Starts a lab service's pod `index`.
async fn start_pod(
    layout: &Layout,
    service: &'static LabService,
    index: usize,
) -> anyhow::Result<(String, SocketAddr, LabPod)> {
    let name = service.pod_name(index);
    let addr = service.pod_addr(layout, index);
    let server = PodServer::start_app(&name, addr, pod_app(service))
        .await
        .with_context(|| format!("cannot listen on {addr} for pod {name}"))?;
    Ok((name, addr, LabPod { service, server }))
}

/// The lab's answers to `pods/log` and `pods/portforward`.
struct Hooks {
    activators: Arc<ActivatorPods>,
    pod_addrs: Arc<RwLock<BTreeMap<String, SocketAddr>>>,
}

impl LabHooks for Hooks {
    fn pod_log(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        follow: bool,
    ) -> Option<(String, Option<tokio::sync::mpsc::Receiver<String>>)> {
        if namespace == SYSTEM_NAMESPACE {
            let running = self.activators.find(pod)?;
            let feed = match container {
                Some("istio-proxy") => &running.sidecar_log,
                Some("activator") | None => &running.activator_log,
                Some(_) => return None,
            };
            return Some(if follow {
                let (text, rx) = feed.follow();
                (text, Some(rx))
            } else {
                (feed.text(), None)
            });
        }
        let known = self.pod_addrs.read().ok()?.contains_key(pod);
        known.then(|| (String::new(), None))
    }

    fn port_forward_target(&self, namespace: &str, pod: &str, port: u16) -> Option<SocketAddr> {
        if namespace == SYSTEM_NAMESPACE {
            let running = self.activators.find(pod)?;
            return match port {
                SIDECAR_ADMIN_PORT => Some(running.admin()),
                POD_PORT => Some(running.activator.listen),
                _ => None,
            };
        }
        let addr = *self.pod_addrs.read().ok()?.get(pod)?;
        (port == addr.port()).then_some(addr)
    }
}

impl Lab {
    /// Starts everything and returns once the ingress answers through the activators.
    pub async fn start(options: LabOptions) -> anyhow::Result<Lab> {
        let envoy_binary = find_envoy(options.envoy.as_deref())?;
        let state = match &options.state_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create --state-dir {}", dir.display()))?;
                StateDir::Kept(dir.clone())
            }
            None => StateDir::Temporary(tempfile::Builder::new().prefix("kasi-lab-").tempdir()?),
        };
        let layout = pick_layout()?;
        let spec = SeedSpec {
            layout,
            activators: options.activators,
            hello_pods: options.hello_pods,
            h2c_pods: options.h2c_pods,
            mcp_pods: options.mcp_pods,
            filler_services: options.services,
            istio_crds: options.istio_crds,
            native_sidecars: !options.classic_sidecars,
        };
        let store = Store::new();
        for object in seed::objects(&spec) {
            store
                .put(object)
                .map_err(|e| anyhow::anyhow!("seeding the lab: {e}"))?;
        }

        let routing = Arc::new(RwLock::new(Routing::default()));
        let mut tasks = Vec::new();
        let pod_addrs = Arc::new(RwLock::new(BTreeMap::new()));
        let mut pods = BTreeMap::new();
        for service in &LAB_SERVICES {
            for i in 0..spec.pods(service) {
                let (name, addr, pod) = start_pod(&layout, service, i).await?;
                pod_addrs
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(name.clone(), addr);
                pods.insert(name, pod);
            }
        }

        // The control plane, reacting to every change in the API: the activators' and the
        // ingress's informers refresh what Knative routes by, istiod pushes each connected
        // sidecar's config, and the Deployment controller rolls the activator pods.
        *routing.write().unwrap_or_else(|e| e.into_inner()) = knative::routing::from_store(&store);
        tasks.push(knative::routing::spawn(store.clone(), Arc::clone(&routing)));
        let activator_pods = ActivatorPods::new(
            store.clone(),
            envoy_binary,
            state.path().to_owned(),
            layout,
            Arc::clone(&routing),
            !options.classic_sidecars,
        );
        // The seeded pods exist in the API already: start what runs in them.
        for replica in 0..options.activators {
            let name = seed::activator_pod_name(replica);
            let pod = kube_api::find_by_kind("v1", "Pod")
                .and_then(|rt| store.get(rt, Some(SYSTEM_NAMESPACE), &name))
                .with_context(|| format!("the seed has no pod {name}"))?;
            activator_pods.start(&pod).await?;
        }
        tasks.push(push::spawn(
            store.clone(),
            Arc::clone(&activator_pods.proxies),
            state.path().to_owned(),
        ));
        tasks.push(activator_pods.spawn_controller());

        // kube-proxy for the serving revisions' private ClusterIPs.
        for service in &LAB_SERVICES {
            if let Some((cluster_ip, _)) = routing.read().ok().and_then(|r| {
                r.revision(APP_NAMESPACE, service.revision)
                    .and_then(|t| t.private_service.clone())
            }) {
                tasks.push(
                    kube_proxy::start(
                        cluster_ip,
                        APP_NAMESPACE.into(),
                        service.revision.into(),
                        Arc::clone(&routing),
                    )
                    .await?,
                );
            }
        }

        // API server.
        let hooks = Arc::new(Hooks {
            activators: Arc::clone(&activator_pods),
            pod_addrs: Arc::clone(&pod_addrs),
        });
        let api_listener =
            tokio::net::TcpListener::bind(SocketAddr::new(layout.front_ip(), 0)).await?;
        let api_url = format!("http://{}", api_listener.local_addr()?);
        let api_store = store.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = kube_api::serve(api_listener, api_store, hooks).await {
                tracing::error!("lab API server stopped: {e}");
            }
        }));
        let kubeconfig = state.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kube_api::kubeconfig_yaml(&api_url, "kasi-lab"))?;

        // Ingress.
        let ingress = Ingress::new(
            Arc::clone(&routing),
            APP_NAMESPACE,
            HELLO_REVISION,
            HELLO_HOST,
        );
        let (ingress_addr, ingress_task) =
            ingress.start(SocketAddr::new(layout.front_ip(), 0)).await?;
        tasks.push(ingress_task);

        let lab = Lab {
            layout,
            store,
            state,
            kubeconfig,
            api_url,
            ingress_url: format!("http://{ingress_addr}"),
            activator_pods,
            pods: tokio::sync::Mutex::new(pods),
            pod_addrs,
            routing,
            tasks,
        };
        lab.wait_until_serving().await?;
        Ok(lab)
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    pub fn ingress_url(&self) -> &str {
        &self.ingress_url
    }

    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// The activator pods running now, oldest first.
    pub fn activators(&self) -> Vec<Arc<ActivatorPod>> {
        self.activator_pods.list()
    }

    /// Admin API address of each activator's sidecar.
    pub fn sidecar_admins(&self) -> Vec<(String, SocketAddr)> {
        self.activators()
            .iter()
            .map(|a| (a.pod_name.clone(), a.admin()))
            .collect()
    }

    /// Process id of each activator's sidecar Envoy.
    pub async fn sidecar_pids(&self) -> Vec<(String, u32)> {
        let mut pids = Vec::new();
        for replica in &self.activators() {
            if let Some(pid) = replica.envoy.lock().await.pid() {
                pids.push((replica.pod_name.clone(), pid));
            }
        }
        pids
    }

    async fn wait_until_serving(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr: SocketAddr = self.ingress_url.trim_start_matches("http://").parse()?;
        loop {
            if let Ok((200, _)) = envoy::admin_get(addr, "/").await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the lab's ingress did not answer 200 through the activators within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops a revision pod (of `hello`, `hello-h2c` or `mcp`): its socket closes, what it held
    /// in memory is gone, and its endpoint goes not-ready, as when a container dies.
    pub async fn stop_pod(&self, name: &str) -> anyhow::Result<()> {
        let mut pods = self.pods.lock().await;
        let pod = pods
            .get_mut(name)
            .with_context(|| format!("no lab pod {name:?}"))?;
        pod.server.stop();
        revisions::set_pod_ready(&self.store, APP_NAMESPACE, name, false)?;
        self.refresh_routing();
        Ok(())
    }

    /// The data plane's view follows at once (the activators' informers would within their debounce), so
    /// code that stops a pod can rely on the endpoint being out of rotation when this returns.
    fn refresh_routing(&self) {
        let next = knative::routing::from_store(&self.store);
        *self.routing.write().unwrap_or_else(|e| e.into_inner()) = next;
    }

    /// Brings a stopped pod back (a new container: an MCP pod starts with no sessions).
    pub async fn restore_pod(&self, name: &str) -> anyhow::Result<()> {
        let mut pods = self.pods.lock().await;
        let pod = pods
            .get_mut(name)
            .with_context(|| format!("no lab pod {name:?}"))?;
        pod.server.restore().await?;
        revisions::set_pod_ready(&self.store, APP_NAMESPACE, name, true)?;
        self.refresh_routing();
        Ok(())
    }

    /// Names of the serving revisions' pods (`hello`'s first) and whether each is running.
    pub async fn pods(&self) -> Vec<(String, bool)> {
        self.pods
            .lock()
            .await
            .iter()
            .map(|(n, p)| (n.clone(), p.server.is_running()))
            .collect()
    }

    /// Names of one revision's pods and whether each is running.
    pub async fn revision_pods(&self, revision: &str) -> Vec<(String, bool)> {
        self.pods
            .lock()
            .await
            .iter()
            .filter(|(_, p)| p.service.revision == revision)
            .map(|(n, p)| (n.clone(), p.server.is_running()))
            .collect()
    }

    /// Scales the `hello` revision to `replicas` pods.
    pub async fn scale(&self, replicas: usize) -> anyhow::Result<()> {
        self.scale_revision(HELLO_REVISION, replicas).await
    }

    /// Scales a serving revision (`hello-00001`, `hello-h2c-00001`, `mcp-00001`) to `replicas`
    /// pods: new pods take the lowest free index, a scale-down removes the last by name.
    pub async fn scale_revision(&self, revision: &str, replicas: usize) -> anyhow::Result<()> {
        let service = LabService::by_revision(revision)
            .with_context(|| format!("no lab revision {revision:?} runs pods"))?;
        let mut pods = self.pods.lock().await;
        let count = |pods: &BTreeMap<String, LabPod>| {
            pods.values()
                .filter(|p| p.service.revision == revision)
                .count()
        };
        let mut index = 0;
        while count(&pods) < replicas {
            let name = service.pod_name(index);
            if !pods.contains_key(&name) {
                let (name, addr, pod) = start_pod(&self.layout, service, index).await?;
                pods.insert(name.clone(), pod);
                self.pod_addrs
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(name.clone(), addr);
                revisions::add_pod(&self.store, APP_NAMESPACE, revision, &name, addr.ip())?;
            }
            index += 1;
        }
        while count(&pods) > replicas {
            let Some(name) = pods
                .iter()
                .filter(|(_, p)| p.service.revision == revision)
                .map(|(n, _)| n.clone())
                .next_back()
            else {
                break;
            };
            if let Some(mut pod) = pods.remove(&name) {
                pod.server.stop();
            }
            self.pod_addrs
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&name);
            revisions::remove_pod(&self.store, APP_NAMESPACE, &name)?;
        }
        self.refresh_routing();
        Ok(())
    }

    /// Restarts one activator's Envoy (its sidecar), as `kubectl exec … pilot-agent request POST quitquitquit` would.
    pub async fn restart_sidecar(&self, replica: usize) -> anyhow::Result<()> {
        let activator = self
            .activators()
            .get(replica)
            .cloned()
            .with_context(|| format!("no activator replica {replica}"))?;
        let mut envoy = activator.envoy.lock().await;
        envoy.restart().await
    }

    /// Restarts the sidecar of the activator pod `pod_name`.
    pub async fn restart_sidecar_of(&self, pod_name: &str) -> anyhow::Result<()> {
        let activator = self
            .activator_pods
            .find(pod_name)
            .with_context(|| format!("no running activator pod {pod_name}"))?;
        let mut envoy = activator.envoy.lock().await;
        envoy.restart().await
    }

    /// Stops every process and task; removes the state unless `--state-dir` named it.
    /// Stops every process and task. The state directory goes when the lab is dropped (unless
    /// `--state-dir` named it).
    pub async fn shutdown(&self) {
        for task in &self.tasks {
            task.abort();
        }
        self.activator_pods.stop_all().await;
        self.pods.lock().await.clear();
    }
}

/// A random `127.S.0.0/16` whose addresses this machine lets us bind.
fn pick_layout() -> anyhow::Result<Layout> {
    for _ in 0..20 {
        let layout = Layout::random();
        let probe = SocketAddr::new(layout.activator_ip(0), SIDECAR_ADMIN_PORT);
        if TcpListener::bind(probe).is_ok() {
            return Ok(layout);
        }
    }
    bail!("cannot bind any 127.x.0.0/16 loopback address (the lab needs distinct 127.0.0.0/8 addresses, as Linux gives)")
}
