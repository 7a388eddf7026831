//! Reaching the cluster: a kube client built the way kubectl resolves its kubeconfig, and HTTP
//! over a pod port-forward (how kasi reads a sidecar's admin API without exposing it).

pub mod client;
pub mod lean;
pub mod portforward;

pub use client::{connect, ClusterTarget};
pub use portforward::{http_get, HttpResponse};
