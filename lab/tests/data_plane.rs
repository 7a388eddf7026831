//! The lab's Knative data plane against the behaviour each part names:
//! - the activator emulator does to a request what Knative's activator does, seen from the
//!   sidecar's side of the connection: which original destination the PROXY header names (pods
//!   round robin, or the private Service's ClusterIP in mesh-compatibility mode), which headers
//!   reach the pod, and the answers it gives itself;
//! - kube-proxy picks a pod per connection;
//! - the ingress keeps the activator in the path only with `target-burst-capacity: -1`.

use kasi_lab::data_plane::ingress::Ingress;
use kasi_lab::knative::activator::{Activator, NAMESPACE_HEADER, REVISION_HEADER};
use kasi_lab::knative::routing::{MeshMode, RevisionTarget, Routing};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the stand-in sidecar received on one connection: the PROXY line and the request head.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// Everything up to the end of the request head; `None` if the connection ends first.
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    while !bytes.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
    Some(bytes)
}

/// A stand-in for the sidecar's outbound capture port: records each connection's PROXY line and
/// request head, answers 200.
async fn sidecar() -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let Some(bytes) = read_head(&mut stream).await else {
                    return;
                };
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let (proxy, head) = text.split_once("\r\n").unwrap_or_default();
                record
                    .lock()
                    .unwrap()
                    .push((proxy.to_owned(), head.to_ascii_lowercase()));
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (address, seen)
}

/// One request to the activator; its status code.
async fn get(activator: SocketAddr, headers: &[(&str, &str)]) -> u16 {
    let mut stream = TcpStream::connect(activator).await.unwrap();
    let mut request = String::from("GET /x HTTP/1.1\r\nhost: hello.default.example.com\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

fn routing(mode: MeshMode, pods: &[&str]) -> Arc<RwLock<Routing>> {
    let mut revisions = BTreeMap::new();
    revisions.insert(
        ("default".to_owned(), "hello-00001".to_owned()),
        RevisionTarget {
            ready_pods: pods.iter().map(|p| p.parse().unwrap()).collect(),
            private_service: Some((
                "10.96.0.10:80".parse().unwrap(),
                "hello-00001-private.default.svc.cluster.local".to_owned(),
            )),
            ..RevisionTarget::default()
        },
    );
    Arc::new(RwLock::new(Routing {
        mesh_mode: mode,
        revisions,
        ..Routing::default()
    }))
}

/// The activator on a free port; it serves while the returned task is held.
async fn start(
    routing: Arc<RwLock<Routing>>,
    outbound: SocketAddr,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listen: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    // The activator reads `mesh-compatibility-mode` once, when it starts.
    let mode = routing.read().unwrap().mesh_mode;
    let activator = Activator::new(listen, outbound, routing, mode);
    (listen, activator.start().await.unwrap())
}

const REVISION: [(&str, &str); 2] = [
    (NAMESPACE_HEADER, "default"),
    (REVISION_HEADER, "hello-00001"),
];

#[tokio::test]
async fn pod_addressed_sends_go_round_robin_with_knatives_headers() {
    let (outbound, seen) = sidecar().await;
    let routing = routing(MeshMode::Disabled, &["10.0.0.1:8012", "10.0.0.2:8012"]);
    let (activator, _serving) = start(routing, outbound).await;
    for _ in 0..4 {
        assert_eq!(get(activator, &REVISION).await, 200);
    }
    let seen = seen.lock().unwrap().clone();
    let destinations: Vec<&str> = seen
        .iter()
        .map(|(proxy, _)| proxy.split(' ').nth(3).unwrap())
        .collect();
    // `newRoundRobinPolicy`: each ready pod in turn.
    assert_eq!(
        destinations,
        ["10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.2"]
    );
    for (proxy, head) in &seen {
        assert!(
            proxy.starts_with("PROXY TCP4 ") && proxy.ends_with(" 8012"),
            "{proxy}"
        );
        // `activationHandler.proxyRequest`: K-Proxy-Request added, revision headers gone, the
        // Host kept.
        assert!(head.contains("k-proxy-request: activator"), "{head}");
        assert!(!head.contains(REVISION_HEADER), "{head}");
        assert!(head.contains("host: hello.default.example.com"), "{head}");
    }
}

#[tokio::test]
async fn mesh_compatible_sends_go_to_the_clusterip_with_the_host_rewritten() {
    let (outbound, seen) = sidecar().await;
    let routing = routing(MeshMode::Enabled, &["10.0.0.1:8012"]);
    let (activator, _serving) = start(routing, outbound).await;
    assert_eq!(get(activator, &REVISION).await, 200);
    let (proxy, head) = seen.lock().unwrap()[0].clone();
    assert!(
        proxy.contains(" 10.96.0.10 ") && proxy.ends_with(" 80"),
        "{proxy}"
    );
    // `netheader.RewriteHostIn`.
    assert!(
        head.contains("host: hello-00001-private.default.svc.cluster.local"),
        "{head}"
    );
    assert!(
        head.contains("k-original-host: hello.default.example.com"),
        "{head}"
    );
}

/// `cmd/activator/main.go` reads `config-network` once, at start: an activator keeps the mode it
/// started with when the ConfigMap (and so the lab's routing view) changes; only a new pod reads
/// the new one.
#[tokio::test]
async fn an_activator_keeps_the_mesh_mode_it_started_with() {
    let (outbound, seen) = sidecar().await;
    let routing = routing(MeshMode::Disabled, &["10.0.0.1:8012"]);
    let (activator, _serving) = start(Arc::clone(&routing), outbound).await;
    routing.write().unwrap().mesh_mode = MeshMode::Enabled;
    assert_eq!(get(activator, &REVISION).await, 200);
    let (restarted, _serving_too) = start(Arc::clone(&routing), outbound).await;
    assert_eq!(get(restarted, &REVISION).await, 200);
    let seen = seen.lock().unwrap().clone();
    let destinations: Vec<&str> = seen
        .iter()
        .map(|(proxy, _)| proxy.split(' ').nth(3).unwrap())
        .collect();
    assert_eq!(destinations, ["10.0.0.1", "10.96.0.10"]);
}

#[tokio::test]
async fn what_the_activator_answers_itself() {
    let (outbound, seen) = sidecar().await;
    let (activator, _serving) = start(routing(MeshMode::Disabled, &[]), outbound).await;
    // No revision headers (the ingress always sets them); an unknown revision; no ready pod.
    assert_eq!(get(activator, &[]).await, 400);
    assert_eq!(
        get(
            activator,
            &[(NAMESPACE_HEADER, "default"), (REVISION_HEADER, "other")]
        )
        .await,
        404
    );
    assert_eq!(get(activator, &REVISION).await, 503);
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing reached the sidecar"
    );
}

/// kube-proxy: each connection to the ClusterIP goes to a random ready pod and stays there
/// (`statistic --mode random` DNAT happens per connection, so a reused connection keeps its pod).
#[tokio::test]
async fn kube_proxy_picks_a_pod_per_connection() {
    // Three "pods" that answer with their own port on every request of a connection.
    let mut pods = Vec::new();
    for _ in 0..3 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        pods.push(listener.local_addr().unwrap().to_string());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 || stream.write_all(&port.to_be_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
    }
    let pod_refs: Vec<&str> = pods.iter().map(String::as_str).collect();
    let routing = routing(MeshMode::Enabled, &pod_refs);
    let cluster_ip: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let _proxy = kasi_lab::data_plane::kube_proxy::start(
        cluster_ip,
        "default".into(),
        "hello-00001".into(),
        routing,
    )
    .await
    .unwrap();
    let mut picked = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let mut connection = TcpStream::connect(cluster_ip).await.unwrap();
        let mut first = None;
        for _ in 0..3 {
            connection.write_all(b"x").await.unwrap();
            let mut port = [0u8; 2];
            connection.read_exact(&mut port).await.unwrap();
            let port = u16::from_be_bytes(port);
            assert_eq!(
                *first.get_or_insert(port),
                port,
                "a connection changed pods"
            );
        }
        picked.insert(first.unwrap());
    }
    // 30 connections over 3 pods: all three are picked (a miss has odds of ~3·(2/3)^30 < 1e-5).
    assert_eq!(picked.len(), 3, "{picked:?}");
}

/// An HTTP server that records each request head and answers 200 with `x-served-by: <name>`.
async fn recorder(name: &'static str, seen: Seen) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let Some(bytes) = read_head(&mut stream).await else {
                    return;
                };
                let head = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
                seen.lock().unwrap().push((name.to_owned(), head));
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    address
}

/// Who served each of `requests` requests through the ingress, with `target_burst_capacity`.
async fn through_ingress(target_burst_capacity: f64, requests: usize) -> Vec<(String, String)> {
    let seen: Seen = Arc::default();
    let activators = vec![
        recorder("activator-a", Arc::clone(&seen)).await,
        recorder("activator-b", Arc::clone(&seen)).await,
    ];
    let pod = recorder("pod", Arc::clone(&seen)).await;
    let routing = routing(MeshMode::Disabled, &[&pod.to_string()]);
    routing.write().unwrap().target_burst_capacity = target_burst_capacity;
    routing.write().unwrap().activators = activators;
    let ingress = Ingress::new(
        routing,
        "default",
        "hello-00001",
        "hello.default.example.com",
    );
    let (address, _serving) = ingress.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    for _ in 0..requests {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(
                format!("GET / HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
    let seen = seen.lock().unwrap().clone();
    seen
}

#[tokio::test]
async fn the_ingress_keeps_the_activator_in_the_path_only_with_burst_capacity_minus_one() {
    // Proxy mode for good: every request through an activator, round robin, with the revision
    // headers the activator routes by, and the Host of Knative's domain when the client used an IP.
    let seen = through_ingress(-1.0, 4).await;
    let served: Vec<&str> = seen.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        served,
        ["activator-a", "activator-b", "activator-a", "activator-b"]
    );
    for (_, head) in &seen {
        assert!(
            head.contains("knative-serving-revision: hello-00001"),
            "{head}"
        );
        assert!(head.contains("host: hello.default.example.com"), "{head}");
    }
    // Knative's default 211: the revision flips to serve mode, and part of the traffic goes
    // straight to the pod, where no activator sidecar sees it.
    let seen = through_ingress(211.0, 4).await;
    let served: Vec<&str> = seen.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(served, ["activator-a", "pod", "activator-b", "pod"]);
    let (_, direct) = &seen[1];
    assert!(!direct.contains("knative-serving-revision"), "{direct}");
}
