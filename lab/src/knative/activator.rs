//! The activator emulator: what Knative's activator does to a request, in front of a real Envoy.
//!
//! It picks a ready pod round robin (Knative's policy above containerConcurrency 3:
//! `pkg/activator/net/throttler.go` `newRevisionThrottler`, `lb_policy.go`
//! `newRoundRobinPolicy`), then connects to its own sidecar's outbound capture port with a PROXY
//! v1 header naming the pod — exactly what the activator's `connect(podIP:8012)` becomes after
//! iptables — and forwards the client's request with `K-Proxy-Request: activator` added and
//! Knative's revision headers removed (`pkg/activator/handler/handler.go`
//! `activationHandler.proxyRequest`, `pkg/activator/activator.go` `RevisionHeaders`).
//!
//! It serves HTTP/1.1 and h2c on 8012 and on 8013 (`cmd/activator/main.go`: the `http1` and
//! `h2c` servers, both `pkgnet.NewServer`), and sends upstream with the request's own HTTP
//! version: Knative's proxy transport is `NewProxyAutoTransport` (`knative.dev/pkg/network/
//! transports.go` `newAutoTransport`: h2c when `r.ProtoMajor == 2`), and an h2c revision's
//! requests arrive as HTTP/2 because its public Service port is `http2` (the ingress sends them
//! to the activator's 8013 over HTTP/2). The pod's port comes from the revision's protocol
//! (`revision_backends.go` `endpointsToDests(..., ServicePortName(protocol))`: 8012 or 8013).

use super::routing::{MeshMode, Routing};
use crate::data_plane::forward::{forward, proxy_v1_header, text_response, Body, Upstream};
use crate::data_plane::serve::serve_http;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use tokio::task::JoinHandle;

pub const REVISION_HEADER: &str = "knative-serving-revision";
pub const NAMESPACE_HEADER: &str = "knative-serving-namespace";

/// One activator replica: its pod address and its sidecar's outbound capture address.
pub struct Activator {
    pub listen: SocketAddr,
    pub sidecar_outbound: SocketAddr,
    pub routing: Arc<RwLock<Routing>>,
    /// `config-network`'s `mesh-compatibility-mode` as it was when this activator started:
    /// `cmd/activator/main.go` reads `config-network` once ("Fetch networking configuration")
    /// and hands the mode to `revision_backends.go`; a change takes effect on the next pod.
    pub mesh_mode: MeshMode,
    next: AtomicUsize,
    in_flight: AtomicUsize,
    /// When the last request arrived, for the drain's quiet period.
    last_request: std::sync::Mutex<Option<std::time::Instant>>,
}

/// Counts one request in flight for as long as it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activator {
    pub fn new(
        listen: SocketAddr,
        sidecar_outbound: SocketAddr,
        routing: Arc<RwLock<Routing>>,
        mesh_mode: MeshMode,
    ) -> Arc<Activator> {
        Arc::new(Activator {
            listen,
            sidecar_outbound,
            routing,
            mesh_mode,
            next: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            last_request: std::sync::Mutex::new(None),
        })
    }

    /// Requests being proxied now (a terminating pod drains until this is 0).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether it has drained: nothing in flight and no request for `quiet` — what Knative's
    /// drainer waits for before the activator stops serving (`knative.dev/pkg/network/handlers/
    /// drain.go` `Drainer.Drain`: a quiet period after the last request, reset by each one).
    pub fn drained(&self, quiet: std::time::Duration) -> bool {
        let last = *self.last_request.lock().unwrap_or_else(|e| e.into_inner());
        self.in_flight() == 0 && last.is_none_or(|t| t.elapsed() >= quiet)
    }

    /// Serves on `listen` until the returned task is aborted.
    pub async fn start(self: &Arc<Self>) -> std::io::Result<JoinHandle<()>> {
        self.start_on(self.listen).await
    }

    /// Serves on another address too (the pod's h2c port, 8013), until the task is aborted.
    pub async fn start_on(
        self: &Arc<Self>,
        address: SocketAddr,
    ) -> std::io::Result<JoinHandle<()>> {
        let me = Arc::clone(self);
        serve_http(address, move |request| {
            let me = Arc::clone(&me);
            async move { me.handle(request).await }
        })
        .await
    }

    async fn handle(&self, mut request: Request<Incoming>) -> Response<Body> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let _in_flight = InFlight(&self.in_flight);
        *self.last_request.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(std::time::Instant::now());
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (Some(namespace), Some(revision)) = (header(NAMESPACE_HEADER), header(REVISION_HEADER))
        else {
            return text_response(
                StatusCode::BAD_REQUEST,
                "activator: no Knative-Serving-Revision/Namespace header\n",
            );
        };
        let choice = {
            let routing = self.routing.read().unwrap_or_else(|e| e.into_inner());
            let Some(target) = routing.revision(&namespace, &revision) else {
                return text_response(
                    StatusCode::NOT_FOUND,
                    &format!("activator: revision {namespace}/{revision} not found\n"),
                );
            };
            if target.ready_pods.is_empty() {
                // Knative would queue until a pod is ready (`throttler.go`
                // `revisionThrottler.try`); the lab answers at once.
                return text_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "activator: no ready pods\n",
                );
            }
            let pod = target.ready_pods
                [self.next.fetch_add(1, Ordering::Relaxed) % target.ready_pods.len()];
            // Pod IPs or the private Service's ClusterIP (`pkg/activator/net/revision_backends.go`
            // `revisionWatcher.checkDests`): `disabled` never falls back to the ClusterIP;
            // `enabled` always uses it. Knative's `auto` probes the pod IPs first and falls back
            // only when the probes fail as a mesh makes them; the lab's `auto` takes the ClusterIP
            // at once (a difference from Knative).
            match (self.mesh_mode, &target.private_service) {
                (MeshMode::Disabled, _) | (_, None) => (pod, None),
                (_, Some((cluster_ip, fqdn))) => (*cluster_ip, Some(fqdn.clone())),
            }
        };
        let (destination, rewrite_host) = choice;
        let upstream = if request.version() == http::Version::HTTP_2 {
            Upstream::H2c
        } else {
            Upstream::Http1
        };
        if request.headers().get(http::header::HOST).is_none() {
            // HTTP/2 carries the host in `:authority`; Go's server makes it `r.Host`, which
            // `RewriteHostIn` below reads.
            if let Some(authority) = request
                .uri()
                .authority()
                .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
            {
                request.headers_mut().insert(http::header::HOST, authority);
            }
        }
        let headers = request.headers_mut();
        headers.remove(REVISION_HEADER);
        headers.remove(NAMESPACE_HEADER);
        headers.insert(
            "k-proxy-request",
            http::HeaderValue::from_static("activator"),
        );
        if let Some(fqdn) = rewrite_host {
            // `netheader.RewriteHostIn`: the original Host travels in K-Original-Host.
            if let Some(host) = headers.remove(http::header::HOST) {
                headers.insert("k-original-host", host);
            }
            if let Ok(host) = http::HeaderValue::from_str(&fqdn) {
                headers.insert(http::header::HOST, host);
            }
        }
        if upstream == Upstream::H2c {
            split_cookies(headers);
        }
        let source = SocketAddr::new(
            self.listen.ip(),
            40_000 + (self.next.load(Ordering::Relaxed) % 20_000) as u16,
        );
        forward(
            self.sidecar_outbound,
            Some(proxy_v1_header(source, destination)),
            request,
            upstream,
        )
        .await
    }
}

/// One `cookie` field per cookie-pair, as Go's HTTP/2 client writes them (golang.org/x/net
/// `internal/httpcommon/request.go` `EncodeHeaders`, formerly `http2/transport.go`
/// `encodeHeaders`: "the Cookie header field MAY be split into separate header fields", RFC 9113
/// §8.2.3), after Go's server has joined whatever fields arrived into one
/// (`internal/httpcommon/request.go` `NewServerRequest`).
pub fn split_cookies(headers: &mut http::HeaderMap) {
    let joined: Vec<String> = headers
        .get_all(http::header::COOKIE)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    if joined.is_empty() {
        return;
    }
    headers.remove(http::header::COOKIE);
    let joined = joined.join("; ");
    let mut emit = |pair: &str| {
        if let Ok(value) = http::HeaderValue::from_str(pair) {
            headers.append(http::header::COOKIE, value);
        }
    };
    // Go's loop: each `;`-terminated piece, then the spaces after the `;` skipped.
    let mut rest = joined.as_str();
    while let Some(p) = rest.find(';') {
        emit(&rest[..p]);
        rest = rest[p + 1..].trim_start_matches(' ');
    }
    if !rest.is_empty() {
        emit(rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_split_one_pair_per_field() {
        let mut headers = http::HeaderMap::new();
        headers.append(http::header::COOKIE, "a=1; b=2".parse().unwrap());
        headers.append(http::header::COOKIE, "c=3".parse().unwrap());
        split_cookies(&mut headers);
        let fields: Vec<&str> = headers
            .get_all(http::header::COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(fields, ["a=1", "b=2", "c=3"]);
        let mut none = http::HeaderMap::new();
        split_cookies(&mut none);
        assert!(none.is_empty());
    }
}
