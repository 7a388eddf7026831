//! `L` in the Sessions view against real Envoy admin APIs, reached as kasi reaches them (pods/
//! portforward through a Kubernetes API, the lab's): the UI's sources learn a sidecar's `wasm`
//! level when it appears and again when it restarts; a raise puts it at info, then back to the
//! level it had — when its time is up, and when the UI exits — and leaves one that logs info
//! alone. On the Envoy that `KASI_ENVOY` (or PATH) names, and on `KASI_ENVOY_ISTIO` too when set
//! (`./dev` sets it to Istio 1.28's Envoy 1.36).

use kasi::envoy::admin::{Sidecar, WASM_LOGGER};
use kasi::tui::event::{self, Event};
use kasi::tui::state::{AppState, WasmLogChange, WasmLogRaise};
use kasi::tui::view::View;
use kasi::tui::wasm_log::{Outcome, Raises};
use kasi::tui::{sources, views};
use kasi_lab::{Lab, LabOptions};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const NAMESPACE: &str = "knative-serving";

fn envoys() -> Vec<PathBuf> {
    let mut envoys = vec![std::env::var_os("KASI_ENVOY")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("envoy"), PathBuf::from)];
    if let Some(istio) = std::env::var_os("KASI_ENVOY_ISTIO").filter(|p| !p.is_empty()) {
        envoys.push(istio.into());
    }
    envoys
}

async fn client(lab: &Lab) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(lab.kubeconfig_path()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// The `wasm` level as Envoy's admin API lists it now.
async fn wasm_level(sidecar: &Sidecar) -> String {
    let levels = sidecar.log_levels().await.expect("POST /logging answers");
    levels[WASM_LOGGER].clone()
}

/// The UI's side: events folded into a state, as the main loop does.
struct Ui {
    state: AppState,
    rx: mpsc::Receiver<Event>,
    start: Instant,
}

impl Ui {
    /// Folds events until `done` holds; fails with what the state knows after `limit`.
    async fn until(&mut self, what: &str, limit: Duration, done: impl Fn(&AppState) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(&self.state) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {what} within {limit:?}: levels {:?}, raises {:?}, message {:?}",
                self.state.wasm_levels,
                self.state.wasm_log,
                self.state.ui.message
            );
            if let Ok(Some(event)) = tokio::time::timeout(left, self.rx.recv()).await {
                event::apply(&mut self.state, event);
            }
            event::apply(&mut self.state, Event::Tick(sources::seconds(self.start)));
        }
    }

    fn screen(&self) -> String {
        let backend = ratatui::backend::TestBackend::new(160, 30);
        let mut terminal = ratatui::Terminal::new(backend).unwrap();
        terminal.draw(|f| views::draw(f, &self.state)).unwrap();
        terminal.backend().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raise_puts_wasm_at_info_then_back_to_the_level_it_had() {
    for envoy in envoys() {
        raise_and_restore(envoy).await;
    }
}

async fn raise_and_restore(envoy: PathBuf) {
    let lab = Lab::start(LabOptions {
        envoy: Some(envoy.clone()),
        services: 5,
        activators: 1,
        hello_pods: 1,
        ..LabOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("the lab starts on {}: {e:#}", envoy.display()));
    let pod = lab.activators()[0].pod_name.clone();
    let client = client(&lab).await;
    let sidecar = Sidecar::new(client.clone(), NAMESPACE, &pod);
    // What a sidecar without kasi's componentLogLevel runs: istio-proxy's `--log-level warning`.
    sidecar.set_log_level(WASM_LOGGER, "warning").await.unwrap();
    assert_eq!(wasm_level(&sidecar).await, "warning");

    // The sources read the level of a sidecar that appears, and the Sessions view says why it
    // is quiet (in a lab without kasi's bundle, first of all: no filter).
    let start = Instant::now();
    let (tx, rx) = mpsc::channel(4096);
    let tasks = sources::spawn(client.clone(), NAMESPACE, tx.clone(), start);
    let mut ui = Ui {
        state: AppState {
            view: View::Sessions,
            ..AppState::default()
        },
        rx,
        start,
    };
    let limit = Duration::from_secs(30);
    ui.until("wasm level read", limit, |s| {
        s.wasm_levels.get(&pod).map(String::as_str) == Some("warning")
    })
    .await;
    ui.until("filter reading", limit, |s| {
        s.activators.iter().any(|a| a.filter_loaded.is_some())
    })
    .await;
    let screen = ui.screen();
    assert!(
        screen.contains(&format!(
            "no decision lines from {pod}: kasi's filter is not loaded"
        )),
        "{screen}"
    );

    // Raised, held, then cut short by the UI's exit: back at warning.
    let mut raises = Raises::default();
    raises.start(sidecar.clone(), Duration::from_secs(600), tx.clone());
    ui.until("raise", limit, |s| {
        matches!(s.wasm_log.get(&pod), Some(WasmLogRaise::Raised { previous, .. }) if previous == "warning")
    })
    .await;
    assert_eq!(ui.state.wasm_levels[&pod], "info");
    assert_eq!(wasm_level(&sidecar).await, "info");
    assert_eq!(raises.live(), [pod.as_str()]);
    let exit = Instant::now();
    let ended = raises.restore_all(Duration::from_secs(5)).await;
    assert!(exit.elapsed() < Duration::from_secs(5));
    assert_eq!(ended.len(), 1);
    assert_eq!(
        ended[0].outcome,
        Ok(Outcome::Restored {
            level: "warning".into(),
            at_exit: true
        })
    );
    assert_eq!(wasm_level(&sidecar).await, "warning");

    // Time up: restored without an exit, and the UI hears of it.
    let mut raises = Raises::default();
    sidecar.set_log_level(WASM_LOGGER, "error").await.unwrap();
    raises.start(sidecar.clone(), Duration::from_secs(2), tx.clone());
    ui.until("raise", limit, |s| {
        matches!(s.wasm_log.get(&pod), Some(WasmLogRaise::Raised { previous, .. }) if previous == "error")
    })
    .await;
    assert_eq!(wasm_level(&sidecar).await, "info");
    ui.until("restore when time is up", limit, |s| {
        !s.wasm_log.contains_key(&pod) && s.wasm_levels[&pod] == "error"
    })
    .await;
    assert_eq!(wasm_level(&sidecar).await, "error");
    assert!(raises.live().is_empty());
    let ended = raises.restore_all(Duration::from_secs(5)).await;
    assert_eq!(
        ended[0].outcome,
        Ok(Outcome::Restored {
            level: "error".into(),
            at_exit: false
        })
    );

    // A logger that writes info lines already is left alone.
    sidecar.set_log_level(WASM_LOGGER, "debug").await.unwrap();
    let (only_tx, mut only_rx) = mpsc::channel(16);
    let mut raises = Raises::default();
    raises.start(sidecar.clone(), Duration::from_secs(600), only_tx);
    let event = tokio::time::timeout(limit, only_rx.recv()).await.unwrap();
    assert!(
        matches!(
            &event,
            Some(Event::WasmLog { change: WasmLogChange::Unchanged { level }, .. }) if level == "debug"
        ),
        "{event:?}"
    );
    let ended = raises.restore_all(Duration::from_secs(5)).await;
    assert_eq!(ended[0].outcome, Ok(Outcome::Untouched));
    assert_eq!(wasm_level(&sidecar).await, "debug");
    event::apply(&mut ui.state, event.unwrap());
    assert_eq!(ui.state.wasm_levels[&pod], "debug");

    // The sidecar restarts: Envoy is back at its command line's level, and the sources notice
    // (its uptime went down) without waiting for the minute's refresh. Envoy updates
    // `server.uptime` when it flushes stats (every 5 s): first let the sources see it above 0.
    let deadline = Instant::now() + limit;
    while sidecar.kasi_counters().await.unwrap().uptime_s < Some(6) {
        assert!(Instant::now() < deadline, "server.uptime stays below 6 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    lab.restart_sidecar(0).await.unwrap();
    let after_restart = wasm_level(&sidecar).await;
    assert_ne!(after_restart, "debug");
    ui.until("level read after the restart", limit, |s| {
        s.wasm_levels[&pod] == after_restart
    })
    .await;

    for task in tasks {
        task.abort();
    }
    lab.shutdown().await;
}
