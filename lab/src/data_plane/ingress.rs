//! The lab's ingress gateway: the client-facing URL. It routes by Host to the revision of the
//! Route that answers for it (a client that used an IP reaches `hello`), the way a Knative
//! ingress does: through the activators (round robin over replicas) while the activator is in
//! the path, and — with `target-burst-capacity` other than -1 — part of the traffic straight to
//! the pods, where no activator sidecar (and so no affinity) sees it. A Host no Route answers
//! for gets 404, as Istio's gateway answers when no virtual host matches.
//!
//! An h2c revision's public Service port is `http2` (`appProtocol: kubernetes.io/h2c`), so the
//! gateway sends its requests upstream over HTTP/2 with prior knowledge, to the activators' 8013
//! or the pods' 8013, whatever the client spoke; other revisions get HTTP/1.1 on 8012.
//!
//! In Knative the revision's public Endpoints hold the activators (SKS proxy mode) or the pods
//! (serve mode): `pkg/reconciler/serverlessservice/serverlessservice.go`
//! `reconcilePublicEndpoints`. The KPA switches to serve mode when the revision has excess burst
//! capacity (`pkg/reconciler/autoscaling/kpa/kpa.go` `ReconcileKind`;
//! `pkg/autoscaler/scaling/autoscaler.go` `autoscaler.Scale` computes it from
//! `target-burst-capacity`, and -1 keeps it negative, so the activator stays in the path). The
//! lab stands for a revision that flips between the two by sending every other request straight
//! to a pod.

use super::forward::{forward, text_response, Body, Upstream};
use super::layout::POD_H2C_PORT;
use super::serve::serve_http;
use crate::knative::activator::{NAMESPACE_HEADER, REVISION_HEADER};
use crate::knative::routing::{ProtocolType, Routing};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use tokio::task::JoinHandle;

pub struct Ingress {
    /// The revision's endpoints and the ready activators (`activator-service`), as the
    /// ingress's own informers see them: a terminating activator leaves them before it stops.
    pub routing: Arc<RwLock<Routing>>,
    /// The revision a client that used an IP reaches.
    pub namespace: String,
    pub revision: String,
    /// The Host requests get when the client used an IP (Knative's domain template).
    pub host: String,
    next: AtomicUsize,
    /// Round robin over the activators alone (requests that go straight to a pod do not count).
    next_activator: AtomicUsize,
}

impl Ingress {
    pub fn new(
        routing: Arc<RwLock<Routing>>,
        namespace: &str,
        revision: &str,
        host: &str,
    ) -> Arc<Ingress> {
        Arc::new(Ingress {
            routing,
            namespace: namespace.to_owned(),
            revision: revision.to_owned(),
            host: host.to_owned(),
            next: AtomicUsize::new(0),
            next_activator: AtomicUsize::new(0),
        })
    }

    pub async fn start(
        self: &Arc<Self>,
        listen: SocketAddr,
    ) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
        // Bind first to learn the port when asked for port 0.
        let probe = std::net::TcpListener::bind(listen)?;
        let addr = probe.local_addr()?;
        drop(probe);
        let me = Arc::clone(self);
        let task = serve_http(addr, move |request| {
            let me = Arc::clone(&me);
            async move { me.handle(request).await }
        })
        .await?;
        Ok((addr, task))
    }

    async fn handle(&self, mut request: Request<Incoming>) -> Response<Body> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // HTTP/1.1 names the host in `Host`, HTTP/2 in `:authority`.
        let host = request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()));
        let host_name = host.as_deref().map(strip_port);
        let host_is_ip = host_name.is_none_or(|h| h.parse::<std::net::IpAddr>().is_ok());
        let (target, direct_pod, activators, protocol) = {
            let routing = self.routing.read().unwrap_or_else(|e| e.into_inner());
            let target = match host_name {
                _ if host_is_ip => (self.namespace.clone(), self.revision.clone()),
                Some(h) => match routing.route_for_host(h) {
                    Some(route) => route.clone(),
                    None if h.eq_ignore_ascii_case(&self.host) => {
                        (self.namespace.clone(), self.revision.clone())
                    }
                    None => {
                        return text_response(
                            StatusCode::NOT_FOUND,
                            &format!("ingress: no route for host {h}\n"),
                        )
                    }
                },
                None => (self.namespace.clone(), self.revision.clone()),
            };
            let revision = routing.revision(&target.0, &target.1);
            let protocol = revision.map(|t| t.protocol).unwrap_or_default();
            let pods = revision.map(|t| t.ready_pods.clone()).unwrap_or_default();
            // Serve mode: the public Endpoints hold pods too, so half the requests skip the activator.
            let direct = (!routing.activator_always_in_path() && n % 2 == 1 && !pods.is_empty())
                .then(|| pods[(n / 2) % pods.len()]);
            let activators = match protocol {
                ProtocolType::Http1 => routing.activators.clone(),
                ProtocolType::H2c if !routing.activators_h2c.is_empty() => {
                    routing.activators_h2c.clone()
                }
                ProtocolType::H2c => routing
                    .activators
                    .iter()
                    .map(|a| std::net::SocketAddr::new(a.ip(), POD_H2C_PORT))
                    .collect(),
            };
            (target, direct, activators, protocol)
        };
        let upstream = match protocol {
            ProtocolType::Http1 => Upstream::Http1,
            ProtocolType::H2c => Upstream::H2c,
        };
        let headers = request.headers_mut();
        if host_is_ip {
            if let Ok(host) = http::HeaderValue::from_str(&self.host) {
                headers.insert(http::header::HOST, host);
            }
        }
        if let Some(pod) = direct_pod {
            return forward(pod, None, request, upstream).await;
        }
        if activators.is_empty() {
            return text_response(StatusCode::SERVICE_UNAVAILABLE, "ingress: no activator\n");
        }
        let pick = self.next_activator.fetch_add(1, Ordering::Relaxed);
        let activator = activators[pick % activators.len()];
        for (name, value) in [(NAMESPACE_HEADER, &target.0), (REVISION_HEADER, &target.1)] {
            if let Ok(value) = http::HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
        forward(activator, None, request, upstream).await
    }
}

/// `host[:port]` or `[v6]:port` without the port (and a v6 address without its brackets).
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn ports_come_off_hosts() {
        assert_eq!(
            strip_port("mcp.default.example.com:8080"),
            "mcp.default.example.com"
        );
        assert_eq!(
            strip_port("mcp.default.example.com"),
            "mcp.default.example.com"
        );
        assert_eq!(strip_port("127.9.0.1:34567"), "127.9.0.1");
        assert_eq!(strip_port("[::1]:80"), "::1");
    }
}
