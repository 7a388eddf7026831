//! The probe against a small loopback server that sets a session cookie and `x-kasi-pod`, the way
//! the lab's pods and kasi do: each virtual user keeps its own jar, `--header` and `--resolve`
//! reach the server, users overlap in time, `--http2` speaks HTTP/2 (h2c and ALPN h2), https
//! with a self-signed certificate needs `--insecure`, and MCP clients re-initialize after a 404
//! and end their sessions with DELETE.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kasi::probe::{self, ProbeOptions, ProbeReport};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

const POD: &str = "pod-a";
/// Each answer waits this long, so concurrent users are seen in flight together.
const SERVICE_TIME: Duration = Duration::from_millis(40);

/// What the server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    version: String,
    host: Option<String>,
    probe_header: Option<String>,
    cookie: Option<String>,
    session: Option<String>,
}

#[derive(Default)]
struct Server {
    seen: Mutex<Vec<Seen>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    cookies_issued: AtomicUsize,
    mcp_sessions: Mutex<Vec<String>>,
}

impl Server {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    async fn answer(&self, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let seen = Seen {
            method: request.method().to_string(),
            version: format!("{:?}", request.version()),
            // HTTP/2 carries the authority in the URI, HTTP/1.1 in Host.
            host: header("host").or_else(|| request.uri().authority().map(|a| a.to_string())),
            probe_header: header("x-probe"),
            cookie: header("cookie"),
            session: header("mcp-session-id"),
        };
        self.seen.lock().unwrap().push(seen.clone());
        let is_mcp = request.uri().path() == "/mcp";
        let body = request.into_body().collect().await.unwrap().to_bytes();
        tokio::time::sleep(SERVICE_TIME).await;
        let response = if is_mcp {
            self.mcp(&seen, &body)
        } else {
            self.cookie(&seen)
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        response
    }

    /// A session cookie for whoever comes without one.
    fn cookie(&self, seen: &Seen) -> Response<Full<Bytes>> {
        let mut response = Response::builder().header("x-kasi-pod", POD);
        if seen.cookie.is_none() {
            let n = self.cookies_issued.fetch_add(1, Ordering::SeqCst);
            response = response.header("set-cookie", format!("kasi-session=user-{n}; Path=/"));
        }
        response.body(Full::new(Bytes::from("hello"))).unwrap()
    }

    /// A Streamable HTTP server that forgets each session after its second call (a 404 then,
    /// as a pod that lost it), answering `initialize` over SSE and calls as plain JSON.
    fn mcp(&self, seen: &Seen, body: &[u8]) -> Response<Full<Bytes>> {
        let respond = |status: u16| Response::builder().status(status).header("x-kasi-pod", POD);
        if seen.method == "DELETE" {
            return respond(200).body(Full::default()).unwrap();
        }
        let message: serde_json::Value = serde_json::from_slice(body).unwrap();
        let id = message.get("id").cloned();
        match message["method"].as_str().unwrap() {
            "initialize" => {
                let mut sessions = self.mcp_sessions.lock().unwrap();
                let session = format!("s{}", sessions.len());
                sessions.push(session.clone());
                let reply = serde_json::json!({"jsonrpc": "2.0", "id": id, "result": {}});
                respond(200)
                    .header("mcp-session-id", session)
                    .header("content-type", "text/event-stream")
                    .body(Full::new(Bytes::from(format!(
                        "id: 0\ndata:\n\nevent: message\ndata: {reply}\n\n"
                    ))))
                    .unwrap()
            }
            "notifications/initialized" => respond(202).body(Full::default()).unwrap(),
            _ => {
                let session = seen.session.clone().unwrap_or_default();
                let calls = self
                    .seen()
                    .iter()
                    .filter(|s| s.session.as_deref() == Some(&session) && s.method == "POST")
                    .count();
                // The notification and two calls, then the session is gone.
                if calls > 3 {
                    return respond(404).body(Full::default()).unwrap();
                }
                let reply =
                    serde_json::json!({"jsonrpc": "2.0", "id": id, "result": {"content": []}});
                respond(200)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(reply.to_string())))
                    .unwrap()
            }
        }
    }
}

/// Serves HTTP/1.1 and HTTP/2 (h2c prior knowledge) on loopback, or TLS with ALPN when given a
/// TLS config.
async fn serve(tls: Option<Arc<rustls::ServerConfig>>) -> (SocketAddr, Arc<Server>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Arc::new(Server::default());
    let state = Arc::clone(&server);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (state, tls) = (Arc::clone(&state), tls.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let state = Arc::clone(&state);
                    async move { Ok::<_, std::convert::Infallible>(state.answer(request).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = match tls {
                    Some(tls) => {
                        let Ok(stream) = tokio_rustls::TlsAcceptor::from(tls).accept(stream).await
                        else {
                            return;
                        };
                        builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                    }
                    None => {
                        builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                    }
                };
            });
        }
    });
    (addr, server)
}

/// A self-signed certificate for `probe.test`, offering h2 and http/1.1.
fn self_signed() -> Arc<rustls::ServerConfig> {
    let certified = rcgen::generate_simple_self_signed(vec!["probe.test".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// The URL by a DNS name that only `--resolve` knows.
fn options(scheme: &str, addr: SocketAddr, path: &str) -> ProbeOptions {
    let host = format!("probe.test:{}", addr.port());
    ProbeOptions {
        url: format!("{scheme}://{host}{path}"),
        resolve: vec![
            format!("probe.test:1:127.0.0.9"),
            format!("{host}:{}", addr.ip()),
        ],
        sessions: 4,
        requests_per_session: 3,
        ..ProbeOptions::default()
    }
}

async fn run(options: &ProbeOptions) -> ProbeReport {
    probe::run(options, None).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_keeps_its_own_cookie_and_users_overlap() {
    let (addr, server) = serve(None).await;
    let options = ProbeOptions {
        headers: vec!["X-Probe: yes".into()],
        ..options("http", addr, "/")
    };
    let (progress_tx, mut progress) = tokio::sync::mpsc::channel(64);
    let report = probe::run(&options, Some(progress_tx)).await.unwrap();

    assert_eq!((report.requests, report.failures), (12, 0), "{report:?}");
    assert_eq!(report.hit_rate, Some(1.0));
    assert_eq!(report.protocol.as_deref(), Some("HTTP/1.1"));
    for session in &report.sessions {
        assert_eq!(session.pinned.as_deref(), Some(POD), "{report:?}");
        assert_eq!((session.requests, session.hits), (3, 2));
    }
    let seen = server.seen();
    // One cookie per user, each sent back by its own user only: jars are not shared.
    assert_eq!(server.cookies_issued.load(Ordering::SeqCst), 4);
    let mut sent: Vec<String> = seen.iter().filter_map(|s| s.cookie.clone()).collect();
    sent.sort();
    let expected: Vec<String> = (0..4)
        .flat_map(|n| vec![format!("kasi-session=user-{n}"); 2])
        .collect();
    assert_eq!(sent, expected);
    // --header on every request; --resolve kept the name as the Host.
    assert!(seen
        .iter()
        .all(|s| s.probe_header.as_deref() == Some("yes")));
    let host = format!("probe.test:{}", addr.port());
    assert!(seen
        .iter()
        .all(|s| s.host.as_deref() == Some(host.as_str())));
    assert!(
        server.most_in_flight.load(Ordering::SeqCst) >= 2,
        "the users took turns instead of running together"
    );
    // The final report is the last progress.
    let mut last = None;
    while let Ok(report) = progress.try_recv() {
        last = Some(report);
    }
    assert_eq!(last.as_ref(), Some(&report));

    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["failures"], 0);
    assert_eq!(json["hit_rate"], 1.0);
    assert_eq!(json["kind"], "cookie");
    assert_eq!(json["protocol"], "HTTP/1.1");
    assert_eq!(json["sessions"][0]["pinned"], POD);
    assert!(json["sessions"][0].get("not_found").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_spaces_each_users_requests() {
    let (addr, _server) = serve(None).await;
    let options = ProbeOptions {
        pause: Duration::from_millis(150),
        ..options("http", addr, "/")
    };
    let started = std::time::Instant::now();
    let report = run(&options).await;
    assert_eq!(report.failures, 0);
    // Two pauses per user, users in parallel: well under the 4 × 2 pauses of taking turns.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(1200), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_when_asked_h2c_on_http() {
    let (addr, server) = serve(None).await;
    let options = ProbeOptions {
        http2: true,
        ..options("http", addr, "/")
    };
    let report = run(&options).await;
    assert_eq!(report.failures, 0, "{report:?}");
    assert_eq!(report.protocol.as_deref(), Some("HTTP/2.0"));
    assert!(server.seen().iter().all(|s| s.version == "HTTP/2.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_self_signed_certificate_needs_insecure() {
    let (addr, server) = serve(Some(self_signed())).await;
    let refused = run(&options("https", addr, "/")).await;
    assert_eq!(refused.failures, refused.requests, "{refused:?}");
    assert!(server.seen().is_empty());

    let report = run(&ProbeOptions {
        insecure: true,
        ..options("https", addr, "/")
    })
    .await;
    assert_eq!(report.failures, 0, "{report:?}");
    assert_eq!(report.hit_rate, Some(1.0));
    assert_eq!(report.protocol.as_deref(), Some("HTTP/1.1"));
    assert_eq!(server.cookies_issued.load(Ordering::SeqCst), 4);

    let h2 = run(&ProbeOptions {
        insecure: true,
        http2: true,
        ..options("https", addr, "/")
    })
    .await;
    assert_eq!(h2.failures, 0, "{h2:?}");
    assert_eq!(h2.protocol.as_deref(), Some("HTTP/2.0"), "ALPN h2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_clients_reinitialize_after_a_404_and_delete_their_session() {
    let (addr, server) = serve(None).await;
    let options = ProbeOptions {
        mcp: true,
        sessions: 3,
        requests_per_session: 5,
        ..options("http", addr, "/mcp")
    };
    let report = run(&options).await;
    // Per client: calls 1-2 answered, 3 a 404, 4-5 answered in a new session.
    assert_eq!(report.requests, 15, "{report:?}");
    for session in &report.sessions {
        assert_eq!(session.not_found, 1, "{report:?}");
        assert_eq!(session.initializations, 2, "{report:?}");
        assert_eq!(session.failures, 1, "{report:?}");
        assert_eq!(session.pinned.as_deref(), Some(POD));
    }
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["kind"], "mcp");
    assert_eq!(json["sessions"][0]["not_found"], 1);
    assert_eq!(json["sessions"][0]["initializations"], 2);
    let deleted: Vec<Seen> = server
        .seen()
        .into_iter()
        .filter(|s| s.method == "DELETE")
        .collect();
    assert_eq!(
        deleted.len(),
        3,
        "one DELETE per client, of its live session"
    );
    assert!(deleted.iter().all(|s| s.session.is_some()));
}

/// The UI's stop: users end after the request in flight, and MCP clients still end their
/// sessions with DELETE (an abort would leave them open on the server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_mcp_probe_ends_every_session_with_delete() {
    let (addr, server) = serve(None).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let options = ProbeOptions {
        mcp: true,
        sessions: 3,
        requests_per_session: usize::MAX / 2,
        pause: std::time::Duration::from_secs(30),
        stop: Some(stopped),
        ..options("http", addr, "/mcp")
    };
    let probe = tokio::spawn(async move { probe::run(&options, None).await });
    // Each client's first call (initialize, initialized, the call), then the stop cuts the pause.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.seen().iter().filter(|s| s.method == "POST").count() < 9 {
        assert!(std::time::Instant::now() < deadline, "{:?}", server.seen());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    let report = tokio::time::timeout(std::time::Duration::from_secs(5), probe)
        .await
        .expect("the stop cut the 30 s pause short")
        .unwrap()
        .unwrap();
    assert_eq!(report.requests, 3, "{report:?}");
    let deleted = server
        .seen()
        .into_iter()
        .filter(|s| s.method == "DELETE" && s.session.is_some())
        .count();
    assert_eq!(deleted, 3, "{:?}", server.seen());
}

#[test]
fn the_cli_prints_json_and_rejects_bad_input_in_one_line() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (addr, _server) = runtime.block_on(serve(None));
    let options = options("http", addr, "/");
    let kasi = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kasi"))
            .arg("probe")
            .args(args)
            .output()
            .unwrap()
    };
    let out = kasi(&[
        "--json",
        "--sessions",
        "2",
        "--requests",
        "2",
        "--pause",
        "10ms",
        "-H",
        "X-Probe: yes",
        "--resolve",
        &options.resolve[1],
        &options.url,
    ]);
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["requests"], 4);
    assert_eq!(json["failures"], 0);
    assert_eq!(json["hit_rate"], 1.0);
    assert!(out.stderr.is_empty(), "no progress line without a terminal");

    for (args, says) in [
        (&["--resolve", "x:80", "http://x/"][..], "HOST:PORT:ADDR"),
        (&["--header", "no colon", "http://x/"][..], "'Name: value'"),
        (&["ftp://x/"][..], "http:// or https://"),
    ] {
        let out = kasi(args);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}
