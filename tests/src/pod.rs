//! A stand-in for a revision pod: answers every request with its name and what reached it.

use crate::http;
use std::collections::{HashMap, HashSet};
use std::io::{self, BufReader, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// An HTTP/1.1 keep-alive server on one loopback address. Every response is 200 with
/// `x-kasi-pod: <name>` and a body of the name, then one line per `cookie` header
/// (`cookie: <raw value>`), per `x-envoy-original-dst-host` header, per `mcp-session-id` and
/// per `x-kasi-session` header that reached it (`<name>: <value>`).
///
/// Under `/mcp` it is also a stateful MCP server as the reference SDK's Streamable HTTP transport
/// behaves: a request without `mcp-session-id` starts a session (`<pod>-<n>`) returned in
/// `mcp-session-id`; a request with exactly one value it issued is answered with that header
/// again (the SDK sends it on every response); anything else gets its own 404 JSON-RPC
/// "Session not found" (with `x-kasi-pod`, unlike kasi's). Sessions do not survive `stop`.
/// A request for `/delay/<ms>…` is answered after `<ms>` milliseconds, unless the peer closes
/// the connection first (then the pod stops at once: Envoy closes its upstream connection when
/// the client abandons the stream, so no thread is left waiting).
pub struct Pod {
    name: String,
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    mcp: Arc<McpSessions>,
    running: Option<Running>,
}

/// The MCP sessions a pod issued.
#[derive(Default)]
struct McpSessions {
    issued: Mutex<HashSet<String>>,
    next: AtomicUsize,
}

/// The live server: the acceptor thread and every open connection, so `stop` can sever them all
/// (a dead pod must refuse connects *and* drop Envoy's pooled keep-alive connections).
struct Running {
    stop: Arc<AtomicBool>,
    acceptor: JoinHandle<()>,
    connections: Arc<Mutex<HashMap<u64, TcpStream>>>,
}

impl Pod {
    /// Starts a pod on `addr`; port 0 picks a free port.
    pub fn start(name: &str, addr: SocketAddr) -> io::Result<Pod> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let mut pod = Pod {
            name: name.to_string(),
            addr,
            requests: Arc::new(AtomicUsize::new(0)),
            mcp: Arc::new(McpSessions::default()),
            running: None,
        };
        pod.serve(listener)?;
        Ok(pod)
    }

    /// Starts one pod per `(name, ip)` on one shared free port, the way every revision pod
    /// listens on 8012: then a single `allowed_ports` entry covers them all. Another process or
    /// test may hold the port on one of the other IPs, so a clash just means another try.
    pub fn start_group(pods: &[(&str, IpAddr)]) -> Vec<Pod> {
        let mut last_error = None;
        for _ in 0..50 {
            let (first_name, first_ip) = pods[0];
            let first = Pod::start(first_name, SocketAddr::new(first_ip, 0))
                .unwrap_or_else(|e| panic!("cannot bind a pod on {first_ip}: {e}"));
            let port = first.addr.port();
            let rest: io::Result<Vec<Pod>> = pods[1..]
                .iter()
                .map(|&(name, ip)| Pod::start(name, SocketAddr::new(ip, port)))
                .collect();
            match rest {
                Ok(rest) => return std::iter::once(first).chain(rest).collect(),
                Err(e) => last_error = Some(e),
            }
        }
        panic!("no port was free on all of {pods:?}: {last_error:?}");
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Requests received since the pod was created (across restarts).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Closes the listening socket (connects are then refused) and every open connection.
    pub fn stop(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        running.stop.store(true, Ordering::SeqCst);
        // The acceptor owns the listener: once it has returned, the port is closed.
        let _ = running.acceptor.join();
        for (_, connection) in running.connections.lock().unwrap().drain() {
            let _ = connection.shutdown(Shutdown::Both);
        }
        // A pod that comes back is a new process: its MCP sessions are gone.
        self.mcp.issued.lock().unwrap().clear();
    }

    /// The MCP sessions this pod issued and still knows.
    pub fn mcp_sessions(&self) -> Vec<String> {
        let mut sessions: Vec<String> = self.mcp.issued.lock().unwrap().iter().cloned().collect();
        sessions.sort();
        sessions
    }

    /// Listens again on the same address.
    pub fn restart(&mut self) -> io::Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        // std sets SO_REUSEADDR on Unix, so connections left in TIME_WAIT do not block this.
        let listener = TcpListener::bind(self.addr)?;
        self.serve(listener)
    }

    fn serve(&mut self, listener: TcpListener) -> io::Result<()> {
        // Non-blocking accept polled with a short sleep: the simplest way to let `stop` end
        // the acceptor without a self-connect trick.
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(HashMap::new()));
        let acceptor = {
            let stop = stop.clone();
            let connections = connections.clone();
            let requests = self.requests.clone();
            let mcp = self.mcp.clone();
            let name = self.name.clone();
            std::thread::Builder::new()
                .name(format!("pod-{name}"))
                .spawn(move || accept_loop(listener, &name, &stop, &connections, &requests, &mcp))?
        };
        self.running = Some(Running {
            stop,
            acceptor,
            connections,
        });
        Ok(())
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(
    listener: TcpListener,
    name: &str,
    stop: &AtomicBool,
    connections: &Arc<Mutex<HashMap<u64, TcpStream>>>,
    requests: &Arc<AtomicUsize>,
    mcp: &Arc<McpSessions>,
) {
    let mut next_id = 0u64;
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let id = next_id;
                next_id += 1;
                let Ok(registered) = stream.try_clone() else {
                    continue;
                };
                connections.lock().unwrap().insert(id, registered);
                let name = name.to_string();
                let connections = connections.clone();
                let requests = requests.clone();
                let mcp = mcp.clone();
                std::thread::spawn(move || {
                    let _ = serve_connection(stream, &name, &requests, &mcp);
                    connections.lock().unwrap().remove(&id);
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn serve_connection(
    stream: TcpStream,
    name: &str,
    requests: &AtomicUsize,
    mcp: &McpSessions,
) -> io::Result<()> {
    // Accepted sockets may inherit non-blocking mode from the listener on some platforms.
    stream.set_nonblocking(false)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    while let Some(head) = http::read_head(&mut reader)? {
        http::read_body(&mut reader, &head, false)?;
        // Counted before answering, so a client that has its response sees the count.
        requests.fetch_add(1, Ordering::SeqCst);
        if let Some(delay) = requested_delay(&head.start_line) {
            if !peer_stays(reader.get_ref(), delay)? {
                break;
            }
        }
        let mut body = format!("{name}\n");
        for cookie in head.values("cookie") {
            body.push_str(&format!("cookie: {cookie}\n"));
        }
        for target in head.values("x-envoy-original-dst-host") {
            body.push_str(&format!("x-envoy-original-dst-host: {target}\n"));
        }
        for header in [crate::MCP_HEADER, crate::SESSION_HEADER] {
            for value in head.values(header) {
                body.push_str(&format!("{header}: {value}\n"));
            }
        }
        let close = head
            .values("connection")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("close"));
        let path = head.start_line.split_whitespace().nth(1).unwrap_or("/");
        let mut status = "200 OK";
        let mut extra = String::new();
        let mut content_type = "text/plain";
        if path.starts_with("/mcp") {
            match head.values(crate::MCP_HEADER).as_slice() {
                [] => {
                    let id = format!("{name}-{}", mcp.next.fetch_add(1, Ordering::SeqCst));
                    mcp.issued.lock().unwrap().insert(id.clone());
                    extra = format!("mcp-session-id: {id}\r\n");
                }
                [id] if mcp.issued.lock().unwrap().contains(*id) => {
                    extra = format!("mcp-session-id: {id}\r\n");
                }
                _ => {
                    status = "404 Not Found";
                    content_type = "application/json";
                    body = kasi_filter::policy::MCP_NOT_FOUND_BODY.to_string();
                }
            }
        }
        let response = format!(
            "HTTP/1.1 {status}\r\nx-kasi-pod: {name}\r\ncontent-type: {content_type}\r\n{extra}content-length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "connection: close\r\n" } else { "" },
        );
        writer.write_all(response.as_bytes())?;
        if close {
            break;
        }
    }
    Ok(())
}

/// `Some(ms)` for a request line `GET /delay/<ms>[/…] HTTP/1.1`.
fn requested_delay(start_line: &str) -> Option<Duration> {
    let path = start_line.split_whitespace().nth(1)?;
    let ms = path.strip_prefix("/delay/")?.split(['/', '?']).next()?;
    Some(Duration::from_millis(ms.parse().ok()?))
}

/// Waits up to `delay` for the peer to close; whether it is still there afterwards.
fn peer_stays(stream: &TcpStream, delay: Duration) -> io::Result<bool> {
    if delay.is_zero() {
        return Ok(true);
    }
    stream.set_read_timeout(Some(delay))?;
    let peeked = stream.peek(&mut [0u8; 1]);
    stream.set_read_timeout(None)?;
    match peeked {
        // EOF: the peer left. Bytes: a pipelined request, which Envoy never sends.
        Ok(0) => Ok(false),
        Ok(_) => Ok(true),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::admin_get;

    /// The failover test relies on a stopped pod refusing connects at once (Envoy then flags the
    /// request as a connection failure) and on a restarted one answering on the same address.
    #[test]
    fn stop_refuses_connections_and_restart_serves_again() {
        let mut pod = Pod::start("p", "127.0.0.5:0".parse().unwrap()).unwrap();
        let response = admin_get(pod.addr(), "/").unwrap();
        assert_eq!((response.status, response.pod()), (200, Some("p")));
        assert_eq!(response.body, "p\n");

        // A kept-alive connection must be severed too, as a dying pod's would be.
        let idle = TcpStream::connect(pod.addr()).unwrap();
        pod.stop();
        let refused = TcpStream::connect(pod.addr()).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1];
        assert!(matches!(
            io::Read::read(&mut &idle, &mut buf),
            Ok(0) | Err(_)
        ));

        pod.restart().unwrap();
        let response = admin_get(pod.addr(), "/").unwrap();
        assert_eq!(response.pod(), Some("p"));
        assert_eq!(pod.requests(), 2);
    }

    /// The memory test relies on `/delay/<ms>` answering late, and on a peer that leaves
    /// ending the wait at once.
    #[test]
    fn delay_answers_late_unless_the_peer_leaves() {
        let pod = Pod::start("d", "127.0.0.6:0".parse().unwrap()).unwrap();
        let started = std::time::Instant::now();
        let response = admin_get(pod.addr(), "/delay/300").unwrap();
        assert_eq!(response.pod(), Some("d"));
        assert!(started.elapsed() >= Duration::from_millis(300));

        let mut leaving = TcpStream::connect(pod.addr()).unwrap();
        leaving
            .write_all(b"GET /delay/60000 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        for _ in 0..200 {
            if pod.requests() == 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(pod.requests(), 2);
        drop(leaving);
        let started = std::time::Instant::now();
        for _ in 0..500 {
            if pod
                .running
                .as_ref()
                .unwrap()
                .connections
                .lock()
                .unwrap()
                .is_empty()
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            pod.running
                .as_ref()
                .unwrap()
                .connections
                .lock()
                .unwrap()
                .is_empty(),
            "the pod still waits for a peer that left"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
