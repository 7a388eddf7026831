//! Reaching the cluster: a kube client built the way kubectl resolves its kubeconfig, and HTTP
//! over a pod port-forward (how kasi reads a sidecar's admin API without exposing it).

pub mod client;
pub mod exec;
pub mod lean;
pub mod portforward;

pub use client::{connect, connect_for_ui, ClusterTarget};
pub use portforward::{http_get, HttpResponse};
