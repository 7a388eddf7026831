//! kube-proxy for the lab: a connection to a revision's private ClusterIP:80 reaches a random
//! ready pod, as iptables DNAT does. This is what a mesh-compatible activator send that fell
//! through to PassthroughCluster lands on in a real cluster (`pkg/proxy/iptables/proxier.go`
//! `syncProxyRules`: one `statistic --mode random` rule per endpoint).

use crate::knative::routing::Routing;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

pub async fn start(
    cluster_ip: SocketAddr,
    namespace: String,
    revision: String,
    routing: Arc<RwLock<Routing>>,
) -> std::io::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(cluster_ip).await?;
    Ok(tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                continue;
            };
            let pods = routing
                .read()
                .map(|r| {
                    r.revision(&namespace, &revision)
                        .map(|t| t.ready_pods.clone())
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            if pods.is_empty() {
                continue;
            }
            let pod = pods[rand::random_range(0..pods.len())];
            connections.spawn(async move {
                if let Ok(mut upstream) = TcpStream::connect(pod).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
            while connections.try_join_next().is_some() {}
        }
    }))
}
