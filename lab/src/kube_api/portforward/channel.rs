//! `pods/{name}/portforward` over WebSocket with the `v4.channel.k8s.io` subprotocol, as kubelet
//! serves it: for the i-th requested port, channel 2i carries data and 2i+1 errors; each channel
//! first carries the port number (2 bytes, little endian); every binary frame starts with its
//! channel byte (`staging/src/k8s.io/kubelet/pkg/cri/streaming/portforward/websocket.go`). Each
//! port is bridged to a TCP connection to [`LabHooks::port_forward_target`].

use super::{forward_error, websocket_config, NOTHING_LISTENS};
use crate::kube_api::http::{Body, Query};
use crate::kube_api::status::ApiError;
use crate::kube_api::LabHooks;
use futures::{SinkExt, StreamExt};
use http::{header, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper_tungstenite::tungstenite::Message;
use hyper_tungstenite::HyperWebsocket;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

pub const SUBPROTOCOL: &str = "v4.channel.k8s.io";

fn requested_ports(query: &Query) -> Result<Vec<u16>, ApiError> {
    let ports: Result<Vec<u16>, _> = query
        .get("ports")
        .unwrap_or("")
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| p.trim().parse::<u16>())
        .collect();
    match ports {
        Ok(ports) if !ports.is_empty() && !ports.contains(&0) => Ok(ports),
        _ => Err(ApiError::BadRequest(
            "ports: at least one port in 1-65535 is required (e.g. ?ports=15000)".into(),
        )),
    }
}

/// Upgrades `request` (a WebSocket upgrade) and bridges the requested ports of `namespace/name`.
pub fn handle<B>(
    hooks: &dyn LabHooks,
    namespace: &str,
    name: &str,
    query: &Query,
    offered: bool,
    request: &mut Request<B>,
) -> Result<Response<Body>, ApiError> {
    let ports = requested_ports(query)?;
    let targets: Vec<(u16, Option<SocketAddr>)> = ports
        .iter()
        .map(|port| (*port, hooks.port_forward_target(namespace, name, *port)))
        .collect();
    let (response, websocket) = hyper_tungstenite::upgrade(request, Some(websocket_config()))
        .map_err(|e| ApiError::BadRequest(format!("bad WebSocket upgrade: {e}")))?;
    let (mut parts, body) = response.into_parts();
    if offered {
        parts.headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    let pod = format!("{namespace}/{name}");
    tokio::spawn(async move {
        if let Err(error) = bridge(websocket, targets, &pod).await {
            tracing::debug!(%pod, %error, "port-forward ended");
        }
    });
    let body = body.map_err(|never| match never {}).boxed();
    Ok(Response::from_parts(parts, body))
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::binary(bytes)
}

/// What the per-port readers tell the WebSocket writer.
enum Outgoing {
    Frame(Message),
    PortClosed,
}

async fn bridge(
    websocket: HyperWebsocket,
    targets: Vec<(u16, Option<SocketAddr>)>,
    pod: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (mut sink, mut stream) = websocket.await?.split();
    let (outgoing, mut outgoing_rx) = mpsc::channel::<Outgoing>(64);
    let mut writers: Vec<Option<OwnedWriteHalf>> = Vec::new();
    let mut open_ports = 0usize;
    for (index, (port, target)) in targets.iter().enumerate() {
        let data_channel = u8::try_from(2 * index)?;
        let error_channel = data_channel + 1;
        sink.send(frame(data_channel, &port.to_le_bytes())).await?;
        sink.send(frame(error_channel, &port.to_le_bytes())).await?;
        let connection = match target {
            Some(address) => TcpStream::connect(address).await.map_err(|e| e.to_string()),
            None => Err(NOTHING_LISTENS.to_string()),
        };
        match connection {
            Ok(connection) => {
                let (mut reader, writer) = connection.into_split();
                writers.push(Some(writer));
                open_ports += 1;
                let outgoing = outgoing.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 32 * 1024];
                    loop {
                        match reader.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let message = Outgoing::Frame(frame(data_channel, &buffer[..n]));
                                if outgoing.send(message).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    let _ = outgoing.send(Outgoing::PortClosed).await;
                });
            }
            Err(error) => {
                writers.push(None);
                let message = forward_error(*port, pod, None, &error);
                sink.send(frame(error_channel, message.as_bytes())).await?;
            }
        }
    }
    if open_ports == 0 {
        sink.send(Message::Close(None)).await?;
        return Ok(());
    }
    drop(outgoing);
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(Ok(Message::Binary(data))) if data.len() > 1 => {
                    let port_index = usize::from(data[0] / 2);
                    if data[0] % 2 == 0 {
                        if let Some(Some(writer)) = writers.get_mut(port_index) {
                            if writer.write_all(&data[1..]).await.is_err() {
                                writers[port_index] = None;
                            }
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            outgoing = outgoing_rx.recv() => match outgoing {
                Some(Outgoing::Frame(message)) => sink.send(message).await?,
                Some(Outgoing::PortClosed) => {
                    open_ports -= 1;
                    if open_ports == 0 {
                        break;
                    }
                }
                None => break,
            },
        }
    }
    let _ = sink.send(Message::Close(None)).await;
    Ok(())
}
