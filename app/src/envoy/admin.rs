//! The sidecar admin endpoints kasi reads, fetched through a pod port-forward.

use super::config_dump::ConfigDump;
use super::stats::KasiCounters;
use super::ADMIN_PORT;
use crate::cluster::portforward::http_get;
use anyhow::bail;
use kube::Client;

/// The istio-proxy of one pod.
#[derive(Clone)]
pub struct Sidecar {
    pub client: Client,
    pub namespace: String,
    pub pod: String,
}

impl Sidecar {
    pub fn new(client: Client, namespace: &str, pod: &str) -> Sidecar {
        Sidecar {
            client,
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
        }
    }

    async fn get(&self, path: &str) -> anyhow::Result<bytes::Bytes> {
        let response = http_get(&self.client, &self.namespace, &self.pod, ADMIN_PORT, path).await?;
        if response.status != 200 {
            bail!(
                "{}/{} admin {path} answered {}",
                self.namespace,
                self.pod,
                response.status
            );
        }
        Ok(response.body)
    }

    /// `/config_dump` (without EDS: the size istiod pushes for listeners, clusters, routes, secrets).
    pub async fn config_dump(&self) -> anyhow::Result<ConfigDump> {
        let body = self.get("/config_dump").await?;
        ConfigDump::parse(&body)
    }

    /// `/stats?format=json`, reduced to the kasi counters.
    pub async fn kasi_counters(&self) -> anyhow::Result<KasiCounters> {
        let body = self.get("/stats?format=json").await?;
        KasiCounters::parse(&body)
    }
}
