//! `kasi probe --mcp`: virtual MCP clients on Streamable HTTP (spec 2025-11-25), plain JSON-RPC.
//! Each initializes, calls a tool once per request with the `Mcp-Session-Id` it was given,
//! re-initializes after a 404 (what MCP clients do when a server does not know their session) and
//! ends its session with `DELETE`. A session's pod is the one that answered its first call
//! (`x-kasi-pod`, or the address in kasi's envelope); a hit is a later call answered by the same
//! pod, counted per MCP session (a re-initialized client starts a new one).

use super::board::Slot;
use super::client::UserClient;
use super::cookie::pod_of;
use super::report::SessionReport;
use super::ProbeOptions;
use crate::affinity::decode::{self, Carrier};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, Url};
use serde_json::{json, Value};
use std::sync::Arc;

const PROTOCOL: &str = "2025-11-25";
/// The tool every call asks for (the lab's MCP server has it; any server answers a call to an
/// unknown tool with a JSON-RPC error inside a 200, which serves the probe as well).
const TOOL: &str = "whoami";

/// One virtual MCP client.
struct Client {
    http: reqwest::Client,
    url: Url,
    session: Option<String>,
    next_id: u64,
    report: SessionReport,
}

struct Answer {
    status: u16,
    pod: Option<String>,
    session: Option<String>,
    /// The JSON-RPC response to the request, when it came (as JSON or as an SSE event).
    reply: Option<Value>,
}

pub async fn user(client: UserClient, url: Url, options: Arc<ProbeOptions>, slot: Slot) {
    let mut client = Client {
        http: client.http,
        url,
        session: None,
        next_id: 0,
        report: SessionReport::default(),
    };
    for i in 0..options.requests_per_session {
        if !options.go_on(i).await {
            break;
        }
        client.call().await;
        slot.post(&client.report);
    }
    client.end().await;
}

impl Client {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// One tool call, initializing first when there is no session.
    async fn call(&mut self) {
        if self.session.is_none() && !self.initialize().await {
            self.report.requests += 1;
            self.report.failed();
            return;
        }
        let id = self.id();
        let message = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                             "params": {"name": TOOL, "arguments": {}}});
        let answer = self.send(Method::POST, Some(&message)).await;
        self.report.requests += 1;
        match answer {
            Ok(a) if a.status == 200 && a.reply.is_some() => {
                let served = a
                    .pod
                    .or_else(|| self.session.as_deref().and_then(envelope_address));
                self.report.served_by(served);
            }
            Ok(a) if a.status == 404 => {
                // The server does not know the session: start a new one next time.
                self.report.not_found += 1;
                self.report.failed();
                self.session = None;
            }
            _ => self.report.failed(),
        }
    }

    async fn initialize(&mut self) -> bool {
        let first = self.report.initializations == 0;
        self.report.initializations += 1;
        if !first {
            // A new MCP session: its pin starts again.
            self.report.new_session();
        }
        let id = self.id();
        let message = json!({"jsonrpc": "2.0", "id": id, "method": "initialize",
            "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                       "clientInfo": {"name": "kasi-probe", "version": env!("CARGO_PKG_VERSION")}}});
        let Ok(answer) = self.send(Method::POST, Some(&message)).await else {
            return false;
        };
        if answer.status != 200 || answer.session.is_none() || answer.reply.is_none() {
            return false;
        }
        self.session = answer.session;
        self.report.cookie_address = self.session.as_deref().and_then(envelope_address);
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        self.send(Method::POST, Some(&initialized))
            .await
            .is_ok_and(|a| a.status < 300)
    }

    /// `DELETE` ends the session on the server (best effort, as clients do on exit).
    async fn end(&mut self) {
        if self.session.is_some() {
            let _ = self.send(Method::DELETE, None).await;
            self.session = None;
        }
    }

    async fn send(&mut self, method: Method, message: Option<&Value>) -> anyhow::Result<Answer> {
        let mut request = self
            .http
            .request(method, self.url.clone())
            .header(ACCEPT, "application/json, text/event-stream");
        if let Some(message) = message {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(message.to_string());
        }
        if let Some(session) = &self.session {
            request = request
                .header(decode::MCP_HEADER, session)
                .header("mcp-protocol-version", PROTOCOL);
        }
        let mut response = request.send().await?;
        self.report.protocol = Some(format!("{:?}", response.version()));
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let mut answer = Answer {
            status: response.status().as_u16(),
            pod: pod_of(&response),
            session: header(decode::MCP_HEADER),
            reply: None,
        };
        let expected = message.and_then(|m| m.get("id")).cloned();
        let is_sse =
            header(CONTENT_TYPE.as_str()).is_some_and(|t| t.starts_with("text/event-stream"));
        match expected {
            Some(id) if answer.status == 200 && is_sse => {
                answer.reply = read_sse_reply(&mut response, &id).await?;
            }
            Some(id) if answer.status == 200 => {
                let body = response.bytes().await?;
                answer.reply = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .filter(|reply| reply.get("id") == Some(&id));
            }
            // A notification's 202, a DELETE, an error: read to the end so the connection is
            // reused.
            _ => {
                let _ = response.bytes().await;
            }
        }
        Ok(answer)
    }
}

/// Reads an SSE stream until the event carrying the response to request `id`, then stops (the
/// server may keep the stream open for more).
async fn read_sse_reply(
    response: &mut reqwest::Response,
    id: &Value,
) -> anyhow::Result<Option<Value>> {
    let mut events = SseEvents::default();
    while let Some(chunk) = response.chunk().await? {
        if let Some(reply) = events.feed(&chunk).find(|m| m.get("id") == Some(id)) {
            return Ok(Some(reply));
        }
    }
    Ok(events.finish().filter(|m| m.get("id") == Some(id)))
}

/// An SSE stream cut into events' JSON payloads (`data:` lines, joined per event); payloads that
/// are not JSON (a priming event's empty data) are skipped.
#[derive(Default)]
struct SseEvents {
    pending: Vec<u8>,
    data: String,
}

impl SseEvents {
    fn feed(&mut self, chunk: &[u8]) -> impl Iterator<Item = Value> {
        self.pending.extend_from_slice(chunk);
        let mut messages = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                messages.extend(self.dispatch());
            } else if let Some(data) = line.strip_prefix("data:") {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(data.strip_prefix(' ').unwrap_or(data));
            }
        }
        messages.into_iter()
    }

    /// The last event, when the stream ends without the blank line that closes it.
    fn finish(&mut self) -> Option<Value> {
        self.dispatch()
    }

    fn dispatch(&mut self) -> Option<Value> {
        let data = std::mem::take(&mut self.data);
        serde_json::from_str(&data).ok()
    }
}

/// The pod address kasi's envelope names, signed or not (the app's one decoder of envelopes).
fn envelope_address(session: &str) -> Option<String> {
    decode::decode(session, None, Some(Carrier::Envelope))
        .ok()
        .map(|d| d.cookie.address.to_string())
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

    #[test]
    fn sse_events_are_read_across_chunks() {
        let mut events = SseEvents::default();
        // A priming event with no data, then the reply cut mid-line and mid-event.
        assert_eq!(
            events
                .feed(b"id: 0\ndata:\n\nevent: message\r\ndata: {\"jsonrpc\"")
                .count(),
            0
        );
        let got: Vec<Value> = events
            .feed(b":\"2.0\",\"id\":3,\ndata: \"result\":{}}\r\n\r\n")
            .collect();
        assert_eq!(got, [json!({"jsonrpc": "2.0", "id": 3, "result": {}})]);
        assert_eq!(events.feed(b"data: {\"id\":4}\n").count(), 0);
        assert_eq!(events.finish(), Some(json!({"id": 4})));
    }
}
