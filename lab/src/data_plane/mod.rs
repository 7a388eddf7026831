//! The data plane: what carries a request from the client to a pod. Real HTTP servers for pods,
//! real Envoy for each istio-proxy, and small stand-ins for what a node does in the kernel
//! (kube-proxy's DNAT, iptables' redirect into the sidecar), all on loopback addresses laid out
//! like a pod network.

pub mod activator_pods;
pub mod envoy;
pub mod forward;
pub mod ingress;
pub mod kube_proxy;
pub mod layout;
pub mod mcp_pod;
pub mod pilot_agent;
pub mod pods;
pub mod serve;
