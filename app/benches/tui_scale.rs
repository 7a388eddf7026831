//! The terminal UI on a big cluster: 5,000 pods and 5,000 revision Endpoints in a Kubernetes API
//! (the lab's, in a separate process), churning 200 events/s. Prints p50/p99 frame time, events/s
//! handled, time to the first full table, and peak RSS — beside a plain kube-rs reflector of the
//! same objects, measured in the same run in a process of its own.
//!
//! `cargo bench -p kasi --bench tui_scale` (or `./dev bench`). Roles, chosen by the first argument:
//! no argument = the UI side (and the driver); `api` = the API server and churn; `reflector` = the
//! baseline.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod};
use kasi::tui::event::{self, Event};
use kasi::tui::state::AppState;
use kasi::tui::view::View;
use kasi::tui::{sources, views};
use kasi_lab::kube_api::{kubeconfig_yaml, serve, LabHooks, Store};
use kube::api::Api;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PODS: usize = 5_000;
const CHURN_PER_SECOND: u64 = 200;
const MEASURE: Duration = Duration::from_secs(10);

struct NoHooks;

/// No logs, no port-forwards: the benchmark is about watches.
impl LabHooks for NoHooks {}

fn endpoints(i: usize, ready: bool) -> serde_json::Value {
    let address = json!([{"ip": format!("10.{}.{}.{}", 100 + i / 65_000, (i / 250) % 250, i % 250 + 1), "targetRef": {"kind": "Pod", "name": format!("rev-{i:05}-pod"), "namespace": "apps"}}]);
    let mut subset = json!({"ports": [{"name": "http", "port": 8012, "protocol": "TCP"}]});
    subset[if ready {
        "addresses"
    } else {
        "notReadyAddresses"
    }] = address;
    json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": format!("rev-{i:05}-private"), "namespace": "apps",
            "labels": {"serving.knative.dev/revision": format!("rev-{i:05}"), "networking.internal.knative.dev/serviceType": "Private"}},
        "subsets": [subset]})
}

fn pod(i: usize) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("rev-{i:05}-pod"), "namespace": "apps", "labels": {"serving.knative.dev/revision": format!("rev-{i:05}")}},
        "spec": {"containers": [{"name": "user-container", "image": "x"}, {"name": "queue-proxy", "image": "y"}]},
        "status": {"phase": "Running", "podIP": "10.0.0.1"}})
}

/// The API process: seeds, serves, prints its kubeconfig path, then churns until killed.
async fn api_role() {
    let store = Store::new();
    for namespace in ["apps", "knative-serving"] {
        let _ = store
            .put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}));
    }
    for i in 0..PODS {
        store.put(pod(i)).expect("seed pod");
        store.put(endpoints(i, true)).expect("seed endpoints");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let kubeconfig =
        std::env::temp_dir().join(format!("kasi-bench-{}.kubeconfig", std::process::id()));
    std::fs::write(&kubeconfig, kubeconfig_yaml(&url, "bench")).unwrap();
    let server_store = store.clone();
    tokio::spawn(async move { serve(listener, server_store, Arc::new(NoHooks)).await });
    println!("{}", kubeconfig.display());
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / CHURN_PER_SECOND));
    let mut n = 0usize;
    loop {
        tick.tick().await;
        // Flip one revision's pod between ready and not ready.
        let _ = store.put(endpoints(n % PODS, (n / PODS) % 2 == 1));
        n += 1;
    }
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

async fn client(kubeconfig: &str) -> kube::Client {
    let config = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// The baseline: what a plain kube-rs reflector of the same pods and endpoints holds.
async fn reflector_role(kubeconfig: String) {
    let client = client(&kubeconfig).await;
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (eps, ep_writer) = reflector::store::<Endpoints>();
    let pod_stream = reflector(
        pod_writer,
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()),
    )
    .applied_objects();
    let ep_stream = reflector(
        ep_writer,
        watcher(Api::<Endpoints>::all(client), watcher::Config::default()),
    )
    .applied_objects();
    let started = Instant::now();
    let mut pod_stream = pod_stream.boxed();
    let mut ep_stream = ep_stream.boxed();
    let mut first_full = None;
    while started.elapsed() < MEASURE {
        tokio::select! {
            _ = pod_stream.next() => {}
            _ = ep_stream.next() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        if first_full.is_none() && pods.state().len() >= PODS && eps.state().len() >= PODS {
            first_full = Some(started.elapsed());
        }
    }
    println!(
        "{:.3} {:.1}",
        first_full.map_or(f64::NAN, |d| d.as_secs_f64()),
        peak_rss_mib()
    );
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

/// The UI side: the real sources feeding the real state and views, drawn to an in-memory
/// terminal of a typical size at the UI's frame cadence.
async fn ui_role(kubeconfig: String) -> (Vec<f64>, f64, Option<Duration>, f64) {
    let client = client(&kubeconfig).await;
    let start = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
    let tasks = sources::spawn(client, "knative-serving", tx, start);
    let mut terminal = Terminal::new(TestBackend::new(180, 50)).unwrap();
    let mut state = AppState {
        view: View::Endpoints,
        ..AppState::default()
    };
    let mut frames = Vec::new();
    let (mut events, mut first_full) = (0u64, None);
    let mut last_draw = Instant::now();
    let mut measuring_since = None;
    while start.elapsed() < MEASURE + Duration::from_secs(20) {
        let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(33), rx.recv()).await
        else {
            continue;
        };
        let is_data = matches!(event, Event::Revisions(_));
        event::apply(&mut state, event);
        if first_full.is_none() && state.revisions.len() >= PODS {
            first_full = Some(start.elapsed());
            measuring_since = Some(Instant::now());
        }
        if measuring_since.is_some() && is_data {
            events += 1;
        }
        if last_draw.elapsed() >= Duration::from_millis(33) {
            let t = Instant::now();
            terminal.draw(|f| views::draw(f, &state)).unwrap();
            if measuring_since.is_some() {
                frames.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            last_draw = Instant::now();
        }
        if measuring_since.is_some_and(|s| s.elapsed() >= MEASURE) {
            break;
        }
    }
    for task in tasks {
        task.abort();
    }
    let rate = events as f64 / measuring_since.map_or(1.0, |s| s.elapsed().as_secs_f64());
    (frames, rate, first_full, peak_rss_mib())
}

fn main() {
    let role = std::env::args().nth(1).unwrap_or_default();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    match role.as_str() {
        "api" => runtime.block_on(api_role()),
        "reflector" => runtime.block_on(reflector_role(std::env::args().nth(2).unwrap())),
        // `cargo bench` passes `--bench`: this is the driver.
        _ => {
            let exe = std::env::current_exe().unwrap();
            let mut api = Command::new(&exe)
                .arg("api")
                .stdout(Stdio::piped())
                .spawn()
                .expect("start the API process");
            let mut line = String::new();
            BufReader::new(api.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            let kubeconfig = line.trim().to_owned();
            eprintln!("API with {PODS} pods and {PODS} endpoints up; churning {CHURN_PER_SECOND} events/s");
            let (mut frames, rate, first_full, rss) = runtime.block_on(ui_role(kubeconfig.clone()));
            let baseline = Command::new(&exe)
                .args(["reflector", &kubeconfig])
                .output()
                .expect("run the baseline");
            let _ = api.kill();
            let _ = api.wait();
            let _ = std::fs::remove_file(&kubeconfig);
            let baseline = String::from_utf8_lossy(&baseline.stdout);
            let mut baseline = baseline
                .split_whitespace()
                .map(|v| v.parse::<f64>().unwrap_or(f64::NAN));
            let (base_first, base_rss) = (
                baseline.next().unwrap_or(f64::NAN),
                baseline.next().unwrap_or(f64::NAN),
            );
            frames.sort_by(f64::total_cmp);
            println!("kasi TUI at {PODS} pods + {PODS} endpoints, {CHURN_PER_SECOND} events/s churn, {}s:", MEASURE.as_secs());
            println!("  frames drawn            {}", frames.len());
            println!(
                "  frame time p50 / p99    {:.2} ms / {:.2} ms   (target p99 <= 16 ms)",
                percentile(&frames, 0.5),
                percentile(&frames, 0.99)
            );
            println!(
                "  list updates applied    {rate:.0}/s (each folds the churn of {} ms)",
                1000 / rate.max(1.0) as u64
            );
            println!(
                "  first full table        {:.2} s            (target <= 1 s)",
                first_full.map_or(f64::NAN, |d| d.as_secs_f64())
            );
            println!("  peak RSS                {rss:.1} MiB         (target <= 100 MiB)");
            println!("baseline: plain kube-rs reflector of the same pods and endpoints:");
            println!("  first full store        {base_first:.2} s");
            println!(
                "  peak RSS                {base_rss:.1} MiB   (kasi / baseline = {:.2})",
                rss / base_rss
            );
        }
    }
}
