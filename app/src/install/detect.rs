//! The filter's `allowed_cidrs` when the user gives none: the /16s (IPv6: /64s) that hold the
//! revision pods and the activators, so a cookie can only ever point at a pod network.

use super::Result;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::Client;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// What detection found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectedCidrs {
    pub cidrs: Vec<String>,
    /// How many pod IPs they cover.
    pub pod_ips: usize,
}

impl DetectedCidrs {
    /// The networks of pod IPs already known (the UI's watchers know them without a list).
    pub fn from_ips(ips: &[IpAddr]) -> DetectedCidrs {
        DetectedCidrs {
            cidrs: covering_networks(ips),
            pod_ips: ips.len(),
        }
    }

    /// One line for the user: what was detected, or that the defaults apply.
    pub fn describe(&self) -> String {
        if self.cidrs.is_empty() {
            "allowed CIDRs: no revision or activator pod IPs found; using the filter's defaults (RFC 1918, CGNAT, ULA)".into()
        } else {
            format!(
                "allowed CIDRs: detected {} from {} revision and activator pod IPs (override with --allowed-cidrs)",
                self.cidrs.join(","),
                self.pod_ips
            )
        }
    }

    /// The value for `RenderOptions::allowed_cidrs`: `None` (filter defaults) when nothing was found.
    pub fn as_option(&self) -> Option<Vec<String>> {
        (!self.cidrs.is_empty()).then(|| self.cidrs.clone())
    }
}

pub async fn allowed_cidrs(client: &Client, system_namespace: &str) -> Result<DetectedCidrs> {
    let all: Api<Pod> = Api::all(client.clone());
    let revisions = all
        .list(&ListParams::default().labels("serving.knative.dev/revision"))
        .await?;
    let system: Api<Pod> = Api::namespaced(client.clone(), system_namespace);
    let activators = system
        .list(&ListParams::default().labels("app=activator"))
        .await?;
    let ips: Vec<IpAddr> = revisions
        .items
        .iter()
        .chain(&activators.items)
        .filter_map(|pod| pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok())
        .collect();
    Ok(DetectedCidrs::from_ips(&ips))
}

/// The /16 (IPv4) or /64 (IPv6) networks holding `ips`, sorted and without repeats.
pub fn covering_networks(ips: &[IpAddr]) -> Vec<String> {
    let networks: BTreeSet<(u8, String)> = ips
        .iter()
        .map(|ip| match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                (4, format!("{}.{}.0.0/16", o[0], o[1]))
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                (6, format!("{net}/64"))
            }
        })
        .collect();
    networks.into_iter().map(|(_, n)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteens_and_sixty_fours() {
        let ips: Vec<IpAddr> = ["10.244.1.5", "10.244.9.9", "10.1.0.1", "fd00:1:2:3::9"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            covering_networks(&ips),
            ["10.1.0.0/16", "10.244.0.0/16", "fd00:1:2:3::/64"]
        );
        assert!(covering_networks(&[]).is_empty());
        let none = DetectedCidrs {
            cidrs: vec![],
            pod_ips: 0,
        };
        assert_eq!(none.as_option(), None);
        assert!(none.describe().contains("defaults"));
    }
}
