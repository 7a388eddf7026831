//! Lab pods: real HTTP servers that say who they are, so any client can see which pod served it.
//!
//! Every response carries `x-kasi-pod: <pod name>`. An echo pod (`hello`, `hello-h2c`) also
//! answers `x-kasi-proto: <HTTP version it received>` and has its name as the body's first line;
//! the rest echoes the request's `cookie` header fields, one line each, which is how tests see
//! what reached a pod. An MCP pod (`mcp`) runs [`super::mcp_pod`].
//!
//! Like queue-proxy in front of a revision's container, a pod accepts HTTP/1.1 and HTTP/2 with
//! prior knowledge on its port (`pkg/queue/sharedmain/servers.go` `mainServer` serves with
//! `knative.dev/pkg/network/h2c.go` `NewServer`). Stopping a pod closes its socket and every open
//! connection and forgets what it held in memory, as a killed container would.

use super::mcp_pod::{McpServer, PodBody};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// The header every lab pod answers with.
pub const POD_HEADER: &str = "x-kasi-pod";
/// The HTTP version an echo pod received the request in (`HTTP/1.1`, `HTTP/2.0`).
pub const PROTO_HEADER: &str = "x-kasi-proto";

/// What runs in a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodApp {
    Echo,
    /// The MCP server, accepting these Hosts.
    Mcp {
        allowed_hosts: Vec<String>,
    },
}

/// A running (or stopped) lab pod.
pub struct PodServer {
    name: String,
    addr: SocketAddr,
    app: PodApp,
    requests: Arc<AtomicU64>,
    task: Option<JoinHandle<()>>,
    /// The running MCP server, for an MCP pod: its sessions end when the pod stops.
    mcp: Option<Arc<McpServer>>,
}

impl PodServer {
    /// Binds `addr` and starts answering as an echo pod.
    pub async fn start(name: &str, addr: SocketAddr) -> std::io::Result<PodServer> {
        PodServer::start_app(name, addr, PodApp::Echo).await
    }

    /// Binds `addr` and starts running `app`.
    pub async fn start_app(
        name: &str,
        addr: SocketAddr,
        app: PodApp,
    ) -> std::io::Result<PodServer> {
        let mut pod = PodServer {
            name: name.to_owned(),
            addr,
            app,
            requests: Arc::new(AtomicU64::new(0)),
            task: None,
            mcp: None,
        };
        pod.restore().await?;
        Ok(pod)
    }

    pub fn app(&self) -> &PodApp {
        &self.app
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Closes the socket and every connection: new connections are refused.
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(mcp) = self.mcp.take() {
            mcp.shutdown();
        }
    }

    /// Listens again on the same address.
    pub async fn restore(&mut self) -> std::io::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        self.stop();
        let listener = bind_reusable(self.addr)?;
        let name: Arc<str> = Arc::from(self.name.as_str());
        let requests = Arc::clone(&self.requests);
        // A new container: an MCP server starts with no sessions.
        self.mcp = match &self.app {
            PodApp::Echo => None,
            PodApp::Mcp { allowed_hosts } => {
                Some(Arc::new(McpServer::new(&self.name, allowed_hosts.clone())))
            }
        };
        let mcp = self.mcp.clone();
        self.task = Some(tokio::spawn(serve(listener, name, requests, mcp)));
        Ok(())
    }
}

impl Drop for PodServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SO_REUSEADDR so a restored pod can bind while the old connections sit in TIME_WAIT.
fn bind_reusable(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn serve(
    listener: TcpListener,
    name: Arc<str>,
    requests: Arc<AtomicU64>,
    mcp: Option<Arc<McpServer>>,
) {
    // Dropping the JoinSet (when this task is aborted) aborts every connection with it.
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let name = Arc::clone(&name);
        let requests = Arc::clone(&requests);
        let mcp = mcp.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                requests.fetch_add(1, Ordering::Relaxed);
                let name = Arc::clone(&name);
                let mcp = mcp.clone();
                async move {
                    Ok::<_, Infallible>(match mcp {
                        Some(mcp) => mcp.handle(request).await,
                        None => echo(&name, &request),
                    })
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
}

fn echo(name: &str, request: &Request<Incoming>) -> Response<PodBody> {
    let mut body = format!("{name}\n");
    for cookie in request.headers().get_all(http::header::COOKIE) {
        body.push_str("cookie: ");
        body.push_str(&String::from_utf8_lossy(cookie.as_bytes()));
        body.push('\n');
    }
    Response::builder()
        .header(POD_HEADER, name)
        .header(PROTO_HEADER, format!("{:?}", request.version()))
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr) -> std::io::Result<String> {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = String::new();
        stream.read_to_string(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn answers_with_its_name_and_stops_and_restores() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let mut pod = PodServer::start("hello-00001-deployment-abc", addr)
            .await
            .unwrap();
        let response = get(addr).await.unwrap();
        assert!(
            response.contains("x-kasi-pod: hello-00001-deployment-abc"),
            "{response}"
        );
        assert!(response.contains("cookie: a=1"), "{response}");
        assert_eq!(pod.requests(), 1);
        pod.stop();
        tokio::task::yield_now().await;
        assert!(
            get(addr).await.is_err(),
            "a stopped pod refuses connections"
        );
        pod.restore().await.unwrap();
        assert!(get(addr).await.unwrap().starts_with("HTTP/1.1 200"));
    }
}
