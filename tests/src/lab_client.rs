//! Talking to an in-process lab the way a user does: a kube client from its kubeconfig, and
//! sessions through its ingress (the client-side hit rate).

use crate::{Session, COOKIE_NAME};
use k8s_openapi::api::core::v1::Pod;
use kasi_lab::Lab;
use kube::api::{Api, ListParams};
use kube::{Client, Config};
use std::net::SocketAddr;

pub const SESSIONS: usize = 20;
pub const REQUESTS_PER_SESSION: usize = 10;

pub async fn kube_client(lab: &Lab) -> Client {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(lab.kubeconfig_path()).expect("lab kubeconfig reads");
    let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("lab kubeconfig is valid");
    Client::try_from(config).expect("client")
}

pub fn ingress_addr(lab: &Lab) -> SocketAddr {
    lab.ingress_url()
        .trim_start_matches("http://")
        .parse()
        .expect("the ingress URL is http://ip:port")
}

/// Client-side hit rate: requests served by the session's pinned pod ÷ requests after its first.
/// Sessions interleave, as real users do. Returns the rate and each session's pinned pod.
pub async fn hit_rate(ingress: SocketAddr) -> (f64, Vec<(Session, String)>) {
    tokio::task::spawn_blocking(move || {
        let mut sessions: Vec<(Session, Option<String>)> = (0..SESSIONS)
            .map(|_| (Session::new(COOKIE_NAME), None))
            .collect();
        let (mut hits, mut counted) = (0, 0);
        for _ in 0..REQUESTS_PER_SESSION {
            for (session, pinned) in sessions.iter_mut() {
                let response = session.get_plain(ingress, "/").expect("ingress answers");
                assert_eq!(response.status, 200, "{response:?}");
                let served = response.pod().expect("a pod answered").to_owned();
                match pinned {
                    None => *pinned = Some(served),
                    Some(p) => {
                        counted += 1;
                        hits += usize::from(*p == served);
                    }
                }
            }
        }
        let pinned = sessions
            .into_iter()
            .map(|(s, p)| (s, p.unwrap_or_default()))
            .collect();
        (hits as f64 / counted as f64, pinned)
    })
    .await
    .expect("sessions ran")
}

pub async fn activator_pods(client: &Client) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "knative-serving");
    pods.list(&ListParams::default().labels("app=activator,role=activator"))
        .await
        .expect("list activators")
        .items
}

/// Waits for the activator Deployment's rollout (what `kasi apply` waits for), then returns the
/// activator pods that serve now.
pub async fn rolled_out_activators(client: &Client) -> Vec<Pod> {
    let mut sink = Vec::new();
    kasi::install::rollout::wait_for(
        client,
        "knative-serving",
        kasi::install::rollout::ACTIVATOR,
        std::time::Duration::from_secs(120),
        &mut sink,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&sink)));
    activator_pods(client).await
}

/// `kubectl rollout restart deployment/activator`: a template annotation with the time, so the
/// activators are replaced (and read `config-network` again as they start).
pub async fn restart_activators(client: &Client) -> Vec<Pod> {
    use k8s_openapi::api::apps::v1::Deployment;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "knative-serving");
    let now = format!("{:?}", std::time::SystemTime::now());
    deployments
        .patch(
            kasi::install::rollout::ACTIVATOR,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"template": {"metadata": {
                "annotations": {"kubectl.kubernetes.io/restartedAt": now}}}}})),
        )
        .await
        .expect("restart the activators");
    rolled_out_activators(client).await
}

/// An MCP client on Streamable HTTP (spec 2025-11-25) through the lab's ingress: it initializes,
/// keeps the `Mcp-Session-Id` it was given and sends it on every request, and re-initializes after
/// a 404, as MCP clients do. Plain JSON-RPC over HTTP/1.1.
pub struct McpClient {
    ingress: SocketAddr,
    session: Option<String>,
    next_id: u64,
    /// `initialize` calls made (the first one included).
    pub initializations: usize,
}

/// One answer of the MCP server (or of whatever answered instead).
#[derive(Debug, Clone)]
pub struct McpAnswer {
    pub status: u16,
    /// `x-kasi-pod`, when a pod answered.
    pub pod: Option<String>,
    pub body: String,
}

const MCP_PROTOCOL: &str = "2025-11-25";

impl McpClient {
    pub fn new(ingress: SocketAddr) -> McpClient {
        McpClient {
            ingress,
            session: None,
            next_id: 1,
            initializations: 0,
        }
    }

    fn post(&mut self, message: serde_json::Value) -> std::io::Result<McpAnswer> {
        let mut headers = vec![
            ("Host", kasi_lab::knative::seed::MCP_HOST),
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ];
        let session = self.session.clone();
        if let Some(id) = &session {
            headers.push(("Mcp-Session-Id", id));
            headers.push(("Mcp-Protocol-Version", MCP_PROTOCOL));
        }
        let response = crate::plain_post(
            self.ingress,
            kasi_lab::knative::seed::MCP_PATH,
            &headers,
            &message.to_string(),
        )?;
        if let Some(id) = response.header("mcp-session-id") {
            self.session = Some(id.to_owned());
        }
        if response.status == 404 {
            self.session = None;
        }
        Ok(McpAnswer {
            status: response.status,
            pod: response.pod().map(str::to_owned),
            body: response.body,
        })
    }

    /// `initialize` and the `initialized` notification.
    pub fn initialize(&mut self) -> std::io::Result<McpAnswer> {
        self.initializations += 1;
        self.session = None;
        let id = self.next_id;
        self.next_id += 1;
        let answer = self.post(serde_json::json!({
            "jsonrpc": "2.0", "id": id, "method": "initialize",
            "params": {"protocolVersion": MCP_PROTOCOL, "capabilities": {},
                       "clientInfo": {"name": "kasi-e2e", "version": "0"}},
        }))?;
        if answer.status == 200 {
            self.post(
                serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            )?;
        }
        Ok(answer)
    }

    /// `tools/call whoami`, initializing first when the client has no session.
    pub fn whoami(&mut self) -> std::io::Result<McpAnswer> {
        if self.session.is_none() {
            let answer = self.initialize()?;
            if answer.status != 200 {
                return Ok(answer);
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.post(serde_json::json!({
            "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "whoami", "arguments": {}},
        }))
    }

    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }
}

/// A lab with `services` filler services and the defaults otherwise, on the tests' Envoy.
pub async fn start_lab(services: usize) -> Lab {
    Lab::start(kasi_lab::LabOptions {
        envoy: Some(crate::envoy_binary()),
        services,
        ..kasi_lab::LabOptions::default()
    })
    .await
    .expect("the lab starts")
}

/// What `kasi apply --yes` does with its defaults, for the module `wasm` (in a ConfigMap).
pub fn apply_options(wasm: Vec<u8>) -> kasi::install::apply::ApplyOptions {
    use kasi::install::render::{FilterSource, RenderOptions};
    let mut render = RenderOptions::new(FilterSource::ConfigMap { wasm });
    render.system_namespace = "knative-serving".into();
    kasi::install::apply::ApplyOptions {
        render,
        detect_cidrs: true,
        dry_run: false,
        force_conflicts: false,
        force: false,
        rotate_key: false,
        show_diff: false,
    }
}

impl McpClient {
    /// Opens the session's server-to-client SSE stream (`GET` with `Accept: text/event-stream`)
    /// and returns its status and a thread that reads the stream until it ends (`true`) or
    /// `within` passes (`false`).
    pub fn open_stream(
        &self,
        within: std::time::Duration,
    ) -> std::io::Result<(u16, std::thread::JoinHandle<bool>)> {
        use std::io::{BufRead, BufReader, Read, Write};
        let session = self.session.clone().unwrap_or_default();
        let mut stream = std::net::TcpStream::connect(self.ingress)?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nMcp-Session-Id: {session}\r\nMcp-Protocol-Version: {MCP_PROTOCOL}\r\nConnection: close\r\n\r\n",
            kasi_lab::knative::seed::MCP_PATH,
            kasi_lab::knative::seed::MCP_HOST,
        );
        stream.write_all(request.as_bytes())?;
        stream.set_read_timeout(Some(within))?;
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line)?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let reading = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + within;
            let mut buf = [0u8; 4096];
            while std::time::Instant::now() < deadline {
                match reader.read(&mut buf) {
                    Ok(0) => return true,
                    Ok(_) => continue,
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut =>
                    {
                        return false
                    }
                    Err(_) => return true,
                }
            }
            false
        });
        Ok((status, reading))
    }
}
