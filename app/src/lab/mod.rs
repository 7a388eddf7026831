//! The lab: a local stand-in for "Knative + Istio + the activator's sidecar", built from real
//! parts: a Kubernetes API real clients use ([`api`]), real Envoy configured the way istiod would
//! ([`mesh`]), the real compiled filter, real HTTP pods.

pub mod api;
pub mod mesh;
