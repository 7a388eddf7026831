//! The lab's ingress gateway: the client-facing URL. It routes to the `hello` revision the way a
//! Knative ingress does: through the activators (round robin over replicas) while the activator
//! is in the path, and — with `target-burst-capacity` other than -1 — part of the traffic
//! straight to the pods, where no activator sidecar (and so no affinity) sees it.
//!
//! In Knative the revision's public Endpoints hold the activators (SKS proxy mode) or the pods
//! (serve mode): `pkg/reconciler/serverlessservice/serverlessservice.go`
//! `reconcilePublicEndpoints`. The KPA switches to serve mode when the revision has excess burst
//! capacity (`pkg/reconciler/autoscaling/kpa/kpa.go` `ReconcileKind`;
//! `pkg/autoscaler/scaling/autoscaler.go` `autoscaler.Scale` computes it from
//! `target-burst-capacity`, and -1 keeps it negative, so the activator stays in the path). The
//! lab stands for a revision that flips between the two by sending every other request straight
//! to a pod.

use super::forward::{forward, text_response, Body};
use super::serve::serve_http;
use crate::knative::activator::{NAMESPACE_HEADER, REVISION_HEADER};
use crate::knative::routing::Routing;
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
        let (direct_pod, activators) = {
            let routing = self.routing.read().unwrap_or_else(|e| e.into_inner());
            let pods = routing
                .revision(&self.namespace, &self.revision)
                .map(|t| t.ready_pods.clone())
                .unwrap_or_default();
            // Serve mode: the public Endpoints hold pods too, so half the requests skip the activator.
            let direct = (!routing.activator_always_in_path() && n % 2 == 1 && !pods.is_empty())
                .then(|| pods[(n / 2) % pods.len()]);
            (direct, routing.activators.clone())
        };
        let headers = request.headers_mut();
        let host_is_ip = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_none_or(|h| {
                h.split(':')
                    .next()
                    .unwrap_or("")
                    .parse::<std::net::IpAddr>()
                    .is_ok()
            });
        if host_is_ip {
            if let Ok(host) = http::HeaderValue::from_str(&self.host) {
                headers.insert(http::header::HOST, host);
            }
        }
        if let Some(pod) = direct_pod {
            return forward(pod, None, request).await;
        }
        if activators.is_empty() {
            return text_response(StatusCode::SERVICE_UNAVAILABLE, "ingress: no activator\n");
        }
        let pick = self.next_activator.fetch_add(1, Ordering::Relaxed);
        let activator = activators[pick % activators.len()];
        for (name, value) in [
            (NAMESPACE_HEADER, &self.namespace),
            (REVISION_HEADER, &self.revision),
        ] {
            if let Ok(value) = http::HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
        forward(activator, None, request).await
    }
}
