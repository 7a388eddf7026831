//! The lab's `mcp` service is a real stateful MCP server (rmcp's Streamable HTTP server with
//! in-memory sessions) behind the whole Knative path: ingress → activator → the activator's real
//! Envoy sidecar → pod. A client speaking plain JSON-RPC over HTTP, as the MCP spec (2025-11-25,
//! "Streamable HTTP") writes it, sees what it would see in a cluster:
//! - `initialize` answers with an `Mcp-Session-Id`; `tools/call whoami` names the pod;
//! - a session id the pod does not know gets 404, and so does every session of a pod that was
//!   stopped and restored (its memory is gone);
//! - `GET` with `Accept: text/event-stream` opens the session's SSE stream;
//! - with three pods and nothing pinning a session, its requests meet pods that answer 404:
//!   the failure kasi is there to remove.

#[path = "support/istiod.rs"]
mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use kasi_lab::knative::seed::{MCP_HOST, MCP_PATH, MCP_REVISION};
use kasi_lab::{Lab, LabOptions};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use support::envoy_binary;

/// The protocol revision the client asks for: the latest one with sessions.
const PROTOCOL: &str = "2025-11-25";

async fn lab(mcp_pods: usize) -> Lab {
    Lab::start(LabOptions {
        envoy: Some(envoy_binary()),
        services: 5,
        activators: 1,
        hello_pods: 1,
        h2c_pods: 1,
        mcp_pods,
        ..LabOptions::default()
    })
    .await
    .expect("the lab starts (Envoy: KASI_ENVOY or on PATH)")
}

fn ingress(lab: &Lab) -> SocketAddr {
    lab.ingress_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap()
}

/// One request over a new HTTP/1.1 connection to the ingress.
async fn send(ingress: SocketAddr, request: Request<Full<Bytes>>) -> Response<Incoming> {
    let stream = tokio::net::TcpStream::connect(ingress).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    tokio::time::timeout(Duration::from_secs(20), sender.send_request(request))
        .await
        .expect("the ingress answers in time")
        .unwrap()
}

/// A JSON-RPC POST to the MCP endpoint, as an MCP client sends it.
fn post(session: Option<&str>, message: &Value) -> Request<Full<Bytes>> {
    let mut request = Request::post(MCP_PATH)
        .header("host", MCP_HOST)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(session) = session {
        request = request
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", PROTOCOL);
    }
    request
        .body(Full::new(Bytes::from(message.to_string())))
        .unwrap()
}

struct Answer {
    status: u16,
    pod: String,
    session: Option<String>,
    content_type: String,
    body: String,
}

async fn call(ingress: SocketAddr, session: Option<&str>, message: &Value) -> Answer {
    let response = send(ingress, post(session, message)).await;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (status, pod, session, content_type) = (
        response.status().as_u16(),
        header("x-kasi-pod").unwrap_or_default(),
        header("mcp-session-id"),
        header("content-type").unwrap_or_default(),
    );
    let body = tokio::time::timeout(Duration::from_secs(20), response.into_body().collect())
        .await
        .expect("the body ends in time")
        .unwrap()
        .to_bytes();
    Answer {
        status,
        pod,
        session,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// The JSON-RPC message with `id` among an SSE body's `data:` lines.
fn sse_message(body: &str, id: u64) -> Value {
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .find(|message| message["id"] == id)
        .unwrap_or_else(|| panic!("no JSON-RPC message with id {id} in {body:?}"))
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL, "capabilities": {},
        "clientInfo": {"name": "kasi-lab-test", "version": "0"}}})
}

fn whoami(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "whoami", "arguments": {}}})
}

/// `initialize`: the session id and the pod that holds it.
async fn initialize_session(ingress: SocketAddr) -> (String, String) {
    let init = call(ingress, None, &initialize()).await;
    assert_eq!(init.status, 200, "{}", init.body);
    assert!(
        init.content_type.starts_with("text/event-stream"),
        "{}",
        init.content_type
    );
    let result = &sse_message(&init.body, 1)["result"];
    assert_eq!(result["protocolVersion"], PROTOCOL, "{result}");
    assert_eq!(result["serverInfo"]["name"], "kasi-lab-mcp", "{result}");
    assert!(result["capabilities"]["tools"].is_object(), "{result}");
    let session = init
        .session
        .expect("initialize answers with Mcp-Session-Id");
    assert!(
        init.pod.starts_with(&format!("{MCP_REVISION}-deployment-")),
        "{}",
        init.pod
    );
    (session, init.pod)
}

async fn initialized(ingress: SocketAddr, session: &str) -> Answer {
    call(
        ingress,
        Some(session),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await
}

/// `initialize` and `notifications/initialized` (one pod: both reach it).
async fn open_session(ingress: SocketAddr) -> (String, String) {
    let (session, pod) = initialize_session(ingress).await;
    let done = initialized(ingress, &session).await;
    assert_eq!(done.status, 202, "{}", done.body);
    assert_eq!(done.pod, pod);
    (session, pod)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_session_lives_on_its_pod_through_the_ingress() {
    let lab = lab(1).await;
    let ingress = ingress(&lab);
    let pods = lab.revision_pods(MCP_REVISION).await;
    assert_eq!(pods.len(), 1, "{pods:?}");
    let pod = pods[0].0.clone();

    let (session, served_by) = open_session(ingress).await;
    assert_eq!(served_by, pod);

    // tools/list names whoami; whoami names the pod, and counts this session's calls (state
    // that lives in the pod's memory).
    let list = call(
        ingress,
        Some(&session),
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await;
    assert_eq!(list.status, 200, "{}", list.body);
    let tools = &sse_message(&list.body, 2)["result"]["tools"];
    assert_eq!(tools[0]["name"], "whoami", "{tools}");
    for (id, calls) in [(3, 1), (4, 2)] {
        let answer = call(ingress, Some(&session), &whoami(id)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.pod, pod);
        let result = &sse_message(&answer.body, id)["result"];
        assert_eq!(result["content"][0]["text"], pod.as_str(), "{result}");
        assert_eq!(result["structuredContent"]["calls"], calls, "{result}");
    }

    // A session this pod never issued: 404, from the pod itself.
    let unknown = call(ingress, Some("not-a-session"), &whoami(5)).await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(unknown.pod, pod);

    // The session's standalone SSE stream opens and starts with rmcp's priming event.
    let request = Request::get(MCP_PATH)
        .header("host", MCP_HOST)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session.as_str())
        .header("mcp-protocol-version", PROTOCOL)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = send(ingress, request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    assert_eq!(response.headers()["x-kasi-pod"].to_str().unwrap(), pod);
    let mut body = response.into_body();
    let mut seen = String::new();
    while !seen.contains("\n\n") {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("the stream sends its first event in time")
            .expect("the stream stays open")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(seen.contains("retry:"), "{seen:?}");
    drop(body);

    // The pod dies and comes back: a new container, no sessions.
    lab.stop_pod(&pod).await.unwrap();
    let down = call(ingress, Some(&session), &whoami(6)).await;
    assert!(down.status >= 500, "{} {}", down.status, down.body);
    lab.restore_pod(&pod).await.unwrap();
    let gone = call(ingress, Some(&session), &whoami(7)).await;
    assert_eq!(gone.status, 404, "{}", gone.body);
    assert_eq!(gone.pod, pod);
    let (again, _) = open_session(ingress).await;
    assert_ne!(again, session);
    lab.shutdown().await;
}

/// Three pods and nothing pinning the session to its pod: the ingress and the activator spread
/// its requests, and the pods that did not issue it answer 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_affinity_a_session_meets_pods_that_do_not_know_it() {
    let lab = lab(3).await;
    let ingress = ingress(&lab);
    assert_eq!(lab.revision_pods(MCP_REVISION).await.len(), 3);
    let (session, home) = initialize_session(ingress).await;
    let mut answers = Vec::new();
    // Even the handshake's second half may land on another pod; a client would retry.
    loop {
        let done = initialized(ingress, &session).await;
        answers.push((done.status, done.pod));
        if done.status == 202 {
            break;
        }
        assert!(answers.len() < 20, "{answers:?}");
    }
    for id in 10..22 {
        let answer = call(ingress, Some(&session), &whoami(id)).await;
        answers.push((answer.status, answer.pod));
    }
    for (status, pod) in &answers {
        match status {
            200 | 202 => assert_eq!(pod, &home, "{answers:?}"),
            404 => assert_ne!(pod, &home, "{answers:?}"),
            _ => panic!("{answers:?}"),
        }
    }
    assert!(
        answers.iter().any(|(status, _)| *status == 404),
        "every request found the session's pod: {answers:?}"
    );
    lab.shutdown().await;
}
