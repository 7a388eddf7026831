//! Where the UI's data comes from, each a task that only sends [`Event`]s: kube-rs watchers (with
//! backoff) for activator pods and revision endpoints, a poller of each sidecar's admin API
//! through a port-forward (at most once a second per pod), and a follower of each sidecar's log
//! for decision lines. None of them runs on the UI task.

use super::event::Event;
use super::state::{
    ActivatorRow, ConfigSample, Connection, Counters, DecisionLogging, PieceRow, PieceStatus,
    PodRow, RevisionRow,
};
use crate::affinity::decisions::DecisionLine;
use crate::cluster::lean::{LeanEndpoints, LeanPod};
use crate::envoy::admin::Sidecar;
use crate::envoy::shape::ConfigShape;
use crate::install::render::{MODULE_LABEL, WASM_PLUGIN};
use crate::install::status::{self, PieceState};
use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub type Sender = mpsc::Sender<Event>;

/// Seconds since the UI started.
pub fn seconds(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

/// Starts every source; the tasks end when the UI drops the receiver.
pub fn spawn(client: Client, namespace: &str, tx: Sender, start: Instant) -> Vec<JoinHandle<()>> {
    let (names_tx, names_rx) = watch::channel(Vec::<String>::new());
    let (ips_tx, ips_rx) = watch::channel(KnownIps::default());
    vec![
        tokio::spawn(poll_install(
            client.clone(),
            namespace.to_owned(),
            tx.clone(),
            ips_rx,
        )),
        tokio::spawn(watch_activators(
            client.clone(),
            namespace.to_owned(),
            tx.clone(),
            names_tx,
            ips_tx.clone(),
            start,
        )),
        tokio::spawn(watch_revisions(client.clone(), tx.clone(), ips_tx, start)),
        tokio::spawn(poll_sidecars(
            client.clone(),
            namespace.to_owned(),
            tx.clone(),
            names_rx.clone(),
            start,
        )),
        tokio::spawn(follow_logs(
            client.clone(),
            namespace.to_owned(),
            tx.clone(),
            names_rx,
        )),
        tokio::spawn(poll_findings(
            client.clone(),
            namespace.to_owned(),
            tx.clone(),
        )),
        tokio::spawn(watch_api_health(client, tx, start)),
    ]
}

/// How often the findings are read: they list Revisions and PeerAuthentications cluster-wide, and
/// the conditions they look for change when someone reconfigures the cluster, not every second.
const FINDINGS_INTERVAL: Duration = Duration::from_secs(30);

/// What in the cluster defeats kasi, at start and then every [`FINDINGS_INTERVAL`]. A read RBAC
/// refuses is a line in the findings panel, not a crash.
async fn poll_findings(client: Client, namespace: String, tx: Sender) {
    let mut interval = tokio::time::interval(FINDINGS_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        let found = crate::install::findings::collect(&client, &namespace).await;
        if tx.send(Event::Findings(found)).await.is_err() {
            return;
        }
    }
}

/// Reports a watch failure: a 403 names the permission (`what`, e.g. `list/watch pods in
/// knative-serving`) and leaves the rest running; anything else marks the data stale.
async fn report_error(tx: &Sender, what: &str, error: &watcher::Error, start: Instant) {
    let source = match error {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => Some(e),
        _ => None,
    };
    if source.is_some_and(is_forbidden) {
        let _ = tx.send(Event::Forbidden(what.to_owned())).await;
    } else {
        let reason =
            crate::cluster::exec::describe(error).unwrap_or_else(|| short(&error.to_string()));
        let _ = tx
            .send(Event::Connection(Connection::Stale {
                since: seconds(start),
                reason,
            }))
            .await;
    }
}

/// RBAC's refusal: a 403 Status, or a 403 answer to a port-forward's upgrade.
pub fn is_forbidden(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.is_forbidden(),
        kube::Error::UpgradeConnection(kube::client::UpgradeConnectionError::ProtocolSwitch(
            code,
        )) => code.as_u16() == 403,
        _ => false,
    }
}

/// [`is_forbidden`] anywhere in an error's chain.
fn chain_is_forbidden(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|e| e.downcast_ref::<kube::Error>())
        .any(is_forbidden)
}

/// How often the API server is asked whether it is there. Watches alone cannot tell a quiet
/// cluster from a dead one, nor (after a watch resumes from its resourceVersion) a healed one.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// Asks the API server for its version every [`HEALTH_INTERVAL`]: a failure marks the data stale
/// at once, an answer clears the banner; the watchers reconnect on their own (with backoff).
async fn watch_api_health(client: Client, tx: Sender, start: Instant) {
    let mut interval = tokio::time::interval(HEALTH_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        let event = match tokio::time::timeout(HEALTH_INTERVAL, client.apiserver_version()).await {
            Ok(Ok(_)) => Event::ApiReachable,
            Ok(Err(e)) => Event::Connection(Connection::Stale {
                since: seconds(start),
                reason: crate::cluster::exec::describe(&e).unwrap_or_else(|| short(&e.to_string())),
            }),
            Err(_) => Event::Connection(Connection::Stale {
                since: seconds(start),
                reason: format!("the API server did not answer within {HEALTH_INTERVAL:?}"),
            }),
        };
        if tx.send(event).await.is_err() {
            return;
        }
    }
}

fn short(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(80).collect()
}

/// Changes are folded: the UI gets the whole list at most this often, so a 5,000-object initial
/// list or a burst of churn costs a few messages, not one per object.
const COALESCE: Duration = Duration::from_millis(100);

/// Watches `api` (kube-rs watcher with backoff), keeps only each object's row (`to_row`: the
/// objects themselves are dropped on arrival, which is most of a reflector's memory), and hands
/// the rows to `emit` right after the initial list and then at most every [`COALESCE`].
async fn watch_objects<K, R>(
    api: Api<K>,
    config: watcher::Config,
    what: String,
    tx: Sender,
    start: Instant,
    to_row: impl Fn(&K) -> R + Send,
    mut emit: impl FnMut(&BTreeMap<(String, String), R>) -> Option<Event> + Send,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
    R: Send,
{
    let key = |o: &K| {
        (
            o.meta().namespace.clone().unwrap_or_default(),
            o.meta().name.clone().unwrap_or_default(),
        )
    };
    let mut objects: BTreeMap<(String, String), R> = BTreeMap::new();
    let mut stream = watcher(api, config).default_backoff().boxed();
    let (mut listed, mut dirty) = (false, false);
    let mut flush = tokio::time::interval(COALESCE);
    let mut last_emit = Instant::now() - COALESCE;
    loop {
        tokio::select! {
            event = stream.next() => {
                let Some(event) = event else { return };
                match event {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                        objects.insert(key(&o), to_row(&o));
                    }
                    Ok(watcher::Event::Delete(o)) => {
                        objects.remove(&key(&o));
                    }
                    Ok(watcher::Event::Init) => {
                        objects.clear();
                        listed = false;
                    }
                    Ok(watcher::Event::InitDone) => {
                        listed = true;
                        let _ = tx.send(Event::Connection(Connection::Live)).await;
                    }
                    Err(e) => {
                        report_error(&tx, &what, &e, start).await;
                        continue;
                    }
                }
                dirty = true;
                if !listed {
                    continue;
                }
            }
            _ = flush.tick() => {}
        }
        if dirty && listed && last_emit.elapsed() >= COALESCE {
            dirty = false;
            last_emit = Instant::now();
            if let Some(event) = emit(&objects) {
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}

/// Pod IPs the watchers have seen: what the install status needs to work out the expected
/// `allowed_cidrs` without listing every pod itself. `None` until that watcher has listed.
#[derive(Debug, Clone, Default)]
struct KnownIps {
    activators: Option<Vec<IpAddr>>,
    revisions: Option<Vec<IpAddr>>,
}

async fn watch_activators(
    client: Client,
    namespace: String,
    tx: Sender,
    names: watch::Sender<Vec<String>>,
    ips: watch::Sender<KnownIps>,
    start: Instant,
) {
    let api: Api<LeanPod> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().labels("app=activator");
    watch_objects(
        api,
        config,
        format!("list/watch pods in {namespace}"),
        tx,
        start,
        activator_row,
        move |pods| {
            let rows: Vec<ActivatorRow> = pods.values().cloned().collect();
            let _ = names.send(rows.iter().map(|r| r.pod.clone()).collect());
            let pod_ips = rows.iter().filter_map(|r| r.ip.parse().ok()).collect();
            ips.send_modify(|known| known.activators = Some(pod_ips));
            Some(Event::Activators(rows))
        },
    )
    .await;
}

fn activator_row(pod: &LeanPod) -> ActivatorRow {
    let status = pod.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let sidecar_injected = pod.spec.as_ref().is_some_and(|s| s.has_istio_proxy());
    let module = pod
        .meta()
        .labels
        .as_ref()
        .and_then(|labels| labels.get(MODULE_LABEL))
        .cloned();
    ActivatorRow {
        pod: pod.meta().name.clone().unwrap_or_default(),
        ip: status.pod_ip.unwrap_or_default(),
        ready,
        sidecar_injected,
        module,
        ..ActivatorRow::default()
    }
}

async fn watch_revisions(client: Client, tx: Sender, ips: watch::Sender<KnownIps>, start: Instant) {
    let api: Api<LeanEndpoints> = Api::all(client);
    let config =
        watcher::Config::default().labels("networking.internal.knative.dev/serviceType=Private");
    watch_objects(
        api,
        config,
        "list/watch endpoints in all namespaces".into(),
        tx,
        start,
        revision_row,
        move |rows| {
            let pod_ips = rows
                .values()
                .flat_map(|r| &r.pods)
                .filter_map(|p| p.address.parse::<std::net::SocketAddr>().ok())
                .map(|a| a.ip())
                .collect();
            ips.send_modify(|known| known.revisions = Some(pod_ips));
            Some(Event::Revisions(rows.values().cloned().collect()))
        },
    )
    .await;
}

fn revision_row(endpoints: &LeanEndpoints) -> RevisionRow {
    let labels = endpoints.meta().labels.clone().unwrap_or_default();
    let name = labels
        .get("serving.knative.dev/revision")
        .cloned()
        .unwrap_or_else(|| endpoints.meta().name.clone().unwrap_or_default());
    let mut pods = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        let port = subset
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some("http"))
            .map_or(8012, |p| p.port);
        for (addresses, ready) in [
            (&subset.addresses, true),
            (&subset.not_ready_addresses, false),
        ] {
            for address in addresses.iter().flatten() {
                pods.push(PodRow {
                    name: address
                        .target_ref
                        .as_ref()
                        .and_then(|t| t.name.clone())
                        .unwrap_or_else(|| address.ip.clone()),
                    address: format!("{}:{port}", address.ip),
                    ready,
                });
            }
        }
    }
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    RevisionRow {
        namespace: endpoints.meta().namespace.clone().unwrap_or_default(),
        name,
        pods,
    }
}

/// Every few seconds: which pieces of the bundle are present, missing or drifted, and what of
/// Istio and Knative the cluster has. A handful of GETs: pod IPs come from the watchers, and the
/// sidecars are read by [`poll_sidecars`] alone.
async fn poll_install(
    client: Client,
    namespace: String,
    tx: Sender,
    known: watch::Receiver<KnownIps>,
) {
    let mut interval = tokio::time::interval(Duration::from_secs(3));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = Instant::now();
    loop {
        interval.tick().await;
        let (istio, knative) = platform(&client, &namespace).await;
        if tx.send(Event::Platform { istio, knative }).await.is_err() {
            return;
        }
        let ips: Vec<IpAddr> = {
            let known = known.borrow();
            // Before the watchers have listed, the expected CIDRs would be wrong and every piece
            // would flash "drifted"; a watcher that cannot list (403) must not hold this forever.
            let listed = known.activators.is_some() && known.revisions.is_some();
            if !listed && started.elapsed() < Duration::from_secs(10) {
                continue;
            }
            let (activators, revisions) = (known.activators.iter(), known.revisions.iter());
            activators.chain(revisions).flatten().copied().collect()
        };
        let pieces = status::pieces(&client, &namespace, status::PodIps::Known(&ips)).await;
        match pieces.map(|(pieces, _)| pieces) {
            Ok(pieces) => {
                let rows = pieces
                    .into_iter()
                    .map(|p| PieceRow {
                        status: match p.state {
                            PieceState::Present => PieceStatus::Present,
                            PieceState::Missing => PieceStatus::Missing,
                            PieceState::Drifted => PieceStatus::Drifted(p.differences),
                        },
                        id: p.id,
                        title: p.title,
                        kind: p.kind,
                        name: p.name,
                    })
                    .collect();
                let _ = tx.send(Event::Pieces(rows)).await;
            }
            Err(crate::install::InstallError::Forbidden(message)) => {
                let what = format!("read every piece of the install ({})", short(&message));
                let _ = tx.send(Event::Forbidden(what)).await;
            }
            Err(e) => {
                let _ = tx
                    .send(Event::Message(format!("install status: {e}")))
                    .await;
            }
        }
    }
}

/// "CRDs present" or what is missing; the Knative version from the activator's labels.
async fn platform(client: &Client, namespace: &str) -> (Option<String>, Option<String>) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut missing = Vec::new();
    for crd in crate::install::prereqs::ISTIO_CRDS {
        if !matches!(crds.get_opt(crd).await, Ok(Some(_))) {
            missing.push(crd.split('.').next().unwrap_or(crd));
        }
    }
    let istio = if missing.is_empty() {
        "CRDs present (Sidecar, EnvoyFilter, WasmPlugin)".to_owned()
    } else {
        format!("missing CRDs: {}", missing.join(", "))
    };
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), namespace);
    let knative = match deployments.get_opt("activator").await {
        Ok(Some(d)) => {
            let version = d
                .meta()
                .labels
                .as_ref()
                .and_then(|l| l.get("app.kubernetes.io/version").cloned())
                .unwrap_or_else(|| "unknown version".into());
            let replicas = d.spec.replicas.unwrap_or(1);
            format!("serving {version}, activator ×{replicas}")
        }
        Ok(None) => format!("no activator Deployment in {namespace}"),
        Err(e) => format!("cannot read: {}", short(&e.to_string())),
    };
    (Some(istio), Some(knative))
}

/// How often a sidecar's log levels are read again without a reason (someone may have changed
/// them by other means); a failed read is retried sooner.
const LEVELS_REFRESH: Duration = Duration::from_secs(60);
const LEVELS_RETRY: Duration = Duration::from_secs(5);

/// What the poller remembers of one sidecar between rounds, to read its log levels only when a
/// reason to: it appeared, restarted (its uptime went down: Envoy starts with the levels of its
/// command line), the last read failed, or a minute passed. kasi's own changes report the level
/// they leave.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct LevelsRead {
    /// When the levels were last read, and whether that worked.
    at: Option<(Instant, bool)>,
    /// Envoy's `server.uptime` at the latest counters reading. Envoy updates it when it flushes
    /// stats (every 5 s by default), so a restart in a sidecar's first seconds waits for the
    /// minute's refresh.
    uptime_s: Option<u64>,
}

impl LevelsRead {
    fn due(&self, uptime_s: Option<u64>, now: Instant) -> bool {
        let Some((at, ok)) = self.at else {
            return true;
        };
        let restarted =
            matches!((self.uptime_s, uptime_s), (Some(before), Some(after)) if after < before);
        let wait = if ok { LEVELS_REFRESH } else { LEVELS_RETRY };
        restarted || now.saturating_duration_since(at) >= wait
    }
}

/// Once a second, each activator's sidecar: config_dump size by section, and the filter's
/// counters; its `wasm` log level when [`LevelsRead::due`]. Sidecars are read concurrently so
/// one slow pod does not delay the others.
async fn poll_sidecars(
    client: Client,
    namespace: String,
    tx: Sender,
    names: watch::Receiver<Vec<String>>,
    start: Instant,
) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut levels: BTreeMap<String, LevelsRead> = BTreeMap::new();
    loop {
        interval.tick().await;
        let pods = names.borrow().clone();
        let reads = pods.into_iter().map(|pod| {
            let sidecar = Sidecar::new(client.clone(), &namespace, &pod);
            let tx = tx.clone();
            let mut read = levels.get(&pod).copied().unwrap_or_default();
            async move {
                let at = seconds(start);
                let dump = match sidecar.config_dump().await {
                    Err(e) if chain_is_forbidden(&e) => {
                        let what = format!("create pods/portforward in {}", sidecar.namespace);
                        let _ = tx.send(Event::Forbidden(what)).await;
                        return (pod, read);
                    }
                    dump => dump,
                };
                if let Ok(dump) = dump {
                    let size = |s: &str| dump.sections.get(s).copied().unwrap_or(0) as u64;
                    let sample = ConfigSample {
                        at,
                        listeners: size("listeners"),
                        clusters: size("clusters"),
                        routes: size("routes"),
                        endpoints: size("endpoints"),
                        secrets: size("secrets"),
                        cluster_count: dump.count("clusters") as u64,
                        listener_count: dump.count("listeners") as u64,
                    };
                    let loaded = sidecar.wasm_plugin_loaded(&dump, WASM_PLUGIN).await;
                    let decision_logging = loaded
                        .then(|| dump.wasm_plugin_config(&sidecar.namespace, WASM_PLUGIN))
                        .flatten()
                        .map(|config| DecisionLogging::of_plugin_config(&config));
                    let shape = ConfigShape::of(&dump, &sidecar.namespace, WASM_PLUGIN);
                    let _ = tx
                        .send(Event::Config {
                            sidecar: pod.clone(),
                            sample,
                            filter_loaded: loaded,
                            decision_logging,
                            shape,
                        })
                        .await;
                }
                let mut uptime_s = None;
                if let Ok(stats) = sidecar.kasi_counters().await {
                    uptime_s = stats.uptime_s;
                    let counters = Counters {
                        requests: stats.get("requests"),
                        cookie_routed: stats.get("cookie_routed"),
                        sticky_hits: stats.get("sticky_hits"),
                        rebinds: stats.get("rebinds"),
                        header_stripped: stats.get("header_stripped"),
                        rejected: stats.rejected_total(),
                        steer_failed: stats.get("steer_failed"),
                        mcp_not_found: stats.get("mcp_not_found"),
                    };
                    let _ = tx
                        .send(Event::Counters {
                            sidecar: pod.clone(),
                            at,
                            counters,
                            memory: stats.memory_allocated,
                        })
                        .await;
                }
                if read.due(uptime_s, Instant::now()) {
                    let level = sidecar
                        .log_levels()
                        .await
                        .map(|mut levels| levels.remove(crate::envoy::admin::WASM_LOGGER));
                    read.at = Some((Instant::now(), level.is_ok()));
                    if let Ok(Some(level)) = level {
                        let event = Event::WasmLevel {
                            sidecar: pod.clone(),
                            level,
                        };
                        let _ = tx.send(event).await;
                    }
                }
                read.uptime_s = uptime_s.or(read.uptime_s);
                (pod, read)
            }
        });
        levels = futures::future::join_all(reads).await.into_iter().collect();
        if tx.is_closed() {
            return;
        }
    }
}

/// Follows each activator's istio-proxy log for decision lines; a follower per pod, started when
/// the pod appears and restarted (after a pause) when its stream ends.
async fn follow_logs(
    client: Client,
    namespace: String,
    tx: Sender,
    mut names: watch::Receiver<Vec<String>>,
) {
    let mut followers: BTreeMap<String, JoinHandle<()>> = BTreeMap::new();
    loop {
        let current: BTreeSet<String> = names.borrow_and_update().iter().cloned().collect();
        followers.retain(|pod, task| {
            let keep = current.contains(pod) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for pod in current {
            if let std::collections::btree_map::Entry::Vacant(slot) = followers.entry(pod) {
                let pod = slot.key().clone();
                let follower = follow_one(client.clone(), namespace.clone(), pod, tx.clone());
                slot.insert(tokio::spawn(follower));
            }
        }
        tokio::select! {
            changed = names.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        if tx.is_closed() {
            return;
        }
    }
}

async fn follow_one(client: Client, namespace: String, pod: String, tx: Sender) {
    let api: Api<Pod> = Api::namespaced(client, &namespace);
    let params = LogParams {
        container: Some("istio-proxy".into()),
        follow: true,
        since_seconds: Some(300),
        ..LogParams::default()
    };
    let stream = match api.log_stream(&pod, &params).await {
        Ok(stream) => stream,
        Err(e) => {
            if is_forbidden(&e) {
                let what = format!("get pods/log in {namespace}");
                let _ = tx.send(Event::Forbidden(what)).await;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            return;
        }
    };
    let mut lines = stream.lines();
    while let Ok(Some(line)) = lines.try_next().await {
        if let Some(decision) = DecisionLine::parse(&line) {
            if tx
                .send(Event::Decision {
                    sidecar: pod.clone(),
                    line: decision,
                })
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_are_read_on_appearance_restart_failure_and_each_minute() {
        let t0 = Instant::now();
        let secs = |s: u64| t0 + Duration::from_secs(s);
        // A sidecar just seen: read now.
        assert!(LevelsRead::default().due(Some(30), t0));
        // Read a moment ago, same Envoy: not again.
        let read = LevelsRead {
            at: Some((t0, true)),
            uptime_s: Some(30),
        };
        assert!(!read.due(Some(31), secs(1)));
        assert!(!read.due(None, secs(59)));
        // Its uptime went down: Envoy restarted with its command line's levels.
        assert!(read.due(Some(2), secs(1)));
        // A minute later, in case someone changed them by other means.
        assert!(read.due(Some(90), secs(60)));
        // A failed read is retried after a few seconds.
        let failed = LevelsRead {
            at: Some((t0, false)),
            uptime_s: None,
        };
        assert!(!failed.due(None, secs(1)));
        assert!(failed.due(None, secs(5)));
    }
}
