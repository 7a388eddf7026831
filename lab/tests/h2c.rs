//! The lab's `hello-h2c` service is an h2c revision end to end, as Knative serves one: the
//! ingress sends its requests upstream over HTTP/2 with prior knowledge (its public port is
//! `http2`), the activator serves them on 8013 and proxies them with an h2c transport (Knative's
//! `NewProxyAutoTransport`: h2c for HTTP/2 requests) to the pods' 8013 through its real Envoy
//! sidecar (`PassthroughCluster`'s `use_downstream_protocol_config`, or the `http2` cluster of
//! the private Service), and the pod sees HTTP/2 (`x-kasi-proto: HTTP/2.0`). The activator
//! writes one `cookie` field per cookie-pair, as Go's HTTP/2 client does. Its pods scale, stop
//! and come back like `hello`'s.

#[path = "support/istiod.rs"]
mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kasi_lab::knative::activator::{Activator, NAMESPACE_HEADER, REVISION_HEADER};
use kasi_lab::knative::routing::{MeshMode, ProtocolType, RevisionTarget, Routing};
use kasi_lab::knative::seed::{HELLO_H2C_HOST, HELLO_H2C_REVISION, HELLO_HOST, SYSTEM_NAMESPACE};
use kasi_lab::kube_api::find_by_kind;
use kasi_lab::{Lab, LabOptions};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use support::envoy_binary;

/// What a pod answered: status, `x-kasi-pod`, `x-kasi-proto`, and the cookie fields it echoed.
#[derive(Debug)]
struct Seen {
    status: u16,
    pod: String,
    proto: String,
    cookies: Vec<String>,
}

fn seen(status: u16, headers: &http::HeaderMap, body: &[u8]) -> Seen {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    Seen {
        status,
        pod: header("x-kasi-pod"),
        proto: header("x-kasi-proto"),
        cookies: String::from_utf8_lossy(body)
            .lines()
            .filter_map(|l| l.strip_prefix("cookie: "))
            .map(str::to_owned)
            .collect(),
    }
}

/// GET `/` over HTTP/2 with prior knowledge, one connection per request.
async fn get_h2(to: SocketAddr, host: &str, cookies: &[&str]) -> Seen {
    let stream = tokio::net::TcpStream::connect(to).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut request = Request::get(format!("http://{host}/"));
    for cookie in cookies {
        request = request.header("cookie", *cookie);
    }
    let request = request.body(Empty::<Bytes>::new()).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(20), sender.send_request(request))
        .await
        .expect("an answer in time")
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    seen(parts.status.as_u16(), &parts.headers, &body)
}

/// GET `/` over HTTP/1.1.
async fn get_h1(to: SocketAddr, host: &str, cookies: &[&str]) -> Seen {
    let stream = tokio::net::TcpStream::connect(to).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = Request::get("/").header("host", host);
    for cookie in cookies {
        request = request.header("cookie", *cookie);
    }
    let request = request.body(Empty::<Bytes>::new()).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(20), sender.send_request(request))
        .await
        .expect("an answer in time")
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    seen(parts.status.as_u16(), &parts.headers, &body)
}

fn ingress(lab: &Lab) -> SocketAddr {
    lab.ingress_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap()
}

/// Sets a ConfigMap key in the lab's API, as `kubectl edit` would.
fn set_config(lab: &Lab, name: &str, key: &str, value: &str) {
    let rt = find_by_kind("v1", "ConfigMap").unwrap();
    let mut map = lab.store.get(rt, Some(SYSTEM_NAMESPACE), name).unwrap();
    map["apiVersion"] = "v1".into();
    map["kind"] = "ConfigMap".into();
    map["data"][key] = value.into();
    lab.store.put(map).unwrap();
}

/// Until `routing` shows `done` (the informers refresh within their debounce).
async fn until(lab: &Lab, done: impl Fn(&Routing) -> bool) {
    for _ in 0..100 {
        if done(&lab.routing.read().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the lab's routing did not follow the API");
}

/// `kubectl rollout restart deployment/activator`, and wait until only activators that started
/// with `mode` are running and in the Endpoints.
async fn roll_activators(lab: &Lab, mode: &str) {
    let rt = find_by_kind("apps/v1", "Deployment").unwrap();
    let mut deployment = lab
        .store
        .get(rt, Some(SYSTEM_NAMESPACE), "activator")
        .unwrap();
    deployment["apiVersion"] = "apps/v1".into();
    deployment["kind"] = "Deployment".into();
    deployment["spec"]["template"]["metadata"]["annotations"]
        ["kubectl.kubernetes.io/restartedAt"] =
        format!("{mode} {:?}", std::time::SystemTime::now()).into();
    lab.store.put(deployment).unwrap();
    for _ in 0..600 {
        let running = lab.activators();
        let ips: Vec<std::net::IpAddr> = running.iter().map(|a| a.ip).collect();
        let in_endpoints: Vec<std::net::IpAddr> = lab
            .routing
            .read()
            .unwrap()
            .activators
            .iter()
            .map(|a| a.ip())
            .collect();
        if !running.is_empty()
            && running
                .iter()
                .all(|a| format!("{:?}", a.activator.mesh_mode).eq_ignore_ascii_case(mode))
            && in_endpoints.len() == ips.len()
            && in_endpoints.iter().all(|ip| ips.contains(ip))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the activators did not roll to mesh-compatibility-mode {mode}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_revision_is_served_over_http2_end_to_end() {
    let lab = Lab::start(LabOptions {
        envoy: Some(envoy_binary()),
        services: 5,
        activators: 1,
        hello_pods: 1,
        h2c_pods: 2,
        mcp_pods: 1,
        ..LabOptions::default()
    })
    .await
    .expect("the lab starts (Envoy: KASI_ENVOY or on PATH)");
    let ingress = ingress(&lab);
    let pods: Vec<String> = lab
        .revision_pods(HELLO_H2C_REVISION)
        .await
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(pods.len(), 2);

    // Knative's default burst capacity: half the requests go through an activator, half
    // straight to a pod; HTTP/2 either way, whatever the client spoke.
    let mut served = std::collections::BTreeSet::new();
    for _ in 0..4 {
        for answer in [
            get_h2(ingress, HELLO_H2C_HOST, &["a=1; b=2"]).await,
            get_h1(ingress, HELLO_H2C_HOST, &["a=1; b=2"]).await,
        ] {
            assert_eq!(answer.status, 200, "{answer:?}");
            assert_eq!(answer.proto, "HTTP/2.0", "{answer:?}");
            assert!(pods.contains(&answer.pod), "{answer:?}");
            served.insert(answer.pod);
        }
    }
    assert_eq!(served.len(), 2, "both pods serve: {served:?}");
    // `hello` stays HTTP/1.1 to its pods, even for an HTTP/2 client.
    let hello = get_h2(ingress, HELLO_HOST, &[]).await;
    assert_eq!(
        (hello.status, hello.proto.as_str()),
        (200, "HTTP/1.1"),
        "{hello:?}"
    );
    // Scaling and stopping work for this revision as for `hello`: a third pod joins the
    // Endpoints and serves, a stopped one leaves rotation.
    lab.scale_revision(HELLO_H2C_REVISION, 3).await.unwrap();
    let pods: Vec<String> = lab
        .revision_pods(HELLO_H2C_REVISION)
        .await
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(pods.len(), 3);
    let mut served = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let answer = get_h2(ingress, HELLO_H2C_HOST, &[]).await;
        assert_eq!(
            (answer.status, answer.proto.as_str()),
            (200, "HTTP/2.0"),
            "{answer:?}"
        );
        served.insert(answer.pod);
    }
    assert_eq!(served.len(), 3, "{served:?}");
    lab.stop_pod(&pods[0]).await.unwrap();
    for _ in 0..6 {
        let answer = get_h2(ingress, HELLO_H2C_HOST, &[]).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_ne!(answer.pod, pods[0], "{answer:?}");
    }
    lab.restore_pod(&pods[0]).await.unwrap();
    lab.scale_revision(HELLO_H2C_REVISION, 2).await.unwrap();
    assert_eq!(lab.revision_pods(HELLO_H2C_REVISION).await.len(), 2);
    // A host no Route answers for.
    assert_eq!(
        get_h2(ingress, "nope.default.example.com", &[])
            .await
            .status,
        404
    );

    // The activator always in the path, sending to the pods' own addresses (8013), and to
    // the private Service's ClusterIP: HTTP/2 through the sidecar both ways. The cookie pairs
    // leave the activator as separate fields; Envoy's HTTP/2 codec joins crumbled cookies
    // back into one field before the filters see them (RFC 9113 §8.2.3;
    // `source/common/http/http2/codec_impl.cc` `reconstituteCrumbledCookies`), so the pod
    // gets them joined.
    set_config(&lab, "config-autoscaler", "target-burst-capacity", "-1");
    for mode in ["disabled", "enabled"] {
        set_config(&lab, "config-network", "mesh-compatibility-mode", mode);
        until(&lab, |r| {
            r.activator_always_in_path() && format!("{:?}", r.mesh_mode).eq_ignore_ascii_case(mode)
        })
        .await;
        // The activator reads the mode when it starts: roll it.
        roll_activators(&lab, mode).await;
        for _ in 0..4 {
            let answer = get_h2(ingress, HELLO_H2C_HOST, &["a=1; b=2", "c=3"]).await;
            assert_eq!(answer.status, 200, "{mode}: {answer:?}");
            assert_eq!(answer.proto, "HTTP/2.0", "{mode}: {answer:?}");
            assert_eq!(answer.cookies, ["a=1; b=2; c=3"], "{mode}: {answer:?}");
        }
    }
    lab.shutdown().await;
}

/// The activator's side of that: for an HTTP/2 request to an h2c revision it dials the pod's
/// 8013 (the PROXY header names it) and speaks HTTP/2 with prior knowledge, one `cookie` field
/// per pair. A stand-in for its sidecar records what arrives.
#[tokio::test]
async fn the_activator_speaks_h2c_to_h2c_revisions_with_one_field_per_cookie() {
    type Record = Arc<Mutex<Vec<(String, http::Version, Vec<String>)>>>;
    let record: Record = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let outbound = listener.local_addr().unwrap();
    let seen = Arc::clone(&record);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                // The PROXY v1 line, byte by byte so nothing of the HTTP/2 preface is lost.
                let mut proxy = Vec::new();
                while !proxy.ends_with(b"\r\n") {
                    let mut byte = [0u8; 1];
                    if tokio::io::AsyncReadExt::read_exact(&mut stream, &mut byte)
                        .await
                        .is_err()
                    {
                        return;
                    }
                    proxy.push(byte[0]);
                }
                let proxy = String::from_utf8_lossy(&proxy).trim().to_owned();
                let service = hyper::service::service_fn(move |request: Request<_>| {
                    let cookies = request
                        .headers()
                        .get_all("cookie")
                        .iter()
                        .map(|v| v.to_str().unwrap().to_owned())
                        .collect();
                    seen.lock()
                        .unwrap()
                        .push((proxy.clone(), request.version(), cookies));
                    async {
                        Ok::<_, std::convert::Infallible>(
                            http::Response::new(Empty::<Bytes>::new()),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let mut revisions = BTreeMap::new();
    revisions.insert(
        ("default".to_owned(), HELLO_H2C_REVISION.to_owned()),
        RevisionTarget {
            ready_pods: vec!["10.0.0.1:8013".parse().unwrap()],
            private_service: None,
            protocol: ProtocolType::H2c,
        },
    );
    let routing = Arc::new(RwLock::new(Routing {
        mesh_mode: MeshMode::Disabled,
        revisions,
        ..Routing::default()
    }));
    let listen: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let activator = Activator::new(listen, outbound, routing, MeshMode::Disabled);
    let _serving = activator.start().await.unwrap();

    let stream = tokio::net::TcpStream::connect(listen).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::get(format!("http://{HELLO_H2C_HOST}/"))
        .header(NAMESPACE_HEADER, "default")
        .header(REVISION_HEADER, HELLO_H2C_REVISION)
        .header("cookie", "a=1; b=2")
        .header("cookie", "c=3")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let record = record.lock().unwrap().clone();
    assert_eq!(record.len(), 1, "{record:?}");
    let (proxy, version, cookies) = &record[0];
    let fields: Vec<&str> = proxy.split(' ').collect();
    assert_eq!((fields[3], fields[5]), ("10.0.0.1", "8013"), "{proxy}");
    assert_eq!(*version, http::Version::HTTP_2);
    assert_eq!(cookies, &["a=1", "b=2", "c=3"]);
}
