//! `pods/{name}/portforward`, in the three forms clients ask for it:
//!
//! - WebSocket with subprotocol `v4.channel.k8s.io` (kube-rs): one channel pair per port named in
//!   `?ports=` ([`channel`]);
//! - an `Upgrade: SPDY/3.1` request with `X-Stream-Protocol-Version: portforward.k8s.io`
//!   (kubectl's classic dialer): a 101, then SPDY streams on the connection ([`httpstream`]);
//! - WebSocket with subprotocol `SPDY/3.1+portforward.k8s.io` (kubectl ≥ 1.31 tries it first):
//!   the same SPDY bytes carried in binary messages, as the API server's `TunnelingHandler`
//!   (kubernetes `staging/src/k8s.io/apiserver/pkg/util/proxy/streamtunnel.go`) and client-go's
//!   `TunnelingConnection` (`client-go/tools/portforward/tunneling_connection.go`) carry them.
//!
//! Each forwarded port is bridged to a TCP connection to [`LabHooks::port_forward_target`].

mod channel;
mod httpstream;
mod spdy;

use super::http::{full_body, Body, Query};
use super::routes::ResourcePath;
use super::status::ApiError;
use super::store::Store;
use super::LabHooks;
use futures::{SinkExt, StreamExt};
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use hyper_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use hyper_tungstenite::tungstenite::Message;
use hyper_tungstenite::HyperWebsocket;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// kubelet's only port-forward protocol (`PortForwardProtocolV1Name`).
const PROTOCOL: &str = "portforward.k8s.io";
/// How a WebSocket subprotocol names a tunnelled SPDY protocol (`WebsocketsSPDYTunnelingPrefix`).
const TUNNEL_PREFIX: &str = "SPDY/3.1+";
const SPDY_UPGRADE: &str = "SPDY/3.1";
const PROTOCOL_VERSION: &str = "x-stream-protocol-version";
const ACCEPTED_PROTOCOL_VERSIONS: &str = "x-accepted-stream-protocol-versions";
/// Incoming WebSocket messages and frames above this are refused (tungstenite's defaults are 64
/// and 16 MiB): clients send a few kB at a time (kubectl 32 kB, kube-rs 4 kB).
const MAX_WEBSOCKET_MESSAGE: usize = 1 << 20;

const NOTHING_LISTENS: &str = "nothing listens on this port in the lab";

fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_WEBSOCKET_MESSAGE))
        .max_frame_size(Some(MAX_WEBSOCKET_MESSAGE))
}

/// What the error channel or stream says when a port cannot be reached (kubelet's wording).
fn forward_error(port: u16, pod: &str, uid: Option<&str>, error: &str) -> String {
    let uid = uid.map(|uid| format!(", uid {uid}")).unwrap_or_default();
    format!("error forwarding port {port} to pod {pod}{uid}: failed to connect to localhost:{port}: {error}")
}

pub fn handle<B>(
    store: &Store,
    hooks: &Arc<dyn LabHooks>,
    path: &ResourcePath,
    query: &Query,
    request: &mut Request<B>,
) -> Result<Response<Body>, ApiError> {
    let name = path.name.as_deref().unwrap_or_default();
    let namespace = path.namespace.as_deref().unwrap_or("default");
    let Some(object) = store.get(path.rt, Some(namespace), name) else {
        return Err(ApiError::NotFound {
            resource: "pods".into(),
            name: name.to_string(),
        });
    };
    let pod = httpstream::Pod {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        uid: object["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        hooks: hooks.clone(),
    };
    if hyper_tungstenite::is_upgrade_request(request) {
        let offered = comma_separated(request, header::SEC_WEBSOCKET_PROTOCOL.as_str());
        // The API server tunnels when any offered subprotocol is a tunnelled SPDY one
        // (`IsWebSocketRequestWithTunnelingProtocol`).
        let tunnelled: Vec<String> = offered
            .iter()
            .filter(|p| p.starts_with(TUNNEL_PREFIX) && p.ends_with(".k8s.io"))
            .map(|p| p[TUNNEL_PREFIX.len()..].to_owned())
            .collect();
        if !tunnelled.is_empty() {
            return tunnel(pod, &tunnelled, request);
        }
        let v4 = offered.iter().any(|p| p == channel::SUBPROTOCOL);
        return channel::handle(hooks.as_ref(), namespace, name, query, v4, request);
    }
    if is_spdy_upgrade(request) {
        return spdy_upgrade(pod, request);
    }
    Err(ApiError::BadRequest(format!(
        "port forwarding needs an upgrade: {SPDY_UPGRADE} with {PROTOCOL_VERSION}: {PROTOCOL}, \
         or a WebSocket with subprotocol {} or {TUNNEL_PREFIX}{PROTOCOL}",
        channel::SUBPROTOCOL
    )))
}

/// The values of a comma-separated header over all its lines, trimmed.
fn comma_separated<B>(request: &Request<B>, name: &str) -> Vec<String> {
    request
        .headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// `Connection: Upgrade` and `Upgrade: SPDY/3.1` (spdy `responseUpgrader.UpgradeResponse`).
fn is_spdy_upgrade<B>(request: &Request<B>) -> bool {
    let contains = |name: header::HeaderName, wanted: &str| {
        request
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains(wanted))
    };
    contains(header::CONNECTION, "upgrade")
        && contains(header::UPGRADE, &SPDY_UPGRADE.to_ascii_lowercase())
}

/// `httpstream.Handshake`'s refusal: 403 with the protocols the server accepts, as plain text.
fn no_common_protocol(offered: &[String]) -> Response<Body> {
    let mut response = Response::new(full_body(format!(
        "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts [\"{PROTOCOL}\"]\n"
    )));
    *response.status_mut() = StatusCode::FORBIDDEN;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        ACCEPTED_PROTOCOL_VERSIONS,
        HeaderValue::from_static(PROTOCOL),
    );
    response
}

/// kubectl's classic dialer: 101 Switching Protocols, then SPDY on the same connection.
fn spdy_upgrade<B>(
    pod: httpstream::Pod,
    request: &mut Request<B>,
) -> Result<Response<Body>, ApiError> {
    let offered = comma_separated(request, PROTOCOL_VERSION);
    if offered.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "unable to upgrade: {PROTOCOL_VERSION} is required"
        )));
    }
    if !offered.iter().any(|p| p == PROTOCOL) {
        return Ok(no_common_protocol(&offered));
    }
    let upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => httpstream::serve(TokioIo::new(upgraded), pod).await,
            Err(error) => tracing::debug!(%error, "port-forward: SPDY upgrade failed"),
        }
    });
    let mut response = Response::new(full_body(bytes::Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(PROTOCOL_VERSION, HeaderValue::from_static(PROTOCOL));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static(SPDY_UPGRADE));
    Ok(response)
}

/// kubectl's tunnelling dialer: a WebSocket whose binary messages carry the SPDY connection.
fn tunnel<B>(
    pod: httpstream::Pod,
    protocols: &[String],
    request: &mut Request<B>,
) -> Result<Response<Body>, ApiError> {
    if !protocols.iter().any(|p| p == PROTOCOL) {
        return Ok(no_common_protocol(protocols));
    }
    let (response, websocket) = hyper_tungstenite::upgrade(request, Some(websocket_config()))
        .map_err(|e| ApiError::BadRequest(format!("bad WebSocket upgrade: {e}")))?;
    let (mut parts, body) = response.into_parts();
    parts.headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static("SPDY/3.1+portforward.k8s.io"),
    );
    let (session_end, pump_end) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        if let Err(error) = pump(websocket, pump_end).await {
            tracing::debug!(%error, "port-forward: tunnel ended");
        }
    });
    tokio::spawn(httpstream::serve(session_end, pod));
    let body = body.map_err(|never| match never {}).boxed();
    Ok(Response::from_parts(parts, body))
}

/// Copies between the WebSocket's binary messages and a byte pipe to the SPDY session. Like
/// `TunnelingConnection`, a message boundary means nothing and a text message ends the tunnel.
async fn pump(
    websocket: HyperWebsocket,
    session: DuplexStream,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (mut sink, mut messages) = websocket.await?.split();
    let (mut from_session, mut to_session) = tokio::io::split(session);
    let mut buffer = vec![0u8; spdy::DATA_CHUNK + 64];
    loop {
        tokio::select! {
            message = messages.next() => match message {
                Some(Ok(Message::Binary(data))) => to_session.write_all(&data).await?,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Text(_) | Message::Close(_))) | Some(Err(_)) | None => break,
            },
            read = from_session.read(&mut buffer) => match read? {
                0 => break,
                n => sink.send(Message::binary(buffer[..n].to_vec())).await?,
            },
        }
    }
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await;
    Ok(())
}
