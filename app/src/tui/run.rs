//! The UI's main loop: one task owns the state; keys, ticks and sources arrive on one channel;
//! effects run as their own tasks and report back as events. The terminal is restored on every
//! exit path, panics included (ratatui's init installs the hook), and so are the `wasm` loggers
//! `L` raised — after the terminal, within [`WASM_LOG_RESTORE_AT_EXIT`].

use super::action::{Action, Effect};
use super::event::{self, Event};
use super::probe::RunningProbe;
use super::state::{
    AppState, ClusterInfo, Connection, ProbeState, ProbeTargets, WASM_LOG_RAISE,
    WASM_LOG_RESTORE_AT_EXIT,
};
use super::wasm_log::{self, Raises};
use super::{keys, sources, tour, update, views};
use crate::envoy::admin::Sidecar;
use futures::FutureExt as _;
use kasi_lab::Lab;
use kube::Client;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What the installer is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallTask {
    Apply,
    Revert,
    /// The server's dry runs of apply and revert, reported as [`Event::Preview`]s.
    Preview,
}

/// How the installer is called from the UI, reporting progress as events; returns a one-line
/// summary. The future need not be `Send`: it runs on a thread of its own.
pub type Installer = Arc<
    dyn Fn(
            InstallTask,
            mpsc::Sender<Event>,
        ) -> futures::future::LocalBoxFuture<'static, Result<String, String>>
        + Send
        + Sync,
>;

/// A kubeconfig context, connected: what the UI needs to run on it.
pub struct Connected {
    pub client: Client,
    pub cluster: ClusterInfo,
    pub installer: Option<Installer>,
}

/// `:ctx`: the kubeconfig's contexts, and how to connect to one (a one-line error otherwise).
#[derive(Clone)]
pub struct Contexts {
    pub names: Vec<String>,
    pub connect: Arc<
        dyn Fn(String) -> futures::future::BoxFuture<'static, Result<Connected, String>>
            + Send
            + Sync,
    >,
    /// Where a switch leaves its result for the loop, which [`Event::ContextReady`] wakes
    /// (clients are not events).
    pub ready: Arc<std::sync::Mutex<Option<Result<Connected, String>>>>,
}

pub struct TuiOptions {
    pub client: Client,
    pub cluster: ClusterInfo,
    pub system_namespace: String,
    /// `kasi demo`: the lab whose fault controls the keys drive.
    pub lab: Option<Arc<Lab>>,
    /// What `s` and `m` probe in the Stickiness view (the lab's ingress and MCP service).
    pub probes: ProbeTargets,
    pub installer: Option<Installer>,
    pub show_guide: bool,
    /// `None` on the lab (one context).
    pub contexts: Option<Contexts>,
    /// `kasi demo --tour`: the story, step by step.
    pub tour: Option<super::tour::Tour>,
}

/// Frames are drawn at most this often, however fast events arrive.
const FRAME: Duration = Duration::from_millis(33);
const TICK: Duration = Duration::from_millis(250);
/// How long quitting waits for a running probe's MCP clients to end their sessions.
const QUIT_GRACE: Duration = Duration::from_secs(1);

pub async fn run(options: TuiOptions) -> anyhow::Result<()> {
    views::theme::init();
    let mut terminal = ratatui::try_init()?;
    let mut raises = Raises::default();
    // However the loop ends — `q`, Ctrl-C (a key in raw mode), a signal, an error, a panic — the
    // terminal comes back first, then every raised logger goes back to the level it had.
    let result = AssertUnwindSafe(main_loop(&mut terminal, options, &mut raises))
        .catch_unwind()
        .await;
    ratatui::restore();
    restore_wasm_logs(raises).await;
    match result {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Puts back every `wasm` logger `L` raised, bounded by [`WASM_LOG_RESTORE_AT_EXIT`], and says
/// on the terminal what was restored and what may still be at info.
async fn restore_wasm_logs(raises: Raises) {
    let live = raises.live().join(", ");
    if !live.is_empty() {
        eprintln!("kasi: putting the wasm logger of {live} back…");
    }
    let ended = raises
        .restore_all(Duration::from_secs_f64(WASM_LOG_RESTORE_AT_EXIT))
        .await;
    for line in wasm_log::exit_lines(&ended) {
        eprintln!("{line}");
    }
}

async fn main_loop(
    terminal: &mut ratatui::DefaultTerminal,
    mut options: TuiOptions,
    raises: &mut Raises,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let (tx, mut rx) = mpsc::channel::<Event>(4096);
    let mut state = AppState {
        cluster: options.cluster.clone(),
        connection: Connection::Connecting,
        ..AppState::default()
    };
    state.ui.guide = options.show_guide;
    state.contexts = options
        .contexts
        .as_ref()
        .map(|c| c.names.clone())
        .unwrap_or_default();
    state.tour = options.tour.clone();
    state.probe_targets = options.probes.clone();
    state.probe = options.probes.cookie.clone().map(|target| ProbeState {
        target,
        ..ProbeState::default()
    });

    let mut tasks = sources::spawn(
        options.client.clone(),
        &options.system_namespace,
        tx.clone(),
        start,
    );
    // Keys, ticks and signals outlive a `:ctx` switch; the cluster's sources do not.
    let local = [
        spawn_keys(tx.clone()),
        spawn_ticks(tx.clone(), start),
        spawn_signals(tx.clone()),
    ];
    let mut probe: Option<RunningProbe> = None;
    // What apply and revert would do, ready before the Install view is first opened.
    if let Some(effect) = update::preview(&mut state) {
        run_effect(effect, &options, &tx, &mut probe);
    }

    let mut last_draw = Instant::now() - FRAME;
    let mut dirty = true;
    while !state.ui.quit {
        let timeout = FRAME.saturating_sub(last_draw.elapsed());
        match tokio::time::timeout(if dirty { timeout } else { TICK }, rx.recv()).await {
            Ok(Some(Event::Key(key))) => {
                state.ui.message = None;
                // Scrolling stops at the last page as drawn on this screen.
                if let Ok(size) = terminal.size() {
                    state.ui.screen_height = size.height;
                }
                if let Some(action) = keys::action(&state, key) {
                    let effects = update::update(&mut state, action);
                    perform(effects, &options, &tx, &mut probe, raises);
                }
                dirty = true;
            }
            Ok(Some(Event::ContextReady)) => {
                let result = options
                    .contexts
                    .as_ref()
                    .and_then(|c| c.ready.lock().ok()?.take());
                match result {
                    Some(Ok(connected)) => {
                        // Everything read from the old cluster goes; the new one's sources
                        // start over, as k9s does on `:ctx`.
                        for task in tasks.drain(..) {
                            task.abort();
                        }
                        if let Some(running) = probe.take() {
                            running.stop();
                        }
                        let context = connected.cluster.context.clone();
                        state = AppState {
                            view: state.view,
                            cluster: connected.cluster.clone(),
                            contexts: state.contexts.clone(),
                            connection: Connection::Connecting,
                            now: state.now,
                            ..AppState::default()
                        };
                        state.ui.message = Some(format!("now on context {context}"));
                        options.client = connected.client;
                        options.cluster = connected.cluster;
                        options.installer = connected.installer;
                        tasks = sources::spawn(
                            options.client.clone(),
                            &options.system_namespace,
                            tx.clone(),
                            start,
                        );
                        if let Some(effect) = update::preview(&mut state) {
                            run_effect(effect, &options, &tx, &mut probe);
                        }
                    }
                    Some(Err(line)) => state.ui.message = Some(line),
                    None => {}
                }
                dirty = true;
            }
            Ok(Some(other)) => {
                let tick = matches!(other, Event::Tick(_));
                event::apply(&mut state, other);
                // `--auto N`: the tour's clock is the ticks'.
                if tick && tour::due(&state) {
                    let effects = update::update(&mut state, Action::TourNext);
                    perform(effects, &options, &tx, &mut probe, raises);
                }
                dirty = true;
            }
            Ok(None) => break,
            Err(_) => {}
        }
        if dirty && last_draw.elapsed() >= FRAME {
            terminal.draw(|frame| views::draw(frame, &state))?;
            last_draw = Instant::now();
            dirty = false;
        }
    }
    for task in tasks.into_iter().chain(local) {
        task.abort();
    }
    // A running probe's MCP clients end their sessions; quitting waits for that at most a moment.
    if let Some(probe) = probe.take() {
        let _ = tokio::time::timeout(QUIT_GRACE, probe.stop()).await;
    }
    Ok(())
}

/// Carries out what an update asked for: raises are kept here so they can be restored at exit.
fn perform(
    effects: Vec<Effect>,
    options: &TuiOptions,
    tx: &mpsc::Sender<Event>,
    probe: &mut Option<RunningProbe>,
    raises: &mut Raises,
) {
    for effect in effects {
        if let Effect::RaiseWasmLog(pods) = effect {
            let hold = Duration::from_secs_f64(WASM_LOG_RAISE);
            for pod in pods {
                let sidecar = Sidecar::new(options.client.clone(), &options.system_namespace, &pod);
                raises.start(sidecar, hold, tx.clone());
            }
            continue;
        }
        run_effect(effect, options, tx, probe);
    }
}

/// Keys come from a blocking reader thread: crossterm's `read` blocks.
fn spawn_keys(tx: mpsc::Sender<Event>) -> JoinHandle<()> {
    tokio::task::spawn_blocking(move || loop {
        match crossterm::event::poll(Duration::from_millis(100)) {
            Ok(true) => {
                if let Ok(crossterm::event::Event::Key(key)) = crossterm::event::read() {
                    if key.kind == crossterm::event::KeyEventKind::Press
                        && tx.blocking_send(Event::Key(key)).is_err()
                    {
                        return;
                    }
                }
            }
            Ok(false) => {
                if tx.is_closed() {
                    return;
                }
            }
            Err(_) => return,
        }
    })
}

fn spawn_signals(tx: mpsc::Sender<Event>) -> JoinHandle<()> {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            // In raw mode Ctrl-C is a key; SIGINT still comes from `kill -INT`.
            let (Ok(mut term), Ok(mut hangup), Ok(mut interrupt)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = hangup.recv() => {}
                _ = interrupt.recv() => {}
            }
            let _ = tx.send(Event::Shutdown).await;
        }
        #[cfg(not(unix))]
        drop(tx);
    })
}

fn spawn_ticks(tx: mpsc::Sender<Event>, start: Instant) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(TICK);
        loop {
            interval.tick().await;
            if tx.send(Event::Tick(sources::seconds(start))).await.is_err() {
                return;
            }
        }
    })
}

fn run_effect(
    effect: Effect,
    options: &TuiOptions,
    tx: &mpsc::Sender<Event>,
    probe: &mut Option<RunningProbe>,
) {
    let tx = tx.clone();
    let stop = matches!(effect, Effect::StopPod(_));
    match effect {
        Effect::Preview => {
            let Some(installer) = options.installer.clone() else {
                send_preview_failure(&tx, "not available here".into());
                return;
            };
            std::thread::spawn(move || {
                let result = block_on(installer(InstallTask::Preview, tx.clone()));
                if let Err(why) = result {
                    send_preview_failure(&tx, why);
                }
            });
        }
        Effect::Apply | Effect::Revert => {
            let task = if effect == Effect::Apply {
                InstallTask::Apply
            } else {
                InstallTask::Revert
            };
            let what = if task == InstallTask::Apply {
                "apply"
            } else {
                "revert"
            }
            .to_owned();
            let Some(installer) = options.installer.clone() else {
                let _ = tx.try_send(Event::InstallDone {
                    what,
                    result: Err("not available here".into()),
                });
                return;
            };
            std::thread::spawn(move || {
                let result = block_on(installer(task, tx.clone()));
                let _ = tx.blocking_send(Event::InstallDone { what, result });
                // What apply and revert would do now that one of them ran.
                let _ = tx.blocking_send(Event::PreviewProgress { done: 0, total: 0 });
                if let Err(why) = block_on(installer(InstallTask::Preview, tx.clone())) {
                    send_preview_failure(&tx, why);
                }
            });
        }
        Effect::StopPod(pod) | Effect::RestorePod(pod) => {
            let Some(lab) = options.lab.clone() else {
                return;
            };
            tokio::spawn(async move {
                let result = if stop {
                    lab.stop_pod(&pod).await
                } else {
                    lab.restore_pod(&pod).await
                };
                let message = match result {
                    Ok(()) => format!("{} {pod}", if stop { "stopped" } else { "restored" }),
                    Err(e) => format!("{e:#}"),
                };
                let _ = tx.send(Event::Message(message)).await;
            });
        }
        Effect::RestartSidecar(pod) => {
            let Some(lab) = options.lab.clone() else {
                return;
            };
            tokio::spawn(async move {
                let message = match lab.restart_sidecar_of(&pod).await {
                    Ok(()) => format!("restarted the sidecar of {pod}"),
                    Err(e) => format!("{e:#}"),
                };
                let _ = tx.send(Event::Message(message)).await;
            });
        }
        Effect::StartProbe(target) => {
            if let Some(previous) = probe.take() {
                previous.stop();
            }
            *probe = Some(RunningProbe::start(target, tx));
        }
        // Handled by the main loop, which keeps the tasks so they can restore at exit.
        Effect::RaiseWasmLog(_) => {}
        Effect::SwitchContext(name) => {
            let Some(contexts) = &options.contexts else {
                return;
            };
            let (connect, ready) = (contexts.connect.clone(), contexts.ready.clone());
            tokio::spawn(async move {
                let result = connect(name).await;
                if let Ok(mut slot) = ready.lock() {
                    *slot = Some(result);
                }
                let _ = tx.send(Event::ContextReady).await;
            });
        }
        Effect::StopProbe => {
            if let Some(running) = probe.take() {
                running.stop();
            }
            // The last report stays on screen, marked stopped.
            let _ = tx.try_send(Event::Message("probe stopped".into()));
        }
    }
}

/// Runs an installer future on this (dedicated) thread.
fn block_on(
    future: futures::future::LocalBoxFuture<'static, Result<String, String>>,
) -> Result<String, String> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(future),
        Err(e) => Err(format!("cannot start a runtime: {e}")),
    }
}

/// Both previews failed for the same reason; the revert one ends the "checking" state.
fn send_preview_failure(tx: &mpsc::Sender<Event>, why: String) {
    use crate::install::preview::PreviewKind;
    for kind in [PreviewKind::Apply, PreviewKind::Revert] {
        let _ = tx.try_send(Event::Preview {
            kind,
            result: Err(why.clone()),
        });
    }
}
