//! The sidecar admin endpoints kasi reads, fetched through a pod port-forward.

use super::config_dump::ConfigDump;
use super::stats::KasiCounters;
use super::ADMIN_PORT;
use crate::cluster::portforward::{http_get, http_post};
use anyhow::bail;
use kube::Client;
use std::collections::BTreeMap;

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

    /// The level of each logger (`wasm` → `warning`). Envoy registers `/logging` as a handler
    /// that changes state, so it answers only POST (a GET gets 405 on 1.36 and 1.40, measured);
    /// a POST without parameters changes nothing and lists every logger (`logs_handler.cc`).
    pub async fn log_levels(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let body = self.post("/logging").await?;
        Ok(parse_log_levels(&String::from_utf8_lossy(&body)))
    }

    /// Sets one logger's level (`POST /logging?wasm=info`); Envoy answers with every logger's
    /// level after the change, which is checked.
    pub async fn set_log_level(&self, logger: &str, level: &str) -> anyhow::Result<()> {
        let path = format!("/logging?{logger}={level}");
        let levels = parse_log_levels(&String::from_utf8_lossy(&self.post(&path).await?));
        match levels.get(logger) {
            Some(now) if now != level => bail!(
                "{}/{} kept its {logger} logger at {now} after {path}",
                self.namespace,
                self.pod
            ),
            None => bail!(
                "{}/{} has no {logger} logger (POST {path} listed none)",
                self.namespace,
                self.pod
            ),
            _ => Ok(()),
        }
    }

    async fn post(&self, path: &str) -> anyhow::Result<bytes::Bytes> {
        let response =
            http_post(&self.client, &self.namespace, &self.pod, ADMIN_PORT, path).await?;
        if response.status != 200 {
            bail!(
                "{}/{} admin POST {path} answered {}",
                self.namespace,
                self.pod,
                response.status
            );
        }
        Ok(response.body)
    }

    /// Whether the WasmPlugin `plugin` (of this sidecar's namespace) runs here: in `dump`, and —
    /// delivered by ECDS — applied (see [`ConfigDump::has_applied_wasm_plugin`]). When the stats
    /// cannot be read, config_dump alone decides.
    pub async fn wasm_plugin_loaded(&self, dump: &ConfigDump, plugin: &str) -> bool {
        let versions = match self.get("/stats?filter=extension_config_discovery").await {
            Ok(body) => super::config_dump::ecds_versions(&String::from_utf8_lossy(&body)),
            Err(_) => BTreeMap::new(),
        };
        dump.has_applied_wasm_plugin(&self.namespace, plugin, &versions)
    }

    /// `/stats?format=json`, reduced to the kasi counters.
    pub async fn kasi_counters(&self) -> anyhow::Result<KasiCounters> {
        let body = self.get("/stats?format=json").await?;
        KasiCounters::parse(&body)
    }
}

/// The logger the filter's decision lines go to (proxy-wasm's `log` at info).
pub const WASM_LOGGER: &str = "wasm";

/// Whether a logger at `level` writes info lines (`trace`, `debug`, `info`: yes; `warning`,
/// `error`, `critical`, `off`: no — spdlog's level names, as `/logging` lists them). `None` for
/// a name Envoy does not use.
pub fn logs_info(level: &str) -> Option<bool> {
    match level {
        "trace" | "debug" | "info" => Some(true),
        "warning" | "error" | "critical" | "off" => Some(false),
        _ => None,
    }
}

/// Envoy's `/logging` answer: `active loggers:` then one `  name: level` line per logger.
pub fn parse_log_levels(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .skip_while(|l| !l.starts_with("active loggers:"))
        .skip(1)
        .filter_map(|l| {
            let (name, level) = l.trim().split_once(": ")?;
            Some((name.trim().to_owned(), level.trim().to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_are_read_from_envoys_answer() {
        let text = "active loggers:\n  admin: warning\n  misc: error\n  wasm: warning\n";
        let levels = parse_log_levels(text);
        assert_eq!(levels["wasm"], "warning");
        assert_eq!(levels["misc"], "error");
        assert_eq!(levels.len(), 3);
        // A refused change prints the usage first; the list still follows.
        let text = "error: unknown logger\n\nusage: /logging?<name>=<level>\nactive loggers:\n  wasm: info\n";
        assert_eq!(parse_log_levels(text)["wasm"], "info");
        assert!(parse_log_levels("").is_empty());
    }

    #[test]
    fn levels_above_info_drop_decision_lines() {
        for level in ["trace", "debug", "info"] {
            assert_eq!(logs_info(level), Some(true), "{level}");
        }
        for level in ["warning", "error", "critical", "off"] {
            assert_eq!(logs_info(level), Some(false), "{level}");
        }
        assert_eq!(logs_info("loud"), None);
    }
}
