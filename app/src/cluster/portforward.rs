//! One HTTP/1.1 GET to a pod's port through a Kubernetes port-forward, as istioctl reads a
//! sidecar's admin API: nothing is exposed outside the pod and only `pods/portforward` is needed.

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::Client;
use std::time::Duration;

/// Bound on one request: a config_dump of a big unscoped sidecar takes a moment, a hung pod must not hang kasi.
const TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Bytes,
}

/// GETs `path` (with query) on `port` of pod `namespace/pod`.
pub async fn http_get(
    client: &Client,
    namespace: &str,
    pod: &str,
    port: u16,
    path: &str,
) -> anyhow::Result<HttpResponse> {
    http_request(client, namespace, pod, port, http::Method::GET, path).await
}

/// POSTs (no body) to `path` on `port` of pod `namespace/pod`: Envoy's admin API takes changes
/// (`/logging?wasm=info`) only as POST.
pub async fn http_post(
    client: &Client,
    namespace: &str,
    pod: &str,
    port: u16,
    path: &str,
) -> anyhow::Result<HttpResponse> {
    http_request(client, namespace, pod, port, http::Method::POST, path).await
}

async fn http_request(
    client: &Client,
    namespace: &str,
    pod: &str,
    port: u16,
    method: http::Method,
    path: &str,
) -> anyhow::Result<HttpResponse> {
    tokio::time::timeout(TIMEOUT, request(client, namespace, pod, port, method, path))
        .await
        .with_context(|| {
            format!("{namespace}/{pod}:{port}{path} did not answer within {TIMEOUT:?}")
        })?
}

async fn request(
    client: &Client,
    namespace: &str,
    pod: &str,
    port: u16,
    method: http::Method,
    path: &str,
) -> anyhow::Result<HttpResponse> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut forwarder = pods
        .portforward(pod, &[port])
        .await
        .with_context(|| format!("port-forward to {namespace}/{pod}:{port}"))?;
    let stream = forwarder
        .take_stream(port)
        .with_context(|| format!("port-forward to {namespace}/{pod}:{port} gave no stream"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake through the port-forward")?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let verb = method.clone();
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .context("building the request")?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .with_context(|| format!("{verb} {path} through the port-forward"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading {path} through the port-forward"))?
            .to_bytes();
        anyhow::Ok(HttpResponse { status, body })
    }
    .await;
    drop(sender);
    driver.abort();
    forwarder.abort();
    result
}
