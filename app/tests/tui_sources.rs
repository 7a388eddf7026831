//! The UI's sources against a Kubernetes API that misbehaves the way clusters do: RBAC refusing
//! one resource (the rest must keep working and the refusal must be named), and the API server
//! going away and coming back (a STALE banner, then recovery without a restart). Real kube-rs
//! clients over real sockets to the lab's API server; the screen is the real view code.

use kasi::tui::event::{self, Event};
use kasi::tui::state::{AppState, Connection};
use kasi::tui::view::View;
use kasi::tui::{sources, views};
use kasi_lab::kube_api::{kubeconfig_yaml, serve, LabHooks, Store};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const NAMESPACE: &str = "knative-serving";

/// Logs and port-forwards are not what these tests are about; permissions are.
struct Rbac {
    /// `(verb, resource, namespace)` triples the API refuses.
    refused: Vec<(&'static str, &'static str, Option<&'static str>)>,
}

impl LabHooks for Rbac {
    fn authorize(&self, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
        !self
            .refused
            .iter()
            .any(|&(v, r, n)| v == verb && r == resource && n == namespace)
    }
}

fn activator_pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "activator-0", "namespace": NAMESPACE, "labels": {"app": "activator"}},
        "spec": {"containers": [{"name": "activator", "image": "a"}, {"name": "istio-proxy", "image": "p"}]},
        "status": {"phase": "Running", "podIP": "127.0.0.9"}})
}

fn revision_endpoints(revision: &str, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": format!("{revision}-private"), "namespace": "default",
            "labels": {"serving.knative.dev/revision": revision,
                       "networking.internal.knative.dev/serviceType": "Private"}},
        "subsets": [{"ports": [{"name": "http", "port": 8012, "protocol": "TCP"}],
            "addresses": [{"ip": ip, "targetRef": {"kind": "Pod", "name": format!("{revision}-pod"), "namespace": "default"}}]}]})
}

fn seeded_store() -> Store {
    let store = Store::new();
    for namespace in [NAMESPACE, "default"] {
        store
            .put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}))
            .unwrap();
    }
    store.put(activator_pod()).unwrap();
    store
        .put(revision_endpoints("hello-00001", "127.0.0.21"))
        .unwrap();
    store
}

/// The lab API on its own runtime in its own thread, so that stopping it closes every connection
/// (watches included) the way a dead API server does.
struct ApiServer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ApiServer {
    fn start(address: SocketAddr, store: Store, hooks: Arc<dyn LabHooks>) -> ApiServer {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                // The port was just freed by the previous server: retry briefly.
                let deadline = Instant::now() + Duration::from_secs(10);
                let listener = loop {
                    match tokio::net::TcpListener::bind(address).await {
                        Ok(listener) => break listener,
                        Err(e) if Instant::now() < deadline => {
                            let _ = e;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => panic!("cannot bind the lab API to {address}: {e}"),
                    }
                };
                ready_tx.send(listener.local_addr().unwrap()).unwrap();
                let server = tokio::spawn(serve(listener, store, hooks));
                let _ = tokio::task::spawn_blocking(move || stopped.recv()).await;
                server.abort();
            });
            // Dropping the runtime drops every connection task: clients see the sockets close.
            drop(runtime);
        });
        ready.recv().expect("the lab API started");
        ApiServer {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        drop(self.stop.take());
        self.thread.take().unwrap().join().unwrap();
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn free_loopback_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn client_for(address: SocketAddr) -> (kube::Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, kubeconfig_yaml(&format!("http://{address}"), "lab")).unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    (kube::Client::try_from(config).unwrap(), dir)
}

/// The UI's sources running against a client, and a state on the Endpoints view to fold into.
struct Watching {
    start: Instant,
    rx: mpsc::Receiver<Event>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    state: AppState,
}

fn watch(client: kube::Client) -> Watching {
    let start = Instant::now();
    let (tx, rx) = mpsc::channel(1024);
    Watching {
        start,
        rx,
        tasks: sources::spawn(client, NAMESPACE, tx, start),
        state: AppState {
            view: View::Endpoints,
            ..AppState::default()
        },
    }
}

/// Folds events into the state until `done` holds; fails with the state's story after `limit`.
async fn until(
    state: &mut AppState,
    rx: &mut mpsc::Receiver<Event>,
    start: Instant,
    limit: Duration,
    what: &str,
    done: impl Fn(&AppState) -> bool,
) {
    let deadline = Instant::now() + limit;
    while !done(state) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no {what} within {limit:?}: connection {:?}, forbidden {:?}, revisions {:?}",
            state.connection,
            state.forbidden,
            state.revisions.iter().map(|r| &r.name).collect::<Vec<_>>()
        );
        if let Ok(Some(event)) = tokio::time::timeout(left, rx.recv()).await {
            event::apply(state, event);
        }
        event::apply(state, Event::Tick(sources::seconds(start)));
    }
}

fn screen(state: &AppState) -> String {
    let mut terminal = Terminal::new(TestBackend::new(160, 30)).unwrap();
    terminal.draw(|f| views::draw(f, state)).unwrap();
    let buffer = terminal.backend().buffer();
    (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_permission_is_named_and_the_rest_keeps_working() {
    let address = free_loopback_address();
    let rbac = Rbac {
        refused: vec![
            ("list", "pods", Some(NAMESPACE)),
            ("watch", "pods", Some(NAMESPACE)),
        ],
    };
    let _api = ApiServer::start(address, seeded_store(), Arc::new(rbac));
    let (client, _dir) = client_for(address).await;

    // The refusal is the real server's 403 Status, which kubectl and kube-rs both understand.
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(client.clone(), NAMESPACE);
    match pods.list(&Default::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403);
            assert!(
                status.message.contains(
                    "cannot list resource \"pods\" in API group \"\" in the namespace \"knative-serving\""
                ),
                "{}",
                status.message
            );
        }
        other => panic!("listing pods should be forbidden, got {other:?}"),
    }

    let Watching {
        start,
        mut rx,
        tasks,
        mut state,
    } = watch(client);
    until(
        &mut state,
        &mut rx,
        start,
        Duration::from_secs(30),
        "named refusal and live endpoints",
        |s| {
            s.forbidden
                .iter()
                .any(|f| f == "list/watch pods in knative-serving")
                && s.revisions.iter().any(|r| r.name == "hello-00001")
        },
    )
    .await;
    assert_eq!(state.connection, Connection::Live);
    assert!(state.activators.is_empty(), "{:?}", state.activators);
    let shown = screen(&state);
    assert!(
        shown.contains("FORBIDDEN — kasi may not list/watch pods in knative-serving"),
        "{shown}"
    );
    assert!(shown.contains("hello-00001"), "{shown}");
    assert!(shown.contains("127.0.0.21:8012"), "{shown}");
    for task in tasks {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_outage_shows_stale_and_recovers_by_itself() {
    let address = free_loopback_address();
    let store = seeded_store();
    let hooks: Arc<dyn LabHooks> = Arc::new(Rbac { refused: vec![] });
    let api = ApiServer::start(address, store.clone(), hooks.clone());
    let (client, _dir) = client_for(address).await;
    let Watching {
        start,
        mut rx,
        tasks,
        mut state,
    } = watch(client);
    until(
        &mut state,
        &mut rx,
        start,
        Duration::from_secs(30),
        "initial lists",
        |s| {
            s.connection == Connection::Live
                && !s.activators.is_empty()
                && s.revisions.iter().any(|r| r.name == "hello-00001")
        },
    )
    .await;

    api.stop();
    until(
        &mut state,
        &mut rx,
        start,
        Duration::from_secs(15),
        "stale banner",
        |s| matches!(s.connection, Connection::Stale { .. }),
    )
    .await;
    let shown = screen(&state);
    assert!(shown.contains("STALE"), "{shown}");
    assert!(shown.contains("the API server is unreachable"), "{shown}");
    // What was last seen stays on screen while the API is away.
    assert!(shown.contains("hello-00001"), "{shown}");

    // The cluster moves on while kasi cannot see it; after recovery kasi must show it.
    store
        .put(revision_endpoints("hello-00002", "127.0.0.22"))
        .unwrap();
    let _api = ApiServer::start(address, store, hooks);
    until(
        &mut state,
        &mut rx,
        start,
        Duration::from_secs(60),
        "recovery",
        |s| s.connection == Connection::Live && s.revisions.iter().any(|r| r.name == "hello-00002"),
    )
    .await;
    let shown = screen(&state);
    assert!(!shown.contains("STALE"), "{shown}");
    assert!(shown.contains("hello-00002"), "{shown}");
    for task in tasks {
        task.abort();
    }
}
