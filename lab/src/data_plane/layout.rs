//! Where everything in one lab lives on loopback.
//!
//! Each lab takes a random `127.S.0.0/16` so several labs (parallel tests) never collide, and every
//! pod gets its own address, as in a cluster: the activator's Envoy tells pods apart by IP, and
//! pods share port 8012 exactly like revision pods do.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The queue-proxy port the activator sends to (`networking.BackendHTTPPort`).
pub const POD_PORT: u16 = 8012;
/// The queue-proxy port of h2c revisions, and the activator's h2c port
/// (`pkg/networking/constants.go` `BackendHTTP2Port`).
pub const POD_H2C_PORT: u16 = 8013;
/// istio-proxy's outbound capture port and admin port, as in a real pod.
pub const SIDECAR_OUTBOUND_PORT: u16 = 15001;
pub const SIDECAR_ADMIN_PORT: u16 = 15000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The `S` of `127.S.0.0/16`.
    pub subnet: u8,
}

impl Layout {
    /// A random subnet; `127.0.x.x` is left to everything else on the machine.
    pub fn random() -> Layout {
        Layout {
            subnet: rand::random_range(16..=250),
        }
    }

    fn ip(&self, c: u8, d: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.subnet, c, d)
    }

    /// The pod CIDR, for the filter's `allowed_cidrs`.
    pub fn pod_cidr(&self) -> String {
        format!("127.{}.0.0/16", self.subnet)
    }

    /// Ingress and API server.
    pub fn front_ip(&self) -> IpAddr {
        self.ip(0, 1).into()
    }

    pub fn activator_ip(&self, replica: usize) -> IpAddr {
        self.ip(0, 10 + replica as u8).into()
    }

    /// The revision pod `index` of the lab's `hello` service.
    pub fn hello_pod_ip(&self, index: usize) -> IpAddr {
        self.revision_pod_ip(0, index)
    }

    /// The revision pod `index` of the lab service `service` that serves (0 `hello`, 1
    /// `hello-h2c`, 2 `mcp`: [`crate::knative::seed::LAB_SERVICES`]), one /24 each.
    pub fn revision_pod_ip(&self, service: usize, index: usize) -> IpAddr {
        self.ip(1 + (service % 3) as u8, 10 + (index % 240) as u8)
            .into()
    }

    /// Pods of the other lab services: addresses only, nothing listens (they exist to make the
    /// unscoped sidecar config as big as a real cluster's).
    pub fn filler_pod_ip(&self, index: usize) -> IpAddr {
        self.ip(4 + (index / 240) as u8, 10 + (index % 240) as u8)
            .into()
    }

    /// ClusterIPs, one per Kubernetes Service.
    pub fn cluster_ip(&self, index: usize) -> IpAddr {
        self.ip(100 + (index / 250).min(150) as u8, 1 + (index % 250) as u8)
            .into()
    }

    pub fn pod_addr(ip: IpAddr) -> SocketAddr {
        SocketAddr::new(ip, POD_PORT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_do_not_overlap() {
        let l = Layout { subnet: 42 };
        let mut all: Vec<IpAddr> = vec![l.front_ip(), l.activator_ip(0), l.activator_ip(1)];
        all.extend((0..3).flat_map(|s| (0..3).map(move |i| l.revision_pod_ip(s, i))));
        all.extend((0..600).map(|i| l.filler_pod_ip(i)));
        all.extend((0..1000).map(|i| l.cluster_ip(i)));
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
        assert_eq!(l.pod_cidr(), "127.42.0.0/16");
    }
}
