//! A small HTTP server loop shared by the lab's ingress and activators. Each connection speaks
//! HTTP/1.1 or HTTP/2 with prior knowledge, told apart by its first bytes, as Knative's servers
//! do (`knative.dev/pkg/network/h2c.go` `NewServer`: `h2c.NewHandler`) and as an Istio gateway's
//! `codec_type: AUTO` does.

use super::forward::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// Binds `addr` and answers every request with `handler` until the task is aborted (which also
/// closes every open connection).
pub async fn serve_http<H, F>(addr: SocketAddr, handler: H) -> std::io::Result<JoinHandle<()>>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = TcpListener::bind(addr).await?;
    Ok(tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let handler = handler.clone();
            connections.spawn(async move {
                let service = service_fn(move |request| {
                    let response = handler(request);
                    async move { Ok::<_, Infallible>(response.await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
            while connections.try_join_next().is_some() {}
        }
    }))
}
