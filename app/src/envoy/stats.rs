//! The kasi counters from `/stats?format=json`, with or without Envoy's `wasmcustom.` prefix.

use anyhow::Context as _;
use kasi_filter::metrics;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Counter values by their contract name (`kasi_affinity.sticky_hits`, …); absent counters are 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KasiCounters {
    pub counters: BTreeMap<String, u64>,
    /// Envoy's `server.memory_allocated` (bytes), read from the same document.
    #[serde(skip)]
    pub memory_allocated: Option<u64>,
    /// Envoy's `server.uptime` (seconds): going down means the sidecar restarted, with the log
    /// levels it starts with.
    #[serde(skip)]
    pub uptime_s: Option<u64>,
}

impl KasiCounters {
    pub fn parse(body: &[u8]) -> anyhow::Result<KasiCounters> {
        let document: Value =
            serde_json::from_slice(body).context("/stats?format=json is not JSON")?;
        let mut counters: BTreeMap<String, u64> =
            metrics::ALL.iter().map(|n| (n.to_string(), 0)).collect();
        let mut memory_allocated = None;
        let mut uptime_s = None;
        for stat in document["stats"].as_array().into_iter().flatten() {
            let (Some(name), Some(value)) = (stat["name"].as_str(), stat["value"].as_u64()) else {
                continue;
            };
            match name {
                "server.memory_allocated" => memory_allocated = Some(value),
                "server.uptime" => uptime_s = Some(value),
                _ => {}
            }
            let name = name.strip_prefix("wasmcustom.").unwrap_or(name);
            if let Some(slot) = counters.get_mut(name) {
                *slot += value;
            }
        }
        Ok(KasiCounters {
            counters,
            memory_allocated,
            uptime_s,
        })
    }

    /// A counter by its contract name (`kasi_affinity.sticky_hits`) or short name (`sticky_hits`).
    pub fn get(&self, name: &str) -> u64 {
        let full = if name.starts_with("kasi_affinity.") {
            name.to_owned()
        } else {
            format!("kasi_affinity.{name}")
        };
        self.counters.get(&full).copied().unwrap_or(0)
    }

    /// Requests that carried a session cookie the filter did not honour.
    pub fn rejected_total(&self) -> u64 {
        [
            metrics::REJECTED_MALFORMED,
            metrics::REJECTED_EXPIRED,
            metrics::REJECTED_DISALLOWED,
            metrics::REJECTED_DEAD,
        ]
        .iter()
        .map(|n| self.get(n))
        .sum()
    }

    /// DESIGN.md's hit rate; `None` before any request carried a cookie.
    pub fn hit_rate(&self) -> Option<f64> {
        metrics::hit_rate(
            self.get(metrics::STICKY_HITS),
            self.get(metrics::COOKIE_ROUTED),
            self.rejected_total(),
        )
    }

    /// The sum of several sidecars' counters.
    pub fn add(&mut self, other: &KasiCounters) {
        for (name, value) in &other.counters {
            *self.counters.entry(name.clone()).or_insert(0) += value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_and_plain_counters_and_the_hit_rate() {
        let body = br#"{"stats":[
            {"name":"wasmcustom.kasi_affinity.sticky_hits","value":9},
            {"name":"wasmcustom.kasi_affinity.cookie_routed","value":9},
            {"name":"kasi_affinity.rejected_dead","value":1},
            {"name":"cluster.x.upstream_rq","value":77},
            {"name":"server.uptime","value":42},
            {"histograms":{}}]}"#;
        let counters = KasiCounters::parse(body).unwrap();
        assert_eq!(counters.get(metrics::STICKY_HITS), 9);
        assert_eq!(counters.get("sticky_hits"), 9);
        assert_eq!(counters.rejected_total(), 1);
        assert_eq!(counters.hit_rate(), Some(0.9));
        assert_eq!(counters.uptime_s, Some(42));
        assert_eq!(
            KasiCounters::parse(br#"{"stats":[]}"#).unwrap().hit_rate(),
            None
        );
    }

    #[test]
    fn steering_failures_and_mcp_404s_are_listed_but_not_in_the_hit_rate() {
        let body = br#"{"stats":[
            {"name":"wasmcustom.kasi_affinity.sticky_hits","value":4},
            {"name":"wasmcustom.kasi_affinity.cookie_routed","value":4},
            {"name":"wasmcustom.kasi_affinity.steer_failed","value":2},
            {"name":"wasmcustom.kasi_affinity.mcp_not_found","value":3}]}"#;
        let counters = KasiCounters::parse(body).unwrap();
        assert_eq!(counters.counters[metrics::STEER_FAILED], 2);
        assert_eq!(counters.counters[metrics::MCP_NOT_FOUND], 3);
        assert_eq!(counters.get("steer_failed"), 2);
        assert_eq!(counters.hit_rate(), Some(1.0));
        // `kasi status --json` lists every counter, zero or not.
        let none = KasiCounters::parse(br#"{"stats":[]}"#).unwrap();
        assert_eq!(none.counters.get(metrics::STEER_FAILED), Some(&0));
        assert_eq!(none.counters.get(metrics::MCP_NOT_FOUND), Some(&0));
    }
}
