//! The activator emulator: one request per connection to Envoy's listener, preceded by a PROXY
//! protocol v1 header naming the chosen pod as the connection's original destination (what
//! iptables + `original_dst` establish inside a real pod).

use crate::http;
use std::fmt;
use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Every socket operation is bounded: a hung Envoy must fail a test, not stall it.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(5);

/// A complete response.
#[derive(Clone)]
pub struct Response {
    pub status: u16,
    /// Names lowercased, repeated headers (e.g. `set-cookie`) kept in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        http::values(&self.headers, name).first().copied()
    }

    pub fn header_values(&self, name: &str) -> Vec<&str> {
        http::values(&self.headers, name)
    }

    /// The pod that answered (`x-kasi-pod`), if a pod answered.
    pub fn pod(&self) -> Option<&str> {
        self.header("x-kasi-pod")
    }

    /// The value (exactly as sent, quotes included) of the `Set-Cookie` for `cookie_name`.
    pub fn set_cookie(&self, cookie_name: &str) -> Option<String> {
        self.header_values("set-cookie")
            .into_iter()
            .find_map(|header| {
                let first = header.split(';').next()?;
                let (name, value) = first.split_once('=')?;
                (name.trim() == cookie_name).then(|| value.trim().to_string())
            })
    }

    /// Every whole `Set-Cookie` header that sets `cookie_name` (attributes included).
    pub fn set_cookie_headers(&self, cookie_name: &str) -> Vec<&str> {
        let prefix = format!("{cookie_name}=");
        self.header_values("set-cookie")
            .into_iter()
            .filter(|h| h.starts_with(&prefix))
            .collect()
    }

    /// The address the issued session cookie pins to, decoded with the filter's own codec.
    pub fn set_cookie_address(&self, cookie_name: &str) -> Option<SocketAddr> {
        let value = self.set_cookie(cookie_name)?;
        kasi_filter::codec::decode(value.as_bytes())
            .ok()
            .map(|c| c.address)
    }

    /// The `cookie` header values that reached the pod, from its echo.
    pub fn cookies_at_pod(&self) -> Vec<&str> {
        self.body
            .lines()
            .filter_map(|line| line.strip_prefix("cookie: "))
            .collect()
    }

    /// The `mcp-session-id` the response carries (its only copy; `None` with none or several).
    pub fn mcp_session_id(&self) -> Option<&str> {
        match self.header_values(crate::MCP_HEADER).as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    /// The `mcp-session-id` values that reached the pod, from its echo.
    pub fn mcp_sessions_at_pod(&self) -> Vec<&str> {
        self.echoed(crate::MCP_HEADER)
    }

    /// The header-mode session values (`x-kasi-session`) that reached the pod, from its echo.
    pub fn session_headers_at_pod(&self) -> Vec<&str> {
        self.echoed(crate::SESSION_HEADER)
    }

    fn echoed(&self, header: &str) -> Vec<&str> {
        let prefix = format!("{header}: ");
        // Only a pod's echo: kasi's own 404 has no `x-kasi-pod` and its body is JSON.
        if self.pod().is_none() {
            return Vec::new();
        }
        self.body
            .lines()
            .filter_map(|line| line.strip_prefix(prefix.as_str()))
            .collect()
    }

    /// Whether this is MCP's 404 "Session not found" (JSON-RPC error -32001).
    pub fn is_mcp_not_found(&self) -> bool {
        self.status == 404
            && serde_json::from_str::<serde_json::Value>(&self.body).is_ok_and(|v| {
                v["jsonrpc"] == "2.0"
                    && v["error"]["code"] == -32001
                    && v["error"]["message"] == "Session not found"
                    && v["id"].is_null()
            })
    }

    /// The `x-envoy-original-dst-host` values that reached the pod, from its echo.
    pub fn routing_headers_at_pod(&self) -> Vec<&str> {
        self.body
            .lines()
            .filter_map(|line| line.strip_prefix("x-envoy-original-dst-host: "))
            .collect()
    }
}

/// Debug output goes into assertion messages: a body such as admin's `/server_info` (100 kB)
/// would bury the point, so it is cut short.
impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const BODY_SHOWN: usize = 300;
        let body = match self.body.char_indices().nth(BODY_SHOWN) {
            Some((cut, _)) => format!("{}… ({} bytes)", &self.body[..cut], self.body.len()),
            None => self.body.clone(),
        };
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &body)
            .finish()
    }
}

/// Sends requests through Envoy's listener as the activator would.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    listener: SocketAddr,
}

impl Client {
    pub fn new(listener: SocketAddr) -> Client {
        Client { listener }
    }

    /// `GET path` on a new connection whose original destination is `original_dst`.
    pub fn get(
        &self,
        original_dst: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> io::Result<Response> {
        let stream = connect(self.listener)?;
        let preamble = self.proxy_header(&stream, original_dst)?;
        exchange(stream, &preamble, path, headers)
    }

    /// Sends `GET path` as [`Client::get`] does, waits `linger`, then closes the connection
    /// without reading anything: a client that leaves before its response.
    pub fn abandon(
        &self,
        original_dst: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        linger: Duration,
    ) -> io::Result<()> {
        let mut stream = connect(self.listener)?;
        let preamble = self.proxy_header(&stream, original_dst)?;
        stream.write_all(request_text(&preamble, path, headers).as_bytes())?;
        std::thread::sleep(linger);
        Ok(())
    }

    /// The PROXY protocol v1 line naming `original_dst` for a connection from `stream`.
    fn proxy_header(&self, stream: &TcpStream, original_dst: SocketAddr) -> io::Result<String> {
        let source_port = stream.local_addr()?.port();
        Ok(match (self.listener, original_dst) {
            (SocketAddr::V4(from), SocketAddr::V4(to)) => format!(
                "PROXY TCP4 {} {} {source_port} {}\r\n",
                from.ip(),
                to.ip(),
                to.port()
            ),
            (from, to) => format!(
                "PROXY TCP6 {} {} {source_port} {}\r\n",
                from.ip(),
                to.ip(),
                to.port()
            ),
        })
    }
}

/// A plain `GET` (no PROXY header), for Envoy's admin API.
pub fn admin_get(admin: SocketAddr, path: &str) -> io::Result<Response> {
    plain_get(admin, path, &[])
}

/// A plain `GET` with `headers`, as any HTTP client sends it (the lab's ingress URL).
pub fn plain_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> io::Result<Response> {
    exchange(connect(addr)?, "", path, headers)
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, SOCKET_TIMEOUT)?;
    stream.set_read_timeout(Some(SOCKET_TIMEOUT))?;
    stream.set_write_timeout(Some(SOCKET_TIMEOUT))?;
    Ok(stream)
}

/// The request: `headers` in order (repeated names stay separate header lines), the harness's
/// Host unless `headers` has one, and `Connection: close`.
fn request_text(preamble: &str, path: &str, headers: &[(&str, &str)]) -> String {
    request_text_with(preamble, "GET", path, headers, "")
}

fn request_text_with(
    preamble: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    let mut request = format!("{preamble}{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {}\r\n", crate::AUTHORITY));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if method != "GET" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("Connection: close\r\n\r\n");
    request.push_str(body);
    request
}

/// A plain `POST` of `body` with `headers` (an MCP client's JSON-RPC message).
pub fn plain_post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> io::Result<Response> {
    send_text(
        connect(addr)?,
        request_text_with("", "POST", path, headers, body),
    )
}

fn exchange(
    stream: TcpStream,
    preamble: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<Response> {
    send_text(stream, request_text(preamble, path, headers))
}

fn send_text(stream: TcpStream, request: String) -> io::Result<Response> {
    let mut writer = stream.try_clone()?;
    writer.write_all(request.as_bytes())?;

    let mut reader = BufReader::new(stream);
    let head = http::read_head(&mut reader)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before any response",
        )
    })?;
    let status = head
        .start_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| http::invalid(format!("status line {:?}", head.start_line)))?;
    let body = http::read_body(&mut reader, &head, true)?;
    Ok(Response {
        status,
        headers: head.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A browser-like session: a jar for the one session cookie, sent on every request and
/// replaced by whatever `Set-Cookie` Envoy sends for it.
#[derive(Debug, Clone)]
pub struct Session {
    cookie_name: String,
    cookie: Option<String>,
}

impl Session {
    /// A new session: no cookie yet.
    pub fn new(cookie_name: &str) -> Session {
        Session {
            cookie_name: cookie_name.to_string(),
            cookie: None,
        }
    }

    /// A session whose jar already holds `value` (sent verbatim after `name=`).
    pub fn with_cookie(cookie_name: &str, value: &str) -> Session {
        Session {
            cookie_name: cookie_name.to_string(),
            cookie: Some(value.to_string()),
        }
    }

    /// Keeps what a `Set-Cookie` for the session says, as a browser does: a new value, or
    /// deletion (`Max-Age=0`).
    fn update_jar(&mut self, response: &Response) {
        let Some(value) = response.set_cookie(&self.cookie_name) else {
            return;
        };
        let deleted = response.header_values("set-cookie").into_iter().any(|h| {
            h.split(';')
                .next()
                .and_then(|p| p.split_once('='))
                .is_some_and(|(n, _)| n.trim() == self.cookie_name)
                && h.to_ascii_lowercase()
                    .split(';')
                    .any(|a| a.trim() == "max-age=0")
        });
        self.cookie = (!deleted).then_some(value);
    }

    pub fn cookie(&self) -> Option<&str> {
        self.cookie.as_deref()
    }

    /// The address the jar's cookie pins to, if it decodes.
    pub fn pinned_address(&self) -> Option<SocketAddr> {
        kasi_filter::codec::decode(self.cookie.as_ref()?.as_bytes())
            .ok()
            .map(|c| c.address)
    }

    /// `GET path` from a URL's host:port (no PROXY header: a browser or curl), with the jar.
    pub fn get_plain(&mut self, addr: SocketAddr, path: &str) -> io::Result<Response> {
        self.get_plain_with(addr, path, &[])
    }

    /// [`Session::get_plain`] with `extra` headers too (another `Host`, say).
    pub fn get_plain_with(
        &mut self,
        addr: SocketAddr,
        path: &str,
        extra: &[(&str, &str)],
    ) -> io::Result<Response> {
        let cookie_header = self
            .cookie
            .as_ref()
            .map(|value| format!("{}={value}", self.cookie_name));
        let mut headers: Vec<(&str, &str)> = cookie_header
            .iter()
            .map(|c| ("Cookie", c.as_str()))
            .collect();
        headers.extend_from_slice(extra);
        let response = plain_get(addr, path, &headers)?;
        self.update_jar(&response);
        Ok(response)
    }

    /// `GET path` with the jar's cookie (if any) plus `headers`, then updates the jar.
    pub fn get(
        &mut self,
        client: &Client,
        original_dst: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> io::Result<Response> {
        let cookie_header = self
            .cookie
            .as_ref()
            .map(|value| format!("{}={value}", self.cookie_name));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(cookie) = &cookie_header {
            all.push(("Cookie", cookie));
        }
        let response = client.get(original_dst, path, &all)?;
        self.update_jar(&response);
        Ok(response)
    }
}

/// An MCP client's session as the Streamable HTTP transport keeps it: the `mcp-session-id` of the
/// last response that carried one, sent on every request; a 404 ends the session (the spec: the
/// client MUST start a new one), so the next request starts afresh without the header.
#[derive(Debug, Clone, Default)]
pub struct McpSession {
    id: Option<String>,
}

impl McpSession {
    /// A client before `initialize`.
    pub fn new() -> McpSession {
        McpSession::default()
    }

    /// A client that holds `id` (sent verbatim).
    pub fn with_id(id: &str) -> McpSession {
        McpSession {
            id: Some(id.to_string()),
        }
    }

    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The address the session's envelope pins, read as Envoy reads it.
    pub fn pinned_address(&self) -> Option<SocketAddr> {
        kasi_filter::envelope::decode_envelope(self.id.as_ref()?.as_bytes())
            .ok()
            .map(|e| e.address)
    }

    /// `GET /mcp` with the session's id (if any) plus `headers`, then keeps what the response
    /// says.
    pub fn get(
        &mut self,
        client: &Client,
        original_dst: SocketAddr,
        headers: &[(&str, &str)],
    ) -> io::Result<Response> {
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(id) = &self.id {
            all.push(("Mcp-Session-Id", id));
        }
        let response = client.get(original_dst, "/mcp", &all)?;
        if response.status == 404 {
            self.id = None;
        } else if let Some(id) = response.mcp_session_id() {
            self.id = Some(id.to_string());
        }
        Ok(response)
    }
}
