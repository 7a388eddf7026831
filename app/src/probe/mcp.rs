//! `kasi probe --mcp`: virtual MCP clients on Streamable HTTP (spec 2025-11-25). Each initializes,
//! calls a tool once per round with the `Mcp-Session-Id` it was given, re-initializes after a 404
//! (what MCP clients do when a server does not know their session) and ends its session with
//! `DELETE`. A session's pod is the one that answered its first call (`x-kasi-pod`, or the address
//! in kasi's envelope); a hit is a later call answered by the same pod, counted per MCP session (a
//! re-initialized client starts a new one).

use super::{ProbeOptions, ProbeReport, SessionReport, Target};
use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const PROTOCOL: &str = "2025-11-25";
/// The tool every call asks for (the lab's MCP server has it; any server answers a call to an
/// unknown tool with a JSON-RPC error inside a 200, which serves the probe as well).
const TOOL: &str = "whoami";

/// One virtual MCP client.
#[derive(Default)]
struct Client {
    session: Option<String>,
    next_id: u64,
    report: SessionReport,
}

struct Answer {
    status: u16,
    pod: Option<String>,
    session: Option<String>,
}

pub async fn run(
    options: &ProbeOptions,
    target: &Target,
    progress: Option<mpsc::Sender<ProbeReport>>,
) -> anyhow::Result<ProbeReport> {
    let mut clients: Vec<Client> = (0..options.sessions).map(|_| Client::default()).collect();
    let mut report = ProbeReport {
        url: options.url.clone(),
        ..Default::default()
    };
    for round in 0..options.requests_per_session {
        if round > 0 && !options.pause.is_zero() {
            tokio::time::sleep(options.pause).await;
        }
        for client in &mut clients {
            client.call(target).await;
        }
        report.sessions = clients.iter().map(|c| c.report.clone()).collect();
        report.recompute();
        if let Some(progress) = &progress {
            if progress.send(report.clone()).await.is_err() {
                break;
            }
        }
    }
    for client in &mut clients {
        client.end(target).await;
    }
    Ok(report)
}

impl Client {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// One tool call, initializing first when there is no session.
    async fn call(&mut self, target: &Target) {
        if self.session.is_none() && !self.initialize(target).await {
            self.report.requests += 1;
            self.report.failures += 1;
            return;
        }
        let id = self.id();
        let message = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                             "params": {"name": TOOL, "arguments": {}}});
        let answer = post(target, self.session.as_deref(), &message).await;
        self.report.requests += 1;
        match answer {
            Ok(a) if a.status == 200 => {
                let served = a
                    .pod
                    .or_else(|| self.session.as_deref().and_then(envelope_address));
                match (&self.report.pinned, served) {
                    (None, served) => self.report.pinned = served,
                    (Some(pinned), Some(served)) if *pinned == served => self.report.hits += 1,
                    _ => {}
                }
            }
            Ok(a) if a.status == 404 => {
                // The server does not know the session: start a new one next time.
                self.report.not_found += 1;
                self.report.failures += 1;
                self.session = None;
            }
            _ => self.report.failures += 1,
        }
    }

    async fn initialize(&mut self, target: &Target) -> bool {
        let first = self.report.initializations == 0;
        self.report.initializations += 1;
        if !first {
            // A new MCP session: its pin starts again.
            self.report.pinned = None;
        }
        let id = self.id();
        let message = json!({"jsonrpc": "2.0", "id": id, "method": "initialize",
            "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                       "clientInfo": {"name": "kasi-probe", "version": env!("CARGO_PKG_VERSION")}}});
        let Ok(answer) = post(target, None, &message).await else {
            return false;
        };
        if answer.status != 200 || answer.session.is_none() {
            return false;
        }
        self.session = answer.session;
        self.report.cookie_address = self.session.as_deref().and_then(envelope_address);
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        post(target, self.session.as_deref(), &initialized)
            .await
            .is_ok_and(|a| a.status < 300)
    }

    /// `DELETE` ends the session on the server (best effort, as clients do on exit).
    async fn end(&mut self, target: &Target) {
        if let Some(session) = self.session.take() {
            let _ = send(target, "DELETE", Some(&session), None).await;
        }
    }
}

/// The pod address kasi's envelope names, signed or not.
fn envelope_address(session: &str) -> Option<String> {
    let unsigned = session
        .rsplit_once(";K:")
        .map_or(session, |(value, _)| value);
    kasi_filter::envelope::decode_envelope(unsigned.as_bytes())
        .ok()
        .map(|e| e.address.to_string())
}

async fn post(target: &Target, session: Option<&str>, message: &Value) -> anyhow::Result<Answer> {
    send(target, "POST", session, Some(message)).await
}

async fn send(
    target: &Target,
    method: &str,
    session: Option<&str>,
    message: Option<&Value>,
) -> anyhow::Result<Answer> {
    let work = async {
        let stream = TcpStream::connect(target.addr).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(&target.path)
            .header(http::header::HOST, &target.host)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json, text/event-stream");
        if let Some(session) = session {
            request = request
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", PROTOCOL);
        }
        let body = message.map(Value::to_string).unwrap_or_default();
        let response = sender
            .send_request(request.body(Full::new(Bytes::from(body)))?)
            .await?;
        let text = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let answer = Answer {
            status: response.status().as_u16(),
            pod: text("x-kasi-pod"),
            session: text("mcp-session-id"),
        };
        // The answer to a request arrives as one SSE event or one JSON body; read it to its end.
        let _ = response.into_body().collect().await;
        Ok::<_, anyhow::Error>(answer)
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .context("request timed out")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_names_the_pod_signed_or_not() {
        let envelope = kasi_filter::envelope::encode_envelope("10.1.2.3:8012", b"session-1");
        assert_eq!(
            envelope_address(&envelope).as_deref(),
            Some("10.1.2.3:8012")
        );
        let signed = format!("{envelope};K:AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(envelope_address(&signed).as_deref(), Some("10.1.2.3:8012"));
        assert_eq!(envelope_address("a raw session id"), None);
    }
}
